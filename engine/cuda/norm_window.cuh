// Device versions of the window rules of alexnet/cpu/norm.h (engine.md §3.8,
// §3.9): a clipped window of `size` starting ⌊size/2⌋ before i, and its adjoint.
#pragma once

#include <cstdint>

namespace alexnet::cuda {

__device__ __forceinline__ void norm_window_d(int64_t i, int64_t size, int64_t n, int64_t* lo, int64_t* hi) {
  const int64_t start = i - size / 2;
  *lo = start > 0 ? start : 0;
  *hi = start + size < n ? start + size : n;
}

__device__ __forceinline__ void norm_adjoint_window_d(int64_t i, int64_t size, int64_t n, int64_t* lo, int64_t* hi) {
  const int64_t first = i + size / 2 - size + 1, last = i + size / 2 + 1;
  *lo = first > 0 ? first : 0;
  *hi = last < n ? last : n;
}

}  // namespace alexnet::cuda
