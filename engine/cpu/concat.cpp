// Concatenation layer, engine.md §3.15: inputs stacked along the feature axis
// in listed order, input i at rows [off_i, off_i + D_i) with off_i = sum_{j<i} D_j.
// Layout (§1.2): (D, N) matrices, case fastest.
// Forward overwrites its slice of y (a copy; it never reads y). Backward:
// dx <- scale_targets*dx + the matching slice of dy (blend(), §1.4).
// No arithmetic beyond the blend, so results are exact.
#include "alexnet/cpu/concat.h"

namespace alexnet::cpu {

void concat_fprop(ConstMatView x, MatView y, int64_t offset) {
  const int64_t total = x.rows * x.cols;
  const float* in = x.data;
  float* out = y.data + offset * y.cols;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) out[i] = in[i];
}

void concat_bprop(ConstMatView dy, MatView dx, int64_t offset, float scale_targets) {
  const int64_t total = dx.rows * dx.cols;
  const float* in = dy.data + offset * dy.cols;
  float* out = dx.data;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) out[i] = blend(out[i], in[i], scale_targets);
}

}  // namespace alexnet::cpu
