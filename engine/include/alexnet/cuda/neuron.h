// CUDA neurons (engine.md §3.11), element-wise, the formulas and evaluation
// order of engine/cpu/neuron.cpp (expf/logf/sqrtf and IEEE division, no FMA).
// x, y, noise, dy, dx: (D, N), DEVICE memory. Forward overwrites y; backward
// blends into dx (§1.4).
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

void neuron_fprop(const Launch& l, const NeuronParams& p, ConstMatView x, const float* noise, MatView y);
void neuron_bprop(const Launch& l, const NeuronParams& p, ConstMatView x, ConstMatView y, ConstMatView dy,
                  MatView dx, float scale_targets);

}  // namespace alexnet::cuda
