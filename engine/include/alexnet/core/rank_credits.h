// The top-1 and top-k credits of one case (engine.md §3.23's tie rules), from
// the scores of its column: cost.logreg's probabilities and cost.msm's energies,
// on both backends. Host and device code (ALEXNET_HOST_DEVICE, op_params.h).
#pragma once

#include <cstdint>

#include "alexnet/core/op_params.h"

namespace alexnet {

struct RankCredits {
  double top1 = 0.0, topk = 0.0;
};

// scores[i * stride] is class i's score, 0 <= label < classes. top-1: 1/#max when
// the label's score is a maximum, else 0. top-k: with slots = k − #{above the
// label}, 0 when no slot is left, 1 when all of the label's ties fit, else
// slots/#ties. The maximum is a sequential scan over the classes (§7.2).
ALEXNET_HOST_DEVICE inline RankCredits rank_credits(const float* scores, int64_t stride, int64_t classes,
                                                    int64_t label, int64_t k) {
  const float s_label = scores[label * stride];
  float max = scores[0];
  for (int64_t i = 1; i < classes; ++i)
    if (scores[i * stride] > max) max = scores[i * stride];
  int64_t at_max = 0, above = 0, equal = 0;  // #{s == max}, #{s > s_label}, #{s == s_label}
  for (int64_t i = 0; i < classes; ++i) {
    const float s = scores[i * stride];
    at_max += s == max;
    above += s > s_label;
    equal += s == s_label;
  }
  RankCredits r;
  r.top1 = s_label == max ? 1.0 / static_cast<double>(at_max) : 0.0;
  const int64_t slots = k - above;
  r.topk = slots <= 0 ? 0.0 : (equal <= slots ? 1.0 : static_cast<double>(slots) / static_cast<double>(equal));
  return r;
}

}  // namespace alexnet
