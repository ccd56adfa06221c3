// The layer types the engine runs: one row each, in one table
// (engine/core/layer_types.cpp), the only list of them (STYLE.md habit 10). A
// row says what the spec says of the type (its cfg name, whether it learns
// weights or is a cost, how many inputs it takes, its section of engine.md)
// and holds its plan function: the checks of its LayerSpec and the kernel
// parameters and buffers it needs (net_plan.h). The backends find their
// implementation of a row by its name (cpu/layer.h, engine/cuda/layer.h); the
// bindings expose the table (_core.LAYER_TYPES, WEIGHT_LAYER_TYPES,
// COST_LAYER_TYPES, layer_type_info) to the port and the harness.
//
// Adding a layer type: docs/architecture.md, "Adding a layer type".
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace alexnet {

class Plan;
struct LayerPlan;

struct LayerType {
  const char* name;  // the cfg's type= ("hs" is dropout)
  bool weights;      // learns weight matrices (one per input) and biases
  bool cost;         // reports costs and has no output of its own
  int min_inputs;
  int max_inputs;    // -1: any number
  const char* spec;  // the section of ../shared/spec/engine.md that states its semantics
  // Checks L.spec (the generic checks of net_plan.cpp have passed: type,
  // name, inputs, input counts, outputs) and fills L's kernel parameters and
  // buffer needs; throws std::invalid_argument("layer '<name>': ...").
  void (*plan)(Plan& plan, LayerPlan& L);
};

// The table, in the order _core.LAYER_TYPES lists it.
const std::vector<LayerType>& layer_types();
// nullptr when the engine has no such type.
const LayerType* find_layer_type(std::string_view name);
// "data, conv, ..., cost.sum2", for messages.
std::string layer_type_names();

}  // namespace alexnet
