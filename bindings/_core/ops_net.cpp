// Bindings of the nets: the LayerSpec structs that Python fills
// (alexnet_replay/engine.py), the one net interface (alexnet/core/net.h) bound
// once as _core.Net, the CPU net as _core.CpuNet(Net), and the layer-type
// table. The CUDA net (ops_cuda.cpp) derives from the same _core.Net, so
// Python drives both with the same methods.
//
// Arrays: array(kind, name) is a numpy view of the buffer itself when it lives
// in host memory (the CPU net; the view keeps the net alive), and a copy
// otherwise; download always copies; upload copies in.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>

#include "alexnet/core/layer_types.h"
#include "alexnet/core/net.h"
#include "alexnet/core/schedule.h"
#include "alexnet/cpu/layer.h"
#include "alexnet/cpu/net.h"
#include "checks.h"

namespace alexnet::bind {

namespace {

int index_of(const Net& net, const std::string& name) {
  try {
    return net.layer_index(name);
  } catch (const std::out_of_range&) {
    throw py::key_error("no layer named '" + name + "'");
  }
}

PassType pass_type(const std::string& pass) {
  if (pass == "train") return PassType::Train;
  if (pass == "test") return PassType::Test;
  if (pass == "gradient-check") return PassType::GradientCheck;
  throw py::value_error("pass: must be 'train', 'test' or 'gradient-check', got '" + pass + "'");
}

// Strides of a (rows, cols) float32 array in the buffer's memory order.
std::vector<py::ssize_t> strides_of(const BufferInfo& info) {
  const py::ssize_t f = sizeof(float);
  return info.fortran ? std::vector<py::ssize_t>{f, info.rows * f} : std::vector<py::ssize_t>{info.cols * f, f};
}

py::array download(Net& net, BufferKind kind, int layer, int input) {
  const BufferInfo info = net.buffer_info(kind, layer, input);
  py::array_t<float> out(std::vector<py::ssize_t>{info.rows, info.cols}, strides_of(info));
  if (info.rows * info.cols > 0) {
    float* host = out.mutable_data();
    py::gil_scoped_release release;
    net.download(kind, layer, input, host);
  }
  return out;
}

}  // namespace

void register_net_ops(py::module_& m) {
  // The layer-type table (alexnet/core/layer_types.h), for the port and the harness.
  py::list all, weights, costs;
  for (const LayerType& t : layer_types()) {
    all.append(t.name);
    if (t.weights) weights.append(t.name);
    if (t.cost) costs.append(t.name);
  }
  m.attr("LAYER_TYPES") = py::tuple(all);
  m.attr("WEIGHT_LAYER_TYPES") = py::tuple(weights);
  m.attr("COST_LAYER_TYPES") = py::tuple(costs);
  m.def(
      "layer_type_info",
      [](const std::string& name) {
        const LayerType* t = find_layer_type(name);
        if (!t) throw py::key_error("the engine has no '" + name + "' layer");
        py::dict d;
        d["weights"] = t->weights;
        d["cost"] = t->cost;
        d["min_inputs"] = t->min_inputs;
        d["max_inputs"] = t->max_inputs < 0 ? py::object(py::none()) : py::object(py::int_(t->max_inputs));
        d["spec"] = t->spec;
        return d;
      },
      py::arg("name"), "A row of the engine's layer-type table: weights, cost, input counts, spec section.");
  m.def("cpu_layer_types", &cpu::registered_layers, "The layer types the CPU engine has an implementation of.");
  m.def(
      "check_plan",
      [](std::vector<LayerSpec> specs, int64_t max_cases) { Plan plan(std::move(specs), max_cases); },
      py::arg("specs"), py::arg("max_cases"),
      "Check specs as a net would (the plan's checks, ValueError naming the layer) without allocating "
      "anything: what 'catalog' and 'show-net' report as buildable.");

  py::class_<Schedule>(m, "Schedule", "A learning-rate schedule (engine.md §4.3)")
      .def(py::init<>())
      .def_property(
          "type",
          [](const Schedule& s) {
            const char* names[] = {"default", "linear", "exp", "dexp", "jdexp"};
            return std::string(names[static_cast<int>(s.type)]);
          },
          [](Schedule& s, const std::string& t) { s.type = schedule_type(t); })
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
  SPEC_FIELD(mom_b); SPEC_FIELD(super_eps); SPEC_FIELD(sched_b); SPEC_FIELD(pool); SPEC_FIELD(channels); SPEC_FIELD(img_size);
  SPEC_FIELD(size_x); SPEC_FIELD(start); SPEC_FIELD(stride); SPEC_FIELD(outputs_x); SPEC_FIELD(size);
  SPEC_FIELD(alpha); SPEC_FIELD(beta); SPEC_FIELD(min_div); SPEC_FIELD(blocked); SPEC_FIELD(filter);
  SPEC_FIELD(neuron); SPEC_FIELD(neuron_a); SPEC_FIELD(neuron_b); SPEC_FIELD(keep); SPEC_FIELD(enable);
  SPEC_FIELD(coeffs); SPEC_FIELD(coeff); SPEC_FIELD(topk);
  SPEC_FIELD(scale); SPEC_FIELD(max_scale); SPEC_FIELD(tgt_size); SPEC_FIELD(center); SPEC_FIELD(set_size);
  SPEC_FIELD(tree); SPEC_FIELD(tree_root); SPEC_FIELD(half_forward); SPEC_FIELD(half_backward);
#undef SPEC_FIELD

  // ---- the one interface ----
  py::class_<Net> net(m, "Net",
                      "A network in the engine, on either device: one minibatch forward, backward and update per "
                      "call (construct _core.CpuNet or _core.CudaNet)");
  net.def_property_readonly("device", &Net::device, "'cpu' or 'cuda'")
      .def("info", &Net::info, "{'device': ..., and the backend's facts: the CPU's BLAS, CUDA's GEMM and devices}")
      .def(
          "set_data",
          [](Net& n, int data_idx, py::handle values) {
            check_array(values, "values", {-1, -1});
            py::array a = py::reinterpret_borrow<py::array>(values);
            const float* p = static_cast<const float*>(a.data());
            py::gil_scoped_release release;
            n.set_data(data_idx, p, a.shape(0), a.shape(1));
          },
          py::arg("data_idx"), py::arg("values"), "Copy matrix data_idx of the minibatch, (D, N) case fastest.")
      .def_property_readonly("cases", &Net::cases)
      .def("reseed", &Net::reseed, py::arg("seed"), "Restart the net's generator (masks, noise, schedule noise)")
      .def("set_progress", &Net::set_progress, py::arg("progress"), py::call_guard<py::gil_scoped_release>())
      .def(
          "forward",
          [](Net& n, const std::string& pass) {
            const PassType type = pass_type(pass);
            py::gil_scoped_release release;
            n.forward(type);
          },
          py::arg("pass"), "One forward pass: 'train', 'test' or 'gradient-check' (engine.md §1.5)")
      .def(
          "forward_from",
          [](Net& n, const std::string& layer) {
            const int index = n.layer_index(layer);
            py::gil_scoped_release release;
            n.forward_from(index);
          },
          py::arg("layer"),
          "After a forward: run again only this layer and the layers that depend on it, with the same pass, "
          "bit for bit what a forward would give after a change to its weights (the gradient check, engine.md "
          "§8). Draws nothing: RuntimeError when a layer it would run would draw and inject_masks is false.")
      .def("backward", &Net::backward, py::call_guard<py::gil_scoped_release>())
      .def("update", &Net::update, py::call_guard<py::gil_scoped_release>(),
           "End of a minibatch: the update of engine.md §4.2, applied on every update_freq-th call")
      .def_property("update_freq", &Net::update_freq, &Net::set_update_freq,
                    "wupdate_freq F (§4.2): gradients accumulate over F minibatches, divided by F x minibatch size")
      .def_property("accumulated", &Net::accumulated, &Net::set_accumulated,
                    "minibatches accumulated since the last applied update (0 ... update_freq-1)")
      .def_property("grad_cases", &Net::grad_cases, &Net::set_grad_cases,
                    "the N of the gradients' 1/N when update_freq is 1 (0: the cases of the forward); a "
                    "data-parallel share of a minibatch of N cases sets N")
      .def("synchronize", &Net::synchronize, py::call_guard<py::gil_scoped_release>(),
           "Wait until work the backend runs asynchronously has finished (CUDA; nothing on the CPU)")
      .def("costs", &Net::costs, "Per cost layer, the sums over the minibatch (engine.md §3.23)")
      .def_readwrite("inject_masks", &Net::inject_masks)
      .def_readwrite("profile", &Net::profile, "Collect per-layer seconds in layer_seconds")
      .def_readwrite("layer_seconds", &Net::layer_seconds, "{layer: [forward s, backward s, update s]} while profiling")
      .def_property_readonly("layer_names",
                             [](const Net& n) {
                               std::vector<std::string> names;
                               for (int i = 0; i < n.num_layers(); ++i) names.push_back(n.spec(i).name);
                               return names;
                             })
      .def(
          "buffer_info",
          [](const Net& n, const std::string& kind, const std::string& name, int input) {
            const BufferInfo info = n.buffer_info(buffer_kind(kind), index_of(n, name), input);
            return py::make_tuple(info.rows, info.cols, info.fortran);
          },
          py::arg("kind"), py::arg("name"), py::arg("input") = 0,
          "(rows, cols, fortran) of a buffer, without copying it; (0, 0, False) where the layer has none")
      .def(
          "array",
          [](py::object self, const std::string& kind, const std::string& name, int input) -> py::array {
            Net& n = self.cast<Net&>();
            const BufferKind k = buffer_kind(kind);
            const int layer = index_of(n, name);
            const BufferInfo info = n.buffer_info(k, layer, input);
            if (float* data = n.host_data(k, layer, input))
              return py::array(py::dtype::of<float>(), std::vector<py::ssize_t>{info.rows, info.cols},
                               strides_of(info), data, self);
            return download(n, k, layer, input);
          },
          py::arg("kind"), py::arg("name"), py::arg("input") = 0,
          "Buffer `kind` of layer `name` (input `input` for weight matrices): a view of the engine's memory on the "
          "CPU, a copy (same shape and memory order) on CUDA")
      .def(
          "download",
          [](Net& n, const std::string& kind, const std::string& name, int input) {
            return download(n, buffer_kind(kind), index_of(n, name), input);
          },
          py::arg("kind"), py::arg("name"), py::arg("input") = 0,
          "A copy of a buffer, shaped and ordered as buffer_info says")
      .def(
          "upload",
          [](Net& n, const std::string& kind, const std::string& name, py::handle values, int input) {
            const BufferKind k = buffer_kind(kind);
            const int layer = index_of(n, name);
            const BufferInfo info = n.buffer_info(k, layer, input);
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
          "Copy an array into a buffer (the shape and memory order that buffer_info gives)");

  py::class_<cpu::CpuNet, Net>(m, "CpuNet", "A network in the CPU engine (alexnet/cpu/net.h)")
      .def(py::init<std::vector<LayerSpec>, int64_t, uint64_t>(), py::arg("specs"), py::arg("max_cases"),
           py::arg("seed"));
}

}  // namespace alexnet::bind
