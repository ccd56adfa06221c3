// hs (dropout), engine.md §3.16 and §5. Layout: x, y, mask, dy, dx are (D, N),
// case fastest (§1.2); element-wise, so only the element count matters.
#pragma once

#include "alexnet/core/matrix.h"

namespace alexnet::cpu {

// train (enable and PASS_TRAIN): Y <- X * B with the injected 0/1 mask B
// (no rescaling); otherwise Y <- keep * X and mask is not read (may be null).
// Overwrites Y; Y may be the same memory as X.
void dropout_fprop(ConstMatView x, const float* mask, float keep, bool train, MatView y);

// train: dX <- scale_targets*dX + dY * B; otherwise dX <- scale_targets*dX + keep*dY.
// dX may be the same memory as dY.
void dropout_bprop(ConstMatView dy, const float* mask, float keep, bool train, MatView dx, float scale_targets);

}  // namespace alexnet::cpu
