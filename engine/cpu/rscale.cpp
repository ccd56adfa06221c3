// rscale: random rescale and crop, engine.md §3.22.
// Layout (§1.2): x (C, S, S, N), y (C, tgt, tgt, N), case fastest.
// Accumulate-or-overwrite: the forward overwrites y. No backward (as resize, §3.20).
//
// Draws (STYLE.md habit 5): one per pass and minibatch, as the release's host rand():
// the scale index s (probability ∝ (s+1)²), the factor and the two crop offsets,
// made from four uniforms of the net's generator by rscale_draw (op_params.h) and
// kept in the layer's "draws" buffer, or injected there (inject_masks).
// Training (and gradient-check) passes: R = tgt + s; the (R, R) bilinear resize by
// the factor (skipped when R == S), cropped at (crop_y, crop_x). Test passes copy the
// input unchanged, as written (§13 item 5: the release's branch test passType &
// PASS_MULTIVIEW_TEST also matches PASS_TEST, and PASS_GC does not match): the copy
// has the output's shape only when img_size == tgt_size, and otherwise the pass
// fails naming the layer (the release handed a C·S² matrix to a layer expecting
// C·tgt², docs/fidelity.md).
// Float32: the samples are resize_sample's (op_params.h), bit-identical to CUDA's.
#include <algorithm>
#include <string>

#include "alexnet/cpu/resize.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

void rscale_fprop(const RscaleParams& p, const RscaleDraw& d, ConstMatView x, MatView y) {
  const int64_t S = p.img_size, T = p.tgt_size, N = x.cols, rows = p.channels * T * T;
  const ResizeParams q{p.channels, S, d.rescaled(p), d.factor};
  const bool copy = q.tgt_size == S;  // no resize: a crop of the input
  const float c = copy ? 0.0f : resize_offset(q);
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t ch = row / (T * T), ty = (row / T) % T + d.crop_y, tx = row % T + d.crop_x;
    const float* img = x.data + ch * S * S * N;
    float* out = y.data + row * N;
    if (copy) {
      const float* in = img + (ty * S + tx) * N;
      for (int64_t n = 0; n < N; ++n) out[n] = in[n];
    } else {
      for (int64_t n = 0; n < N; ++n) out[n] = resize_sample(q, c, img, N, n, ty, tx);
    }
  }
}

}  // namespace alexnet::cpu

// ---- the rscale layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) {
  const RscaleParams& p = r.layer.rscale;
  if (r.pass == PassType::Test) {  // §13 item 5: copied unchanged, as written
    if (p.img_size != p.tgt_size)
      fail_layer(r.spec(), "an rscale test pass copies its input unchanged (engine.md §13 item 5, kept as written), "
                           "which needs img_size == tgt_size (got " + std::to_string(p.img_size) + " and " +
                           std::to_string(p.tgt_size) + ")");
    const ConstMatView x = r.in(0);
    std::copy(x.data, x.data + x.size(), r.out().data);
    return;
  }
  float* stored = r.store().draws.data();
  RscaleDraw d;
  if (r.inject_masks) {
    checked(r.spec(), [&] { d = rscale_load(p, stored); });
  } else {
    double u[kRscaleDraws];
    r.draws->uniform(u, kRscaleDraws);
    d = rscale_draw(p, u);
    rscale_store(d, stored);
  }
  rscale_fprop(p, d, r.in(0), r.out());
}

const bool registered = register_layer("rscale", {forward, nullptr});  // no backward (§3.22)

}  // namespace
}  // namespace alexnet::cpu
