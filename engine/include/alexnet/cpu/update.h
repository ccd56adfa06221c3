// The weight update of engine.md §4.2 and the constraints of §3.2/§3.4.
// Notation: eps learning rate (already from the schedule), mom momentum,
// wc weight decay, G = -(1/N) dE/dW (§1.1), all arrays of the same size.
#pragma once

#include <cstdint>

namespace alexnet::cpu {

// "useGrad" path (conv weights and every bias), step 1: inc <- mom*inc + eps*G.
void update_increment(float* inc, const float* grad, int64_t size, float eps, float mom);

// The superEps increment (§4.4, as written), instead of step 1 for a matrix with
// superEps > 0 (gavg and g2avg are its running averages, zero at the start):
//   gavg  <- mom*gavg + (1-mom)*G
//   g2avg <- mom*g2avg + (1-mom)*G*G
//   inc   <- 0.9*inc + (eps*G) / sqrt(g2avg - gavg + super_eps)
// The 0.9 is hard-coded and gavg is not squared (§13 item 4); where
// g2avg - gavg + super_eps < 0 the square root is NaN, and so are inc and then W:
// no guard, as the release had none. IEEE division (the release: __fdividef).
void update_super_increment(float* inc, const float* grad, float* gavg, float* g2avg, int64_t size, float eps,
                            float mom, float super_eps);

// Steps 2 and 3 for every weight matrix: if wc > 0, inc <- inc + (-wc*eps)*W
// (pre-update W); then W <- W + inc. (fc and local form step 1 inside their GEMM.)
void update_decay_and_step(float* w, float* inc, int64_t size, float eps, float wc);

// Max-norm constraint (wball, §3.2): for each of `vectors` weight vectors of
// length `length`, if its L2 norm exceeds `bound`, scale it by bound/norm.
// Vector v, element i is at w[v*vector_stride + i*element_stride].
void constrain_max_norm(float* w, int64_t vectors, int64_t length, int64_t vector_stride,
                        int64_t element_stride, float bound);

// Spread constraint of conv filters (wcNormMin/Max, §3.4, kept as written:
// a = sqrt(sum (w - mean)^2) / length, not a standard deviation). Columns of a
// (length, filters) C-order matrix; a column is scaled by min/a or max/a when a
// is below min (min > 0) or above max.
void constrain_filter_spread(float* w, int64_t length, int64_t filters, float norm_min, float norm_max);

}  // namespace alexnet::cpu
