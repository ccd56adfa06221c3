// CUDA concat (engine.md §3.15): input i at rows [offset, offset + D_i) of y.
// (D, N) DEVICE matrices.
#pragma once

#include "alexnet/cuda/launch.h"
#include "alexnet/core/matrix.h"

namespace alexnet::cuda {

// y[offset + r, :] <- x[r, :] (a copy; y is not read)
void concat_fprop(const Launch& l, ConstMatView x, MatView y, int64_t offset);
// dx <- st·dx + dy[offset.., :]
void concat_bprop(const Launch& l, ConstMatView dy, MatView dx, int64_t offset, float scale_targets);

}  // namespace alexnet::cuda
