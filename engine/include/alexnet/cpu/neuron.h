// Element-wise neurons, engine.md §3.11. Layout (§1.2): every matrix is
// (D, N), case fastest; x, y, noise, dy and dx all have the same shape.
#pragma once

#include <cstdint>
#include <string_view>

#include "alexnet/matrix.h"

namespace alexnet::cpu {

// Stable numbering (the order of the §3.11 table). Never renumber: the value
// is what later code (graphs, the CUDA engine, saved descriptions) stores.
enum class NeuronType : int32_t {
  kIdent = 0,
  kRelu = 1,
  kNrelu = 2,
  kBrelu = 3,     // brelu[a]
  kSoftrelu = 4,
  kDrelu = 5,     // drelu[a]
  kAbs = 6,
  kLogistic = 7,
  kTanh = 8,      // tanh[a,b]
  kSquare = 9,
  kSqrt = 10,
  kLinear = 11,   // linear[a,b]
};

// What the backward factor f' is computed from (§3.11 "uses" column).
enum class NeuronUses : int32_t { kNothing = 0, kInput = 1, kOutput = 2 };

struct NeuronInfo {
  NeuronType type;
  const char* name;  // the cfg spelling, as layers.py:parse_neuron returns it
  int num_params;    // numbers in brackets: brelu[a] 1, tanh[a,b] 2, ...
  NeuronUses uses;
};

// The twelve types, in enum order (kNeuronTable[i].type == NeuronType(i)).
inline constexpr int kNumNeuronTypes = 12;
extern const NeuronInfo kNeuronTable[kNumNeuronTypes];

// Looks a cfg name up; nullptr when unknown.
const NeuronInfo* find_neuron(std::string_view name);

// a, b are the bracketed numbers in order (brelu[a]: a; tanh[a,b]: a, b; ...);
// unused ones are ignored. Validity (e.g. a != 0 where it divides) is the
// binding's job.
struct NeuronParams {
  NeuronType type = NeuronType::kIdent;
  float a = 0.0f;
  float b = 0.0f;
};

// Y <- f(X), overwriting Y (a single-input layer's forward, §1.4).
// noise: (D, N) standard-normal draws epsilon for nrelu (§3.11, §13 item 7:
// injected, never drawn here); ignored (may be null) for the other types.
// Y may be the same memory as X (in-place neuron, §1.5).
void neuron_fprop(const NeuronParams& p, ConstMatView x, const float* noise, MatView y);

// dX <- scale_targets*dX + dY * f'(.), f' from the input x or the output y as
// §3.11 says. dX may be the same memory as dY.
void neuron_bprop(const NeuronParams& p, ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx,
                  float scale_targets);

}  // namespace alexnet::cpu
