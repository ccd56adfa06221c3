// CUDA cmrnorm, cross-map response normalisation (AlexNet's LRN): engine.md
// §3.9, with minDiv and blocked; α = scale/size (§3.7). The semantics and float
// order of engine/cpu/cmrnorm.cpp.
//
// Layout (DEVICE memory): x, y, denoms, dy, dx, scratch are (F, P, N) with P
// pixels per map, viewed as (F·P, N), case fastest; element i = (f·P + pix)·N + n.
// Accumulate-or-overwrite: the forward overwrites y and denoms; the backward
// blends into dx (§1.4).
//
// One thread per element: D = minDiv + α·Σ_{f'∈W(f)} X[f']² in increasing f'
// from 0; Y = X·powf(D, −β). Backward: prelim A (rnorm.cu), then
// δX = X·Σ_{adjoint} A (increasing f') + δY·powf(D, −β). No FMA.
#include "alexnet/cuda/norm.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

// Forward window W(f) (centred or f's block) and its adjoint, as [lo, hi).
__device__ __forceinline__ void channel_window_d(const CrossMapNormParams& p, int64_t f, int64_t* lo,
                                                 int64_t* hi) {
  if (p.blocked) {
    *lo = f / p.size * p.size;
    *hi = *lo + p.size < p.channels ? *lo + p.size : p.channels;
  } else {
    norm_window(f, p.size, p.channels, lo, hi);
  }
}

__device__ __forceinline__ void channel_adjoint_window_d(const CrossMapNormParams& p, int64_t f, int64_t* lo,
                                                         int64_t* hi) {
  if (p.blocked)
    channel_window_d(p, f, lo, hi);
  else
    norm_adjoint_window(f, p.size, p.channels, lo, hi);
}

__global__ void cmrnorm_fprop_kernel(CrossMapNormParams p, const float* x, float* y, float* denoms,
                                     int64_t pixels, int64_t n_cases) {
  const int64_t total = p.channels * pixels * n_cases;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, r = i / n_cases;
    const int64_t f = r / pixels, pix = r % pixels;
    int64_t lo, hi;
    channel_window_d(p, f, &lo, &hi);
    float d = 0.0f;
    for (int64_t g = lo; g < hi; ++g) {
      const float v = x[(g * pixels + pix) * n_cases + n];
      d = d + v * v;
    }
    d = p.min_div + p.alpha * d;
    denoms[i] = d;
    y[i] = x[i] * powf(d, -p.beta);
  }
}

__global__ void cmrnorm_undo_kernel(CrossMapNormParams p, const float* x, const float* a, const float* denoms,
                                    const float* dy, float* dx, int64_t pixels, int64_t n_cases, float st) {
  const int64_t total = p.channels * pixels * n_cases;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, r = i / n_cases;
    const int64_t f = r / pixels, pix = r % pixels;
    int64_t lo, hi;
    channel_adjoint_window_d(p, f, &lo, &hi);
    float acc = 0.0f;
    for (int64_t g = lo; g < hi; ++g) acc = acc + a[(g * pixels + pix) * n_cases + n];
    const float grad = x[i] * acc + dy[i] * powf(denoms[i], -p.beta);
    dx[i] = blend_d(dx[i], grad, st);
  }
}

}  // namespace

void cmrnorm_fprop(const Launch& l, const CrossMapNormParams& p, ConstMatView x, MatView y, MatView denoms) {
  const int64_t total = x.size();
  if (total <= 0) return;
  cmrnorm_fprop_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, x.data, y.data, denoms.data,
                                                                   x.rows / p.channels, x.cols);
  check_launch(l, "cmrnorm_fprop_kernel");
}

void cmrnorm_bprop(const Launch& l, const CrossMapNormParams& p, ConstMatView x, ConstMatView y,
                   ConstMatView denoms, ConstMatView dy, MatView dx, MatView scratch, float scale_targets) {
  norm_detail::norm_prelim(l, p.alpha, p.beta, y, denoms, dy, scratch);
  const int64_t total = x.size();
  if (total <= 0) return;
  cmrnorm_undo_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, x.data, scratch.data, denoms.data, dy.data,
                                                                  dx.data, x.rows / p.channels, x.cols,
                                                                  scale_targets);
  check_launch(l, "cmrnorm_undo_kernel");
}

}  // namespace alexnet::cuda

// ---- the cmrnorm layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  r.op("fprop", [&] { cmrnorm_fprop(r.lc, r.layer.crossmap, r.in(0), r.out(), r.view(r.store.denoms)); });
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    cmrnorm_bprop(r.lc, r.layer.crossmap, r.in(0), r.out(), r.view(r.store.denoms), r.dy(), dx,
                  r.view(r.store.scratch), st);
  });
}

const bool registered = register_layer("cmrnorm", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
