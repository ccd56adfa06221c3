// CUDA blur (engine.md §3.18), the two separable passes of engine/cpu/blur.cpp
// in the same tap order. p.filter must point to DEVICE memory here.
// x, scratch, y: (C, S, S, N) DEVICE memory; targets per §1.4.
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

void blur_fprop(const Launch& l, const BlurParams& p, ConstMatView x, MatView scratch, MatView y,
                float scale_targets);
void blur_bprop(const Launch& l, const BlurParams& p, ConstMatView dy, MatView scratch, MatView dx,
                float scale_targets);

}  // namespace alexnet::cuda
