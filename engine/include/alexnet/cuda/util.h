// Small device helpers of the CUDA net: fill a buffer, blend one buffer into
// another (engine.md §1.4), add a buffer into another.
#pragma once

#include <cstdint>

#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

// dst[i] <- value for i < count.
void fill(const Launch& l, float* dst, int64_t count, float value);

// dst[i] <- scale_targets*dst[i] + scale*src[i] (scale_targets == 0 overwrites
// without reading dst), i < count.
void blend_into(const Launch& l, const float* src, float* dst, int64_t count, float scale, float scale_targets);

}  // namespace alexnet::cuda
