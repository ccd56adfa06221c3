// The CUDA net (alexnet/cuda/net.h): the wiring of engine/cpu/net.cpp, layer for
// layer, with the kernels of engine/cuda and every buffer in GPU memory.
//
// Order and accumulation are the CPU net's (engine.md §1.4, §1.5, §4.2):
// * forward: inputs in listed order, the first with scale_targets 0 and the
//   bias right after it, later inputs added;
// * backward: layers in reverse order; the first consumer to reach a producer
//   overwrites its gradient, later ones add; softmax with a single cost.logreg
//   consumer takes the fused gradient; a matrix whose base rate is 0 gets none;
// * update: conv weights and biases through inc <- mom·inc + eps·G, fc and local
//   weights through the increment formed in backward; decay, W += inc, constraints.
// Generators: the CPU net's (mt19937_64 with the same distributions, drawn in
// the same order), so one seed gives the same masks, noise and schedule noise
// on both; draws are made on the host and uploaded.
// Every layer's work goes to its device's stream, asynchronously; forward ends
// with a synchronisation (the costs come back). Host code only: the CUDA runtime
// API, and the launchers of the kernel files.
#include "alexnet/cuda/net.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <stdexcept>

#include "alexnet/cpu/blur.h"
#include "alexnet/cpu/conv.h"
#include "alexnet/cpu/nailbed.h"
#include "alexnet/cpu/neuron.h"
#include "alexnet/cpu/norm.h"
#include "alexnet/cpu/pool.h"
#include "alexnet/cpu/schedule.h"
#include "alexnet/cpu/href.h"
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
#include "alexnet/net_plan.h"

namespace alexnet::cuda {

bool load_cublas_library(const std::vector<std::string>& candidates, std::string* message) {
  return load_cublas(candidates, message);
}

namespace {

using Kind = LayerKind;  // the layer types, checks and draws shared with the CPU net (net_plan.h)

// Float budgets of the shared conv/local scratch of one device: the lowered
// patches (256 MiB) and the partial-sum blocks of a weight gradient (64 MiB).
constexpr int64_t kColsBudget = int64_t{1} << 26;
constexpr int64_t kBlocksBudget = int64_t{1} << 24;

// One weight matrix (or bias) with its increment and (conv, biases) gradient.
struct Weights : WeightParams {
  float* w = nullptr;
  float* inc = nullptr;
  float* grad = nullptr;  // conv weights and biases only
};

struct LayerState {
  LayerSpec spec;
  Kind kind = Kind::Data;
  int dev = 0;
  float* acts = nullptr;  // (D, max_cases); null when D == 0 (cost layers)
  float* grad = nullptr;
  bool grad_set = false;
  bool needs_grad = false;
  std::vector<int> consumers;
  std::vector<Weights*> weights;
  std::vector<std::unique_ptr<Weights>> owned;
  Weights bias;
  bool has_bias = false;
  std::vector<cpu::ConvParams> conv;  // conns point to device memory
  std::vector<const int64_t*> feeds;  // per input: device CSR channel -> (g, c') table
  cpu::PoolParams pool;
  cpu::SpatialNormParams spatial;
  cpu::CrossMapNormParams crossmap;
  cpu::NeuronParams neuron;
  cpu::NailbedParams nailbed;
  cpu::BlurParams blur;  // filter points to device memory
  cpu::HrefParams href;
  float* denoms = nullptr;
  float* scratch = nullptr;
  float* mean_diffs = nullptr;
  float* mask = nullptr;   // hs: (D, max_cases)
  float* noise = nullptr;  // nrelu: (D, max_cases)
  float* blur_tmp = nullptr;
  std::vector<float> draws;  // host staging of mask/noise draws
  bool fused_logreg = false;
  // Replicas of acts / grad on other devices (engine.md §6), by device.
  std::map<int, float*> acts_on, grad_on;
  std::map<int, bool> acts_fresh;  // replica refreshed in this forward
  // Cost terms on the device, read back after forward.
  float* cost_log_p = nullptr;     // logreg: (max_cases)
  double* cost_credits = nullptr;  // logreg: (2·max_cases)
  double* cost_rows = nullptr;     // sum2: (D_in)
};

struct Device {
  int id = 0;
  cudaStream_t stream = nullptr;
  cudaEvent_t order = nullptr;  // orders one device's stream after another's
  std::unique_ptr<Gemm> gemm;
  ConvWorkspace ws;
};

struct Timing {
  int dev;
  cudaEvent_t start, stop;
  std::string layer, op;
  int slot;
};

}  // namespace

struct CudaNet::Impl {
  std::vector<LayerState> layers;
  std::map<std::string, int> index;
  std::vector<Device> devices;
  int64_t max_cases = 0;
  std::mt19937_64 rng;
  PassType pass = PassType::Test;
  std::vector<std::pair<int, void*>> allocations;
  int64_t allocated = 0;
  std::vector<Timing> timings;

  ~Impl() {
    // No throwing here: errors while freeing are ignored (the process keeps going).
    for (Timing& t : timings) {
      cudaSetDevice(t.dev);
      cudaEventDestroy(t.start);
      cudaEventDestroy(t.stop);
    }
    for (Device& d : devices) {
      cudaSetDevice(d.id);
      if (d.stream) cudaStreamSynchronize(d.stream);
      d.gemm.reset();
      if (d.order) cudaEventDestroy(d.order);
      if (d.stream) cudaStreamDestroy(d.stream);
    }
    for (auto& [dev, ptr] : allocations) {
      cudaSetDevice(dev);
      cudaFree(ptr);
    }
  }

  void set_device(int dev) { check(cudaSetDevice(devices[dev].id), "cudaSetDevice"); }

  void* alloc_bytes(int dev, int64_t bytes, const std::string& what) {
    if (bytes <= 0) return nullptr;
    set_device(dev);
    void* p = nullptr;
    check(cudaMalloc(&p, static_cast<size_t>(bytes)), "cudaMalloc of " + std::to_string(bytes) + " bytes for " + what);
    allocations.emplace_back(devices[dev].id, p);
    allocated += bytes;
    check(cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), devices[dev].stream), "cudaMemsetAsync for " + what);
    return p;
  }
  float* alloc(int dev, int64_t floats, const std::string& what) {
    return static_cast<float*>(alloc_bytes(dev, floats * static_cast<int64_t>(sizeof(float)), what));
  }

  Launch launch(const LayerState& L) const { return Launch{devices[L.dev].stream, L.spec.name.c_str()}; }

  // Makes `to`'s stream wait for everything issued so far on `from`'s stream.
  void order(int from, int to) {
    if (from == to) return;
    set_device(from);
    check(cudaEventRecord(devices[from].order, devices[from].stream), "cudaEventRecord (device order)");
    set_device(to);
    check(cudaStreamWaitEvent(devices[to].stream, devices[from].order, 0), "cudaStreamWaitEvent (device order)");
  }

  // dst (on device `to`) <- src (on device `from`), `floats` values, ordered
  // after the work on both devices so far; later work on either waits for it.
  void copy_between(const float* src, int from, float* dst, int to, int64_t floats, const std::string& what) {
    if (floats <= 0) return;
    order(from, to);
    set_device(to);
    check(cudaMemcpyPeerAsync(dst, devices[to].id, src, devices[from].id, static_cast<size_t>(floats) * sizeof(float),
                              devices[to].stream),
          "cudaMemcpyPeerAsync " + what);
    order(to, from);
  }

  void sync_all(const std::string& what) {
    for (Device& d : devices) {
      check(cudaSetDevice(d.id), "cudaSetDevice");
      check(cudaStreamSynchronize(d.stream), what + " (device " + std::to_string(d.id) + ")");
    }
  }
};

CudaNet::CudaNet(std::vector<LayerSpec> specs, int64_t max_cases, uint64_t seed, int num_gpus,
                 const std::string& gemm)
    : impl_(new Impl) {
  if (max_cases < 1) throw std::invalid_argument("max_cases must be >= 1");
  Impl& I = *impl_;
  I.max_cases = max_cases;
  I.rng.seed(seed);
  const char* sync_env = std::getenv("ALEXNET_CUDA_SYNC");
  synchronous = sync_env != nullptr && std::string(sync_env) == "1";

  int visible = 0;
  const cudaError_t probe = cudaGetDeviceCount(&visible);
  if (probe != cudaSuccess)
    throw std::runtime_error(std::string("no usable CUDA device: ") + cudaGetErrorString(probe));
  if (visible < 1) throw std::runtime_error("no usable CUDA device: the CUDA runtime reports none");
  const int ndev = num_gpus > 0 ? std::min(num_gpus, visible) : visible;
  I.devices.resize(static_cast<size_t>(ndev));
  for (int d = 0; d < ndev; ++d) {
    Device& D = I.devices[static_cast<size_t>(d)];
    D.id = d;
    check(cudaSetDevice(d), "cudaSetDevice " + std::to_string(d));
    check(cudaStreamCreateWithFlags(&D.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check(cudaEventCreateWithFlags(&D.order, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    D.gemm = std::make_unique<Gemm>(d, D.stream, gemm);
  }
  for (int a = 0; a < ndev; ++a)  // peer access where the hardware has it; copies work without it too
    for (int b = 0; b < ndev; ++b) {
      if (a == b) continue;
      int can = 0;
      check(cudaDeviceCanAccessPeer(&can, a, b), "cudaDeviceCanAccessPeer");
      if (!can) continue;
      check(cudaSetDevice(a), "cudaSetDevice");
      const cudaError_t e = cudaDeviceEnablePeerAccess(b, 0);
      if (e == cudaErrorPeerAccessAlreadyEnabled)
        cudaGetLastError();  // clears the sticky-free error this call leaves
      else
        check(e, "cudaDeviceEnablePeerAccess");
    }

  I.layers.resize(specs.size());
  for (size_t li = 0; li < specs.size(); ++li) {
    LayerState& L = I.layers[li];
    L.spec = std::move(specs[li]);
    const LayerSpec& s = L.spec;
    auto fail = [&](const std::string& why) { fail_layer(s, why); };
    L.kind = check_layer(s, static_cast<int>(li), I.index);
    for (int in : s.inputs) I.layers[static_cast<size_t>(in)].consumers.push_back(static_cast<int>(li));
    L.dev = s.gpu < 0 ? 0 : s.gpu % ndev;
    const int64_t size = s.outputs * max_cases;
    L.acts = I.alloc(L.dev, size, "acts of layer '" + s.name + "'");
    L.grad = I.alloc(L.dev, size, "acts_grad of layer '" + s.name + "'");
    auto input_size = [&](size_t i) { return I.layers[static_cast<size_t>(s.inputs[i])].spec.outputs; };

    switch (L.kind) {
      case Kind::Conv:
      case Kind::Local: {
        if (s.conv.size() != s.inputs.size()) fail("needs one conv geometry per input");
        for (size_t i = 0; i < s.conv.size(); ++i) {
          const ConvInputSpec& c = s.conv[i];
          cpu::ConvParams p = conv_params(s, i, input_size(i));
          // Checks the CPU kernels rely on the binding for; here they guard device memory.
          if (p.groups < 1 || p.filters % p.groups != 0 || p.filter_channels < 1 || p.stride < 1 || p.filter_size < 1)
            fail("conv geometry is inconsistent (groups, filters, filterChannels, stride, filterSize)");
          if (p.conns == nullptr && p.groups * p.filter_channels != p.channels)
            fail("dense groups need groups*filterChannels == channels");
          for (int32_t ch : c.conns)
            if (ch < 0 || ch >= p.channels) fail("connection table names a channel out of range");
          // The channel -> (g, c') table of the backward, built on the host as the CPU does.
          cpu::ConvScratch host;
          cpu::lowering::build_feeds(p, host);
          auto* feeds = static_cast<int64_t*>(
              I.alloc_bytes(L.dev, static_cast<int64_t>(host.feeds.size() * sizeof(int64_t)), "conv feeds"));
          // On the device's stream, after the allocation's memset (a non-blocking stream
          // is not ordered with the legacy default stream of a plain cudaMemcpy).
          check(cudaMemcpyAsync(feeds, host.feeds.data(), host.feeds.size() * sizeof(int64_t),
                                cudaMemcpyHostToDevice, I.devices[static_cast<size_t>(L.dev)].stream),
                "cudaMemcpyAsync conv feeds of layer '" + s.name + "'");
          L.feeds.push_back(feeds);
          if (!c.conns.empty()) {
            auto* conns = static_cast<int32_t*>(
                I.alloc_bytes(L.dev, static_cast<int64_t>(c.conns.size() * sizeof(int32_t)), "conv conns"));
            check(cudaMemcpyAsync(conns, c.conns.data(), c.conns.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                                  I.devices[static_cast<size_t>(L.dev)].stream),
                  "cudaMemcpyAsync connection table of layer '" + s.name + "'");
            p.conns = conns;
          }
          L.conv.push_back(p);
        }
        if (s.filters * s.modules_x * s.modules_x != s.outputs) fail("outputs != filters * modules");
        break;
      }
      case Kind::Pool: {
        L.pool = pool_params(s);
        if (s.stride < 1) fail("pool stride must be >= 1");
        break;
      }
      case Kind::Rnorm:
      case Kind::Cnorm:
        L.spatial = spatial_norm_params(s);
        L.denoms = I.alloc(L.dev, size, "denoms");
        L.scratch = I.alloc(L.dev, size, "norm scratch");
        if (L.kind == Kind::Cnorm) L.mean_diffs = I.alloc(L.dev, size, "mean_diffs");
        break;
      case Kind::Cmrnorm:
        L.crossmap = cross_map_norm_params(s);
        if (s.channels < 1 || s.outputs % s.channels != 0) fail("cmrnorm channels must divide the outputs");
        L.denoms = I.alloc(L.dev, size, "denoms");
        L.scratch = I.alloc(L.dev, size, "norm scratch");
        break;
      case Kind::Neuron: {
        L.neuron = neuron_params(s);
        if (L.neuron.type == cpu::NeuronType::kNrelu) {
          L.noise = I.alloc(L.dev, size, "nrelu noise");
          L.draws.assign(static_cast<size_t>(size), 0.0f);
        }
        break;
      }
      case Kind::Dropout:
        L.mask = I.alloc(L.dev, size, "dropout mask");
        fill(I.launch(L), L.mask, size, 1.0f);  // the CPU net starts with ones
        L.draws.assign(static_cast<size_t>(size), 1.0f);
        break;
      case Kind::Nailbed:
        L.nailbed = {s.channels, s.img_size, s.stride};
        if (s.stride < 1) fail("nailbed stride must be >= 1");
        break;
      case Kind::Blur: {
        L.blur.channels = s.channels;
        L.blur.img_size = s.img_size;
        L.blur.filter_size = static_cast<int64_t>(s.filter.size());
        float* taps = I.alloc(L.dev, L.blur.filter_size, "blur taps");
        if (!s.filter.empty())
          check(cudaMemcpyAsync(taps, s.filter.data(), s.filter.size() * sizeof(float), cudaMemcpyHostToDevice,
                                I.devices[static_cast<size_t>(L.dev)].stream),
                "cudaMemcpyAsync blur taps of layer '" + s.name + "'");
        L.blur.filter = taps;
        L.blur_tmp = I.alloc(L.dev, size, "blur scratch");
        break;
      }
      case Kind::Href:
        L.href = {s.channels, s.img_size};
        break;
      case Kind::Logreg:
        if (s.inputs.size() != 2) fail("cost.logreg takes labels and a softmax");
        L.cost_log_p = I.alloc(L.dev, max_cases, "logreg cost terms");
        L.cost_credits = static_cast<double*>(
            I.alloc_bytes(L.dev, 2 * max_cases * static_cast<int64_t>(sizeof(double)), "logreg credits"));
        break;
      case Kind::Sum2:
        L.cost_rows = static_cast<double*>(
            I.alloc_bytes(L.dev, std::max<int64_t>(1, input_size(0)) * static_cast<int64_t>(sizeof(double)),
                          "sum2 cost terms"));
        break;
      default:
        break;
    }

    if (is_weight_kind(L.kind)) {
      check_weight_lists(s);
      const size_t n = s.inputs.size();
      for (size_t i = 0; i < n; ++i) {
        if (s.share_layer[i] >= 0) {
          Weights* shared = shared_matrix(I.layers, s, static_cast<int>(li), i);
          const LayerState& owner = I.layers[static_cast<size_t>(s.share_layer[i])];
          if (owner.dev != L.dev) fail("shares weights with layer '" + owner.spec.name + "' on another device");
          L.weights.push_back(shared);
          continue;
        }
        auto w = std::make_unique<Weights>();
        static_cast<WeightParams&>(*w) = weight_params(s, i);
        w->w = I.alloc(L.dev, w->size(), "weights of layer '" + s.name + "'");
        w->inc = I.alloc(L.dev, w->size(), "weight increments of layer '" + s.name + "'");
        if (L.kind == Kind::Conv) w->grad = I.alloc(L.dev, w->size(), "weight gradient of layer '" + s.name + "'");
        L.weights.push_back(w.get());
        L.owned.push_back(std::move(w));
      }
      // Shapes the kernels index with (the CPU trusts the cfg reader for these).
      for (size_t i = 0; i < n; ++i) {
        const Weights& w = *L.weights[i];
        if (L.kind == Kind::Fc && (w.rows != input_size(i) || w.cols != s.outputs))
          fail("fc weight matrix must be (inputs, outputs)");
        if (L.kind == Kind::Conv && (w.rows != L.conv[i].rows_per_group() || w.cols != s.filters))
          fail("conv weight matrix must be (filterChannels*K*K, filters)");
        if (L.kind == Kind::Local &&
            (w.rows != L.conv[i].modules() * L.conv[i].rows_per_group() || w.cols != s.filters))
          fail("local weight matrix must be (modules*filterChannels*K*K, filters)");
      }
      L.has_bias = true;
      static_cast<WeightParams&>(L.bias) = bias_params(s);
      const int64_t want = L.kind == Kind::Fc ? s.outputs
                           : (L.kind == Kind::Conv && s.shared_biases) ? s.filters
                                                                         : s.outputs;
      if (L.bias.size() != want) fail("bias shape does not match the layer");
      L.bias.w = I.alloc(L.dev, L.bias.size(), "biases");
      L.bias.inc = I.alloc(L.dev, L.bias.size(), "bias increments");
      L.bias.grad = I.alloc(L.dev, L.bias.size(), "bias gradient");
    }
  }
  mark_gradients(I.layers, I.index);

  // Replicas for inputs on another device (and the labels of a fused softmax).
  auto need_replica = [&](LayerState& P, int dev, bool grad) {
    const int64_t size = P.spec.outputs * max_cases;
    if (!P.acts_on.count(dev)) P.acts_on[dev] = I.alloc(dev, size, "replica of '" + P.spec.name + "'");
    if (grad && !P.grad_on.count(dev)) P.grad_on[dev] = I.alloc(dev, size, "gradient replica of '" + P.spec.name + "'");
  };
  for (LayerState& L : I.layers) {
    for (int in : L.spec.inputs) {
      LayerState& P = I.layers[static_cast<size_t>(in)];
      if (P.dev != L.dev) need_replica(P, L.dev, P.needs_grad);
    }
    if (L.fused_logreg) {
      LayerState& cost_layer = I.layers[static_cast<size_t>(L.consumers[0])];
      LayerState& labels = I.layers[static_cast<size_t>(cost_layer.spec.inputs[0])];
      if (labels.dev != L.dev) need_replica(labels, L.dev, false);
    }
  }

  // The shared conv/local scratch of each device, sized for the largest need.
  for (int d = 0; d < ndev; ++d) {
    int64_t cols = 0, blocks = 0, acc = 0;
    for (const LayerState& L : I.layers) {
      if (L.dev != d || (L.kind != Kind::Conv && L.kind != Kind::Local)) continue;
      for (const cpu::ConvParams& p : L.conv) {
        cols = std::max(cols, conv_cols_floats(p, max_cases, kColsBudget));
        const int64_t rf = p.rows_per_group() * p.filters;
        const int64_t block_modules = L.spec.partial_sum > 0 ? L.spec.partial_sum : p.modules();
        const int64_t nblocks = std::max<int64_t>(1, p.modules() / block_modules);
        const int64_t fit = std::max<int64_t>(1, kBlocksBudget / rf);
        blocks = std::max(blocks, rf * std::min(nblocks, fit));
        acc = std::max({acc, rf, p.channels * p.img_size * p.img_size * max_cases});
      }
    }
    Device& D = I.devices[static_cast<size_t>(d)];
    D.ws.cols = I.alloc(d, cols, "conv scratch (cols)");
    D.ws.cols_floats = cols;
    D.ws.blocks = I.alloc(d, blocks, "conv scratch (blocks)");
    D.ws.blocks_floats = blocks;
    D.ws.acc = I.alloc(d, acc, "conv scratch (acc)");
    D.ws.acc_floats = acc;
  }
  I.sync_all("building the CUDA net");
}

CudaNet::~CudaNet() = default;

int CudaNet::num_layers() const { return static_cast<int>(impl_->layers.size()); }
const LayerSpec& CudaNet::spec(int layer) const { return impl_->layers.at(static_cast<size_t>(layer)).spec; }
int CudaNet::layer_device(int layer) const { return impl_->layers.at(static_cast<size_t>(layer)).dev; }
int CudaNet::devices() const { return static_cast<int>(impl_->devices.size()); }
std::string CudaNet::gemm_name() const { return impl_->devices.at(0).gemm->name(); }
int64_t CudaNet::allocated_bytes() const { return impl_->allocated; }

std::vector<int64_t> CudaNet::device_used_bytes() const {
  std::vector<int64_t> used;
  for (const Device& d : impl_->devices) {
    check(cudaSetDevice(d.id), "cudaSetDevice");
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    used.push_back(static_cast<int64_t>(total_b - free_b));
  }
  return used;
}

int CudaNet::layer_index(const std::string& name) const {
  return find_layer(impl_->index, name);
}

void CudaNet::synchronize() { impl_->sync_all("synchronize"); }

void CudaNet::set_data(int data_idx, const float* values, int64_t rows, int64_t cases) {
  Impl& I = *impl_;
  check_minibatch(cases, I.max_cases);
  bool found = false;
  for (LayerState& L : I.layers) {
    if (L.kind != Kind::Data || L.spec.data_idx != data_idx) continue;
    check_data_rows(L.spec, data_idx, rows);
    I.set_device(L.dev);
    const Device& D = I.devices[static_cast<size_t>(L.dev)];
    check(cudaMemcpyAsync(L.acts, values, static_cast<size_t>(rows * cases) * sizeof(float), cudaMemcpyHostToDevice,
                          D.stream),
          "cudaMemcpyAsync of data matrix " + std::to_string(data_idx) + " (layer '" + L.spec.name + "')");
    check(cudaStreamSynchronize(D.stream), "set_data (layer '" + L.spec.name + "')");
    found = true;
  }
  if (!found) fail_no_data_layer(data_idx);
  cases_ = cases;
}

namespace {

// Runs `f` (the launches of one operation of layer L), with CUDA events around
// it in profile mode and a checked synchronisation in synchronous mode.
template <class F>
void run_op(CudaNet::Impl& I, bool profile, bool synchronous, const LayerState& L, int slot, const char* op, F&& f) {
  const Device& D = I.devices[static_cast<size_t>(L.dev)];
  I.set_device(L.dev);
  Timing t{L.dev, nullptr, nullptr, L.spec.name, std::string(type_name(L.kind)) + ":" + op, slot};
  if (profile) {
    check(cudaEventCreate(&t.start), "cudaEventCreate");
    check(cudaEventCreate(&t.stop), "cudaEventCreate");
    check(cudaEventRecord(t.start, D.stream), "cudaEventRecord");
  }
  f();
  if (profile) {
    I.set_device(L.dev);
    check(cudaEventRecord(t.stop, D.stream), "cudaEventRecord");
    I.timings.push_back(t);
  }
  if (synchronous) {
    I.set_device(L.dev);
    check(cudaStreamSynchronize(D.stream), std::string("layer '") + L.spec.name + "', " + t.op);
  }
}

}  // namespace

// Reads the events of the pass just issued into layer_seconds / kernel_seconds.
static void collect_timings(CudaNet::Impl& I, std::map<std::string, std::vector<double>>& layer_seconds,
                            std::map<std::string, double>& kernel_seconds) {
  std::vector<Timing> pending;
  pending.swap(I.timings);
  for (Timing& t : pending) {
    check(cudaSetDevice(t.dev), "cudaSetDevice");
    check(cudaEventSynchronize(t.stop), "cudaEventSynchronize (layer '" + t.layer + "', " + t.op + ")");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, t.start, t.stop), "cudaEventElapsedTime");
    auto& entry = layer_seconds[t.layer];
    entry.resize(3, 0.0);
    entry[static_cast<size_t>(t.slot)] += ms / 1000.0;
    kernel_seconds[t.op] += ms / 1000.0;
    cudaEventDestroy(t.start);
    cudaEventDestroy(t.stop);
  }
}

void CudaNet::forward(PassType pass) {
  Impl& I = *impl_;
  I.pass = pass;
  const int64_t n = cases_;
  if (n < 1) throw std::logic_error("forward before set_data");
  costs_.clear();
  ForwardDraws draws(I.rng);
  for (LayerState& L : I.layers)
    for (auto& fresh : L.acts_fresh) fresh.second = false;

  // The acts of layer P on device dev: its own buffer, or its replica there,
  // refreshed once per forward (engine.md §6: outputs copied to consumers' devices).
  auto acts_at = [&](LayerState& P, int dev) -> const float* {
    if (P.dev == dev) return P.acts;
    float* replica = P.acts_on.at(dev);
    if (!P.acts_fresh[dev]) {
      I.copy_between(P.acts, P.dev, replica, dev, P.spec.outputs * n, "of '" + P.spec.name + "' to device " +
                                                                          std::to_string(dev));
      P.acts_fresh[dev] = true;
    }
    return replica;
  };

  for (LayerState& L : I.layers) {
    const LayerSpec& s = L.spec;
    const Launch lc = I.launch(L);
    const Gemm& gemm = *I.devices[static_cast<size_t>(L.dev)].gemm;
    MatView y{L.acts, s.outputs, n};
    auto op = [&](const char* name, auto&& f) { run_op(I, profile, synchronous, L, 0, name, f); };
    std::vector<ConstMatView> ins;
    bool remote = false;
    for (int in : s.inputs) remote = remote || I.layers[static_cast<size_t>(in)].dev != L.dev;
    auto gather = [&] {
      for (int in : s.inputs) {
        LayerState& P = I.layers[static_cast<size_t>(in)];
        ins.emplace_back(acts_at(P, L.dev), P.spec.outputs, n);
      }
    };
    if (remote)
      op("copy_inputs", gather);  // timed: copies between devices
    else
      gather();
    I.set_device(L.dev);
    switch (L.kind) {
      case Kind::Data:
        break;
      case Kind::Conv:
      case Kind::Local:
      case Kind::Fc:
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          const Weights& w = *L.weights[i];
          const float st = i == 0 ? 0.0f : 1.0f;
          op("fprop", [&] {
            if (L.kind == Kind::Fc) {  // the release's (Din, Dout) Fortran matrix is (Dout, Din) row-major here
              fc_fprop(lc, gemm, ins[i], ConstMatView(w.w, w.cols, w.rows), y, st);
            } else {
              ConvWorkspace ws = I.devices[static_cast<size_t>(L.dev)].ws;
              ws.feeds = L.feeds[i];
              if (L.kind == Kind::Conv)
                conv_fprop(lc, gemm, L.conv[i], ins[i], ConstMatView(w.w, w.rows, w.cols), y, st, ws);
              else
                local_fprop(lc, gemm, L.conv[i], ins[i], ConstMatView(w.w, w.rows, w.cols), y, st, ws);
            }
          });
          if (i == 0) {  // §1.4: the bias right after the first input
            op("bias", [&] {
              if (L.kind == Kind::Fc)
                fc_add_bias(lc, L.bias.w, y);
              else
                conv_add_bias(lc, ConstMatView(L.bias.w, L.bias.rows, L.bias.cols), y,
                              L.kind == Kind::Conv && s.shared_biases);
            });
          }
        }
        break;
      case Kind::Pool:
        op("fprop", [&] { pool_fprop(lc, L.pool, ins[0], y, 0.0f); });
        break;
      case Kind::Rnorm:
        op("fprop", [&] { rnorm_fprop(lc, L.spatial, ins[0], y, MatView{L.denoms, s.outputs, n}); });
        break;
      case Kind::Cnorm:
        op("fprop", [&] {
          cnorm_fprop(lc, L.spatial, ins[0], y, MatView{L.denoms, s.outputs, n}, MatView{L.mean_diffs, s.outputs, n});
        });
        break;
      case Kind::Cmrnorm:
        op("fprop", [&] { cmrnorm_fprop(lc, L.crossmap, ins[0], y, MatView{L.denoms, s.outputs, n}); });
        break;
      case Kind::Neuron:
        if (L.noise != nullptr && !inject_masks) {  // nrelu: one N(0,1) draw per element, every pass (§3.11)
          draws.normal(L.draws.data(), s.outputs * n);
          check(cudaMemcpyAsync(L.noise, L.draws.data(), static_cast<size_t>(s.outputs * n) * sizeof(float),
                                cudaMemcpyHostToDevice, lc.stream),
                "cudaMemcpyAsync of nrelu noise (layer '" + s.name + "')");
        }
        op("fprop", [&] { neuron_fprop(lc, L.neuron, ins[0], L.noise, y); });
        break;
      case Kind::Softmax:
        op("fprop", [&] { softmax_fprop(lc, ins[0], y); });
        break;
      case Kind::Dropout: {
        const bool train = pass == PassType::Train && s.enable;
        if (train && !inject_masks) {  // §3.16: keep with probability keep, U in (0, 1]
          draws.dropout_mask(L.draws.data(), s.outputs * n, s.keep);
          check(cudaMemcpyAsync(L.mask, L.draws.data(), static_cast<size_t>(s.outputs * n) * sizeof(float),
                                cudaMemcpyHostToDevice, lc.stream),
                "cudaMemcpyAsync of the dropout mask (layer '" + s.name + "')");
        }
        op("fprop", [&] { dropout_fprop(lc, ins[0], L.mask, s.keep, train, y); });
        break;
      }
      case Kind::Eltsum:
        op("fprop", [&] {
          for (size_t i = 0; i < s.inputs.size(); ++i)
            eltsum_fprop(lc, ins[i], y, s.coeffs.empty() ? 1.0f : s.coeffs[i], i == 0 ? 0.0f : 1.0f);
        });
        break;
      case Kind::Eltmax:
        if (ins.size() < 2) throw std::invalid_argument("layer '" + s.name + "': eltmax needs two or more inputs");
        op("fprop", [&] {
          eltmax_pair(lc, ins[1], ins[0], y);  // max(x1, x0), then max(y, x_i) (§3.14)
          for (size_t i = 2; i < ins.size(); ++i) eltmax_pair(lc, y, ins[i], y);
        });
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
        op("fprop", [&] { blur_fprop(lc, L.blur, ins[0], MatView{L.blur_tmp, s.outputs, n}, y, 0.0f); });
        break;
      case Kind::Href:
        op("fprop", [&] { href_fprop(lc, L.href, ins[0], y, 0.0f); });
        break;
      case Kind::Logreg:
        op("cost", [&] { logreg_cost_terms(lc, ins[0].data, ins[1], s.topk, L.cost_log_p, L.cost_credits); });
        break;
      case Kind::Sum2:
        op("cost", [&] { sum2_cost_rows(lc, ins[0], L.cost_rows); });
        break;
    }
  }

  // The costs, summed on the host in the CPU's order (float64, cases in order).
  I.sync_all("forward");
  for (LayerState& L : I.layers) {
    if (L.kind != Kind::Logreg && L.kind != Kind::Sum2) continue;
    I.set_device(L.dev);
    if (L.kind == Kind::Logreg) {
      std::vector<float> log_p(static_cast<size_t>(n));
      std::vector<double> credits(static_cast<size_t>(2 * n));
      check(cudaMemcpy(log_p.data(), L.cost_log_p, log_p.size() * sizeof(float), cudaMemcpyDeviceToHost),
            "cudaMemcpy of the costs of layer '" + L.spec.name + "'");
      check(cudaMemcpy(credits.data(), L.cost_credits, credits.size() * sizeof(double), cudaMemcpyDeviceToHost),
            "cudaMemcpy of the costs of layer '" + L.spec.name + "'");
      double sum_log = 0.0, sum_top1 = 0.0, sum_topk = 0.0;
      for (int64_t c = 0; c < n; ++c) {
        sum_log += static_cast<double>(log_p[static_cast<size_t>(c)]);
        sum_top1 += credits[static_cast<size_t>(2 * c)];
        sum_topk += credits[static_cast<size_t>(2 * c + 1)];
      }
      const double cases = static_cast<double>(n);
      costs_[L.spec.name] = {-sum_log, cases - sum_top1, cases - sum_topk};
    } else {
      const int64_t rows = I.layers[static_cast<size_t>(L.spec.inputs[0])].spec.outputs;
      std::vector<double> terms(static_cast<size_t>(rows));
      check(cudaMemcpy(terms.data(), L.cost_rows, terms.size() * sizeof(double), cudaMemcpyDeviceToHost),
            "cudaMemcpy of the cost of layer '" + L.spec.name + "'");
      double sum = 0.0;
      for (double t : terms) sum += t;
      costs_[L.spec.name] = {sum};
    }
  }
  if (profile) collect_timings(I, layer_seconds, kernel_seconds);
}

void CudaNet::backward() {
  Impl& I = *impl_;
  const int64_t n = cases_;
  if (n < 1) throw std::logic_error("backward before forward");
  const float inv_n = 1.0f / static_cast<float>(n);
  for (LayerState& L : I.layers) L.grad_set = false;
  for (LayerState& L : I.layers)
    for (Weights* w : L.weights) w->contributed = false;

  for (auto it = I.layers.rbegin(); it != I.layers.rend(); ++it) {
    LayerState& L = *it;
    const LayerSpec& s = L.spec;
    if (L.kind == Kind::Data || !L.needs_grad) continue;
    const bool cost = is_cost_kind(L.kind);
    if (!cost && !L.grad_set && !(L.kind == Kind::Softmax && L.fused_logreg)) continue;  // nothing reached it
    const Launch lc = I.launch(L);
    const Gemm& gemm = *I.devices[static_cast<size_t>(L.dev)].gemm;
    const ConstMatView dy(L.grad, s.outputs, n);
    // Input i's acts on this layer's device (the replicas were filled in forward).
    auto in = [&](size_t i) {
      const LayerState& P = I.layers[static_cast<size_t>(s.inputs[i])];
      return ConstMatView(P.dev == L.dev ? P.acts : P.acts_on.at(L.dev), P.spec.outputs, n);
    };
    auto wants = [&](size_t i) { return I.layers[static_cast<size_t>(s.inputs[i])].needs_grad; };
    auto op = [&](const char* name, auto&& f) { run_op(I, profile, synchronous, L, 1, name, f); };
    // The gradient of input i: the first contribution overwrites (st 0), later
    // ones add (st 1). A producer on another device: its gradient is copied
    // here, the kernel runs on the copy, and the result goes back (engine.md §6).
    auto contribute = [&](size_t i, const char* name, auto&& f) {
      LayerState& P = I.layers[static_cast<size_t>(s.inputs[i])];
      const float st = P.grad_set ? 1.0f : 0.0f;
      P.grad_set = true;
      op(name, [&] {
        float* target = P.grad;
        if (P.dev != L.dev) {
          target = P.grad_on.at(L.dev);
          if (st != 0.0f)
            I.copy_between(P.grad, P.dev, target, L.dev, P.spec.outputs * n, "gradient of '" + P.spec.name + "'");
          I.set_device(L.dev);
        }
        f(MatView{target, P.spec.outputs, n}, st);
        if (P.dev != L.dev)
          I.copy_between(target, L.dev, P.grad, P.dev, P.spec.outputs * n, "gradient of '" + P.spec.name + "'");
      });
    };
    I.set_device(L.dev);
    switch (L.kind) {
      case Kind::Data:
        break;
      case Kind::Conv:
      case Kind::Local:
      case Kind::Fc: {
        ConvWorkspace ws = I.devices[static_cast<size_t>(L.dev)].ws;
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          Weights& w = *L.weights[i];
          ws.feeds = L.conv.empty() ? nullptr : L.feeds[i];
          if (wants(i))
            contribute(i, "bprop_acts", [&](MatView dx, float st) {
              if (L.kind == Kind::Fc)
                fc_bprop_acts(lc, gemm, dy, ConstMatView(w.w, w.cols, w.rows), dx, st);
              else if (L.kind == Kind::Conv)
                conv_bprop_acts(lc, gemm, L.conv[i], dy, ConstMatView(w.w, w.rows, w.cols), dx, st, ws);
              else
                local_bprop_acts(lc, gemm, L.conv[i], dy, ConstMatView(w.w, w.rows, w.cols), dx, st, ws);
            });
          if (w.eps_base <= 0.0f) continue;  // §4.2: a frozen matrix gets no gradient
          const bool first = !w.contributed;
          w.contributed = true;
          op("bprop_weights", [&] {
            if (L.kind == Kind::Fc)  // inc <- mom·inc + (eps/N)·dY·Xᵀ; mom 1 for further uses of a shared matrix
              fc_bprop_weights(lc, gemm, in(i), dy, MatView{w.inc, w.cols, w.rows}, w.eps * inv_n,
                               first ? w.mom : 1.0f);
            else if (L.kind == Kind::Conv)
              conv_bprop_weights(lc, gemm, L.conv[i], in(i), dy, MatView{w.grad, w.rows, w.cols}, s.partial_sum,
                                 inv_n, first ? 0.0f : 1.0f, ws);
            else
              local_bprop_weights(lc, gemm, L.conv[i], in(i), dy, MatView{w.inc, w.rows, w.cols}, w.eps * inv_n,
                                  first ? w.mom : 1.0f, ws);
          });
        }
        if (L.bias.eps_base > 0.0f) {
          op("bprop_bias", [&] {
            if (L.kind == Kind::Fc)
              fc_bprop_bias(lc, dy, L.bias.grad, inv_n, 0.0f);
            else
              conv_bprop_bias(lc, dy, MatView{L.bias.grad, L.bias.rows, L.bias.cols},
                              L.kind == Kind::Conv && s.shared_biases, inv_n, 0.0f);
          });
        }
        break;
      }
      case Kind::Pool:
        if (wants(0))
          contribute(0, "bprop", [&](MatView dx, float st) {
            pool_bprop(lc, L.pool, in(0), ConstMatView(L.acts, s.outputs, n), dy, dx, st);
          });
        break;
      case Kind::Rnorm:
      case Kind::Cnorm:
      case Kind::Cmrnorm:
        if (wants(0))
          contribute(0, "bprop", [&](MatView dx, float st) {
            const ConstMatView yv(L.acts, s.outputs, n), d(L.denoms, s.outputs, n);
            const MatView scratch{L.scratch, s.outputs, n};
            if (L.kind == Kind::Rnorm)
              rnorm_bprop(lc, L.spatial, in(0), yv, d, dy, dx, scratch, st);
            else if (L.kind == Kind::Cnorm)
              cnorm_bprop(lc, L.spatial, ConstMatView(L.mean_diffs, s.outputs, n), yv, d, dy, dx, scratch, st);
            else
              cmrnorm_bprop(lc, L.crossmap, in(0), yv, d, dy, dx, scratch, st);
          });
        break;
      case Kind::Neuron:
        if (wants(0))
          contribute(0, "bprop", [&](MatView dx, float st) {
            neuron_bprop(lc, L.neuron, in(0), ConstMatView(L.acts, s.outputs, n), dy, dx, st);
          });
        break;
      case Kind::Softmax:
        if (wants(0)) {
          if (L.fused_logreg) {
            LayerState& cost_layer = I.layers[static_cast<size_t>(L.consumers[0])];
            LayerState& labels = I.layers[static_cast<size_t>(cost_layer.spec.inputs[0])];
            const float* label_data = labels.acts;
            if (labels.dev != L.dev) {
              float* replica = labels.acts_on.at(L.dev);
              I.copy_between(labels.acts, labels.dev, replica, L.dev, n, "labels of '" + cost_layer.spec.name + "'");
              I.set_device(L.dev);
              label_data = replica;
            }
            contribute(0, "bprop_logreg", [&](MatView dx, float st) {
              logreg_softmax_bprop(lc, label_data, ConstMatView(L.acts, s.outputs, n), dx, cost_layer.spec.coeff, st);
            });
          } else {
            contribute(0, "bprop", [&](MatView dx, float st) {
              softmax_bprop(lc, ConstMatView(L.acts, s.outputs, n), dy, dx, st);
            });
          }
        }
        break;
      case Kind::Dropout:
        if (wants(0))
          contribute(0, "bprop", [&](MatView dx, float st) {
            dropout_bprop(lc, dy, L.mask, s.keep, I.pass == PassType::Train && s.enable, dx, st);
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
              eltmax_bprop(lc, in(i), ConstMatView(L.acts, s.outputs, n), dy, dx, st);
            });
        break;
      case Kind::Concat: {
        int64_t offset = 0;
        for (size_t i = 0; i < s.inputs.size(); ++i) {
          if (wants(i))
            contribute(i, "bprop", [&](MatView dx, float st) { concat_bprop(lc, dy, dx, offset, st); });
          offset += I.layers[static_cast<size_t>(s.inputs[i])].spec.outputs;
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
            blur_bprop(lc, L.blur, dy, MatView{L.blur_tmp, s.outputs, n}, dx, st);
          });
        break;
      case Kind::Href:
        if (wants(0))  // §13 item 8: overwrites, ignoring accumulation, as written
          contribute(0, "bprop", [&](MatView dx, float) { href_bprop(lc, L.href, dy, dx); });
        break;
      case Kind::Logreg: {
        const LayerState& probs = I.layers[static_cast<size_t>(s.inputs[1])];
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
  if (profile) collect_timings(I, layer_seconds, kernel_seconds);
}

void CudaNet::reseed(uint64_t seed) { impl_->rng.seed(seed); }

// §4.3, drawn exactly as the CPU net draws (net_plan.h: the same matrices in the same order).
void CudaNet::set_progress(double progress) { schedule_rates(impl_->layers, progress, impl_->rng); }

void CudaNet::update() {
  Impl& I = *impl_;
  for (LayerState& L : I.layers) {
    const Launch lc = I.launch(L);
    auto op = [&](const char* name, auto&& f) { run_op(I, profile, synchronous, L, 2, name, f); };
    for (auto& owned : L.owned) {
      Weights& w = *owned;
      if (w.eps_base <= 0.0f || !w.contributed) continue;
      op("update", [&] {
        const int64_t size = w.size();
        if (L.kind == Kind::Conv) update_increment(lc, w.inc, w.grad, size, w.eps, w.mom);
        update_decay_and_step(lc, w.w, w.inc, size, w.eps, w.wc);
        if (L.kind == Kind::Conv) {
          constrain_filter_spread(lc, w.w, w.rows, w.cols, w.norm_min, w.norm_max);
          constrain_max_norm(lc, w.w, w.cols, w.rows, 1, w.cols, w.wball);
        } else if (L.kind == Kind::Fc) {  // each output unit's weights: contiguous rows of the (Dout, Din) storage
          constrain_max_norm(lc, w.w, w.cols, w.rows, w.rows, 1, w.wball);
        } else if (w.wball > 0.0f) {  // local: each (module, filter) vector
          const int64_t modules = L.spec.modules_x * L.spec.modules_x;
          const int64_t per_module = w.rows / modules;
          for (int64_t m = 0; m < modules; ++m)
            constrain_max_norm(lc, w.w + m * per_module * w.cols, w.cols, per_module, 1, w.cols, w.wball);
        }
      });
    }
    if (L.has_bias && L.bias.eps_base > 0.0f) {
      op("update_bias", [&] {
        const int64_t size = L.bias.size();
        update_increment(lc, L.bias.inc, L.bias.grad, size, L.bias.eps, L.bias.mom);
        update_decay_and_step(lc, L.bias.w, L.bias.inc, size, L.bias.eps, 0.0f);
      });
    }
  }
  if (profile) collect_timings(I, layer_seconds, kernel_seconds);
}

// ---- buffers ------------------------------------------------------------------

CudaNet::BufferKind CudaNet::buffer_kind(const std::string& name) {
  using Kind = BufferKind;
  static const std::map<std::string, Kind> kinds = {
      {"acts", Kind::Acts},       {"acts_grad", Kind::ActsGrad}, {"weights", Kind::Weights},
      {"weight_inc", Kind::WeightInc}, {"weight_grad", Kind::WeightGrad}, {"biases", Kind::Biases},
      {"bias_inc", Kind::BiasInc}, {"bias_grad", Kind::BiasGrad}, {"mask", Kind::Mask},
      {"noise", Kind::Noise},
  };
  auto it = kinds.find(name);
  if (it == kinds.end())
    throw std::invalid_argument("buffer kind '" + name +
                                "' (acts, acts_grad, weights, weight_inc, weight_grad, biases, bias_inc, bias_grad, "
                                "mask, noise)");
  return it->second;
}

namespace {

struct Located {
  float* data = nullptr;
  CudaNet::BufferInfo info;
  int dev = 0;
};

// The buffer of `kind`, with the CPU net's view shape (Net::acts ... Net::noise):
// (0, 0) where the CPU's vector is empty.
Located locate(CudaNet::Impl& I, CudaNet::BufferKind kind, int layer, int input, int64_t cases) {
  LayerState& L = I.layers.at(static_cast<size_t>(layer));
  Located r;
  r.dev = L.dev;
  auto set = [&](float* data, int64_t rows, int64_t cols, bool fortran = false) {
    if (data == nullptr || rows * cols == 0) {
      r.data = data;
      r.info = {data == nullptr ? 0 : rows, data == nullptr ? 0 : cols, false};
      return;
    }
    r.data = data;
    r.info = {rows, cols, fortran};
  };
  using K = CudaNet::BufferKind;
  switch (kind) {
    case K::Acts: set(L.acts, L.spec.outputs, cases); break;
    case K::ActsGrad: set(L.grad, L.spec.outputs, cases); break;
    case K::Weights: {
      Weights& w = *L.weights.at(static_cast<size_t>(input));
      set(w.w, w.rows, w.cols, L.kind == Kind::Fc);
      break;
    }
    case K::WeightInc: {
      Weights& w = *L.weights.at(static_cast<size_t>(input));
      set(w.inc, w.rows, w.cols, L.kind == Kind::Fc);
      break;
    }
    case K::WeightGrad: {
      Weights& w = *L.weights.at(static_cast<size_t>(input));
      set(w.grad, w.rows, w.cols);
      break;
    }
    case K::Biases: set(L.bias.w, L.bias.rows, L.bias.cols); break;
    case K::BiasInc: set(L.bias.inc, L.bias.rows, L.bias.cols); break;
    case K::BiasGrad: set(L.bias.grad, L.bias.rows, L.bias.cols); break;
    case K::Mask: set(L.mask, L.spec.outputs, I.max_cases); break;
    case K::Noise: set(L.noise, L.spec.outputs, I.max_cases); break;
  }
  return r;
}

}  // namespace

CudaNet::BufferInfo CudaNet::buffer_info(BufferKind kind, int layer, int input) const {
  return locate(*impl_, kind, layer, input, cases_).info;
}

void CudaNet::download(BufferKind kind, int layer, int input, float* host) {
  Impl& I = *impl_;
  const Located b = locate(I, kind, layer, input, cases_);
  const int64_t count = b.info.rows * b.info.cols;
  if (count == 0) return;
  I.set_device(b.dev);
  const cudaStream_t stream = I.devices[static_cast<size_t>(b.dev)].stream;
  const std::string what = "download of a buffer of layer '" + I.layers[static_cast<size_t>(layer)].spec.name + "'";
  check(cudaMemcpyAsync(host, b.data, static_cast<size_t>(count) * sizeof(float), cudaMemcpyDeviceToHost, stream),
        what);
  check(cudaStreamSynchronize(stream), what);
}

void CudaNet::upload(BufferKind kind, int layer, int input, const float* host) {
  Impl& I = *impl_;
  const Located b = locate(I, kind, layer, input, cases_);
  const int64_t count = b.info.rows * b.info.cols;
  if (count == 0) return;
  I.set_device(b.dev);
  const cudaStream_t stream = I.devices[static_cast<size_t>(b.dev)].stream;
  const std::string what = "upload of a buffer of layer '" + I.layers[static_cast<size_t>(layer)].spec.name + "'";
  check(cudaMemcpyAsync(b.data, host, static_cast<size_t>(count) * sizeof(float), cudaMemcpyHostToDevice, stream),
        what);
  check(cudaStreamSynchronize(stream), what);
}

}  // namespace alexnet::cuda
