// CUDA weight update and constraints: engine.md §4.2 (momentum, decay, step),
// §3.2 (wball max-norm), §3.4 (wcNormMin/Max); the operations of
// engine/cpu/update.cpp in its order.
// Layout: flat DEVICE arrays of `size` floats (weights, increments, gradients in
// the release's layouts); constraints address vectors by strides.
// Overwrites in place (w, inc); no scale_targets.
// Element-wise steps are bit-identical to the CPU (no FMA). The constraints run
// one thread per vector with the CPU's sequential sums, sqrtf (IEEE) and IEEE
// division (the release used __fdividef): also identical.
#include "alexnet/cuda/update.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void increment_kernel(float* inc, const float* grad, int64_t size, float eps, float mom) {
  for (int64_t i = grid_start(); i < size; i += grid_step()) inc[i] = mom * inc[i] + eps * grad[i];
}

__global__ void super_increment_kernel(float* inc, const float* grad, float* gavg, float* g2avg, int64_t size,
                                       float eps, float mom, float keep, float super_eps) {
  for (int64_t i = grid_start(); i < size; i += grid_step()) {
    const float g = grad[i];
    gavg[i] = mom * gavg[i] + keep * g;
    g2avg[i] = mom * g2avg[i] + keep * (g * g);
    inc[i] = 0.9f * inc[i] + (eps * g) / sqrtf(g2avg[i] - gavg[i] + super_eps);
  }
}

__global__ void decay_step_kernel(float* w, float* inc, int64_t size, float decay, bool use_decay) {
  for (int64_t i = grid_start(); i < size; i += grid_step()) {
    if (use_decay) inc[i] = inc[i] + decay * w[i];
    w[i] = w[i] + inc[i];
  }
}

__global__ void max_norm_kernel(float* w, int64_t vectors, int64_t length, int64_t vector_stride,
                                int64_t element_stride, float bound) {
  for (int64_t v = grid_start(); v < vectors; v += grid_step()) {
    float* base = w + v * vector_stride;
    float sumsq = 0.0f;
    for (int64_t i = 0; i < length; ++i) sumsq = sumsq + base[i * element_stride] * base[i * element_stride];
    const float norm = sqrtf(sumsq);
    if (norm > bound) {
      const float ratio = bound / norm;
      for (int64_t i = 0; i < length; ++i) base[i * element_stride] = base[i * element_stride] * ratio;
    }
  }
}

__global__ void filter_spread_kernel(float* w, int64_t length, int64_t filters, float norm_min, float norm_max) {
  for (int64_t f = grid_start(); f < filters; f += grid_step()) {
    float sum = 0.0f;
    for (int64_t i = 0; i < length; ++i) sum = sum + w[i * filters + f];
    const float mean = sum / static_cast<float>(length);
    float ss = 0.0f;
    for (int64_t i = 0; i < length; ++i) {
      const float d = w[i * filters + f] - mean;
      ss = ss + d * d;
    }
    const float a = sqrtf(ss) / static_cast<float>(length);  // not a standard deviation (§13 item 11)
    float factor = 1.0f;
    if (a < norm_min)
      factor = norm_min / a;
    else if (a > norm_max)
      factor = norm_max / a;
    if (factor != 1.0f)
      for (int64_t i = 0; i < length; ++i) w[i * filters + f] = w[i * filters + f] * factor;  // the unmodified column
  }
}

}  // namespace

void update_increment(const Launch& l, float* inc, const float* grad, int64_t size, float eps, float mom) {
  if (size <= 0) return;
  increment_kernel<<<grid_for(size), kThreads, 0, l.stream>>>(inc, grad, size, eps, mom);
  check_launch(l, "increment_kernel");
}

void update_super_increment(const Launch& l, float* inc, const float* grad, float* gavg, float* g2avg, int64_t size,
                            float eps, float mom, float super_eps) {
  if (size <= 0) return;
  const float keep = 1.0f - mom;  // one float scalar, as the CPU computes it
  super_increment_kernel<<<grid_for(size), kThreads, 0, l.stream>>>(inc, grad, gavg, g2avg, size, eps, mom, keep,
                                                                     super_eps);
  check_launch(l, "super_increment_kernel");
}

void update_decay_and_step(const Launch& l, float* w, float* inc, int64_t size, float eps, float wc) {
  if (size <= 0) return;
  const float decay = -wc * eps;  // one float scalar, as the CPU computes it
  decay_step_kernel<<<grid_for(size), kThreads, 0, l.stream>>>(w, inc, size, decay, wc > 0.0f);
  check_launch(l, "decay_step_kernel");
}

void constrain_max_norm(const Launch& l, float* w, int64_t vectors, int64_t length, int64_t vector_stride,
                        int64_t element_stride, float bound) {
  if (bound <= 0.0f || vectors <= 0) return;
  max_norm_kernel<<<grid_for(vectors), kThreads, 0, l.stream>>>(w, vectors, length, vector_stride, element_stride,
                                                                bound);
  check_launch(l, "max_norm_kernel");
}

void constrain_filter_spread(const Launch& l, float* w, int64_t length, int64_t filters, float norm_min,
                             float norm_max) {
  if (norm_max <= 0.0f || filters <= 0) return;  // §3.4: only when wcNormMax > 0
  filter_spread_kernel<<<grid_for(filters), kThreads, 0, l.stream>>>(w, length, filters, norm_min, norm_max);
  check_launch(l, "filter_spread_kernel");
}

}  // namespace alexnet::cuda
