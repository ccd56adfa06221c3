// Fully connected layer, engine.md §3.2. Layouts (§1.2, §1.3):
//   X   (Din, N)   input, case fastest
//   Y   (Dout, N)  output, case fastest
//   Wt  (Dout, Din) row-major: the release's Fortran-order (Din, Dout) weight
//       matrix read as C order (each output unit's weights contiguous). In numpy
//       that is W.T of the (Din, Dout) Fortran array, without a copy.
//   b   (Dout)     bias
#pragma once

#include "alexnet/core/matrix.h"

namespace alexnet::cpu {

// Y <- scale_targets*Y + Wt X   (one input's contribution; §1.4 order: the
// net calls input 0 with scale_targets 0, adds the bias, then the others with 1)
void fc_fprop(ConstMatView x, ConstMatView wt, MatView y, float scale_targets);

// Y[o, n] += b[o]
void fc_add_bias(const float* b, MatView y);

// dX <- scale_targets*dX + Wt^T dY
void fc_bprop_acts(ConstMatView dy, ConstMatView wt, MatView dx, float scale_targets);

// The increment path of fc (§3.2, §4.2): incT <- mom*incT + scale*(dY X^T),
// with scale = eps/N, as one GEMM (beta = mom, alpha = scale).
void fc_bprop_weights(ConstMatView x, ConstMatView dy, MatView inc_t, float scale, float mom);

// Bias gradient: gb[o] <- scale_targets*gb[o] + scale * sum_n dY[o, n] (cases in order).
void fc_bprop_bias(ConstMatView dy, float* gb, float scale, float scale_targets);

}  // namespace alexnet::cpu
