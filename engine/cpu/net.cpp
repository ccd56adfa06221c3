// The CPU net (cpu/net.h): the wiring of the per-layer kernels into a training
// step. What a layer is and how it learns comes from the Plan (net_plan.h);
// this file holds the buffers and calls the kernels.
//
// Order and accumulation follow engine.md:
// * forward (§1.4): inputs in listed order, the first with scale_targets 0 and
//   the bias added right after it, later inputs added;
// * backward (§1.4, §1.5): layers in reverse execution order; the first
//   consumer to reach a producer overwrites its gradient buffer, later ones add;
//   a softmax whose only consumer is a cost.logreg takes the fused gradient
//   coeff*(onehot - y) (§3.12); a matrix whose base rate is 0 gets no gradient;
// * update (§4.2): the Plan's update rules, matrix by matrix.
// Every buffer is allocated in the constructor for max_cases cases; a step
// allocates nothing (the conv scratch grows once, on the first minibatch).
#include "alexnet/cpu/net.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "alexnet/cpu/blas.h"
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

namespace alexnet::cpu {

namespace {

using Kind = LayerKind;

// The storage of one weight matrix or bias (Plan::matrices has its parameters).
struct MatrixStore {
  std::vector<float> w, inc, grad;
};

// The buffers of one layer (Plan::layers has the rest).
struct LayerStore {
  std::vector<float> acts, grad;
  bool grad_set = false;  // received a contribution in this backward
  std::vector<float> denoms, scratch, mean_diffs, mask, noise, blur_tmp;
  ConvScratch conv_scratch;
  std::vector<ConstMatView> input_views;  // eltmax: its inputs' views (sized once)
};

// Adds the wall time of its scope to seconds[name][slot] (0 forward, 1
// backward, 2 update) when profiling (seconds != nullptr).
class LayerTimer {
 public:
  LayerTimer(std::map<std::string, std::vector<double>>* seconds, const std::string& name, int slot)
      : seconds_(seconds), name_(name), slot_(slot), start_(std::chrono::steady_clock::now()) {}
  ~LayerTimer() {
    if (!seconds_) return;
    auto& entry = (*seconds_)[name_];
    entry.resize(3, 0.0);
    entry[static_cast<size_t>(slot_)] +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
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

struct CpuNet::State {
  std::vector<LayerStore> layers;
  std::vector<MatrixStore> matrices;
};

CpuNet::CpuNet(std::vector<LayerSpec> specs, int64_t max_cases, uint64_t seed)
    : Net(std::move(specs), max_cases, seed), state_(new State) {
  State& S = *state_;
  S.layers.resize(plan_.layers.size());
  for (size_t li = 0; li < plan_.layers.size(); ++li) {
    const LayerPlan& L = plan_.layers[li];
    LayerStore& B = S.layers[li];
    const size_t size = static_cast<size_t>(L.spec.outputs * max_cases);
    B.acts.assign(size, 0.0f);
    B.grad.assign(size, 0.0f);
    if (L.has_denoms) B.denoms.assign(size, 0.0f);
    if (L.has_scratch) B.scratch.assign(size, 0.0f);
    if (L.has_mean_diffs) B.mean_diffs.assign(size, 0.0f);
    if (L.has_mask) B.mask.assign(size, 1.0f);
    if (L.has_noise) B.noise.assign(size, 0.0f);
    if (L.has_blur_tmp) B.blur_tmp.assign(size, 0.0f);
  }
  S.matrices.resize(plan_.matrices.size());
  for (size_t m = 0; m < plan_.matrices.size(); ++m) {
    const MatrixPlan& P = plan_.matrices[m];
    MatrixStore& M = S.matrices[m];
    M.w.assign(static_cast<size_t>(P.size()), 0.0f);
    M.inc.assign(static_cast<size_t>(P.size()), 0.0f);
    if (P.has_grad) M.grad.assign(static_cast<size_t>(P.size()), 0.0f);
  }
}

CpuNet::~CpuNet() = default;

std::map<std::string, std::string> CpuNet::info() const { return {{"device", "cpu"}, {"blas", blas_name()}}; }

void CpuNet::set_data(int data_idx, const float* values, int64_t rows, int64_t cases) {
  for (int li : plan_.data_layers(data_idx, rows, cases))
    std::copy(values, values + rows * cases, state_->layers[static_cast<size_t>(li)].acts.begin());
  cases_ = cases;
}

void CpuNet::forward(PassType pass) {
  State& S = *state_;
  pass_ = pass;
  const int64_t n = cases_;
  if (n < 1) throw std::logic_error("forward before set_data");
  costs_.clear();
  ForwardDraws draws(rng_);
  for (size_t li = 0; li < plan_.layers.size(); ++li) {
    const LayerPlan& L = plan_.layers[li];
    LayerStore& B = S.layers[li];
    const LayerSpec& s = L.spec;
    const LayerTimer timer(profile ? &layer_seconds : nullptr, s.name, 0);
    MatView y = view(B.acts, s.outputs, n);
    auto in = [&](size_t i) {
      const int p = s.inputs[i];
      return cview(S.layers[static_cast<size_t>(p)].acts, plan_.layers[static_cast<size_t>(p)].spec.outputs, n);
    };
    auto matrix = [&](int m) -> MatrixStore& { return S.matrices[static_cast<size_t>(m)]; };
    auto shape = [&](int m) -> const MatrixPlan& { return plan_.matrices[static_cast<size_t>(m)]; };
    switch (L.kind) {
      case Kind::Data:
        break;
      case Kind::Conv:
      case Kind::Local:
      case Kind::Fc:
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          const int m = L.weights[i];
          const std::vector<float>& w = matrix(m).w;
          const float st = i == 0 ? 0.0f : 1.0f;
          if (L.kind == Kind::Fc)  // the release's (Din, Dout) Fortran matrix is (Dout, Din) row-major here
            fc_fprop(in(i), cview(w, shape(m).cols, shape(m).rows), y, st);
          else if (L.kind == Kind::Conv)
            conv_fprop(L.conv[i], in(i), cview(w, shape(m).rows, shape(m).cols), y, st, B.conv_scratch);
          else
            local_fprop(L.conv[i], in(i), cview(w, shape(m).rows, shape(m).cols), y, st, B.conv_scratch);
          if (i == 0) {  // §1.4: the bias right after the first input
            const MatrixStore& b = matrix(L.bias);
            if (L.kind == Kind::Fc)
              fc_add_bias(b.w.data(), y);
            else
              conv_add_bias(cview(b.w, shape(L.bias).rows, shape(L.bias).cols), y,
                            L.kind == Kind::Conv && s.shared_biases);
          }
        }
        break;
      case Kind::Pool:
        pool_fprop(L.pool, in(0), y, 0.0f);
        break;
      case Kind::Rnorm:
        rnorm_fprop(L.spatial, in(0), y, view(B.denoms, s.outputs, n));
        break;
      case Kind::Cnorm:
        cnorm_fprop(L.spatial, in(0), y, view(B.denoms, s.outputs, n), view(B.mean_diffs, s.outputs, n));
        break;
      case Kind::Cmrnorm:
        cmrnorm_fprop(L.crossmap, in(0), y, view(B.denoms, s.outputs, n));
        break;
      case Kind::Neuron:
        if (L.has_noise && !inject_masks)  // nrelu: one N(0,1) draw per element, every pass (§3.11)
          draws.normal(B.noise.data(), s.outputs * n);
        neuron_fprop(L.neuron, in(0), L.has_noise ? B.noise.data() : nullptr, y);
        break;
      case Kind::Softmax:
        softmax_fprop(in(0), y);
        break;
      case Kind::Dropout: {
        const bool train = pass == PassType::Train && s.enable;
        if (train && !inject_masks)  // §3.16: keep with probability keep, U in (0, 1]
          draws.dropout_mask(B.mask.data(), s.outputs * n, s.keep);
        dropout_fprop(in(0), B.mask.data(), s.keep, train, y);
        break;
      }
      case Kind::Eltsum:
        for (size_t i = 0; i < s.inputs.size(); ++i)
          eltsum_fprop(in(i), y, s.coeffs.empty() ? 1.0f : s.coeffs[i], i == 0 ? 0.0f : 1.0f);
        break;
      case Kind::Eltmax:
        B.input_views.resize(s.inputs.size());  // allocates on the first pass only
        for (size_t i = 0; i < s.inputs.size(); ++i) B.input_views[i] = in(i);
        eltmax_fprop(B.input_views.data(), static_cast<int64_t>(B.input_views.size()), y);
        break;
      case Kind::Concat: {
        int64_t offset = 0;
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          concat_fprop(in(i), y, offset);
          offset += L.input_sizes[i];
        }
        break;
      }
      case Kind::Nailbed:
        nailbed_fprop(L.nailbed, in(0), y, 0.0f);
        break;
      case Kind::Blur:
        blur_fprop(L.blur, in(0), view(B.blur_tmp, s.outputs, n), y, 0.0f);
        break;
      case Kind::Href:
        href_fprop(L.href, in(0), y, 0.0f);
        break;
      case Kind::Logreg: {
        const LogregCosts c = logreg_cost(in(0).data, in(1), s.topk);
        costs_[s.name] = {c.neg_log_prob, c.top1_errors, c.topk_errors};
        break;
      }
      case Kind::Sum2:
        costs_[s.name] = {sum2_cost(in(0))};
        break;
    }
  }
}

void CpuNet::backward() {
  State& S = *state_;
  const int64_t n = cases_;
  if (n < 1) throw std::logic_error("backward before forward");
  const float inv_n = 1.0f / static_cast<float>(n);
  for (LayerStore& B : S.layers) B.grad_set = false;
  plan_.begin_backward();

  for (size_t li = plan_.layers.size(); li-- > 0;) {
    const LayerPlan& L = plan_.layers[li];
    LayerStore& B = S.layers[li];
    const LayerSpec& s = L.spec;
    if (L.kind == Kind::Data || !L.needs_grad) continue;
    const LayerTimer timer(profile ? &layer_seconds : nullptr, s.name, 1);
    if (!L.type->cost && !B.grad_set && !(L.kind == Kind::Softmax && L.fused_logreg)) continue;  // nothing reached it
    const ConstMatView dy = cview(B.grad, s.outputs, n);
    auto in = [&](size_t i) {
      const int p = s.inputs[i];
      return cview(S.layers[static_cast<size_t>(p)].acts, plan_.layers[static_cast<size_t>(p)].spec.outputs, n);
    };
    // The gradient buffer of input i, and whether to overwrite (0) or add (1) into it.
    auto target = [&](size_t i, float* st) -> MatView {
      LayerStore& P = S.layers[static_cast<size_t>(s.inputs[i])];
      *st = P.grad_set ? 1.0f : 0.0f;
      P.grad_set = true;
      return view(P.grad, L.input_sizes[i], n);
    };
    auto wants = [&](size_t i) { return plan_.layers[static_cast<size_t>(s.inputs[i])].needs_grad; };
    float st = 0.0f;
    switch (L.kind) {
      case Kind::Data:
        break;
      case Kind::Conv:
      case Kind::Local:
      case Kind::Fc: {
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          MatrixPlan& w = plan_.matrices[static_cast<size_t>(L.weights[i])];
          MatrixStore& ws = S.matrices[static_cast<size_t>(L.weights[i])];
          if (wants(i)) {
            MatView dx = target(i, &st);
            if (L.kind == Kind::Fc)
              fc_bprop_acts(dy, cview(ws.w, w.cols, w.rows), dx, st);
            else if (L.kind == Kind::Conv)
              conv_bprop_acts(L.conv[i], dy, cview(ws.w, w.rows, w.cols), dx, st, B.conv_scratch);
            else
              local_bprop_acts(L.conv[i], dy, cview(ws.w, w.rows, w.cols), dx, st, B.conv_scratch);
          }
          if (w.eps_base <= 0.0f) continue;  // §4.2: a frozen matrix gets no gradient
          const bool first = !w.contributed;
          w.contributed = true;
          if (L.kind == Kind::Fc)  // inc <- mom*inc + (eps/N) dY X^T; mom 1 for further uses of a shared matrix
            fc_bprop_weights(in(i), dy, view(ws.inc, w.cols, w.rows), w.eps * inv_n, first ? w.mom : 1.0f);
          else if (L.kind == Kind::Conv)
            conv_bprop_weights(L.conv[i], in(i), dy, view(ws.grad, w.rows, w.cols), s.partial_sum, inv_n,
                               first ? 0.0f : 1.0f, B.conv_scratch);
          else
            local_bprop_weights(L.conv[i], in(i), dy, view(ws.inc, w.rows, w.cols), w.eps * inv_n,
                                first ? w.mom : 1.0f, B.conv_scratch);
        }
        const MatrixPlan& b = plan_.matrices[static_cast<size_t>(L.bias)];
        MatrixStore& bs = S.matrices[static_cast<size_t>(L.bias)];
        if (b.eps_base > 0.0f) {
          if (L.kind == Kind::Fc)
            fc_bprop_bias(dy, bs.grad.data(), inv_n, 0.0f);
          else
            conv_bprop_bias(dy, view(bs.grad, b.rows, b.cols), L.kind == Kind::Conv && s.shared_biases, inv_n, 0.0f);
        }
        break;
      }
      case Kind::Pool:
        if (wants(0)) {
          MatView dx = target(0, &st);
          pool_bprop(L.pool, in(0), cview(B.acts, s.outputs, n), dy, dx, st);
        }
        break;
      case Kind::Rnorm:
      case Kind::Cnorm:
      case Kind::Cmrnorm:
        if (wants(0)) {
          MatView dx = target(0, &st);
          const ConstMatView yv = cview(B.acts, s.outputs, n), d = cview(B.denoms, s.outputs, n);
          const MatView scratch = view(B.scratch, s.outputs, n);
          if (L.kind == Kind::Rnorm)
            rnorm_bprop(L.spatial, in(0), yv, d, dy, dx, scratch, st);
          else if (L.kind == Kind::Cnorm)
            cnorm_bprop(L.spatial, cview(B.mean_diffs, s.outputs, n), yv, d, dy, dx, scratch, st);
          else
            cmrnorm_bprop(L.crossmap, in(0), yv, d, dy, dx, scratch, st);
        }
        break;
      case Kind::Neuron:
        if (wants(0)) {
          MatView dx = target(0, &st);
          neuron_bprop(L.neuron, in(0), cview(B.acts, s.outputs, n), dy, dx, st);
        }
        break;
      case Kind::Softmax:
        if (wants(0)) {
          MatView dx = target(0, &st);
          if (L.fused_logreg) {
            const LayerPlan& cost_layer = plan_.layers[static_cast<size_t>(L.consumers[0])];
            const float* labels = S.layers[static_cast<size_t>(cost_layer.spec.inputs[0])].acts.data();
            logreg_softmax_bprop(labels, cview(B.acts, s.outputs, n), dx, cost_layer.spec.coeff, st);
          } else {
            softmax_bprop(cview(B.acts, s.outputs, n), dy, dx, st);
          }
        }
        break;
      case Kind::Dropout:
        if (wants(0)) {
          MatView dx = target(0, &st);
          dropout_bprop(dy, B.mask.data(), s.keep, pass_ == PassType::Train && s.enable, dx, st);
        }
        break;
      case Kind::Eltsum:
        for (size_t i = 0; i < s.inputs.size(); ++i)
          if (wants(i)) {
            MatView dx = target(i, &st);
            eltsum_bprop(dy, dx, s.coeffs.empty() ? 1.0f : s.coeffs[i], st);
          }
        break;
      case Kind::Eltmax:
        for (size_t i = 0; i < s.inputs.size(); ++i)
          if (wants(i)) {
            MatView dx = target(i, &st);
            eltmax_bprop(in(i), cview(B.acts, s.outputs, n), dy, dx, st);
          }
        break;
      case Kind::Concat: {
        int64_t offset = 0;
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          if (wants(i)) {
            MatView dx = target(i, &st);
            concat_bprop(dy, dx, offset, st);
          }
          offset += L.input_sizes[i];
        }
        break;
      }
      case Kind::Nailbed:
        if (wants(0)) {
          MatView dx = target(0, &st);
          nailbed_bprop(L.nailbed, dy, dx, st);
        }
        break;
      case Kind::Blur:
        if (wants(0)) {
          MatView dx = target(0, &st);
          blur_bprop(L.blur, dy, view(B.blur_tmp, s.outputs, n), dx, st);
        }
        break;
      case Kind::Href:
        if (wants(0)) {  // §13 item 8: overwrites, ignoring accumulation, as written
          MatView dx = target(0, &st);
          href_bprop(L.href, dy, dx);
        }
        break;
      case Kind::Logreg: {
        const LayerPlan& probs = plan_.layers[static_cast<size_t>(s.inputs[1])];
        if (!probs.fused_logreg && wants(1)) {
          MatView dp = target(1, &st);
          logreg_bprop(in(0).data, in(1), dp, s.coeff, st);
        }
        break;
      }
      case Kind::Sum2:
        if (wants(0)) {
          MatView dx = target(0, &st);
          sum2_bprop(in(0), dx, s.coeff, st);
        }
        break;
    }
  }
}

void CpuNet::update() {
  State& S = *state_;
  for (const UpdateRule& r : plan_.update_rules) {
    const MatrixPlan& m = plan_.matrices[static_cast<size_t>(r.matrix)];
    if (!plan_.updates(m)) continue;
    const LayerTimer timer(profile ? &layer_seconds : nullptr, plan_.layers[static_cast<size_t>(m.layer)].spec.name, 2);
    MatrixStore& ms = S.matrices[static_cast<size_t>(r.matrix)];
    if (r.increment) update_increment(ms.inc.data(), ms.grad.data(), m.size(), m.eps, m.mom);
    update_decay_and_step(ms.w.data(), ms.inc.data(), m.size(), m.eps, r.wc);
    if (r.filter_spread) constrain_filter_spread(ms.w.data(), m.rows, m.cols, m.norm_min, m.norm_max);
    for (int64_t k = 0; k < r.blocks; ++k)
      constrain_max_norm(ms.w.data() + k * r.block_stride, r.vectors, r.length, r.vector_stride, r.element_stride,
                         m.wball);
  }
}

// ---- buffers ---------------------------------------------------------------------------

float* CpuNet::host_data(BufferKind kind, int layer, int input) {
  const BufferInfo info = buffer_info(kind, layer, input);
  if (info.rows * info.cols == 0) return nullptr;
  State& S = *state_;
  LayerStore& B = S.layers.at(static_cast<size_t>(layer));
  using K = BufferKind;
  switch (kind) {
    case K::Acts: return B.acts.data();
    case K::ActsGrad: return B.grad.data();
    case K::Weights:
    case K::Biases: return S.matrices[static_cast<size_t>(info.matrix)].w.data();
    case K::WeightInc:
    case K::BiasInc: return S.matrices[static_cast<size_t>(info.matrix)].inc.data();
    case K::WeightGrad:
    case K::BiasGrad: return S.matrices[static_cast<size_t>(info.matrix)].grad.data();
    case K::Mask: return B.mask.data();
    case K::Noise: return B.noise.data();
  }
  return nullptr;
}

void CpuNet::download(BufferKind kind, int layer, int input, float* host) {
  const BufferInfo info = buffer_info(kind, layer, input);
  if (const float* data = host_data(kind, layer, input))
    std::memcpy(host, data, static_cast<size_t>(info.rows * info.cols) * sizeof(float));
}

void CpuNet::upload(BufferKind kind, int layer, int input, const float* host) {
  const BufferInfo info = buffer_info(kind, layer, input);
  if (float* data = host_data(kind, layer, input))
    std::memcpy(data, host, static_cast<size_t>(info.rows * info.cols) * sizeof(float));
}

}  // namespace alexnet::cpu
