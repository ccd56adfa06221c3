// The CPU net (cpu/net.h): the buffers of a network and the order of a
// training step. What each layer is comes from the Plan (net_plan.h); what
// each layer computes is in its own file (engine/cpu/<op>.cpp), found by name
// in the table of cpu/layer.h.
//
// Order (engine.md):
// * forward (§1.4): layers in execution order; forward_from, the same for the
//   layers below one layer only;
// * backward (§1.4, §1.5): layers in reverse execution order, each one that
//   needs a gradient and received one (a cost layer always starts one; a
//   softmax under a cost.logreg takes the fused gradient, §3.12); the first
//   consumer to reach a producer overwrites its gradient buffer, later ones add
//   (LayerRun::target);
// * update (§4.2): the Plan's update rules, matrix by matrix.
// Every buffer is allocated in the constructor for max_cases cases; a step
// allocates nothing (the conv scratch grows once, on the first minibatch).
#include "alexnet/cpu/net.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "alexnet/cpu/blas.h"
#include "alexnet/cpu/layer.h"
#include "alexnet/cpu/threads.h"
#include "alexnet/cpu/treefc.h"
#include "alexnet/cpu/update.h"

namespace alexnet::cpu {

namespace {

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

}  // namespace

struct CpuNet::State {
  std::vector<LayerStore> layers;
  std::vector<MatrixStore> matrices;
  std::vector<const LayerOps*> ops;  // per layer, its type's implementation
};

CpuNet::CpuNet(std::vector<LayerSpec> specs, int64_t max_cases, uint64_t seed)
    : Net(std::move(specs), max_cases, seed), state_(new State) {
  start_thread_measure();
  State& S = *state_;
  S.layers.resize(plan_.layers.size());
  for (size_t li = 0; li < plan_.layers.size(); ++li) {
    const LayerPlan& L = plan_.layers[li];
    const LayerOps* ops = find_layer(L.spec.type);
    if (ops == nullptr)
      fail_layer(L.spec, "the CPU engine has no implementation of '" + L.spec.type + "' layers");
    S.ops.push_back(ops);
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
    if (L.draw_count > 0) B.draws.assign(static_cast<size_t>(L.draw_count), 0.0f);
    if (L.work_bytes > 0) B.work.assign(static_cast<size_t>((L.work_bytes + 7) / 8), 0.0);
    if (L.tree.leaves > 0) B.tree_weights.assign(static_cast<size_t>(L.tree.leaves * L.input_sizes[0]), 0.0f);
  }
  S.matrices.resize(plan_.matrices.size());
  for (size_t m = 0; m < plan_.matrices.size(); ++m) {
    const MatrixPlan& P = plan_.matrices[m];
    MatrixStore& M = S.matrices[m];
    M.w.assign(static_cast<size_t>(P.size()), 0.0f);
    M.inc.assign(static_cast<size_t>(P.size()), 0.0f);
    if (P.has_grad) M.grad.assign(static_cast<size_t>(P.size()), 0.0f);
    if (P.super_eps > 0.0f) {
      M.gavg.assign(static_cast<size_t>(P.size()), 0.0f);
      M.g2avg.assign(static_cast<size_t>(P.size()), 0.0f);
    }
  }
}

CpuNet::~CpuNet() = default;

std::map<std::string, std::string> CpuNet::info() const {
  std::map<std::string, std::string> out = thread_info();
  out["device"] = "cpu";
  out["blas"] = blas_name();
  return out;
}

void CpuNet::set_data(int data_idx, const float* values, int64_t rows, int64_t cases) {
  for (int li : plan_.data_layers(data_idx, rows, cases))
    std::copy(values, values + rows * cases, state_->layers[static_cast<size_t>(li)].acts.begin());
  cases_ = cases;
  forwarded_ = false;
}

void CpuNet::forward(PassType pass) {
  State& S = *state_;
  pass_ = pass;
  if (cases_ < 1) throw std::logic_error("forward before set_data");
  threads_for_next_step();  // the cores other processes leave free (cpu/threads.h)
  costs_.clear();
  ForwardDraws draws(rng_);
  for (size_t li = 0; li < plan_.layers.size(); ++li) {
    const LayerTimer timer(profile ? &layer_seconds : nullptr, plan_.layers[li].spec.name, 0);
    const LayerRun run(plan_, S.layers, S.matrices, static_cast<int>(li), cases_, pass, inject_masks, &draws, costs_);
    S.ops[li]->forward(run);
  }
  forwarded_ = true;
}

void CpuNet::forward_from(int layer) {
  State& S = *state_;
  const std::vector<char> run_layer = layers_from(layer);
  std::mt19937_64 scratch = rng_;
  ForwardDraws draws(scratch);
  for (size_t li = 0; li < plan_.layers.size(); ++li) {
    if (!run_layer[li]) continue;
    const LayerTimer timer(profile ? &layer_seconds : nullptr, plan_.layers[li].spec.name, 0);
    // layers_from refused any layer that would draw; should one draw anyway, it draws
    // from a copy of the generator and is caught below, the net's generator untouched.
    const LayerRun run(plan_, S.layers, S.matrices, static_cast<int>(li), cases_, pass_, inject_masks, &draws, costs_);
    S.ops[li]->forward(run);
  }
  if (scratch != rng_) throw std::logic_error("forward_from: a layer drew new numbers; set inject_masks");
}

void CpuNet::backward() {
  State& S = *state_;
  if (cases_ < 1) throw std::logic_error("backward before forward");
  for (LayerStore& B : S.layers) B.grad_set = false;
  plan_.begin_backward();
  for (size_t li = plan_.layers.size(); li-- > 0;) {
    const LayerPlan& L = plan_.layers[li];
    if (S.ops[li]->backward == nullptr || !L.needs_grad) continue;
    const LayerTimer timer(profile ? &layer_seconds : nullptr, L.spec.name, 1);
    if (!L.type->cost && !S.layers[li].grad_set && !L.takes_fused_gradient()) continue;  // nothing reached it
    const LayerRun run(plan_, S.layers, S.matrices, static_cast<int>(li), cases_, pass_, inject_masks, nullptr,
                       costs_);
    S.ops[li]->backward(run);
  }
}

void CpuNet::update() {
  State& S = *state_;
  if (!plan_.update_due()) return;  // §4.2 wupdate_freq: still accumulating
  for (const UpdateRule& r : plan_.update_rules) {
    const MatrixPlan& m = plan_.matrices[static_cast<size_t>(r.matrix)];
    if (!plan_.updates(m)) continue;
    const LayerTimer timer(profile ? &layer_seconds : nullptr, plan_.layers[static_cast<size_t>(m.layer)].spec.name, 2);
    MatrixStore& ms = S.matrices[static_cast<size_t>(r.matrix)];
    if (r.tree) {  // §3.3: the node-wise rule replaces increment, decay and step
      treefc_update(plan_.layers[static_cast<size_t>(m.layer)].tree, ms.w.data(), ms.inc.data(), ms.grad.data(),
                    m.rows, m.eps, m.mom, m.wc);
      continue;
    }
    if (m.super_eps > 0.0f)  // §4.4
      update_super_increment(ms.inc.data(), ms.grad.data(), ms.gavg.data(), ms.g2avg.data(), m.size(), m.eps, m.mom,
                             m.super_eps);
    else if (m.has_grad)
      update_increment(ms.inc.data(), ms.grad.data(), m.size(), m.eps, m.mom);
    update_decay_and_step(ms.w.data(), ms.inc.data(), m.size(), m.eps, m.wc);
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
    case K::Draws: return B.draws.data();
    case K::WeightGavg: return S.matrices[static_cast<size_t>(info.matrix)].gavg.data();
    case K::WeightG2avg: return S.matrices[static_cast<size_t>(info.matrix)].g2avg.data();
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
