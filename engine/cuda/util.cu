// Small element-wise helpers of the CUDA net (alexnet/cuda/util.h).
// Layout: flat arrays of `count` floats, DEVICE memory.
// Accumulate-or-overwrite: blend_into follows engine.md §1.4.
#include "alexnet/cuda/util.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void fill_kernel(float* dst, int64_t count, float value) {
  for (int64_t i = grid_start(); i < count; i += grid_step()) dst[i] = value;
}

__global__ void blend_kernel(const float* src, float* dst, int64_t count, float scale, float st) {
  for (int64_t i = grid_start(); i < count; i += grid_step()) dst[i] = blend_d(dst[i], src[i], st, scale);
}

}  // namespace

void fill(const Launch& l, float* dst, int64_t count, float value) {
  if (count <= 0) return;
  fill_kernel<<<grid_for(count), kThreads, 0, l.stream>>>(dst, count, value);
  check_launch(l, "fill_kernel");
}

void blend_into(const Launch& l, const float* src, float* dst, int64_t count, float scale, float scale_targets) {
  if (count <= 0) return;
  blend_kernel<<<grid_for(count), kThreads, 0, l.stream>>>(src, dst, count, scale, scale_targets);
  check_launch(l, "blend_kernel");
}

}  // namespace alexnet::cuda
