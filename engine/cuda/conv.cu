// CUDA conv layer, engine.md §3.4 (geometry, groups, random sparsity,
// partialSum), §1.3 (weight layout), §7.2 (accumulation orders); the semantics
// of engine/cpu/conv.cpp, whose comment explains the lowering.
//
// Layout (DEVICE memory, row-major float32, case fastest): x (C, S, S, N),
// y and dy (F, MY, MX, N), w (Cg·K·K, F) with the filter index fastest,
// cols (G·Cg·K·K, Mc·N) with row (g, c', ky, kx) and column (m − m0, n).
// Accumulate-or-overwrite: every target is scale_targets·target + scale·result
// (§1.4); scale_targets == 0 never reads the target.
//
// Float32 order (parity class "close only" against the CPU, docs/parity.md):
// * products: cuBLAS (its own blocking) or the built-in kernel;
// * backward-to-input: per image element, the CPU's order inside a chunk
//   ((g, c') pairs reading the channel, increasing; ky; kx), chunks in order;
// * weight gradient: per partialSum block a GEMM over (module, case), the block
//   scaled by `scale`, blocks added in order, block 0 first (§3.4, §7.2);
// * bias gradient: a double sum in a fixed block tree, rounded once to float.
// No float atomics anywhere: results repeat run to run.
#include <stdexcept>
#include <string>

#include "alexnet/cuda/conv.h"
#include "layer.h"
#include "alexnet/cuda/util.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

// Image channel read by filter channel c' of group g, i.e. by pair gc = g·Cg + c'
// (p.conns is a device pointer, or null for dense groups).
__device__ __forceinline__ int64_t channel_of(const ConvParams& p, int64_t gc) {
  return p.conns != nullptr ? static_cast<int64_t>(p.conns[gc]) : gc;
}

// One thread per element of cols: i = r·width + (m − m0)·N + n.
__global__ void im2col_kernel(ConvParams p, const float* x, int64_t n_cases, int64_t m0, int64_t m1,
                              float* cols) {
  const int64_t s = p.img_size, k = p.filter_size, kk = k * k;
  const int64_t rows = p.groups * p.filter_channels * kk, width = (m1 - m0) * n_cases;
  const int64_t total = rows * width;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t r = i / width, rest = i % width;
    const int64_t m = m0 + rest / n_cases, n = rest % n_cases;
    const int64_t gc = r / kk, ky = (r % kk) / k, kx = r % k;
    // Module (my, mx) reads rows [-p + my·st, ... + K), cols likewise (§3.4);
    // outside [0, S) -- padding or the ceiling overhang -- is zero.
    const int64_t yy = -p.padding + (m / p.modules_x) * p.stride + ky;
    const int64_t xx = -p.padding + (m % p.modules_x) * p.stride + kx;
    const bool inside = yy >= 0 && yy < s && xx >= 0 && xx < s;
    cols[i] = inside ? x[((channel_of(p, gc) * s + yy) * s + xx) * n_cases + n] : 0.0f;
  }
}

// One thread per image element i = ((c·S + y)·S + x)·N + n: img[i] += every
// cols entry read from it, in the CPU's order. feeds: offsets[0..C], then the
// pairs gc reading each channel, increasing (build_conv_feeds, core/op_params.h).
__global__ void col2im_kernel(ConvParams p, const float* cols, int64_t n_cases, int64_t m0, int64_t m1,
                              const int64_t* feeds, float* img) {
  const int64_t s = p.img_size, k = p.filter_size, mxs = p.modules_x, st = p.stride;
  const int64_t width = (m1 - m0) * n_cases;
  const int64_t total = p.channels * s * s * n_cases;
  const int64_t* offsets = feeds;
  const int64_t* pairs = feeds + p.channels + 1;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, pix = i / n_cases;
    const int64_t c = pix / (s * s), y = (pix / s) % s, x = pix % s;
    float v = img[i];
    for (int64_t j = offsets[c]; j < offsets[c + 1]; ++j) {
      const int64_t gc = pairs[j];
      for (int64_t ky = 0; ky < k; ++ky) {
        const int64_t t = y + p.padding - ky;  // -p + my·st + ky = y
        if (t < 0 || t % st != 0 || t / st >= mxs) continue;
        const int64_t my = t / st;
        for (int64_t kx = 0; kx < k; ++kx) {
          const int64_t u = x + p.padding - kx;  // -p + mx·st + kx = x
          if (u < 0 || u % st != 0 || u / st >= mxs) continue;
          const int64_t m = my * mxs + u / st;
          if (m < m0 || m >= m1) continue;
          v = v + cols[((gc * k + ky) * k + kx) * width + (m - m0) * n_cases + n];
        }
      }
    }
    img[i] = v;
  }
}

// y[row, n] += b[row / per_bias] (per_bias = M shared, 1 unshared).
__global__ void add_bias_kernel(const float* b, float* y, int64_t rows, int64_t cols, int64_t per_bias) {
  const int64_t total = rows * cols;
  for (int64_t i = grid_start(); i < total; i += grid_step()) y[i] = y[i] + b[(i / cols) / per_bias];
}

// One block per bias o: the per_bias contiguous values of dy feeding it,
// summed in double (strided per thread, then block_sum's fixed tree).
__global__ void bias_grad_kernel(const float* dy, float* gb, int64_t per_bias, float scale, float st) {
  const int64_t o = blockIdx.x;
  const float* d = dy + o * per_bias;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < per_bias; i += blockDim.x) sum += static_cast<double>(d[i]);
  sum = block_sum(sum);
  if (threadIdx.x == 0) gb[o] = blend_d(gb[o], static_cast<float>(sum), st, scale);
}

// acc <- (first ? 0 : acc) + Σ_b scale·T_b for the nb blocks T_b = blocks + b·size,
// in block order: acc = scale·T_0 when first, acc + scale·T_0 otherwise, then
// + scale·T_b for b = 1.. (the CPU's order, engine.md §3.4).
__global__ void accumulate_blocks_kernel(float* acc, const float* blocks, int64_t nb, int64_t size, float scale,
                                         bool first) {
  for (int64_t i = grid_start(); i < size; i += grid_step()) {
    float a = first ? scale * blocks[i] : acc[i] + scale * blocks[i];
    for (int64_t b = 1; b < nb; ++b) a = a + scale * blocks[b * size + i];
    acc[i] = a;
  }
}

void zero(const Launch& l, float* p, int64_t count) {
  check(cudaMemsetAsync(p, 0, static_cast<size_t>(count) * sizeof(float), l.stream),
        std::string("cudaMemsetAsync (layer '") + l.layer + "')");
}

}  // namespace

int64_t conv_cols_floats(const ConvParams& p, int64_t max_cases, int64_t budget) {
  const int64_t per_case_module = p.groups * p.rows_per_group();
  const int64_t at_least = budget > per_case_module * max_cases ? budget : per_case_module * max_cases;
  const int64_t all = per_case_module * p.modules() * max_cases;
  return at_least < all ? at_least : all;
}

int64_t conv_chunk_modules(const ConvParams& p, int64_t num_cases, int64_t cols_floats) {
  const int64_t per_module = p.groups * p.rows_per_group() * (num_cases > 0 ? num_cases : 1);
  if (cols_floats < per_module)
    throw std::logic_error("conv workspace of " + std::to_string(cols_floats) + " floats cannot hold one module (" +
                           std::to_string(per_module) + ")");
  const int64_t chunk = cols_floats / per_module;
  return chunk > p.modules() ? p.modules() : chunk;
}

namespace lowering {

void im2col(const Launch& l, const ConvParams& p, const float* x, int64_t num_cases, int64_t m0, int64_t m1,
            float* cols) {
  const int64_t total = p.groups * p.rows_per_group() * (m1 - m0) * num_cases;
  if (total <= 0) return;
  im2col_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, x, num_cases, m0, m1, cols);
  check_launch(l, "im2col_kernel");
}

void col2im_add(const Launch& l, const ConvParams& p, const float* cols, int64_t num_cases, int64_t m0,
                int64_t m1, const int64_t* feeds, float* img) {
  const int64_t total = p.channels * p.img_size * p.img_size * num_cases;
  if (total <= 0) return;
  col2im_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, cols, num_cases, m0, m1, feeds, img);
  check_launch(l, "col2im_kernel");
}

}  // namespace lowering

void conv_fprop(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView x, ConstMatView w,
                MatView y, float scale_targets, const ConvWorkspace& ws) {
  const int64_t n = x.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t chunk = conv_chunk_modules(p, n, ws.cols_floats);
  for (int64_t m0 = 0; m0 < m_all; m0 += chunk) {
    const int64_t m1 = m_all < m0 + chunk ? m_all : m0 + chunk, width = (m1 - m0) * n;
    lowering::im2col(l, p, x.data, n, m0, m1, ws.cols);
    // per group g (batched): y_g[:, m0·N..] (Fg, Mc·N) = w_gᵀ (Fg × CgKK) · cols_g (CgKK × Mc·N)
    gemm.sgemm(l, true, false, fg, width, r, 1.0f, w.data, f, fg, ws.cols, width, r * width, scale_targets,
               y.data + m0 * n, m_all * n, fg * m_all * n, p.groups);
  }
}

void conv_add_bias(const Launch& l, ConstMatView b, MatView y, bool shared) {
  const int64_t per_bias = shared ? y.rows / b.rows : 1;
  const int64_t total = y.rows * y.cols;
  if (total <= 0) return;
  add_bias_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(b.data, y.data, y.rows, y.cols, per_bias);
  check_launch(l, "add_bias_kernel");
}

void conv_bprop_acts(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView dy, ConstMatView w,
                     MatView dx, float scale_targets, const ConvWorkspace& ws) {
  const int64_t n = dy.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t image = p.channels * p.img_size * p.img_size * n;
  const int64_t chunk = conv_chunk_modules(p, n, ws.cols_floats);
  // Overwrite: dx accumulates from zeros. Add: a separate sum, blended at the end (§1.4).
  if (scale_targets != 0.0f && ws.acc_floats < image) throw std::logic_error("conv workspace: acc too small");
  float* acc = scale_targets == 0.0f ? dx.data : ws.acc;
  zero(l, acc, image);
  for (int64_t m0 = 0; m0 < m_all; m0 += chunk) {
    const int64_t m1 = m_all < m0 + chunk ? m_all : m0 + chunk, width = (m1 - m0) * n;
    // per group g (batched): cols_g (CgKK, Mc·N) = w_g (CgKK × Fg) · dy_g (Fg × Mc·N)
    gemm.sgemm(l, false, false, r, width, fg, 1.0f, w.data, f, fg, dy.data + m0 * n, m_all * n, fg * m_all * n, 0.0f,
               ws.cols, width, r * width, p.groups);
    lowering::col2im_add(l, p, ws.cols, n, m0, m1, ws.feeds, acc);
  }
  if (scale_targets != 0.0f) blend_into(l, acc, dx.data, image, 1.0f, scale_targets);
}

void conv_bprop_weights(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView x,
                        ConstMatView dy, MatView g, int64_t partial_sum, float scale, float scale_targets,
                        const ConvWorkspace& ws) {
  const int64_t n = x.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t rf = r * f;
  const int64_t block_modules = partial_sum > 0 ? partial_sum : m_all;  // P = 0: one block of all modules
  const int64_t blocks = m_all / block_modules;
  const int64_t chunk = conv_chunk_modules(p, n, ws.cols_floats);
  if (ws.blocks_floats < rf) throw std::logic_error("conv workspace: blocks too small");
  if (scale_targets != 0.0f && ws.acc_floats < rf) throw std::logic_error("conv workspace: acc too small");
  float* acc = scale_targets == 0.0f ? g.data : ws.acc;  // sum of the scaled blocks
  if (block_modules <= chunk) {
    // Whole blocks per chunk: one GEMM per group, batched over the chunk's blocks,
    // block b into ws.blocks + b·rf, then added in block order.
    int64_t per_chunk = chunk / block_modules;
    if (per_chunk > ws.blocks_floats / rf) per_chunk = ws.blocks_floats / rf;
    for (int64_t b0 = 0; b0 < blocks; b0 += per_chunk) {
      const int64_t nb = blocks - b0 < per_chunk ? blocks - b0 : per_chunk;
      const int64_t m0 = b0 * block_modules, m1 = m0 + nb * block_modules, width = (m1 - m0) * n;
      const int64_t block_cols = block_modules * n;
      lowering::im2col(l, p, x.data, n, m0, m1, ws.cols);
      for (int64_t gi = 0; gi < p.groups; ++gi)
        // T_b[:, g·Fg..] (CgKK, Fg) = cols_g[:, block b] (CgKK × P·N) · dy_g[:, block b]ᵀ (P·N × Fg)
        gemm.sgemm(l, false, true, r, fg, block_cols, 1.0f, ws.cols + gi * r * width, width, block_cols,
                   dy.data + gi * fg * m_all * n + m0 * n, m_all * n, block_cols, 0.0f, ws.blocks + gi * fg, f, rf,
                   nb);
      accumulate_blocks_kernel<<<grid_for(rf), kThreads, 0, l.stream>>>(acc, ws.blocks, nb, rf, scale, b0 == 0);
      check_launch(l, "accumulate_blocks_kernel");
    }
  } else {
    // A block spans several chunks: its chunks add into ws.blocks through the
    // GEMM's beta (the first overwrites), as the CPU does; then the block is added.
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t b0 = b * block_modules, b1 = b0 + block_modules;
      for (int64_t m0 = b0; m0 < b1; m0 += chunk) {
        const int64_t m1 = b1 < m0 + chunk ? b1 : m0 + chunk, width = (m1 - m0) * n;
        lowering::im2col(l, p, x.data, n, m0, m1, ws.cols);
        gemm.sgemm(l, false, true, r, fg, width, 1.0f, ws.cols, width, r * width, dy.data + m0 * n, m_all * n,
                   fg * m_all * n, m0 == b0 ? 0.0f : 1.0f, ws.blocks, f, fg, p.groups);
      }
      accumulate_blocks_kernel<<<grid_for(rf), kThreads, 0, l.stream>>>(acc, ws.blocks, 1, rf, scale, b == 0);
      check_launch(l, "accumulate_blocks_kernel");
    }
  }
  if (scale_targets != 0.0f) blend_into(l, acc, g.data, rf, 1.0f, scale_targets);
}

void conv_bprop_bias(const Launch& l, ConstMatView dy, MatView gb, bool shared, float scale, float scale_targets) {
  if (gb.rows <= 0) return;
  const int64_t per_bias = (shared ? dy.rows / gb.rows : 1) * dy.cols;  // values summed into one bias
  if (gb.rows >= (int64_t{1} << 31)) throw std::length_error("conv_bprop_bias: too many biases for one grid");
  bias_grad_kernel<<<static_cast<unsigned>(gb.rows), kThreads, 0, l.stream>>>(dy.data, gb.data, per_bias, scale,
                                                                              scale_targets);
  check_launch(l, "bias_grad_kernel");
}

}  // namespace alexnet::cuda

// ---- the conv layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {

void setup_conv_tables(const LayerPlan& L, LayerStore& B, Devices& D) {
  const std::string of = " of layer '" + L.spec.name + "'";
  for (size_t i = 0; i < L.conv.size(); ++i) {
    ConvParams p = L.conv[i];
    std::vector<int64_t> feeds, cursor;
    build_conv_feeds(p, feeds, cursor);
    B.feeds.push_back(D.upload(B.dev, feeds, "conv feeds" + of));
    if (!L.spec.conv[i].conns.empty()) p.conns = D.upload(B.dev, L.spec.conv[i].conns, "connection table" + of);
    B.conv.push_back(p);
  }
}

namespace {

void forward(const LayerRun& r) {
  weight_layer_forward(
      r, [&](size_t i, MatView y, float st) { conv_fprop(r.lc, r.gemm, r.store.conv[i], r.in(i),
                                                         r.matrix(i, &MatrixStore::w), y, st, r.conv_workspace(i)); },
      [&](MatView y) { conv_add_bias(r.lc, r.bias_matrix(&MatrixStore::w), y, r.spec().shared_biases); });
}

void backward(const LayerRun& r) {
  const float inv_n = r.grad_scale();  // 1/N (§1.5)
  weight_layer_backward(
      r,
      [&](size_t i, MatView dx, float st) {
        conv_bprop_acts(r.lc, r.gemm, r.store.conv[i], r.dy(), r.matrix(i, &MatrixStore::w), dx, st, r.conv_workspace(i));
      },
      [&](size_t i, bool first) {  // G (the update forms inc from it); later contributions add
        conv_bprop_weights(r.lc, r.gemm, r.store.conv[i], r.in(i), r.dy(), r.matrix(i, &MatrixStore::grad),
                           r.spec().partial_sum, inv_n, first ? 0.0f : 1.0f, r.conv_workspace(i));
      },
      [&](bool first) {
        conv_bprop_bias(r.lc, r.dy(), r.bias_matrix(&MatrixStore::grad), r.spec().shared_biases, inv_n,
                        first ? 0.0f : 1.0f);
      });
}

const bool registered = register_layer("conv", {forward, backward, setup_conv_tables});

}  // namespace
}  // namespace alexnet::cuda
