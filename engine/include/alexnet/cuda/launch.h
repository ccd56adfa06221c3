// Plumbing shared by the CUDA kernels and the CUDA net (docs/cuda.md): the
// stream a launcher runs on, the layer it runs for (named in every error), and
// the error checks that follow every CUDA call and every kernel launch.
//
// Pointers handed to launchers (in MatView/ConstMatView or raw) are DEVICE
// pointers on the current device; shapes use the CPU engine's alphabet and
// layouts (engine.md §1.2, §1.3), case index fastest.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace alexnet::cuda {

struct Launch {
  cudaStream_t stream = nullptr;  // every kernel and copy of a layer goes to its device's stream
  const char* layer = "";         // the layer's name, for error messages
};

// Throws std::runtime_error("CUDA error in <what>: <name>: <description>").
inline void check(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess)
    throw std::runtime_error("CUDA error in " + what + ": " + cudaGetErrorName(status) + ": " +
                             cudaGetErrorString(status));
}

// After a kernel launch: a bad launch configuration is reported here, naming
// the kernel and the layer; faults inside a kernel surface at the next
// synchronising call (the net checks those too, naming the pass).
inline void check_launch(const Launch& l, const char* kernel) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error launching ") + kernel + " for layer '" + l.layer +
                             "': " + cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
}

// Threads per block of the element-wise and per-row kernels, and the grid of a
// grid-stride loop over `count` items (capped; the loop covers the rest).
constexpr int kThreads = 256;
inline unsigned grid_for(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > (int64_t{1} << 20) ? (int64_t{1} << 20) : blocks));
}

}  // namespace alexnet::cuda
