// CUDA weight update and constraints (engine.md §4.2, §3.2, §3.4), the
// operations of engine/cpu/update.cpp. DEVICE arrays.
#pragma once

#include <cstdint>

#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

// inc <- mom·inc + eps·G
void update_increment(const Launch& l, float* inc, const float* grad, int64_t size, float eps, float mom);
// §4.4 superEps, cpu/update.h's update_super_increment: gavg <- mom·gavg + (1−mom)·G,
// g2avg <- mom·g2avg + (1−mom)·G², inc <- 0.9·inc + eps·G / sqrtf(g2avg − gavg + super_eps)
// (as written: NaN where the root's argument is negative; IEEE sqrtf and '/', bit-identical to the CPU)
void update_super_increment(const Launch& l, float* inc, const float* grad, float* gavg, float* g2avg, int64_t size,
                            float eps, float mom, float super_eps);
// if wc > 0: inc <- inc + (−wc·eps)·W; then W <- W + inc
void update_decay_and_step(const Launch& l, float* w, float* inc, int64_t size, float eps, float wc);
// Max-norm (wball): vector v, element i at w[v·vector_stride + i·element_stride];
// one thread per vector, sequential sums (the CPU's order, sqrtf and IEEE '/').
void constrain_max_norm(const Launch& l, float* w, int64_t vectors, int64_t length, int64_t vector_stride,
                        int64_t element_stride, float bound);
// wcNormMin/Max of conv filters (columns of a (length, filters) matrix), as written (§3.4).
void constrain_filter_spread(const Launch& l, float* w, int64_t length, int64_t filters, float norm_min,
                             float norm_max);

}  // namespace alexnet::cuda
