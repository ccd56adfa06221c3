// CUDA eltsum / eltmax (engine.md §3.13, §3.14), element-wise, (D, N) DEVICE
// matrices, the operations of engine/cpu/eltwise.cpp.
#pragma once

#include "alexnet/cuda/launch.h"
#include "alexnet/matrix.h"

namespace alexnet::cuda {

// y <- st·y + coeff·x
void eltsum_fprop(const Launch& l, ConstMatView x, MatView y, float coeff, float scale_targets);
// dx <- st·dx + coeff·dy
void eltsum_bprop(const Launch& l, ConstMatView dy, MatView dx, float coeff, float scale_targets);
// y <- (a > b ? a : b) element-wise: the net calls it with (a, b) = (x1, x0),
// then (y, x_i) for i >= 2, the CPU's order of §3.14. y may alias a.
void eltmax_pair(const Launch& l, ConstMatView a, ConstMatView b, MatView y);
// dx <- st·dx + dy·[x == y]
void eltmax_bprop(const Launch& l, ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx, float scale_targets);

}  // namespace alexnet::cuda
