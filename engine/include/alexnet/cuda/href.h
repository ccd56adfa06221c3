// CUDA href (engine.md §3.19): y[c,y,x] = x[c,y,S−1−x]; the backward always
// overwrites (§13 item 8), as engine/cpu/href.cpp. (C, S, S, N) DEVICE memory.
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

void href_fprop(const Launch& l, const HrefParams& p, ConstMatView x, MatView y, float scale_targets);
void href_bprop(const Launch& l, const HrefParams& p, ConstMatView dy, MatView dx);

}  // namespace alexnet::cuda
