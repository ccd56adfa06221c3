// CUDA dropout (`hs`, engine.md §3.16): train y = x·mask (no rescaling), else
// y = keep·x; backward likewise. Element-wise, DEVICE memory, (D, N). The mask
// is drawn on the host by the net (same generator as the CPU net) and uploaded.
#pragma once

#include "alexnet/cuda/launch.h"
#include "alexnet/core/matrix.h"

namespace alexnet::cuda {

void dropout_fprop(const Launch& l, ConstMatView x, const float* mask, float keep, bool train, MatView y);
void dropout_bprop(const Launch& l, ConstMatView dy, const float* mask, float keep, bool train, MatView dx,
                   float scale_targets);

}  // namespace alexnet::cuda
