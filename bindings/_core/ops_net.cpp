// Bindings of the net object (engine/include/alexnet/net.h). The layer specs
// are plain structs that Python fills (alexnet_replay/engine.py); the net's
// arrays are handed to numpy as views that keep the net alive, never copies.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>

#include "alexnet/cpu/schedule.h"
#include "alexnet/net.h"
#include "checks.h"

namespace alexnet::bind {

namespace {

py::array view_of(const Net::Buffer& b, py::handle owner) {
  if (b.data == nullptr) return py::array_t<float>(std::vector<py::ssize_t>{0, 0});
  const py::ssize_t f = sizeof(float);
  std::vector<py::ssize_t> shape{b.rows, b.cols};
  std::vector<py::ssize_t> strides = b.fortran ? std::vector<py::ssize_t>{f, b.rows * f}
                                               : std::vector<py::ssize_t>{b.cols * f, f};
  return py::array(py::dtype::of<float>(), shape, strides, b.data, owner);
}

int index_of(const Net& net, const std::string& name) {
  try {
    return net.layer_index(name);
  } catch (const std::out_of_range&) {
    throw py::key_error("no layer named '" + name + "'");
  }
}

}  // namespace

void register_net_ops(py::module_& m) {
  py::class_<Schedule>(m, "Schedule", "A learning-rate schedule (engine.md §4.3)")
      .def(py::init<>())
      .def_property(
          "type",
          [](const Schedule& s) {
            const char* names[] = {"default", "linear", "exp", "dexp", "jdexp"};
            return std::string(names[static_cast<int>(s.type)]);
          },
          [](Schedule& s, const std::string& t) {
            try {
              s.type = schedule_type(t);
            } catch (const std::invalid_argument& e) {
              throw py::value_error(e.what());
            }
          })
      .def_readwrite("tgt_factor", &Schedule::tgt_factor)
      .def_readwrite("noise_stdev", &Schedule::noise_stdev)
      .def_readwrite("num_steps", &Schedule::num_steps);

  py::class_<ConvInputSpec>(m, "ConvInputSpec", "One input of a conv or local layer")
      .def(py::init<>())
      .def_readwrite("channels", &ConvInputSpec::channels)
      .def_readwrite("img_size", &ConvInputSpec::img_size)
      .def_readwrite("filter_size", &ConvInputSpec::filter_size)
      .def_readwrite("padding", &ConvInputSpec::padding)
      .def_readwrite("stride", &ConvInputSpec::stride)
      .def_readwrite("groups", &ConvInputSpec::groups)
      .def_readwrite("filter_channels", &ConvInputSpec::filter_channels)
      .def_readwrite("conns", &ConvInputSpec::conns);

  py::class_<LayerSpec> spec(m, "LayerSpec", "Plain description of one layer, filled from the parsed cfg");
  spec.def(py::init<>());
#define SPEC_FIELD(f) spec.def_readwrite(#f, &LayerSpec::f)
  SPEC_FIELD(name); SPEC_FIELD(type); SPEC_FIELD(inputs); SPEC_FIELD(outputs); SPEC_FIELD(data_idx); SPEC_FIELD(gpu);
  SPEC_FIELD(conv); SPEC_FIELD(filters); SPEC_FIELD(modules_x); SPEC_FIELD(partial_sum); SPEC_FIELD(shared_biases);
  SPEC_FIELD(weight_rows); SPEC_FIELD(weight_cols); SPEC_FIELD(share_layer); SPEC_FIELD(share_index);
  SPEC_FIELD(eps_w); SPEC_FIELD(mom_w); SPEC_FIELD(wc); SPEC_FIELD(wball_normed); SPEC_FIELD(wcnorm_min);
  SPEC_FIELD(wcnorm_max); SPEC_FIELD(sched_w); SPEC_FIELD(bias_rows); SPEC_FIELD(bias_cols); SPEC_FIELD(eps_b);
  SPEC_FIELD(mom_b); SPEC_FIELD(sched_b); SPEC_FIELD(pool); SPEC_FIELD(channels); SPEC_FIELD(img_size);
  SPEC_FIELD(size_x); SPEC_FIELD(start); SPEC_FIELD(stride); SPEC_FIELD(outputs_x); SPEC_FIELD(size);
  SPEC_FIELD(alpha); SPEC_FIELD(beta); SPEC_FIELD(min_div); SPEC_FIELD(blocked); SPEC_FIELD(filter);
  SPEC_FIELD(neuron); SPEC_FIELD(neuron_a); SPEC_FIELD(neuron_b); SPEC_FIELD(keep); SPEC_FIELD(enable);
  SPEC_FIELD(coeffs); SPEC_FIELD(coeff); SPEC_FIELD(topk);
#undef SPEC_FIELD

  py::class_<Net> net_class(m, "Net", "A network in the C++ engine: one minibatch forward, backward and update per call");
  net_class
      .def(py::init<std::vector<LayerSpec>, int64_t, uint64_t>(), py::arg("specs"), py::arg("max_cases"),
           py::arg("seed"))
      .def(
          "set_data",
          [](Net& net, int data_idx, py::handle values) {
            check_array(values, "values", {-1, -1});
            py::array a = py::reinterpret_borrow<py::array>(values);
            const float* p = static_cast<const float*>(a.data());
            net.set_data(data_idx, p, a.shape(0), a.shape(1));
          },
          py::arg("data_idx"), py::arg("values"), "Copy matrix data_idx of the minibatch, (D, N) case fastest.")
      .def_property_readonly("cases", &Net::cases)
      .def("reseed", &Net::reseed, py::arg("seed"), "Restart the net's generator (masks, noise)")
      .def("set_progress", &Net::set_progress, py::arg("progress"), py::call_guard<py::gil_scoped_release>())
      .def(
          "forward",
          [](Net& net, const std::string& pass) {
            PassType type;
            if (pass == "train") type = PassType::Train;
            else if (pass == "test") type = PassType::Test;
            else if (pass == "gradient-check") type = PassType::GradientCheck;
            else throw py::value_error("pass: must be 'train', 'test' or 'gradient-check', got '" + pass + "'");
            py::gil_scoped_release release;
            net.forward(type);
          },
          py::arg("pass"), "One forward pass: 'train', 'test' or 'gradient-check' (engine.md §1.5)")
      .def("backward", &Net::backward, py::call_guard<py::gil_scoped_release>())
      .def("update", &Net::update, py::call_guard<py::gil_scoped_release>())
      .def("costs", &Net::costs, "Per cost layer, the sums over the minibatch (engine.md §3.23)")
      .def_readwrite("inject_masks", &Net::inject_masks)
      .def_readwrite("profile", &Net::profile, "Collect per-layer seconds in layer_seconds")
      .def_readwrite("layer_seconds", &Net::layer_seconds, "{layer: [forward s, backward s]} while profiling")
      .def_property_readonly("layer_names",
                             [](const Net& net) {
                               std::vector<std::string> names;
                               for (int i = 0; i < net.num_layers(); ++i) names.push_back(net.spec(i).name);
                               return names;
                             });

  // Views of the net's arrays, by layer name (and input index for weight matrices).
  using LayerBuffer = Net::Buffer (Net::*)(int);
  using InputBuffer = Net::Buffer (Net::*)(int, int);
  const std::tuple<const char*, LayerBuffer, const char*> per_layer[] = {
      {"acts", &Net::acts, "The layer's output (D, N), a view"},
      {"acts_grad", &Net::acts_grad, "-dE/d(output) the layer received (D, N), a view"},
      {"biases", &Net::biases, "Biases in the release's layout, a view"},
      {"bias_inc", &Net::bias_inc, "Bias increments (momentum buffer), a view"},
      {"bias_grad", &Net::bias_grad, "Bias gradient of the last backward, a view"},
      {"mask", &Net::mask,
       "hs layers: the dropout mask buffer, (D, max_cases); a forward on n cases uses its first D*n "
       "values as a (D, n) matrix, case fastest"},
      {"noise", &Net::noise, "nrelu layers: the N(0,1) noise buffer, (D, max_cases), used as the mask buffer is"},
  };
  for (const auto& [name, fn, doc] : per_layer)
    net_class.def(
        name,
        [fn = fn](py::object self, const std::string& layer) {
          Net& net = self.cast<Net&>();
          return view_of((net.*fn)(index_of(net, layer)), self);
        },
        py::arg("name"), doc);
  const std::tuple<const char*, InputBuffer, const char*> per_input[] = {
      {"weights", &Net::weights, "Weight matrix of input i in the release's layout, a view"},
      {"weight_inc", &Net::weight_inc, "Weight increments (momentum buffer) of input i, a view"},
      {"weight_grad", &Net::weight_grad, "conv: G of the last backward; fc/local fold it into weight_inc"},
  };
  for (const auto& [name, fn, doc] : per_input)
    net_class.def(
        name,
        [fn = fn](py::object self, const std::string& layer, int input) {
          Net& net = self.cast<Net&>();
          return view_of((net.*fn)(index_of(net, layer), input), self);
        },
        py::arg("name"), py::arg("input") = 0, doc);
}

}  // namespace alexnet::bind
