// The quant layer, engine.md §6 (quantF/quantB = half without peer access; the
// release's convQuantizeHalf was never published, so this is a reconstruction:
// docs/fidelity.md). Not a cfg type: original/reconstructions.py inserts one
// between a producer whose quantF or quantB is half and its consumers on another
// gpu. Layout: x, y, dy, dx (D, N), case fastest, one shape.
// Forward: y = round_to_half(x) with quantF = half (op_params.h: IEEE round to
// nearest even, back to float32), else a copy. Backward: the sum of the consumers'
// gradients on that device, rounded to half with quantB = half, then added into the
// producer's gradient (target <- scale_targets*target + result, §1.4).
#include "alexnet/cpu/quant.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
}

void quant_copy(ConstMatView x, MatView y, bool half, float scale_targets) {
  const int64_t count = x.size();
  const float* in = x.data;
  float* out = y.data;
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) out[i] = blend(out[i], half ? round_to_half(in[i]) : in[i], scale_targets);
}

}  // namespace alexnet::cpu

// ---- the quant layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) { quant_copy(r.in(0), r.out(), r.spec().half_forward, 0.0f); }

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) { quant_copy(r.dy(), dx, r.spec().half_backward, st); });
}

const bool registered = register_layer("quant", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
