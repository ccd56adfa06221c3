// cost.tica (engine.md §3.29).
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"

namespace alexnet::cpu {

// a[r·N + n] <- 1/(0.001 + sqrt(Σ_{q∈W(p)} x[c,q,n]²)), a float32 value held in a double
// (the layer's working space is doubles), W rnorm's clipped window of side size_x
// (norm_window); x: (C·S·S, N), a: C·S·S·N doubles.
void tica_a(const TicaParams& p, ConstMatView x, double* a);
// The reported cost Σ a (§3.29, "acknowledged wrong"): per row, the cases added in
// float64 in order, then the rows in order. a as tica_a leaves it, (rows, cols).
double tica_cost(const double* a, int64_t rows, int64_t cols);
// dx <- blend(dx, g, st) with, per element, S = Σ_{q∈W(p)} a[c,q] (raster order, the
// same window as the forward, not its adjoint: exact only for odd size_x) and
// g = (−coeff·x)·S when st == 0 (the overwrite path), g = (−coeff·x)·sqrt(S) otherwise
// (the accumulate path), both as written (§13 item 3). x, a, dx: (C·S·S, N).
void tica_bprop(const TicaParams& p, ConstMatView x, const double* a, MatView dx, float coeff, float scale_targets);

}  // namespace alexnet::cpu
