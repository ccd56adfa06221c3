// Cost layers, engine.md §3.23–§3.28: logreg, crossent, crossent2, rflickr,
// sum2, gsum2, plus the two backward kernels the release runs inside the layer
// below a cost (softmax+logreg, §3.12; logistic+crossent2, §3.11).
//
// Layouts (§1.2), case fastest:
//   labels   (1, N)  float class indices 0..D-1 (the binding checks them)
//   gates    (1, N)
//   probs, y, x, targets and every gradient: (D, N)
//
// Sign convention (§1.1): a backward kernel writes delta = -dE/d(input) with
// E = coeff * (summed cost), not divided by N, blended into its target with
// scale_targets (§1.4). Reported costs are sums over the minibatch; coeff does
// not scale them (§3.23).
//
// Reported costs: each per-element (or per-case) term is computed in float32,
// then the terms are summed in float64 in a fixed sequential order (stated per
// function), so the value does not depend on the thread count.
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"  // LogregCosts

namespace alexnet::cpu {

// ---- cost.logreg (§3.23) ----------------------------------------------------
// Terms per case (cases in order): log p[label] in float32, credits in float64.
LogregCosts logreg_cost(const float* labels, ConstMatView probs, int topk);

// Softmax backward fused with logreg (§3.12): dX_i <- st*dX_i + coeff*(1[i=label] - y_i).
void logreg_softmax_bprop(const float* labels, ConstMatView probs, MatView dx, float coeff, float scale_targets);

// Unfused logreg backward (§3.23): dP_i <- st*dP_i + (coeff*1[i=label]) / p_i.
// As written, a class other than the label with p_i == 0 gets 0/0 = NaN.
void logreg_bprop(const float* labels, ConstMatView probs, MatView dprobs, float coeff, float scale_targets);

// ---- cost.crossent (§3.24) ----------------------------------------------------
// Terms per case (cases in order, classes in order within a case).
CrossentCosts crossent_cost(ConstMatView targets, ConstMatView probs);

// dY_i <- st*dY_i + coeff*t_i/y_i. In the release this runs only when the
// softmax below has other consumers or the input is not a softmax; with a
// softmax as the single consumer nothing is computed (§3.24, §13 item 1) —
// that choice belongs to the graph, not to this kernel.
void crossent_bprop(ConstMatView targets, ConstMatView probs, MatView dprobs, float coeff, float scale_targets);

// ---- cost.crossent2 (§3.25) ---------------------------------------------------
// -sum A, A = t*safelog(y) + (1-t)*safelog(1-y); terms in storage order.
double crossent2_cost(ConstMatView targets, ConstMatView y);

// Unfused backward AS WRITTEN (§13 item 2): dY <- st*dY + coeff*(t/y + (1-t)/(1-y)).
// The true -dE/dy has a minus between the two fractions.
void crossent2_bprop(ConstMatView targets, ConstMatView y, MatView dy, float coeff, float scale_targets);

// Logistic neuron backward fused with crossent2 (§3.11): dX <- st*dX + coeff*(t - y),
// y the logistic output; the neuron's own dY is ignored.
void crossent2_logistic_bprop(ConstMatView targets, ConstMatView y, MatView dx, float coeff, float scale_targets);

// ---- cost.rflickr (§3.26) -----------------------------------------------------
// sum A, A = log(1 + d^2), d = y - t; terms in storage order.
double rflickr_cost(ConstMatView targets, ConstMatView y);
// dY <- st*dY - coeff*2d/(1 + d^2)
void rflickr_bprop(ConstMatView targets, ConstMatView y, MatView dy, float coeff, float scale_targets);

// ---- cost.sum2 (§3.27) --------------------------------------------------------
// sum x^2; terms in storage order.
double sum2_cost(ConstMatView x);
// dX <- st*dX - 2*coeff*x
void sum2_bprop(ConstMatView x, MatView dx, float coeff, float scale_targets);

// ---- cost.gsum2 (§3.28) -------------------------------------------------------
// sum_n g_n * sum_d x[d,n]^2; terms g_n*x^2 in storage order.
double gsum2_cost(const float* gates, ConstMatView x);
// dG_n <- st*dG_n - coeff * sum_d x[d,n]^2 (float32, d in increasing order). dgates: (1, N).
void gsum2_bprop_gates(ConstMatView x, float* dgates, float coeff, float scale_targets);
// dX <- st*dX - 2*coeff*g_n*x
void gsum2_bprop_x(const float* gates, ConstMatView x, MatView dx, float coeff, float scale_targets);

}  // namespace alexnet::cpu
