// cmrnorm, cross-map response normalisation (AlexNet's LRN): engine.md §3.9,
// with the cfg's minDiv and blocked; α = scale/size, rewritten by the cfg
// reader (§3.7).
//
// Layout: x, y, denoms, dy, dx, scratch are (F, P, N) with P pixels per map
// (P = MY·MX for a conv output (F, MY, MX, N)), case fastest, viewed as
// (F·P, N); row r = f·P + pixel.
// Accumulate-or-overwrite: the forward overwrites y and denoms; the backward
// writes dx through blend(dx, result, scale_targets) (§1.4).
//
// Float32 order (§7.2): the channel-window sum starts at 0 and adds X[f']² in
// increasing f'; D = minDiv + α·sum (one product, one sum, no FMA). The
// backward sums A[f'] in increasing f'. std::pow(float, float) for __powf and
// IEEE '/' for __fdividef ("close only", §7.1, §7.3).
//
// Threads: one output row (one pixel of one map, all N cases) per thread, in the
// fixed order above; results do not depend on the thread count.
#include <cmath>

#include "alexnet/cpu/norm.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

namespace {

// Forward window W(f) as [lo, hi): centred (⌊s/2⌋ before f) or f's block.
void channel_window(const CrossMapNormParams& p, int64_t f, int64_t* lo, int64_t* hi) {
  if (p.blocked) {
    *lo = f / p.size * p.size;
    *hi = std::min<int64_t>(*lo + p.size, p.channels);
  } else {
    norm_window(f, p.size, p.channels, lo, hi);
  }
}

// The f' with f ∈ W(f'): [f − s + ⌊s/2⌋ + 1, f + ⌊s/2⌋] clipped, or f's own block.
void channel_adjoint_window(const CrossMapNormParams& p, int64_t f, int64_t* lo, int64_t* hi) {
  if (p.blocked) {
    channel_window(p, f, lo, hi);
  } else {
    norm_adjoint_window(f, p.size, p.channels, lo, hi);
  }
}

}  // namespace

void cmrnorm_fprop(const CrossMapNormParams& p, ConstMatView x, MatView y, MatView denoms) {
  const int64_t N = x.cols;
  const int64_t rows = x.rows;
  const int64_t P = rows / p.channels;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t f = r / P;
    const int64_t pix = r % P;
    int64_t lo, hi;
    channel_window(p, f, &lo, &hi);
    float* d = denoms.data + r * N;  // the row of D doubles as the accumulator
    for (int64_t n = 0; n < N; ++n) d[n] = 0.0f;
    for (int64_t g = lo; g < hi; ++g) {
      const float* s = x.data + (g * P + pix) * N;
      for (int64_t n = 0; n < N; ++n) d[n] += s[n] * s[n];
    }
    const float* xr = x.data + r * N;
    float* out = y.data + r * N;
    for (int64_t n = 0; n < N; ++n) {
      d[n] = p.min_div + p.alpha * d[n];
      out[n] = xr[n] * std::pow(d[n], -p.beta);
    }
  }
}

void cmrnorm_bprop(const CrossMapNormParams& p, ConstMatView x, ConstMatView y, ConstMatView denoms, ConstMatView dy,
                   MatView dx, MatView scratch, float scale_targets) {
  using norm_detail::kCaseTile;
  // Pass 1: A for every element (before any window sum reads it).
  norm_detail::norm_prelim(p.alpha, p.beta, y, denoms, dy, scratch);
  // Pass 2: δX = X · Σ_{adjoint window} A + δY · D^(−β).
  const int64_t N = x.cols;
  const int64_t rows = x.rows;
  const int64_t P = rows / p.channels;
  const float* a = scratch.data;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t f = r / P;
    const int64_t pix = r % P;
    int64_t lo, hi;
    channel_adjoint_window(p, f, &lo, &hi);
    for (int64_t n0 = 0; n0 < N; n0 += kCaseTile) {
      const int64_t nb = std::min(kCaseTile, N - n0);
      float acc[kCaseTile];
      for (int64_t j = 0; j < nb; ++j) acc[j] = 0.0f;
      for (int64_t g = lo; g < hi; ++g) {
        const float* ag = a + (g * P + pix) * N + n0;
        for (int64_t j = 0; j < nb; ++j) acc[j] += ag[j];
      }
      const int64_t base = r * N + n0;
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t i = base + j;
        const float grad = x.data[i] * acc[j] + dy.data[i] * std::pow(denoms.data[i], -p.beta);
        dx.data[i] = blend(dx.data[i], grad, scale_targets);
      }
    }
  }
}

}  // namespace alexnet::cpu

// ---- the cmrnorm layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) { cmrnorm_fprop(r.layer.crossmap, r.in(0), r.out(), r.view(r.store().denoms)); }

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    cmrnorm_bprop(r.layer.crossmap, r.in(0), r.out(), r.view(r.store().denoms), r.dy(), dx,
                  r.view(r.store().scratch), st);
  });
}

const bool registered = register_layer("cmrnorm", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
