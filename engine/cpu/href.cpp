// Horizontal reflection layer, engine.md §3.19 (kernel only in [C2]).
// Layout (§1.2): x, y, dy, dx all (C, S, S, N), case fastest.
// Forward: target <- scale_targets*target + result (blend(), §1.4).
// Backward: ALWAYS overwrites dx and ignores scale_targets — the release does
// this (§13 item 8) and we keep it, so with two consumers the second one's
// gradient replaces the first's. No arithmetic, so results are exact copies.
#include "alexnet/cpu/href.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

void href_fprop(const HrefParams& p, ConstMatView x, MatView y, float scale_targets) {
  const int64_t S = p.img_size, N = x.cols, rows = p.channels * S * S;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t col = row % S;
    const float* in = x.data + (row - col + (S - 1 - col)) * N;
    float* out = y.data + row * N;
    for (int64_t n = 0; n < N; ++n) out[n] = blend(out[n], in[n], scale_targets);
  }
}

void href_bprop(const HrefParams& p, ConstMatView dy, MatView dx) {
  const int64_t S = p.img_size, N = dy.cols, rows = p.channels * S * S;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t col = row % S;
    const float* in = dy.data + (row - col + (S - 1 - col)) * N;
    float* out = dx.data + row * N;
    for (int64_t n = 0; n < N; ++n) out[n] = in[n];
  }
}

}  // namespace alexnet::cpu

// ---- the href layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) { href_fprop(r.layer.href, r.in(0), r.out(), 0.0f); }

void backward(const LayerRun& r) {  // §13 item 8: overwrites, ignoring accumulation, as written
  single_input_backward(r, [&](MatView dx, float) { href_bprop(r.layer.href, r.dy(), dx); });
}

const bool registered = register_layer("href", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
