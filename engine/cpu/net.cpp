// The net object (net.h): wiring of the per-layer kernels into a training step.
//
// Order and accumulation follow engine.md:
// * forward (§1.4): inputs in listed order, the first with scale_targets 0 and
//   the bias added right after it, later inputs added;
// * backward (§1.4, §1.5): layers in reverse execution order; the first
//   consumer to reach a producer overwrites its gradient buffer, later ones add;
//   a softmax whose only consumer is a cost.logreg takes the fused gradient
//   coeff*(onehot - y) (§3.12); a matrix whose base rate is 0 gets no gradient;
// * update (§4.2): conv weights and all biases through inc <- mom*inc + eps*G,
//   fc and local weights through the increment formed in backward; then decay,
//   W += inc and the constraints.
// Every buffer is allocated in the constructor for max_cases cases; a step
// allocates nothing (the conv scratch grows once, on the first minibatch).
#include "alexnet/net.h"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "alexnet/cpu/blur.h"
#include "alexnet/cpu/concat.h"
#include "alexnet/cpu/conv.h"
#include "alexnet/cpu/cost.h"
#include "alexnet/cpu/dropout.h"
#include "alexnet/cpu/eltwise.h"
#include "alexnet/cpu/fc.h"
#include "alexnet/cpu/href.h"
#include "alexnet/cpu/local.h"
#include "alexnet/cpu/nailbed.h"
#include "alexnet/cpu/neuron.h"
#include "alexnet/cpu/norm.h"
#include "alexnet/cpu/pool.h"
#include "alexnet/cpu/softmax.h"
#include "alexnet/cpu/update.h"
#include "alexnet/net_plan.h"

namespace alexnet {

namespace {

using Kind = LayerKind;

// One weight matrix with its increment and (conv) gradient, owned by one layer.
struct Weights : WeightParams {
  std::vector<float> w, inc, grad;
};

struct LayerState {
  LayerSpec spec;
  Kind kind = Kind::Data;
  std::vector<float> acts, grad;
  bool grad_set = false;     // received a contribution in this backward
  bool needs_grad = false;   // something at or below it learns
  std::vector<int> consumers;
  std::vector<Weights*> weights;   // per input; may point into another layer's storage (weightSource)
  std::vector<std::unique_ptr<Weights>> owned;
  Weights bias;
  bool has_bias = false;
  std::vector<cpu::ConvParams> conv;
  cpu::ConvScratch conv_scratch;
  cpu::PoolParams pool;
  cpu::SpatialNormParams spatial;
  cpu::CrossMapNormParams crossmap;
  cpu::NeuronParams neuron;
  cpu::NailbedParams nailbed;
  cpu::BlurParams blur;
  cpu::HrefParams href;
  std::vector<float> denoms, scratch, mean_diffs, mask, noise, blur_tmp;
  std::vector<ConstMatView> input_views;  // eltmax: its inputs' views (sized once)
  bool fused_logreg = false;  // softmax: its only consumer is a cost.logreg (§3.12)
};

// Adds the wall time of its scope to seconds[name][slot] (0 forward, 1 backward)
// when profiling (seconds != nullptr).
class LayerTimer {
 public:
  LayerTimer(std::map<std::string, std::vector<double>>* seconds, const std::string& name, int slot)
      : seconds_(seconds), name_(name), slot_(slot), start_(std::chrono::steady_clock::now()) {}
  ~LayerTimer() {
    if (!seconds_) return;
    auto& entry = (*seconds_)[name_];
    entry.resize(2, 0.0);
    entry[slot_] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::map<std::string, std::vector<double>>* seconds_;
  const std::string& name_;
  int slot_;
  std::chrono::steady_clock::time_point start_;
};

MatView view(std::vector<float>& v, int64_t rows, int64_t cols) { return MatView{v.data(), rows, cols}; }
ConstMatView cview(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return ConstMatView(v.data(), rows, cols);
}

}  // namespace

struct Net::Impl {
  std::vector<LayerState> layers;
  std::map<std::string, int> index;
  int64_t max_cases = 0;
  std::mt19937_64 rng;
  PassType pass = PassType::Test;
};

Net::Net(std::vector<LayerSpec> specs, int64_t max_cases, uint64_t seed) : impl_(new Impl) {
  if (max_cases < 1) throw std::invalid_argument("max_cases must be >= 1");
  Impl& I = *impl_;
  I.max_cases = max_cases;
  I.rng.seed(seed);
  I.layers.resize(specs.size());
  for (size_t li = 0; li < specs.size(); ++li) {
    LayerState& L = I.layers[li];
    L.spec = std::move(specs[li]);
    const LayerSpec& s = L.spec;
    auto fail = [&](const std::string& why) { fail_layer(s, why); };
    L.kind = check_layer(s, static_cast<int>(li), I.index);
    for (int in : s.inputs) I.layers[in].consumers.push_back(static_cast<int>(li));
    L.acts.assign(static_cast<size_t>(s.outputs * max_cases), 0.0f);
    L.grad.assign(static_cast<size_t>(s.outputs * max_cases), 0.0f);
    auto input_size = [&](size_t i) { return I.layers[s.inputs[i]].spec.outputs; };

    switch (L.kind) {
      case Kind::Conv:
      case Kind::Local: {
        if (s.conv.size() != s.inputs.size()) fail("needs one conv geometry per input");
        for (size_t i = 0; i < s.conv.size(); ++i) L.conv.push_back(conv_params(s, i, input_size(i)));
        if (s.filters * s.modules_x * s.modules_x != s.outputs) fail("outputs != filters * modules");
        break;
      }
      case Kind::Pool:
        L.pool = pool_params(s);
        break;
      case Kind::Rnorm:
      case Kind::Cnorm:
        L.spatial = spatial_norm_params(s);
        L.denoms.assign(L.acts.size(), 0.0f);
        L.scratch.assign(L.acts.size(), 0.0f);
        if (L.kind == Kind::Cnorm) L.mean_diffs.assign(L.acts.size(), 0.0f);
        break;
      case Kind::Cmrnorm:
        L.crossmap = cross_map_norm_params(s);
        L.denoms.assign(L.acts.size(), 0.0f);
        L.scratch.assign(L.acts.size(), 0.0f);
        break;
      case Kind::Neuron:
        L.neuron = neuron_params(s);
        if (L.neuron.type == cpu::NeuronType::kNrelu) L.noise.assign(L.acts.size(), 0.0f);
        break;
      case Kind::Dropout:
        L.mask.assign(L.acts.size(), 1.0f);
        break;
      case Kind::Nailbed:
        L.nailbed = {s.channels, s.img_size, s.stride};
        break;
      case Kind::Blur:
        L.blur.channels = s.channels;
        L.blur.img_size = s.img_size;
        L.blur.filter = L.spec.filter.data();
        L.blur.filter_size = static_cast<int64_t>(s.filter.size());
        L.blur_tmp.assign(L.acts.size(), 0.0f);
        break;
      case Kind::Href:
        L.href = {s.channels, s.img_size};
        break;
      case Kind::Logreg:
        if (s.inputs.size() != 2) fail("cost.logreg takes labels and a softmax");
        break;
      default:
        break;
    }

    if (is_weight_kind(L.kind)) {
      check_weight_lists(s);
      const size_t n = s.inputs.size();
      for (size_t i = 0; i < n; ++i) {
        if (s.share_layer[i] >= 0) {
          L.weights.push_back(shared_matrix(I.layers, s, static_cast<int>(li), i));
          continue;
        }
        auto w = std::make_unique<Weights>();
        static_cast<WeightParams&>(*w) = weight_params(s, i);
        const size_t size = static_cast<size_t>(w->rows * w->cols);
        w->w.assign(size, 0.0f);
        w->inc.assign(size, 0.0f);
        if (L.kind == Kind::Conv) w->grad.assign(size, 0.0f);
        L.weights.push_back(w.get());
        L.owned.push_back(std::move(w));
      }
      L.has_bias = true;
      static_cast<WeightParams&>(L.bias) = bias_params(s);
      const size_t bsize = static_cast<size_t>(s.bias_rows * s.bias_cols);
      L.bias.w.assign(bsize, 0.0f);
      L.bias.inc.assign(bsize, 0.0f);
      L.bias.grad.assign(bsize, 0.0f);
    }
  }
  mark_gradients(I.layers, I.index);
}

Net::~Net() = default;

int Net::num_layers() const { return static_cast<int>(impl_->layers.size()); }
const LayerSpec& Net::spec(int layer) const { return impl_->layers.at(layer).spec; }
int Net::layer_index(const std::string& name) const {
  return find_layer(impl_->index, name);
}

void Net::set_data(int data_idx, const float* values, int64_t rows, int64_t cases) {
  check_minibatch(cases, impl_->max_cases);
  bool found = false;
  for (LayerState& L : impl_->layers) {
    if (L.kind != Kind::Data || L.spec.data_idx != data_idx) continue;
    check_data_rows(L.spec, data_idx, rows);
    std::copy(values, values + rows * cases, L.acts.begin());
    found = true;
  }
  if (!found) fail_no_data_layer(data_idx);
  cases_ = cases;
}

void Net::forward(PassType pass) {
  Impl& I = *impl_;
  I.pass = pass;
  const int64_t n = cases_;
  if (n < 1) throw std::logic_error("forward before set_data");
  costs_.clear();
  ForwardDraws draws(I.rng);
  for (LayerState& L : I.layers) {
    const LayerSpec& s = L.spec;
    const LayerTimer timer(profile ? &layer_seconds : nullptr, s.name, 0);
    MatView y = view(L.acts, s.outputs, n);
    auto in = [&](size_t i) { return cview(I.layers[s.inputs[i]].acts, I.layers[s.inputs[i]].spec.outputs, n); };
    switch (L.kind) {
      case Kind::Data:
        break;
      case Kind::Conv:
      case Kind::Local:
      case Kind::Fc:
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          const Weights& w = *L.weights[i];
          const float st = i == 0 ? 0.0f : 1.0f;
          if (L.kind == Kind::Fc)  // the release's (Din, Dout) Fortran matrix is (Dout, Din) row-major here
            cpu::fc_fprop(in(i), cview(w.w, w.cols, w.rows), y, st);
          else if (L.kind == Kind::Conv)
            cpu::conv_fprop(L.conv[i], in(i), cview(w.w, w.rows, w.cols), y, st, L.conv_scratch);
          else
            cpu::local_fprop(L.conv[i], in(i), cview(w.w, w.rows, w.cols), y, st, L.conv_scratch);
          if (i == 0) {  // §1.4: the bias right after the first input
            if (L.kind == Kind::Fc)
              cpu::fc_add_bias(L.bias.w.data(), y);
            else
              cpu::conv_add_bias(cview(L.bias.w, L.bias.rows, L.bias.cols), y,
                                 L.kind == Kind::Conv && s.shared_biases);
          }
        }
        break;
      case Kind::Pool:
        cpu::pool_fprop(L.pool, in(0), y, 0.0f);
        break;
      case Kind::Rnorm:
        cpu::rnorm_fprop(L.spatial, in(0), y, view(L.denoms, s.outputs, n));
        break;
      case Kind::Cnorm:
        cpu::cnorm_fprop(L.spatial, in(0), y, view(L.denoms, s.outputs, n), view(L.mean_diffs, s.outputs, n));
        break;
      case Kind::Cmrnorm:
        cpu::cmrnorm_fprop(L.crossmap, in(0), y, view(L.denoms, s.outputs, n));
        break;
      case Kind::Neuron:
        if (!L.noise.empty() && !inject_masks)  // nrelu: one N(0,1) draw per element, every pass (§3.11)
          draws.normal(L.noise.data(), s.outputs * n);
        cpu::neuron_fprop(L.neuron, in(0), L.noise.empty() ? nullptr : L.noise.data(), y);
        break;
      case Kind::Softmax:
        cpu::softmax_fprop(in(0), y);
        break;
      case Kind::Dropout: {
        const bool train = pass == PassType::Train && s.enable;
        if (train && !inject_masks)  // §3.16: keep with probability keep, U in (0, 1]
          draws.dropout_mask(L.mask.data(), s.outputs * n, s.keep);
        cpu::dropout_fprop(in(0), L.mask.data(), s.keep, train, y);
        break;
      }
      case Kind::Eltsum:
        for (size_t i = 0; i < s.inputs.size(); ++i)
          cpu::eltsum_fprop(in(i), y, s.coeffs.empty() ? 1.0f : s.coeffs[i], i == 0 ? 0.0f : 1.0f);
        break;
      case Kind::Eltmax:
        L.input_views.resize(s.inputs.size());  // allocates on the first pass only
        for (size_t i = 0; i < s.inputs.size(); ++i) L.input_views[i] = in(i);
        cpu::eltmax_fprop(L.input_views.data(), static_cast<int64_t>(L.input_views.size()), y);
        break;
      case Kind::Concat: {
        int64_t offset = 0;
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          cpu::concat_fprop(in(i), y, offset);
          offset += I.layers[s.inputs[i]].spec.outputs;
        }
        break;
      }
      case Kind::Nailbed:
        cpu::nailbed_fprop(L.nailbed, in(0), y, 0.0f);
        break;
      case Kind::Blur:
        cpu::blur_fprop(L.blur, in(0), view(L.blur_tmp, s.outputs, n), y, 0.0f);
        break;
      case Kind::Href:
        cpu::href_fprop(L.href, in(0), y, 0.0f);
        break;
      case Kind::Logreg: {
        const cpu::LogregCosts c = cpu::logreg_cost(in(0).data, in(1), s.topk);
        costs_[s.name] = {c.neg_log_prob, c.top1_errors, c.topk_errors};
        break;
      }
      case Kind::Sum2:
        costs_[s.name] = {cpu::sum2_cost(in(0))};
        break;
    }
  }
}

void Net::backward() {
  Impl& I = *impl_;
  const int64_t n = cases_;
  const float inv_n = 1.0f / static_cast<float>(n);
  for (LayerState& L : I.layers) L.grad_set = false;
  for (LayerState& L : I.layers)
    for (Weights* w : L.weights) w->contributed = false;

  for (auto it = I.layers.rbegin(); it != I.layers.rend(); ++it) {
    LayerState& L = *it;
    const LayerSpec& s = L.spec;
    if (L.kind == Kind::Data || !L.needs_grad) continue;
    const LayerTimer timer(profile ? &layer_seconds : nullptr, s.name, 1);
    const bool cost = is_cost_kind(L.kind);
    if (!cost && !L.grad_set && !(L.kind == Kind::Softmax && L.fused_logreg)) continue;  // nothing reached it
    const ConstMatView dy = cview(L.grad, s.outputs, n);
    auto in = [&](size_t i) { return cview(I.layers[s.inputs[i]].acts, I.layers[s.inputs[i]].spec.outputs, n); };
    // The gradient buffer of input i, and whether to overwrite (0) or add (1) into it.
    auto target = [&](size_t i, float* st) -> MatView {
      LayerState& P = I.layers[s.inputs[i]];
      *st = P.grad_set ? 1.0f : 0.0f;
      P.grad_set = true;
      return view(P.grad, P.spec.outputs, n);
    };
    auto wants = [&](size_t i) { return I.layers[s.inputs[i]].needs_grad; };
    float st = 0.0f;
    switch (L.kind) {
      case Kind::Data:
        break;
      case Kind::Conv:
      case Kind::Local:
      case Kind::Fc: {
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          Weights& w = *L.weights[i];
          if (wants(i)) {
            MatView dx = target(i, &st);
            if (L.kind == Kind::Fc)
              cpu::fc_bprop_acts(dy, cview(w.w, w.cols, w.rows), dx, st);
            else if (L.kind == Kind::Conv)
              cpu::conv_bprop_acts(L.conv[i], dy, cview(w.w, w.rows, w.cols), dx, st, L.conv_scratch);
            else
              cpu::local_bprop_acts(L.conv[i], dy, cview(w.w, w.rows, w.cols), dx, st, L.conv_scratch);
          }
          if (w.eps_base <= 0.0f) continue;  // §4.2: a frozen matrix gets no gradient
          const bool first = !w.contributed;
          w.contributed = true;
          if (L.kind == Kind::Fc)  // inc <- mom*inc + (eps/N) dY X^T; mom 1 for further uses of a shared matrix
            cpu::fc_bprop_weights(in(i), dy, view(w.inc, w.cols, w.rows), w.eps * inv_n, first ? w.mom : 1.0f);
          else if (L.kind == Kind::Conv)
            cpu::conv_bprop_weights(L.conv[i], in(i), dy, view(w.grad, w.rows, w.cols), s.partial_sum, inv_n,
                                    first ? 0.0f : 1.0f, L.conv_scratch);
          else
            cpu::local_bprop_weights(L.conv[i], in(i), dy, view(w.inc, w.rows, w.cols), w.eps * inv_n,
                                     first ? w.mom : 1.0f, L.conv_scratch);
        }
        if (L.bias.eps_base > 0.0f) {
          if (L.kind == Kind::Fc)
            cpu::fc_bprop_bias(dy, L.bias.grad.data(), inv_n, 0.0f);
          else
            cpu::conv_bprop_bias(dy, view(L.bias.grad, L.bias.rows, L.bias.cols),
                                 L.kind == Kind::Conv && s.shared_biases, inv_n, 0.0f);
        }
        break;
      }
      case Kind::Pool:
        if (wants(0)) {
          MatView dx = target(0, &st);
          cpu::pool_bprop(L.pool, in(0), cview(L.acts, s.outputs, n), dy, dx, st);
        }
        break;
      case Kind::Rnorm:
      case Kind::Cnorm:
      case Kind::Cmrnorm:
        if (wants(0)) {
          MatView dx = target(0, &st);
          const ConstMatView yv = cview(L.acts, s.outputs, n), d = cview(L.denoms, s.outputs, n);
          const MatView scratch = view(L.scratch, s.outputs, n);
          if (L.kind == Kind::Rnorm)
            cpu::rnorm_bprop(L.spatial, in(0), yv, d, dy, dx, scratch, st);
          else if (L.kind == Kind::Cnorm)
            cpu::cnorm_bprop(L.spatial, cview(L.mean_diffs, s.outputs, n), yv, d, dy, dx, scratch, st);
          else
            cpu::cmrnorm_bprop(L.crossmap, in(0), yv, d, dy, dx, scratch, st);
        }
        break;
      case Kind::Neuron:
        if (wants(0)) {
          MatView dx = target(0, &st);
          cpu::neuron_bprop(L.neuron, in(0), cview(L.acts, s.outputs, n), dy, dx, st);
        }
        break;
      case Kind::Softmax:
        if (wants(0)) {
          MatView dx = target(0, &st);
          if (L.fused_logreg) {
            const LayerState& cost_layer = I.layers[L.consumers[0]];
            const ConstMatView labels = cview(I.layers[cost_layer.spec.inputs[0]].acts, 1, n);
            cpu::logreg_softmax_bprop(labels.data, cview(L.acts, s.outputs, n), dx, cost_layer.spec.coeff, st);
          } else {
            cpu::softmax_bprop(cview(L.acts, s.outputs, n), dy, dx, st);
          }
        }
        break;
      case Kind::Dropout:
        if (wants(0)) {
          MatView dx = target(0, &st);
          cpu::dropout_bprop(dy, L.mask.data(), s.keep, I.pass == PassType::Train && s.enable, dx, st);
        }
        break;
      case Kind::Eltsum:
        for (size_t i = 0; i < s.inputs.size(); ++i)
          if (wants(i)) {
            MatView dx = target(i, &st);
            cpu::eltsum_bprop(dy, dx, s.coeffs.empty() ? 1.0f : s.coeffs[i], st);
          }
        break;
      case Kind::Eltmax:
        for (size_t i = 0; i < s.inputs.size(); ++i)
          if (wants(i)) {
            MatView dx = target(i, &st);
            cpu::eltmax_bprop(in(i), cview(L.acts, s.outputs, n), dy, dx, st);
          }
        break;
      case Kind::Concat: {
        int64_t offset = 0;
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          if (wants(i)) {
            MatView dx = target(i, &st);
            cpu::concat_bprop(dy, dx, offset, st);
          }
          offset += I.layers[s.inputs[i]].spec.outputs;
        }
        break;
      }
      case Kind::Nailbed:
        if (wants(0)) {
          MatView dx = target(0, &st);
          cpu::nailbed_bprop(L.nailbed, dy, dx, st);
        }
        break;
      case Kind::Blur:
        if (wants(0)) {
          MatView dx = target(0, &st);
          cpu::blur_bprop(L.blur, dy, view(L.blur_tmp, s.outputs, n), dx, st);
        }
        break;
      case Kind::Href:
        if (wants(0)) {  // §13 item 8: overwrites, ignoring accumulation, as written
          MatView dx = target(0, &st);
          cpu::href_bprop(L.href, dy, dx);
        }
        break;
      case Kind::Logreg: {
        const LayerState& probs = I.layers[s.inputs[1]];
        if (!probs.fused_logreg && wants(1)) {
          MatView dp = target(1, &st);
          cpu::logreg_bprop(in(0).data, in(1), dp, s.coeff, st);
        }
        break;
      }
      case Kind::Sum2:
        if (wants(0)) {
          MatView dx = target(0, &st);
          cpu::sum2_bprop(in(0), dx, s.coeff, st);
        }
        break;
    }
  }
}

void Net::reseed(uint64_t seed) { impl_->rng.seed(seed); }

// §4.3: net_plan.h draws the schedule noise in the order the CUDA net draws it.
void Net::set_progress(double progress) { schedule_rates(impl_->layers, progress, impl_->rng); }

void Net::update() {
  Impl& I = *impl_;
  for (LayerState& L : I.layers) {
    for (auto& owned : L.owned) {
      Weights& w = *owned;
      if (w.eps_base <= 0.0f || !w.contributed) continue;
      const int64_t size = w.rows * w.cols;
      if (L.kind == Kind::Conv) cpu::update_increment(w.inc.data(), w.grad.data(), size, w.eps, w.mom);
      cpu::update_decay_and_step(w.w.data(), w.inc.data(), size, w.eps, w.wc);
      if (L.kind == Kind::Conv) {
        cpu::constrain_filter_spread(w.w.data(), w.rows, w.cols, w.norm_min, w.norm_max);
        cpu::constrain_max_norm(w.w.data(), w.cols, w.rows, 1, w.cols, w.wball);
      } else if (L.kind == Kind::Fc) {  // each output unit's weights: contiguous rows of the (Dout, Din) storage
        cpu::constrain_max_norm(w.w.data(), w.cols, w.rows, w.rows, 1, w.wball);
      } else if (w.wball > 0.0f) {  // local: each (module, filter) vector
        const int64_t modules = L.spec.modules_x * L.spec.modules_x;
        const int64_t per_module = w.rows / modules;
        for (int64_t m = 0; m < modules; ++m)
          cpu::constrain_max_norm(w.w.data() + m * per_module * w.cols, w.cols, per_module, 1, w.cols, w.wball);
      }
    }
    if (L.has_bias && L.bias.eps_base > 0.0f) {
      const int64_t size = L.bias.rows * L.bias.cols;
      cpu::update_increment(L.bias.inc.data(), L.bias.grad.data(), size, L.bias.eps, L.bias.mom);
      cpu::update_decay_and_step(L.bias.w.data(), L.bias.inc.data(), size, L.bias.eps, 0.0f);
    }
  }
}

namespace {
Net::Buffer buffer(std::vector<float>& v, int64_t rows, int64_t cols) {
  return Net::Buffer{v.empty() ? nullptr : v.data(), v.empty() ? 0 : rows, v.empty() ? 0 : cols, false};
}
}  // namespace

Net::Buffer Net::acts(int layer) {
  LayerState& L = impl_->layers.at(layer);
  return buffer(L.acts, L.spec.outputs, cases_);
}
Net::Buffer Net::acts_grad(int layer) {
  LayerState& L = impl_->layers.at(layer);
  return buffer(L.grad, L.spec.outputs, cases_);
}
Net::Buffer Net::weights(int layer, int input) {
  LayerState& L = impl_->layers.at(layer);
  Weights& w = *L.weights.at(input);
  Buffer b = buffer(w.w, w.rows, w.cols);
  b.fortran = L.kind == Kind::Fc;
  return b;
}
Net::Buffer Net::weight_inc(int layer, int input) {
  LayerState& L = impl_->layers.at(layer);
  Weights& w = *L.weights.at(input);
  Buffer b = buffer(w.inc, w.rows, w.cols);
  b.fortran = L.kind == Kind::Fc;
  return b;
}
Net::Buffer Net::weight_grad(int layer, int input) {
  Weights& w = *impl_->layers.at(layer).weights.at(input);
  return buffer(w.grad, w.rows, w.cols);
}
Net::Buffer Net::biases(int layer) {
  LayerState& L = impl_->layers.at(layer);
  return buffer(L.bias.w, L.bias.rows, L.bias.cols);
}
Net::Buffer Net::bias_inc(int layer) {
  LayerState& L = impl_->layers.at(layer);
  return buffer(L.bias.inc, L.bias.rows, L.bias.cols);
}
Net::Buffer Net::bias_grad(int layer) {
  LayerState& L = impl_->layers.at(layer);
  return buffer(L.bias.grad, L.bias.rows, L.bias.cols);
}
Net::Buffer Net::mask(int layer) {
  LayerState& L = impl_->layers.at(layer);
  return buffer(L.mask, L.spec.outputs, impl_->max_cases);
}
Net::Buffer Net::noise(int layer) {
  LayerState& L = impl_->layers.at(layer);
  return buffer(L.noise, L.spec.outputs, impl_->max_cases);
}

}  // namespace alexnet
