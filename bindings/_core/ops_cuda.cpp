// Bindings of the CUDA net (engine/include/alexnet/cuda/net.h), registered only
// in builds that compiled the CUDA backend (ALEXNET_WITH_CUDA, set by
// bindings/CMakeLists.txt); in other builds register_cuda_ops adds nothing and
// alexnet_replay.engine explains why device="cuda" is unavailable.
//
// _core.CudaNet derives from _core.Net (ops_net.cpp): the methods of the one
// net interface are bound there once. numpy cannot view GPU memory, so its
// array() and download() return copies with the CPU views' shapes and memory order.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "checks.h"

#if ALEXNET_WITH_CUDA
#include "alexnet/cuda/net.h"
#endif
#include "alexnet/core/net.h"

namespace alexnet::bind {

#if ALEXNET_WITH_CUDA
namespace {

int cuda_index_of(const cuda::CudaNet& net, const std::string& name) {
  try {
    return net.layer_index(name);
  } catch (const std::out_of_range&) {
    throw py::key_error("no layer named '" + name + "'");
  }
}

}  // namespace
#endif

void register_cuda_ops(py::module_& m) {
#if ALEXNET_WITH_CUDA
  m.def(
      "cuda_load_cublas",
      [](const std::vector<std::string>& candidates) {
        std::string message;
        const bool ok = cuda::load_cublas_library(candidates, &message);
        return py::make_tuple(ok, message);
      },
      py::arg("candidates"),
      "Open cuBLAS, trying these library paths first: (ok, path or the reasons it failed).");

  m.def("cuda_layer_types", &cuda::implemented_layer_types,
        "The layer types the CUDA engine has an implementation of.");

  // The one interface (_core.Net, ops_net.cpp) plus what only the CUDA net has.
  using cuda::CudaNet;
  py::class_<CudaNet, Net>(m, "CudaNet", "A network in the CUDA engine (alexnet/cuda/net.h): buffers on the GPU")
      .def(py::init<std::vector<LayerSpec>, int64_t, uint64_t, int, std::string>(), py::arg("specs"),
           py::arg("max_cases"), py::arg("seed"), py::arg("num_gpus") = 0, py::arg("gemm") = "auto",
           py::call_guard<py::gil_scoped_release>())
      .def_readwrite("kernel_seconds", &CudaNet::kernel_seconds, "{'<type>:<operation>': seconds} while profiling")
      .def_readwrite("synchronous", &CudaNet::synchronous, "synchronise and check after every operation")
      .def_property_readonly("gemm", &CudaNet::gemm_name)
      .def_property_readonly("devices", &CudaNet::devices)
      .def_property_readonly("allocated_bytes", &CudaNet::allocated_bytes)
      .def("device_used_bytes", &CudaNet::device_used_bytes)
      .def("layer_device",
           [](const CudaNet& n, const std::string& name) { return n.layer_device(cuda_index_of(n, name)); });
#else
  (void)m;
#endif
}

}  // namespace alexnet::bind
