// CUDA runtime probe (cuda/net.h device_count). It must not fail on a machine
// without a GPU or driver: CI compiles and imports this code with nvcc present
// and no device.
#include <cuda_runtime.h>

#include <string>

#include "alexnet/cuda/net.h"

namespace alexnet::cuda {

int device_count(std::string* error) {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (error) *error = std::string("CUDA runtime: ") + cudaGetErrorString(status);
    return 0;
  }
  if (count == 0 && error) *error = "CUDA runtime reports no device";
  return count;
}

}  // namespace alexnet::cuda
