// CUDA rnorm, spatial response normalisation: engine.md §3.8 (α already
// rewritten to scale/size², §3.7); also the spatial pieces cnorm.cu reuses
// (§3.10) and the backward prelim of all three norm layers. The semantics and
// float order of engine/cpu/rnorm.cpp.
//
// Layout (DEVICE memory): x, y, denoms, dy, dx, scratch are (C, S, S, N),
// case fastest, viewed as (C·S·S, N); element i = ((c·S + y)·S + x)·N + n.
// Accumulate-or-overwrite: the forward overwrites y and denoms; the backward
// writes dx = blend(dx, result, scale_targets) (§1.4).
//
// One thread per element: the window sum starts at 0 and adds X² in raster
// order of the clipped window; D = 1 + α·sum; Y = X·powf(D, −β) (the exact
// powf, where the release used __powf: "close only", §7.3). The backward sums A
// over the adjoint window in raster order. No FMA (--fmad=false).
#include "alexnet/cuda/norm.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void prelim_kernel(float k, const float* y, const float* denoms, const float* dy, float* scratch,
                              int64_t total) {
  // ((k·δY)·Y)/D, k = −2αβ; scratch may be y itself (read before written).
  for (int64_t i = grid_start(); i < total; i += grid_step()) scratch[i] = k * dy[i] * y[i] / denoms[i];
}

__global__ void spatial_rows_kernel(SpatialNormParams p, const float* src, const float* numer, float* y,
                                    float* denoms, int64_t n_cases) {
  const int64_t s = p.img_size, total = p.channels * s * s * n_cases;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, r = i / n_cases;
    const int64_t c = r / (s * s), py = (r / s) % s, px = r % s;
    int64_t y0, y1, x0, x1;
    norm_window(py, p.size, s, &y0, &y1);
    norm_window(px, p.size, s, &x0, &x1);
    float d = 0.0f;
    for (int64_t wy = y0; wy < y1; ++wy)
      for (int64_t wx = x0; wx < x1; ++wx) {
        const float v = src[((c * s + wy) * s + wx) * n_cases + n];
        d = d + v * v;
      }
    d = 1.0f + p.alpha * d;
    denoms[i] = d;
    y[i] = numer[i] * powf(d, -p.beta);
  }
}

__global__ void spatial_undo_kernel(SpatialNormParams p, const float* src, const float* a, const float* denoms,
                                    const float* dy, float* dx, int64_t n_cases, float st) {
  const int64_t s = p.img_size, total = p.channels * s * s * n_cases;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, r = i / n_cases;
    const int64_t c = r / (s * s), py = (r / s) % s, px = r % s;
    int64_t y0, y1, x0, x1;
    norm_adjoint_window(py, p.size, s, &y0, &y1);
    norm_adjoint_window(px, p.size, s, &x0, &x1);
    float acc = 0.0f;
    for (int64_t wy = y0; wy < y1; ++wy)
      for (int64_t wx = x0; wx < x1; ++wx) acc = acc + a[((c * s + wy) * s + wx) * n_cases + n];
    const float g = src[i] * acc + dy[i] * powf(denoms[i], -p.beta);
    dx[i] = blend_d(dx[i], g, st);
  }
}

}  // namespace

namespace norm_detail {

void norm_prelim(const Launch& l, float alpha, float beta, ConstMatView y, ConstMatView denoms, ConstMatView dy,
                 MatView scratch) {
  const float k = -2.0f * alpha * beta;  // the CPU's host-side float expression
  const int64_t total = scratch.size();
  if (total <= 0) return;
  prelim_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(k, y.data, denoms.data, dy.data, scratch.data, total);
  check_launch(l, "norm prelim_kernel");
}

void spatial_norm_rows(const Launch& l, const SpatialNormParams& p, ConstMatView src, ConstMatView numer,
                       MatView y, MatView denoms) {
  const int64_t total = src.size();
  if (total <= 0) return;
  spatial_rows_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, src.data, numer.data, y.data, denoms.data,
                                                                  src.cols);
  check_launch(l, "spatial_rows_kernel");
}

void spatial_norm_undo(const Launch& l, const SpatialNormParams& p, ConstMatView src, ConstMatView a,
                       ConstMatView denoms, ConstMatView dy, MatView dx, float scale_targets) {
  const int64_t total = src.size();
  if (total <= 0) return;
  spatial_undo_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, src.data, a.data, denoms.data, dy.data,
                                                                  dx.data, src.cols, scale_targets);
  check_launch(l, "spatial_undo_kernel");
}

}  // namespace norm_detail

void rnorm_fprop(const Launch& l, const SpatialNormParams& p, ConstMatView x, MatView y, MatView denoms) {
  norm_detail::spatial_norm_rows(l, p, x, x, y, denoms);
}

void rnorm_bprop(const Launch& l, const SpatialNormParams& p, ConstMatView x, ConstMatView y,
                 ConstMatView denoms, ConstMatView dy, MatView dx, MatView scratch, float scale_targets) {
  // Two kernels on one stream: every A exists before any window sum reads it.
  norm_detail::norm_prelim(l, p.alpha, p.beta, y, denoms, dy, scratch);
  norm_detail::spatial_norm_undo(l, p, x, scratch, denoms, dy, dx, scale_targets);
}

}  // namespace alexnet::cuda

// ---- the rnorm layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  r.op("fprop", [&] { rnorm_fprop(r.lc, r.layer.spatial, r.in(0), r.out(), r.view(r.store.denoms)); });
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    rnorm_bprop(r.lc, r.layer.spatial, r.in(0), r.out(), r.view(r.store.denoms), r.dy(), dx, r.view(r.store.scratch),
                st);
  });
}

const bool registered = register_layer("rnorm", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
