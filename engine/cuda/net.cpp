// The CUDA net (alexnet/cuda/net.h): the buffers of a network in GPU memory and
// the order of a training step, as engine/cpu/net.cpp. What each layer is comes
// from the Plan (core/net_plan.h); what each layer computes is in its own file
// (engine/cuda/<op>.cu), found by name in the table of layer.h; the device
// plumbing (streams, allocations, copies between devices, timing) is in
// devices.h.
//
// Order and accumulation are the CPU net's (engine.md §1.4, §1.5, §4.2):
// * forward: layers in execution order, each on its device's stream, with its
//   inputs copied to that device first when they live elsewhere;
// * backward: layers in reverse order, each that needs a gradient and received
//   one; the first consumer to reach a producer overwrites its gradient, later
//   ones add (LayerRun::contribute);
// * update: the Plan's update rules, matrix by matrix.
// Draws (masks, noise, schedule noise) come from the base's generator, made on
// the host in the CPU net's order and uploaded. Every layer's work goes to its
// device's stream, asynchronously; forward waits for the costs.
#include "alexnet/cuda/net.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "alexnet/cuda/conv.h"
#include "alexnet/cuda/gemm.h"
#include "alexnet/cuda/launch.h"
#include "alexnet/cuda/treefc.h"
#include "alexnet/cuda/update.h"
#include "alexnet/cuda/util.h"
#include "devices.h"
#include "layer.h"

namespace alexnet::cuda {

bool load_cublas_library(const std::vector<std::string>& candidates, std::string* message) {
  return load_cublas(candidates, message);
}

namespace {

// Float budgets of the shared conv/local scratch of one device: the lowered
// patches (256 MiB) and the partial-sum blocks of a weight gradient (64 MiB).
constexpr int64_t kColsBudget = int64_t{1} << 26;
constexpr int64_t kBlocksBudget = int64_t{1} << 24;

}  // namespace

struct CudaNet::State {
  Devices devices;
  std::vector<LayerStore> layers;
  std::vector<MatrixStore> matrices;
  std::vector<const LayerOps*> ops;  // per layer, its type's implementation
  State(int num_gpus, const std::string& gemm) : devices(num_gpus, gemm) {}
};

CudaNet::CudaNet(std::vector<LayerSpec> specs, int64_t max_cases, uint64_t seed, int num_gpus,
                 const std::string& gemm)
    : Net(std::move(specs), max_cases, seed) {  // the Plan's checks run here, before any device
  const char* sync_env = std::getenv("ALEXNET_CUDA_SYNC");
  synchronous = sync_env != nullptr && std::string(sync_env) == "1";
  state_ = std::make_unique<State>(num_gpus, gemm);
  State& S = *state_;
  Devices& D = S.devices;
  const int ndev = D.count();

  S.layers.resize(plan_.layers.size());
  for (size_t li = 0; li < plan_.layers.size(); ++li) {
    const LayerPlan& L = plan_.layers[li];
    const LayerSpec& s = L.spec;
    const LayerOps* ops = find_layer(s.type);
    if (ops == nullptr) fail_layer(s, "the CUDA engine has no implementation of '" + s.type + "' layers");
    S.ops.push_back(ops);
    LayerStore& B = S.layers[li];
    B.dev = s.gpu < 0 ? 0 : s.gpu % ndev;
    const int64_t size = s.outputs * max_cases;
    const std::string of = " of layer '" + s.name + "'";
    B.acts = D.alloc(B.dev, size, "acts" + of);
    B.grad = D.alloc(B.dev, size, "acts_grad" + of);
    if (L.has_denoms) B.denoms = D.alloc(B.dev, size, "denoms" + of);
    if (L.has_scratch) B.scratch = D.alloc(B.dev, size, "norm scratch" + of);
    if (L.has_mean_diffs) B.mean_diffs = D.alloc(B.dev, size, "mean_diffs" + of);
    if (L.has_noise) {
      B.noise = D.alloc(B.dev, size, "nrelu noise" + of);
      B.draws.assign(static_cast<size_t>(size), 0.0f);
    }
    if (L.has_mask) {
      B.mask = D.alloc(B.dev, size, "dropout mask" + of);
      D.set(B.dev);
      fill(Launch{D[B.dev].stream, s.name.c_str()}, B.mask, size, 1.0f);  // the CPU net starts with ones
      B.draws.assign(static_cast<size_t>(size), 1.0f);
    }
    if (L.has_blur_tmp) B.blur_tmp = D.alloc(B.dev, size, "blur scratch" + of);
    if (L.draw_count > 0) {
      B.pass_draws = D.alloc(B.dev, L.draw_count, "draws" + of);
      B.draws.assign(static_cast<size_t>(L.draw_count), 0.0f);
    }
    if (L.work_bytes > 0) B.work = D.alloc_bytes(B.dev, L.work_bytes, "working space" + of);
    if (L.cost_terms > 0)
      B.cost_terms = static_cast<double*>(
          D.alloc_bytes(B.dev, L.cost_terms * static_cast<int64_t>(sizeof(double)), "cost terms" + of));
    if (ops->setup != nullptr) ops->setup(L, B, D);  // the layer's own device tables (conv's, blur's taps)
  }

  // Weight matrices and biases, on the device of the layer that owns them. A
  // matrix shared through weightSource must live on its users' device: the one
  // placement rule beyond the Plan's checks, since it depends on the device count.
  S.matrices.resize(plan_.matrices.size());
  for (size_t m = 0; m < plan_.matrices.size(); ++m) {
    const MatrixPlan& P = plan_.matrices[m];
    MatrixStore& M = S.matrices[m];
    M.dev = S.layers[static_cast<size_t>(P.layer)].dev;
    const std::string of = " of layer '" + plan_.layers[static_cast<size_t>(P.layer)].spec.name + "'";
    M.w = D.alloc(M.dev, P.size(), (P.input < 0 ? "biases" : "weights") + of);
    M.inc = D.alloc(M.dev, P.size(), (P.input < 0 ? "bias increments" : "weight increments") + of);
    if (P.has_grad) M.grad = D.alloc(M.dev, P.size(), (P.input < 0 ? "bias gradient" : "weight gradient") + of);
    if (P.super_eps > 0.0f) {  // §4.4's running averages (zero, as every buffer starts)
      M.gavg = D.alloc(M.dev, P.size(), "superEps gradient average" + of);
      M.g2avg = D.alloc(M.dev, P.size(), "superEps squared-gradient average" + of);
    }
  }
  for (size_t li = 0; li < plan_.layers.size(); ++li)
    for (int m : plan_.layers[li].weights) {
      const MatrixPlan& P = plan_.matrices[static_cast<size_t>(m)];
      if (S.matrices[static_cast<size_t>(m)].dev != S.layers[li].dev)
        throw std::invalid_argument("layer '" + plan_.layers[li].spec.name + "': shares weights with layer '" +
                                    plan_.layers[static_cast<size_t>(P.layer)].spec.name + "' on another device");
    }

  // Replicas for inputs on another device (and the labels of a fused cost).
  auto need_replica = [&](int producer, int dev, bool grad) {
    LayerStore& P = S.layers[static_cast<size_t>(producer)];
    const std::string& name = plan_.layers[static_cast<size_t>(producer)].spec.name;
    const int64_t size = plan_.layers[static_cast<size_t>(producer)].spec.outputs * max_cases;
    if (!P.acts_on.count(dev)) P.acts_on[dev] = D.alloc(dev, size, "replica of '" + name + "'");
    if (grad && !P.grad_on.count(dev)) P.grad_on[dev] = D.alloc(dev, size, "gradient replica of '" + name + "'");
  };
  for (size_t li = 0; li < plan_.layers.size(); ++li) {
    const LayerPlan& L = plan_.layers[li];
    const int dev = S.layers[li].dev;
    for (int in : L.spec.inputs)
      if (S.layers[static_cast<size_t>(in)].dev != dev)
        need_replica(in, dev, plan_.layers[static_cast<size_t>(in)].needs_grad);
    if (L.takes_fused_gradient()) {  // its cost's labels or targets
      const int labels = plan_.layers[static_cast<size_t>(L.consumers[0])].spec.inputs[0];
      if (S.layers[static_cast<size_t>(labels)].dev != dev) need_replica(labels, dev, false);
    }
  }

  // The shared conv/local scratch of each device, sized for the largest need.
  for (int d = 0; d < ndev; ++d) {
    int64_t cols = 0, blocks = 0, acc = 0;
    for (size_t li = 0; li < plan_.layers.size(); ++li) {
      const LayerPlan& L = plan_.layers[li];
      if (S.layers[li].dev != d) continue;
      for (const ConvParams& p : L.conv) {
        cols = std::max(cols, conv_cols_floats(p, max_cases, kColsBudget));
        const int64_t rf = p.rows_per_group() * p.filters;
        const int64_t block_modules = L.spec.partial_sum > 0 ? L.spec.partial_sum : p.modules();
        const int64_t nblocks = std::max<int64_t>(1, p.modules() / block_modules);
        const int64_t fit = std::max<int64_t>(1, kBlocksBudget / rf);
        blocks = std::max(blocks, rf * std::min(nblocks, fit));
        acc = std::max({acc, rf, p.channels * p.img_size * p.img_size * max_cases});
      }
    }
    ConvWorkspace& ws = D[d].ws;
    ws.cols = D.alloc(d, cols, "conv scratch (cols)");
    ws.cols_floats = cols;
    ws.blocks = D.alloc(d, blocks, "conv scratch (blocks)");
    ws.blocks_floats = blocks;
    ws.acc = D.alloc(d, acc, "conv scratch (acc)");
    ws.acc_floats = acc;
  }
  D.sync_all("building the CUDA net");
}

CudaNet::~CudaNet() = default;

std::map<std::string, std::string> CudaNet::info() const {
  return {{"device", "cuda"}, {"gemm", gemm_name()}, {"devices", std::to_string(devices())}};
}

int CudaNet::layer_device(int layer) const { return state_->layers.at(static_cast<size_t>(layer)).dev; }
int CudaNet::devices() const { return state_->devices.count(); }
std::string CudaNet::gemm_name() const { return state_->devices[0].gemm->name(); }
int64_t CudaNet::allocated_bytes() const { return state_->devices.allocated(); }
std::vector<int64_t> CudaNet::device_used_bytes() const { return state_->devices.used_bytes(); }
void CudaNet::synchronize() { state_->devices.sync_all("synchronize"); }

void CudaNet::set_data(int data_idx, const float* values, int64_t rows, int64_t cases) {
  State& S = *state_;
  for (int li : plan_.data_layers(data_idx, rows, cases)) {
    LayerStore& B = S.layers[static_cast<size_t>(li)];
    S.devices.copy_in(B.dev, B.acts, values, static_cast<size_t>(rows * cases) * sizeof(float),
                      "data matrix " + std::to_string(data_idx) + " (layer '" +
                          plan_.layers[static_cast<size_t>(li)].spec.name + "')");
  }
  cases_ = cases;
  forwarded_ = false;
}

void CudaNet::forward(PassType pass) {
  pass_ = pass;
  if (cases_ < 1) throw std::logic_error("forward before set_data");
  costs_.clear();
  ForwardDraws draws(rng_);
  run_layers(pass, nullptr, &draws);
  forwarded_ = true;
}

void CudaNet::forward_from(int layer) {
  const std::vector<char> only = layers_from(layer);
  // layers_from refused any layer that would draw; should one draw anyway, it draws
  // from a copy of the generator and is caught here, the net's generator untouched.
  std::mt19937_64 scratch = rng_;
  ForwardDraws draws(scratch);
  run_layers(pass_, &only, &draws);
  if (scratch != rng_) throw std::logic_error("forward_from: a layer drew new numbers; set inject_masks");
}

// forward's loop, over every layer or over `only`'s; the replicas of the layers
// it does not run stay valid (their outputs did not change).
void CudaNet::run_layers(PassType pass, const std::vector<char>* only, ForwardDraws* draws) {
  State& S = *state_;
  Devices& D = S.devices;
  const int64_t n = cases_;
  for (size_t li = 0; li < S.layers.size(); ++li)
    if (only == nullptr || (*only)[li])
      for (auto& fresh : S.layers[li].acts_fresh) fresh.second = false;

  // The acts of layer `p` on device dev: its own buffer, or its replica there,
  // refreshed once per forward (engine.md §6: outputs copied to consumers' devices).
  auto acts_at = [&](int p, int dev) -> const float* {
    LayerStore& P = S.layers[static_cast<size_t>(p)];
    if (P.dev == dev) return P.acts;
    float* replica = P.acts_on.at(dev);
    if (!P.acts_fresh[dev]) {
      const LayerSpec& ps = plan_.layers[static_cast<size_t>(p)].spec;
      D.copy_between(P.acts, P.dev, replica, dev, ps.outputs * n,
                     "of '" + ps.name + "' to device " + std::to_string(dev));
      P.acts_fresh[dev] = true;
    }
    return replica;
  };

  for (size_t li = 0; li < plan_.layers.size(); ++li) {
    if (only != nullptr && !(*only)[li]) continue;
    const LayerPlan& L = plan_.layers[li];
    const LayerStore& B = S.layers[li];
    std::vector<ConstMatView> ins;
    bool remote = false;
    for (int in : L.spec.inputs) remote = remote || S.layers[static_cast<size_t>(in)].dev != B.dev;
    auto gather = [&] {
      for (size_t i = 0; i < L.spec.inputs.size(); ++i)
        ins.emplace_back(acts_at(L.spec.inputs[i], B.dev), L.input_sizes[i], n);
    };
    if (remote)  // timed: copies between devices
      D.run(B.dev, L.spec.name, std::string(L.type->name) + ":copy_inputs", 0, profile, synchronous, gather);
    else
      gather();
    D.set(B.dev);
    const LayerRun run(plan_, D, S.layers, S.matrices, static_cast<int>(li), n, pass, inject_masks, draws, costs_, 0,
                       profile, synchronous, std::move(ins));
    S.ops[li]->forward(run);
  }
  D.sync_all("forward");
  if (profile) D.collect(layer_seconds, kernel_seconds);
}

void CudaNet::backward() {
  State& S = *state_;
  Devices& D = S.devices;
  const int64_t n = cases_;
  if (n < 1) throw std::logic_error("backward before forward");
  for (LayerStore& B : S.layers) B.grad_set = false;
  plan_.begin_backward();
  for (size_t li = plan_.layers.size(); li-- > 0;) {
    const LayerPlan& L = plan_.layers[li];
    const LayerStore& B = S.layers[li];
    if (S.ops[li]->backward == nullptr || !L.needs_grad) continue;
    if (!L.type->cost && !B.grad_set && !L.takes_fused_gradient()) continue;  // nothing reached it
    // Input i's acts on this layer's device (the replicas were filled in forward).
    std::vector<ConstMatView> ins;
    for (size_t i = 0; i < L.spec.inputs.size(); ++i) {
      const LayerStore& P = S.layers[static_cast<size_t>(L.spec.inputs[i])];
      ins.emplace_back(P.dev == B.dev ? P.acts : P.acts_on.at(B.dev), L.input_sizes[i], n);
    }
    D.set(B.dev);
    const LayerRun run(plan_, D, S.layers, S.matrices, static_cast<int>(li), n, pass_, inject_masks, nullptr, costs_,
                       1, profile, synchronous, std::move(ins));
    S.ops[li]->backward(run);
  }
  if (profile) D.collect(layer_seconds, kernel_seconds);
}

void CudaNet::update() {
  State& S = *state_;
  Devices& D = S.devices;
  if (!plan_.update_due()) return;  // §4.2 wupdate_freq: still accumulating
  for (const UpdateRule& r : plan_.update_rules) {
    const MatrixPlan& m = plan_.matrices[static_cast<size_t>(r.matrix)];
    if (!plan_.updates(m)) continue;
    const MatrixStore& ms = S.matrices[static_cast<size_t>(r.matrix)];
    const LayerPlan& L = plan_.layers[static_cast<size_t>(m.layer)];
    const Launch lc{D[ms.dev].stream, L.spec.name.c_str()};
    const char* what = m.input < 0 ? ":update_bias" : ":update";
    D.run(ms.dev, L.spec.name, std::string(L.type->name) + what, 2, profile, synchronous, [&] {
      if (r.tree) {  // §3.3: the node-wise rule replaces increment, decay and step
        treefc_update(lc, S.layers[static_cast<size_t>(m.layer)].tree, ms.w, ms.inc, ms.grad, m.rows, m.eps, m.mom,
                      m.wc);
        return;
      }
      if (m.super_eps > 0.0f)  // §4.4
        update_super_increment(lc, ms.inc, ms.grad, ms.gavg, ms.g2avg, m.size(), m.eps, m.mom, m.super_eps);
      else if (m.has_grad)
        update_increment(lc, ms.inc, ms.grad, m.size(), m.eps, m.mom);
      update_decay_and_step(lc, ms.w, ms.inc, m.size(), m.eps, m.wc);
      if (r.filter_spread) constrain_filter_spread(lc, ms.w, m.rows, m.cols, m.norm_min, m.norm_max);
      for (int64_t k = 0; k < r.blocks; ++k)
        constrain_max_norm(lc, ms.w + k * r.block_stride, r.vectors, r.length, r.vector_stride, r.element_stride,
                           m.wball);
    });
  }
  if (profile) D.collect(layer_seconds, kernel_seconds);
}

// ---- buffers ------------------------------------------------------------------

namespace {

// Where buffer `kind` of a layer lives: its device pointer and device.
std::pair<float*, int> locate(CudaNet& net, std::vector<LayerStore>& layers, std::vector<MatrixStore>& matrices,
                              BufferKind kind, int layer, int input) {
  const BufferInfo info = net.buffer_info(kind, layer, input);
  if (info.rows * info.cols == 0) return {nullptr, 0};
  LayerStore& B = layers.at(static_cast<size_t>(layer));
  using K = BufferKind;
  switch (kind) {
    case K::Acts: return {B.acts, B.dev};
    case K::ActsGrad: return {B.grad, B.dev};
    case K::Mask: return {B.mask, B.dev};
    case K::Noise: return {B.noise, B.dev};
    case K::Draws: return {B.pass_draws, B.dev};
    default: break;
  }
  MatrixStore& M = matrices[static_cast<size_t>(info.matrix)];
  switch (kind) {
    case K::Weights:
    case K::Biases: return {M.w, M.dev};
    case K::WeightInc:
    case K::BiasInc: return {M.inc, M.dev};
    case K::WeightGavg: return {M.gavg, M.dev};
    case K::WeightG2avg: return {M.g2avg, M.dev};
    default: return {M.grad, M.dev};
  }
}

}  // namespace

void CudaNet::download(BufferKind kind, int layer, int input, float* host) {
  const BufferInfo info = buffer_info(kind, layer, input);
  const auto [data, dev] = locate(*this, state_->layers, state_->matrices, kind, layer, input);
  if (data == nullptr) return;
  state_->devices.copy_out(dev, host, data, static_cast<size_t>(info.rows * info.cols) * sizeof(float),
                           std::string("download of ") + buffer_kind_name(kind) + " of layer '" + spec(layer).name +
                               "'");
}

void CudaNet::upload(BufferKind kind, int layer, int input, const float* host) {
  const BufferInfo info = buffer_info(kind, layer, input);
  const auto [data, dev] = locate(*this, state_->layers, state_->matrices, kind, layer, input);
  if (data == nullptr) return;
  state_->devices.copy_in(dev, data, host, static_cast<size_t>(info.rows * info.cols) * sizeof(float),
                          std::string("upload of ") + buffer_kind_name(kind) + " of layer '" + spec(layer).name + "'");
}

}  // namespace alexnet::cuda
