// fc: engine.md §3.2. Layouts in fc.h. Every matrix product goes through the
// BLAS (alexnet::sgemm); its summation order is the library's ("close only"
// parity with cuBLAS, §7.3). Accumulate-or-overwrite: scale_targets (§1.4).
#include "alexnet/cpu/fc.h"

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
