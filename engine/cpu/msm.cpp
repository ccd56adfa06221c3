// cost.msm, the k-of-N softmax: engine.md §3.30.
// Layout (§1.2): labels (1, N) float class indices, energies e and their gradient
// (D, N), case fastest. Working space: per case of a chunk, its lattice and the
// marginals p and q (core/multisoftmax.h), msm_case_doubles each.
// Forward, per case in double (the release's CPU code, multisoftmax.cpp): the
// marginals p_i = P(i ∈ S) of the model P(S) ∝ exp(Σ_{j∈S} e_j) over subsets of
// size k, from the lattice with the release's approximate logadd. Reported costs:
// [−Σ logf(float(p_label)), N − Σ top-1 credit, N − Σ top-k credit], the credits
// from the energies with logreg's tie rules (§3.23) and k = set_size (msm has no
// topk; engine.md is silent on this k, docs/fidelity.md).
// Backward: δe_i (+)= coeff·(q_i − p_i), q the marginals with the label forced into
// the set: formed in double, then rounded to float32 once; blend (§1.4).
// Threads: the cases of a chunk in parallel, each case's lattice sequential in its
// own slot; the cost's terms are added in case order afterwards, so the results do
// not depend on the thread count.
#include <cmath>
#include <limits>

#include "alexnet/core/multisoftmax.h"
#include "alexnet/core/rank_credits.h"
#include "alexnet/cpu/msm.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

namespace {

// The label of case n, or −1 when it is not a class index (NaN included).
inline int64_t label_of(const float* labels, int64_t n, int64_t classes) {
  const float v = labels[n];
  return v >= 0.0f && v < static_cast<float>(classes) ? static_cast<int64_t>(v) : -1;
}

}  // namespace

LogregCosts msm_cost(const MsmParams& p, const float* labels, ConstMatView energies, double* work, int64_t chunk) {
  const int64_t D = p.classes, N = energies.cols, per_case = msm_case_doubles(p), k = p.set_size;
  double sum_log = 0.0, sum_top1 = 0.0, sum_topk = 0.0;
  for (int64_t first = 0; first < N; first += chunk) {
    const int64_t count = first + chunk < N ? chunk : N - first;
#pragma omp parallel for schedule(dynamic)
    for (int64_t c = 0; c < count; ++c) {
      const int64_t n = first + c;
      double* slot = work + c * per_case;
      double* marg = slot + msm_lattice_doubles(p);
      const int64_t label = label_of(labels, n, D);
      msm_marginals(p, energies.data + n, N, -1, slot, marg);
      if (label < 0) {  // never read outside the matrix; the cost becomes NaN
        slot[0] = std::numeric_limits<double>::quiet_NaN();
        slot[1] = slot[2] = 0.0;
        continue;
      }
      const RankCredits credits = rank_credits(energies.data + n, N, D, label, k);  // from the energies
      slot[0] = static_cast<double>(std::log(static_cast<float>(marg[label])));
      slot[1] = credits.top1;
      slot[2] = credits.topk;
    }
    for (int64_t c = 0; c < count; ++c) {  // in case order
      sum_log += work[c * per_case];
      sum_top1 += work[c * per_case + 1];
      sum_topk += work[c * per_case + 2];
    }
  }
  const double n = static_cast<double>(N);
  return LogregCosts{-sum_log, n - sum_top1, n - sum_topk};
}

void msm_bprop(const MsmParams& p, const float* labels, ConstMatView energies, MatView de, float coeff,
               float scale_targets, double* work, int64_t chunk) {
  const int64_t D = p.classes, N = energies.cols, per_case = msm_case_doubles(p);
  for (int64_t first = 0; first < N; first += chunk) {
    const int64_t count = first + chunk < N ? chunk : N - first;
#pragma omp parallel for schedule(dynamic)
    for (int64_t c = 0; c < count; ++c) {
      const int64_t n = first + c;
      double* slot = work + c * per_case;
      double* pm = slot + msm_lattice_doubles(p);
      double* qm = pm + D;
      const int64_t label = label_of(labels, n, D);
      msm_marginals(p, energies.data + n, N, -1, slot, pm);
      if (label >= 0) msm_marginals(p, energies.data + n, N, label, slot, qm);
      for (int64_t i = 0; i < D; ++i) {
        const float g = label >= 0 ? static_cast<float>(static_cast<double>(coeff) * (qm[i] - pm[i]))
                                   : std::numeric_limits<float>::quiet_NaN();
        de(i, n) = blend(de(i, n), g, scale_targets);
      }
    }
  }
}

}  // namespace alexnet::cpu

// ---- the cost.msm layer in the CPU net (cpu/layer.h) ---------------------------------------

namespace alexnet::cpu {
namespace {

// The plan allocated msm_chunk_cases(msm, max_cases) cases of working space; n <= max_cases.
int64_t chunk_of(const LayerRun& r) { return msm_chunk_cases(r.layer.msm, r.n); }

void forward(const LayerRun& r) {
  const LogregCosts c = msm_cost(r.layer.msm, r.in(0).data, r.in(1), r.store().work.data(), chunk_of(r));
  r.set_costs({c.neg_log_prob, c.top1_errors, c.topk_errors});
}

void backward(const LayerRun& r) {
  if (!r.wants(1)) return;
  float st = 0.0f;
  const MatView de = r.target(1, &st);
  msm_bprop(r.layer.msm, r.in(0).data, r.in(1), de, r.spec().coeff, st, r.store().work.data(), chunk_of(r));
}

const bool registered = register_layer("cost.msm", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
