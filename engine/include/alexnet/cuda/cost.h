// CUDA cost layers the net supports (engine.md §3.23, §3.27) and the fused
// softmax+logreg gradient (§3.12), with the semantics of engine/cpu/cost.cpp.
// labels (1, N) float class indices; probs, x and gradients (D, N); DEVICE memory.
// Costs are not summed on the device: per-case (logreg) or per-row (sum2)
// terms are written to device arrays, and the net adds them on the host in the
// CPU's order (docs/cuda.md).
#pragma once

#include "alexnet/cuda/launch.h"
#include "alexnet/matrix.h"

namespace alexnet::cuda {

// Per case n: log_p[n] = logf(p[label_n, n]) (float, as the CPU's term);
// credits[2n] = top-1 credit, credits[2n+1] = top-k credit (§3.23 tie rules), double.
void logreg_cost_terms(const Launch& l, const float* labels, ConstMatView probs, int topk, float* log_p,
                       double* credits);
// dx <- st·dx + coeff·(1[i=label] − y_i)
void logreg_softmax_bprop(const Launch& l, const float* labels, ConstMatView probs, MatView dx, float coeff,
                          float scale_targets);
// dp <- st·dp + (coeff·1[i=label]) / p_i
void logreg_bprop(const Launch& l, const float* labels, ConstMatView probs, MatView dprobs, float coeff,
                  float scale_targets);

// rows[d] = Σ_n (double)(x[d,n]²), n in increasing order.
void sum2_cost_rows(const Launch& l, ConstMatView x, double* rows);
// dx <- st·dx + (−2·coeff)·x
void sum2_bprop(const Launch& l, ConstMatView x, MatView dx, float coeff, float scale_targets);

}  // namespace alexnet::cuda
