// CUDA eltsum / eltmax (engine.md §3.13, §3.14), element-wise, (D, N) DEVICE
// matrices, the operations of engine/cpu/eltwise.cpp.
#pragma once

#include "alexnet/cuda/launch.h"
#include "alexnet/core/matrix.h"

namespace alexnet::cuda {

// y <- st·y + coeff·x
void eltsum_fprop(const Launch& l, ConstMatView x, MatView y, float coeff, float scale_targets);
// dx <- st·dx + coeff·dy
void eltsum_bprop(const Launch& l, ConstMatView dy, MatView dx, float coeff, float scale_targets);
// y <- the element-wise max of the `count` >= 2 inputs xs, in the CPU's order
// (§3.14): max(x1, x0), then max(y, x_i) for i >= 2; ties and NaN as written
// there. y must not alias an input.
void eltmax_fprop(const Launch& l, const ConstMatView* xs, int64_t count, MatView y);
// dx <- st·dx + dy·[x == y]
void eltmax_bprop(const Launch& l, ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx, float scale_targets);

}  // namespace alexnet::cuda
