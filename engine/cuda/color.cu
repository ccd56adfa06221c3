// CUDA rgb2yuv and rgb2lab: colour-space conversions, engine.md §3.21; the
// expressions and float order of engine/cpu/color.cpp (no FMA, --fmad=false), so
// YUV is bit-identical to the CPU's; LAB's t^0.3333 is powf (the exact library
// function, where the release used __powf), a few ulp from glibc's powf.
// Layout (DEVICE memory): x (R, G, B planes) and y (3, S, S, N), case fastest.
// Accumulate-or-overwrite: the forward overwrites y. No backward.
#include "alexnet/cuda/color.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__device__ __forceinline__ float lab_h_d(float t) {
  return t > 0.0088564517f ? powf(t, 0.3333f) : 7.787037f * t + 0.13793103f;
}

__global__ void yuv_kernel(const float* x, float* y, int64_t plane) {
  for (int64_t i = grid_start(); i < plane; i += grid_step()) {
    const float r = x[i], g = x[plane + i], b = x[2 * plane + i];
    y[i] = 0.2126f * r + 0.7152f * g + 0.0722f * b;
    y[plane + i] = -0.09991f * r - 0.33609f * g + 0.436f * b;
    y[2 * plane + i] = 0.615f * r - 0.55861f * g - 0.05639f * b;
  }
}

__global__ void lab_kernel(const float* x, float* y, int64_t plane, bool center) {
  for (int64_t i = grid_start(); i < plane; i += grid_step()) {
    const float r = x[i], g = x[plane + i], b = x[2 * plane + i];
    const float X = 0.49f * r + 0.31f * g + 0.2f * b;
    const float Y = 0.17697f * r + 0.8124f * g + 0.01063f * b;
    const float Z = 0.01f * g + 0.99f * b;
    const float hx = lab_h_d(X), hy = lab_h_d(Y), hz = lab_h_d(Z);
    float L = 116.0f * hy - 16.0f;
    if (center) L = L - 50.0f;
    y[i] = L;
    y[plane + i] = 500.0f * (hx - hy);
    y[2 * plane + i] = 200.0f * (hy - hz);
  }
}

}  // namespace

void rgb2yuv_fprop(const Launch& l, const ColorParams& p, ConstMatView x, MatView y) {
  const int64_t plane = p.img_size * p.img_size * x.cols;
  if (plane <= 0) return;
  yuv_kernel<<<grid_for(plane), kThreads, 0, l.stream>>>(x.data, y.data, plane);
  check_launch(l, "yuv_kernel");
}

void rgb2lab_fprop(const Launch& l, const ColorParams& p, ConstMatView x, MatView y) {
  const int64_t plane = p.img_size * p.img_size * x.cols;
  if (plane <= 0) return;
  lab_kernel<<<grid_for(plane), kThreads, 0, l.stream>>>(x.data, y.data, plane, p.center);
  check_launch(l, "lab_kernel");
}

}  // namespace alexnet::cuda

// ---- the rgb2yuv and rgb2lab layers in the CUDA net (layer.h) -----------------------------------

namespace alexnet::cuda {
namespace {

void yuv_forward(const LayerRun& r) {
  r.op("fprop", [&] { rgb2yuv_fprop(r.lc, r.layer.color, r.in(0), r.out()); });
}

void lab_forward(const LayerRun& r) {
  r.op("fprop", [&] { rgb2lab_fprop(r.lc, r.layer.color, r.in(0), r.out()); });
}

const bool yuv_registered = register_layer("rgb2yuv", {yuv_forward, nullptr});  // no backward (§3.21)
const bool lab_registered = register_layer("rgb2lab", {lab_forward, nullptr});

}  // namespace
}  // namespace alexnet::cuda
