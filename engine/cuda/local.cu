// CUDA local (unshared) layer, engine.md §3.5 (geometry, groups and random
// sparsity of §3.4), §1.3 (weight layout), §4.2 (increment path); the
// semantics of engine/cpu/local.cpp.
//
// Layout (DEVICE memory, case fastest): x (C, S, S, N), y and dy (F, MY, MX, N),
// w and inc (M·Cg·K·K, F) with row (m·Cg + c')·K·K + ky·K + kx.
// Accumulate-or-overwrite: scale_targets·target + scale·result (§1.4).
//
// Method: conv's lowering (conv.cu), then per group one GEMM batched over the
// modules of the chunk (module m: weights at w + m·Cg·K·K·F, its columns of
// cols at (m − m0)·N, its rows of y at m·N), the per-(module, group) products
// of the CPU. Float32 order as conv.cu ("close only").
#include "alexnet/cuda/local.h"
#include "layer.h"
#include "alexnet/cuda/util.h"
#include "common.cuh"

namespace alexnet::cuda {

void local_fprop(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView x, ConstMatView w,
                 MatView y, float scale_targets, const ConvWorkspace& ws) {
  const int64_t n = x.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t chunk = conv_chunk_modules(p, n, ws.cols_floats);
  for (int64_t m0 = 0; m0 < m_all; m0 += chunk) {
    const int64_t m1 = m_all < m0 + chunk ? m_all : m0 + chunk, width = (m1 - m0) * n;
    lowering::im2col(l, p, x.data, n, m0, m1, ws.cols);
    for (int64_t g = 0; g < p.groups; ++g)
      // module m: y_g[:, m] (Fg × N) = w_{m,g}ᵀ (Fg × CgKK) · cols_g[:, m] (CgKK × N)
      gemm.sgemm(l, true, false, fg, n, r, 1.0f, w.data + m0 * r * f + g * fg, f, r * f, ws.cols + g * r * width,
                 width, n, scale_targets, y.data + (g * fg * m_all + m0) * n, m_all * n, n, m1 - m0);
  }
}

void local_bprop_acts(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView dy,
                      ConstMatView w, MatView dx, float scale_targets, const ConvWorkspace& ws) {
  const int64_t n = dy.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t image = p.channels * p.img_size * p.img_size * n;
  const int64_t chunk = conv_chunk_modules(p, n, ws.cols_floats);
  if (scale_targets != 0.0f && ws.acc_floats < image) throw std::logic_error("local workspace: acc too small");
  float* acc = scale_targets == 0.0f ? dx.data : ws.acc;
  check(cudaMemsetAsync(acc, 0, static_cast<size_t>(image) * sizeof(float), l.stream),
        std::string("cudaMemsetAsync (layer '") + l.layer + "')");
  for (int64_t m0 = 0; m0 < m_all; m0 += chunk) {
    const int64_t m1 = m_all < m0 + chunk ? m_all : m0 + chunk, width = (m1 - m0) * n;
    for (int64_t g = 0; g < p.groups; ++g)
      // module m: cols_g[:, m] (CgKK × N) = w_{m,g} (CgKK × Fg) · dy_g[:, m] (Fg × N)
      gemm.sgemm(l, false, false, r, n, fg, 1.0f, w.data + m0 * r * f + g * fg, f, r * f,
                 dy.data + (g * fg * m_all + m0) * n, m_all * n, n, 0.0f, ws.cols + g * r * width, width, n, m1 - m0);
    lowering::col2im_add(l, p, ws.cols, n, m0, m1, ws.feeds, acc);
  }
  if (scale_targets != 0.0f) blend_into(l, acc, dx.data, image, 1.0f, scale_targets);
}

void local_bprop_weights(const Launch& l, const Gemm& gemm, const ConvParams& p, ConstMatView x,
                         ConstMatView dy, MatView inc, float scale_output, float scale_targets,
                         const ConvWorkspace& ws) {
  const int64_t n = x.cols, m_all = p.modules(), f = p.filters, fg = p.filters_per_group(), r = p.rows_per_group();
  const int64_t chunk = conv_chunk_modules(p, n, ws.cols_floats);
  for (int64_t m0 = 0; m0 < m_all; m0 += chunk) {
    const int64_t m1 = m_all < m0 + chunk ? m_all : m0 + chunk, width = (m1 - m0) * n;
    lowering::im2col(l, p, x.data, n, m0, m1, ws.cols);
    for (int64_t g = 0; g < p.groups; ++g)
      // module m: inc_{m,g} (CgKK × Fg) = st·inc + so·cols_g[:, m] (CgKK × N) · dy_g[:, m]ᵀ (N × Fg)
      gemm.sgemm(l, false, true, r, fg, n, scale_output, ws.cols + g * r * width, width, n,
                 dy.data + (g * fg * m_all + m0) * n, m_all * n, n, scale_targets, inc.data + m0 * r * f + g * fg, f,
                 r * f, m1 - m0);
  }
}

}  // namespace alexnet::cuda

// ---- the local layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  weight_layer_forward(
      r, [&](size_t i, MatView y, float st) { local_fprop(r.lc, r.gemm, r.store.conv[i], r.in(i),
                                                          r.matrix(i, &MatrixStore::w), y, st, r.conv_workspace(i)); },
      [&](MatView y) { conv_add_bias(r.lc, r.bias_matrix(&MatrixStore::w), y, false); });  // one bias per output
}

void backward(const LayerRun& r) {
  const float inv_n = r.grad_scale();  // 1/N (§1.5)
  weight_layer_backward(
      r,
      [&](size_t i, MatView dx, float st) {
        local_bprop_acts(r.lc, r.gemm, r.store.conv[i], r.dy(), r.matrix(i, &MatrixStore::w), dx, st,
                         r.conv_workspace(i));
      },
      [&](size_t i, bool first) {  // inc <- mom*inc + (eps/N) G; mom 1 for later contributions
        const MatrixPlan& w = r.weight_plan(i);
        if (w.has_grad) {  // superEps (§4.4) forces the useGrad path: G <- (first ? 0 : G) + (1/N) sum
          local_bprop_weights(r.lc, r.gemm, r.store.conv[i], r.in(i), r.dy(), r.matrix(i, &MatrixStore::grad),
                              inv_n, first ? 0.0f : 1.0f, r.conv_workspace(i));
          return;
        }
        local_bprop_weights(r.lc, r.gemm, r.store.conv[i], r.in(i), r.dy(), r.matrix(i, &MatrixStore::inc),
                            w.eps * inv_n, first ? w.mom : 1.0f, r.conv_workspace(i));
      },
      [&](bool first) {
        conv_bprop_bias(r.lc, r.dy(), r.bias_matrix(&MatrixStore::grad), false, inv_n, first ? 0.0f : 1.0f);
      });
}

const bool registered = register_layer("local", {forward, backward, setup_conv_tables});

}  // namespace
}  // namespace alexnet::cuda
