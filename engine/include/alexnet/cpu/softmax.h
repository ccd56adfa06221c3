// softmax over classes, engine.md §3.12. Layout (§1.2): x, y, dy, dx are
// (D, N) with D classes, case fastest; the softmax runs down each column.
#pragma once

#include "alexnet/core/matrix.h"

namespace alexnet::cpu {

// Y <- softmax(X) per case, overwriting Y (Y may be the same memory as X).
void softmax_fprop(ConstMatView x, MatView y);

// The generic backward (softmax not fused with a logreg cost, §3.12):
// dX_i <- scale_targets*dX_i + y_i * sum_j dY_j (1[i=j] - y_j).
// dX may be the same memory as dY or Y.
void softmax_bprop(ConstMatView y, ConstMatView dy, MatView dx, float scale_targets);

}  // namespace alexnet::cpu
