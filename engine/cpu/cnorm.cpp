// cnorm, contrast normalisation: engine.md §3.10, kept as written (§13 item 12).
// α = scale/size², rewritten by the cfg reader (§3.7).
//
// Layout: x, y, denoms, mean_diffs, dy, dx, scratch are (C, S, S, N) images,
// case fastest, viewed as (C·S·S, N); row r = (c·S + y)·S + x.
// Accumulate-or-overwrite: the forward overwrites y, denoms and mean_diffs; the
// backward writes dx through blend(dx, result, scale_targets) (§1.4).
//
// As written, and kept on purpose:
//  * the numerator of Y is the raw input X, not the mean-removed Dm;
//  * the backward is rnorm's backward with X replaced by Dm; the local mean's
//    dependence on X is ignored, so the gradient is not exact.
//
// Float32 order: μ = (Σ_W X in raster order, from 0) / (valid pixel count),
// true IEEE division like the release's average pooling (§3.6, §7.1);
// Dm = X − μ; then rnorm's order over Dm (rnorm.cpp). std::pow for __powf,
// IEEE '/' for __fdividef ("close only", §7.3).
//
// Threads: pass 1 (Dm) and pass 2 (D, Y) each give one output row to one
// thread; pass 2 starts after every Dm exists. Thread-count independent.
#include "alexnet/cpu/norm.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

void cnorm_fprop(const SpatialNormParams& p, ConstMatView x, MatView y, MatView denoms, MatView mean_diffs) {
  const int64_t S = p.img_size;
  const int64_t N = x.cols;
  const int64_t rows = p.channels * S * S;
  // Pass 1: Dm = X − μ, μ = avgpool(X, sizeX = s, start = −⌊s/2⌋, stride 1).
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / (S * S);
    const int64_t py = (r / S) % S;
    const int64_t px = r % S;
    int64_t y0, y1, x0, x1;
    norm_window(py, p.size, S, &y0, &y1);
    norm_window(px, p.size, S, &x0, &x1);
    float* m = mean_diffs.data + r * N;  // the row of Dm doubles as the accumulator
    for (int64_t n = 0; n < N; ++n) m[n] = 0.0f;
    for (int64_t wy = y0; wy < y1; ++wy) {
      for (int64_t wx = x0; wx < x1; ++wx) {
        const float* s = x.data + ((c * S + wy) * S + wx) * N;
        for (int64_t n = 0; n < N; ++n) m[n] += s[n];
      }
    }
    const float count = static_cast<float>((y1 - y0) * (x1 - x0));
    const float* xr = x.data + r * N;
    for (int64_t n = 0; n < N; ++n) m[n] = xr[n] - m[n] / count;
  }
  // Pass 2: D = 1 + α·Σ_W Dm², Y = X · D^(−β).
  norm_detail::spatial_norm_rows(p, mean_diffs, x, y, denoms);
}

void cnorm_bprop(const SpatialNormParams& p, ConstMatView mean_diffs, ConstMatView y, ConstMatView denoms,
                 ConstMatView dy, MatView dx, MatView scratch, float scale_targets) {
  norm_detail::norm_prelim(p.alpha, p.beta, y, denoms, dy, scratch);
  norm_detail::spatial_norm_undo(p, mean_diffs, scratch, denoms, dy, dx, scale_targets);
}

}  // namespace alexnet::cpu

// ---- the cnorm layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) {
  cnorm_fprop(r.layer.spatial, r.in(0), r.out(), r.view(r.store().denoms), r.view(r.store().mean_diffs));
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    cnorm_bprop(r.layer.spatial, r.view(r.store().mean_diffs), r.out(), r.view(r.store().denoms), r.dy(), dx,
                r.view(r.store().scratch), st);
  });
}

const bool registered = register_layer("cnorm", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
