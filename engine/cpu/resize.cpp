// resize: bilinear rescaling of every channel, engine.md §3.20.
// Layout (§1.2): x (C, S, S, N), y (C, T, T, N), case fastest; T = floor(S/scale).
// Accumulate-or-overwrite: the forward overwrites y. No backward: the release's
// layer.py forbids layers that need a gradient below a resize, and the plan refuses
// an input at or below which a matrix learns (layer_types.cpp).
// Float32: resize_sample (op_params.h), each operation rounded in the order §3.20
// writes it; the CUDA kernel calls the same function, so both backends agree bit for bit.
// Threads: one output row (a pixel of one channel, all cases) per iteration.
#include "alexnet/cpu/resize.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

void resize_fprop(const ResizeParams& p, ConstMatView x, MatView y) {
  const int64_t S = p.img_size, T = p.tgt_size, N = x.cols, rows = p.channels * T * T;
  const float c = resize_offset(p);
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t ch = row / (T * T), ty = (row / T) % T, tx = row % T;
    const float* img = x.data + ch * S * S * N;
    float* out = y.data + row * N;
    for (int64_t n = 0; n < N; ++n) out[n] = resize_sample(p, c, img, N, n, ty, tx);
  }
}

}  // namespace alexnet::cpu

// ---- the resize layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) { resize_fprop(r.layer.resize, r.in(0), r.out()); }

const bool registered = register_layer("resize", {forward, nullptr});  // no backward (§3.20)

}  // namespace
}  // namespace alexnet::cpu
