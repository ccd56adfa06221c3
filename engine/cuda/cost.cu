// CUDA cost layers: engine.md §3.23 (cost.logreg), §3.27 (cost.sum2), and the
// softmax+logreg fused gradient of §3.12; the semantics of engine/cpu/cost.cpp.
// Layout (DEVICE memory): labels (1, N) float class indices; probs, x and
// gradients (D, N), case fastest.
// Accumulate-or-overwrite: backward kernels blend into their target (§1.4).
// Sign (§1.1): a backward writes −dE/d(input), E = coeff·(summed cost), not / N.
//
// Costs: per-case (logreg) or per-row (sum2) terms are computed on the device,
// one thread per case or row in the CPU's order, copied back and summed on the
// host in float64 in case (row) order: no atomics, the same value every run.
// logf is the exact library function, not __logf ("close only" against glibc's logf).
#include <string>
#include <vector>

#include "alexnet/cuda/cost.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void logreg_terms_kernel(const float* labels, const float* probs, int64_t classes, int64_t cases,
                                    int topk, float* log_p, double* credits) {
  for (int64_t n = grid_start(); n < cases; n += grid_step()) {
    const int64_t label = static_cast<int64_t>(labels[n]);
    if (label < 0 || label >= classes) {  // never read outside the matrix; the cost becomes NaN
      log_p[n] = __int_as_float(0x7fc00000);
      credits[2 * n] = credits[2 * n + 1] = 0.0;
      continue;
    }
    const float p_label = probs[label * cases + n];
    float max = probs[n];  // sequential scan over classes (§7.2)
    for (int64_t i = 1; i < classes; ++i) {
      const float p = probs[i * cases + n];
      if (p > max) max = p;
    }
    int64_t at_max = 0, above = 0, equal = 0;  // #{p == max}, #{p > p_label}, #{p == p_label}
    for (int64_t i = 0; i < classes; ++i) {
      const float p = probs[i * cases + n];
      at_max += p == max;
      above += p > p_label;
      equal += p == p_label;
    }
    log_p[n] = logf(p_label);
    // top-1: 1/#max when the label is among the maxima; top-k: slots = k − #above (§3.23).
    credits[2 * n] = p_label == max ? 1.0 / static_cast<double>(at_max) : 0.0;
    const int64_t slots = topk - above;
    credits[2 * n + 1] =
        slots <= 0 ? 0.0 : (equal <= slots ? 1.0 : static_cast<double>(slots) / static_cast<double>(equal));
  }
}

__global__ void logreg_softmax_grad_kernel(const float* labels, const float* y, float* dx, int64_t total,
                                           int64_t cases, float coeff, float st) {
  for (int64_t idx = grid_start(); idx < total; idx += grid_step()) {
    const int64_t i = idx / cases, n = idx % cases;
    const float onehot = static_cast<int64_t>(labels[n]) == i ? 1.0f : 0.0f;
    dx[idx] = blend_d(dx[idx], coeff * (onehot - y[idx]), st);  // coeff·(1[i=label] − y_i)
  }
}

__global__ void logreg_grad_kernel(const float* labels, const float* p, float* dp, int64_t total, int64_t cases,
                                   float coeff, float st) {
  for (int64_t idx = grid_start(); idx < total; idx += grid_step()) {
    const int64_t i = idx / cases, n = idx % cases;
    const float num = static_cast<int64_t>(labels[n]) == i ? coeff : 0.0f;
    dp[idx] = blend_d(dp[idx], num / p[idx], st);
  }
}

__global__ void sum2_rows_kernel(const float* x, int64_t rows, int64_t cols, double* out) {
  for (int64_t d = grid_start(); d < rows; d += grid_step()) {
    double sum = 0.0;
    for (int64_t n = 0; n < cols; ++n) {
      const float v = x[d * cols + n];
      sum += static_cast<double>(v * v);
    }
    out[d] = sum;
  }
}

__global__ void scale_blend_kernel(const float* x, float* dx, int64_t total, float k, float st) {
  for (int64_t i = grid_start(); i < total; i += grid_step()) dx[i] = blend_d(dx[i], k * x[i], st);
}

}  // namespace

LogregCosts logreg_cost(const Launch& l, const float* labels, ConstMatView probs, int topk, float* log_p,
                        double* credits) {
  const int64_t n = probs.cols;
  if (n <= 0) return {0.0, 0.0, 0.0};
  logreg_terms_kernel<<<grid_for(n), kThreads, 0, l.stream>>>(labels, probs.data, probs.rows, n, topk, log_p,
                                                              credits);
  check_launch(l, "logreg_terms_kernel");
  std::vector<float> host_log_p(static_cast<size_t>(n));
  std::vector<double> host_credits(static_cast<size_t>(2 * n));
  const std::string what = std::string("copying the costs of layer '") + l.layer + "'";
  check(cudaMemcpyAsync(host_log_p.data(), log_p, host_log_p.size() * sizeof(float), cudaMemcpyDeviceToHost,
                        l.stream), what);
  check(cudaMemcpyAsync(host_credits.data(), credits, host_credits.size() * sizeof(double), cudaMemcpyDeviceToHost,
                        l.stream), what);
  check(cudaStreamSynchronize(l.stream), what);
  double sum_log = 0.0, sum_top1 = 0.0, sum_topk = 0.0;  // cases in order, as engine/cpu/cost.cpp
  for (int64_t c = 0; c < n; ++c) {
    sum_log += static_cast<double>(host_log_p[static_cast<size_t>(c)]);
    sum_top1 += host_credits[static_cast<size_t>(2 * c)];
    sum_topk += host_credits[static_cast<size_t>(2 * c + 1)];
  }
  const double cases = static_cast<double>(n);
  return {-sum_log, cases - sum_top1, cases - sum_topk};
}

void logreg_softmax_bprop(const Launch& l, const float* labels, ConstMatView probs, MatView dx, float coeff,
                          float scale_targets) {
  const int64_t total = dx.size();
  if (total <= 0) return;
  logreg_softmax_grad_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(labels, probs.data, dx.data, total,
                                                                         probs.cols, coeff, scale_targets);
  check_launch(l, "logreg_softmax_grad_kernel");
}

void logreg_bprop(const Launch& l, const float* labels, ConstMatView probs, MatView dprobs, float coeff,
                  float scale_targets) {
  const int64_t total = dprobs.size();
  if (total <= 0) return;
  logreg_grad_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(labels, probs.data, dprobs.data, total, probs.cols,
                                                                 coeff, scale_targets);
  check_launch(l, "logreg_grad_kernel");
}

double sum2_cost(const Launch& l, ConstMatView x, double* rows) {
  if (x.rows <= 0) return 0.0;
  sum2_rows_kernel<<<grid_for(x.rows), kThreads, 0, l.stream>>>(x.data, x.rows, x.cols, rows);
  check_launch(l, "sum2_rows_kernel");
  std::vector<double> terms(static_cast<size_t>(x.rows));
  const std::string what = std::string("copying the cost of layer '") + l.layer + "'";
  check(cudaMemcpyAsync(terms.data(), rows, terms.size() * sizeof(double), cudaMemcpyDeviceToHost, l.stream), what);
  check(cudaStreamSynchronize(l.stream), what);
  double sum = 0.0;  // rows in order
  for (double t : terms) sum += t;
  return sum;
}

void sum2_bprop(const Launch& l, ConstMatView x, MatView dx, float coeff, float scale_targets) {
  const int64_t total = dx.size();
  if (total <= 0) return;
  const float k = -2.0f * coeff;  // (−2·coeff)·x, the CPU's order
  scale_blend_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(x.data, dx.data, total, k, scale_targets);
  check_launch(l, "sum2 scale_blend_kernel");
}

}  // namespace alexnet::cuda

// ---- the cost.logreg layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void logreg_forward(const LayerRun& r) {
  r.op("cost", [&] {
    const LogregCosts c = logreg_cost(r.lc, r.in(0).data, r.in(1), r.spec().topk, r.store.cost_log_p,
                                      r.store.cost_credits);
    r.set_costs({c.neg_log_prob, c.top1_errors, c.topk_errors});
  });
}

void logreg_backward(const LayerRun& r) {  // unless the softmax below took the fused gradient (§3.12)
  if (r.plan_of(r.spec().inputs[1]).fused_logreg || !r.wants(1)) return;
  r.contribute(1, "bprop", [&](MatView dp, float st) {
    logreg_bprop(r.lc, r.in(0).data, r.in(1), dp, r.spec().coeff, st);
  });
}

const bool logreg_registered = register_layer("cost.logreg", {logreg_forward, logreg_backward});

}  // namespace
}  // namespace alexnet::cuda

// ---- the cost.sum2 layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void sum2_forward(const LayerRun& r) {
  r.op("cost", [&] { r.set_costs({sum2_cost(r.lc, r.in(0), r.store.cost_rows)}); });
}

void sum2_backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) { sum2_bprop(r.lc, r.in(0), dx, r.spec().coeff, st); });
}

const bool sum2_registered = register_layer("cost.sum2", {sum2_forward, sum2_backward});

}  // namespace
}  // namespace alexnet::cuda
