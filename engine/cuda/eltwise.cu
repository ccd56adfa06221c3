// CUDA eltsum and eltmax: engine.md §3.13, §3.14; the operations of
// engine/cpu/eltwise.cpp. Layout (DEVICE memory): every matrix (D, N), case
// fastest, all of one shape; element-wise, so bit-identical to the CPU.
// Accumulate-or-overwrite: blend (§1.4), except eltmax's forward (overwrites).
#include "alexnet/cuda/eltwise.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void eltsum_kernel(const float* x, float* y, int64_t total, float coeff, float st) {
  for (int64_t i = grid_start(); i < total; i += grid_step()) y[i] = blend_d(y[i], x[i], st, coeff);
}

// y = a > b ? a : b (b wins ties and NaN comparisons); y may alias a.
__global__ void eltmax_pair_kernel(const float* a, const float* b, float* y, int64_t total) {
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const float u = a[i], v = b[i];
    y[i] = u > v ? u : v;
  }
}

__global__ void eltmax_grad_kernel(const float* x, const float* y, const float* dy, float* dx, int64_t total,
                                   float st) {
  for (int64_t i = grid_start(); i < total; i += grid_step())
    dx[i] = blend_d(dx[i], dy[i] * static_cast<float>(x[i] == y[i]), st);
}

}  // namespace

void eltsum_fprop(const Launch& l, ConstMatView x, MatView y, float coeff, float scale_targets) {
  const int64_t total = x.size();
  if (total <= 0) return;
  eltsum_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(x.data, y.data, total, coeff, scale_targets);
  check_launch(l, "eltsum_kernel");
}

void eltsum_bprop(const Launch& l, ConstMatView dy, MatView dx, float coeff, float scale_targets) {
  const int64_t total = dy.size();
  if (total <= 0) return;
  eltsum_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(dy.data, dx.data, total, coeff, scale_targets);
  check_launch(l, "eltsum_kernel (backward)");
}

void eltmax_fprop(const Launch& l, const ConstMatView* xs, int64_t count, MatView y) {
  const int64_t total = y.size();
  if (total <= 0 || count < 2) return;
  // max(x1, x0), then max(y, x_i): pairs in the CPU's order (§3.14).
  eltmax_pair_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(xs[1].data, xs[0].data, y.data, total);
  check_launch(l, "eltmax_pair_kernel");
  for (int64_t i = 2; i < count; ++i) {
    eltmax_pair_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(y.data, xs[i].data, y.data, total);
    check_launch(l, "eltmax_pair_kernel");
  }
}

void eltmax_bprop(const Launch& l, ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx, float scale_targets) {
  const int64_t total = x.size();
  if (total <= 0) return;
  eltmax_grad_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(x.data, y.data, dy.data, dx.data, total,
                                                                 scale_targets);
  check_launch(l, "eltmax_grad_kernel");
}

}  // namespace alexnet::cuda

// ---- the eltsum layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

float coeff(const LayerRun& r, size_t i) { return r.spec().coeffs.empty() ? 1.0f : r.spec().coeffs[i]; }

void eltsum_forward(const LayerRun& r) {
  r.op("fprop", [&] {
    for (size_t i = 0; i < r.spec().inputs.size(); ++i)
      eltsum_fprop(r.lc, r.in(i), r.out(), coeff(r, i), i == 0 ? 0.0f : 1.0f);
  });
}

void eltsum_backward(const LayerRun& r) {
  for (size_t i = 0; i < r.spec().inputs.size(); ++i)
    if (r.wants(i))
      r.contribute(i, "bprop", [&](MatView dx, float st) { eltsum_bprop(r.lc, r.dy(), dx, coeff(r, i), st); });
}

const bool eltsum_registered = register_layer("eltsum", {eltsum_forward, eltsum_backward});

}  // namespace
}  // namespace alexnet::cuda

// ---- the eltmax layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void eltmax_forward(const LayerRun& r) {
  r.op("fprop", [&] {
    eltmax_fprop(r.lc, r.inputs().data(), static_cast<int64_t>(r.inputs().size()), r.out());
  });
}

void eltmax_backward(const LayerRun& r) {
  for (size_t i = 0; i < r.spec().inputs.size(); ++i)
    if (r.wants(i))
      r.contribute(i, "bprop", [&](MatView dx, float st) { eltmax_bprop(r.lc, r.in(i), r.out(), r.dy(), dx, st); });
}

const bool eltmax_registered = register_layer("eltmax", {eltmax_forward, eltmax_backward});

}  // namespace
}  // namespace alexnet::cuda
