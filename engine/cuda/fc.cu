// CUDA fc layer, engine.md §3.2; the semantics of engine/cpu/fc.cpp.
// Layout (DEVICE memory): x (Din, N), y (Dout, N), wt (Dout, Din) row-major
// (the release's Fortran (Din, Dout) matrix), b (Dout), case fastest.
// Accumulate-or-overwrite: scale_targets (§1.4), through the GEMM's beta.
// Products: alexnet/cuda/gemm.h (cuBLAS, "close only" against OpenBLAS). The
// bias gradient sums the cases of a row in increasing order in float32, one
// thread per row: the CPU's exact operations.
#include "alexnet/cuda/fc.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void fc_bias_kernel(const float* b, float* y, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t i = grid_start(); i < total; i += grid_step()) y[i] = y[i] + b[i / cols];
}

__global__ void fc_bias_grad_kernel(const float* dy, float* gb, int64_t rows, int64_t cols, float scale, float st) {
  for (int64_t o = grid_start(); o < rows; o += grid_step()) {
    const float* row = dy + o * cols;
    float sum = 0.0f;
    for (int64_t n = 0; n < cols; ++n) sum = sum + row[n];  // cases in increasing order
    gb[o] = blend_d(gb[o], sum, st, scale);
  }
}

}  // namespace

void fc_fprop(const Launch& l, const Gemm& gemm, ConstMatView x, ConstMatView wt, MatView y, float scale_targets) {
  // (Dout, N) = (Dout, Din) (Din, N)
  gemm.sgemm(l, false, false, y.rows, y.cols, x.rows, 1.0f, wt.data, wt.cols, 0, x.data, x.cols, 0, scale_targets,
             y.data, y.cols, 0);
}

void fc_add_bias(const Launch& l, const float* b, MatView y) {
  const int64_t total = y.rows * y.cols;
  if (total <= 0) return;
  fc_bias_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(b, y.data, y.rows, y.cols);
  check_launch(l, "fc_bias_kernel");
}

void fc_bprop_acts(const Launch& l, const Gemm& gemm, ConstMatView dy, ConstMatView wt, MatView dx,
                   float scale_targets) {
  // (Din, N) = (Dout, Din)ᵀ (Dout, N)
  gemm.sgemm(l, true, false, dx.rows, dx.cols, dy.rows, 1.0f, wt.data, wt.cols, 0, dy.data, dy.cols, 0,
             scale_targets, dx.data, dx.cols, 0);
}

void fc_bprop_weights(const Launch& l, const Gemm& gemm, ConstMatView x, ConstMatView dy, MatView inc_t,
                      float scale, float mom) {
  // (Dout, Din) = mom·(Dout, Din) + scale·(Dout, N)(Din, N)ᵀ
  gemm.sgemm(l, false, true, inc_t.rows, inc_t.cols, x.cols, scale, dy.data, dy.cols, 0, x.data, x.cols, 0, mom,
             inc_t.data, inc_t.cols, 0);
}

void fc_bprop_bias(const Launch& l, ConstMatView dy, float* gb, float scale, float scale_targets) {
  if (dy.rows <= 0) return;
  fc_bias_grad_kernel<<<grid_for(dy.rows), kThreads, 0, l.stream>>>(dy.data, gb, dy.rows, dy.cols, scale,
                                                                    scale_targets);
  check_launch(l, "fc_bias_grad_kernel");
}

}  // namespace alexnet::cuda

// ---- the fc layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

// The release's (Din, Dout) Fortran matrix is (Dout, Din) row-major in memory.
ConstMatView stored(const LayerRun& r, size_t i) {
  const MatrixPlan& w = r.weight_plan(i);
  return ConstMatView(r.weight(i).w, w.cols, w.rows);
}

void forward(const LayerRun& r) {
  weight_layer_forward(
      r, [&](size_t i, MatView y, float st) { fc_fprop(r.lc, r.gemm, r.in(i), stored(r, i), y, st); },
      [&](MatView y) { fc_add_bias(r.lc, r.bias().w, y); });
}

void backward(const LayerRun& r) {
  const float inv_n = r.grad_scale();  // 1/N (§1.5)
  weight_layer_backward(
      r, [&](size_t i, MatView dx, float st) { fc_bprop_acts(r.lc, r.gemm, r.dy(), stored(r, i), dx, st); },
      [&](size_t i, bool first) {  // inc <- mom*inc + (eps/N) dY X^T; mom 1 for later contributions
        const MatrixPlan& w = r.weight_plan(i);
        if (w.has_grad) {  // superEps (§4.4) forces the useGrad path: G <- (first ? 0 : G) + (1/N) dY X^T
          fc_bprop_weights(r.lc, r.gemm, r.in(i), r.dy(), MatView{r.weight(i).grad, w.cols, w.rows}, inv_n,
                           first ? 0.0f : 1.0f);
          return;
        }
        fc_bprop_weights(r.lc, r.gemm, r.in(i), r.dy(), MatView{r.weight(i).inc, w.cols, w.rows}, w.eps * inv_n,
                         first ? w.mom : 1.0f);
      },
      [&](bool first) { fc_bprop_bias(r.lc, r.dy(), r.bias().grad, inv_n, first ? 0.0f : 1.0f); });
}

const bool registered = register_layer("fc", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
