// CUDA cnorm, contrast normalisation: engine.md §3.10, kept as written (§13
// item 12: the numerator is the raw X, the backward ignores the mean's
// dependence on X); the semantics and float order of engine/cpu/cnorm.cpp.
//
// Layout (DEVICE memory): x, y, denoms, mean_diffs, dy, dx, scratch are
// (C, S, S, N) viewed as (C·S·S, N), case fastest.
// Accumulate-or-overwrite: the forward overwrites y, denoms and mean_diffs; the
// backward blends into dx (§1.4).
//
// Pass 1 (one thread per element): μ = (window sum of X in raster order, from 0)
// / valid count, IEEE division; Dm = X − μ. Pass 2 (after pass 1, same stream):
// rnorm's rows over Dm with numerator X (rnorm.cu).
#include "alexnet/cuda/norm.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void mean_diffs_kernel(SpatialNormParams p, const float* x, float* mean_diffs, int64_t n_cases) {
  const int64_t s = p.img_size, total = p.channels * s * s * n_cases;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, r = i / n_cases;
    const int64_t c = r / (s * s), py = (r / s) % s, px = r % s;
    int64_t y0, y1, x0, x1;
    norm_window(py, p.size, s, &y0, &y1);
    norm_window(px, p.size, s, &x0, &x1);
    float m = 0.0f;
    for (int64_t wy = y0; wy < y1; ++wy)
      for (int64_t wx = x0; wx < x1; ++wx) m = m + x[((c * s + wy) * s + wx) * n_cases + n];
    const float count = static_cast<float>((y1 - y0) * (x1 - x0));
    mean_diffs[i] = x[i] - m / count;
  }
}

}  // namespace

void cnorm_fprop(const Launch& l, const SpatialNormParams& p, ConstMatView x, MatView y, MatView denoms,
                 MatView mean_diffs) {
  const int64_t total = x.size();
  if (total <= 0) return;
  mean_diffs_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, x.data, mean_diffs.data, x.cols);
  check_launch(l, "mean_diffs_kernel");
  norm_detail::spatial_norm_rows(l, p, mean_diffs, x, y, denoms);
}

void cnorm_bprop(const Launch& l, const SpatialNormParams& p, ConstMatView mean_diffs, ConstMatView y,
                 ConstMatView denoms, ConstMatView dy, MatView dx, MatView scratch, float scale_targets) {
  norm_detail::norm_prelim(l, p.alpha, p.beta, y, denoms, dy, scratch);
  norm_detail::spatial_norm_undo(l, p, mean_diffs, scratch, denoms, dy, dx, scale_targets);
}

}  // namespace alexnet::cuda

// ---- the cnorm layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  r.op("fprop", [&] {
    cnorm_fprop(r.lc, r.layer.spatial, r.in(0), r.out(), r.view(r.store.denoms), r.view(r.store.mean_diffs));
  });
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    cnorm_bprop(r.lc, r.layer.spatial, r.view(r.store.mean_diffs), r.out(), r.view(r.store.denoms), r.dy(), dx,
                r.view(r.store.scratch), st);
  });
}

const bool registered = register_layer("cnorm", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
