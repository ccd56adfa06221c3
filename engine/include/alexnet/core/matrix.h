// Plain views of float32 matrices, the only data type that crosses the engine's
// boundary (STYLE.md habit 3). Views never own memory.
//
// Layout (engine.md §1.2): a layer's output is a (D, N) row-major matrix, element
// (feature d, case n) at d*N + n: the case index is fastest. Images are
// (C, H, W, N), case fastest; conv outputs (F, MY, MX, N).
#pragma once

#include <cstdint>

namespace alexnet {

struct MatView {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  float& operator()(int64_t r, int64_t c) const { return data[r * cols + c]; }
  int64_t size() const { return rows * cols; }
};

struct ConstMatView {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  ConstMatView() = default;
  ConstMatView(const float* d, int64_t r, int64_t c) : data(d), rows(r), cols(c) {}
  ConstMatView(const MatView& m) : data(m.data), rows(m.rows), cols(m.cols) {}  // NOLINT: views convert
  float operator()(int64_t r, int64_t c) const { return data[r * cols + c]; }
  int64_t size() const { return rows * cols; }
};

// The accumulate-or-overwrite rule of engine.md §1.4, stated once:
// target <- scale_targets * target + scale_output * result. With
// scale_targets == 0 the target is overwritten without being read (so NaN or
// garbage in it does not propagate).
inline float blend(float target, float result, float scale_targets, float scale_output = 1.0f) {
  return scale_targets == 0.0f ? scale_output * result : scale_targets * target + scale_output * result;
}

}  // namespace alexnet
