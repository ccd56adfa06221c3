// CUDA pooling, engine.md §3.6 (max, maxabs, avg, and rand without doMax, a
// reconstruction: the picked pixel, max-undo backward), with
// the semantics and float order of engine/cpu/pool.cpp.
// Layout (DEVICE memory, case fastest): x, dx (C, S, S, N); y, dy (C, OX, OX, N).
// Accumulate-or-overwrite: target <- scale_targets·target + result (§1.4).
//
// Windows: output (oy, ox) covers rows [start + oy·stride, + size_x) and the
// same columns, clipped to the image. One thread per output element (forward)
// or input element (backward), so each value is one sequential sum or scan:
// * forward, raster order over the clipped window: max from −2e38 with
//   `v > acc` (a NaN is dropped, as fmaxf), maxabs from 0 with |v| >= |acc|
//   (later pixel wins ties), avg a sum from +0 then one IEEE division by the
//   valid count;
// * backward, windows holding the pixel in raster order of (oy, ox): max-undo
//   adds [x == y_w]·dy_w (ties all get the full gradient), avg adds
//   dy_w·(1.0f/area_w). With --fmad=false the products and sums round
//   separately, as on the CPU: bit-identical results.
#include "alexnet/cuda/pool.h"
#include "layer.h"
#include "common.cuh"

#include <stdexcept>

namespace alexnet::cuda {

namespace {

struct Span {
  int64_t lo, hi;  // [lo, hi)
};

__device__ __forceinline__ Span window_span(const PoolParams& p, int64_t o) {
  const int64_t first = p.start + o * p.stride;
  return {first > 0 ? first : 0, first + p.size_x < p.img_size ? first + p.size_x : p.img_size};
}

// Windows o in [0, outputs_x) whose rows (or columns) hold pixel i.
__device__ __forceinline__ Span windows_holding(const PoolParams& p, int64_t i) {
  const int64_t lo = floor_div_d(i - p.start - p.size_x, p.stride) + 1;
  const int64_t hi = floor_div_d(i - p.start, p.stride) + 1;
  return {lo > 0 ? lo : 0, hi < p.outputs_x ? hi : p.outputs_x};
}

template <PoolKind K>
__global__ void pool_fprop_kernel(PoolParams p, const float* x, float* y, int64_t n_cases, float st) {
  const int64_t s = p.img_size, ox_n = p.outputs_x;
  const int64_t total = p.channels * ox_n * ox_n * n_cases;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, row = i / n_cases;
    const int64_t c = row / (ox_n * ox_n), oy = (row / ox_n) % ox_n, ox = row % ox_n;
    const Span ys = window_span(p, oy), xs = window_span(p, ox);
    float acc = K == PoolKind::kMax ? -2e38f : 0.0f;
    for (int64_t iy = ys.lo; iy < ys.hi; ++iy) {
      for (int64_t ix = xs.lo; ix < xs.hi; ++ix) {
        const float v = x[((c * s + iy) * s + ix) * n_cases + n];
        if (K == PoolKind::kMax) {
          acc = v > acc ? v : acc;
        } else if (K == PoolKind::kMaxAbs) {
          acc = fabsf(v) >= fabsf(acc) ? v : acc;
        } else {
          acc = acc + v;
        }
      }
    }
    if (K == PoolKind::kAvg) acc = acc / static_cast<float>((ys.hi - ys.lo) * (xs.hi - xs.lo));
    y[i] = blend_d(y[i], acc, st);
  }
}

// pool=rand without doMax (a reconstruction, op_params.h pool_rand_pick): the picked pixel.
__global__ void pool_rand_fprop_kernel(PoolParams p, const float* x, const float* picks, float* y, int64_t n_cases,
                                       float st) {
  const int64_t s = p.img_size, ox_n = p.outputs_x;
  const int64_t total = p.channels * ox_n * ox_n * n_cases;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, row = i / n_cases;
    const int64_t c = row / (ox_n * ox_n), oy = (row / ox_n) % ox_n, ox = row % ox_n;
    const Span ys = window_span(p, oy), xs = window_span(p, ox);
    const int64_t k = static_cast<int64_t>(picks[i]), width = xs.hi - xs.lo;
    y[i] = blend_d(y[i], x[((c * s + ys.lo + k / width) * s + xs.lo + k % width) * n_cases + n], st);
  }
}

template <bool kAvg>
__global__ void pool_bprop_kernel(PoolParams p, const float* x, const float* y, const float* dy, float* dx,
                                  int64_t n_cases, float st) {
  const int64_t s = p.img_size, ox_n = p.outputs_x;
  const int64_t total = p.channels * s * s * n_cases;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, row = i / n_cases;
    const int64_t c = row / (s * s), iy = (row / s) % s, ix = row % s;
    const Span oys = windows_holding(p, iy), oxs = windows_holding(p, ix);
    float acc = 0.0f;
    for (int64_t oy = oys.lo; oy < oys.hi; ++oy) {
      for (int64_t ox = oxs.lo; ox < oxs.hi; ++ox) {
        const int64_t w = ((c * ox_n + oy) * ox_n + ox) * n_cases + n;
        const float g = dy[w];
        if (kAvg) {
          const Span ys = window_span(p, oy), xs = window_span(p, ox);
          const float recip = 1.0f / static_cast<float>((ys.hi - ys.lo) * (xs.hi - xs.lo));
          acc = acc + g * recip;
        } else {
          acc = acc + static_cast<float>(x[i] == y[w]) * g;
        }
      }
    }
    dx[i] = blend_d(dx[i], acc, st);
  }
}

}  // namespace

void pool_fprop(const Launch& l, const PoolParams& p, ConstMatView x, MatView y, float scale_targets) {
  const int64_t n = x.cols, total = y.rows * n;
  if (total <= 0) return;
  const unsigned grid = grid_for(total);
  switch (p.kind) {
    case PoolKind::kMax:
      pool_fprop_kernel<PoolKind::kMax><<<grid, kThreads, 0, l.stream>>>(p, x.data, y.data, n, scale_targets);
      break;
    case PoolKind::kMaxAbs:
      pool_fprop_kernel<PoolKind::kMaxAbs><<<grid, kThreads, 0, l.stream>>>(p, x.data, y.data, n,
                                                                                 scale_targets);
      break;
    case PoolKind::kAvg:
      pool_fprop_kernel<PoolKind::kAvg><<<grid, kThreads, 0, l.stream>>>(p, x.data, y.data, n, scale_targets);
      break;
    case PoolKind::kRand:
      throw std::invalid_argument("kind: rand pooling takes its picks (pool_rand_fprop)");
  }
  check_launch(l, "pool_fprop_kernel");
}

void pool_rand_fprop(const Launch& l, const PoolParams& p, ConstMatView x, const float* picks, MatView y,
                     float scale_targets) {
  const int64_t n = x.cols, total = y.rows * n;
  if (total <= 0) return;
  pool_rand_fprop_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, x.data, picks, y.data, n, scale_targets);
  check_launch(l, "pool_rand_fprop_kernel");
}

void pool_bprop(const Launch& l, const PoolParams& p, ConstMatView x, ConstMatView y, ConstMatView dy,
                MatView dx, float scale_targets) {
  const int64_t n = dx.cols, total = dx.rows * n;
  if (total <= 0) return;
  if (p.kind == PoolKind::kAvg)
    pool_bprop_kernel<true><<<grid_for(total), kThreads, 0, l.stream>>>(p, x.data, y.data, dy.data, dx.data, n,
                                                                        scale_targets);
  else
    pool_bprop_kernel<false><<<grid_for(total), kThreads, 0, l.stream>>>(p, x.data, y.data, dy.data, dx.data, n,
                                                                         scale_targets);
  check_launch(l, "pool_bprop_kernel");
}

}  // namespace alexnet::cuda

// ---- the pool layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  const PoolParams& p = r.layer.pool;
  if (p.kind != PoolKind::kRand) {
    r.op("fprop", [&] { pool_fprop(r.lc, p, r.in(0), r.out(), 0.0f); });
    return;
  }
  // pool=rand without doMax: picks drawn on the host in every pass type (§3.6), the
  // CPU net's draws, or injected (read back and checked)
  LayerStore& B = r.store;
  const size_t bytes = static_cast<size_t>(r.spec().outputs * r.n) * sizeof(float);
  if (r.inject_masks) {
    r.devices.copy_out(B.dev, B.draws.data(), B.mask, bytes, "reading the picks of layer '" + r.spec().name + "'");
    checked(r.spec(), [&] { check_pool_picks(p, B.draws.data(), r.n); });
  } else {
    r.draws->pool_picks(p, B.draws.data(), r.n);
    r.devices.copy_in(B.dev, B.mask, B.draws.data(), bytes, "the picks of layer '" + r.spec().name + "'");
  }
  r.op("fprop", [&] { pool_rand_fprop(r.lc, p, r.in(0), B.mask, r.out(), 0.0f); });
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    pool_bprop(r.lc, r.layer.pool, r.in(0), r.out(), r.dy(), dx, st);
  });
}

const bool registered = register_layer("pool", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
