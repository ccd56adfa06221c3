// CUDA dropout (`hs`): engine.md §3.16, §5. Train: y = x·mask (no rescaling),
// backward dy·mask; otherwise y = keep·x, backward keep·dy.
// Layout (DEVICE memory): (D, N) case fastest, element-wise; the mask is read
// at the same flat index as the CPU (its first D·N values).
// Accumulate-or-overwrite: forward overwrites, backward blends (§1.4).
// One product per element: bit-identical to the CPU given the mask.
#include "alexnet/cuda/dropout.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void dropout_fprop_kernel(const float* x, const float* mask, float keep, bool train, float* y,
                                     int64_t total) {
  for (int64_t i = grid_start(); i < total; i += grid_step()) y[i] = train ? x[i] * mask[i] : keep * x[i];
}

__global__ void dropout_bprop_kernel(const float* dy, const float* mask, float keep, bool train, float* dx,
                                     int64_t total, float st) {
  for (int64_t i = grid_start(); i < total; i += grid_step())
    dx[i] = blend_d(dx[i], train ? dy[i] * mask[i] : keep * dy[i], st);
}

}  // namespace

void dropout_fprop(const Launch& l, ConstMatView x, const float* mask, float keep, bool train, MatView y) {
  const int64_t total = y.size();
  if (total <= 0) return;
  dropout_fprop_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(x.data, mask, keep, train, y.data, total);
  check_launch(l, "dropout_fprop_kernel");
}

void dropout_bprop(const Launch& l, ConstMatView dy, const float* mask, float keep, bool train, MatView dx,
                   float scale_targets) {
  const int64_t total = dx.size();
  if (total <= 0) return;
  dropout_bprop_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(dy.data, mask, keep, train, dx.data, total,
                                                                   scale_targets);
  check_launch(l, "dropout_bprop_kernel");
}

}  // namespace alexnet::cuda

// ---- the hs layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

// §3.16: masks are drawn in training passes of an enabled layer; test passes
// (and the gradient check's) scale by keep.
bool training(const LayerRun& r) { return r.pass == PassType::Train && r.spec().enable; }

void forward(const LayerRun& r) {
  LayerStore& B = r.store;
  if (training(r) && !r.inject_masks) {  // keep with probability keep, U in (0, 1]
    const int64_t count = r.spec().outputs * r.n;
    r.draws->dropout_mask(B.draws.data(), count, r.spec().keep);
    check(cudaMemcpyAsync(B.mask, B.draws.data(), static_cast<size_t>(count) * sizeof(float), cudaMemcpyHostToDevice,
                          r.lc.stream),
          "cudaMemcpyAsync of the dropout mask (layer '" + r.spec().name + "')");
  }
  r.op("fprop", [&] { dropout_fprop(r.lc, r.in(0), B.mask, r.spec().keep, training(r), r.out()); });
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    dropout_bprop(r.lc, r.dy(), r.store.mask, r.spec().keep, training(r), dx, st);
  });
}

const bool registered = register_layer("hs", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
