// softmax: engine.md §3.12 (forward and the generic backward; the backward
// fused with cost.logreg is logreg_softmax_bprop in cost.cpp).
// Layout: (D, N), D classes, case fastest (§1.2); element (i, n) at i*N + n.
// Accumulate-or-overwrite: forward overwrites Y; backward blends into dX with
// scale_targets (§1.4).
//
// Accumulation order (§7.2), per case n, in float32:
//   m = max_i x_i        sequential over classes i = 0..D-1 (`>` keeps the first)
//   e_i = exp(x_i - m)   std::exp where the release used __expf ("close only", §7.3)
//   s = sum_i e_i        sequential over i = 0..D-1, starting from 0
//   y_i = e_i / s        true division where the release used __fdividef
// Backward: t = sum_j dY_j*y_j sequential over j from 0, then
//   dX_i = y_i*(dY_i - t).
// That is the spec's y_i * sum_j dY_j (1[i=j] - y_j) regrouped (O(D) instead
// of O(D^2) per case); it rounds differently from the per-i sum, which the
// parity class "close only" covers.
//
// Threads: cases are split into fixed blocks of kBlock columns; a block is
// processed by one thread, class by class (rows stream through memory), and
// every case keeps its own sequential accumulators, so the result does not
// depend on the thread count. Scratch: three small arrays on the stack.
#include "alexnet/cpu/softmax.h"
#include "alexnet/cpu/cost.h"  // logreg_softmax_bprop, the fused gradient
#include "alexnet/cpu/layer.h"

#include <algorithm>
#include <cmath>

namespace alexnet::cpu {

namespace {
constexpr int64_t kBlock = 64;  // cases per block
}

void softmax_fprop(ConstMatView x, MatView y) {
  const int64_t classes = x.rows, cases = x.cols;
  if (classes == 0) return;
  const int64_t blocks = (cases + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (classes * cases >= (1 << 15))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t n0 = blk * kBlock, width = std::min(kBlock, cases - n0);
    float m[kBlock], s[kBlock];
    for (int64_t k = 0; k < width; ++k) {
      m[k] = x(0, n0 + k);
      s[k] = 0.0f;
    }
    for (int64_t i = 1; i < classes; ++i)
      for (int64_t k = 0; k < width; ++k) {
        const float v = x(i, n0 + k);
        if (v > m[k]) m[k] = v;
      }
    for (int64_t i = 0; i < classes; ++i)
      for (int64_t k = 0; k < width; ++k) {
        const float e = std::exp(x(i, n0 + k) - m[k]);  // x read before y is written: in place is safe
        y(i, n0 + k) = e;
        s[k] += e;
      }
    for (int64_t i = 0; i < classes; ++i)
      for (int64_t k = 0; k < width; ++k) y(i, n0 + k) = y(i, n0 + k) / s[k];
  }
}

void softmax_bprop(ConstMatView y, ConstMatView dy, MatView dx, float scale_targets) {
  const int64_t classes = y.rows, cases = y.cols;
  const int64_t blocks = (cases + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (classes * cases >= (1 << 15))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t n0 = blk * kBlock, width = std::min(kBlock, cases - n0);
    float t[kBlock];
    for (int64_t k = 0; k < width; ++k) t[k] = 0.0f;
    for (int64_t j = 0; j < classes; ++j)
      for (int64_t k = 0; k < width; ++k) t[k] += dy(j, n0 + k) * y(j, n0 + k);
    for (int64_t i = 0; i < classes; ++i)
      for (int64_t k = 0; k < width; ++k) {
        const float v = y(i, n0 + k) * (dy(i, n0 + k) - t[k]);  // both read before dX is written
        dx(i, n0 + k) = blend(dx(i, n0 + k), v, scale_targets);
      }
  }
}

}  // namespace alexnet::cpu

// ---- the softmax layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) { softmax_fprop(r.in(0), r.out()); }

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    if (r.layer.fused_logreg) {  // §3.12: the gradient of the cost.logreg above, through the softmax
      const LayerPlan& cost = r.plan_of(r.layer.consumers[0]);
      logreg_softmax_bprop(r.acts_of(cost.spec.inputs[0]).data, r.out(), dx, cost.spec.coeff, st);
    } else {
      softmax_bprop(r.out(), r.dy(), dx, st);
    }
  });
}

const bool registered = register_layer("softmax", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
