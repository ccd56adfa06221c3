// The table of layer_types.h.
#include "alexnet/core/layer_types.h"

#include <stdexcept>

namespace alexnet {

using Kind = LayerKind;

// name, kind, weights, cost, min inputs, max inputs, spec section
const LayerType kLayerTypes[kNumLayerTypes] = {
    {"data", Kind::Data, false, false, 0, 0, "§3.1"},
    {"conv", Kind::Conv, true, false, 1, -1, "§3.4"},
    {"local", Kind::Local, true, false, 1, -1, "§3.5"},
    {"fc", Kind::Fc, true, false, 1, -1, "§3.2"},
    {"pool", Kind::Pool, false, false, 1, 1, "§3.6"},
    {"rnorm", Kind::Rnorm, false, false, 1, 1, "§3.8"},
    {"cnorm", Kind::Cnorm, false, false, 1, 1, "§3.10"},
    {"cmrnorm", Kind::Cmrnorm, false, false, 1, 1, "§3.9"},
    {"neuron", Kind::Neuron, false, false, 1, 1, "§3.11"},
    {"softmax", Kind::Softmax, false, false, 1, 1, "§3.12"},
    {"hs", Kind::Dropout, false, false, 1, 1, "§3.16"},
    {"eltsum", Kind::Eltsum, false, false, 1, -1, "§3.13"},
    {"eltmax", Kind::Eltmax, false, false, 2, -1, "§3.14"},
    {"concat", Kind::Concat, false, false, 1, -1, "§3.15"},
    {"nailbed", Kind::Nailbed, false, false, 1, 1, "§3.17"},
    {"blur", Kind::Blur, false, false, 1, 1, "§3.18"},
    {"href", Kind::Href, false, false, 1, 1, "§3.19"},
    {"cost.logreg", Kind::Logreg, false, true, 2, 2, "§3.23"},
    {"cost.sum2", Kind::Sum2, false, true, 1, 1, "§3.27"},
};

const LayerType* find_layer_type(std::string_view name) {
  for (const LayerType& t : kLayerTypes)
    if (name == t.name) return &t;
  return nullptr;
}

const LayerType& layer_type(LayerKind kind) {
  for (const LayerType& t : kLayerTypes)
    if (t.kind == kind) return t;
  throw std::logic_error("layer kind without a row in kLayerTypes");
}

std::string layer_type_names() {
  std::string names;
  for (const LayerType& t : kLayerTypes) names += (names.empty() ? "" : ", ") + std::string(t.name);
  return names;
}

}  // namespace alexnet
