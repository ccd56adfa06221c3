// How a layer type plugs into the CUDA net (net.cpp), as cpu/layer.h does for
// the CPU: each layer's file (engine/cuda/<op>.cu) holds its kernels and, at
// its end, its forward and backward on a LayerRun, registered under its cfg
// name. Host code; the CUDA runtime API only.
//
// A LayerRun is what one layer sees of the CUDA net during one pass: its Plan
// row, device views of its buffers, its inputs on its own device (replicas of
// inputs that live on another one, engine.md §6), the launch (stream, GEMM,
// conv workspace) of its device, and contribute(), which adds into an input's
// gradient wherever that input lives. op() runs one operation, timed in profile
// mode and checked in synchronous mode.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "alexnet/core/matrix.h"
#include "alexnet/core/net_plan.h"
#include "alexnet/cuda/conv.h"
#include "alexnet/cuda/gemm.h"
#include "alexnet/cuda/launch.h"
#include "alexnet/cuda/treefc.h"
#include "devices.h"

namespace alexnet::cuda {

// The storage of one weight matrix or bias (Plan::matrices has its
// parameters), on the device of the layer that owns it.
struct MatrixStore {
  int dev = 0;
  float* w = nullptr;
  float* inc = nullptr;
  float* grad = nullptr;  // conv weights, biases, and matrices with superEps
  float* gavg = nullptr;  // superEps's running averages (§4.4), matrices with superEps > 0 only
  float* g2avg = nullptr;
};

// The buffers of one layer on its device, (D, max_cases) each.
struct LayerStore {
  int dev = 0;
  float* acts = nullptr;  // null when D == 0 (cost layers)
  float* grad = nullptr;
  bool grad_set = false;
  float* denoms = nullptr;
  float* scratch = nullptr;
  float* mean_diffs = nullptr;
  float* mask = nullptr;   // hs
  float* noise = nullptr;  // nrelu
  float* blur_tmp = nullptr;
  float* pass_draws = nullptr;  // rscale: the pass's draws (1, LayerPlan::draw_count), staged through `draws`
  void* work = nullptr;         // LayerPlan::work_bytes of working space
  std::vector<float> draws;           // host staging of mask/noise/rscale draws
  std::vector<ConvParams> conv;       // the Plan's, with conns in device memory
  std::vector<const int64_t*> feeds;  // per input: device CSR channel -> (g, c') table
  BlurParams blur;                    // the Plan's, with the taps in device memory
  DeviceTree tree;                    // treefc: the label tree's tables and the leaf weights
  // Replicas of acts / grad on other devices (engine.md §6), by device.
  std::map<int, float*> acts_on, grad_on;
  std::map<int, bool> acts_fresh;  // replica refreshed in this forward
  double* cost_terms = nullptr;  // cost layers: LayerPlan::cost_terms doubles of device scratch
};

class LayerRun {
 public:
  LayerRun(Plan& plan, Devices& devices, std::vector<LayerStore>& stores, std::vector<MatrixStore>& matrices,
           int layer, int64_t cases, PassType pass, bool inject_masks, ForwardDraws* draws,
           std::map<std::string, std::vector<double>>& costs, int slot, bool profile, bool synchronous,
           std::vector<ConstMatView> inputs)
      : layer(plan.layers[static_cast<size_t>(layer)]), n(cases), pass(pass), inject_masks(inject_masks),
        draws(draws), devices(devices), store(stores[static_cast<size_t>(layer)]),
        lc{devices[store.dev].stream, layer_name()}, gemm(*devices[store.dev].gemm), ws(devices[store.dev].ws),
        plan_(plan), stores_(stores), matrices_(matrices), costs_(costs), slot_(slot), profile_(profile),
        synchronous_(synchronous), inputs_(std::move(inputs)) {}

  const LayerPlan& layer;
  const LayerSpec& spec() const { return layer.spec; }
  const int64_t n;
  const PassType pass;
  const bool inject_masks;
  ForwardDraws* const draws;  // forward only
  Devices& devices;
  LayerStore& store;
  const Launch lc;    // the layer's device's stream, and its name for error messages
  const Gemm& gemm;   // the device's GEMM
  const ConvWorkspace& ws;  // the device's conv scratch
  // conv, local: the device's scratch with input i's channel table.
  ConvWorkspace conv_workspace(size_t i) const {
    ConvWorkspace w = ws;
    w.feeds = store.feeds[i];
    return w;
  }

  MatView out() const { return view(store.acts); }
  ConstMatView dy() const { return view(store.grad); }
  MatView view(float* p) const { return MatView{p, layer.spec.outputs, n}; }
  ConstMatView in(size_t i) const { return inputs_[i]; }  // on this layer's device
  const std::vector<ConstMatView>& inputs() const { return inputs_; }
  const LayerPlan& plan_of(int other) const { return plan_.layers[static_cast<size_t>(other)]; }
  // Another layer's output on this layer's device: its own buffer, or its
  // replica here, copied now.
  const float* acts_here(int other) const;

  // Runs `launches` as the operation `name` of this layer on its device.
  template <class F>
  void op(const char* name, F&& launches) const {
    devices.run(store.dev, layer.spec.name, std::string(layer.type->name) + ":" + name, slot_, profile_,
                synchronous_, launches);
  }

  bool wants(size_t i) const { return plan_of(layer.spec.inputs[i]).needs_grad; }
  // f(dx, st) adds into input i's gradient: the first contribution overwrites
  // (st 0), later ones add (st 1). A producer on another device: its gradient
  // is copied here, f runs on the copy, and the result goes back (engine.md §6).
  template <class F>
  void contribute(size_t i, const char* name, F&& f) const;

  MatrixPlan& weight_plan(size_t i) const { return plan_.matrices[static_cast<size_t>(layer.weights[i])]; }
  const MatrixStore& weight(size_t i) const { return matrices_[static_cast<size_t>(layer.weights[i])]; }
  MatrixPlan& bias_plan() const { return plan_.matrices[static_cast<size_t>(layer.bias)]; }
  // 1/N for the weight gradients (§1.5: N = F x minibatch size when wupdate_freq F > 1).
  float grad_scale() const { return plan_.grad_scale(n); }
  // Whether this backward starts an accumulation over minibatches (§4.2 wupdate_freq).
  bool starts_accumulation() const { return plan_.starts_accumulation(); }
  const MatrixStore& bias() const { return matrices_[static_cast<size_t>(layer.bias)]; }

  // Matrix i (weights, increment or gradient) and the biases as (rows, cols)
  // row-major device views, the release's layouts for conv and local.
  MatView matrix(size_t i, float* MatrixStore::*buffer) const {
    const MatrixPlan& w = weight_plan(i);
    return MatView{weight(i).*buffer, w.rows, w.cols};
  }
  MatView bias_matrix(float* MatrixStore::*buffer) const {
    return MatView{bias().*buffer, bias_plan().rows, bias_plan().cols};
  }

  void set_costs(std::vector<double> values) const { costs_[layer.spec.name] = std::move(values); }

 private:
  const char* layer_name() const { return layer.spec.name.c_str(); }
  Plan& plan_;
  std::vector<LayerStore>& stores_;
  std::vector<MatrixStore>& matrices_;
  std::map<std::string, std::vector<double>>& costs_;
  const int slot_;
  const bool profile_, synchronous_;
  const std::vector<ConstMatView> inputs_;
};

template <class F>
void LayerRun::contribute(size_t i, const char* name, F&& f) const {
  const int producer = layer.spec.inputs[i];
  LayerStore& P = stores_[static_cast<size_t>(producer)];
  const std::string& pname = plan_of(producer).spec.name;
  const int64_t size = layer.input_sizes[i] * n;
  const float st = P.grad_set ? 1.0f : 0.0f;
  P.grad_set = true;
  op(name, [&] {
    float* target = P.grad;
    if (P.dev != store.dev) {
      target = P.grad_on.at(store.dev);
      if (st != 0.0f) devices.copy_between(P.grad, P.dev, target, store.dev, size, "gradient of '" + pname + "'");
      devices.set(store.dev);
    }
    f(MatView{target, layer.input_sizes[i], n}, st);
    if (P.dev != store.dev)
      devices.copy_between(target, store.dev, P.grad, P.dev, size, "gradient of '" + pname + "'");
  });
}

inline const float* LayerRun::acts_here(int other) const {
  LayerStore& P = stores_[static_cast<size_t>(other)];
  if (P.dev == store.dev) return P.acts;
  float* replica = P.acts_on.at(store.dev);
  devices.copy_between(P.acts, P.dev, replica, store.dev, plan_of(other).spec.outputs * n,
                       "acts of '" + plan_of(other).spec.name + "'");
  devices.set(store.dev);
  return replica;
}

// The CUDA implementation of one layer type.
struct LayerOps {
  void (*forward)(const LayerRun& run);
  void (*backward)(const LayerRun& run);  // called only when the layer needs a gradient and got one
  // Optional: device copies of the tables a layer's kernels read (conv's channel
  // tables, blur's taps), made once when the net is built, into its LayerStore.
  void (*setup)(const LayerPlan& layer, LayerStore& store, Devices& devices) = nullptr;
};

// As cpu/layer.h: each layer's file registers its implementation under its
// cfg name from a static initialiser (alexnet_cuda is an object library).
bool register_layer(const char* name, LayerOps ops);
const LayerOps* find_layer(std::string_view name);
std::vector<std::string> registered_layers();

// conv and local (conv.cu): the device copies of each input's channel table
// (build_conv_feeds) and connection table, into store.feeds and store.conv.
void setup_conv_tables(const LayerPlan& layer, LayerStore& store, Devices& devices);

// The forward of a weight layer (§1.4): product(i, y, st) per input, the first
// overwriting, the later ones adding; add_bias(y) right after the first.
template <class Product, class AddBias>
void weight_layer_forward(const LayerRun& r, Product product, AddBias add_bias) {
  const MatView y = r.out();
  for (size_t i = 0; i < r.spec().inputs.size(); ++i) {
    r.op("fprop", [&] { product(i, y, i == 0 ? 0.0f : 1.0f); });
    if (i == 0) r.op("bias", [&] { add_bias(y); });
  }
}

// The backward of a weight layer, as cpu/layer.h's: acts(i, dx, st) for each
// input that wants a gradient, weights(i, first) for each matrix that learns,
// then bias(first) when the bias learns (first: as the weights', overwrite or add).
template <class Acts, class Weights, class Bias>
void weight_layer_backward(const LayerRun& r, Acts acts, Weights weights, Bias bias) {
  for (size_t i = 0; i < r.spec().inputs.size(); ++i) {
    if (r.wants(i)) r.contribute(i, "bprop_acts", [&](MatView dx, float st) { acts(i, dx, st); });
    MatrixPlan& w = r.weight_plan(i);
    if (w.eps_base <= 0.0f) continue;  // §4.2: a frozen matrix gets no gradient
    const bool first = !w.contributed && r.starts_accumulation();
    w.contributed = true;
    r.op("bprop_weights", [&] { weights(i, first); });
  }
  MatrixPlan& b = r.bias_plan();
  if (b.eps_base <= 0.0f) return;
  const bool first = !b.contributed && r.starts_accumulation();  // as the weights' (§4.2 wupdate_freq)
  b.contributed = true;
  r.op("bprop_bias", [&] { bias(first); });
}

// The backward of a layer with one input: f(dx, st) when the input wants a gradient.
template <class F>
void single_input_backward(const LayerRun& r, F f) {
  if (r.wants(0)) r.contribute(0, "bprop", f);
}

}  // namespace alexnet::cuda
