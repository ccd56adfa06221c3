// CUDA nailbed (engine.md §3.17), the semantics of engine/cpu/nailbed.cpp.
// x, dx (C, S, S, N); y, dy (C, OX, OX, N); DEVICE memory; targets per §1.4.
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

void nailbed_fprop(const Launch& l, const NailbedParams& p, ConstMatView x, MatView y, float scale_targets);
void nailbed_bprop(const Launch& l, const NailbedParams& p, ConstMatView dy, MatView dx, float scale_targets);

}  // namespace alexnet::cuda
