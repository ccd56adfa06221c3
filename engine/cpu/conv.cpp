// CPU conv layer, engine.md §3.4 (geometry, groups, random sparsity, partialSum),
// §1.3 (weight layout), §7.2 (accumulation orders).
//
// Layout: x (C, S, S, N), y and dy (F, MY, MX, N), w (Cg·K·K, F) with the
// filter index fastest; all row-major float32, case index fastest.
// Accumulate-or-overwrite: every target is written as
// scale_targets·target + scale·result (engine.md §1.4); scale_targets == 0
// never reads the target.
//
// Method: lowering to matrix products. A chunk of Mc modules is lowered to a
// column matrix cols (G·Cg·K·K, Mc·N): row (g, c', ky, kx), column (m, n), so
// the (m, n) column order is exactly the order of a row of y. Then, per group g:
//   forward            y_g[:, chunk]  = w_gᵀ (Fg × CgKK) · cols_g (CgKK × Mc·N)
//   backward-to-input  cols_g         = w_g  (CgKK × Fg) · dy_g[:, chunk] (Fg × Mc·N), then col2im
//   weight gradient    block_g       += cols_g (CgKK × Mc·N) · dy_g[:, chunk]ᵀ (Mc·N × Fg)
// The chunk size bounds the scratch memory (kColumnBudgetFloats) while
// keeping the products large (for AlexNet conv2, N = 128: 13 modules, a
// 128 × 1200 × 1664 product).
//
// Float32 summation order, and parity (engine.md §7.3: "close only"):
// * Forward and the products above run inside OpenBLAS sgemm, whose inner-
//   product order (blocked over K, vectorised, with hardware FMA) differs from
//   the GPU kernels' order in §7.2 and may depend on the shape of the call, so
//   the chunk size and the panel layout (both functions of the geometry and N,
//   never of the thread count) change the rounding. Out-of-image taps
//   contribute exact zeros.
//   With scale_targets != 0 the product is added by sgemm's beta (y <- st·y,
//   then the product added), not as one rounded `st·old + acc`.
// * Backward-to-input: per pixel, the sgemm sum over the filters of a group,
//   then, in col2im_add, over chunks (in order), the (g, c') pairs reading the
//   pixel's channel, ky, kx, then modules. The GPU order is modules outer,
//   filters inner (§7.2).
// * Weight gradient: per partialSum block (P consecutive modules in raster
//   order, or all M for P = 0), an sgemm sum over (module, case) pairs (a
//   block cut into several chunks adds them in order through sgemm's beta), then
//   the block is scaled by `scale` (the caller's 1/N) and the blocks are added
//   in order, block 0 first; finally blended into the target. This is the
//   block structure of §3.4/§7.2; only the order inside a block is BLAS's.
// * Bias gradient: a double-precision sum over (m, n) in memory order, rounded
//   once to float32 and multiplied by `scale`. The GPU uses a tree reduction
//   (§7.2), so this too is "close only".
// Threads: OpenMP loops only over independent outputs (im2col rows, image rows
// in col2im, bias rows, panels of a product), each computed by one thread in a
// fixed order. Products go through alexnet::sgemm, whose panels do not depend
// on the thread count (blas.cpp). Results do not depend on the thread count.
#include "alexnet/cpu/conv.h"
#include "alexnet/cpu/layer.h"

#include <algorithm>
#include <cstring>

#include "alexnet/cpu/blas.h"

namespace alexnet::cpu {

namespace {
// Float budget of one lowered chunk (8 MiB): large products, bounded scratch.
constexpr int64_t kColumnBudgetFloats = int64_t{1} << 21;
}  // namespace

namespace lowering {

float* reserve(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

int64_t chunk_modules(const ConvParams& p, int64_t num_cases) {
  const int64_t m = p.modules();
  if (p.chunk_modules > 0) return std::min(p.chunk_modules, m);
  const int64_t per_module = p.groups * p.rows_per_group() * std::max<int64_t>(num_cases, 1);
  return std::clamp<int64_t>(kColumnBudgetFloats / per_module, 1, m);
}

void im2col(const ConvParams& p, const float* x, int64_t num_cases, int64_t m0, int64_t m1, float* cols) {
  const int64_t n = num_cases, s = p.img_size, k = p.filter_size, kk = k * k, cg = p.filter_channels;
  const int64_t rows = p.groups * cg * kk, width = (m1 - m0) * n;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t gc = r / kk, ky = (r % kk) / k, kx = r % k;
    const float* xc = x + p.channel(gc / cg, gc % cg) * s * s * n;  // (S, S, N) plane of the channel
    float* out = cols + r * width;
    for (int64_t m = m0; m < m1; ++m, out += n) {
      // Module (my, mx) reads rows [-p + my·st, ... + K), cols likewise (§3.4);
      // anything outside [0, S) -- padding or the ceiling overhang -- is zero.
      const int64_t yy = -p.padding + (m / p.modules_x) * p.stride + ky;
      const int64_t xx = -p.padding + (m % p.modules_x) * p.stride + kx;
      if (yy < 0 || yy >= s || xx < 0 || xx >= s)
        std::fill(out, out + n, 0.0f);
      else
        std::memcpy(out, xc + (yy * s + xx) * n, static_cast<size_t>(n) * sizeof(float));
    }
  }
}

void col2im_add(const ConvParams& p, const float* cols, int64_t num_cases, int64_t m0, int64_t m1, float* img,
                ConvScratch& scratch) {
  const int64_t n = num_cases, s = p.img_size, k = p.filter_size, mxs = p.modules_x, st = p.stride;
  const int64_t width = (m1 - m0) * n;
  const int64_t* offsets = scratch.feeds.data();
  const int64_t* pairs = offsets + p.channels + 1;
#pragma omp parallel for schedule(static)
  for (int64_t cy = 0; cy < p.channels * s; ++cy) {
    const int64_t c = cy / s, y = cy % s;
    float* row = img + cy * s * n;  // (S, N): image row y of channel c
    for (int64_t i = offsets[c]; i < offsets[c + 1]; ++i) {
      const int64_t gc = pairs[i];
      for (int64_t ky = 0; ky < k; ++ky) {
        // The module row whose tap ky lands on image row y: -p + my·st + ky = y.
        const int64_t t = y + p.padding - ky;
        if (t < 0 || t % st != 0 || t / st >= mxs) continue;
        const int64_t my = t / st;
        const int64_t mx_lo = std::max<int64_t>(0, m0 - my * mxs), mx_hi = std::min<int64_t>(mxs, m1 - my * mxs);
        if (mx_lo >= mx_hi) continue;
        for (int64_t kx = 0; kx < k; ++kx) {
          const float* src = cols + ((gc * k + ky) * k + kx) * width;
          for (int64_t mx = mx_lo; mx < mx_hi; ++mx) {
            const int64_t xx = -p.padding + mx * st + kx;
            if (xx < 0 || xx >= s) continue;
            const float* a = src + (my * mxs + mx - m0) * n;
            float* d = row + xx * n;
            for (int64_t j = 0; j < n; ++j) d[j] += a[j];
          }
        }
      }
    }
  }
}

float* begin_image_gradient(const ConvParams& p, int64_t num_cases, float* img, float scale_targets,
                            ConvScratch& scratch) {
  const int64_t size = p.channels * p.img_size * p.img_size * num_cases;
  // Overwrite: the target itself accumulates, from zeros (never read before).
  // Accumulate: a separate sum, blended in at the end as st·old + sum (§1.4).
  float* acc = scale_targets == 0.0f ? img : reserve(scratch.acc, size);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < size; ++i) acc[i] = 0.0f;
  return acc;
}

void finish_image_gradient(const ConvParams& p, int64_t num_cases, float* img, float scale_targets,
                           ConvScratch& scratch) {
  if (scale_targets == 0.0f) return;
  const int64_t size = p.channels * p.img_size * p.img_size * num_cases;
  const float* acc = scratch.acc.data();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < size; ++i) img[i] = blend(img[i], acc[i], scale_targets);
}

}  // namespace lowering

void conv_fprop(const ConvParams& p, ConstMatView x, ConstMatView w, MatView y, float scale_targets,
                ConvScratch& scratch) {
  const int64_t n = x.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t chunk = lowering::chunk_modules(p, n);
  float* cols = lowering::reserve(scratch.cols, p.groups * r * chunk * n);
  for (int64_t m0 = 0; m0 < m_all; m0 += chunk) {
    const int64_t m1 = std::min(m_all, m0 + chunk), width = (m1 - m0) * n;
    lowering::im2col(p, x.data, n, m0, m1, cols);
    for (int64_t g = 0; g < p.groups; ++g)
      // (Fg, Mc·N) rows g·Fg.. of y, columns m0·N..: = w_gᵀ · cols_g
      sgemm(true, false, fg, width, r, 1.0f, w.data + g * fg, f, cols + g * r * width, width,
                            scale_targets, y.data + g * fg * m_all * n + m0 * n, m_all * n);
  }
}

void conv_add_bias(ConstMatView b, MatView y, bool shared) {
  const int64_t per_bias = shared ? y.rows / b.rows : 1;  // M modules share b[f], or one row each
  const int64_t n = y.cols;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < y.rows; ++row) {
    const float bias = b.data[row / per_bias];
    float* out = y.data + row * n;
    for (int64_t j = 0; j < n; ++j) out[j] += bias;
  }
}

void conv_bprop_acts(const ConvParams& p, ConstMatView dy, ConstMatView w, MatView dx, float scale_targets,
                     ConvScratch& scratch) {
  const int64_t n = dy.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t chunk = lowering::chunk_modules(p, n);
  build_conv_feeds(p, scratch.feeds, scratch.fill);
  float* acc = lowering::begin_image_gradient(p, n, dx.data, scale_targets, scratch);
  float* cols = lowering::reserve(scratch.cols, p.groups * r * chunk * n);
  for (int64_t m0 = 0; m0 < m_all; m0 += chunk) {
    const int64_t m1 = std::min(m_all, m0 + chunk), width = (m1 - m0) * n;
    for (int64_t g = 0; g < p.groups; ++g)
      // cols_g (CgKK, Mc·N) = w_g (CgKK × Fg) · dy_g (Fg × Mc·N)
      sgemm(false, false, r, width, fg, 1.0f, w.data + g * fg, f,
                            dy.data + g * fg * m_all * n + m0 * n, m_all * n, 0.0f, cols + g * r * width, width);
    lowering::col2im_add(p, cols, n, m0, m1, acc, scratch);
  }
  lowering::finish_image_gradient(p, n, dx.data, scale_targets, scratch);
}

void conv_bprop_weights(const ConvParams& p, ConstMatView x, ConstMatView dy, MatView g, int64_t partial_sum,
                        float scale, float scale_targets, ConvScratch& scratch) {
  const int64_t n = x.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t rf = r * f;
  const int64_t block_modules = partial_sum > 0 ? partial_sum : m_all;  // P = 0: one block of all modules
  const int64_t blocks = m_all / block_modules;
  const int64_t chunk = std::min(lowering::chunk_modules(p, n), block_modules);
  float* cols = lowering::reserve(scratch.cols, p.groups * r * chunk * n);
  // Sum of the scaled blocks; the target itself when it is overwritten.
  float* acc = scale_targets == 0.0f ? g.data : lowering::reserve(scratch.acc, rf);
  float* block = blocks > 1 ? lowering::reserve(scratch.block, rf) : nullptr;
  for (int64_t b = 0; b < blocks; ++b) {
    float* dst = b == 0 ? acc : block;
    const int64_t b0 = b * block_modules, b1 = b0 + block_modules;
    for (int64_t m0 = b0; m0 < b1; m0 += chunk) {
      const int64_t m1 = std::min(b1, m0 + chunk), width = (m1 - m0) * n;
      lowering::im2col(p, x.data, n, m0, m1, cols);
      for (int64_t gi = 0; gi < p.groups; ++gi)
        // dst_g (CgKK, Fg) (+)= cols_g (CgKK × Mc·N) · dy_g (Mc·N × Fg); the
        // first chunk of a block overwrites.
        sgemm(false, true, r, fg, width, 1.0f, cols + gi * r * width, width,
                              dy.data + gi * fg * m_all * n + m0 * n, m_all * n, m0 == b0 ? 0.0f : 1.0f, dst + gi * fg,
                              f);
    }
    // T_b = scale · (block sum), then acc = T_0 + T_1 + ... in block order.
    if (b == 0) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < rf; ++i) acc[i] = scale * acc[i];
    } else {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < rf; ++i) acc[i] = acc[i] + scale * block[i];
    }
  }
  if (scale_targets != 0.0f) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rf; ++i) g.data[i] = blend(g.data[i], acc[i], scale_targets);
  }
}

void conv_bprop_bias(ConstMatView dy, MatView gb, bool shared, float scale, float scale_targets) {
  const int64_t per_bias = (shared ? dy.rows / gb.rows : 1) * dy.cols;  // values summed into one bias
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < gb.rows; ++o) {
    const float* d = dy.data + o * per_bias;  // rows of one filter (shared) or one (f, m) row are contiguous
    double sum = 0.0;
    for (int64_t i = 0; i < per_bias; ++i) sum += d[i];
    gb.data[o] = blend(gb.data[o], static_cast<float>(sum), scale_targets, scale);
  }
}

}  // namespace alexnet::cpu

// ---- the conv layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) {
  weight_layer_forward(
      r, [&](size_t i, MatView y, float st) { conv_fprop(r.layer.conv[i], r.in(i), r.matrix(i, &MatrixStore::w), y, st,
                                                         r.store().conv_scratch); },
      [&](MatView y) { conv_add_bias(r.bias_matrix(&MatrixStore::w), y, r.spec().shared_biases); });
}

void backward(const LayerRun& r) {
  const float inv_n = r.grad_scale();  // 1/N (§1.5)
  weight_layer_backward(
      r,
      [&](size_t i, MatView dx, float st) {
        conv_bprop_acts(r.layer.conv[i], r.dy(), r.matrix(i, &MatrixStore::w), dx, st, r.store().conv_scratch);
      },
      [&](size_t i, bool first) {  // G (the update forms inc from it); later contributions add
        conv_bprop_weights(r.layer.conv[i], r.in(i), r.dy(), r.matrix(i, &MatrixStore::grad), r.spec().partial_sum,
                           inv_n, first ? 0.0f : 1.0f, r.store().conv_scratch);
      },
      [&](bool first) {
        conv_bprop_bias(r.dy(), r.bias_matrix(&MatrixStore::grad), r.spec().shared_biases, inv_n, first ? 0.0f : 1.0f);
      });
}

const bool registered = register_layer("conv", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
