// Colour-space conversions of (R, G, B) images (engine.md §3.21). No backward.
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"

namespace alexnet::cpu {

// x, y: (3, S, S, N), not overlapping; y overwritten with (Y, U, V).
void rgb2yuv_fprop(const ColorParams& p, ConstMatView x, MatView y);
// x, y: (3, S, S, N), not overlapping; y overwritten with (L, a, b) (L − 50 when p.center).
void rgb2lab_fprop(const ColorParams& p, ConstMatView x, MatView y);

}  // namespace alexnet::cpu
