// rnorm, spatial response normalisation: engine.md §3.8 (α rewritten by the cfg
// reader, §3.7). Also holds the spatial pieces cnorm.cpp reuses (§3.10) and the
// backward prelim shared by all three norm layers.
//
// Layout: x, y, denoms, dy, dx, scratch are (C, S, S, N) images, case fastest,
// viewed as (C·S·S, N) matrices; row r = (c·S + y)·S + x.
// Accumulate-or-overwrite: the forward overwrites y and denoms; the backward
// writes dx through blend(dx, result, scale_targets) (§1.4).
//
// Float32 order (§7.2): the window sum starts at 0 and adds X² in raster order
// of the clipped window (rows outer, columns inner); then D = 1 + α·sum (one
// product, one sum, no FMA). The backward's adjoint-window sum of A is also in
// raster order. D^(−β) is std::pow(float, float) where the release used __powf;
// the prelim divides with IEEE '/' where the release used __fdividef (parity
// class "close only", §7.1, §7.3).
//
// Threads: each output row (one pixel of one channel, all N cases) is computed
// by one thread in the fixed order above, so results do not depend on the
// thread count.
#include <cmath>

#include "alexnet/cpu/norm.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

namespace norm_detail {

void norm_prelim(float alpha, float beta, ConstMatView y, ConstMatView denoms, ConstMatView dy, MatView scratch) {
  // (−2α)·β: −2α is exact, so this is also −2·(αβ).
  const float k = -2.0f * alpha * beta;
  const int64_t total = scratch.size();
  // Element by element; scratch may be y itself (the release's in-place prelim,
  // §13 item 9): y[i] is read before scratch[i] is written and never again.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) scratch.data[i] = k * dy.data[i] * y.data[i] / denoms.data[i];
}

// D and Y for every row of spatial normalisation: D = 1 + α·Σ_W src²,
// Y = numer · D^(−β). rnorm: src = numer = X. cnorm: src = Dm, numer = X.
// All (C·S·S, N); denoms must not overlap src or numer.
void spatial_norm_rows(const SpatialNormParams& p, ConstMatView src, ConstMatView numer, MatView y, MatView denoms) {
  const int64_t S = p.img_size;
  const int64_t N = src.cols;
  const int64_t rows = p.channels * S * S;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / (S * S);
    const int64_t py = (r / S) % S;
    const int64_t px = r % S;
    int64_t y0, y1, x0, x1;
    norm_window(py, p.size, S, &y0, &y1);
    norm_window(px, p.size, S, &x0, &x1);
    float* d = denoms.data + r * N;  // the row of D doubles as the accumulator
    for (int64_t n = 0; n < N; ++n) d[n] = 0.0f;
    for (int64_t wy = y0; wy < y1; ++wy) {
      for (int64_t wx = x0; wx < x1; ++wx) {
        const float* s = src.data + ((c * S + wy) * S + wx) * N;
        for (int64_t n = 0; n < N; ++n) d[n] += s[n] * s[n];
      }
    }
    const float* xn = numer.data + r * N;
    float* out = y.data + r * N;
    for (int64_t n = 0; n < N; ++n) {
      d[n] = 1.0f + p.alpha * d[n];
      out[n] = xn[n] * std::pow(d[n], -p.beta);
    }
  }
}

// δX (+)= src · Σ_{adjoint window} A + δY · D^(−β), with A already in `a`.
// rnorm: src = X; cnorm: src = Dm. dx must not overlap a.
void spatial_norm_undo(const SpatialNormParams& p, ConstMatView src, ConstMatView a, ConstMatView denoms,
                       ConstMatView dy, MatView dx, float scale_targets) {
  const int64_t S = p.img_size;
  const int64_t N = src.cols;
  const int64_t rows = p.channels * S * S;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / (S * S);
    const int64_t py = (r / S) % S;
    const int64_t px = r % S;
    int64_t y0, y1, x0, x1;
    norm_adjoint_window(py, p.size, S, &y0, &y1);
    norm_adjoint_window(px, p.size, S, &x0, &x1);
    for (int64_t n0 = 0; n0 < N; n0 += kCaseTile) {
      const int64_t nb = std::min(kCaseTile, N - n0);
      float acc[kCaseTile];
      for (int64_t j = 0; j < nb; ++j) acc[j] = 0.0f;
      for (int64_t wy = y0; wy < y1; ++wy) {
        for (int64_t wx = x0; wx < x1; ++wx) {
          const float* aw = a.data + ((c * S + wy) * S + wx) * N + n0;
          for (int64_t j = 0; j < nb; ++j) acc[j] += aw[j];
        }
      }
      const int64_t base = r * N + n0;
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t i = base + j;
        const float g = src.data[i] * acc[j] + dy.data[i] * std::pow(denoms.data[i], -p.beta);
        dx.data[i] = blend(dx.data[i], g, scale_targets);
      }
    }
  }
}

}  // namespace norm_detail

void rnorm_fprop(const SpatialNormParams& p, ConstMatView x, MatView y, MatView denoms) {
  norm_detail::spatial_norm_rows(p, x, x, y, denoms);
}

void rnorm_bprop(const SpatialNormParams& p, ConstMatView x, ConstMatView y, ConstMatView denoms, ConstMatView dy,
                 MatView dx, MatView scratch, float scale_targets) {
  // Two passes: every A must exist before any adjoint-window sum reads it.
  norm_detail::norm_prelim(p.alpha, p.beta, y, denoms, dy, scratch);
  norm_detail::spatial_norm_undo(p, x, scratch, denoms, dy, dx, scale_targets);
}

}  // namespace alexnet::cpu

// ---- the rnorm layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) { rnorm_fprop(r.layer.spatial, r.in(0), r.out(), r.view(r.store().denoms)); }

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    rnorm_bprop(r.layer.spatial, r.in(0), r.out(), r.view(r.store().denoms), r.dy(), dx, r.view(r.store().scratch),
                st);
  });
}

const bool registered = register_layer("rnorm", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
