// Pooling over square windows of an image batch (engine.md §3.6): max, maxabs
// and avg. `rand` with doMax is max; `rand` without doMax has no public kernel
// and is refused by the binding.
#pragma once

#include <cstdint>

#include "alexnet/matrix.h"

namespace alexnet::cpu {

// Stable numbering: never renumber (later code may store the value).
enum class PoolKind : int32_t { kMax = 0, kMaxAbs = 1, kAvg = 2 };

// Geometry of one pooling layer. Output (oy, ox) pools rows
// [start + oy*stride, start + oy*stride + size_x) and the same columns, both
// intersected with [0, img_size): windows are clipped at the edges, nothing is
// padded. `start` may be negative or positive. The caller chooses outputs_x and
// guarantees that every window holds at least one in-image pixel.
struct PoolParams {
  PoolKind kind = PoolKind::kMax;
  int64_t channels = 0;   // C
  int64_t img_size = 0;   // S (= H = W)
  int64_t size_x = 0;     // window side
  int64_t start = 0;      // first window's top/left offset
  int64_t stride = 1;
  int64_t outputs_x = 0;  // OX (= OY)
};

// y <- scale_targets*y + pool(x).
// x: (C, S, S, N) images, case fastest; y: (C, OX, OX, N).
void pool_fprop(const PoolParams& p, ConstMatView x, MatView y, float scale_targets);

// dx <- scale_targets*dx + (gradient routed back through the pooling).
// max/maxabs ("max-undo"): dx[c,y,x] gets the sum over windows w holding (y,x),
// in raster order of (oy, ox), of [x[c,y,x] == y_w] * dy_w.
// avg: the sum over the same windows of dy_w * (1.0f/area_w).
// x: (C, S, S, N) the layer's input, y: (C, OX, OX, N) its output (both unused
// for avg), dy: (C, OX, OX, N), dx: (C, S, S, N).
void pool_bprop(const PoolParams& p, ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx,
                float scale_targets);

}  // namespace alexnet::cpu
