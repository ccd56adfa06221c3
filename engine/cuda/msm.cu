// CUDA cost.msm, the k-of-N softmax: engine.md §3.30; the semantics of
// engine/cpu/msm.cpp. One thread per case runs msm_marginals (core/multisoftmax.h,
// double precision, the release's approximate logadd) in its slot of the layer's
// working space, a chunk of cases per launch. The device's exp and log (double) are
// within an ulp or two of glibc's, so the marginals agree with the CPU's to ~1e-15
// and, once rounded to float32, almost always exactly.
// Costs: per case logf(float(p_label)) (the exact library function, where the
// release used __logf) and the top-1 / top-k credits from the energies (logreg's tie
// rules, k = set_size), summed on the host in case order. Backward: float(coeff·(q − p))
// blended into the energies' gradient (§1.4).
// Layout (DEVICE memory): labels (1, N), energies (D, N) case fastest.
#include <cmath>
#include <string>
#include <vector>

#include "alexnet/core/multisoftmax.h"
#include "alexnet/core/rank_credits.h"
#include "alexnet/cuda/msm.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__device__ __forceinline__ int64_t label_of_d(const float* labels, int64_t n, int64_t classes) {
  const float v = labels[n];
  return v >= 0.0f && v < static_cast<float>(classes) ? static_cast<int64_t>(v) : -1;
}

__global__ void msm_terms_kernel(MsmParams p, const float* labels, const float* e, int64_t n_cases, int64_t first,
                                 int64_t count, double* work, double* terms) {
  const int64_t D = p.classes, per_case = msm_case_doubles(p);
  for (int64_t c = grid_start(); c < count; c += grid_step()) {
    const int64_t n = first + c;
    double* slot = work + c * per_case;
    double* marg = slot + msm_lattice_doubles(p);
    msm_marginals(p, e + n, n_cases, -1, slot, marg);
    const int64_t label = label_of_d(labels, n, D);
    if (label < 0) {  // never read outside the matrix; the cost becomes NaN
      terms[3 * n] = __longlong_as_double(0x7ff8000000000000LL);
      terms[3 * n + 1] = terms[3 * n + 2] = 0.0;
      continue;
    }
    const RankCredits credits = rank_credits(e + n, n_cases, D, label, p.set_size);  // from the energies
    terms[3 * n] = static_cast<double>(logf(static_cast<float>(marg[label])));
    terms[3 * n + 1] = credits.top1;
    terms[3 * n + 2] = credits.topk;
  }
}

__global__ void msm_grad_kernel(MsmParams p, const float* labels, const float* e, float* de, float coeff, float st,
                                int64_t n_cases, int64_t first, int64_t count, double* work) {
  const int64_t D = p.classes, per_case = msm_case_doubles(p);
  for (int64_t c = grid_start(); c < count; c += grid_step()) {
    const int64_t n = first + c;
    double* slot = work + c * per_case;
    double* pm = slot + msm_lattice_doubles(p);
    double* qm = pm + D;
    const int64_t label = label_of_d(labels, n, D);
    msm_marginals(p, e + n, n_cases, -1, slot, pm);
    if (label >= 0) msm_marginals(p, e + n, n_cases, label, slot, qm);
    for (int64_t i = 0; i < D; ++i) {
      const float g = label >= 0 ? static_cast<float>(static_cast<double>(coeff) * (qm[i] - pm[i]))
                                 : __int_as_float(0x7fc00000);
      de[i * n_cases + n] = blend_d(de[i * n_cases + n], g, st);
    }
  }
}

}  // namespace

LogregCosts msm_cost(const Launch& l, const MsmParams& p, const float* labels, ConstMatView energies, double* work,
                     int64_t chunk, double* terms) {
  const int64_t N = energies.cols;
  if (N <= 0) return {0.0, 0.0, 0.0};
  for (int64_t first = 0; first < N; first += chunk) {
    const int64_t count = first + chunk < N ? chunk : N - first;
    msm_terms_kernel<<<grid_for(count), kThreads, 0, l.stream>>>(p, labels, energies.data, N, first, count, work,
                                                                 terms);
    check_launch(l, "msm_terms_kernel");
  }
  std::vector<double> host(static_cast<size_t>(3 * N));
  const std::string what = std::string("copying the cost terms of layer '") + l.layer + "'";
  check(cudaMemcpyAsync(host.data(), terms, host.size() * sizeof(double), cudaMemcpyDeviceToHost, l.stream), what);
  check(cudaStreamSynchronize(l.stream), what);
  double sum_log = 0.0, sum_top1 = 0.0, sum_topk = 0.0;  // cases in order, as engine/cpu/msm.cpp
  for (int64_t c = 0; c < N; ++c) {
    sum_log += host[static_cast<size_t>(3 * c)];
    sum_top1 += host[static_cast<size_t>(3 * c + 1)];
    sum_topk += host[static_cast<size_t>(3 * c + 2)];
  }
  const double cases = static_cast<double>(N);
  return {-sum_log, cases - sum_top1, cases - sum_topk};
}

void msm_bprop(const Launch& l, const MsmParams& p, const float* labels, ConstMatView energies, MatView de,
               float coeff, float scale_targets, double* work, int64_t chunk) {
  const int64_t N = energies.cols;
  for (int64_t first = 0; first < N; first += chunk) {
    const int64_t count = first + chunk < N ? chunk : N - first;
    msm_grad_kernel<<<grid_for(count), kThreads, 0, l.stream>>>(p, labels, energies.data, de.data, coeff,
                                                                scale_targets, N, first, count, work);
    check_launch(l, "msm_grad_kernel");
  }
}

}  // namespace alexnet::cuda

// ---- the cost.msm layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

double* work_of(const LayerRun& r) { return static_cast<double*>(r.store.work); }
// The plan allocated msm_chunk_cases(msm, max_cases) cases of working space; n <= max_cases.
int64_t chunk_of(const LayerRun& r) { return msm_chunk_cases(r.layer.msm, r.n); }

void forward(const LayerRun& r) {
  r.op("cost", [&] {
    const LogregCosts c =
        msm_cost(r.lc, r.layer.msm, r.in(0).data, r.in(1), work_of(r), chunk_of(r), r.store.cost_terms);
    r.set_costs({c.neg_log_prob, c.top1_errors, c.topk_errors});
  });
}

void backward(const LayerRun& r) {
  if (!r.wants(1)) return;
  r.contribute(1, "bprop", [&](MatView de, float st) {
    msm_bprop(r.lc, r.layer.msm, r.in(0).data, r.in(1), de, r.spec().coeff, st, work_of(r), chunk_of(r));
  });
}

const bool registered = register_layer("cost.msm", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
