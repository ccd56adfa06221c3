// CUDA softmax (engine.md §3.12): one thread per case, classes in order, the
// float order of engine/cpu/softmax.cpp. (D, N) DEVICE matrices.
#pragma once

#include "alexnet/cuda/launch.h"
#include "alexnet/core/matrix.h"

namespace alexnet::cuda {

void softmax_fprop(const Launch& l, ConstMatView x, MatView y);
void softmax_bprop(const Launch& l, ConstMatView y, ConstMatView dy, MatView dx, float scale_targets);

}  // namespace alexnet::cuda
