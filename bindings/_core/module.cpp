// alexnet_replay._core: the Python face of the C++ engine. Thin by design
// (STYLE.md habit 3): it converts arguments and results, the engine does the work.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "alexnet/core/build_info.h"
#include "alexnet/cpu/blas.h"
#if ALEXNET_WITH_CUDA
#include "alexnet/cuda/net.h"
#endif

namespace py = pybind11;

namespace alexnet::bind {
// One registration function per ops_<group>.cpp.
void register_conv_ops(py::module_& m);
void register_pool_ops(py::module_& m);
void register_norm_ops(py::module_& m);
void register_neuron_ops(py::module_& m);
void register_fc_ops(py::module_& m);
void register_net_ops(py::module_& m);
void register_compare_ops(py::module_& m);
void register_cuda_ops(py::module_& m);  // registers nothing in a build without CUDA
}  // namespace alexnet::bind

PYBIND11_MODULE(_core, m) {
  m.doc() = "C++ engine of alexnet-replay";
  alexnet::bind::register_conv_ops(m);
  alexnet::bind::register_pool_ops(m);
  alexnet::bind::register_norm_ops(m);
  alexnet::bind::register_neuron_ops(m);
  alexnet::bind::register_fc_ops(m);
  alexnet::bind::register_net_ops(m);
  alexnet::bind::register_cuda_ops(m);
  alexnet::bind::register_compare_ops(m);

  m.def(
      "build_info",
      [] {
        const alexnet::BuildInfo info = alexnet::build_info();
        py::dict d;
        d["version"] = info.version;
        d["cxx_compiler"] = info.cxx_compiler;
        d["cxx_flags"] = info.cxx_flags;
        d["build_type"] = info.build_type;
        d["blas"] = alexnet::cpu::blas_name();
        d["threads"] = info.threads;
        d["cuda_compiled"] = info.cuda_compiled;
        d["cuda_compiler"] = info.cuda_compiler;
        d["cuda_archs"] = info.cuda_archs;
        d["cuda_gemm"] = info.cuda_gemm;
        return d;
      },
      "Facts of this build: compiler, flags, BLAS, and whether CUDA code was compiled.");

  m.def(
      "cuda_device_count",
      [] {
#if ALEXNET_WITH_CUDA
        std::string error;
        const int n = alexnet::cuda::device_count(&error);
        return py::make_tuple(n, error);
#else
        return py::make_tuple(0, std::string("this build has no CUDA code (built with ALEXNET_CUDA=OFF or without nvcc)"));
#endif
      },
      "(count, reason): CUDA devices visible to the runtime; reason says why count is 0.");
}
