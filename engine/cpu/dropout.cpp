// hs (dropout): engine.md §3.16, §5. The mask is data (STYLE.md habit 5): the
// release drew B = [U < keep] from time-seeded cuRAND (§3.16, §7.3), so it is
// always injected here and never drawn.
// Layout: (D, N), case fastest; element-wise.
// Accumulate-or-overwrite: forward overwrites Y; backward blends into dX with
// scale_targets (§1.4).
// Floating point: one product per element (x*B or keep*x), bit-exact with any
// IEEE float32 reference (§7.3 "dropout given the mask"). The mask is applied
// as a product, as X·B is written, so a dropped negative value gives -0.
// Threads: each element by one thread; independent of the thread count.
#include "alexnet/cpu/dropout.h"
#include "alexnet/cpu/layer.h"

#include <cstdint>

namespace alexnet::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
}

void dropout_fprop(ConstMatView x, const float* mask, float keep, bool train, MatView y) {
  const int64_t count = y.size();
  const float* in = x.data;
  float* out = y.data;
  if (train) {
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
    for (int64_t i = 0; i < count; ++i) out[i] = in[i] * mask[i];
  } else {
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
    for (int64_t i = 0; i < count; ++i) out[i] = keep * in[i];
  }
}

void dropout_bprop(ConstMatView dy, const float* mask, float keep, bool train, MatView dx, float scale_targets) {
  const int64_t count = dx.size();
  const float* g = dy.data;
  float* gx = dx.data;
  if (train) {
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
    for (int64_t i = 0; i < count; ++i) gx[i] = blend(gx[i], g[i] * mask[i], scale_targets);
  } else {
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
    for (int64_t i = 0; i < count; ++i) gx[i] = blend(gx[i], keep * g[i], scale_targets);
  }
}

}  // namespace alexnet::cpu

// ---- the hs layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

// §3.16: masks are drawn in training passes of an enabled layer; test passes
// (and the gradient check's) scale by keep.
bool training(const LayerRun& r) { return r.pass == PassType::Train && r.spec().enable; }

void forward(const LayerRun& r) {
  float* mask = r.store().mask.data();
  if (training(r) && !r.inject_masks)  // keep with probability keep, U in (0, 1]
    r.draws->dropout_mask(mask, r.spec().outputs * r.n, r.spec().keep);
  dropout_fprop(r.in(0), mask, r.spec().keep, training(r), r.out());
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    dropout_bprop(r.dy(), r.store().mask.data(), r.spec().keep, training(r), dx, st);
  });
}

const bool registered = register_layer("hs", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
