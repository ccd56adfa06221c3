// CUDA resize (engine.md §3.20) and rscale's training pass (§3.22), as
// engine/cpu/resize.cpp and engine/cpu/rscale.cpp: the same resize_sample
// (op_params.h), so the two backends agree bit for bit. (C, S, S, N) DEVICE memory.
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

// y (C, T, T, N) <- the bilinear resize of x (C, S, S, N), overwriting.
void resize_fprop(const Launch& l, const ResizeParams& p, ConstMatView x, MatView y);
// y (C, tgt, tgt, N) <- the crop at (crop_y, crop_x) of x resized to R = tgt + s by
// d.factor (of x itself when R == S), overwriting.
void rscale_fprop(const Launch& l, const RscaleParams& p, const RscaleDraw& d, ConstMatView x, MatView y);

}  // namespace alexnet::cuda
