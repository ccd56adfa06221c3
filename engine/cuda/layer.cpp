// The CUDA engine's table of layer implementations (layer.h), filled by the
// layer files' static registrations.
#include "layer.h"

#include "alexnet/core/registry.h"
#include "alexnet/cuda/net.h"

namespace alexnet::cuda {

namespace {

using Registry = LayerRegistry<LayerOps>;

void no_op(const LayerRun&) {}

// The data layer: set_data fills its output; it has no backward.
const bool data_registered = register_layer("data", {no_op, nullptr});

}  // namespace

bool register_layer(const char* name, LayerOps ops) { return Registry::instance().add(name, ops, "CUDA"); }
const LayerOps* find_layer(std::string_view name) { return Registry::instance().find(name); }
std::vector<std::string> registered_layers() { return Registry::instance().names(); }
std::vector<std::string> implemented_layer_types() { return registered_layers(); }

}  // namespace alexnet::cuda
