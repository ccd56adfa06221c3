// Bindings of the CUDA net (engine/include/alexnet/cuda/net.h), registered only
// in builds that compiled the CUDA backend (ALEXNET_WITH_CUDA, set by
// bindings/CMakeLists.txt); in other builds register_cuda_ops adds nothing and
// alexnet_replay.engine explains why device="cuda" is unavailable.
//
// numpy cannot view GPU memory, so buffers are copied: download(kind, name)
// returns a new array with the shape and memory order of the CPU net's view of
// the same buffer; upload(kind, name, values) copies an array in (float32, the
// exact shape, C order, or Fortran order for fc weights and increments).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "checks.h"

#if ALEXNET_WITH_CUDA
#include "alexnet/cuda/net.h"
#endif

namespace alexnet::bind {

#if ALEXNET_WITH_CUDA
namespace {

using cuda::CudaNet;

int cuda_index_of(const CudaNet& net, const std::string& name) {
  try {
    return net.layer_index(name);
  } catch (const std::out_of_range&) {
    throw py::key_error("no layer named '" + name + "'");
  }
}

CudaNet::BufferKind cuda_kind(const std::string& kind) {
  try {
    return CudaNet::buffer_kind(kind);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(std::string("kind: ") + e.what());
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

  py::class_<CudaNet> net(m, "CudaNet",
                          "A network in the CUDA engine: buffers on the GPU, downloaded/uploaded by copy");
  net.def(py::init<std::vector<LayerSpec>, int64_t, uint64_t, int, std::string>(), py::arg("specs"),
          py::arg("max_cases"), py::arg("seed"), py::arg("num_gpus") = 0, py::arg("gemm") = "auto",
          py::call_guard<py::gil_scoped_release>())
      .def(
          "set_data",
          [](CudaNet& n, int data_idx, py::handle values) {
            check_array(values, "values", {-1, -1});
            py::array a = py::reinterpret_borrow<py::array>(values);
            n.set_data(data_idx, static_cast<const float*>(a.data()), a.shape(0), a.shape(1));
          },
          py::arg("data_idx"), py::arg("values"), "Copy matrix data_idx of the minibatch, (D, N) case fastest.")
      .def_property_readonly("cases", &CudaNet::cases)
      .def("reseed", &CudaNet::reseed, py::arg("seed"))
      .def("set_progress", &CudaNet::set_progress, py::arg("progress"))
      .def(
          "forward",
          [](CudaNet& n, const std::string& pass) {
            PassType type;
            if (pass == "train") type = PassType::Train;
            else if (pass == "test") type = PassType::Test;
            else if (pass == "gradient-check") type = PassType::GradientCheck;
            else throw py::value_error("pass: must be 'train', 'test' or 'gradient-check', got '" + pass + "'");
            py::gil_scoped_release release;
            n.forward(type);
          },
          py::arg("pass"))
      .def("backward", &CudaNet::backward, py::call_guard<py::gil_scoped_release>())
      .def("update", &CudaNet::update, py::call_guard<py::gil_scoped_release>())
      .def("synchronize", &CudaNet::synchronize, py::call_guard<py::gil_scoped_release>())
      .def("costs", &CudaNet::costs)
      .def_readwrite("inject_masks", &CudaNet::inject_masks)
      .def_readwrite("profile", &CudaNet::profile, "CUDA-event timing of every operation")
      .def_readwrite("layer_seconds", &CudaNet::layer_seconds, "{layer: [forward s, backward s, update s]}")
      .def_readwrite("kernel_seconds", &CudaNet::kernel_seconds, "{'<type>:<operation>': seconds}")
      .def_readwrite("synchronous", &CudaNet::synchronous, "synchronise and check after every operation")
      .def_property_readonly("gemm", &CudaNet::gemm_name)
      .def_property_readonly("devices", &CudaNet::devices)
      .def_property_readonly("allocated_bytes", &CudaNet::allocated_bytes)
      .def("device_used_bytes", &CudaNet::device_used_bytes)
      .def("layer_device",
           [](const CudaNet& n, const std::string& name) { return n.layer_device(cuda_index_of(n, name)); })
      .def_property_readonly("layer_names",
                             [](const CudaNet& n) {
                               std::vector<std::string> names;
                               for (int i = 0; i < n.num_layers(); ++i) names.push_back(n.spec(i).name);
                               return names;
                             })
      .def(
          "buffer_info",
          [](CudaNet& n, const std::string& kind, const std::string& name, int input) {
            const CudaNet::BufferInfo info = n.buffer_info(cuda_kind(kind), cuda_index_of(n, name), input);
            return py::make_tuple(info.rows, info.cols, info.fortran);
          },
          py::arg("kind"), py::arg("name"), py::arg("input") = 0,
          "(rows, cols, fortran) of a buffer, without copying it")
      .def(
          "download",
          [](CudaNet& n, const std::string& kind, const std::string& name, int input) {
            const int layer = cuda_index_of(n, name);
            const CudaNet::BufferKind k = cuda_kind(kind);
            const CudaNet::BufferInfo info = n.buffer_info(k, layer, input);
            const py::ssize_t f = sizeof(float);
            std::vector<py::ssize_t> shape{info.rows, info.cols};
            std::vector<py::ssize_t> strides = info.fortran ? std::vector<py::ssize_t>{f, info.rows * f}
                                                            : std::vector<py::ssize_t>{info.cols * f, f};
            py::array_t<float> out(shape, strides);
            if (info.rows * info.cols > 0) {
              float* host = out.mutable_data();
              py::gil_scoped_release release;
              n.download(k, layer, input, host);
            }
            return out;
          },
          py::arg("kind"), py::arg("name"), py::arg("input") = 0,
          "A copy of a buffer, shaped and ordered as the CPU net's view of it")
      .def(
          "upload",
          [](CudaNet& n, const std::string& kind, const std::string& name, py::handle values, int input) {
            const int layer = cuda_index_of(n, name);
            const CudaNet::BufferKind k = cuda_kind(kind);
            const CudaNet::BufferInfo info = n.buffer_info(k, layer, input);
            if (!py::isinstance<py::array>(values)) throw py::value_error("values: expected a numpy array");
            py::array a = py::reinterpret_borrow<py::array>(values);
            if (!a.dtype().is(py::dtype::of<float>()))
              throw py::value_error("values: expected dtype float32, got " + std::string(py::str(a.dtype())));
            if (a.ndim() != 2 || a.shape(0) != info.rows || a.shape(1) != info.cols)
              throw py::value_error("values: expected shape (" + std::to_string(info.rows) + ", " +
                                    std::to_string(info.cols) + ") for " + kind + " of '" + name + "', got " +
                                    shape_text(a));
            const bool ok_order = info.fortran ? (a.flags() & py::array::f_style) : (a.flags() & py::array::c_style);
            if (!ok_order)
              throw py::value_error(std::string("values: expected a ") +
                                    (info.fortran ? "Fortran-ordered (numpy.asfortranarray)"
                                                  : "C-contiguous (numpy.ascontiguousarray)") +
                                    " array for " + kind + " of '" + name + "'");
            if (info.rows * info.cols > 0) {
              const float* host = static_cast<const float*>(a.data());
              py::gil_scoped_release release;
              n.upload(k, layer, input, host);
            }
          },
          py::arg("kind"), py::arg("name"), py::arg("values"), py::arg("input") = 0,
          "Copy an array into a buffer (same shape and order as download returns)");
#else
  (void)m;
#endif
}

}  // namespace alexnet::bind
