// The k-of-N softmax of cost.msm (engine.md §3.30), one case at a time, in double
// precision: the lattice both backends run (engine/cpu/msm.cpp on the host,
// engine/cuda/msm.cu one thread per case), so that they compute the same numbers.
//
// Model: over the subsets S of size k of the D classes, P(S) ∝ exp(Σ_{j∈S} e_j).
// The marginal p_i = P(i ∈ S) comes from a forward table over the classes in index
// order and a backward sweep:
//   F[0][0] = 0, F[0][j>0] = −∞;  F[i+1][j] = logadd(F[i][j], F[i][j−1] + e_i)   (j−1 < 0: −∞)
//   log Z = F[D][k];  B_D = (0, −∞, ...),  B_i[j] = logadd(B_{i+1}[j], B_{i+1}[j−1] + e_i)
//   p_i = exp((acc_i + e_i) − log Z),  acc_i = logadd over j = 0..k−1, in increasing j,
//         starting from −∞, of F[i][j] + B_{i+1}[k−1−j].
// e are the energies minus the case's maximum, in double. With a class `forced`, its
// "skip" branch is −∞ in both sweeps: the distribution conditioned on forced ∈ S, whose
// marginals are the q_i of the backward (§3.30).
//
// logadd is the release's approximation (§3.30): a gap above 15 gives the larger
// value, a gap above 5 the larger plus exp(−gap), otherwise the exact
// max + log(1 + exp(−gap)); −∞ is −1e35. The order of every logadd above is part of
// the result (the approximation is not associative); engine.md does not state the
// release's lattice order, so this one is the project's (docs/fidelity.md), and the
// port (modernize/port/ops.py) runs the same.
#pragma once

#include <cmath>
#include <cstdint>

#include "alexnet/core/op_params.h"

namespace alexnet {

inline constexpr double kMsmNegInf = -1e35;

ALEXNET_HOST_DEVICE inline double msm_logadd(double a, double b) {
  const double hi = a > b ? a : b;
  const double gap = a > b ? a - b : b - a;
  if (gap > 15.0) return hi;
  if (gap > 5.0) return hi + exp(-gap);
  return hi + log(1.0 + exp(-gap));
}

// Doubles of working space one case needs: the lattice (msm_lattice_doubles: the
// forward table (D+1)·(k+1) and two backward rows of k+1), then two rows of D
// marginals (p, and q for the backward).
ALEXNET_HOST_DEVICE inline int64_t msm_lattice_doubles(const MsmParams& p) {
  return (p.classes + 1) * (p.set_size + 1) + 2 * (p.set_size + 1);
}
ALEXNET_HOST_DEVICE inline int64_t msm_case_doubles(const MsmParams& p) {
  return msm_lattice_doubles(p) + 2 * p.classes;
}

// Cases whose working space is allocated at once (at most max_cases): the lattices
// of a minibatch are formed in chunks of this many, within a 64 MiB budget.
inline int64_t msm_chunk_cases(const MsmParams& p, int64_t max_cases) {
  const int64_t budget = int64_t{1} << 23;  // doubles
  const int64_t fit = budget / msm_case_doubles(p);
  return fit < 1 ? 1 : (fit < max_cases ? fit : max_cases);
}

// The marginals of one case: energies e_i = energies[i·stride] (float32 inputs),
// `forced` a class index or −1, work: msm_lattice_doubles, out: D doubles (not in
// work). Deterministic, sequential.
ALEXNET_HOST_DEVICE inline void msm_marginals(const MsmParams& p, const float* energies, int64_t stride,
                                              int64_t forced, double* work, double* out) {
  const int64_t D = p.classes, k = p.set_size, W = k + 1;
  double mx = static_cast<double>(energies[0]);
  for (int64_t i = 1; i < D; ++i) {
    const double v = static_cast<double>(energies[i * stride]);
    if (v > mx) mx = v;
  }
  double* F = work;              // (D+1, k+1)
  double* next = work + (D + 1) * W;  // B_{i+1}
  double* cur = next + W;             // B_i
  F[0] = 0.0;
  for (int64_t j = 1; j < W; ++j) F[j] = kMsmNegInf;
  for (int64_t i = 0; i < D; ++i) {
    const double e = static_cast<double>(energies[i * stride]) - mx;
    const double* f = F + i * W;
    double* g = F + (i + 1) * W;
    for (int64_t j = 0; j < W; ++j) {
      const double skip = i == forced ? kMsmNegInf : f[j];
      const double take = j > 0 ? f[j - 1] + e : kMsmNegInf;
      g[j] = msm_logadd(skip, take);
    }
  }
  const double log_z = F[D * W + k];
  next[0] = 0.0;
  for (int64_t j = 1; j < W; ++j) next[j] = kMsmNegInf;
  for (int64_t i = D - 1; i >= 0; --i) {
    const double e = static_cast<double>(energies[i * stride]) - mx;
    const double* f = F + i * W;
    double acc = kMsmNegInf;
    for (int64_t j = 0; j < k; ++j) acc = msm_logadd(acc, f[j] + next[k - 1 - j]);
    out[i] = exp((acc + e) - log_z);
    for (int64_t j = 0; j < W; ++j) {
      const double skip = i == forced ? kMsmNegInf : next[j];
      const double take = j > 0 ? next[j - 1] + e : kMsmNegInf;
      cur[j] = msm_logadd(skip, take);
    }
    double* t = next;
    next = cur;
    cur = t;
  }
}

}  // namespace alexnet
