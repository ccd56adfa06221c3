// Element-wise sum and max layers, engine.md §3.13 (eltsum) and §3.14 (eltmax).
// Layout (§1.2): every matrix (D, N), case fastest, all of the same shape.
// Writes are target <- scale_targets*target + result (blend(), §1.4), except
// eltmax's forward, which overwrites. Each element is computed on its own
// (one rounding for coeff*x, one for the add), so results are bit-exact and
// in-place use (target == an input) is safe.
#include "alexnet/cpu/eltwise.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

void eltsum_fprop(ConstMatView x, MatView y, float coeff, float scale_targets) {
  const int64_t total = x.size();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) y.data[i] = blend(y.data[i], x.data[i], scale_targets, coeff);
}

void eltsum_bprop(ConstMatView dy, MatView dx, float coeff, float scale_targets) {
  const int64_t total = dy.size();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) dx.data[i] = blend(dx.data[i], dy.data[i], scale_targets, coeff);
}

// max(a, b) = a > b ? a : b, taken exactly as §3.14 writes it: the first step
// is max(x1, x0) (x0 wins ties and NaN comparisons), later steps max(y, xi)
// (xi wins ties and NaN comparisons).
void eltmax_fprop(const ConstMatView* xs, int64_t count, MatView y) {
  const int64_t total = xs[0].size();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) {
    const float a = xs[1].data[i], b = xs[0].data[i];
    float m = a > b ? a : b;
    for (int64_t k = 2; k < count; ++k) {
      const float v = xs[k].data[i];
      m = m > v ? m : v;
    }
    y.data[i] = m;
  }
}

// dy*[x == y] as a product (so a NaN in dy propagates even where x != y, as the
// formula of §3.14 reads); every input equal to the max gets the full dy.
void eltmax_bprop(ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx, float scale_targets) {
  const int64_t total = x.size();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) {
    const float g = dy.data[i] * static_cast<float>(x.data[i] == y.data[i]);
    dx.data[i] = blend(dx.data[i], g, scale_targets);
  }
}

}  // namespace alexnet::cpu

// ---- the eltsum layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

float coeff(const LayerRun& r, size_t i) { return r.spec().coeffs.empty() ? 1.0f : r.spec().coeffs[i]; }

void eltsum_forward(const LayerRun& r) {
  for (size_t i = 0; i < r.spec().inputs.size(); ++i)
    eltsum_fprop(r.in(i), r.out(), coeff(r, i), i == 0 ? 0.0f : 1.0f);
}

void eltsum_backward(const LayerRun& r) {
  for (size_t i = 0; i < r.spec().inputs.size(); ++i)
    if (r.wants(i)) {
      float st = 0.0f;
      const MatView dx = r.target(i, &st);
      eltsum_bprop(r.dy(), dx, coeff(r, i), st);
    }
}

const bool eltsum_registered = register_layer("eltsum", {eltsum_forward, eltsum_backward});

}  // namespace
}  // namespace alexnet::cpu

// ---- the eltmax layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void eltmax_forward(const LayerRun& r) {
  std::vector<ConstMatView>& inputs = r.store().input_views;
  inputs.resize(r.spec().inputs.size());  // allocates on the first pass only
  for (size_t i = 0; i < inputs.size(); ++i) inputs[i] = r.in(i);
  eltmax_fprop(inputs.data(), static_cast<int64_t>(inputs.size()), r.out());
}

void eltmax_backward(const LayerRun& r) {
  for (size_t i = 0; i < r.spec().inputs.size(); ++i)
    if (r.wants(i)) {
      float st = 0.0f;
      const MatView dx = r.target(i, &st);
      eltmax_bprop(r.in(i), r.out(), r.dy(), dx, st);
    }
}

const bool eltmax_registered = register_layer("eltmax", {eltmax_forward, eltmax_backward});

}  // namespace
}  // namespace alexnet::cpu
