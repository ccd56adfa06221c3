// CUDA fc layer (engine.md §3.2), the semantics of engine/cpu/fc.cpp.
// Layouts (DEVICE memory): x (Din, N), y (Dout, N), wt (Dout, Din) row-major
// (the release's Fortran (Din, Dout) matrix), b (Dout). Targets follow §1.4.
#pragma once

#include "alexnet/cuda/gemm.h"
#include "alexnet/cuda/launch.h"
#include "alexnet/core/matrix.h"

namespace alexnet::cuda {

// y <- scale_targets·y + wt·x
void fc_fprop(const Launch& l, const Gemm& gemm, ConstMatView x, ConstMatView wt, MatView y, float scale_targets);
// y[o, n] += b[o]
void fc_add_bias(const Launch& l, const float* b, MatView y);
// dx <- scale_targets·dx + wtᵀ·dy
void fc_bprop_acts(const Launch& l, const Gemm& gemm, ConstMatView dy, ConstMatView wt, MatView dx,
                   float scale_targets);
// inc_t <- mom·inc_t + scale·(dy·xᵀ), one GEMM (beta = mom, alpha = eps/N)
void fc_bprop_weights(const Launch& l, const Gemm& gemm, ConstMatView x, ConstMatView dy, MatView inc_t,
                      float scale, float mom);
// gb[o] <- scale_targets·gb[o] + scale·Σ_n dy[o, n]: one thread per row, cases
// in increasing order in float32, exactly the CPU's sum.
void fc_bprop_bias(const Launch& l, ConstMatView dy, float* gb, float scale, float scale_targets);

}  // namespace alexnet::cuda
