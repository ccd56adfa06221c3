// Learning-rate schedules, engine.md §4.3 / driver.md §B.3. Rates are doubles
// (the release kept them in double and converted to float for the kernels).
#pragma once

#include <string>

namespace alexnet {

enum class ScheduleType { Default, Linear, Exp, Dexp, Jdexp };

struct Schedule {
  ScheduleType type = ScheduleType::Default;
  double tgt_factor = 1.0;   // final rate = base / tgt_factor
  double noise_stdev = 0.0;  // rate *= 1 + |z| * noise_stdev, z ~ N(0,1) drawn per call
  int num_steps = 1;         // dexp, jdexp
};

// Parse a schedule type name ("default", "linear", "exp", "dexp", "jdexp");
// throws std::invalid_argument for anything else.
ScheduleType schedule_type(const std::string& name);

// The rate at progress p in [0, 1] (clipped), before noise.
double schedule_rate(const Schedule& s, double base, double progress);

// The noise factor for one draw z ~ N(0,1): 1 + |z| * noise_stdev.
double schedule_noise_factor(const Schedule& s, double z);

// Throws std::invalid_argument("<field>: <why>") for a schedule the formulas
// cannot evaluate: tgt_factor <= 0 (any type but default), num_steps < 2 (dexp,
// jdexp), a negative or non-finite noise_stdev.
void check_schedule(const Schedule& s);

}  // namespace alexnet
