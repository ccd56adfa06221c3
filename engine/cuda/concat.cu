// CUDA concat: engine.md §3.15, inputs stacked along the feature axis in listed
// order. Layout (DEVICE memory): (D, N) case fastest, so input i's rows are one
// contiguous range of y starting at offset·N.
// Forward: a device-to-device copy (y not read). Backward: dx <- blend(dx, the
// matching rows of dy) (§1.4). No arithmetic beyond the blend: exact.
#include <string>

#include "alexnet/cuda/concat.h"
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
