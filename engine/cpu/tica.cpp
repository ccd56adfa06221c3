// cost.tica, engine.md §3.29.
// Layout (§1.2): x (C, S, S, N) viewed as (C·S·S, N), case fastest; the layer's
// working space holds A, the same shape (float32 values in doubles).
// A[c,p] = 1/(0.001 + sqrt(Σ_{q∈W(p)} X[c,q]²)), W(p) rnorm's clipped window of
// side sizeX (starting ⌊s/2⌋ above and left of p). Reported cost: ΣA, as written
// (the code says it is not the TICA objective; §13 item 3).
// Backward, as written (§13 item 3): the first contribution to the input's gradient
// (scale_targets 0, the overwrite path) is −coeff·X[c,p]·Σ_{q∈W(p)} A[c,q]; a later one
// (the accumulate path) adds −coeff·X[c,p]·sqrt(Σ_{q∈W(p)} A[c,q]). The overwrite path is
// the negative gradient of coeff·Σ_q [sqrt(S_q) − 0.001·log(0.001 + sqrt(S_q))], S_q the
// window sum of squares, for odd sizeX (W(p) is then its own adjoint).
// Float32: window sums start at 0 and add in raster order (rows outer), sqrt and '/'
// IEEE (the release: sqrtf and __fdividef); (−coeff·x)·S in that order; the cost's
// terms summed in float64, rows in order, each row's cases in order (the CUDA kernels
// form the same row sums).
// Threads: one row (a pixel of one channel, all cases) per iteration.
#include <cmath>

#include "alexnet/cpu/tica.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

void tica_a(const TicaParams& p, ConstMatView x, double* a) {
  const int64_t S = p.img_size, N = x.cols, rows = p.channels * S * S;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / (S * S), py = (r / S) % S, px = r % S;
    int64_t y0, y1, x0, x1;
    norm_window(py, p.size_x, S, &y0, &y1);
    norm_window(px, p.size_x, S, &x0, &x1);
    double* out = a + r * N;
    for (int64_t n = 0; n < N; ++n) {
      float sum = 0.0f;
      for (int64_t wy = y0; wy < y1; ++wy)
        for (int64_t wx = x0; wx < x1; ++wx) {
          const float v = x.data[((c * S + wy) * S + wx) * N + n];
          sum += v * v;
        }
      out[n] = static_cast<double>(1.0f / (0.001f + std::sqrt(sum)));
    }
  }
}

double tica_cost(const double* a, int64_t rows, int64_t cols) {
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    double row = 0.0;
    for (int64_t n = 0; n < cols; ++n) row += a[r * cols + n];
    total += row;
  }
  return total;
}

void tica_bprop(const TicaParams& p, ConstMatView x, const double* a, MatView dx, float coeff, float scale_targets) {
  const int64_t S = p.img_size, N = x.cols, rows = p.channels * S * S;
  const bool overwrite = scale_targets == 0.0f;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / (S * S), py = (r / S) % S, px = r % S;
    int64_t y0, y1, x0, x1;
    norm_window(py, p.size_x, S, &y0, &y1);
    norm_window(px, p.size_x, S, &x0, &x1);
    const float* in = x.data + r * N;
    float* out = dx.data + r * N;
    for (int64_t n = 0; n < N; ++n) {
      float sum = 0.0f;
      for (int64_t wy = y0; wy < y1; ++wy)
        for (int64_t wx = x0; wx < x1; ++wx) sum += static_cast<float>(a[((c * S + wy) * S + wx) * N + n]);
      const float g = -coeff * in[n] * (overwrite ? sum : std::sqrt(sum));
      out[n] = blend(out[n], g, scale_targets);
    }
  }
}

}  // namespace alexnet::cpu

// ---- the cost.tica layer in the CPU net (cpu/layer.h) ---------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) {
  double* a = r.store().work.data();
  tica_a(r.layer.tica, r.in(0), a);
  r.set_costs({tica_cost(a, r.layer.input_sizes[0], r.n)});
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    double* a = r.store().work.data();
    tica_a(r.layer.tica, r.in(0), a);  // the forward's A, formed again from the same input
    tica_bprop(r.layer.tica, r.in(0), a, dx, r.spec().coeff, st);
  });
}

const bool registered = register_layer("cost.tica", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
