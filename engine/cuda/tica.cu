// CUDA cost.tica, engine.md §3.29; the semantics and float order of
// engine/cpu/tica.cpp: A = 1/(0.001 + sqrt(Σ_W X²)) with the window sum in raster
// order from 0 (sqrtf and '/' IEEE, where the release used __fdividef), reported
// cost ΣA (each row's cases added in float64 in order on the device, the rows in
// order on the host: the CPU's sum), and the as-written backward (§13 item 3):
// (−coeff·X)·Σ_W A on the overwrite path, (−coeff·X)·sqrt(Σ_W A) on the accumulate path.
// Layout (DEVICE memory): x, a, dx (C, S, S, N) viewed as (C·S·S, N), case fastest.
// One thread per element; no FMA (--fmad=false).
#include <string>
#include <vector>

#include "alexnet/cuda/tica.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void tica_a_kernel(TicaParams p, const float* x, float* a, int64_t n_cases, int64_t total) {
  const int64_t s = p.img_size;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, r = i / n_cases;
    const int64_t c = r / (s * s), py = (r / s) % s, px = r % s;
    int64_t y0, y1, x0, x1;
    norm_window(py, p.size_x, s, &y0, &y1);
    norm_window(px, p.size_x, s, &x0, &x1);
    float sum = 0.0f;
    for (int64_t wy = y0; wy < y1; ++wy)
      for (int64_t wx = x0; wx < x1; ++wx) {
        const float v = x[((c * s + wy) * s + wx) * n_cases + n];
        sum += v * v;
      }
    a[i] = 1.0f / (0.001f + sqrtf(sum));
  }
}

__global__ void tica_rows_kernel(const float* a, int64_t rows, int64_t cols, double* out) {
  for (int64_t r = grid_start(); r < rows; r += grid_step()) {
    double sum = 0.0;
    for (int64_t n = 0; n < cols; ++n) sum += static_cast<double>(a[r * cols + n]);
    out[r] = sum;
  }
}

__global__ void tica_grad_kernel(TicaParams p, const float* x, const float* a, float* dx, float coeff, float st,
                                 int64_t n_cases, int64_t total) {
  const int64_t s = p.img_size;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t n = i % n_cases, r = i / n_cases;
    const int64_t c = r / (s * s), py = (r / s) % s, px = r % s;
    int64_t y0, y1, x0, x1;
    norm_window(py, p.size_x, s, &y0, &y1);
    norm_window(px, p.size_x, s, &x0, &x1);
    float sum = 0.0f;
    for (int64_t wy = y0; wy < y1; ++wy)
      for (int64_t wx = x0; wx < x1; ++wx) sum += a[((c * s + wy) * s + wx) * n_cases + n];
    const float g = -coeff * x[i] * (st == 0.0f ? sum : sqrtf(sum));
    dx[i] = blend_d(dx[i], g, st);
  }
}

void form_a(const Launch& l, const TicaParams& p, ConstMatView x, float* a) {
  const int64_t total = x.size();
  tica_a_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, x.data, a, x.cols, total);
  check_launch(l, "tica_a_kernel");
}

}  // namespace

double tica_cost(const Launch& l, const TicaParams& p, ConstMatView x, float* a, double* rows) {
  if (x.size() <= 0) return 0.0;
  form_a(l, p, x, a);
  tica_rows_kernel<<<grid_for(x.rows), kThreads, 0, l.stream>>>(a, x.rows, x.cols, rows);
  check_launch(l, "tica_rows_kernel");
  std::vector<double> host(static_cast<size_t>(x.rows));
  const std::string what = std::string("copying the cost terms of layer '") + l.layer + "'";
  check(cudaMemcpyAsync(host.data(), rows, host.size() * sizeof(double), cudaMemcpyDeviceToHost, l.stream), what);
  check(cudaStreamSynchronize(l.stream), what);
  double total = 0.0;  // rows in order, as the CPU
  for (double v : host) total += v;
  return total;
}

void tica_bprop(const Launch& l, const TicaParams& p, ConstMatView x, float* a, MatView dx, float coeff,
                float scale_targets) {
  const int64_t total = x.size();
  if (total <= 0) return;
  form_a(l, p, x, a);  // the forward's A, formed again from the same input
  tica_grad_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, x.data, a, dx.data, coeff, scale_targets, x.cols,
                                                               total);
  check_launch(l, "tica_grad_kernel");
}

}  // namespace alexnet::cuda

// ---- the cost.tica layer in the CUDA net (layer.h) ----------------------------------------------

namespace alexnet::cuda {
namespace {

float* a_of(const LayerRun& r) { return static_cast<float*>(r.store.work); }

void forward(const LayerRun& r) {
  r.op("cost", [&] { r.set_costs({tica_cost(r.lc, r.layer.tica, r.in(0), a_of(r), r.store.cost_terms)}); });
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    tica_bprop(r.lc, r.layer.tica, r.in(0), a_of(r), dx, r.spec().coeff, st);
  });
}

const bool registered = register_layer("cost.tica", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
