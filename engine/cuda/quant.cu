// CUDA quant layer, engine.md §6 (quantF/quantB = half without peer access; the
// release's convQuantizeHalf was never published: a reconstruction,
// docs/fidelity.md), with the semantics of engine/cpu/quant.cpp. Layout (DEVICE
// memory): x, y, dy, dx (D, N) case fastest. Forward overwrites y with x or
// round_to_half(x) (quantF); backward blends dy or round_to_half(dy) (quantB) into
// the producer's gradient (§1.4). Bit-identical to the CPU.
#include "alexnet/cuda/quant.h"
#include "layer.h"
#include "common.cuh"

#include "alexnet/core/op_params.h"

namespace alexnet::cuda {

namespace {

__global__ void quant_kernel(const float* x, float* y, bool half, int64_t total, float st) {
  for (int64_t i = grid_start(); i < total; i += grid_step()) y[i] = blend_d(y[i], half ? round_to_half(x[i]) : x[i], st);
}

}  // namespace

void quant_copy(const Launch& l, ConstMatView x, MatView y, bool half, float scale_targets) {
  const int64_t total = y.size();
  if (total <= 0) return;
  quant_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(x.data, y.data, half, total, scale_targets);
  check_launch(l, "quant_kernel");
}

}  // namespace alexnet::cuda

// ---- the quant layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  r.op("fprop", [&] { quant_copy(r.lc, r.in(0), r.out(), r.spec().half_forward, 0.0f); });
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) { quant_copy(r.lc, r.dy(), dx, r.spec().half_backward, st); });
}

const bool registered = register_layer("quant", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
