// CUDA cost layers: engine.md §3.23 (cost.logreg), §3.24 (cost.crossent), §3.25
// (cost.crossent2), §3.26 (cost.rflickr), §3.27 (cost.sum2), §3.28 (cost.gsum2),
// and the fused gradients computed one layer down (softmax+logreg, §3.12;
// logistic+crossent2, §3.11); the semantics of engine/cpu/cost.cpp.
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

#include "alexnet/core/rank_credits.h"
#include "alexnet/cuda/cost.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

// Per case n: terms[3n] = logf(p[label_n, n]) (the CPU's float32 term, held
// exactly as a double), terms[3n+1] = top-1 credit, terms[3n+2] = top-k credit
// (§3.23 tie rules).
__global__ void logreg_terms_kernel(const float* labels, const float* probs, int64_t classes, int64_t cases,
                                    int topk, double* terms) {
  for (int64_t n = grid_start(); n < cases; n += grid_step()) {
    const int64_t label = static_cast<int64_t>(labels[n]);
    if (label < 0 || label >= classes) {  // never read outside the matrix; the cost becomes NaN
      terms[3 * n] = __longlong_as_double(0x7ff8000000000000LL);
      terms[3 * n + 1] = terms[3 * n + 2] = 0.0;
      continue;
    }
    const RankCredits credits = rank_credits(probs + n, cases, classes, label, topk);
    terms[3 * n] = static_cast<double>(logf(probs[label * cases + n]));
    terms[3 * n + 1] = credits.top1;
    terms[3 * n + 2] = credits.topk;
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

// safelog of §3.24/§3.25: logf(x) for x > 0, else -50.
__device__ __forceinline__ float safelog_d(float x) { return x > 0.0f ? logf(x) : -50.0f; }

// crossent, per case n (classes in order, as the CPU): terms[2n] = Σ_i (double)(t_i·safelog(y_i)),
// terms[2n+1] = 1/#max when some maximal class has a positive target, else 0.
__global__ void crossent_terms_kernel(const float* t, const float* y, int64_t classes, int64_t cases,
                                      double* terms) {
  for (int64_t n = grid_start(); n < cases; n += grid_step()) {
    float max = y[n];
    for (int64_t i = 1; i < classes; ++i)
      if (y[i * cases + n] > max) max = y[i * cases + n];
    double ll = 0.0;
    int64_t at_max = 0;
    bool hit = false;
    for (int64_t i = 0; i < classes; ++i) {
      const float ti = t[i * cases + n], yi = y[i * cases + n];
      ll += static_cast<double>(ti * safelog_d(yi));
      if (yi == max) {
        ++at_max;
        hit = hit || ti > 0.0f;
      }
    }
    terms[2 * n] = ll;
    terms[2 * n + 1] = hit ? 1.0 / static_cast<double>(at_max) : 0.0;
  }
}

// Per-row sums over the cases (n increasing) of the elementwise terms of crossent2,
// rflickr and gsum2, each formed in float32 as the CPU forms it.
enum class RowTerm { kCrossent2, kRflickr, kGsum2 };

template <RowTerm K>
__global__ void row_terms_kernel(const float* a, const float* b, int64_t rows, int64_t cols, double* out) {
  for (int64_t d = grid_start(); d < rows; d += grid_step()) {
    double sum = 0.0;
    for (int64_t n = 0; n < cols; ++n) {
      const int64_t i = d * cols + n;
      if (K == RowTerm::kCrossent2) {  // a = targets, b = y
        sum += static_cast<double>(a[i] * safelog_d(b[i]) + (1.0f - a[i]) * safelog_d(1.0f - b[i]));
      } else if (K == RowTerm::kRflickr) {  // a = targets, b = y
        const float dv = b[i] - a[i];
        sum += static_cast<double>(logf(1.0f + dv * dv));
      } else {  // gsum2: a = gates (1, N), b = x
        sum += static_cast<double>(a[n] * (b[i] * b[i]));
      }
    }
    out[d] = sum;
  }
}

// The element-wise backward kernels of the four costs (the CPU's formulas and order).
enum class CostGrad { kCrossent, kCrossent2, kCrossent2Logistic, kRflickr };

template <CostGrad K>
__global__ void cost_grad_kernel(const float* t, const float* y, float* dst, int64_t total, float coeff, float st) {
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    float g;
    if (K == CostGrad::kCrossent) {
      g = coeff * t[i] / y[i];  // (coeff*t)/y
    } else if (K == CostGrad::kCrossent2) {  // with the release's "+" (§13 item 2)
      g = coeff * (t[i] / y[i] + (1.0f - t[i]) / (1.0f - y[i]));
    } else if (K == CostGrad::kCrossent2Logistic) {
      g = coeff * (t[i] - y[i]);
    } else {
      const float dv = y[i] - t[i];
      g = -coeff * 2.0f * dv / (1.0f + dv * dv);  // (((-coeff)*2)*d) / (1 + d*d)
    }
    dst[i] = blend_d(dst[i], g, st);
  }
}

// gsum2: dG_n <- st*dG_n - coeff * Σ_d x[d,n]² (float32, d increasing).
__global__ void gsum2_gates_kernel(const float* x, float* dg, int64_t rows, int64_t cols, float coeff, float st) {
  for (int64_t n = grid_start(); n < cols; n += grid_step()) {
    float ss = 0.0f;
    for (int64_t d = 0; d < rows; ++d) ss += x[d * cols + n] * x[d * cols + n];
    dg[n] = blend_d(dg[n], -coeff * ss, st);
  }
}

// gsum2: dX <- st*dX + ((-2*coeff)*g_n)*x.
__global__ void gsum2_x_kernel(const float* g, const float* x, float* dx, int64_t total, int64_t cols, float k,
                               float st) {
  for (int64_t i = grid_start(); i < total; i += grid_step()) dx[i] = blend_d(dx[i], k * g[i % cols] * x[i], st);
}

template <CostGrad K>
void cost_grad(const Launch& l, ConstMatView t, ConstMatView y, MatView dst, float coeff, float st, const char* name) {
  const int64_t total = dst.size();
  if (total <= 0) return;
  cost_grad_kernel<K><<<grid_for(total), kThreads, 0, l.stream>>>(t.data, y.data, dst.data, total, coeff, st);
  check_launch(l, name);
}

}  // namespace

// The host copy of `count` device terms, after the kernels queued on l's stream.
static std::vector<double> download_terms(const Launch& l, const double* terms, int64_t count) {
  std::vector<double> host(static_cast<size_t>(count));
  const std::string what = std::string("copying the cost terms of layer '") + l.layer + "'";
  check(cudaMemcpyAsync(host.data(), terms, host.size() * sizeof(double), cudaMemcpyDeviceToHost, l.stream), what);
  check(cudaStreamSynchronize(l.stream), what);
  return host;
}

LogregCosts logreg_cost(const Launch& l, const float* labels, ConstMatView probs, int topk, double* terms) {
  const int64_t n = probs.cols;
  if (n <= 0) return {0.0, 0.0, 0.0};
  logreg_terms_kernel<<<grid_for(n), kThreads, 0, l.stream>>>(labels, probs.data, probs.rows, n, topk, terms);
  check_launch(l, "logreg_terms_kernel");
  const std::vector<double> host = download_terms(l, terms, 3 * n);
  double sum_log = 0.0, sum_top1 = 0.0, sum_topk = 0.0;  // cases in order, as engine/cpu/cost.cpp
  for (int64_t c = 0; c < n; ++c) {
    sum_log += host[static_cast<size_t>(3 * c)];
    sum_top1 += host[static_cast<size_t>(3 * c + 1)];
    sum_topk += host[static_cast<size_t>(3 * c + 2)];
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
  double sum = 0.0;  // rows in order
  for (double t : download_terms(l, rows, x.rows)) sum += t;
  return sum;
}

CrossentCosts crossent_cost(const Launch& l, ConstMatView targets, ConstMatView probs, double* terms) {
  const int64_t n = probs.cols;
  if (n <= 0) return {0.0, 0.0};
  crossent_terms_kernel<<<grid_for(n), kThreads, 0, l.stream>>>(targets.data, probs.data, probs.rows, n, terms);
  check_launch(l, "crossent_terms_kernel");
  const std::vector<double> host = download_terms(l, terms, 2 * n);
  double ll = 0.0, correct = 0.0;  // cases in order
  for (int64_t c = 0; c < n; ++c) {
    ll += host[static_cast<size_t>(2 * c)];
    correct += host[static_cast<size_t>(2 * c + 1)];
  }
  return {-ll, static_cast<double>(n) - correct};
}

// The sum of a row-terms kernel's rows, in row order.
template <RowTerm K>
static double row_sum(const Launch& l, const float* a, ConstMatView b, double* terms, const char* name) {
  if (b.rows <= 0) return 0.0;
  row_terms_kernel<K><<<grid_for(b.rows), kThreads, 0, l.stream>>>(a, b.data, b.rows, b.cols, terms);
  check_launch(l, name);
  double sum = 0.0;
  for (double v : download_terms(l, terms, b.rows)) sum += v;
  return sum;
}

double crossent2_cost(const Launch& l, ConstMatView targets, ConstMatView y, double* terms) {
  return -row_sum<RowTerm::kCrossent2>(l, targets.data, y, terms, "crossent2 row_terms_kernel");
}

double rflickr_cost(const Launch& l, ConstMatView targets, ConstMatView y, double* terms) {
  return row_sum<RowTerm::kRflickr>(l, targets.data, y, terms, "rflickr row_terms_kernel");
}

double gsum2_cost(const Launch& l, const float* gates, ConstMatView x, double* terms) {
  return row_sum<RowTerm::kGsum2>(l, gates, x, terms, "gsum2 row_terms_kernel");
}

void crossent_bprop(const Launch& l, ConstMatView targets, ConstMatView probs, MatView dprobs, float coeff,
                    float scale_targets) {
  cost_grad<CostGrad::kCrossent>(l, targets, probs, dprobs, coeff, scale_targets, "crossent cost_grad_kernel");
}

void crossent2_bprop(const Launch& l, ConstMatView targets, ConstMatView y, MatView dy, float coeff,
                     float scale_targets) {
  cost_grad<CostGrad::kCrossent2>(l, targets, y, dy, coeff, scale_targets, "crossent2 cost_grad_kernel");
}

void crossent2_logistic_bprop(const Launch& l, ConstMatView targets, ConstMatView y, MatView dx, float coeff,
                              float scale_targets) {
  cost_grad<CostGrad::kCrossent2Logistic>(l, targets, y, dx, coeff, scale_targets,
                                          "crossent2 logistic cost_grad_kernel");
}

void rflickr_bprop(const Launch& l, ConstMatView targets, ConstMatView y, MatView dy, float coeff,
                   float scale_targets) {
  cost_grad<CostGrad::kRflickr>(l, targets, y, dy, coeff, scale_targets, "rflickr cost_grad_kernel");
}

void gsum2_bprop_gates(const Launch& l, ConstMatView x, float* dgates, float coeff, float scale_targets) {
  if (x.cols <= 0) return;
  gsum2_gates_kernel<<<grid_for(x.cols), kThreads, 0, l.stream>>>(x.data, dgates, x.rows, x.cols, coeff,
                                                                   scale_targets);
  check_launch(l, "gsum2_gates_kernel");
}

void gsum2_bprop_x(const Launch& l, const float* gates, ConstMatView x, MatView dx, float coeff, float scale_targets) {
  const int64_t total = dx.size();
  if (total <= 0) return;
  const float k = -2.0f * coeff;  // ((-2*coeff)*g)*x, the CPU's order
  gsum2_x_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(gates, x.data, dx.data, total, x.cols, k,
                                                             scale_targets);
  check_launch(l, "gsum2_x_kernel");
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
    const LogregCosts c = logreg_cost(r.lc, r.in(0).data, r.in(1), r.spec().topk, r.store.cost_terms);
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
  r.op("cost", [&] { r.set_costs({sum2_cost(r.lc, r.in(0), r.store.cost_terms)}); });
}

void sum2_backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) { sum2_bprop(r.lc, r.in(0), dx, r.spec().coeff, st); });
}

const bool sum2_registered = register_layer("cost.sum2", {sum2_forward, sum2_backward});

}  // namespace
}  // namespace alexnet::cuda

// ---- cost.crossent, cost.crossent2, cost.rflickr, cost.gsum2 in the CUDA net (layer.h) ------------

namespace alexnet::cuda {
namespace {

void crossent_forward(const LayerRun& r) {
  r.op("cost", [&] {
    const CrossentCosts c = crossent_cost(r.lc, r.in(0), r.in(1), r.store.cost_terms);
    r.set_costs({c.neg_log_lik, c.errors});
  });
}

void crossent_backward(const LayerRun& r) {
  // §3.24, as written: a softmax whose only consumer is this cost gets no gradient.
  const LayerPlan& probs = r.plan_of(r.spec().inputs[1]);
  if ((probs.is("softmax") && probs.consumers.size() == 1) || !r.wants(1)) return;
  r.contribute(1, "bprop", [&](MatView dp, float st) {
    crossent_bprop(r.lc, r.in(0), r.in(1), dp, r.spec().coeff, st);
  });
}

void crossent2_forward(const LayerRun& r) {
  r.op("cost", [&] { r.set_costs({crossent2_cost(r.lc, r.in(0), r.in(1), r.store.cost_terms)}); });
}

void crossent2_backward(const LayerRun& r) {  // unless the logistic below took the fused gradient (§3.11)
  if (r.plan_of(r.spec().inputs[1]).fused_crossent2 || !r.wants(1)) return;
  r.contribute(1, "bprop", [&](MatView dy, float st) {
    crossent2_bprop(r.lc, r.in(0), r.in(1), dy, r.spec().coeff, st);
  });
}

void rflickr_forward(const LayerRun& r) {
  r.op("cost", [&] { r.set_costs({rflickr_cost(r.lc, r.in(0), r.in(1), r.store.cost_terms)}); });
}

void rflickr_backward(const LayerRun& r) {
  if (!r.wants(1)) return;
  r.contribute(1, "bprop", [&](MatView dy, float st) {
    rflickr_bprop(r.lc, r.in(0), r.in(1), dy, r.spec().coeff, st);
  });
}

void gsum2_forward(const LayerRun& r) {
  r.op("cost", [&] { r.set_costs({gsum2_cost(r.lc, r.in(0).data, r.in(1), r.store.cost_terms)}); });
}

void gsum2_backward(const LayerRun& r) {
  if (r.wants(0))
    r.contribute(0, "bprop_gates", [&](MatView dg, float st) {
      gsum2_bprop_gates(r.lc, r.in(1), dg.data, r.spec().coeff, st);
    });
  if (r.wants(1))
    r.contribute(1, "bprop", [&](MatView dx, float st) {
      gsum2_bprop_x(r.lc, r.in(0).data, r.in(1), dx, r.spec().coeff, st);
    });
}

const bool crossent_registered = register_layer("cost.crossent", {crossent_forward, crossent_backward});
const bool crossent2_registered = register_layer("cost.crossent2", {crossent2_forward, crossent2_backward});
const bool rflickr_registered = register_layer("cost.rflickr", {rflickr_forward, rflickr_backward});
const bool gsum2_registered = register_layer("cost.gsum2", {gsum2_forward, gsum2_backward});

}  // namespace
}  // namespace alexnet::cuda
