// Horizontal reflection of every image (engine.md §3.19).
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"

namespace alexnet::cpu {

// y[c,y,x,n] <- scale_targets*y + x[c,y,S-1-x,n]. x, y: (C, S, S, N), not overlapping.
void href_fprop(const HrefParams& p, ConstMatView x, MatView y, float scale_targets);

// dx[c,y,x,n] <- dy[c,y,S-1-x,n], ALWAYS overwriting: the release ignores
// scaleTargets here (engine.md §13 item 8), so a second consumer's gradient
// replaces the first one's instead of adding. Kept as written.
// dy, dx: (C, S, S, N), not overlapping.
void href_bprop(const HrefParams& p, ConstMatView dy, MatView dx);

}  // namespace alexnet::cpu
