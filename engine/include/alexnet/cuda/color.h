// CUDA rgb2yuv and rgb2lab (engine.md §3.21), as engine/cpu/color.cpp.
// x, y: (3, S, S, N) DEVICE memory, not overlapping; y overwritten.
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

void rgb2yuv_fprop(const Launch& l, const ColorParams& p, ConstMatView x, MatView y);
void rgb2lab_fprop(const Launch& l, const ColorParams& p, ConstMatView x, MatView y);

}  // namespace alexnet::cuda
