// CUDA quant layer (engine.md §6, quantF/quantB = half: a reconstruction, see
// docs/fidelity.md and engine/cpu/quant.cpp): y <- scale_targets*y +
// (half ? round_to_half(x) : x), element-wise, DEVICE memory, (D, N). The same
// bit operations as the CPU (op_params.h round_to_half): identical results.
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

void quant_copy(const Launch& l, ConstMatView x, MatView y, bool half, float scale_targets);

}  // namespace alexnet::cuda
