// Bindings of the engine's neuron operations (filled in by the engine issue).
#include <pybind11/pybind11.h>

#include "checks.h"

namespace alexnet::bind {

void register_neuron_ops(pybind11::module_& m) { (void)m; }

}  // namespace alexnet::bind
