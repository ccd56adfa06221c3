// Learning-rate schedules: engine.md §4.3 (formulas), driver.md §B.3 (names,
// worked example: eps 0.01, tgtFactor 250, 4 steps -> 0.01, 0.0015874,
// 0.00025198, 0.00004). Host-side arithmetic in double, as the release did.
#include "alexnet/core/schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace alexnet {

ScheduleType schedule_type(const std::string& name) {
  if (name == "default") return ScheduleType::Default;
  if (name == "linear") return ScheduleType::Linear;
  if (name == "exp") return ScheduleType::Exp;
  if (name == "dexp") return ScheduleType::Dexp;
  if (name == "jdexp") return ScheduleType::Jdexp;
  throw std::invalid_argument("unknown schedule type '" + name + "' (default, linear, exp, dexp, jdexp)");
}

namespace {

// base * (final/base)^p, written as the release did: base^(1 + p*(ln final/ln base - 1)).
// A base of 0 gives 0 (the formula would give NaN).
double exp_rate(double base, double final_rate, double p) {
  if (base == 0.0) return 0.0;
  return std::pow(base, 1.0 + p * (std::log(final_rate) / std::log(base) - 1.0));
}

}  // namespace

double schedule_rate(const Schedule& s, double base, double progress) {
  const double p = std::clamp(progress, 0.0, 1.0);
  const double final_rate = base / s.tgt_factor;
  switch (s.type) {
    case ScheduleType::Default:
      return base;
    case ScheduleType::Linear:
      return base * (1.0 - p) + final_rate * p;
    case ScheduleType::Exp:
      return exp_rate(base, final_rate, p);
    case ScheduleType::Dexp:
    case ScheduleType::Jdexp: {
      const int k = std::max(1, s.num_steps);
      // Level i serves p in (i/k, (i+1)/k]; p = 0 belongs to level 0.
      const int level = std::clamp(static_cast<int>(std::ceil(p * k)) - 1, 0, k - 1);
      auto level_rate = [&](int i) {
        return (i == k - 1) ? final_rate : exp_rate(base, final_rate, static_cast<double>(i) / (k - 1));
      };
      const double rate = level_rate(level);
      if (s.type == ScheduleType::Jdexp && level > 0 && p > 0.2 && p < 0.9 && p > (level + 0.5) / k)
        return std::sqrt(rate * level_rate(level - 1));
      return rate;
    }
  }
  return base;
}

double schedule_noise_factor(const Schedule& s, double z) { return 1.0 + std::fabs(z) * s.noise_stdev; }

void check_schedule(const Schedule& s) {
  if (s.type != ScheduleType::Default && !(s.tgt_factor > 0.0 && std::isfinite(s.tgt_factor)))
    throw std::invalid_argument("tgt_factor: must be > 0");
  if ((s.type == ScheduleType::Dexp || s.type == ScheduleType::Jdexp) && s.num_steps < 2)
    throw std::invalid_argument("num_steps: must be >= 2 for dexp and jdexp");
  if (!(s.noise_stdev >= 0.0 && std::isfinite(s.noise_stdev)))
    throw std::invalid_argument("noise_stdev: must be a finite number >= 0");
}

}  // namespace alexnet
