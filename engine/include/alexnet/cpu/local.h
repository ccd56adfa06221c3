// CPU local (unshared) layer (engine.md §3.5): the geometry, groups and random
// sparsity of conv (alexnet/cpu/conv.h, ConvParams), with one weight matrix per
// module.
//
// Layouts (engine.md §1.2, §1.3), row-major float32, case index fastest:
//   x    (C, S, S, N)       as a (C·S·S, N) matrix
//   y    (F, MY, MX, N)     as a (F·M, N) matrix
//   w    (M·Cg·K·K, F)      row (m·Cg + c')·K·K + ky·K + kx, m = my·MX + mx
//   b    (F·M, 1)           always unshared: use conv_add_bias / conv_bprop_bias with shared = false
// Targets follow engine.md §1.4: target <- scale_targets·target + scale·result,
// scale_targets == 0 overwrites without reading.
#pragma once

#include "alexnet/cpu/conv.h"

namespace alexnet::cpu {

// y (+)= local(x, w) for one input: y[f, m, n] = Σ_{c', ky, kx} w[m, c', ky, kx, f] · x-patch.
void local_fprop(const ConvParams& p, ConstMatView x, ConstMatView w, MatView y, float scale_targets,
                 ConvScratch& scratch);

// dx (+)= Σ over filters fed by the pixel's channel and modules covering it of w[m] · dy.
void local_bprop_acts(const ConvParams& p, ConstMatView dy, ConstMatView w, MatView dx, float scale_targets,
                      ConvScratch& scratch);

// inc <- scale_targets·inc + scale_output·Σ_n x-patch · dy, per module (the
// release's weight-increment path, partial sum fixed to one module):
// with scale_targets = momW and scale_output = epsW/N this is
// inc <- mom·inc + (eps/N)·Σ_n X·δY (engine.md §3.5, §4.2). inc (M·Cg·K·K, F).
void local_bprop_weights(const ConvParams& p, ConstMatView x, ConstMatView dy, MatView inc, float scale_output,
                         float scale_targets, ConvScratch& scratch);

}  // namespace alexnet::cpu
