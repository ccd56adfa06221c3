// The table in which a backend finds its implementation of each layer type by
// the type's cfg name (cpu/layer.h, engine/cuda/layer.h). Each layer's file
// registers its implementation from a static initialiser; a backend's library
// is an object library, so every file is linked and every registration runs.
#pragma once

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace alexnet {

template <class Ops>
class LayerRegistry {
 public:
  // The one table of a backend, built on first use, so that registrations from
  // other files' static initialisers never run before it exists.
  static LayerRegistry& instance() {
    static LayerRegistry registry;
    return registry;
  }
  bool add(const char* name, Ops ops, const char* backend) {
    if (!table_.emplace(name, ops).second)
      throw std::logic_error(std::string("two ") + backend + " implementations of layer type '" + name + "'");
    return true;
  }
  const Ops* find(std::string_view name) const {
    auto it = table_.find(name);
    return it == table_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& entry : table_) out.push_back(entry.first);
    return out;
  }

 private:
  std::map<std::string, Ops, std::less<>> table_;
};

}  // namespace alexnet
