// Metrics of one array against another, for the parity suite (docs/parity.md).
// Not a layer: a single pass over two float32 arrays that replaces a dozen
// numpy passes in float64, so that comparing 38M-element fc weights takes
// tens of milliseconds instead of seconds.
#pragma once

#include <cstdint>

namespace alexnet {

struct CompareStats {
  int64_t nonfinite_actual = 0, nonfinite_expected = 0;  // when either is > 0 only these two are filled
  double max_abs_expected = 0.0;  // max |e|
  double max_abs_scale = 0.0;     // max |s| (s = e when no scale array is given)
  double atol = 0.0;              // atol_scale * max_abs_scale
  double max_abs_diff = 0.0;      // max |a - e|
  double tolerance_used = 0.0;    // max |a - e| / (atol + rtol |e|); 0/0 counts 0, x/0 counts inf
  int64_t worst = 0;              // first flat index where tolerance_used is reached
  int64_t over = 0;               // elements with |a - e| > atol + rtol |e|
  double max_rel = 0.0;           // max |a - e| / |e| over |e| >= rel_floor * max|e|, |e| > 0 (see compare.cpp)
  double dot = 0.0, norm2_actual = 0.0, norm2_expected = 0.0, norm2_diff = 0.0;  // sums of products
};

// a, e, s: n floats; s may be null (then s = e). mask may be null; where
// mask[i] != 0 the element counts as equal (a[i] taken as e[i]).
// Every difference is formed in double, so it is exact. The sums use fixed
// blocks of 65536 elements added in index order, so the result does not
// depend on the number of threads.
CompareStats compare_arrays(const float* a, const float* e, const float* s, const uint8_t* mask, int64_t n,
                            double atol_scale, double rtol, double rel_floor);

}  // namespace alexnet
