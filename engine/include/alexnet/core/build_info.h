// Build facts of the compiled engine: what --version prints, so that a result
// can always be traced to the compiler, flags and backends that made it. The
// backends add what only they can tell at run time: the CPU its BLAS
// (cpu/blas.h blas_name), CUDA the devices it sees (cuda/net.h device_count).
#pragma once

#include <string>

namespace alexnet {

struct BuildInfo {
  std::string version;        // project version, from pyproject.toml
  std::string cxx_compiler;   // e.g. "GNU 12.2.0"
  std::string cxx_flags;      // flags of the build type in use
  std::string build_type;     // CMake build type
  std::string threads;        // what runs the engine's own parallel loops
  bool cuda_compiled = false; // were CUDA sources compiled into this build?
  std::string cuda_compiler;  // "nvcc 13.0.88", empty without CUDA
  std::string cuda_archs;     // "80-real,90-real,90-virtual", empty without CUDA
  std::string cuda_gemm;      // what the CUDA backend multiplies matrices with; empty without CUDA
};

BuildInfo build_info();

}  // namespace alexnet
