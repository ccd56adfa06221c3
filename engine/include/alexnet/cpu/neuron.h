// Element-wise neurons, engine.md §3.11. Layout (§1.2): every matrix is
// (D, N), case fastest; x, y, noise, dy and dx all have the same shape.
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"  // NeuronParams, the neuron table

namespace alexnet::cpu {

// Y <- f(X), overwriting Y (a single-input layer's forward, §1.4).
// noise: (D, N) standard-normal draws epsilon for nrelu (§3.11, §13 item 7:
// injected, never drawn here); ignored (may be null) for the other types.
// Y may be the same memory as X (in-place neuron, §1.5).
void neuron_fprop(const NeuronParams& p, ConstMatView x, const float* noise, MatView y);

// dX <- scale_targets*dX + dY * f'(.), f' from the input x or the output y as
// §3.11 says. dX may be the same memory as dY.
void neuron_bprop(const NeuronParams& p, ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx,
                  float scale_targets);

}  // namespace alexnet::cpu
