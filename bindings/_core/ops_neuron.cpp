// Bindings of the element-wise and classifier layers: neuron (engine.md §3.11),
// softmax (§3.12), hs dropout (§3.16) and the cost layers (§3.23–§3.28).
// Thin (STYLE.md habit 3): check arrays and parameters, then call the engine
// with the GIL released. Outputs are passed in by the caller; backward
// functions take scale_targets (0 overwrites without reading, 1 adds; §1.4).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <sstream>
#include <string>

#include "alexnet/cpu/cost.h"
#include "alexnet/cpu/dropout.h"
#include "alexnet/cpu/neuron.h"
#include "alexnet/cpu/softmax.h"
#include "checks.h"

namespace alexnet::bind {

namespace {

// ---- neuron parameters ---------------------------------------------------------

const char* uses_text(NeuronUses uses) {
  switch (uses) {
    case NeuronUses::kInput: return "input";
    case NeuronUses::kOutput: return "output";
    case NeuronUses::kNothing: break;
  }
  return "none";
}

// (name, numbers) as layers.py:parse_neuron returns them -> engine parameters.
NeuronParams neuron_params(const std::string& kind, const py::sequence& params) {
  const NeuronInfo* info = find_neuron(kind);
  if (info == nullptr) {
    std::string known;
    for (const NeuronInfo& i : kNeuronTable) known += (known.empty() ? "" : ", ") + std::string(i.name);
    throw py::value_error("kind: unknown neuron '" + kind + "' (known: " + known + ")");
  }
  if (static_cast<int>(py::len(params)) != info->num_params)
    throw py::value_error("params: neuron '" + kind + "' takes " + std::to_string(info->num_params) +
                          " number(s), got " + std::to_string(py::len(params)));
  float values[2] = {0.0f, 0.0f};
  for (int k = 0; k < info->num_params; ++k) {
    double v = 0.0;
    try {
      v = params[static_cast<size_t>(k)].cast<double>();
    } catch (const py::cast_error&) {
      throw py::value_error("params: neuron '" + kind + "' needs numbers, got " +
                            std::string(py::repr(params)));
    }
    values[k] = static_cast<float>(v);
  }
  const NeuronParams p{info->type, values[0], values[1]};
  check_neuron_params(p);  // the net plan's check (core/op_params.h)
  return p;
}

// ---- labels, masks, shapes -------------------------------------------------------

// labels: (1, N) float32 holding integer class indices in [0, classes).
const float* checked_labels(const py::handle& obj, int64_t cases, int64_t classes) {
  const ConstMatView labels = cmat(obj, "labels", 1, cases);
  for (int64_t n = 0; n < cases; ++n) {
    const float v = labels.data[n];
    if (!(std::isfinite(v) && v == std::floor(v) && v >= 0.0f && v < static_cast<float>(classes))) {
      std::ostringstream msg;
      msg << "labels: case " << n << " holds " << v << "; expected an integer class index in [0, " << classes << ")";
      throw py::value_error(msg.str());
    }
  }
  return labels.data;
}

// mask: (D, N) of exact 0.0 / 1.0 when train, None otherwise.
const float* checked_mask(const py::object& obj, bool train, int64_t rows, int64_t cols) {
  if (!train) {
    if (!obj.is_none())
      throw py::value_error("mask: given, but train is False (test passes and enable=false scale by keep)");
    return nullptr;
  }
  if (obj.is_none()) throw py::value_error("mask: required when train is True (masks are injected, never drawn)");
  const ConstMatView mask = cmat(obj, "mask", rows, cols);
  for (int64_t i = 0; i < mask.size(); ++i)
    if (!(mask.data[i] == 0.0f || mask.data[i] == 1.0f))
      throw py::value_error("mask: element " + std::to_string(i) + " is neither 0 nor 1");
  return mask.data;
}


using TargetCost = double (*)(ConstMatView, ConstMatView);
using TargetBprop = void (*)(ConstMatView, ConstMatView, MatView, float, float);

// A cost of (targets, prediction), both (D, N): returns the summed cost.
void def_target_cost(py::module_& m, const char* name, TargetCost fn, const char* pred, const char* doc) {
  m.def(
      name,
      [fn, pred](const py::object& t_obj, const py::object& y_obj) {
        const ConstMatView y = cmat(y_obj, pred);
        const ConstMatView t = cmat(t_obj, "targets", y.rows, y.cols);
        py::gil_scoped_release release;
        return fn(t, y);
      },
      py::arg("targets"), py::arg(pred), doc);
}

// The backward of such a cost (or of a fused neuron): out = scale_targets*out + ...
void def_target_bprop(py::module_& m, const char* name, TargetBprop fn, const char* pred, const char* out,
                      const char* doc) {
  m.def(
      name,
      [fn, pred, out](const py::object& t_obj, const py::object& y_obj, const py::object& d_obj, float coeff,
                      float scale_targets) {
        check_scale_targets(scale_targets);
        const ConstMatView y = cmat(y_obj, pred);
        const ConstMatView t = cmat(t_obj, "targets", y.rows, y.cols);
        const MatView d = mat(d_obj, out, y.rows, y.cols);
        py::gil_scoped_release release;
        fn(t, y, d, coeff, scale_targets);
      },
      py::arg("targets"), py::arg(pred), py::arg(out), py::arg("coeff"), py::arg("scale_targets") = 0.0f, doc);
}

}  // namespace

void register_neuron_ops(pybind11::module_& m) {
  // ---- neuron (§3.11) ----------------------------------------------------------
  {
    py::dict types;
    for (const NeuronInfo& i : kNeuronTable)
      types[i.name] = py::make_tuple(static_cast<int>(i.type), i.num_params, uses_text(i.uses));
    m.attr("NEURON_TYPES") = types;
  }

  m.def(
      "neuron_fprop",
      [](const py::object& x_obj, const py::object& y_obj, const std::string& kind, const py::sequence& params,
         const py::object& noise_obj) {
        const NeuronParams p = neuron_params(kind, params);
        const ConstMatView x = cmat(x_obj, "x");
        const MatView y = mat(y_obj, "y", x.rows, x.cols);
        const float* noise = nullptr;
        if (p.type == NeuronType::kNrelu) {
          if (noise_obj.is_none()) throw py::value_error("noise: nrelu needs its N(0,1) draws (same shape as x)");
          noise = cmat(noise_obj, "noise", x.rows, x.cols).data;
        } else if (!noise_obj.is_none()) {
          throw py::value_error("noise: only nrelu takes noise, not '" + kind + "'");
        }
        py::gil_scoped_release release;
        cpu::neuron_fprop(p, x, noise, y);
      },
      py::arg("x"), py::arg("y"), py::arg("kind"), py::arg("params") = py::tuple(), py::arg("noise") = py::none(),
      "y[:] = f(x) for the neuron `kind` with bracket numbers `params` (engine.md §3.11).\n"
      "x, y: (D, N) float32 (y may be x). noise: (D, N) N(0,1) draws, required for nrelu only.\n"
      "`kind`, `params` as original.layers.parse_neuron returns them, e.g. ('tanh', (1.7159, 0.6667)).");

  m.def(
      "neuron_bprop",
      [](const py::object& x_obj, const py::object& y_obj, const py::object& dy_obj, const py::object& dx_obj,
         const std::string& kind, const py::sequence& params, float scale_targets) {
        const NeuronParams p = neuron_params(kind, params);
        const ConstMatView x = cmat(x_obj, "x");
        const ConstMatView y = cmat(y_obj, "y", x.rows, x.cols);
        const ConstMatView dy = cmat(dy_obj, "dy", x.rows, x.cols);
        const MatView dx = mat(dx_obj, "dx", x.rows, x.cols);
        py::gil_scoped_release release;
        cpu::neuron_bprop(p, x, y, dy, dx, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("dy"), py::arg("dx"), py::arg("kind"), py::arg("params") = py::tuple(),
      py::arg("scale_targets") = 0.0f,
      "dx = scale_targets*dx + dy*f'(.) (engine.md §3.11); f' reads x or the forward output y as\n"
      "NEURON_TYPES[kind][2] says. All arrays (D, N) float32; dx may be dy.");

  // ---- softmax (§3.12) ---------------------------------------------------------
  m.def(
      "softmax_fprop",
      [](const py::object& x_obj, const py::object& y_obj) {
        const ConstMatView x = cmat(x_obj, "x");
        const MatView y = mat(y_obj, "y", x.rows, x.cols);
        py::gil_scoped_release release;
        cpu::softmax_fprop(x, y);
      },
      py::arg("x"), py::arg("y"),
      "y[:] = softmax over classes of x, per case (engine.md §3.12). x, y: (D, N) float32.");

  m.def(
      "softmax_bprop",
      [](const py::object& y_obj, const py::object& dy_obj, const py::object& dx_obj, float scale_targets) {
        const ConstMatView y = cmat(y_obj, "y");
        const ConstMatView dy = cmat(dy_obj, "dy", y.rows, y.cols);
        const MatView dx = mat(dx_obj, "dx", y.rows, y.cols);
        py::gil_scoped_release release;
        cpu::softmax_bprop(y, dy, dx, scale_targets);
      },
      py::arg("y"), py::arg("dy"), py::arg("dx"), py::arg("scale_targets") = 0.0f,
      "Generic softmax backward (engine.md §3.12): dx_i = scale_targets*dx_i + y_i*sum_j dy_j(1[i=j] - y_j).\n"
      "y (softmax output), dy, dx: (D, N) float32.");

  // ---- cost.logreg (§3.23) -------------------------------------------------------
  m.def(
      "logreg_cost",
      [](const py::object& labels_obj, const py::object& probs_obj, int topk) {
        const ConstMatView probs = cmat(probs_obj, "probs");
        const float* labels = checked_labels(labels_obj, probs.cols, probs.rows);
        check_topk(topk);
        LogregCosts c;
        {
          py::gil_scoped_release release;
          c = cpu::logreg_cost(labels, probs, topk);
        }
        return py::make_tuple(c.neg_log_prob, c.top1_errors, c.topk_errors);
      },
      py::arg("labels"), py::arg("probs"), py::arg("topk") = 1,
      "(sum_neg_logprob, top1_errors, topk_errors) summed over the N cases (engine.md §3.23), with\n"
      "fractional credit on ties. labels: (1, N) float32 class indices; probs: (D, N) float32.");

  m.def(
      "logreg_softmax_bprop",
      [](const py::object& labels_obj, const py::object& probs_obj, const py::object& dx_obj, float coeff,
         float scale_targets) {
        const ConstMatView probs = cmat(probs_obj, "probs");
        const float* labels = checked_labels(labels_obj, probs.cols, probs.rows);
        const MatView dx = mat(dx_obj, "dx", probs.rows, probs.cols);
        py::gil_scoped_release release;
        cpu::logreg_softmax_bprop(labels, probs, dx, coeff, scale_targets);
      },
      py::arg("labels"), py::arg("probs"), py::arg("dx"), py::arg("coeff"), py::arg("scale_targets") = 0.0f,
      "Softmax backward fused with logreg (engine.md §3.12): dx_i = scale_targets*dx_i +\n"
      "coeff*(1[i=label] - y_i). labels (1, N); probs = softmax output y and dx: (D, N) float32.");

  m.def(
      "logreg_bprop",
      [](const py::object& labels_obj, const py::object& probs_obj, const py::object& dprobs_obj, float coeff,
         float scale_targets) {
        const ConstMatView probs = cmat(probs_obj, "probs");
        const float* labels = checked_labels(labels_obj, probs.cols, probs.rows);
        const MatView dprobs = mat(dprobs_obj, "dprobs", probs.rows, probs.cols);
        py::gil_scoped_release release;
        cpu::logreg_bprop(labels, probs, dprobs, coeff, scale_targets);
      },
      py::arg("labels"), py::arg("probs"), py::arg("dprobs"), py::arg("coeff"), py::arg("scale_targets") = 0.0f,
      "Unfused logreg backward (engine.md §3.23): dprobs_i = scale_targets*dprobs_i + coeff*1[i=label]/p_i\n"
      "(0/0 = NaN where p_i == 0 off the label, as written). labels (1, N); probs, dprobs (D, N).");

  // ---- hs dropout (§3.16) --------------------------------------------------------
  m.def(
      "dropout_fprop",
      [](const py::object& x_obj, const py::object& y_obj, const py::object& mask_obj, float keep, bool train) {
        check_keep(keep);
        const ConstMatView x = cmat(x_obj, "x");
        const MatView y = mat(y_obj, "y", x.rows, x.cols);
        const float* mask = checked_mask(mask_obj, train, x.rows, x.cols);
        py::gil_scoped_release release;
        cpu::dropout_fprop(x, mask, keep, train, y);
      },
      py::arg("x"), py::arg("y"), py::arg("mask"), py::arg("keep"), py::arg("train"),
      "Dropout forward (engine.md §3.16). train (enable and a training pass): y = x*mask, mask (D, N)\n"
      "of 0/1, no rescaling; otherwise y = keep*x and mask must be None. x, y: (D, N) float32.");

  m.def(
      "dropout_bprop",
      [](const py::object& dy_obj, const py::object& dx_obj, const py::object& mask_obj, float keep, bool train,
         float scale_targets) {
        check_keep(keep);
        const ConstMatView dy = cmat(dy_obj, "dy");
        const MatView dx = mat(dx_obj, "dx", dy.rows, dy.cols);
        const float* mask = checked_mask(mask_obj, train, dy.rows, dy.cols);
        py::gil_scoped_release release;
        cpu::dropout_bprop(dy, mask, keep, train, dx, scale_targets);
      },
      py::arg("dy"), py::arg("dx"), py::arg("mask"), py::arg("keep"), py::arg("train"),
      py::arg("scale_targets") = 0.0f,
      "Dropout backward (engine.md §3.16): dx = scale_targets*dx + dy*mask (train) or + keep*dy.\n"
      "dy, dx, mask: (D, N) float32.");

  // ---- cost.crossent (§3.24) -----------------------------------------------------
  m.def(
      "crossent_cost",
      [](const py::object& t_obj, const py::object& probs_obj) {
        const ConstMatView probs = cmat(probs_obj, "probs");
        const ConstMatView t = cmat(t_obj, "targets", probs.rows, probs.cols);
        CrossentCosts c;
        {
          py::gil_scoped_release release;
          c = cpu::crossent_cost(t, probs);
        }
        return py::make_tuple(c.neg_log_lik, c.errors);
      },
      py::arg("targets"), py::arg("probs"),
      "(-sum t*safelog(y), N - sum correct) (engine.md §3.24). targets, probs: (D, N) float32.");

  m.def(
      "crossent_bprop",
      [](const py::object& t_obj, const py::object& probs_obj, const py::object& dprobs_obj, float coeff,
         float scale_targets) {
        const ConstMatView probs = cmat(probs_obj, "probs");
        const ConstMatView t = cmat(t_obj, "targets", probs.rows, probs.cols);
        const MatView dprobs = mat(dprobs_obj, "dprobs", probs.rows, probs.cols);
        py::gil_scoped_release release;
        cpu::crossent_bprop(t, probs, dprobs, coeff, scale_targets);
      },
      py::arg("targets"), py::arg("probs"), py::arg("dprobs"), py::arg("coeff"), py::arg("scale_targets") = 0.0f,
      "Unfused crossent backward (engine.md §3.24): dprobs = scale_targets*dprobs + coeff*t/y.\n"
      "The release computes it only when the softmax below has other consumers (or is no softmax);\n"
      "with a single-consumer softmax it computes nothing (§13 item 1) - the caller decides.");

  // ---- cost.crossent2 (§3.25) ----------------------------------------------------
  def_target_cost(m, "crossent2_cost", cpu::crossent2_cost, "y",
                  "-sum(t*safelog(y) + (1-t)*safelog(1-y)) (engine.md §3.25). targets, y: (D, N) float32.");

  def_target_bprop(m, "crossent2_bprop", cpu::crossent2_bprop, "y", "dy",
                   "Unfused crossent2 backward AS WRITTEN (engine.md §3.25, §13 item 2):\n"
                   "dy = scale_targets*dy + coeff*(t/y + (1-t)/(1-y)); the true gradient has a minus.");

  def_target_bprop(m, "crossent2_logistic_bprop", cpu::crossent2_logistic_bprop, "y", "dx",
                   "Logistic neuron backward fused with crossent2 (engine.md §3.11): dx = scale_targets*dx +\n"
                   "coeff*(t - y), y the logistic output. targets, y, dx: (D, N) float32.");

  // ---- cost.rflickr (§3.26) ------------------------------------------------------
  def_target_cost(m, "rflickr_cost", cpu::rflickr_cost, "y",
                  "sum log(1 + (y - t)^2) (engine.md §3.26). targets, y: (D, N) float32.");

  def_target_bprop(m, "rflickr_bprop", cpu::rflickr_bprop, "y", "dy",
                   "rflickr backward (engine.md §3.26): dy = scale_targets*dy - coeff*2d/(1 + d^2), d = y - t.");

  // ---- cost.sum2 (§3.27) ---------------------------------------------------------
  m.def(
      "sum2_cost",
      [](const py::object& x_obj) {
        const ConstMatView x = cmat(x_obj, "x");
        py::gil_scoped_release release;
        return cpu::sum2_cost(x);
      },
      py::arg("x"), "sum of x^2 over all elements (engine.md §3.27). x: (D, N) float32.");

  m.def(
      "sum2_bprop",
      [](const py::object& x_obj, const py::object& dx_obj, float coeff, float scale_targets) {
        const ConstMatView x = cmat(x_obj, "x");
        const MatView dx = mat(dx_obj, "dx", x.rows, x.cols);
        py::gil_scoped_release release;
        cpu::sum2_bprop(x, dx, coeff, scale_targets);
      },
      py::arg("x"), py::arg("dx"), py::arg("coeff"), py::arg("scale_targets") = 0.0f,
      "sum2 backward (engine.md §3.27): dx = scale_targets*dx - 2*coeff*x. x, dx: (D, N) float32.");

  // ---- cost.gsum2 (§3.28) --------------------------------------------------------
  m.def(
      "gsum2_cost",
      [](const py::object& g_obj, const py::object& x_obj) {
        const ConstMatView x = cmat(x_obj, "x");
        const ConstMatView g = cmat(g_obj, "gates", 1, x.cols);
        py::gil_scoped_release release;
        return cpu::gsum2_cost(g.data, x);
      },
      py::arg("gates"), py::arg("x"),
      "sum_n g_n * sum_d x[d, n]^2 (engine.md §3.28). gates: (1, N); x: (D, N) float32.");

  m.def(
      "gsum2_bprop",
      [](const py::object& g_obj, const py::object& x_obj, const py::object& dg_obj, const py::object& dx_obj,
         float coeff, float scale_targets) {
        const ConstMatView x = cmat(x_obj, "x");
        const ConstMatView g = cmat(g_obj, "gates", 1, x.cols);
        float* dg = dg_obj.is_none() ? nullptr : mat(dg_obj, "dgates", 1, x.cols).data;
        MatView dx;
        if (!dx_obj.is_none()) dx = mat(dx_obj, "dx", x.rows, x.cols);
        py::gil_scoped_release release;
        if (dg != nullptr) cpu::gsum2_bprop_gates(x, dg, coeff, scale_targets);
        if (dx.data != nullptr) cpu::gsum2_bprop_x(g.data, x, dx, coeff, scale_targets);
      },
      py::arg("gates"), py::arg("x"), py::arg("dgates"), py::arg("dx"), py::arg("coeff"),
      py::arg("scale_targets") = 0.0f,
      "gsum2 backward (engine.md §3.28), each target optional (None skips it):\n"
      "dgates[0, n] = st*dgates - coeff*sum_d x[d, n]^2 (1, N); dx = st*dx - 2*coeff*g_n*x (D, N).");
}

}  // namespace alexnet::bind
