// CUDA concat: engine.md §3.15, inputs stacked along the feature axis in listed
// order. Layout (DEVICE memory): (D, N) case fastest, so input i's rows are one
// contiguous range of y starting at offset·N.
// Forward: a device-to-device copy (y not read). Backward: dx <- blend(dx, the
// matching rows of dy) (§1.4). No arithmetic beyond the blend: exact.
#include <string>

#include "alexnet/cuda/concat.h"
#include "layer.h"
#include "alexnet/cuda/util.h"
#include "common.cuh"

namespace alexnet::cuda {

void concat_fprop(const Launch& l, ConstMatView x, MatView y, int64_t offset) {
  const int64_t total = x.rows * x.cols;
  if (total <= 0) return;
  check(cudaMemcpyAsync(y.data + offset * y.cols, x.data, static_cast<size_t>(total) * sizeof(float),
                        cudaMemcpyDeviceToDevice, l.stream),
        std::string("cudaMemcpyAsync concat_fprop (layer '") + l.layer + "')");
}

void concat_bprop(const Launch& l, ConstMatView dy, MatView dx, int64_t offset, float scale_targets) {
  blend_into(l, dy.data + offset * dy.cols, dx.data, dx.rows * dx.cols, 1.0f, scale_targets);
}

}  // namespace alexnet::cuda

// ---- the concat layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  r.op("fprop", [&] {
    int64_t offset = 0;
    for (size_t i = 0; i < r.spec().inputs.size(); ++i) {
      concat_fprop(r.lc, r.in(i), r.out(), offset);
      offset += r.layer.input_sizes[i];
    }
  });
}

void backward(const LayerRun& r) {
  int64_t offset = 0;
  for (size_t i = 0; i < r.spec().inputs.size(); ++i) {
    if (r.wants(i))
      r.contribute(i, "bprop", [&](MatView dx, float st) { concat_bprop(r.lc, r.dy(), dx, offset, st); });
    offset += r.layer.input_sizes[i];
  }
}

const bool registered = register_layer("concat", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
