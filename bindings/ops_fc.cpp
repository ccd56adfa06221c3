// Bindings of the engine's fc operations (filled in by the engine issue).
#include <pybind11/pybind11.h>

#include "checks.h"

namespace alexnet::bind {

void register_fc_ops(pybind11::module_& m) { (void)m; }

}  // namespace alexnet::bind
