// CUDA cost layers the net supports (engine.md §3.23, §3.27) and the fused
// softmax+logreg gradient (§3.12), with the semantics of engine/cpu/cost.cpp.
// labels (1, N) float class indices; probs, x and gradients (D, N); DEVICE memory.
// The cost functions return the sums the CPU kernels return, added in the
// same order: per-case (logreg) or per-row (sum2) terms are formed on the
// device into caller-provided scratch, copied back, and summed on the host in
// float64 (docs/cuda.md). They synchronise the launch's stream.
#pragma once

#include "alexnet/cuda/launch.h"
#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"  // LogregCosts

namespace alexnet::cuda {

// [-Σ log p[label_n], N − Σ top-1 credit, N − Σ top-k credit] (§3.23 tie rules).
// log_p: (N) floats and credits: (2N) doubles of device scratch.
LogregCosts logreg_cost(const Launch& l, const float* labels, ConstMatView probs, int topk, float* log_p,
                        double* credits);
// dx <- st·dx + coeff·(1[i=label] − y_i)
void logreg_softmax_bprop(const Launch& l, const float* labels, ConstMatView probs, MatView dx, float coeff,
                          float scale_targets);
// dp <- st·dp + (coeff·1[i=label]) / p_i
void logreg_bprop(const Launch& l, const float* labels, ConstMatView probs, MatView dprobs, float coeff,
                  float scale_targets);

// Σ_d Σ_n (double)(x[d,n]²): one sum per row (n increasing), then the rows in
// order (the CPU keeps one running sum in storage order, so the last bits may
// differ); rows: (D) doubles of device scratch.
double sum2_cost(const Launch& l, ConstMatView x, double* rows);
// dx <- st·dx + (−2·coeff)·x
void sum2_bprop(const Launch& l, ConstMatView x, MatView dx, float coeff, float scale_targets);

}  // namespace alexnet::cuda
