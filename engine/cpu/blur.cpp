// Blur layer (separable filter, zero padding), engine.md §3.18.
// Layout (§1.2): all images (C, S, S, N), case fastest. The second pass writes
// target <- scale_targets*target + result (blend(), §1.4); the first pass of
// the forward/backward overwrites the caller's scratch buffer.
//
// Filter taps: the release loads only taps 0..2r-1 and uses tap 0 again for
// tap 2r, which is the same thing for a symmetric filter. This engine uses
// all K given taps; the binding only accepts symmetric filters, so the result
// is the release's. (The Gaussian built by the layer parser is symmetric.)
//
// Float32 order (the spec gives none for blur; this is our choice): one
// accumulator per output, from +0, adding in[j + k - r]*g_k for k = 0..K-1,
// skipping out-of-image taps (adding 0*g_k would not change an accumulator
// that starts at +0). Products and sums are separate roundings.
//
// Threads: one thread per output row, each output in the fixed order above.
#include "alexnet/cpu/blur.h"
#include "alexnet/cpu/layer.h"

#include <algorithm>

namespace alexnet::cpu {

namespace {
constexpr int64_t kCaseBlock = 64;
}  // namespace

void blur_pass(const BlurParams& p, bool horizontal, ConstMatView x, MatView y, float scale_targets) {
  const int64_t S = p.img_size, N = x.cols, K = p.filter_size, r = K / 2;
  const int64_t rows = p.channels * S * S;
  // Distance in elements between neighbouring pixels along the pass.
  const int64_t step = horizontal ? N : S * N;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t j = horizontal ? row % S : (row / S) % S;  // position along the pass
    const int64_t k_lo = std::max<int64_t>(0, r - j), k_hi = std::min<int64_t>(K, S + r - j);
    const float* centre = x.data + row * N;
    float* out = y.data + row * N;
    for (int64_t n0 = 0; n0 < N; n0 += kCaseBlock) {
      const int64_t nb = std::min(kCaseBlock, N - n0);
      float acc[kCaseBlock];
      for (int64_t n = 0; n < nb; ++n) acc[n] = 0.0f;
      for (int64_t k = k_lo; k < k_hi; ++k) {
        const float g = p.filter[k];
        const float* in = centre + (k - r) * step + n0;
        for (int64_t n = 0; n < nb; ++n) acc[n] = acc[n] + in[n] * g;
      }
      for (int64_t n = 0; n < nb; ++n) out[n0 + n] = blend(out[n0 + n], acc[n], scale_targets);
    }
  }
}

void blur_fprop(const BlurParams& p, ConstMatView x, MatView scratch, MatView y, float scale_targets) {
  blur_pass(p, /*horizontal=*/true, x, scratch, 0.0f);
  blur_pass(p, /*horizontal=*/false, scratch, y, scale_targets);
}

void blur_bprop(const BlurParams& p, ConstMatView dy, MatView scratch, MatView dx, float scale_targets) {
  blur_fprop(p, dy, scratch, dx, scale_targets);
}

}  // namespace alexnet::cpu

// ---- the blur layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) { blur_fprop(r.layer.blur, r.in(0), r.view(r.store().blur_tmp), r.out(), 0.0f); }

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    blur_bprop(r.layer.blur, r.dy(), r.view(r.store().blur_tmp), dx, st);
  });
}

const bool registered = register_layer("blur", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
