// CUDA resize: bilinear rescaling of every channel, engine.md §3.20; the
// semantics and float order of engine/cpu/resize.cpp (both call resize_sample of
// op_params.h; no FMA, --fmad=false), so the backends agree bit for bit.
// Layout (DEVICE memory): x (C, S, S, N), y (C, T, T, N), case fastest.
// Accumulate-or-overwrite: the forward overwrites y. No backward (the plan refuses
// an input at or below which a matrix learns).
#include "alexnet/cuda/resize.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

// One thread per output element. The rows of an rscale crop are offset by (oy, ox)
// in the resized image; a plain resize has oy = ox = 0 and out_side = T.
__global__ void resize_kernel(ResizeParams p, float c, const float* x, float* y, int64_t out_side, int64_t oy,
                              int64_t ox, int64_t n_cases, int64_t total) {
  const int64_t S = p.img_size;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, row = i / n_cases;
    const int64_t ch = row / (out_side * out_side), ty = (row / out_side) % out_side + oy, tx = row % out_side + ox;
    y[i] = resize_sample(p, c, x + ch * S * S * n_cases, n_cases, n, ty, tx);
  }
}

// The crop at (oy, ox) of side out_side of x itself (rscale when R == S).
__global__ void crop_kernel(const float* x, float* y, int64_t S, int64_t out_side, int64_t oy, int64_t ox,
                            int64_t n_cases, int64_t total) {
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, row = i / n_cases;
    const int64_t ch = row / (out_side * out_side), ty = (row / out_side) % out_side + oy, tx = row % out_side + ox;
    y[i] = x[((ch * S + ty) * S + tx) * n_cases + n];
  }
}

}  // namespace

void resize_fprop(const Launch& l, const ResizeParams& p, ConstMatView x, MatView y) {
  const int64_t total = y.size();
  if (total <= 0) return;
  resize_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, resize_offset(p), x.data, y.data, p.tgt_size, 0, 0,
                                                            x.cols, total);
  check_launch(l, "resize_kernel");
}

void rscale_fprop(const Launch& l, const RscaleParams& p, const RscaleDraw& d, ConstMatView x, MatView y) {
  const int64_t total = y.size();
  if (total <= 0) return;
  const ResizeParams q{p.channels, p.img_size, d.rescaled(p), d.factor};
  if (q.tgt_size == p.img_size) {
    crop_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(x.data, y.data, p.img_size, p.tgt_size, d.crop_y,
                                                            d.crop_x, x.cols, total);
    check_launch(l, "rscale crop_kernel");
    return;
  }
  resize_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(q, resize_offset(q), x.data, y.data, p.tgt_size, d.crop_y,
                                                            d.crop_x, x.cols, total);
  check_launch(l, "rscale resize_kernel");
}

}  // namespace alexnet::cuda

// ---- the resize layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  r.op("fprop", [&] { resize_fprop(r.lc, r.layer.resize, r.in(0), r.out()); });
}

const bool registered = register_layer("resize", {forward, nullptr});  // no backward (§3.20)

}  // namespace
}  // namespace alexnet::cuda
