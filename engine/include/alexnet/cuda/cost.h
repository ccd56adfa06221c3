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
// terms: (3N) doubles of device scratch.
LogregCosts logreg_cost(const Launch& l, const float* labels, ConstMatView probs, int topk, double* terms);
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

// cost.crossent (§3.24): [-Σ t·safelog(y), N − Σ correct]; terms: (2N) doubles of device scratch.
CrossentCosts crossent_cost(const Launch& l, ConstMatView targets, ConstMatView probs, double* terms);
// dp <- st·dp + (coeff·t)/y
void crossent_bprop(const Launch& l, ConstMatView targets, ConstMatView probs, MatView dprobs, float coeff,
                    float scale_targets);

// cost.crossent2 (§3.25): −Σ [t·safelog(y) + (1−t)·safelog(1−y)]; terms: (D) doubles.
double crossent2_cost(const Launch& l, ConstMatView targets, ConstMatView y, double* terms);
// dy <- st·dy + coeff·(t/y + (1−t)/(1−y)), the release's "+" (§13 item 2)
void crossent2_bprop(const Launch& l, ConstMatView targets, ConstMatView y, MatView dy, float coeff,
                     float scale_targets);
// The logistic neuron's fused backward (§3.11): dx <- st·dx + coeff·(t − y), y its output.
void crossent2_logistic_bprop(const Launch& l, ConstMatView targets, ConstMatView y, MatView dx, float coeff,
                              float scale_targets);

// cost.rflickr (§3.26): Σ logf(1 + (y − t)²); terms: (D) doubles.
double rflickr_cost(const Launch& l, ConstMatView targets, ConstMatView y, double* terms);
// dy <- st·dy − coeff·2d/(1 + d²), d = y − t
void rflickr_bprop(const Launch& l, ConstMatView targets, ConstMatView y, MatView dy, float coeff,
                   float scale_targets);

// cost.gsum2 (§3.28): Σ_n g_n·Σ_d x[d,n]²; gates (1, N); terms: (D) doubles.
double gsum2_cost(const Launch& l, const float* gates, ConstMatView x, double* terms);
// dG_n <- st·dG_n − coeff·Σ_d x[d,n]²
void gsum2_bprop_gates(const Launch& l, ConstMatView x, float* dgates, float coeff, float scale_targets);
// dX <- st·dX + (−2·coeff·g_n)·x
void gsum2_bprop_x(const Launch& l, const float* gates, ConstMatView x, MatView dx, float coeff, float scale_targets);

}  // namespace alexnet::cuda
