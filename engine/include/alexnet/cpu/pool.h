// Pooling over square windows of an image batch (engine.md §3.6): max, maxabs
// and avg. `rand` with doMax is max; `rand` without doMax had no public kernel:
// pool_rand_fprop is the project's reconstruction (op_params.h pool_rand_pick),
// its backward is pool_bprop's max-undo.
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"  // PoolParams (checked by check_pool_params)

namespace alexnet::cpu {

// y <- scale_targets*y + pool(x).
// x: (C, S, S, N) images, case fastest; y: (C, OX, OX, N).
void pool_fprop(const PoolParams& p, ConstMatView x, MatView y, float scale_targets);

// kRand: y <- scale_targets*y + x at the picked position of each clipped window.
// picks: (C, OX, OX, N), whole numbers in [0, window area), checked by check_pool_picks.
void pool_rand_fprop(const PoolParams& p, ConstMatView x, const float* picks, MatView y, float scale_targets);

// dx <- scale_targets*dx + (gradient routed back through the pooling).
// max/maxabs/rand ("max-undo"): dx[c,y,x] gets the sum over windows w holding (y,x),
// in raster order of (oy, ox), of [x[c,y,x] == y_w] * dy_w.
// avg: the sum over the same windows of dy_w * (1.0f/area_w).
// x: (C, S, S, N) the layer's input, y: (C, OX, OX, N) its output (both unused
// for avg), dy: (C, OX, OX, N), dx: (C, S, S, N).
void pool_bprop(const PoolParams& p, ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx,
                float scale_targets);

}  // namespace alexnet::cpu
