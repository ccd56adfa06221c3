// CPU local (unshared) layer, engine.md §3.5 (with the geometry, groups and
// random sparsity of §3.4), §1.3 (weight layout), §4.2 (increment path).
//
// Layout: x (C, S, S, N), y and dy (F, MY, MX, N), w (M·Cg·K·K, F) with the
// filter index fastest; row-major float32, case index fastest.
// Accumulate-or-overwrite: targets are scale_targets·target + scale·result
// (engine.md §1.4); scale_targets == 0 never reads the target.
//
// Method: the lowering of conv.cpp (a chunk of modules to a column matrix
// (G·Cg·K·K, Mc·N)), then one sgemm per (module, group), because every module
// has its own weights:
//   forward            y_g[:, m]   = w_{m,g}ᵀ (Fg × CgKK) · cols_g[:, m] (CgKK × N)
//   backward-to-input  cols_g[:, m] = w_{m,g} (CgKK × Fg) · dy_g[:, m] (Fg × N), then col2im
//   weight increment   inc_{m,g}   = st·inc_{m,g} + so·cols_g[:, m] (CgKK × N) · dy_g[:, m]ᵀ (N × Fg)
// Float32 order ("close only", engine.md §7.3): inner products in OpenBLAS's
// order; the increment is sgemm's beta·C + alpha·(A·B), the same single
// product the release used (beta = momW, alpha = epsW/N); backward-to-input
// sums as in conv.cpp's col2im_add (per pixel: (g, c') pairs, ky, kx, modules).
// Threads: the (module, group) products of a chunk are independent and run in
// an OpenMP loop, each one sgemm (single-threaded inside the loop: blas.cpp);
// lowering as conv.cpp. Results do not depend on the thread count.
#include "alexnet/cpu/local.h"
#include "alexnet/cpu/layer.h"

#include <algorithm>

#include "alexnet/cpu/blas.h"

namespace alexnet::cpu {

void local_fprop(const ConvParams& p, ConstMatView x, ConstMatView w, MatView y, float scale_targets,
                 ConvScratch& scratch) {
  const int64_t n = x.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t chunk = lowering::chunk_modules(p, n);
  float* cols = lowering::reserve(scratch.cols, p.groups * r * chunk * n);
  for (int64_t m0 = 0; m0 < m_all; m0 += chunk) {
    const int64_t m1 = std::min(m_all, m0 + chunk), width = (m1 - m0) * n;
    lowering::im2col(p, x.data, n, m0, m1, cols);
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t mg = m0 * p.groups; mg < m1 * p.groups; ++mg) {
      const int64_t m = mg / p.groups, g = mg % p.groups;
      sgemm(true, false, fg, n, r, 1.0f, w.data + m * r * f + g * fg, f, cols + g * r * width + (m - m0) * n, width,
            scale_targets, y.data + (g * fg * m_all + m) * n, m_all * n);
    }
  }
}

void local_bprop_acts(const ConvParams& p, ConstMatView dy, ConstMatView w, MatView dx, float scale_targets,
                      ConvScratch& scratch) {
  const int64_t n = dy.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t chunk = lowering::chunk_modules(p, n);
  build_conv_feeds(p, scratch.feeds, scratch.fill);
  float* acc = lowering::begin_image_gradient(p, n, dx.data, scale_targets, scratch);
  float* cols = lowering::reserve(scratch.cols, p.groups * r * chunk * n);
  for (int64_t m0 = 0; m0 < m_all; m0 += chunk) {
    const int64_t m1 = std::min(m_all, m0 + chunk), width = (m1 - m0) * n;
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t mg = m0 * p.groups; mg < m1 * p.groups; ++mg) {
      const int64_t m = mg / p.groups, g = mg % p.groups;
      sgemm(false, false, r, n, fg, 1.0f, w.data + m * r * f + g * fg, f, dy.data + (g * fg * m_all + m) * n,
            m_all * n, 0.0f, cols + g * r * width + (m - m0) * n, width);
    }
    lowering::col2im_add(p, cols, n, m0, m1, acc, scratch);
  }
  lowering::finish_image_gradient(p, n, dx.data, scale_targets, scratch);
}

void local_bprop_weights(const ConvParams& p, ConstMatView x, ConstMatView dy, MatView inc, float scale_output,
                         float scale_targets, ConvScratch& scratch) {
  const int64_t n = x.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t chunk = lowering::chunk_modules(p, n);
  float* cols = lowering::reserve(scratch.cols, p.groups * r * chunk * n);
  for (int64_t m0 = 0; m0 < m_all; m0 += chunk) {
    const int64_t m1 = std::min(m_all, m0 + chunk), width = (m1 - m0) * n;
    lowering::im2col(p, x.data, n, m0, m1, cols);
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t mg = m0 * p.groups; mg < m1 * p.groups; ++mg) {
      const int64_t m = mg / p.groups, g = mg % p.groups;
      sgemm(false, true, r, fg, n, scale_output, cols + g * r * width + (m - m0) * n, width,
            dy.data + (g * fg * m_all + m) * n, m_all * n, scale_targets, inc.data + m * r * f + g * fg, f);
    }
  }
}

}  // namespace alexnet::cpu

// ---- the local layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) {
  weight_layer_forward(
      r, [&](size_t i, MatView y, float st) { local_fprop(r.layer.conv[i], r.in(i), r.matrix(i, &MatrixStore::w), y,
                                                          st, r.store().conv_scratch); },
      [&](MatView y) { conv_add_bias(r.bias_matrix(&MatrixStore::w), y, false); });  // one bias per output
}

void backward(const LayerRun& r) {
  const float inv_n = r.grad_scale();  // 1/N (§1.5)
  weight_layer_backward(
      r,
      [&](size_t i, MatView dx, float st) {
        local_bprop_acts(r.layer.conv[i], r.dy(), r.matrix(i, &MatrixStore::w), dx, st, r.store().conv_scratch);
      },
      [&](size_t i, bool first) {  // inc <- mom*inc + (eps/N) G; mom 1 for later contributions
        const MatrixPlan& w = r.weight_plan(i);
        if (w.has_grad) {  // superEps (§4.4) forces the useGrad path: G <- (first ? 0 : G) + (1/N) sum
          local_bprop_weights(r.layer.conv[i], r.in(i), r.dy(), r.matrix(i, &MatrixStore::grad), inv_n,
                              first ? 0.0f : 1.0f, r.store().conv_scratch);
          return;
        }
        local_bprop_weights(r.layer.conv[i], r.in(i), r.dy(), r.matrix(i, &MatrixStore::inc), w.eps * inv_n,
                            first ? w.mom : 1.0f, r.store().conv_scratch);
      },
      [&](bool first) {
        conv_bprop_bias(r.dy(), r.bias_matrix(&MatrixStore::grad), false, inv_n, first ? 0.0f : 1.0f);
      });
}

const bool registered = register_layer("local", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
