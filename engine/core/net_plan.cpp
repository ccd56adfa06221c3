// The net plan (net_plan.h): every check of a LayerSpec list, made once for
// both nets, and what both nets derive from the specs.
#include "alexnet/core/net_plan.h"

#include <cmath>
#include <stdexcept>

namespace alexnet {

void fail_layer(const LayerSpec& s, const std::string& why) {
  throw std::invalid_argument("layer '" + s.name + "': " + why);
}

namespace {

std::string str(int64_t v) { return std::to_string(v); }

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

// ---- the generic checks of one layer; its row's plan function does the rest --------------

void Plan::check_and_plan(LayerPlan& L, int li) {
  const LayerSpec& s = L.spec;
  auto fail = [&](const std::string& why) { fail_layer(s, why); };
  L.index = li;
  L.type = find_layer_type(s.type);
  if (L.type == nullptr)
    fail("the engine has no '" + s.type + "' layer (supported: " + layer_type_names() + ")");
  if (s.name.empty()) throw std::invalid_argument("layer " + str(li) + ": has no name");
  if (index_.count(s.name)) fail("name used twice");
  index_[s.name] = li;
  for (int in : s.inputs)
    if (in < 0 || in >= li) fail("inputs must be earlier layers");
  const int n_in = static_cast<int>(s.inputs.size());
  if (L.type->min_inputs > 0 && n_in == 0) fail("has no inputs");
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
  L.type->plan(*this, L);
}

// ---- weights ------------------------------------------------------------------------------

void Plan::plan_weights(LayerPlan& L, const WeightLayout& layout) {
  const LayerSpec& s = L.spec;
  const int li = L.index;
  auto fail = [&](const std::string& why) { fail_layer(s, why); };
  const size_t n = s.inputs.size();
  if (s.weight_rows.size() != n || s.weight_cols.size() != n || s.eps_w.size() != n || s.mom_w.size() != n ||
      s.wc.size() != n || s.share_layer.size() != n || s.share_index.size() != n || s.sched_w.size() != n)
    fail("needs one weight shape, sharing entry and learning parameter set per input");
  for (const auto* list : {&s.wball_normed, &s.wcnorm_min, &s.wcnorm_max})
    if (list->size() > n) fail("more weight constraints than inputs");

  for (size_t i = 0; i < n; ++i) {
    const int64_t rows = layout.rows[i], cols = layout.cols[i];
    if (s.weight_rows[i] != rows || s.weight_cols[i] != cols)
      fail(std::string(layout.shape_rule) + ": expected (" + str(rows) + ", " + str(cols) + "), got (" +
           str(s.weight_rows[i]) + ", " + str(s.weight_cols[i]) + ")");

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
    w.fortran = layout.fortran;
    w.has_grad = layout.gradient;
    w.eps_base = w.eps = s.eps_w[i];
    w.mom = s.mom_w[i];
    w.wc = s.wc[i];
    w.wball = i < s.wball_normed.size() ? s.wball_normed[i] : 0.0f;
    w.norm_min = i < s.wcnorm_min.size() ? s.wcnorm_min[i] : 0.0f;
    w.norm_max = i < s.wcnorm_max.size() ? s.wcnorm_max[i] : 0.0f;
    w.sched = s.sched_w[i];
    // §4.4: superEps > 0 forces the "useGrad" path (a gradient buffer, also for fc
    // and local) and the RMS-normalised increment. The layer's value applies to its
    // own weight matrices, not its bias (§4.4 says it forces the useGrad path, which
    // only a weight matrix can leave), and not treefc's node-wise rule (§3.3).
    w.super_eps = s.super_eps > 0.0f ? s.super_eps : 0.0f;
    if (w.super_eps > 0.0f) w.has_grad = true;
    if (w.super_eps > 0.0f && L.is("treefc"))
      fail("superEps: treefc's node-wise update (engine.md §3.3) has no superEps form; set superEps=0");
    for (float v : {w.eps_base, w.mom, w.wc, w.wball, w.norm_min, w.norm_max, s.super_eps})
      if (!std::isfinite(v)) fail("learning parameters of input " + str(static_cast<int64_t>(i)) + " must be finite");
    if (layout.filter_spread) checked(s, [&] { check_filter_spread(w.norm_min, w.norm_max); });
    checked(s, [&] { check_schedule(w.sched); });

    UpdateRule r = layout.max_norm[i];
    if (w.wball <= 0.0f && r.blocks > 1) r.blocks = 0;  // per-module norms only when the constraint is on
    r.matrix = static_cast<int>(matrices.size());
    r.filter_spread = layout.filter_spread;
    L.weights.push_back(r.matrix);
    matrices.push_back(w);
    update_rules.push_back(r);
  }

  if (s.bias_rows < 0 || s.bias_cols < 0 || s.bias_rows * s.bias_cols != layout.biases)
    fail("bias shape does not match the layer: expected " + str(layout.biases) + " biases, got (" +
         str(s.bias_rows) + ", " + str(s.bias_cols) + ")");
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
  L.bias = r.matrix;
  matrices.push_back(b);
  update_rules.push_back(r);
}

// Which layers need a gradient (those that learn, and everything above them),
// and which softmax layers take the fused gradient: their only consumer is a
// cost.logreg that reads them as its probabilities (§3.12)
void Plan::mark_gradients() {
  for (LayerPlan& L : layers) {
    bool learns = false;  // its own matrices, or ones it shares from another layer (weightSource)
    for (int m : L.weights) learns = learns || matrices[static_cast<size_t>(m)].eps_base > 0.0f;
    if (L.bias >= 0) learns = learns || matrices[static_cast<size_t>(L.bias)].eps_base > 0.0f;
    bool below = false;
    for (int in : L.spec.inputs) below = below || layers[static_cast<size_t>(in)].needs_grad;
    L.needs_grad = learns || below;
  }
  // ... and which logistic neurons take the fused crossent2 gradient (§3.11).
  for (LayerPlan& L : layers) {
    if (L.consumers.size() != 1) continue;
    const LayerPlan& c = layers[static_cast<size_t>(L.consumers[0])];
    const bool probabilities = c.spec.inputs.size() == 2 && c.spec.inputs[1] == L.index;
    L.fused_logreg = L.is("softmax") && c.is("cost.logreg") && probabilities;
    L.fused_crossent2 = L.is("neuron") && L.neuron.type == NeuronType::kLogistic && c.is("cost.crossent2") &&
                        probabilities;
  }
}

// ---- buffers ------------------------------------------------------------------------------

BufferKind buffer_kind(const std::string& name) {
  using K = BufferKind;
  static const std::map<std::string, K> kinds = {
      {"acts", K::Acts},        {"acts_grad", K::ActsGrad}, {"weights", K::Weights},  {"weight_inc", K::WeightInc},
      {"weight_grad", K::WeightGrad}, {"biases", K::Biases}, {"bias_inc", K::BiasInc}, {"bias_grad", K::BiasGrad},
      {"mask", K::Mask},        {"noise", K::Noise},        {"draws", K::Draws},
      {"weight_gavg", K::WeightGavg}, {"weight_g2avg", K::WeightG2avg},
  };
  auto it = kinds.find(name);
  if (it == kinds.end())
    throw std::invalid_argument("kind: buffer kind '" + name +
                                "' (acts, acts_grad, weights, weight_inc, weight_grad, biases, bias_inc, bias_grad, "
                                "mask, noise, draws, weight_gavg, weight_g2avg)");
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
    case BufferKind::Draws: return "draws";
    case BufferKind::WeightGavg: return "weight_gavg";
    case BufferKind::WeightG2avg: return "weight_g2avg";
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
      b.fortran = w.fortran && b.rows > 0;  // treefc: the gradient has its weights' layout
      break;
    }
    case K::WeightGavg:
    case K::WeightG2avg: {
      const MatrixPlan& w = weight();
      set(w.super_eps > 0.0f, w.rows, w.cols);
      b.fortran = w.fortran && b.rows > 0;
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
    case K::Draws:
      set(L.draw_count > 0, 1, L.draw_count);
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
    if (!L.is("data") || L.spec.data_idx != data_idx) continue;
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

void Plan::set_update_freq(int freq) {
  if (freq < 1) throw std::invalid_argument("update_freq: must be >= 1 (got " + std::to_string(freq) + ")");
  if (accumulated != 0)
    throw std::invalid_argument("update_freq: cannot change while " + std::to_string(accumulated) +
                                " minibatch(es) are accumulated and not yet applied");
  update_freq = freq;
}

void Plan::set_accumulated(int minibatches) {
  if (minibatches < 0 || minibatches >= update_freq)
    throw std::invalid_argument("accumulated: must be in 0.." + std::to_string(update_freq - 1) +
                                " with update_freq " + std::to_string(update_freq) + " (got " +
                                std::to_string(minibatches) + ")");
  accumulated = minibatches;
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

void ForwardDraws::uniform(double* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = uniform_(rng_);
}

void ForwardDraws::pool_picks(const PoolParams& p, float* out, int64_t n_cases) {
  const int64_t ox_n = p.outputs_x;
  for (int64_t row = 0; row < p.channels * ox_n * ox_n; ++row) {
    const int64_t area = pool_window_side(p, (row / ox_n) % ox_n) * pool_window_side(p, row % ox_n);
    for (int64_t n = 0; n < n_cases; ++n)
      out[row * n_cases + n] = static_cast<float>(pool_rand_pick(uniform_(rng_), area));
  }
}

}  // namespace alexnet
