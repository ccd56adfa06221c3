// Separable blur with a 1-D filter and zero padding (engine.md §3.18).
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"

namespace alexnet::cpu {

// One pass along rows (horizontal) or columns (vertical):
// z[j] = sum_k in[j + k - r] * g_k, out-of-image taps contribute nothing;
// y <- scale_targets*y + z. x, y: (C, S, S, N); they must not overlap.
void blur_pass(const BlurParams& p, bool horizontal, ConstMatView x, MatView y, float scale_targets);

// The layer's forward: horizontal pass into `scratch` (overwritten), then the
// vertical pass into y with scale_targets. x, scratch, y: (C, S, S, N).
void blur_fprop(const BlurParams& p, ConstMatView x, MatView scratch, MatView y, float scale_targets);

// The layer's backward: the same two passes applied to dy (the blur is
// self-adjoint for a symmetric filter with zero padding). dy, scratch, dx: (C, S, S, N).
void blur_bprop(const BlurParams& p, ConstMatView dy, MatView scratch, MatView dx, float scale_targets);

}  // namespace alexnet::cpu
