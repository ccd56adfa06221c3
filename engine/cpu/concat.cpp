// Concatenation layer, engine.md §3.15: inputs stacked along the feature axis
// in listed order, input i at rows [off_i, off_i + D_i) with off_i = sum_{j<i} D_j.
// Layout (§1.2): (D, N) matrices, case fastest.
// Forward overwrites its slice of y (a copy; it never reads y). Backward:
// dx <- scale_targets*dx + the matching slice of dy (blend(), §1.4).
// No arithmetic beyond the blend, so results are exact.
#include "alexnet/cpu/concat.h"
#include "alexnet/cpu/layer.h"

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

// ---- the concat layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) {
  int64_t offset = 0;
  for (size_t i = 0; i < r.spec().inputs.size(); ++i) {
    concat_fprop(r.in(i), r.out(), offset);
    offset += r.layer.input_sizes[i];
  }
}

void backward(const LayerRun& r) {
  int64_t offset = 0;
  for (size_t i = 0; i < r.spec().inputs.size(); ++i) {
    if (r.wants(i)) {
      float st = 0.0f;
      const MatView dx = r.target(i, &st);
      concat_bprop(r.dy(), dx, offset, st);
    }
    offset += r.layer.input_sizes[i];
  }
}

const bool registered = register_layer("concat", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
