// Cost layers: engine.md §3.23 (logreg), §3.24 (crossent), §3.25 (crossent2),
// §3.26 (rflickr), §3.27 (sum2), §3.28 (gsum2); the fused backward kernels of
// §3.12 (softmax+logreg) and §3.11 (logistic+crossent2) live here too because
// they are the cost's gradient computed one layer down.
// Layout: (D, N) case fastest; labels and gates (1, N). See cost.h.
// Accumulate-or-overwrite: every backward blends into its target with
// scale_targets (§1.4); cost functions return values and write nothing.
//
// Floating point: the release used __logf (logreg, safelog, rflickr) and
// __fdividef (unfused logreg and crossent gradients); here std::log and true
// division ("close only", §7.3). Formulas are evaluated left to right as
// written in the comments; no FMA contraction.
//
// Reported costs: float32 terms summed in float64, sequentially in the order
// cost.h states, on one thread (the sums are small next to a layer's work, and
// a fixed order keeps them independent of the thread count). Backward kernels
// are element-wise (or one case per thread) and so thread-count independent.
#include "alexnet/core/rank_credits.h"
#include "alexnet/cpu/cost.h"
#include "alexnet/cpu/layer.h"

#include <cmath>
#include <cstdint>

namespace alexnet::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 15;

// safelog of §3.24/§3.25: log(x) for x > 0, else -50.
inline float safelog(float x) { return x > 0.0f ? std::log(x) : -50.0f; }

inline int64_t label_at(const float* labels, int64_t n) { return static_cast<int64_t>(labels[n]); }

// dst[i] <- blend(dst[i], f(i)) over all elements, one thread per element.
template <class F>
void blend_map(MatView dst, float scale_targets, F f) {
  const int64_t count = dst.size();
  float* out = dst.data;
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) out[i] = blend(out[i], f(i), scale_targets);
}

}  // namespace

// ---- logreg -------------------------------------------------------------------

LogregCosts logreg_cost(const float* labels, ConstMatView probs, int topk) {
  const int64_t classes = probs.rows, cases = probs.cols;
  double sum_log = 0.0, sum_top1 = 0.0, sum_topk = 0.0;
  // labels index rows, so classes >= 1 whenever cases >= 1 (the binding checks labels).
  for (int64_t n = 0; n < cases; ++n) {
    const int64_t label = label_at(labels, n);
    sum_log += static_cast<double>(std::log(probs(label, n)));
    const RankCredits credits = rank_credits(probs.data + n, cases, classes, label, topk);
    sum_top1 += credits.top1;
    sum_topk += credits.topk;
  }
  const double n = static_cast<double>(cases);
  return LogregCosts{-sum_log, n - sum_top1, n - sum_topk};
}

void logreg_softmax_bprop(const float* labels, ConstMatView probs, MatView dx, float coeff, float scale_targets) {
  const int64_t cases = probs.cols;
  const float* y = probs.data;
  blend_map(dx, scale_targets, [=](int64_t idx) {
    const int64_t i = idx / cases, n = idx % cases;
    const float onehot = label_at(labels, n) == i ? 1.0f : 0.0f;
    return coeff * (onehot - y[idx]);  // coeff*(1[i=label] - y_i)
  });
}

void logreg_bprop(const float* labels, ConstMatView probs, MatView dprobs, float coeff, float scale_targets) {
  const int64_t cases = probs.cols;
  const float* p = probs.data;
  blend_map(dprobs, scale_targets, [=](int64_t idx) {
    const int64_t i = idx / cases, n = idx % cases;
    const float num = label_at(labels, n) == i ? coeff : 0.0f;  // coeff*1[i=label]
    return num / p[idx];
  });
}

// ---- crossent -----------------------------------------------------------------

CrossentCosts crossent_cost(ConstMatView targets, ConstMatView probs) {
  const int64_t classes = probs.rows, cases = probs.cols;
  double sum_ll = 0.0, sum_correct = 0.0;
  if (classes == 0) return CrossentCosts{0.0, static_cast<double>(cases)};  // nothing is ever correct
  for (int64_t n = 0; n < cases; ++n) {
    float max = probs(0, n);
    for (int64_t i = 1; i < classes; ++i)
      if (probs(i, n) > max) max = probs(i, n);
    int64_t at_max = 0;
    bool hit = false;  // some maximal class has a positive target
    for (int64_t i = 0; i < classes; ++i) {
      const float t = targets(i, n), y = probs(i, n);
      sum_ll += static_cast<double>(t * safelog(y));
      if (y == max) {
        ++at_max;
        hit = hit || t > 0.0f;
      }
    }
    if (hit) sum_correct += 1.0 / static_cast<double>(at_max);
  }
  return CrossentCosts{-sum_ll, static_cast<double>(cases) - sum_correct};
}

void crossent_bprop(ConstMatView targets, ConstMatView probs, MatView dprobs, float coeff, float scale_targets) {
  const float* t = targets.data;
  const float* y = probs.data;
  blend_map(dprobs, scale_targets, [=](int64_t i) { return coeff * t[i] / y[i]; });  // (coeff*t)/y
}

// ---- crossent2 ----------------------------------------------------------------

double crossent2_cost(ConstMatView targets, ConstMatView y) {
  double sum = 0.0;
  for (int64_t i = 0; i < y.size(); ++i) {
    const float t = targets.data[i], v = y.data[i];
    sum += static_cast<double>(t * safelog(v) + (1.0f - t) * safelog(1.0f - v));
  }
  return -sum;
}

void crossent2_bprop(ConstMatView targets, ConstMatView y, MatView dy, float coeff, float scale_targets) {
  const float* t = targets.data;
  const float* v = y.data;
  // The "+" is the release's (§13 item 2), kept on purpose: it is not -dE/dy.
  blend_map(dy, scale_targets,
            [=](int64_t i) { return coeff * (t[i] / v[i] + (1.0f - t[i]) / (1.0f - v[i])); });
}

void crossent2_logistic_bprop(ConstMatView targets, ConstMatView y, MatView dx, float coeff, float scale_targets) {
  const float* t = targets.data;
  const float* v = y.data;
  blend_map(dx, scale_targets, [=](int64_t i) { return coeff * (t[i] - v[i]); });
}

// ---- rflickr ------------------------------------------------------------------

double rflickr_cost(ConstMatView targets, ConstMatView y) {
  double sum = 0.0;
  for (int64_t i = 0; i < y.size(); ++i) {
    const float d = y.data[i] - targets.data[i];
    sum += static_cast<double>(std::log(1.0f + d * d));
  }
  return sum;
}

void rflickr_bprop(ConstMatView targets, ConstMatView y, MatView dy, float coeff, float scale_targets) {
  const float* t = targets.data;
  const float* v = y.data;
  blend_map(dy, scale_targets, [=](int64_t i) {
    const float d = v[i] - t[i];
    return -coeff * 2.0f * d / (1.0f + d * d);  // (((-coeff)*2)*d) / (1 + d*d)
  });
}

// ---- sum2 ---------------------------------------------------------------------

double sum2_cost(ConstMatView x) {
  double sum = 0.0;
  for (int64_t i = 0; i < x.size(); ++i) sum += static_cast<double>(x.data[i] * x.data[i]);
  return sum;
}

void sum2_bprop(ConstMatView x, MatView dx, float coeff, float scale_targets) {
  const float* in = x.data;
  const float k = -2.0f * coeff;
  blend_map(dx, scale_targets, [=](int64_t i) { return k * in[i]; });  // (-2*coeff)*x
}

// ---- gsum2 --------------------------------------------------------------------

double gsum2_cost(const float* gates, ConstMatView x) {
  double sum = 0.0;
  for (int64_t d = 0; d < x.rows; ++d)
    for (int64_t n = 0; n < x.cols; ++n) sum += static_cast<double>(gates[n] * (x(d, n) * x(d, n)));
  return sum;
}

void gsum2_bprop_gates(ConstMatView x, float* dgates, float coeff, float scale_targets) {
  const int64_t features = x.rows, cases = x.cols;
#pragma omp parallel for schedule(static) if (features * cases >= kParallelMin)
  for (int64_t n = 0; n < cases; ++n) {
    float ss = 0.0f;
    for (int64_t d = 0; d < features; ++d) ss += x(d, n) * x(d, n);  // d in increasing order
    dgates[n] = blend(dgates[n], -coeff * ss, scale_targets);
  }
}

void gsum2_bprop_x(const float* gates, ConstMatView x, MatView dx, float coeff, float scale_targets) {
  const int64_t cases = x.cols;
  const float* in = x.data;
  const float k = -2.0f * coeff;
  blend_map(dx, scale_targets, [=](int64_t i) { return k * gates[i % cases] * in[i]; });  // ((-2*coeff)*g)*x
}

}  // namespace alexnet::cpu

// ---- the cost.logreg layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void logreg_forward(const LayerRun& r) {
  const LogregCosts c = logreg_cost(r.in(0).data, r.in(1), r.spec().topk);
  r.set_costs({c.neg_log_prob, c.top1_errors, c.topk_errors});
}

void logreg_backward(const LayerRun& r) {  // unless the softmax below took the fused gradient (§3.12)
  if (r.plan_of(r.spec().inputs[1]).fused_logreg || !r.wants(1)) return;
  float st = 0.0f;
  const MatView dp = r.target(1, &st);
  logreg_bprop(r.in(0).data, r.in(1), dp, r.spec().coeff, st);
}

const bool logreg_registered = register_layer("cost.logreg", {logreg_forward, logreg_backward});

}  // namespace
}  // namespace alexnet::cpu

// ---- the cost.sum2 layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void sum2_forward(const LayerRun& r) { r.set_costs({sum2_cost(r.in(0))}); }

void sum2_backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) { sum2_bprop(r.in(0), dx, r.spec().coeff, st); });
}

const bool sum2_registered = register_layer("cost.sum2", {sum2_forward, sum2_backward});

}  // namespace
}  // namespace alexnet::cpu

// ---- cost.crossent, cost.crossent2, cost.rflickr, cost.gsum2 in the CPU net ----------------------

namespace alexnet::cpu {
namespace {

void crossent_forward(const LayerRun& r) {
  const CrossentCosts c = crossent_cost(r.in(0), r.in(1));
  r.set_costs({c.neg_log_lik, c.errors});
}

void crossent_backward(const LayerRun& r) {
  // §3.24, as written: a softmax whose only consumer is this cost gets no gradient
  // (the release's fused kernel exists but is never called).
  const LayerPlan& probs = r.plan_of(r.spec().inputs[1]);
  if ((probs.is("softmax") && probs.consumers.size() == 1) || !r.wants(1)) return;
  float st = 0.0f;
  const MatView dp = r.target(1, &st);
  crossent_bprop(r.in(0), r.in(1), dp, r.spec().coeff, st);
}

void crossent2_forward(const LayerRun& r) { r.set_costs({crossent2_cost(r.in(0), r.in(1))}); }

void crossent2_backward(const LayerRun& r) {  // unless the logistic below took the fused gradient (§3.11)
  if (r.plan_of(r.spec().inputs[1]).fused_crossent2 || !r.wants(1)) return;
  float st = 0.0f;
  const MatView dy = r.target(1, &st);
  crossent2_bprop(r.in(0), r.in(1), dy, r.spec().coeff, st);  // with the release's "+" (§13 item 2)
}

void rflickr_forward(const LayerRun& r) { r.set_costs({rflickr_cost(r.in(0), r.in(1))}); }

void rflickr_backward(const LayerRun& r) {
  if (!r.wants(1)) return;
  float st = 0.0f;
  const MatView dy = r.target(1, &st);
  rflickr_bprop(r.in(0), r.in(1), dy, r.spec().coeff, st);
}

void gsum2_forward(const LayerRun& r) { r.set_costs({gsum2_cost(r.in(0).data, r.in(1))}); }

void gsum2_backward(const LayerRun& r) {
  float st = 0.0f;
  if (r.wants(0)) gsum2_bprop_gates(r.in(1), r.target(0, &st).data, r.spec().coeff, st);
  if (r.wants(1)) {
    const MatView dx = r.target(1, &st);
    gsum2_bprop_x(r.in(0).data, r.in(1), dx, r.spec().coeff, st);
  }
}

const bool crossent_registered = register_layer("cost.crossent", {crossent_forward, crossent_backward});
const bool crossent2_registered = register_layer("cost.crossent2", {crossent2_forward, crossent2_backward});
const bool rflickr_registered = register_layer("cost.rflickr", {rflickr_forward, rflickr_backward});
const bool gsum2_registered = register_layer("cost.gsum2", {gsum2_forward, gsum2_backward});

}  // namespace
}  // namespace alexnet::cpu
