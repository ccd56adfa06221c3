// Device-side helpers shared by the kernels of engine/cuda (internal header).
//
// Floating point, everywhere in engine/cuda: exact functions only (expf, logf,
// powf, sqrtf and '/' are the IEEE or library-accurate versions; no __expf,
// __logf, __powf, __fdividef and no -use_fast_math), and no FMA contraction
// (--fmad=false in engine/CMakeLists.txt), so that a·b + c rounds twice, as the
// CPU engine (-ffp-contract=off) does.
//
// Reductions are deterministic: each sum has one fixed order (sequential in
// one thread, or a fixed tree of warp shuffles with the *_sync primitives and
// shared memory), never float atomics, so results repeat run to run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

// The accumulate-or-overwrite rule of engine.md §1.4 (matrix.h blend()):
// scale_targets == 0 overwrites without reading the target.
__device__ __forceinline__ float blend_d(float target, float result, float scale_targets, float scale_output = 1.0f) {
  return scale_targets == 0.0f ? scale_output * result : scale_targets * target + scale_output * result;
}

// First index and stride of a grid-stride loop.
__device__ __forceinline__ int64_t grid_start() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// floor(a / b) for b > 0 and any sign of a.
__device__ __forceinline__ int64_t floor_div_d(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Sum of v over a block of kThreads threads, in a fixed order: a warp-shuffle
// tree inside each warp (__shfl_down_sync over all 32 lanes), then warp 0 adds
// the warps' sums the same way. The result is valid in thread 0. Every thread
// of the block must call it (it has __syncthreads), once per kernel.
__device__ __forceinline__ double block_sum(double v) {
  static_assert(kThreads % 32 == 0 && kThreads / 32 <= 32, "block_sum needs whole warps, at most 32");
  __shared__ double warp_sums[kThreads / 32];
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? warp_sums[lane] : 0.0;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

}  // namespace alexnet::cuda
