// CPU conv layer (engine.md §3.4): shared-weight convolution of one input of a
// (possibly multi-input) layer, with padding, stride, the ceiling overhang of
// modulesX, filter groups and random sparse connectivity. The lowering helpers
// at the end are shared with the unshared `local` layer (alexnet/cpu/local.h).
//
// Layouts (engine.md §1.2, §1.3), all row-major float32, case index fastest:
//   x   (C, S, S, N)    viewed as a (C·S·S, N) matrix
//   y   (F, MY, MX, N)  viewed as a (F·M, N) matrix, M = MY·MX, MY = MX
//   w   (Cg·K·K, F)     row c'·K·K + ky·K + kx, filter index fastest
//   b   (F, 1) shared biases, or (F·M, 1) unshared, b[f·M + m]
// Every function that writes a target follows engine.md §1.4 (matrix.h blend):
// target <- scale_targets·target + scale·result; scale_targets == 0 overwrites
// the target without reading it.
#pragma once

#include <cstdint>
#include <vector>

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"  // ConvParams, build_conv_feeds

namespace alexnet::cpu {

// Scratch memory of the conv/local kernels. The vectors grow to the largest
// need seen and are then reused, so a caller that keeps one ConvScratch per
// layer (or per thread) allocates only on the first step.
struct ConvScratch {
  std::vector<float> cols;   // lowered patches, (G·Cg·K·K, Mc·N) for a chunk of Mc modules
  std::vector<float> acc;    // accumulators: weight-gradient blocks, or the (C, S, S, N) image gradient
  std::vector<float> block;  // one partial-sum block of the weight gradient, (Cg·K·K, F)
  std::vector<int64_t> feeds;  // channel -> the (g, c') pairs that read it (build_conv_feeds)
  std::vector<int64_t> fill;   // build_conv_feeds' cursor per channel
};

// y (+)= conv(x, w) for one input. (F·M, N) <- (C·S·S, N) x (Cg·K·K, F).
// The bias is not added here: the layer calls conv_add_bias right after its
// first input (engine.md §1.4), giving ((X0·W0 + b) + X1·W1) + ...
void conv_fprop(const ConvParams& p, ConstMatView x, ConstMatView w, MatView y, float scale_targets,
                ConvScratch& scratch);

// y += b: shared b (F, 1) adds b[f] to every module of filter f; unshared
// b (F·M, 1) adds b[f·M + m]. y is (F·M, N).
void conv_add_bias(ConstMatView b, MatView y, bool shared);

// dx (+)= the input gradient of one input: for every image pixel, the sum over
// the filters fed by its channel and the modules whose window holds it of
// w · dy. dx (C·S·S, N), dy (F·M, N), w (Cg·K·K, F). With random sparsity a
// channel may feed a filter several times (overSample > 1); all of it is summed.
void conv_bprop_acts(const ConvParams& p, ConstMatView dy, ConstMatView w, MatView dx, float scale_targets,
                     ConvScratch& scratch);

// g <- scale_targets·g + Σ_blocks (scale · Σ_{m in block} Σ_n x-patch · dy),
// g (Cg·K·K, F). Blocks are partial_sum consecutive modules in raster order
// (0 = one block of all M modules), each scaled by `scale` (the caller's 1/N)
// before the blocks are added in order (engine.md §3.4, §7.2). partial_sum
// must divide M or be 0.
void conv_bprop_weights(const ConvParams& p, ConstMatView x, ConstMatView dy, MatView g, int64_t partial_sum,
                        float scale, float scale_targets, ConvScratch& scratch);

// Bias gradient from dy (F·M, N): shared gb (F, 1) <- st·gb + scale·Σ_{m,n} dy[f, m, n];
// unshared gb (F·M, 1) <- st·gb + scale·Σ_n dy[f·M + m, n].
void conv_bprop_bias(ConstMatView dy, MatView gb, bool shared, float scale, float scale_targets);

// ---------------------------------------------------------------------------
// Lowering shared by conv and local (engine/cpu/conv.cpp).
namespace lowering {

// Modules per chunk for this geometry and case count (p.chunk_modules if set).
int64_t chunk_modules(const ConvParams& p, int64_t num_cases);

// cols (G·Cg·K·K, (m1-m0)·N) <- patches of modules [m0, m1): row
// (g·Cg + c')·K·K + ky·K + kx, column (m - m0)·N + n holds
// x[channel(g, c'), top_m + ky, left_m + kx, n], or 0 outside the image.
void im2col(const ConvParams& p, const float* x, int64_t num_cases, int64_t m0, int64_t m1, float* cols);

// img (C, S, S, N) += the column matrix of modules [m0, m1) laid out as im2col
// writes it, each column entry added to the pixel it was read from. Gather
// form, parallel over image rows (c, y); each pixel sums, in this order, over
// the (g, c') pairs reading channel c (increasing), ky, kx, then modules.
void col2im_add(const ConvParams& p, const float* cols, int64_t num_cases, int64_t m0, int64_t m1, float* img,
                ConvScratch& scratch);

// The image-gradient accumulator (C, S, S, N), zeroed: img itself when
// scale_targets == 0 (overwritten, never read), else scratch.acc.
// finish_image_gradient then sets img <- scale_targets·img + acc (§1.4).
float* begin_image_gradient(const ConvParams& p, int64_t num_cases, float* img, float scale_targets,
                            ConvScratch& scratch);
void finish_image_gradient(const ConvParams& p, int64_t num_cases, float* img, float scale_targets,
                           ConvScratch& scratch);

// Grows v to at least n elements; returns its data.
float* reserve(std::vector<float>& v, int64_t n);


}  // namespace lowering

}  // namespace alexnet::cpu
