// The CUDA net (alexnet/cuda/net.h): the wiring of engine/cpu/net.cpp, layer for
// layer, with the kernels of engine/cuda and every buffer in GPU memory. What a
// layer is and how it learns comes from the Plan (core/net_plan.h); the device
// plumbing (streams, allocations, copies between devices, timing) is in
// devices.h.
//
// Order and accumulation are the CPU net's (engine.md §1.4, §1.5, §4.2):
// * forward: inputs in listed order, the first with scale_targets 0 and the
//   bias right after it, later inputs added;
// * backward: layers in reverse order; the first consumer to reach a producer
//   overwrites its gradient, later ones add; softmax with a single cost.logreg
//   consumer takes the fused gradient; a matrix whose base rate is 0 gets none;
// * update: the Plan's update rules, matrix by matrix.
// Draws (masks, noise, schedule noise) come from the base's generator, made on
// the host in the CPU net's order and uploaded. Every layer's work goes to its
// device's stream, asynchronously; forward waits for the costs.
#include "alexnet/cuda/net.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "alexnet/cuda/blur.h"
#include "alexnet/cuda/concat.h"
#include "alexnet/cuda/conv.h"
#include "alexnet/cuda/cost.h"
#include "alexnet/cuda/dropout.h"
#include "alexnet/cuda/eltwise.h"
#include "alexnet/cuda/fc.h"
#include "alexnet/cuda/gemm.h"
#include "alexnet/cuda/href.h"
#include "alexnet/cuda/launch.h"
#include "alexnet/cuda/local.h"
#include "alexnet/cuda/nailbed.h"
#include "alexnet/cuda/neuron.h"
#include "alexnet/cuda/norm.h"
#include "alexnet/cuda/pool.h"
#include "alexnet/cuda/softmax.h"
#include "alexnet/cuda/update.h"
#include "alexnet/cuda/util.h"
#include "devices.h"

namespace alexnet::cuda {

bool load_cublas_library(const std::vector<std::string>& candidates, std::string* message) {
  return load_cublas(candidates, message);
}

namespace {

using Kind = LayerKind;

// Float budgets of the shared conv/local scratch of one device: the lowered
// patches (256 MiB) and the partial-sum blocks of a weight gradient (64 MiB).
constexpr int64_t kColsBudget = int64_t{1} << 26;
constexpr int64_t kBlocksBudget = int64_t{1} << 24;

// The storage of one weight matrix or bias (Plan::matrices has its parameters),
// on the device of the layer that owns it.
struct MatrixStore {
  int dev = 0;
  float* w = nullptr;
  float* inc = nullptr;
  float* grad = nullptr;  // conv weights and biases only
};

// The buffers of one layer on its device (Plan::layers has the rest).
struct LayerStore {
  int dev = 0;
  float* acts = nullptr;  // (D, max_cases); null when D == 0 (cost layers)
  float* grad = nullptr;
  bool grad_set = false;
  float* denoms = nullptr;
  float* scratch = nullptr;
  float* mean_diffs = nullptr;
  float* mask = nullptr;   // hs: (D, max_cases)
  float* noise = nullptr;  // nrelu: (D, max_cases)
  float* blur_tmp = nullptr;
  std::vector<float> draws;           // host staging of mask/noise draws
  std::vector<ConvParams> conv;       // the Plan's, with conns in device memory
  std::vector<const int64_t*> feeds;  // per input: device CSR channel -> (g, c') table
  BlurParams blur;                    // the Plan's, with the taps in device memory
  // Replicas of acts / grad on other devices (engine.md §6), by device.
  std::map<int, float*> acts_on, grad_on;
  std::map<int, bool> acts_fresh;  // replica refreshed in this forward
  // Device scratch of the cost kernels.
  float* cost_log_p = nullptr;     // logreg: (max_cases)
  double* cost_credits = nullptr;  // logreg: (2·max_cases)
  double* cost_rows = nullptr;     // sum2: (D_in)
};

}  // namespace

struct CudaNet::State {
  Devices devices;
  std::vector<LayerStore> layers;
  std::vector<MatrixStore> matrices;
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

    for (size_t i = 0; i < L.conv.size(); ++i) {  // conv, local: the tables kernels index on the device
      ConvParams p = L.conv[i];
      std::vector<int64_t> feeds, cursor;
      build_conv_feeds(p, feeds, cursor);
      B.feeds.push_back(D.upload(B.dev, feeds, "conv feeds" + of));
      if (!s.conv[i].conns.empty()) p.conns = D.upload(B.dev, s.conv[i].conns, "connection table" + of);
      B.conv.push_back(p);
    }
    if (L.kind == Kind::Blur) {
      B.blur = L.blur;
      B.blur.filter = D.upload(B.dev, s.filter, "blur taps" + of);
    }
    if (L.kind == Kind::Logreg) {
      B.cost_log_p = D.alloc(B.dev, max_cases, "logreg cost terms" + of);
      B.cost_credits = static_cast<double*>(
          D.alloc_bytes(B.dev, 2 * max_cases * static_cast<int64_t>(sizeof(double)), "logreg credits" + of));
    }
    if (L.kind == Kind::Sum2)
      B.cost_rows = static_cast<double*>(D.alloc_bytes(
          B.dev, std::max<int64_t>(1, L.input_sizes[0]) * static_cast<int64_t>(sizeof(double)), "sum2 terms" + of));
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
  }
  for (size_t li = 0; li < plan_.layers.size(); ++li)
    for (int m : plan_.layers[li].weights) {
      const MatrixPlan& P = plan_.matrices[static_cast<size_t>(m)];
      if (S.matrices[static_cast<size_t>(m)].dev != S.layers[li].dev)
        throw std::invalid_argument("layer '" + plan_.layers[li].spec.name + "': shares weights with layer '" +
                                    plan_.layers[static_cast<size_t>(P.layer)].spec.name + "' on another device");
    }

  // Replicas for inputs on another device (and the labels of a fused softmax).
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
    if (L.fused_logreg) {
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
}

void CudaNet::forward(PassType pass) {
  State& S = *state_;
  Devices& D = S.devices;
  pass_ = pass;
  const int64_t n = cases_;
  if (n < 1) throw std::logic_error("forward before set_data");
  costs_.clear();
  ForwardDraws draws(rng_);
  for (LayerStore& B : S.layers)
    for (auto& fresh : B.acts_fresh) fresh.second = false;

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
    const LayerPlan& L = plan_.layers[li];
    LayerStore& B = S.layers[li];
    const LayerSpec& s = L.spec;
    const Launch lc{D[B.dev].stream, s.name.c_str()};
    const Gemm& gemm = *D[B.dev].gemm;
    MatView y{B.acts, s.outputs, n};
    auto op = [&](const char* name, auto&& f) {
      D.run(B.dev, s.name, std::string(L.type->name) + ":" + name, 0, profile, synchronous, f);
    };
    std::vector<ConstMatView> ins;
    bool remote = false;
    for (int in : s.inputs) remote = remote || S.layers[static_cast<size_t>(in)].dev != B.dev;
    auto gather = [&] {
      for (size_t i = 0; i < s.inputs.size(); ++i) ins.emplace_back(acts_at(s.inputs[i], B.dev), L.input_sizes[i], n);
    };
    if (remote)
      op("copy_inputs", gather);  // timed: copies between devices
    else
      gather();
    D.set(B.dev);
    switch (L.kind) {
      case Kind::Data:
        break;
      case Kind::Conv:
      case Kind::Local:
      case Kind::Fc:
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          const MatrixPlan& w = plan_.matrices[static_cast<size_t>(L.weights[i])];
          const float* wd = S.matrices[static_cast<size_t>(L.weights[i])].w;
          const float st = i == 0 ? 0.0f : 1.0f;
          op("fprop", [&] {
            if (L.kind == Kind::Fc) {  // the release's (Din, Dout) Fortran matrix is (Dout, Din) row-major here
              fc_fprop(lc, gemm, ins[i], ConstMatView(wd, w.cols, w.rows), y, st);
            } else {
              ConvWorkspace ws = D[B.dev].ws;
              ws.feeds = B.feeds[i];
              if (L.kind == Kind::Conv)
                conv_fprop(lc, gemm, B.conv[i], ins[i], ConstMatView(wd, w.rows, w.cols), y, st, ws);
              else
                local_fprop(lc, gemm, B.conv[i], ins[i], ConstMatView(wd, w.rows, w.cols), y, st, ws);
            }
          });
          if (i == 0) {  // §1.4: the bias right after the first input
            const MatrixPlan& b = plan_.matrices[static_cast<size_t>(L.bias)];
            const float* bd = S.matrices[static_cast<size_t>(L.bias)].w;
            op("bias", [&] {
              if (L.kind == Kind::Fc)
                fc_add_bias(lc, bd, y);
              else
                conv_add_bias(lc, ConstMatView(bd, b.rows, b.cols), y, L.kind == Kind::Conv && s.shared_biases);
            });
          }
        }
        break;
      case Kind::Pool:
        op("fprop", [&] { pool_fprop(lc, L.pool, ins[0], y, 0.0f); });
        break;
      case Kind::Rnorm:
        op("fprop", [&] { rnorm_fprop(lc, L.spatial, ins[0], y, MatView{B.denoms, s.outputs, n}); });
        break;
      case Kind::Cnorm:
        op("fprop", [&] {
          cnorm_fprop(lc, L.spatial, ins[0], y, MatView{B.denoms, s.outputs, n}, MatView{B.mean_diffs, s.outputs, n});
        });
        break;
      case Kind::Cmrnorm:
        op("fprop", [&] { cmrnorm_fprop(lc, L.crossmap, ins[0], y, MatView{B.denoms, s.outputs, n}); });
        break;
      case Kind::Neuron:
        if (L.has_noise && !inject_masks) {  // nrelu: one N(0,1) draw per element, every pass (§3.11)
          draws.normal(B.draws.data(), s.outputs * n);
          check(cudaMemcpyAsync(B.noise, B.draws.data(), static_cast<size_t>(s.outputs * n) * sizeof(float),
                                cudaMemcpyHostToDevice, lc.stream),
                "cudaMemcpyAsync of nrelu noise (layer '" + s.name + "')");
        }
        op("fprop", [&] { neuron_fprop(lc, L.neuron, ins[0], B.noise, y); });
        break;
      case Kind::Softmax:
        op("fprop", [&] { softmax_fprop(lc, ins[0], y); });
        break;
      case Kind::Dropout: {
        const bool train = pass == PassType::Train && s.enable;
        if (train && !inject_masks) {  // §3.16: keep with probability keep, U in (0, 1]
          draws.dropout_mask(B.draws.data(), s.outputs * n, s.keep);
          check(cudaMemcpyAsync(B.mask, B.draws.data(), static_cast<size_t>(s.outputs * n) * sizeof(float),
                                cudaMemcpyHostToDevice, lc.stream),
                "cudaMemcpyAsync of the dropout mask (layer '" + s.name + "')");
        }
        op("fprop", [&] { dropout_fprop(lc, ins[0], B.mask, s.keep, train, y); });
        break;
      }
      case Kind::Eltsum:
        op("fprop", [&] {
          for (size_t i = 0; i < s.inputs.size(); ++i)
            eltsum_fprop(lc, ins[i], y, s.coeffs.empty() ? 1.0f : s.coeffs[i], i == 0 ? 0.0f : 1.0f);
        });
        break;
      case Kind::Eltmax:
        op("fprop", [&] { eltmax_fprop(lc, ins.data(), static_cast<int64_t>(ins.size()), y); });
        break;
      case Kind::Concat:
        op("fprop", [&] {
          int64_t offset = 0;
          for (size_t i = 0; i < s.inputs.size(); ++i) {
            concat_fprop(lc, ins[i], y, offset);
            offset += ins[i].rows;
          }
        });
        break;
      case Kind::Nailbed:
        op("fprop", [&] { nailbed_fprop(lc, L.nailbed, ins[0], y, 0.0f); });
        break;
      case Kind::Blur:
        op("fprop", [&] { blur_fprop(lc, B.blur, ins[0], MatView{B.blur_tmp, s.outputs, n}, y, 0.0f); });
        break;
      case Kind::Href:
        op("fprop", [&] { href_fprop(lc, L.href, ins[0], y, 0.0f); });
        break;
      case Kind::Logreg:
        op("cost", [&] {
          const LogregCosts c = logreg_cost(lc, ins[0].data, ins[1], s.topk, B.cost_log_p, B.cost_credits);
          costs_[s.name] = {c.neg_log_prob, c.top1_errors, c.topk_errors};
        });
        break;
      case Kind::Sum2:
        op("cost", [&] { costs_[s.name] = {sum2_cost(lc, ins[0], B.cost_rows)}; });
        break;
    }
  }
  D.sync_all("forward");
  if (profile) D.collect(layer_seconds, kernel_seconds);
}

void CudaNet::backward() {
  State& S = *state_;
  Devices& D = S.devices;
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
    if (!L.type->cost && !B.grad_set && !(L.kind == Kind::Softmax && L.fused_logreg)) continue;  // nothing reached it
    const Launch lc{D[B.dev].stream, s.name.c_str()};
    const Gemm& gemm = *D[B.dev].gemm;
    const ConstMatView dy(B.grad, s.outputs, n);
    // Input i's acts on this layer's device (the replicas were filled in forward).
    auto in = [&](size_t i) {
      const LayerStore& P = S.layers[static_cast<size_t>(s.inputs[i])];
      return ConstMatView(P.dev == B.dev ? P.acts : P.acts_on.at(B.dev), L.input_sizes[i], n);
    };
    auto wants = [&](size_t i) { return plan_.layers[static_cast<size_t>(s.inputs[i])].needs_grad; };
    auto op = [&](const char* name, auto&& f) {
      D.run(B.dev, s.name, std::string(L.type->name) + ":" + name, 1, profile, synchronous, f);
    };
    // The gradient of input i: the first contribution overwrites (st 0), later
    // ones add (st 1). A producer on another device: its gradient is copied
    // here, the kernel runs on the copy, and the result goes back (engine.md §6).
    auto contribute = [&](size_t i, const char* name, auto&& f) {
      LayerStore& P = S.layers[static_cast<size_t>(s.inputs[i])];
      const std::string& pname = plan_.layers[static_cast<size_t>(s.inputs[i])].spec.name;
      const int64_t size = L.input_sizes[i] * n;
      const float st = P.grad_set ? 1.0f : 0.0f;
      P.grad_set = true;
      op(name, [&] {
        float* target = P.grad;
        if (P.dev != B.dev) {
          target = P.grad_on.at(B.dev);
          if (st != 0.0f) D.copy_between(P.grad, P.dev, target, B.dev, size, "gradient of '" + pname + "'");
          D.set(B.dev);
        }
        f(MatView{target, L.input_sizes[i], n}, st);
        if (P.dev != B.dev) D.copy_between(target, B.dev, P.grad, P.dev, size, "gradient of '" + pname + "'");
      });
    };
    D.set(B.dev);
    switch (L.kind) {
      case Kind::Data:
        break;
      case Kind::Conv:
      case Kind::Local:
      case Kind::Fc: {
        ConvWorkspace ws = D[B.dev].ws;
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          MatrixPlan& w = plan_.matrices[static_cast<size_t>(L.weights[i])];
          const MatrixStore& wd = S.matrices[static_cast<size_t>(L.weights[i])];
          ws.feeds = B.conv.empty() ? nullptr : B.feeds[i];
          if (wants(i))
            contribute(i, "bprop_acts", [&](MatView dx, float st) {
              if (L.kind == Kind::Fc)
                fc_bprop_acts(lc, gemm, dy, ConstMatView(wd.w, w.cols, w.rows), dx, st);
              else if (L.kind == Kind::Conv)
                conv_bprop_acts(lc, gemm, B.conv[i], dy, ConstMatView(wd.w, w.rows, w.cols), dx, st, ws);
              else
                local_bprop_acts(lc, gemm, B.conv[i], dy, ConstMatView(wd.w, w.rows, w.cols), dx, st, ws);
            });
          if (w.eps_base <= 0.0f) continue;  // §4.2: a frozen matrix gets no gradient
          const bool first = !w.contributed;
          w.contributed = true;
          op("bprop_weights", [&] {
            if (L.kind == Kind::Fc)  // inc <- mom·inc + (eps/N)·dY·Xᵀ; mom 1 for further uses of a shared matrix
              fc_bprop_weights(lc, gemm, in(i), dy, MatView{wd.inc, w.cols, w.rows}, w.eps * inv_n,
                               first ? w.mom : 1.0f);
            else if (L.kind == Kind::Conv)
              conv_bprop_weights(lc, gemm, B.conv[i], in(i), dy, MatView{wd.grad, w.rows, w.cols}, s.partial_sum,
                                 inv_n, first ? 0.0f : 1.0f, ws);
            else
              local_bprop_weights(lc, gemm, B.conv[i], in(i), dy, MatView{wd.inc, w.rows, w.cols}, w.eps * inv_n,
                                  first ? w.mom : 1.0f, ws);
          });
        }
        const MatrixPlan& b = plan_.matrices[static_cast<size_t>(L.bias)];
        float* bgrad = S.matrices[static_cast<size_t>(L.bias)].grad;
        if (b.eps_base > 0.0f) {
          op("bprop_bias", [&] {
            if (L.kind == Kind::Fc)
              fc_bprop_bias(lc, dy, bgrad, inv_n, 0.0f);
            else
              conv_bprop_bias(lc, dy, MatView{bgrad, b.rows, b.cols}, L.kind == Kind::Conv && s.shared_biases, inv_n,
                              0.0f);
          });
        }
        break;
      }
      case Kind::Pool:
        if (wants(0))
          contribute(0, "bprop", [&](MatView dx, float st) {
            pool_bprop(lc, L.pool, in(0), ConstMatView(B.acts, s.outputs, n), dy, dx, st);
          });
        break;
      case Kind::Rnorm:
      case Kind::Cnorm:
      case Kind::Cmrnorm:
        if (wants(0))
          contribute(0, "bprop", [&](MatView dx, float st) {
            const ConstMatView yv(B.acts, s.outputs, n), d(B.denoms, s.outputs, n);
            const MatView scratch{B.scratch, s.outputs, n};
            if (L.kind == Kind::Rnorm)
              rnorm_bprop(lc, L.spatial, in(0), yv, d, dy, dx, scratch, st);
            else if (L.kind == Kind::Cnorm)
              cnorm_bprop(lc, L.spatial, ConstMatView(B.mean_diffs, s.outputs, n), yv, d, dy, dx, scratch, st);
            else
              cmrnorm_bprop(lc, L.crossmap, in(0), yv, d, dy, dx, scratch, st);
          });
        break;
      case Kind::Neuron:
        if (wants(0))
          contribute(0, "bprop", [&](MatView dx, float st) {
            neuron_bprop(lc, L.neuron, in(0), ConstMatView(B.acts, s.outputs, n), dy, dx, st);
          });
        break;
      case Kind::Softmax:
        if (wants(0)) {
          if (L.fused_logreg) {
            const LayerPlan& cost_layer = plan_.layers[static_cast<size_t>(L.consumers[0])];
            const int labels_layer = cost_layer.spec.inputs[0];
            LayerStore& labels = S.layers[static_cast<size_t>(labels_layer)];
            const float* label_data = labels.acts;
            if (labels.dev != B.dev) {
              float* replica = labels.acts_on.at(B.dev);
              D.copy_between(labels.acts, labels.dev, replica, B.dev, n, "labels of '" + cost_layer.spec.name + "'");
              D.set(B.dev);
              label_data = replica;
            }
            contribute(0, "bprop_logreg", [&](MatView dx, float st) {
              logreg_softmax_bprop(lc, label_data, ConstMatView(B.acts, s.outputs, n), dx, cost_layer.spec.coeff, st);
            });
          } else {
            contribute(0, "bprop", [&](MatView dx, float st) {
              softmax_bprop(lc, ConstMatView(B.acts, s.outputs, n), dy, dx, st);
            });
          }
        }
        break;
      case Kind::Dropout:
        if (wants(0))
          contribute(0, "bprop", [&](MatView dx, float st) {
            dropout_bprop(lc, dy, B.mask, s.keep, pass_ == PassType::Train && s.enable, dx, st);
          });
        break;
      case Kind::Eltsum:
        for (size_t i = 0; i < s.inputs.size(); ++i)
          if (wants(i))
            contribute(i, "bprop", [&](MatView dx, float st) {
              eltsum_bprop(lc, dy, dx, s.coeffs.empty() ? 1.0f : s.coeffs[i], st);
            });
        break;
      case Kind::Eltmax:
        for (size_t i = 0; i < s.inputs.size(); ++i)
          if (wants(i))
            contribute(i, "bprop", [&](MatView dx, float st) {
              eltmax_bprop(lc, in(i), ConstMatView(B.acts, s.outputs, n), dy, dx, st);
            });
        break;
      case Kind::Concat: {
        int64_t offset = 0;
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          if (wants(i))
            contribute(i, "bprop", [&](MatView dx, float st) { concat_bprop(lc, dy, dx, offset, st); });
          offset += L.input_sizes[i];
        }
        break;
      }
      case Kind::Nailbed:
        if (wants(0))
          contribute(0, "bprop", [&](MatView dx, float st) { nailbed_bprop(lc, L.nailbed, dy, dx, st); });
        break;
      case Kind::Blur:
        if (wants(0))
          contribute(0, "bprop", [&](MatView dx, float st) {
            blur_bprop(lc, B.blur, dy, MatView{B.blur_tmp, s.outputs, n}, dx, st);
          });
        break;
      case Kind::Href:
        if (wants(0))  // §13 item 8: overwrites, ignoring accumulation, as written
          contribute(0, "bprop", [&](MatView dx, float) { href_bprop(lc, L.href, dy, dx); });
        break;
      case Kind::Logreg: {
        const LayerPlan& probs = plan_.layers[static_cast<size_t>(s.inputs[1])];
        if (!probs.fused_logreg && wants(1))
          contribute(1, "bprop", [&](MatView dp, float st) { logreg_bprop(lc, in(0).data, in(1), dp, s.coeff, st); });
        break;
      }
      case Kind::Sum2:
        if (wants(0))
          contribute(0, "bprop", [&](MatView dx, float st) { sum2_bprop(lc, in(0), dx, s.coeff, st); });
        break;
    }
  }
  if (profile) D.collect(layer_seconds, kernel_seconds);
}

void CudaNet::update() {
  State& S = *state_;
  Devices& D = S.devices;
  for (const UpdateRule& r : plan_.update_rules) {
    const MatrixPlan& m = plan_.matrices[static_cast<size_t>(r.matrix)];
    if (!plan_.updates(m)) continue;
    const MatrixStore& ms = S.matrices[static_cast<size_t>(r.matrix)];
    const LayerPlan& L = plan_.layers[static_cast<size_t>(m.layer)];
    const Launch lc{D[ms.dev].stream, L.spec.name.c_str()};
    const char* what = m.input < 0 ? ":update_bias" : ":update";
    D.run(ms.dev, L.spec.name, std::string(L.type->name) + what, 2, profile, synchronous, [&] {
      if (r.increment) update_increment(lc, ms.inc, ms.grad, m.size(), m.eps, m.mom);
      update_decay_and_step(lc, ms.w, ms.inc, m.size(), m.eps, r.wc);
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
    default: break;
  }
  MatrixStore& M = matrices[static_cast<size_t>(info.matrix)];
  switch (kind) {
    case K::Weights:
    case K::Biases: return {M.w, M.dev};
    case K::WeightInc:
    case K::BiasInc: return {M.inc, M.dev};
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
