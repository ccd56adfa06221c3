// Element-wise sum and max of equally shaped inputs (engine.md §3.13, §3.14).
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"

namespace alexnet::cpu {

// eltsum, one input's contribution: y <- scale_targets*y + coeff*x.
// The layer calls it with scale_targets = 0 for its first input and 1 after.
// x, y: (D, N); y may be x itself (in place), not a partial overlap.
void eltsum_fprop(ConstMatView x, MatView y, float coeff, float scale_targets);

// eltsum backward for input i: dx <- scale_targets*dx + coeff_i*dy.
// dy, dx: (D, N); dx may be dy itself.
void eltsum_bprop(ConstMatView dy, MatView dx, float coeff, float scale_targets);

// eltmax forward, overwriting y: y = max(x1, x0), then y = max(y, xi) for
// i = 2.. with max(a, b) = a > b ? a : b. xs: `count` >= 2 views of (D, N);
// y: (D, N), may be one of the inputs.
void eltmax_fprop(const ConstMatView* xs, int64_t count, MatView y);

// eltmax backward for one input: dx <- scale_targets*dx + dy*[x == y].
// x, y, dy, dx: (D, N).
void eltmax_bprop(ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx, float scale_targets);

}  // namespace alexnet::cpu
