// Bilinear resize (engine.md §3.20) and random rescale-and-crop (§3.22) of every
// channel. Neither has a backward.
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"

namespace alexnet::cpu {

// y[c,ty,tx,n] <- resize_sample (op_params.h), overwriting. x: (C, S, S, N), y: (C, T, T, N).
void resize_fprop(const ResizeParams& p, ConstMatView x, MatView y);

// A training pass of rscale with draw d, overwriting y: with R = tgt_size + s, the
// (R, R) resize of x by d.factor (a copy when R == S), cropped at (crop_y, crop_x)
// to (tgt_size, tgt_size). x: (C, S, S, N), y: (C, tgt_size, tgt_size, N).
void rscale_fprop(const RscaleParams& p, const RscaleDraw& d, ConstMatView x, MatView y);

}  // namespace alexnet::cpu
