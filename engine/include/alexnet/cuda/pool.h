// CUDA pooling (engine.md §3.6), the semantics and float order of
// engine/cpu/pool.cpp: one thread per output (forward) or input pixel
// (backward) and case, windows in raster order. x, dx (C, S, S, N); y, dy
// (C, OX, OX, N), DEVICE memory. Targets follow §1.4.
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

void pool_fprop(const Launch& l, const PoolParams& p, ConstMatView x, MatView y, float scale_targets);
// kRand: the picked pixel of each window; picks (C, OX, OX, N) DEVICE memory, checked.
void pool_rand_fprop(const Launch& l, const PoolParams& p, ConstMatView x, const float* picks, MatView y,
                     float scale_targets);
void pool_bprop(const Launch& l, const PoolParams& p, ConstMatView x, ConstMatView y, ConstMatView dy,
                MatView dx, float scale_targets);

}  // namespace alexnet::cuda
