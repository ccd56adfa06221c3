// Strided sub-sampling of an image batch ("nailbed", engine.md §3.17).
#pragma once

#include <cstdint>

#include "alexnet/matrix.h"

namespace alexnet::cpu {

struct NailbedParams {
  int64_t channels = 0;  // C
  int64_t img_size = 0;  // S
  int64_t stride = 1;    // >= 1 (the release's parser asks > 1; 1 is a plain copy)
};

// engine.md §3.17: outputs_x = ceil(S/stride), start = floor((S - stride*(outputs_x-1))/2).
inline int64_t nailbed_outputs_x(const NailbedParams& p) { return (p.img_size + p.stride - 1) / p.stride; }
inline int64_t nailbed_start(const NailbedParams& p) {
  return (p.img_size - p.stride * (nailbed_outputs_x(p) - 1)) / 2;  // numerator > 0, so / is floor
}

// y[c,oy,ox,n] <- scale_targets*y + x[c, start + oy*stride, start + ox*stride, n].
// x: (C, S, S, N); y: (C, OX, OX, N).
void nailbed_fprop(const NailbedParams& p, ConstMatView x, MatView y, float scale_targets);

// dx <- scale_targets*dx + scatter(dy): sampled pixels get dy, the others 0
// (so they become 0 when overwriting and keep their value when adding).
// dy: (C, OX, OX, N); dx: (C, S, S, N).
void nailbed_bprop(const NailbedParams& p, ConstMatView dy, MatView dx, float scale_targets);

}  // namespace alexnet::cpu
