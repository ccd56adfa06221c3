// Bindings of the engine's pool operations (filled in by the engine issue).
#include <pybind11/pybind11.h>

#include "checks.h"

namespace alexnet::bind {

void register_pool_ops(pybind11::module_& m) { (void)m; }

}  // namespace alexnet::bind
