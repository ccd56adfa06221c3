// rgb2yuv and rgb2lab: colour-space conversions, engine.md §3.21.
// Layout (§1.2): x and y (3, S, S, N), case fastest: channel planes R, G, B in,
// Y, U, V (or L, a, b) out, element i of a plane at the same offset in each.
// Accumulate-or-overwrite: the forward overwrites y. No backward (the plan refuses
// an input at or below which a matrix learns).
// Float32, each product and sum rounded, left to right as §3.21 writes them
// (0.2126R + 0.7152G + 0.0722B is ((0.2126·R + 0.7152·G) + 0.0722·B)); the CUDA
// kernels (engine/cuda/color.cu) write the same expressions.
// LAB's h(t) = t^0.3333 is std::pow with the exponent 0.3333, as written (not 1/3),
// where the release used __powf ("close only", §7.1).
// Threads: element-wise; independent of the thread count.
#include "alexnet/cpu/color.h"
#include "alexnet/cpu/layer.h"

#include <cmath>

namespace alexnet::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 15;

// §3.21 LAB's h: t^0.3333 above 0.0088564517, else 7.787037t + 0.13793103.
inline float lab_h(float t) { return t > 0.0088564517f ? std::pow(t, 0.3333f) : 7.787037f * t + 0.13793103f; }

}  // namespace

void rgb2yuv_fprop(const ColorParams& p, ConstMatView x, MatView y) {
  const int64_t plane = p.img_size * p.img_size * x.cols;
  const float* r = x.data;
  const float* g = r + plane;
  const float* b = g + plane;
  float* out = y.data;
#pragma omp parallel for schedule(static) if (plane >= kParallelMin)
  for (int64_t i = 0; i < plane; ++i) {
    out[i] = 0.2126f * r[i] + 0.7152f * g[i] + 0.0722f * b[i];
    out[plane + i] = -0.09991f * r[i] - 0.33609f * g[i] + 0.436f * b[i];
    out[2 * plane + i] = 0.615f * r[i] - 0.55861f * g[i] - 0.05639f * b[i];
  }
}

void rgb2lab_fprop(const ColorParams& p, ConstMatView x, MatView y) {
  const int64_t plane = p.img_size * p.img_size * x.cols;
  const float* r = x.data;
  const float* g = r + plane;
  const float* b = g + plane;
  float* out = y.data;
  const bool center = p.center;
#pragma omp parallel for schedule(static) if (plane >= kParallelMin)
  for (int64_t i = 0; i < plane; ++i) {
    const float X = 0.49f * r[i] + 0.31f * g[i] + 0.2f * b[i];
    const float Y = 0.17697f * r[i] + 0.8124f * g[i] + 0.01063f * b[i];
    const float Z = 0.01f * g[i] + 0.99f * b[i];
    const float hx = lab_h(X), hy = lab_h(Y), hz = lab_h(Z);
    float L = 116.0f * hy - 16.0f;
    if (center) L = L - 50.0f;
    out[i] = L;
    out[plane + i] = 500.0f * (hx - hy);
    out[2 * plane + i] = 200.0f * (hy - hz);
  }
}

}  // namespace alexnet::cpu

// ---- the rgb2yuv and rgb2lab layers in the CPU net (cpu/layer.h) ------------------------------

namespace alexnet::cpu {
namespace {

void yuv_forward(const LayerRun& r) { rgb2yuv_fprop(r.layer.color, r.in(0), r.out()); }
void lab_forward(const LayerRun& r) { rgb2lab_fprop(r.layer.color, r.in(0), r.out()); }

const bool yuv_registered = register_layer("rgb2yuv", {yuv_forward, nullptr});  // no backward (§3.21)
const bool lab_registered = register_layer("rgb2lab", {lab_forward, nullptr});

}  // namespace
}  // namespace alexnet::cpu
