// CUDA blur (separable filter, zero padding): engine.md §3.18; the two passes,
// tap order and separate roundings of engine/cpu/blur.cpp.
// Layout (DEVICE memory): images (C, S, S, N), case fastest; p.filter is a
// device array of K taps.
// Accumulate-or-overwrite: the first pass overwrites the scratch buffer, the
// second blends into the target (§1.4).
// One thread per output element: acc from +0 adding in[j + k − r]·g_k for the
// in-image taps k = k_lo..k_hi−1 in increasing order; no FMA: bit-identical.
#include "alexnet/cuda/blur.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void blur_pass_kernel(BlurParams p, bool horizontal, const float* x, float* y, int64_t n_cases,
                                 float st) {
  const int64_t s = p.img_size, k_all = p.filter_size, r = k_all / 2;
  const int64_t total = p.channels * s * s * n_cases;
  const int64_t step = horizontal ? n_cases : s * n_cases;  // elements between neighbours along the pass
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t row = i / n_cases;
    const int64_t j = horizontal ? row % s : (row / s) % s;  // position along the pass
    const int64_t k_lo = r - j > 0 ? r - j : 0, k_hi = s + r - j < k_all ? s + r - j : k_all;
    float acc = 0.0f;
    for (int64_t k = k_lo; k < k_hi; ++k) acc = acc + x[i + (k - r) * step] * p.filter[k];
    y[i] = blend_d(y[i], acc, st);
  }
}

void pass(const Launch& l, const BlurParams& p, bool horizontal, ConstMatView x, MatView y, float st) {
  const int64_t total = x.size();
  if (total <= 0) return;
  blur_pass_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, horizontal, x.data, y.data, x.cols, st);
  check_launch(l, "blur_pass_kernel");
}

}  // namespace

void blur_fprop(const Launch& l, const BlurParams& p, ConstMatView x, MatView scratch, MatView y,
                float scale_targets) {
  pass(l, p, /*horizontal=*/true, x, scratch, 0.0f);
  pass(l, p, /*horizontal=*/false, scratch, y, scale_targets);
}

void blur_bprop(const Launch& l, const BlurParams& p, ConstMatView dy, MatView scratch, MatView dx,
                float scale_targets) {
  blur_fprop(l, p, dy, scratch, dx, scale_targets);  // self-adjoint for a symmetric filter (§3.18)
}

}  // namespace alexnet::cuda

// ---- the blur layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

// The taps in device memory.
void setup(const LayerPlan& L, LayerStore& B, Devices& D) {
  B.blur = L.blur;
  B.blur.filter = D.upload(B.dev, L.spec.filter, "blur taps of layer '" + L.spec.name + "'");
}

void forward(const LayerRun& r) {
  r.op("fprop", [&] { blur_fprop(r.lc, r.store.blur, r.in(0), r.view(r.store.blur_tmp), r.out(), 0.0f); });
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    blur_bprop(r.lc, r.store.blur, r.dy(), r.view(r.store.blur_tmp), dx, st);
  });
}

const bool registered = register_layer("blur", {forward, backward, setup});

}  // namespace
}  // namespace alexnet::cuda
