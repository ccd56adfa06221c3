// CUDA softmax: engine.md §3.12 (forward and the generic backward; the backward
// fused with cost.logreg is in cost.cu). The float order of engine/cpu/softmax.cpp.
// Layout (DEVICE memory): (D, N), D classes, case fastest; element (i, n) at i·N + n.
// Accumulate-or-overwrite: the forward overwrites y; the backward blends into dx (§1.4).
//
// One thread per case (consecutive threads read consecutive cases: coalesced),
// classes in order: m = max_i x_i (sequential, `>` keeps the first), e_i =
// expf(x_i − m) (exact expf, not __expf), s = Σ e_i from 0 in class order,
// y_i = e_i / s (IEEE division). Backward: t = Σ_j dY_j·y_j from 0, then
// dX_i = y_i·(dY_i − t). y may alias x (x_i is read before y_i is written).
#include "alexnet/cuda/softmax.h"
#include "alexnet/cuda/cost.h"  // logreg_softmax_bprop, the fused gradient
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void softmax_fprop_kernel(const float* x, float* y, int64_t classes, int64_t cases) {
  for (int64_t n = grid_start(); n < cases; n += grid_step()) {
    float m = x[n];
    for (int64_t i = 1; i < classes; ++i) {
      const float v = x[i * cases + n];
      if (v > m) m = v;
    }
    float s = 0.0f;
    for (int64_t i = 0; i < classes; ++i) {
      const float e = expf(x[i * cases + n] - m);
      y[i * cases + n] = e;
      s = s + e;
    }
    for (int64_t i = 0; i < classes; ++i) y[i * cases + n] = y[i * cases + n] / s;
  }
}

__global__ void softmax_bprop_kernel(const float* y, const float* dy, float* dx, int64_t classes, int64_t cases,
                                     float st) {
  for (int64_t n = grid_start(); n < cases; n += grid_step()) {
    float t = 0.0f;
    for (int64_t j = 0; j < classes; ++j) t = t + dy[j * cases + n] * y[j * cases + n];
    for (int64_t i = 0; i < classes; ++i) {
      const int64_t k = i * cases + n;
      const float v = y[k] * (dy[k] - t);
      dx[k] = blend_d(dx[k], v, st);
    }
  }
}

}  // namespace

void softmax_fprop(const Launch& l, ConstMatView x, MatView y) {
  if (x.rows <= 0 || x.cols <= 0) return;
  softmax_fprop_kernel<<<grid_for(x.cols), kThreads, 0, l.stream>>>(x.data, y.data, x.rows, x.cols);
  check_launch(l, "softmax_fprop_kernel");
}

void softmax_bprop(const Launch& l, ConstMatView y, ConstMatView dy, MatView dx, float scale_targets) {
  if (y.rows <= 0 || y.cols <= 0) return;
  softmax_bprop_kernel<<<grid_for(y.cols), kThreads, 0, l.stream>>>(y.data, dy.data, dx.data, y.rows, y.cols,
                                                                    scale_targets);
  check_launch(l, "softmax_bprop_kernel");
}

}  // namespace alexnet::cuda

// ---- the softmax layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  r.op("fprop", [&] { softmax_fprop(r.lc, r.in(0), r.out()); });
}

void backward(const LayerRun& r) {
  if (!r.wants(0)) return;
  if (r.layer.fused_logreg) {  // §3.12: the gradient of the cost.logreg above, through the softmax
    const LayerPlan& cost = r.plan_of(r.layer.consumers[0]);
    const float* labels = r.acts_here(cost.spec.inputs[0]);
    r.contribute(0, "bprop_logreg", [&](MatView dx, float st) {
      logreg_softmax_bprop(r.lc, labels, r.out(), dx, cost.spec.coeff, st);
    });
  } else {
    r.contribute(0, "bprop", [&](MatView dx, float st) { softmax_bprop(r.lc, r.out(), r.dy(), dx, st); });
  }
}

const bool registered = register_layer("softmax", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
