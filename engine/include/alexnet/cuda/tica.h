// CUDA cost.tica (engine.md §3.29), as engine/cpu/tica.cpp. x, a, dx: (C·S·S, N)
// DEVICE memory.
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

// a <- 1/(0.001 + sqrt(Σ_W x²)) (rnorm's window); the sum of a, each row's cases in
// float64 in order, then the rows in order on the host; rows: (C·S·S) doubles of
// device scratch. Synchronises the launch's stream.
double tica_cost(const Launch& l, const TicaParams& p, ConstMatView x, float* a, double* rows);
// a as above, then dx <- blend(dx, (−coeff·x)·Σ_W a) when st == 0, or with sqrt(Σ_W a)
// otherwise (§13 item 3, as written).
void tica_bprop(const Launch& l, const TicaParams& p, ConstMatView x, float* a, MatView dx, float coeff,
                float scale_targets);

}  // namespace alexnet::cuda
