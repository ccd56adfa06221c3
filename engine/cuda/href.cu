// CUDA href (horizontal reflection): engine.md §3.19; engine/cpu/href.cpp.
// Layout (DEVICE memory): x, y, dy, dx (C, S, S, N), case fastest.
// Forward blends (§1.4); backward ALWAYS overwrites dx (the release ignores
// scaleTargets here, §13 item 8, kept). Copies only: exact.
#include "alexnet/cuda/href.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

// out[row] <- blend(out[row], in[mirror(row)]), mirror = the same (c, y), column S−1−x.
__global__ void href_kernel(const float* in, float* out, int64_t s, int64_t total, int64_t n_cases, float st,
                            bool overwrite) {
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, row = i / n_cases, col = row % s;
    const float v = in[(row - col + (s - 1 - col)) * n_cases + n];
    out[i] = overwrite ? v : blend_d(out[i], v, st);
  }
}

}  // namespace

void href_fprop(const Launch& l, const HrefParams& p, ConstMatView x, MatView y, float scale_targets) {
  const int64_t total = x.size();
  if (total <= 0) return;
  href_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(x.data, y.data, p.img_size, total, x.cols, scale_targets,
                                                          false);
  check_launch(l, "href_kernel");
}

void href_bprop(const Launch& l, const HrefParams& p, ConstMatView dy, MatView dx) {
  const int64_t total = dy.size();
  if (total <= 0) return;
  href_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(dy.data, dx.data, p.img_size, total, dy.cols, 0.0f, true);
  check_launch(l, "href_kernel (backward)");
}

}  // namespace alexnet::cuda

// ---- the href layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  r.op("fprop", [&] { href_fprop(r.lc, r.layer.href, r.in(0), r.out(), 0.0f); });
}

void backward(const LayerRun& r) {  // §13 item 8: overwrites, ignoring accumulation, as written
  single_input_backward(r, [&](MatView dx, float) { href_bprop(r.lc, r.layer.href, r.dy(), dx); });
}

const bool registered = register_layer("href", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
