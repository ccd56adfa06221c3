// Weight updates and constraints: engine.md §4.2, §3.2 (wball), §3.4
// (wcNormMin/Max). Element-wise, in the order the release applied its separate
// element-wise operations; each element is independent, so the result does not
// depend on the number of threads. The GPU used __fdividef for the constraint
// ratios; true division here ("close only", §7.1).
#include "alexnet/cpu/update.h"

#include <cmath>

namespace alexnet::cpu {

void update_increment(float* inc, const float* grad, int64_t size, float eps, float mom) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < size; ++i) inc[i] = mom * inc[i] + eps * grad[i];
}

void update_super_increment(float* inc, const float* grad, float* gavg, float* g2avg, int64_t size, float eps,
                            float mom, float super_eps) {
  const float keep = 1.0f - mom;  // one float scalar
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < size; ++i) {
    const float g = grad[i];
    gavg[i] = mom * gavg[i] + keep * g;
    g2avg[i] = mom * g2avg[i] + keep * (g * g);
    inc[i] = 0.9f * inc[i] + (eps * g) / std::sqrt(g2avg[i] - gavg[i] + super_eps);
  }
}

void update_decay_and_step(float* w, float* inc, int64_t size, float eps, float wc) {
  const float decay = -wc * eps;  // one float scalar, as passed to the kernel
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < size; ++i) {
    if (wc > 0.0f) inc[i] = inc[i] + decay * w[i];
    w[i] = w[i] + inc[i];
  }
}

void constrain_max_norm(float* w, int64_t vectors, int64_t length, int64_t vector_stride,
                        int64_t element_stride, float bound) {
  if (bound <= 0.0f) return;
#pragma omp parallel for schedule(static)
  for (int64_t v = 0; v < vectors; ++v) {
    float* base = w + v * vector_stride;
    float sumsq = 0.0f;
    for (int64_t i = 0; i < length; ++i) sumsq += base[i * element_stride] * base[i * element_stride];
    const float norm = std::sqrt(sumsq);
    if (norm > bound) {
      const float ratio = bound / norm;
      for (int64_t i = 0; i < length; ++i) base[i * element_stride] *= ratio;
    }
  }
}

void constrain_filter_spread(float* w, int64_t length, int64_t filters, float norm_min, float norm_max) {
  if (norm_max <= 0.0f) return;  // §3.4: only when wcNormMax > 0
#pragma omp parallel for schedule(static)
  for (int64_t f = 0; f < filters; ++f) {
    float sum = 0.0f;
    for (int64_t i = 0; i < length; ++i) sum += w[i * filters + f];
    const float mean = sum / static_cast<float>(length);
    float ss = 0.0f;
    for (int64_t i = 0; i < length; ++i) {
      const float d = w[i * filters + f] - mean;
      ss += d * d;
    }
    const float a = std::sqrt(ss) / static_cast<float>(length);
    float factor = 1.0f;
    if (a < norm_min) factor = norm_min / a;
    else if (a > norm_max) factor = norm_max / a;
    if (factor != 1.0f)
      for (int64_t i = 0; i < length; ++i) w[i * filters + f] *= factor;  // the unmodified column
  }
}

}  // namespace alexnet::cpu
