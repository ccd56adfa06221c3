// The layer types the engine runs: the one table (STYLE.md habit 10), read by
// the net plan, both backends, the bindings (_core.LAYER_TYPES,
// _core.WEIGHT_LAYER_TYPES, _core.COST_LAYER_TYPES) and from there by the
// PyTorch port and the harness. Adding a type starts with a row here
// (docs/architecture.md, "Adding a layer type").
#pragma once

#include <string>
#include <string_view>

namespace alexnet {

enum class LayerKind {
  Data, Conv, Local, Fc, Pool, Rnorm, Cnorm, Cmrnorm, Neuron, Softmax, Dropout, Eltsum, Eltmax, Concat,
  Nailbed, Blur, Href, Logreg, Sum2,
};

struct LayerType {
  const char* name;  // the cfg's type= ("hs" is dropout)
  LayerKind kind;
  bool weights;      // learns weight matrices (one per input) and biases
  bool cost;         // reports costs and has no output of its own
  int min_inputs;
  int max_inputs;    // -1: any number
  const char* spec;  // the section of ../shared/spec/engine.md that states its semantics
};

inline constexpr int kNumLayerTypes = 19;
extern const LayerType kLayerTypes[kNumLayerTypes];

// nullptr when the engine has no such type.
const LayerType* find_layer_type(std::string_view name);
const LayerType& layer_type(LayerKind kind);
// "data, conv, ..., cost.sum2", for messages.
std::string layer_type_names();

}  // namespace alexnet
