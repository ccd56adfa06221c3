// Nailbed (strided sub-sampling) layer, engine.md §3.17.
// Layout (§1.2): x and dx (C, S, S, N), y and dy (C, OX, OX, N), case fastest,
// with OX = ceil(S/stride) and start = floor((S - stride*(OX-1))/2).
// Every write is target <- scale_targets*target + result (blend(), §1.4).
// No arithmetic beyond the blend, so results are exact copies.
#include "alexnet/cpu/nailbed.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

void nailbed_fprop(const NailbedParams& p, ConstMatView x, MatView y, float scale_targets) {
  const int64_t S = p.img_size, OX = nailbed_outputs_x(p), start = nailbed_start(p), N = x.cols;
  const int64_t rows = p.channels * OX * OX;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t c = row / (OX * OX), oy = (row / OX) % OX, ox = row % OX;
    const float* in = x.data + ((c * S + start + oy * p.stride) * S + start + ox * p.stride) * N;
    float* out = y.data + row * N;
    for (int64_t n = 0; n < N; ++n) out[n] = blend(out[n], in[n], scale_targets);
  }
}

// Gathered per input pixel: a pixel on the nail grid takes its dy value, any
// other pixel takes 0 (blend with 0: zero when overwriting, its own value when
// adding, the reading of §3.17 and §1.4 together).
void nailbed_bprop(const NailbedParams& p, ConstMatView dy, MatView dx, float scale_targets) {
  const int64_t S = p.img_size, OX = nailbed_outputs_x(p), start = nailbed_start(p), N = dx.cols;
  const int64_t rows = p.channels * S * S;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t c = row / (S * S), iy = (row / S) % S, ix = row % S;
    const int64_t ry = iy - start, rx = ix - start;
    const bool on_grid = ry >= 0 && rx >= 0 && ry % p.stride == 0 && rx % p.stride == 0 &&
                         ry / p.stride < OX && rx / p.stride < OX;
    float* out = dx.data + row * N;
    if (on_grid) {
      const float* g = dy.data + ((c * OX + ry / p.stride) * OX + rx / p.stride) * N;
      for (int64_t n = 0; n < N; ++n) out[n] = blend(out[n], g[n], scale_targets);
    } else {
      for (int64_t n = 0; n < N; ++n) out[n] = blend(out[n], 0.0f, scale_targets);
    }
  }
}

}  // namespace alexnet::cpu

// ---- the nailbed layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) { nailbed_fprop(r.layer.nailbed, r.in(0), r.out(), 0.0f); }

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) { nailbed_bprop(r.layer.nailbed, r.dy(), dx, st); });
}

const bool registered = register_layer("nailbed", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
