// Concatenation of inputs along the feature axis (engine.md §3.15).
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"

namespace alexnet::cpu {

// y rows [offset, offset + Di) <- x (overwritten; other rows untouched).
// x: (Di, N); y: (D, N), offset + Di <= D.
void concat_fprop(ConstMatView x, MatView y, int64_t offset);

// dx <- scale_targets*dx + dy rows [offset, offset + Di).
// dy: (D, N); dx: (Di, N).
void concat_bprop(ConstMatView dy, MatView dx, int64_t offset, float scale_targets);

}  // namespace alexnet::cpu
