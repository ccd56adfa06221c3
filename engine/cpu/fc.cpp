// fc: engine.md §3.2. Layouts in fc.h. Every matrix product goes through the
// BLAS (alexnet::sgemm); its summation order is the library's ("close only"
// parity with cuBLAS, §7.3). Accumulate-or-overwrite: scale_targets (§1.4).
#include "alexnet/cpu/fc.h"
#include "alexnet/cpu/layer.h"

#include "alexnet/cpu/blas.h"

namespace alexnet::cpu {

void fc_fprop(ConstMatView x, ConstMatView wt, MatView y, float scale_targets) {
  // (Dout, N) = (Dout, Din) (Din, N)
  sgemm(false, false, y.rows, y.cols, x.rows, 1.0f, wt.data, wt.cols, x.data, x.cols, scale_targets, y.data, y.cols);
}

void fc_add_bias(const float* b, MatView y) {
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < y.rows; ++o) {
    float* row = y.data + o * y.cols;
    for (int64_t n = 0; n < y.cols; ++n) row[n] += b[o];
  }
}

void fc_bprop_acts(ConstMatView dy, ConstMatView wt, MatView dx, float scale_targets) {
  // (Din, N) = (Dout, Din)^T (Dout, N)
  sgemm(true, false, dx.rows, dx.cols, dy.rows, 1.0f, wt.data, wt.cols, dy.data, dy.cols, scale_targets, dx.data,
        dx.cols);
}

void fc_bprop_weights(ConstMatView x, ConstMatView dy, MatView inc_t, float scale, float mom) {
  // (Dout, Din) = mom * (Dout, Din) + scale * (Dout, N) (Din, N)^T
  sgemm(false, true, inc_t.rows, inc_t.cols, x.cols, scale, dy.data, dy.cols, x.data, x.cols, mom, inc_t.data,
        inc_t.cols);
}

void fc_bprop_bias(ConstMatView dy, float* gb, float scale, float scale_targets) {
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < dy.rows; ++o) {
    const float* row = dy.data + o * dy.cols;
    float sum = 0.0f;
    for (int64_t n = 0; n < dy.cols; ++n) sum += row[n];  // cases in increasing order
    gb[o] = blend(gb[o], sum, scale_targets, scale);
  }
}

}  // namespace alexnet::cpu

// ---- the fc layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

// The release's (Din, Dout) Fortran matrix is (Dout, Din) row-major in memory.
ConstMatView stored(const LayerRun& r, size_t i) {
  const MatrixPlan& w = r.weight_plan(i);
  return ConstMatView(r.weight(i).w.data(), w.cols, w.rows);
}

void forward(const LayerRun& r) {
  weight_layer_forward(
      r, [&](size_t i, MatView y, float st) { fc_fprop(r.in(i), stored(r, i), y, st); },
      [&](MatView y) { fc_add_bias(r.bias().w.data(), y); });
}

void backward(const LayerRun& r) {
  const float inv_n = r.grad_scale();  // 1/N (§1.5)
  weight_layer_backward(
      r, [&](size_t i, MatView dx, float st) { fc_bprop_acts(r.dy(), stored(r, i), dx, st); },
      [&](size_t i, bool first) {  // inc <- mom*inc + (eps/N) dY X^T; mom 1 for later contributions
        const MatrixPlan& w = r.weight_plan(i);
        if (w.has_grad) {  // superEps (§4.4) forces the useGrad path: G <- (first ? 0 : G) + (1/N) dY X^T
          fc_bprop_weights(r.in(i), r.dy(), MatView{r.weight(i).grad.data(), w.cols, w.rows}, inv_n,
                           first ? 0.0f : 1.0f);
          return;
        }
        fc_bprop_weights(r.in(i), r.dy(), MatView{r.weight(i).inc.data(), w.cols, w.rows}, w.eps * inv_n,
                         first ? w.mom : 1.0f);
      },
      [&](bool first) { fc_bprop_bias(r.dy(), r.bias().grad.data(), inv_n, first ? 0.0f : 1.0f); });
}

const bool registered = register_layer("fc", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
