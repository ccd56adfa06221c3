// CUDA nailbed (strided sub-sampling): engine.md §3.17; engine/cpu/nailbed.cpp.
// Layout (DEVICE memory, case fastest): x, dx (C, S, S, N); y, dy (C, OX, OX, N),
// OX = ceil(S/stride), start = floor((S − stride·(OX−1))/2).
// Accumulate-or-overwrite: blend (§1.4); the backward gathers per input pixel
// (off-grid pixels blend 0: zero when overwriting, unchanged when adding).
// Copies only: exact.
#include "alexnet/cuda/nailbed.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void nailbed_fprop_kernel(NailbedParams p, int64_t ox_n, int64_t start, const float* x, float* y,
                                     int64_t n_cases, float st) {
  const int64_t s = p.img_size, total = p.channels * ox_n * ox_n * n_cases;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, row = i / n_cases;
    const int64_t c = row / (ox_n * ox_n), oy = (row / ox_n) % ox_n, ox = row % ox_n;
    const float v = x[((c * s + start + oy * p.stride) * s + start + ox * p.stride) * n_cases + n];
    y[i] = blend_d(y[i], v, st);
  }
}

__global__ void nailbed_bprop_kernel(NailbedParams p, int64_t ox_n, int64_t start, const float* dy, float* dx,
                                     int64_t n_cases, float st) {
  const int64_t s = p.img_size, total = p.channels * s * s * n_cases;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, row = i / n_cases;
    const int64_t c = row / (s * s), ry = (row / s) % s - start, rx = row % s - start;
    const bool on_grid = ry >= 0 && rx >= 0 && ry % p.stride == 0 && rx % p.stride == 0 && ry / p.stride < ox_n &&
                         rx / p.stride < ox_n;
    const float g = on_grid ? dy[((c * ox_n + ry / p.stride) * ox_n + rx / p.stride) * n_cases + n] : 0.0f;
    dx[i] = blend_d(dx[i], g, st);
  }
}

}  // namespace

void nailbed_fprop(const Launch& l, const NailbedParams& p, ConstMatView x, MatView y, float scale_targets) {
  const int64_t total = y.size();
  if (total <= 0) return;
  nailbed_fprop_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, nailbed_outputs_x(p),
                                                                   nailbed_start(p), x.data, y.data, x.cols,
                                                                   scale_targets);
  check_launch(l, "nailbed_fprop_kernel");
}

void nailbed_bprop(const Launch& l, const NailbedParams& p, ConstMatView dy, MatView dx, float scale_targets) {
  const int64_t total = dx.size();
  if (total <= 0) return;
  nailbed_bprop_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, nailbed_outputs_x(p),
                                                                   nailbed_start(p), dy.data, dx.data, dx.cols,
                                                                   scale_targets);
  check_launch(l, "nailbed_bprop_kernel");
}

}  // namespace alexnet::cuda

// ---- the nailbed layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  r.op("fprop", [&] { nailbed_fprop(r.lc, r.layer.nailbed, r.in(0), r.out(), 0.0f); });
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) { nailbed_bprop(r.lc, r.layer.nailbed, r.dy(), dx, st); });
}

const bool registered = register_layer("nailbed", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
