// Strided sub-sampling of an image batch ("nailbed", engine.md §3.17).
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"

namespace alexnet::cpu {

// y[c,oy,ox,n] <- scale_targets*y + x[c, start + oy*stride, start + ox*stride, n].
// x: (C, S, S, N); y: (C, OX, OX, N).
void nailbed_fprop(const NailbedParams& p, ConstMatView x, MatView y, float scale_targets);

// dx <- scale_targets*dx + scatter(dy): sampled pixels get dy, the others 0
// (so they become 0 when overwriting and keep their value when adding).
// dy: (C, OX, OX, N); dx: (C, S, S, N).
void nailbed_bprop(const NailbedParams& p, ConstMatView dy, MatView dx, float scale_targets);

}  // namespace alexnet::cpu
