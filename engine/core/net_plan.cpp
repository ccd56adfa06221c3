// The net plan (net_plan.h): every check of a LayerSpec list, made once for
// both nets, and what both nets derive from the specs.
#include "alexnet/core/net_plan.h"

#include <cmath>
#include <stdexcept>

namespace alexnet {

namespace {

using Kind = LayerKind;

std::string str(int64_t v) { return std::to_string(v); }

[[noreturn]] void fail_layer(const LayerSpec& s, const std::string& why) {
  throw std::invalid_argument("layer '" + s.name + "': " + why);
}

// Runs one of op_params.h's checks, naming the layer in its message.
template <class F>
void checked(const LayerSpec& s, F&& check) {
  try {
    check();
  } catch (const std::invalid_argument& e) {
    fail_layer(s, e.what());
  }
}

void check_finite(const LayerSpec& s, const char* name, float v) {
  if (!std::isfinite(v)) fail_layer(s, std::string(name) + ": must be a finite number");
}

}  // namespace

Plan::Plan(std::vector<LayerSpec> specs, int64_t max_cases_) : max_cases(max_cases_) {
  if (max_cases < 1) throw std::invalid_argument("max_cases: must be >= 1 (got " + str(max_cases) + ")");
  // The parameter structs point into the specs: the vector never grows after this.
  layers.resize(specs.size());
  for (size_t li = 0; li < specs.size(); ++li) {
    layers[li].spec = std::move(specs[li]);
    check_and_plan(layers[li], static_cast<int>(li));
  }
  mark_gradients();
}

int Plan::find(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::out_of_range("no layer named '" + name + "'");
  return it->second;
}

// ---- the checks of one layer ------------------------------------------------------------

void Plan::check_and_plan(LayerPlan& L, int li) {
  const LayerSpec& s = L.spec;
  auto fail = [&](const std::string& why) { fail_layer(s, why); };

  // Type, name, inputs.
  L.type = find_layer_type(s.type);
  if (L.type == nullptr)
    fail("the engine has no '" + s.type + "' layer (supported: " + layer_type_names() + ")");
  L.kind = L.type->kind;
  if (s.name.empty()) throw std::invalid_argument("layer " + str(li) + ": has no name");
  if (index_.count(s.name)) fail("name used twice");
  index_[s.name] = li;
  for (int in : s.inputs)
    if (in < 0 || in >= li) fail("inputs must be earlier layers");
  const int n_in = static_cast<int>(s.inputs.size());
  if (L.kind != Kind::Data && n_in == 0) fail("has no inputs");
  if (n_in < L.type->min_inputs || (L.type->max_inputs >= 0 && n_in > L.type->max_inputs)) {
    const std::string want = L.type->max_inputs < 0 ? str(L.type->min_inputs) + " or more"
                             : L.type->min_inputs == L.type->max_inputs
                                 ? str(L.type->min_inputs)
                                 : str(L.type->min_inputs) + " to " + str(L.type->max_inputs);
    fail(std::string(L.type->name) + " takes " + want + " input(s), got " + str(n_in));
  }
  for (int in : s.inputs) {
    layers[static_cast<size_t>(in)].consumers.push_back(li);
    L.input_sizes.push_back(layers[static_cast<size_t>(in)].spec.outputs);
  }
  if (L.type->cost) {
    if (s.outputs != 0) fail("outputs: a cost layer has none (got " + str(s.outputs) + ")");
  } else if (s.outputs < 1) {
    fail("has no outputs");
  } else if (s.outputs > kMaxCount) {
    fail("outputs: must be <= " + str(kMaxCount) + " (got " + str(s.outputs) + ")");
  }
  const int64_t D = s.outputs;
  auto in_size = [&](size_t i) { return L.input_sizes[i]; };
  // Layers whose output has the shape of their single input.
  auto same_as_input = [&] {
    if (in_size(0) != D)
      fail("outputs: must equal the input's size " + str(in_size(0)) + " (got " + str(D) + ")");
  };
  // An image input (C, S, S) of `channels` and `img_size`.
  auto image_input = [&](int64_t channels, int64_t img_size) {
    if (channels * img_size * img_size != in_size(0))
      fail("input size does not match its geometry: channels*img_size^2 = " + str(channels * img_size * img_size) +
           ", the input has " + str(in_size(0)));
  };

  switch (L.kind) {
    case Kind::Data:
      if (s.data_idx < 0) fail("data_idx: must be >= 0 (got " + str(s.data_idx) + ")");
      break;

    case Kind::Conv:
    case Kind::Local: {
      if (s.conv.size() != s.inputs.size()) fail("needs one conv geometry per input");
      for (size_t i = 0; i < s.conv.size(); ++i) {
        const ConvInputSpec& c = s.conv[i];
        ConvParams p;
        p.channels = c.channels;
        p.img_size = c.img_size;
        p.filter_size = c.filter_size;
        p.padding = c.padding;
        p.stride = c.stride;
        p.modules_x = s.modules_x;
        p.filters = s.filters;
        p.groups = c.groups;
        p.filter_channels = c.filter_channels;
        if (!c.conns.empty()) {
          if (c.groups < 1 || c.filter_channels < 1 ||
              static_cast<int64_t>(c.conns.size()) != c.groups * c.filter_channels)
            fail("connection table must have groups*filterChannels entries");
          p.conns = c.conns.data();
        }
        checked(s, [&] { check_conv_params(p); });
        if (L.kind == Kind::Conv) checked(s, [&] { check_partial_sum(p, s.partial_sum); });
        if (p.channels * p.img_size * p.img_size != in_size(i)) fail("input size does not match its geometry");
        L.conv.push_back(p);
      }
      if (s.filters * s.modules_x * s.modules_x != D) fail("outputs != filters * modules");
      break;
    }

    case Kind::Fc:
      break;

    case Kind::Pool: {
      PoolParams& p = L.pool;
      if (s.pool == "max") p.kind = PoolKind::kMax;
      else if (s.pool == "maxabs") p.kind = PoolKind::kMaxAbs;
      else if (s.pool == "avg") p.kind = PoolKind::kAvg;
      else fail("pool '" + s.pool + "' is not supported (max, maxabs, avg)");
      p.channels = s.channels;
      p.img_size = s.img_size;
      p.size_x = s.size_x;
      p.start = s.start;
      p.stride = s.stride;
      p.outputs_x = s.outputs_x;
      checked(s, [&] { check_pool_params(p); });
      image_input(p.channels, p.img_size);
      if (p.channels * p.outputs_x * p.outputs_x != D)
        fail("outputs: expected channels*outputs_x^2 = " + str(p.channels * p.outputs_x * p.outputs_x) + " (got " +
             str(D) + ")");
      break;
    }

    case Kind::Rnorm:
    case Kind::Cnorm:
      L.spatial = {s.channels, s.img_size, s.size, s.alpha, s.beta};
      checked(s, [&] { check_spatial_norm_params(L.spatial); });
      image_input(s.channels, s.img_size);
      same_as_input();
      L.has_denoms = L.has_scratch = true;
      L.has_mean_diffs = L.kind == Kind::Cnorm;
      break;

    case Kind::Cmrnorm: {
      CrossMapNormParams& p = L.crossmap;
      p.channels = s.channels;
      p.size = s.size;
      p.alpha = s.alpha;
      p.beta = s.beta;
      p.min_div = s.min_div;
      p.blocked = s.blocked;
      checked(s, [&] { check_cross_map_norm_params(p); });
      same_as_input();
      if (D % p.channels != 0) fail("cmrnorm channels must divide the outputs");
      L.has_denoms = L.has_scratch = true;
      break;
    }

    case Kind::Neuron: {
      const NeuronInfo* info = find_neuron(s.neuron);
      if (!info) fail("unknown neuron '" + s.neuron + "'");
      L.neuron = {info->type, s.neuron_a, s.neuron_b};
      checked(s, [&] { check_neuron_params(L.neuron); });
      same_as_input();
      L.has_noise = info->type == NeuronType::kNrelu;
      break;
    }

    case Kind::Softmax:
      same_as_input();
      break;

    case Kind::Dropout:
      checked(s, [&] { check_keep(s.keep); });
      same_as_input();
      L.has_mask = true;
      break;

    case Kind::Eltsum:
    case Kind::Eltmax:
      for (size_t i = 0; i < s.inputs.size(); ++i)
        if (in_size(i) != D)
          fail("input " + str(static_cast<int64_t>(i)) + " has " + str(in_size(i)) + " values per case, outputs " +
               str(D) + ": " + s.type + " needs inputs of one size");
      if (L.kind == Kind::Eltsum) {
        if (!s.coeffs.empty() && s.coeffs.size() != s.inputs.size())
          fail("coeffs: needs one coefficient per input (" + str(n_in) + "), got " +
               str(static_cast<int64_t>(s.coeffs.size())));
        for (float c : s.coeffs) check_finite(s, "coeffs", c);
      }
      break;

    case Kind::Concat: {
      int64_t total = 0;
      for (int64_t size : L.input_sizes) total += size;
      if (total != D) fail("outputs: must be the sum of the inputs' sizes " + str(total) + " (got " + str(D) + ")");
      break;
    }

    case Kind::Nailbed: {
      L.nailbed = {s.channels, s.img_size, s.stride};
      checked(s, [&] { check_nailbed_params(L.nailbed); });
      image_input(s.channels, s.img_size);
      const int64_t ox = nailbed_outputs_x(L.nailbed);
      if (s.channels * ox * ox != D)
        fail("outputs: expected channels*ceil(img_size/stride)^2 = " + str(s.channels * ox * ox) + " (got " +
             str(D) + ")");
      break;
    }

    case Kind::Blur:
      L.blur.channels = s.channels;
      L.blur.img_size = s.img_size;
      L.blur.filter = s.filter.data();
      L.blur.filter_size = static_cast<int64_t>(s.filter.size());
      checked(s, [&] { check_blur_params(L.blur, s.filter.data()); });
      image_input(s.channels, s.img_size);
      same_as_input();
      L.has_blur_tmp = true;
      break;

    case Kind::Href:
      L.href = {s.channels, s.img_size};
      checked(s, [&] { check_href_params(L.href); });
      image_input(s.channels, s.img_size);
      same_as_input();
      break;

    case Kind::Logreg:
      if (in_size(0) != 1) fail("cost.logreg takes labels and a softmax: its first input must be 1 row of labels");
      checked(s, [&] { check_topk(s.topk); });
      check_finite(s, "coeff", s.coeff);
      break;

    case Kind::Sum2:
      check_finite(s, "coeff", s.coeff);
      break;
  }

  if (L.type->weights) plan_weights(L, li);
}

// ---- weights ------------------------------------------------------------------------------

void Plan::plan_weights(LayerPlan& L, int li) {
  const LayerSpec& s = L.spec;
  auto fail = [&](const std::string& why) { fail_layer(s, why); };
  const size_t n = s.inputs.size();
  if (s.weight_rows.size() != n || s.weight_cols.size() != n || s.eps_w.size() != n || s.mom_w.size() != n ||
      s.wc.size() != n || s.share_layer.size() != n || s.share_index.size() != n || s.sched_w.size() != n)
    fail("needs one weight shape, sharing entry and learning parameter set per input");
  for (const auto* list : {&s.wball_normed, &s.wcnorm_min, &s.wcnorm_max})
    if (list->size() > n) fail("more weight constraints than inputs");

  for (size_t i = 0; i < n; ++i) {
    // The shape the kernels index with: conv (Cg*K*K, F), local (M*Cg*K*K, F), fc (Din, Dout).
    int64_t rows = 0, cols = s.outputs;
    if (L.kind == Kind::Conv) {
      rows = L.conv[i].rows_per_group(), cols = s.filters;
    } else if (L.kind == Kind::Local) {
      rows = L.conv[i].modules() * L.conv[i].rows_per_group(), cols = s.filters;
    } else {
      rows = L.input_sizes[i];
    }
    if (s.weight_rows[i] != rows || s.weight_cols[i] != cols)
      fail(std::string(L.kind == Kind::Fc      ? "fc weight matrix must be (inputs, outputs)"
                       : L.kind == Kind::Conv ? "conv weight matrix must be (filterChannels*K*K, filters)"
                                              : "local weight matrix must be (modules*filterChannels*K*K, filters)") +
           ": expected (" + str(rows) + ", " + str(cols) + "), got (" + str(s.weight_rows[i]) + ", " +
           str(s.weight_cols[i]) + ")");

    if (s.share_layer[i] >= 0) {  // weightSource: an earlier matrix of the same shape
      const int src = s.share_layer[i];
      if (src > li || (src == li && s.share_index[i] >= static_cast<int>(i)))
        fail("weightSource must name an earlier matrix");
      // Within the layer itself, the matrices planned so far (those of earlier inputs).
      const std::vector<int>& source = src == li ? L.weights : layers[static_cast<size_t>(src)].weights;
      if (s.share_index[i] < 0 || s.share_index[i] >= static_cast<int>(source.size()))
        fail("weightSource index out of range");
      const int m = source[static_cast<size_t>(s.share_index[i])];
      if (matrices[static_cast<size_t>(m)].rows != rows || matrices[static_cast<size_t>(m)].cols != cols)
        fail("shared matrix shape differs");
      L.weights.push_back(m);
      continue;
    }
    MatrixPlan w;
    w.layer = li;
    w.input = static_cast<int>(i);
    w.rows = rows;
    w.cols = cols;
    w.fortran = L.kind == Kind::Fc;
    w.has_grad = L.kind == Kind::Conv;
    w.eps_base = w.eps = s.eps_w[i];
    w.mom = s.mom_w[i];
    w.wc = s.wc[i];
    w.wball = i < s.wball_normed.size() ? s.wball_normed[i] : 0.0f;
    w.norm_min = i < s.wcnorm_min.size() ? s.wcnorm_min[i] : 0.0f;
    w.norm_max = i < s.wcnorm_max.size() ? s.wcnorm_max[i] : 0.0f;
    w.sched = s.sched_w[i];
    for (float v : {w.eps_base, w.mom, w.wc, w.wball, w.norm_min, w.norm_max})
      if (!std::isfinite(v)) fail("learning parameters of input " + str(static_cast<int64_t>(i)) + " must be finite");
    if (L.kind == Kind::Conv) checked(s, [&] { check_filter_spread(w.norm_min, w.norm_max); });
    checked(s, [&] { check_schedule(w.sched); });

    UpdateRule r;
    r.matrix = static_cast<int>(matrices.size());
    r.wc = w.wc;
    if (L.kind == Kind::Conv) {  // each filter: a column of the (Cg*K*K, F) matrix
      r.increment = true;
      r.filter_spread = true;
      r.blocks = 1, r.vectors = cols, r.length = rows, r.vector_stride = 1, r.element_stride = cols;
    } else if (L.kind == Kind::Fc) {  // each output unit: a contiguous row of the (Dout, Din) storage
      r.blocks = 1, r.vectors = cols, r.length = rows, r.vector_stride = rows, r.element_stride = 1;
    } else if (w.wball > 0.0f) {  // local: each (module, filter) vector, module by module
      const int64_t modules = L.conv[i].modules();
      r.blocks = modules, r.block_stride = rows / modules * cols;
      r.vectors = cols, r.length = rows / modules, r.vector_stride = 1, r.element_stride = cols;
    }
    L.weights.push_back(r.matrix);
    L.owned.push_back(r.matrix);
    matrices.push_back(w);
    update_rules.push_back(r);
  }

  // Biases: fc (Dout), conv with shared biases (F), conv without and local (F*M).
  const int64_t want = (L.kind == Kind::Conv && s.shared_biases) ? s.filters : s.outputs;
  if (s.bias_rows < 0 || s.bias_cols < 0 || s.bias_rows * s.bias_cols != want)
    fail("bias shape does not match the layer: expected " + str(want) + " biases, got (" + str(s.bias_rows) + ", " +
         str(s.bias_cols) + ")");
  MatrixPlan b;
  b.layer = li;
  b.input = -1;
  b.rows = s.bias_rows;
  b.cols = s.bias_cols;
  b.has_grad = true;
  b.eps_base = b.eps = s.eps_b;
  b.mom = s.mom_b;
  b.sched = s.sched_b;
  if (!std::isfinite(b.eps_base) || !std::isfinite(b.mom)) fail("epsB and momB must be finite");
  checked(s, [&] { check_schedule(b.sched); });
  UpdateRule r;
  r.matrix = static_cast<int>(matrices.size());
  r.increment = true;
  L.bias = r.matrix;
  L.owned.push_back(r.matrix);
  matrices.push_back(b);
  update_rules.push_back(r);
}

// Which layers need a gradient (those that learn, and everything above them),
// and which softmax layers take the fused gradient: their only consumer is a
// cost.logreg that reads them as its probabilities (§3.12).
void Plan::mark_gradients() {
  for (LayerPlan& L : layers) {
    bool learns = false;  // its own matrices, or ones it shares from another layer (weightSource)
    for (int m : L.weights) learns = learns || matrices[static_cast<size_t>(m)].eps_base > 0.0f;
    if (L.bias >= 0) learns = learns || matrices[static_cast<size_t>(L.bias)].eps_base > 0.0f;
    bool below = false;
    for (int in : L.spec.inputs) below = below || layers[static_cast<size_t>(in)].needs_grad;
    L.needs_grad = learns || below;
  }
  for (size_t li = 0; li < layers.size(); ++li) {
    LayerPlan& L = layers[li];
    if (L.kind == Kind::Softmax && L.consumers.size() == 1) {
      const LayerPlan& c = layers[static_cast<size_t>(L.consumers[0])];
      L.fused_logreg = c.kind == Kind::Logreg && c.spec.inputs[1] == static_cast<int>(li);
    }
  }
}

// ---- buffers ------------------------------------------------------------------------------

BufferKind buffer_kind(const std::string& name) {
  using K = BufferKind;
  static const std::map<std::string, K> kinds = {
      {"acts", K::Acts},        {"acts_grad", K::ActsGrad}, {"weights", K::Weights},  {"weight_inc", K::WeightInc},
      {"weight_grad", K::WeightGrad}, {"biases", K::Biases}, {"bias_inc", K::BiasInc}, {"bias_grad", K::BiasGrad},
      {"mask", K::Mask},        {"noise", K::Noise},
  };
  auto it = kinds.find(name);
  if (it == kinds.end())
    throw std::invalid_argument("kind: buffer kind '" + name +
                                "' (acts, acts_grad, weights, weight_inc, weight_grad, biases, bias_inc, bias_grad, "
                                "mask, noise)");
  return it->second;
}

const char* buffer_kind_name(BufferKind kind) {
  switch (kind) {
    case BufferKind::Acts: return "acts";
    case BufferKind::ActsGrad: return "acts_grad";
    case BufferKind::Weights: return "weights";
    case BufferKind::WeightInc: return "weight_inc";
    case BufferKind::WeightGrad: return "weight_grad";
    case BufferKind::Biases: return "biases";
    case BufferKind::BiasInc: return "bias_inc";
    case BufferKind::BiasGrad: return "bias_grad";
    case BufferKind::Mask: return "mask";
    case BufferKind::Noise: return "noise";
  }
  return "?";
}

BufferInfo Plan::buffer_info(BufferKind kind, int layer, int input, int64_t cases) const {
  if (layer < 0 || layer >= num_layers()) throw std::out_of_range("layer index " + str(layer) + " out of range");
  const LayerPlan& L = layers[static_cast<size_t>(layer)];
  BufferInfo b;
  auto set = [&](bool present, int64_t rows, int64_t cols) {
    if (present && rows * cols > 0) b.rows = rows, b.cols = cols;
  };
  auto matrix = [&](int m) -> const MatrixPlan& {
    b.matrix = m;
    return matrices[static_cast<size_t>(m)];
  };
  auto weight = [&]() -> const MatrixPlan& {
    if (input < 0 || input >= static_cast<int>(L.weights.size()))
      throw std::out_of_range("layer '" + L.spec.name + "' has no weight matrix " + str(input));
    return matrix(L.weights[static_cast<size_t>(input)]);
  };
  auto bias = [&]() -> const MatrixPlan* { return L.bias < 0 ? nullptr : &matrix(L.bias); };
  using K = BufferKind;
  switch (kind) {
    case K::Acts:
    case K::ActsGrad:
      set(true, L.spec.outputs, cases);
      break;
    case K::Weights:
    case K::WeightInc: {
      const MatrixPlan& w = weight();
      set(true, w.rows, w.cols);
      b.fortran = w.fortran && b.rows > 0;
      break;
    }
    case K::WeightGrad: {
      const MatrixPlan& w = weight();
      set(w.has_grad, w.rows, w.cols);
      break;
    }
    case K::Biases:
    case K::BiasInc:
    case K::BiasGrad:
      if (const MatrixPlan* m = bias()) set(true, m->rows, m->cols);
      break;
    case K::Mask:
      set(L.has_mask, L.spec.outputs, max_cases);
      break;
    case K::Noise:
      set(L.has_noise, L.spec.outputs, max_cases);
      break;
  }
  return b;
}

std::vector<int> Plan::data_layers(int data_idx, int64_t rows, int64_t cases) const {
  if (cases < 1 || cases > max_cases)
    throw std::invalid_argument("minibatch of " + str(cases) + " cases; this net holds 1.." + str(max_cases));
  std::vector<int> found;
  for (size_t li = 0; li < layers.size(); ++li) {
    const LayerPlan& L = layers[li];
    if (L.kind != Kind::Data || L.spec.data_idx != data_idx) continue;
    if (rows != L.spec.outputs)
      throw std::invalid_argument("data matrix " + std::to_string(data_idx) + " has " + str(rows) + " rows; layer '" +
                                  L.spec.name + "' expects " + str(L.spec.outputs));
    found.push_back(static_cast<int>(li));
  }
  if (found.empty()) throw std::invalid_argument("no data layer reads matrix " + std::to_string(data_idx));
  return found;
}

// ---- rates and draws --------------------------------------------------------------------

void Plan::schedule_rates(double progress, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  for (MatrixPlan& m : matrices) {
    double eps = schedule_rate(m.sched, m.eps_base, progress);
    if (m.sched.noise_stdev > 0.0) eps *= schedule_noise_factor(m.sched, normal(rng));
    m.eps = static_cast<float>(eps);  // §4.2: a double on the host, a float in the kernels
  }
}

void Plan::begin_backward() {
  for (MatrixPlan& m : matrices) m.contributed = false;
}

void ForwardDraws::normal(float* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = normal_(rng_);
}

void ForwardDraws::dropout_mask(float* out, int64_t count, float keep) {
  for (int64_t i = 0; i < count; ++i) out[i] = (1.0 - uniform_(rng_)) < keep ? 1.0f : 0.0f;
}

}  // namespace alexnet
