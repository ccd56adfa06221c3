// CUDA cost.msm (engine.md §3.30), as engine/cpu/msm.cpp: one thread per case runs
// the double-precision lattice of core/multisoftmax.h. labels (1, N), energies and
// their gradient (D, N), DEVICE memory; work: chunk·msm_case_doubles doubles.
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

// [−Σ logf(p_label), N − Σ top-1 credit, N − Σ top-k credit]; terms: (3N) doubles of
// device scratch, summed on the host in case order. Synchronises the launch's stream.
LogregCosts msm_cost(const Launch& l, const MsmParams& p, const float* labels, ConstMatView energies, double* work,
                     int64_t chunk, double* terms);
// de <- blend(de, float(coeff·(q − p)), st).
void msm_bprop(const Launch& l, const MsmParams& p, const float* labels, ConstMatView energies, MatView de,
               float coeff, float scale_targets, double* work, int64_t chunk);

}  // namespace alexnet::cuda
