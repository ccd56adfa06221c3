// How a layer type plugs into the CPU net (cpu/net.h): each layer's file
// (engine/cpu/<op>.cpp) holds its kernels and, at its end, its forward and
// backward on a LayerRun, registered under its cfg name. The net looks a
// layer's implementation up by name when it is built, so the net itself knows
// no layer type (STYLE.md habit 1: one layer type, one place per backend).
//
// A LayerRun is what one layer sees of the net during one pass: its Plan row
// (kernel parameters, input sizes), views of its buffers and its inputs',
// the gradients it adds into, its weight matrices, and where its costs go.
// Accumulation (engine.md §1.4): forward overwrites the layer's output (weight
// layers add their later inputs); in backward the first consumer to reach an
// input overwrites its gradient and later ones add, which target() decides.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "alexnet/core/matrix.h"
#include "alexnet/core/net_plan.h"
#include "alexnet/cpu/conv.h"

namespace alexnet::cpu {

// The storage of one weight matrix or bias (Plan::matrices has its parameters).
struct MatrixStore {
  std::vector<float> w, inc, grad;
  std::vector<float> gavg, g2avg;  // superEps's running averages (§4.4), matrices with superEps > 0 only
};

// The buffers of one layer (Plan::layers has the rest), (D, max_cases) each.
struct LayerStore {
  std::vector<float> acts, grad;
  bool grad_set = false;  // received a contribution in this backward
  std::vector<float> denoms, scratch, mean_diffs, mask, noise, blur_tmp;
  std::vector<float> draws;   // rscale: the pass's draws (1, LayerPlan::draw_count)
  std::vector<double> work;   // LayerPlan::work_bytes of working space, in doubles
  std::vector<float> tree_weights;  // treefc: the leaves' effective weights (treefc.h), (L, Din)
  ConvScratch conv_scratch;
  std::vector<ConstMatView> input_views;  // room for a layer that passes its inputs as an array (eltmax)
};

class LayerRun {
 public:
  LayerRun(Plan& plan, std::vector<LayerStore>& stores, std::vector<MatrixStore>& matrices, int layer,
           int64_t cases, PassType pass, bool inject_masks, ForwardDraws* draws,
           std::map<std::string, std::vector<double>>& costs)
      : layer(plan.layers[static_cast<size_t>(layer)]), n(cases), pass(pass), inject_masks(inject_masks),
        draws(draws), plan_(plan), stores_(stores), matrices_(matrices), costs_(costs) {}

  const LayerPlan& layer;    // spec, checked kernel parameters, input sizes
  const LayerSpec& spec() const { return layer.spec; }
  const int64_t n;           // cases in this minibatch
  const PassType pass;
  const bool inject_masks;   // hs and nrelu use their buffers' contents instead of drawing
  ForwardDraws* const draws;  // the pass's draws (forward only)

  LayerStore& store() const { return stores_[static_cast<size_t>(layer.index)]; }
  MatView out() const { return view(store().acts); }                    // (D, n)
  ConstMatView dy() const { return view(store().grad); }                // (D, n): -dE/d(out)
  MatView view(std::vector<float>& v) const { return MatView{v.data(), layer.spec.outputs, n}; }
  ConstMatView in(size_t i) const {                                     // (D_i, n)
    return acts_of(layer.spec.inputs[i]);
  }
  ConstMatView acts_of(int other) const {
    const LayerPlan& P = plan_.layers[static_cast<size_t>(other)];
    return ConstMatView(stores_[static_cast<size_t>(other)].acts.data(), P.spec.outputs, n);
  }
  const LayerPlan& plan_of(int other) const { return plan_.layers[static_cast<size_t>(other)]; }

  // Backward: whether input i needs a gradient, and its gradient buffer with
  // the scale_targets to use (0: this is the first contribution, overwrite).
  bool wants(size_t i) const { return plan_of(layer.spec.inputs[i]).needs_grad; }
  MatView target(size_t i, float* scale_targets) const {
    LayerStore& P = stores_[static_cast<size_t>(layer.spec.inputs[i])];
    *scale_targets = P.grad_set ? 1.0f : 0.0f;
    P.grad_set = true;
    return MatView{P.grad.data(), layer.input_sizes[i], n};
  }

  // Weight layers: matrix i (or the bias) with its storage.
  MatrixPlan& weight_plan(size_t i) const { return plan_.matrices[static_cast<size_t>(layer.weights[i])]; }
  MatrixStore& weight(size_t i) const { return matrices_[static_cast<size_t>(layer.weights[i])]; }
  MatrixPlan& bias_plan() const { return plan_.matrices[static_cast<size_t>(layer.bias)]; }
  // 1/N for the weight gradients (§1.5: N = F x minibatch size when wupdate_freq F > 1).
  float grad_scale() const { return plan_.grad_scale(n); }
  // Whether this backward starts an accumulation over minibatches (§4.2 wupdate_freq).
  bool starts_accumulation() const { return plan_.starts_accumulation(); }
  MatrixStore& bias() const { return matrices_[static_cast<size_t>(layer.bias)]; }

  // Matrix i (its weights, increment or gradient) and the biases as (rows, cols)
  // row-major views, the release's layouts for conv and local (fc reads its
  // Fortran matrix transposed, see fc.cpp).
  MatView matrix(size_t i, std::vector<float> MatrixStore::*buffer) const {
    const MatrixPlan& w = weight_plan(i);
    return MatView{(weight(i).*buffer).data(), w.rows, w.cols};
  }
  MatView bias_matrix(std::vector<float> MatrixStore::*buffer) const {
    return MatView{(bias().*buffer).data(), bias_plan().rows, bias_plan().cols};
  }

  void set_costs(std::vector<double> values) const { costs_[layer.spec.name] = std::move(values); }

 private:
  Plan& plan_;
  std::vector<LayerStore>& stores_;
  std::vector<MatrixStore>& matrices_;
  std::map<std::string, std::vector<double>>& costs_;
};

// The CPU implementation of one layer type.
struct LayerOps {
  void (*forward)(const LayerRun& run);
  void (*backward)(const LayerRun& run);  // called only when the layer needs a gradient and got one
};

// Registers `ops` under the cfg type `name`; each layer's file calls it from a
// static initialiser (the library is an object library, so every file is linked).
bool register_layer(const char* name, LayerOps ops);
// nullptr when no file registered `name`.
const LayerOps* find_layer(std::string_view name);
// Every registered name, for the test that the CPU engine runs every row of the table.
std::vector<std::string> registered_layers();

}  // namespace alexnet::cpu

namespace alexnet::cpu {

// The forward of a weight layer (conv, local, fc; §1.4): product(i, y, st) adds
// input i's product into the output y, the first overwriting (st 0) and the
// later ones adding (st 1); add_bias(y) runs right after the first.
template <class Product, class AddBias>
void weight_layer_forward(const LayerRun& r, Product product, AddBias add_bias) {
  const MatView y = r.out();
  for (size_t i = 0; i < r.spec().inputs.size(); ++i) {
    product(i, y, i == 0 ? 0.0f : 1.0f);
    if (i == 0) add_bias(y);
  }
}

// The backward of a weight layer: per input, acts(i, dx, st) into the input's
// gradient when it wants one, then weights(i, first) when the matrix learns
// (§4.2: a frozen matrix gets no gradient; `first` is false for the later uses
// of a matrix shared through weightSource, which add to what the first formed,
// and for every minibatch after the first of a wupdate_freq accumulation);
// then bias(first) when the bias learns.
template <class Acts, class Weights, class Bias>
void weight_layer_backward(const LayerRun& r, Acts acts, Weights weights, Bias bias) {
  for (size_t i = 0; i < r.spec().inputs.size(); ++i) {
    if (r.wants(i)) {
      float st = 0.0f;
      const MatView dx = r.target(i, &st);
      acts(i, dx, st);
    }
    MatrixPlan& w = r.weight_plan(i);
    if (w.eps_base <= 0.0f) continue;
    const bool first = !w.contributed && r.starts_accumulation();
    w.contributed = true;
    weights(i, first);
  }
  MatrixPlan& b = r.bias_plan();
  if (b.eps_base <= 0.0f) return;
  const bool first = !b.contributed && r.starts_accumulation();
  b.contributed = true;
  bias(first);
}

// The backward of a layer with one input: f(dx, st) when the input wants a gradient.
template <class F>
void single_input_backward(const LayerRun& r, F f) {
  if (!r.wants(0)) return;
  float st = 0.0f;
  const MatView dx = r.target(0, &st);
  f(dx, st);
}

}  // namespace alexnet::cpu
