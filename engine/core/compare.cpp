// Array metrics for the parity suite (docs/parity.md "Metrics"); see compare.h.
// Layout: any, as two flat arrays of the same logical order. Writes nothing
// but the returned struct.
//
// Two passes: the first finds the non-finite counts, max|e| and max|s| (the
// tolerance's scale and the relative-error floor need them); the second the
// errors. Each pass splits the array into fixed blocks; a block is reduced by
// one thread in index order and the blocks are combined in block order, so
// maxima keep their first index and the float64 sums have one fixed order.
#include "alexnet/core/compare.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace alexnet {

namespace {

constexpr int64_t kBlock = 1 << 16;

struct Pass1 {
  int64_t bad_a = 0, bad_e = 0;
  double max_e = 0.0, max_s = 0.0;
};

struct Pass2 {
  double max_diff = 0.0, used = 0.0, rel = 0.0;
  int64_t worst = -1, over = 0;
  bool any_big = false, any_diff = false;
  double dot = 0.0, aa = 0.0, ee = 0.0, dd = 0.0;
};

}  // namespace

CompareStats compare_arrays(const float* a, const float* e, const float* s, const uint8_t* mask, int64_t n,
                            double atol_scale, double rtol, double rel_floor) {
  CompareStats out;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  if (s == nullptr) s = e;
  auto actual = [&](int64_t i) -> double { return (mask != nullptr && mask[i]) ? e[i] : a[i]; };

  std::vector<Pass1> p1(blocks);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    Pass1 r;
    for (int64_t i = b * kBlock, end = std::min(n, i + kBlock); i < end; ++i) {
      const double av = actual(i), ev = e[i], sv = s[i];
      r.bad_a += !std::isfinite(av);
      r.bad_e += !std::isfinite(ev);
      r.max_e = std::max(r.max_e, std::fabs(ev));
      r.max_s = std::max(r.max_s, std::fabs(sv));
    }
    p1[b] = r;
  }
  for (const Pass1& r : p1) {
    out.nonfinite_actual += r.bad_a;
    out.nonfinite_expected += r.bad_e;
    out.max_abs_expected = std::max(out.max_abs_expected, r.max_e);
    out.max_abs_scale = std::max(out.max_abs_scale, r.max_s);
  }
  if (out.nonfinite_actual > 0 || out.nonfinite_expected > 0) return out;

  const double atol = atol_scale * out.max_abs_scale;
  const double floor = rel_floor * out.max_abs_expected;
  const double inf = std::numeric_limits<double>::infinity();
  out.atol = atol;
  std::vector<Pass2> p2(blocks);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    Pass2 r;
    for (int64_t i = b * kBlock, end = std::min(n, i + kBlock); i < end; ++i) {
      const double av = actual(i), ev = e[i];
      const double diff = std::fabs(av - ev), mag = std::fabs(ev);
      const double allowed = atol + rtol * mag;
      const double used = allowed > 0.0 ? diff / allowed : (diff > 0.0 ? inf : 0.0);
      if (r.worst < 0 || used > r.used) r.used = used, r.worst = i;
      r.max_diff = std::max(r.max_diff, diff);
      r.over += diff > allowed;
      r.any_diff = r.any_diff || diff > 0.0;
      if (mag >= floor && mag > 0.0) {
        r.any_big = true;
        r.rel = std::max(r.rel, diff / mag);
      }
      r.dot += av * ev;
      r.aa += av * av;
      r.ee += ev * ev;
      r.dd += diff * diff;
    }
    p2[b] = r;
  }
  bool any_big = false, any_diff = false;
  double best = -1.0;  // strictly greater only: the first index of the maximum wins
  for (const Pass2& r : p2) {
    if (r.worst >= 0 && r.used > best) best = r.used, out.worst = r.worst;
    out.max_abs_diff = std::max(out.max_abs_diff, r.max_diff);
    out.over += r.over;
    any_big = any_big || r.any_big;
    any_diff = any_diff || r.any_diff;
    out.max_rel = std::max(out.max_rel, r.rel);
    out.dot += r.dot;
    out.norm2_actual += r.aa;
    out.norm2_expected += r.ee;
    out.norm2_diff += r.dd;
  }
  // As the numpy metric: no element above the floor means 0 when the arrays
  // are equal and inf when they differ (a difference nothing can scale).
  out.tolerance_used = std::max(best, 0.0);
  if (!any_big) out.max_rel = any_diff ? inf : 0.0;
  return out;
}

}  // namespace alexnet
