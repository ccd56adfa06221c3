// cost.msm, the k-of-N softmax (engine.md §3.30), on the lattice of core/multisoftmax.h.
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"

namespace alexnet::cpu {

// [−Σ_n logf(p_label), N − Σ top-1 credit, N − Σ top-k credit] (k = set_size; the
// credits from the energies, logreg's tie rules, §3.23). labels (1, N) float class
// indices; energies (D, N); work: chunk·msm_case_doubles doubles (chunk >= 1 cases
// at a time). A label outside 0..D−1 makes the first sum NaN.
LogregCosts msm_cost(const MsmParams& p, const float* labels, ConstMatView energies, double* work, int64_t chunk);

// de <- blend(de, float(coeff·(q_i − p_i)), st): p the marginals, q those with the
// label forced into the set (NaN for a label outside 0..D−1). de: (D, N).
void msm_bprop(const MsmParams& p, const float* labels, ConstMatView energies, MatView de, float coeff,
               float scale_targets, double* work, int64_t chunk);

}  // namespace alexnet::cpu
