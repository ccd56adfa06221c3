// Pooling layer, engine.md §3.6 (forward and backward of max, maxabs, avg, and
// rand without doMax: a reconstruction, the picked pixel, max-undo backward).
// Layout (§1.2): images (C, S, S, N) and pooled outputs (C, OX, OX, N), case
// fastest. Every write is target <- scale_targets*target + result (blend(),
// §1.4): scale_targets = 0 overwrites without reading the target.
//
// Windows: output (oy, ox) covers rows [start + oy*stride, + size_x) and the
// same columns, clipped to the image; nothing is padded.
//
// Float32 order (§7.2, "raster order over the clipped window"):
// * forward: one accumulator per output, pixels visited row by row, left to
//   right. max: acc = fmax(acc, v) from -2e38 (fmax drops NaN). maxabs: from 0,
//   acc = (|v| >= |acc|) ? v : acc, so on |v| == |acc| the later pixel wins and
//   the sign is kept. avg: sum from +0, then one IEEE division by the number of
//   in-image pixels (the GPU also uses plain '/', §7.1).
// * backward: one accumulator per input pixel; the windows holding it are
//   visited in raster order of (oy, ox). max/maxabs add [x == y_w]*dy_w (every
//   pixel equal to the pooled value gets the full dy_w, ties are not split);
//   avg adds dy_w*(1.0f/area_w). Products and sums are separate roundings
//   (-ffp-contract=off); whether the GPU build fused dy*r + acc into an FMA is
//   not known (§7.1 says contraction was on by default).
//
// Threads: each output (forward) or input pixel (backward) is computed by one
// thread in the order above, so results do not depend on the thread count.
#include "alexnet/cpu/pool.h"
#include "alexnet/cpu/layer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace alexnet::cpu {

namespace {

// Cases are processed in blocks so that the accumulators sit on the stack and
// the innermost loop runs over contiguous cases.
constexpr int64_t kCaseBlock = 64;

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

struct Span {
  int64_t lo, hi;  // [lo, hi)
};

// Rows (or columns) of window o, clipped to the image.
Span window_span(const PoolParams& p, int64_t o) {
  const int64_t first = p.start + o * p.stride;
  return {std::max<int64_t>(first, 0), std::min<int64_t>(first + p.size_x, p.img_size)};
}

// Windows o (0 <= o < outputs_x) whose rows (or columns) hold pixel i: those
// with start + o*stride <= i < start + o*stride + size_x.
Span windows_holding(const PoolParams& p, int64_t i) {
  const int64_t lo = floor_div(i - p.start - p.size_x, p.stride) + 1;  // smallest o with o*stride > i-start-size_x
  const int64_t hi = floor_div(i - p.start, p.stride) + 1;             // one past the largest o with o*stride <= i-start
  return {std::max<int64_t>(lo, 0), std::min<int64_t>(hi, p.outputs_x)};
}

template <PoolKind K>
void fprop_impl(const PoolParams& p, ConstMatView x, MatView y, float scale_targets) {
  const int64_t S = p.img_size, OX = p.outputs_x, N = x.cols;
  const int64_t rows = p.channels * OX * OX;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t c = row / (OX * OX), oy = (row / OX) % OX, ox = row % OX;
    const Span ys = window_span(p, oy), xs = window_span(p, ox);
    float* out = y.data + row * N;
    for (int64_t n0 = 0; n0 < N; n0 += kCaseBlock) {
      const int64_t nb = std::min(kCaseBlock, N - n0);
      float acc[kCaseBlock];
      const float init = K == PoolKind::kMax ? -2e38f : 0.0f;
      for (int64_t n = 0; n < nb; ++n) acc[n] = init;
      for (int64_t iy = ys.lo; iy < ys.hi; ++iy) {
        for (int64_t ix = xs.lo; ix < xs.hi; ++ix) {
          const float* in = x.data + ((c * S + iy) * S + ix) * N + n0;
          for (int64_t n = 0; n < nb; ++n) {
            const float v = in[n];
            if constexpr (K == PoolKind::kMax) {
              // fmax(acc, v): acc is never NaN (it starts at -2e38 and only
              // takes non-NaN values), so a NaN v fails the test and is dropped.
              // Written as a select so that the loop vectorises.
              acc[n] = v > acc[n] ? v : acc[n];
            } else if constexpr (K == PoolKind::kMaxAbs) {
              acc[n] = std::fabs(v) >= std::fabs(acc[n]) ? v : acc[n];
            } else {
              acc[n] = acc[n] + v;
            }
          }
        }
      }
      if constexpr (K == PoolKind::kAvg) {
        const float area = static_cast<float>((ys.hi - ys.lo) * (xs.hi - xs.lo));
        for (int64_t n = 0; n < nb; ++n) acc[n] = acc[n] / area;
      }
      for (int64_t n = 0; n < nb; ++n) out[n0 + n] = blend(out[n0 + n], acc[n], scale_targets);
    }
  }
}

// kMax, kMaxAbs and kRand share this (max-undo, §3.6); kAvg ignores x and y.
template <bool kAvg>
void bprop_impl(const PoolParams& p, ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx,
                float scale_targets) {
  const int64_t S = p.img_size, OX = p.outputs_x, N = dx.cols;
  const int64_t rows = p.channels * S * S;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t c = row / (S * S), iy = (row / S) % S, ix = row % S;
    const Span oys = windows_holding(p, iy), oxs = windows_holding(p, ix);
    float* out = dx.data + row * N;
    for (int64_t n0 = 0; n0 < N; n0 += kCaseBlock) {
      const int64_t nb = std::min(kCaseBlock, N - n0);
      float acc[kCaseBlock];
      for (int64_t n = 0; n < nb; ++n) acc[n] = 0.0f;
      for (int64_t oy = oys.lo; oy < oys.hi; ++oy) {
        for (int64_t ox = oxs.lo; ox < oxs.hi; ++ox) {
          const int64_t w = (c * OX + oy) * OX + ox;
          const float* g = dy.data + w * N + n0;
          if constexpr (kAvg) {
            const Span ys = window_span(p, oy), xs = window_span(p, ox);
            const float recip = 1.0f / static_cast<float>((ys.hi - ys.lo) * (xs.hi - xs.lo));
            for (int64_t n = 0; n < nb; ++n) acc[n] = acc[n] + g[n] * recip;
          } else {
            const float* pooled = y.data + w * N + n0;
            const float* in = x.data + row * N + n0;
            for (int64_t n = 0; n < nb; ++n)
              acc[n] = acc[n] + static_cast<float>(in[n] == pooled[n]) * g[n];
          }
        }
      }
      for (int64_t n = 0; n < nb; ++n) out[n0 + n] = blend(out[n0 + n], acc[n], scale_targets);
    }
  }
}

}  // namespace

void pool_fprop(const PoolParams& p, ConstMatView x, MatView y, float scale_targets) {
  switch (p.kind) {
    case PoolKind::kMax: return fprop_impl<PoolKind::kMax>(p, x, y, scale_targets);
    case PoolKind::kMaxAbs: return fprop_impl<PoolKind::kMaxAbs>(p, x, y, scale_targets);
    case PoolKind::kAvg: return fprop_impl<PoolKind::kAvg>(p, x, y, scale_targets);
    case PoolKind::kRand: throw std::invalid_argument("kind: rand pooling takes its picks (pool_rand_fprop)");
  }
}

// pool=rand without doMax (a reconstruction, op_params.h pool_rand_pick): a copy of
// the picked pixel; nothing is rounded.
void pool_rand_fprop(const PoolParams& p, ConstMatView x, const float* picks, MatView y, float scale_targets) {
  const int64_t S = p.img_size, OX = p.outputs_x, N = x.cols;
  const int64_t rows = p.channels * OX * OX;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t c = row / (OX * OX), oy = (row / OX) % OX, ox = row % OX;
    const Span ys = window_span(p, oy), xs = window_span(p, ox);
    const int64_t width = xs.hi - xs.lo;
    float* out = y.data + row * N;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t k = static_cast<int64_t>(picks[row * N + n]);
      const int64_t iy = ys.lo + k / width, ix = xs.lo + k % width;
      out[n] = blend(out[n], x.data[((c * S + iy) * S + ix) * N + n], scale_targets);
    }
  }
}

void pool_bprop(const PoolParams& p, ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx,
                float scale_targets) {
  if (p.kind == PoolKind::kAvg) {
    bprop_impl<true>(p, x, y, dy, dx, scale_targets);
  } else {
    bprop_impl<false>(p, x, y, dy, dx, scale_targets);
  }
}

}  // namespace alexnet::cpu

// ---- the pool layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) {
  const PoolParams& p = r.layer.pool;
  if (p.kind != PoolKind::kRand) return pool_fprop(p, r.in(0), r.out(), 0.0f);
  // pool=rand without doMax: picks drawn in every pass type (§3.6), or injected and checked
  float* picks = r.store().mask.data();
  if (r.inject_masks) checked(r.spec(), [&] { check_pool_picks(p, picks, r.n); });
  else r.draws->pool_picks(p, picks, r.n);
  pool_rand_fprop(p, r.in(0), picks, r.out(), 0.0f);
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) { pool_bprop(r.layer.pool, r.in(0), r.out(), r.dy(), dx, st); });
}

const bool registered = register_layer("pool", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
