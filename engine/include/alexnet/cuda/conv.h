// CUDA conv layer (engine.md §3.4), with the semantics of engine/cpu/conv.cpp:
// padding, stride, the ceiling overhang of modulesX,
// groups and random sparse connectivity; im2col lowering + GEMM.
//
// Layouts (engine.md §1.2, §1.3), row-major float32, case fastest, DEVICE memory:
//   x   (C, S, S, N)   as (C·S·S, N)
//   y   (F, MY, MX, N) as (F·M, N)
//   w   (Cg·K·K, F)    filter index fastest
//   b   (F, 1) shared or (F·M, 1) unshared
// Accumulate-or-overwrite (§1.4): target <- scale_targets·target + scale·result;
// scale_targets == 0 overwrites without reading the target.
// ConvParams is reused as is, except that p.conns must point to DEVICE
// memory (or be null for dense groups).
#pragma once

#include <cstdint>
#include <vector>

#include "alexnet/core/op_params.h"
#include "alexnet/cuda/gemm.h"
#include "alexnet/cuda/launch.h"
#include "alexnet/core/matrix.h"

namespace alexnet::cuda {

// Device scratch of the conv and local kernels, shared by all layers of one
// device (they run one after another on its stream). The chunk of modules
// lowered at once follows from cols_floats, so sizes and chunking cannot drift.
struct ConvWorkspace {
  float* cols = nullptr;   // lowered patches (G·Cg·K·K, Mc·N)
  int64_t cols_floats = 0;
  float* blocks = nullptr;  // partial-sum blocks of a weight gradient, (blocks, Cg·K·K, F)
  int64_t blocks_floats = 0;
  float* acc = nullptr;     // accumulator when adding into a target: (C·S·S·N) or (Cg·K·K·F)
  int64_t acc_floats = 0;
  const int64_t* feeds = nullptr;  // this input's channel -> (g, c') CSR table (build_conv_feeds, core/op_params.h), device
};

// The smallest cols_floats that lets every minibatch of up to max_cases cases
// run with chunks of about `budget` floats: min(max(budget, G·r·N), G·r·M·N).
int64_t conv_cols_floats(const ConvParams& p, int64_t max_cases, int64_t budget);

// Modules lowered at once: clamp(cols_floats / (G·r·N), 1, M). Throws when
// cols_floats cannot hold one module.
int64_t conv_chunk_modules(const ConvParams& p, int64_t num_cases, int64_t cols_floats);

// y (+)= conv(x, w) for one input (the bias is added by conv_add_bias after the
// first input, §1.4).
void conv_fprop(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView x, ConstMatView w,
                MatView y, float scale_targets, const ConvWorkspace& ws);

// y += b: shared b[f] over the M modules of filter f, or unshared b[f·M + m].
void conv_add_bias(const Launch& l, ConstMatView b, MatView y, bool shared);

// dx (+)= the input gradient of one input (needs ws.feeds, and ws.acc of
// C·S·S·N floats when scale_targets != 0).
void conv_bprop_acts(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView dy, ConstMatView w,
                     MatView dx, float scale_targets, const ConvWorkspace& ws);

// g <- scale_targets·g + Σ_blocks scale·(Σ_{m in block} Σ_n patch·dy), blocks of
// partial_sum modules in raster order (0: one block), added in block order.
// Needs ws.blocks of at least Cg·K·K·F floats, and ws.acc of as many when
// scale_targets != 0.
void conv_bprop_weights(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView x,
                        ConstMatView dy, MatView g, int64_t partial_sum, float scale, float scale_targets,
                        const ConvWorkspace& ws);

// Bias gradient: shared gb[f] <- st·gb + scale·Σ_{m,n} dy[f, m, n]; unshared
// gb[f·M+m] <- st·gb + scale·Σ_n dy. The sum is in double (a fixed block-level
// tree, no atomics), rounded once to float, as the CPU's double sum is.
void conv_bprop_bias(const Launch& l, ConstMatView dy, MatView gb, bool shared, float scale, float scale_targets);

namespace lowering {

// cols (G·Cg·K·K, (m1-m0)·N) <- patches of modules [m0, m1), zeros outside the image.
void im2col(const Launch& l, const ConvParams& p, const float* x, int64_t num_cases, int64_t m0, int64_t m1,
            float* cols);

// img (C, S, S, N) += the cols of modules [m0, m1): a gather, one thread per
// image element, adding in the CPU's order ((g, c') pairs, ky, kx).
void col2im_add(const Launch& l, const ConvParams& p, const float* cols, int64_t num_cases, int64_t m0,
                int64_t m1, const int64_t* feeds, float* img);

}  // namespace lowering

}  // namespace alexnet::cuda
