// The CPU engine's table of layer implementations (cpu/layer.h), filled by the
// layer files' static registrations.
#include "alexnet/cpu/layer.h"

#include <stdexcept>

namespace alexnet::cpu {

namespace {

// Built on first use, so registrations from other files' static initialisers
// never run before it exists.
std::map<std::string, LayerOps, std::less<>>& table() {
  static std::map<std::string, LayerOps, std::less<>> layers;
  return layers;
}

void no_op(const LayerRun&) {}

// The data layer: set_data fills its output; it has no backward.
const bool data_registered = register_layer("data", {no_op, nullptr});

}  // namespace

bool register_layer(const char* name, LayerOps ops) {
  if (!table().emplace(name, ops).second)
    throw std::logic_error(std::string("two CPU implementations of layer type '") + name + "'");
  return true;
}

const LayerOps* find_layer(std::string_view name) {
  auto it = table().find(name);
  return it == table().end() ? nullptr : &it->second;
}

std::vector<std::string> registered_layers() {
  std::vector<std::string> names;
  for (const auto& entry : table()) names.push_back(entry.first);
  return names;
}

}  // namespace alexnet::cpu
