// CUDA local (unshared) layer (engine.md §3.5), the semantics of
// engine/cpu/local.cpp: conv's lowering (alexnet/cuda/conv.h), then one GEMM
// per (module, group), batched over the modules of a chunk.
// Layouts (DEVICE memory, case fastest): x (C, S, S, N), y (F, MY, MX, N),
// w (M·Cg·K·K, F), b (F·M, 1) (use conv_add_bias/conv_bprop_bias, shared = false).
// Targets: scale_targets·target + scale·result (§1.4).
#pragma once

#include "alexnet/cuda/conv.h"

namespace alexnet::cuda {

void local_fprop(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView x, ConstMatView w,
                 MatView y, float scale_targets, const ConvWorkspace& ws);

void local_bprop_acts(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView dy,
                      ConstMatView w, MatView dx, float scale_targets, const ConvWorkspace& ws);

// inc <- scale_targets·inc + scale_output·Σ_n patch·dy per module (§3.5, §4.2).
void local_bprop_weights(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView x,
                         ConstMatView dy, MatView inc, float scale_output, float scale_targets,
                         const ConvWorkspace& ws);

}  // namespace alexnet::cuda
