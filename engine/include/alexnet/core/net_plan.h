// The net plan: what both nets (cpu/net.h, cuda/net.h) know of a network
// before and beside their buffers. Built from a list of LayerSpec, it checks
// every spec once (STYLE.md habit 14), for both backends: a bad spec throws
// std::invalid_argument("layer '<name>': <field>: <why>") here, before any
// buffer or device is touched, and can never crash a kernel or run silently.
//
// It then holds, per layer, the checked kernel parameters, the graph (inputs,
// consumers, which layers need a gradient, which softmax takes the fused
// logreg gradient), the learning parameters of every weight matrix and bias
// with the rates of the coming step, the update each matrix gets (§4.2), the
// shapes of every buffer a net exposes, and the draws of a forward pass.
// Device-independent: no CUDA, no BLAS.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "alexnet/core/label_tree.h"
#include "alexnet/core/layer_spec.h"
#include "alexnet/core/layer_types.h"
#include "alexnet/core/op_params.h"
#include "alexnet/core/schedule.h"

namespace alexnet {

// One weight matrix (input `input` of layer `layer`) or bias vector (input -1):
// its shape in the release's layout, its learning parameters, and the rate of
// the coming step. Each net keeps the storage, indexed like Plan::matrices.
struct MatrixPlan {
  int layer = -1;
  int input = -1;  // -1: the layer's biases
  int64_t rows = 0, cols = 0;
  bool fortran = false;  // fc weights: the release's (Din, Dout) Fortran-order matrix
  bool has_grad = false; // a gradient buffer: conv weights and biases (fc and local fold it into inc);
                         // update() forms inc from it
  float eps_base = 0.0f, mom = 0.0f, wc = 0.0f, wball = 0.0f, norm_min = 0.0f, norm_max = 0.0f;
  Schedule sched;
  float eps = 0.0f;          // scheduled rate of the coming step (§4.3)
  float super_eps = 0.0f;    // §4.4: > 0 (weight matrices only): the RMS-normalised update, from a gradient
                             // buffer (has_grad) and the running averages Gavg, G2avg (buffer kinds
                             // weight_gavg, weight_g2avg), instead of inc <- mom*inc + eps*G
  bool contributed = false;  // a gradient was formed in this backward (shared matrices add after the first)
  int64_t size() const { return rows * cols; }
};

// What update() does to one owned matrix (§4.2), in the order both nets run it:
// inc <- mom*inc + eps*G for the matrices with a gradient buffer (conv weights
// and every bias: the "useGrad" path; fc and local formed inc in backward),
// then decay by the matrix's wc (0 for biases) and W += inc, then the constraints.
struct UpdateRule {
  int matrix = -1;            // index into Plan::matrices
  bool filter_spread = false; // conv: wcNormMin/Max on the columns (§3.4)
  bool tree = false;          // treefc weights: the node-wise rule of §3.3 (the layer's LayerPlan::tree)
                              // instead of increment, decay and step
  // Max-norm (wball, §3.2): `blocks` groups, `block_stride` floats apart, each of
  // `vectors` vectors of `length`, vector v element i at v*vector_stride + i*element_stride.
  int64_t blocks = 0, block_stride = 0, vectors = 0, length = 0, vector_stride = 0, element_stride = 0;
};

struct LayerPlan {
  LayerSpec spec;
  const LayerType* type = nullptr;  // its row in the table of layer_types.h
  int index = -1;                   // its position in Plan::layers
  std::vector<int64_t> input_sizes;  // D of each input
  std::vector<int> consumers;
  bool needs_grad = false;    // something at or below it learns
  bool fused_logreg = false;     // softmax whose only consumer is a cost.logreg reading it (§3.12)
  bool fused_crossent2 = false;  // logistic neuron whose only consumer is a cost.crossent2 reading it (§3.11)
  // It takes its cost's gradient directly (the fused kernels), so backward runs it
  // though no gradient reached its output; the cost gives it none.
  bool takes_fused_gradient() const { return fused_logreg || fused_crossent2; }
  std::vector<int> weights;   // per input: index into Plan::matrices (another layer's with weightSource)
  int bias = -1;              // index into Plan::matrices, or -1

  bool is(const char* type_name) const { return spec.type == type_name; }

  // Checked kernel parameters of its type (the others stay default).
  std::vector<ConvParams> conv;  // conv, local: one per input; conns point into spec.conv[i].conns
  PoolParams pool;
  SpatialNormParams spatial;
  CrossMapNormParams crossmap;
  NeuronParams neuron;
  NailbedParams nailbed;
  BlurParams blur;  // filter points into spec.filter
  HrefParams href;
  ResizeParams resize;  // resize
  ColorParams color;    // rgb2yuv, rgb2lab
  RscaleParams rscale;  // rscale
  TicaParams tica;      // cost.tica
  MsmParams msm;        // cost.msm
  LabelTree tree;  // treefc

  // Buffers besides its output and output gradient, each (D, max_cases) floats.
  bool has_denoms = false, has_scratch = false, has_mean_diffs = false;
  bool has_mask = false;   // hs; pool=rand without doMax: its picks (op_params.h pool_rand_pick)
  bool has_noise = false;  // nrelu
  bool has_blur_tmp = false;
  int64_t draw_count = 0;  // rscale: draws per pass, its "draws" buffer (1, draw_count)
  int64_t work_bytes = 0;  // working space of its kernels (cost.tica's A, cost.msm's lattices), allocated once
  // Cost layers: how many float64 terms its cost adds up; a backend that forms
  // them elsewhere before summing them on the host stages them (CUDA: device scratch).
  int64_t cost_terms = 0;
};

// The arrays a net exposes (engine.md §1.2, §1.3 layouts).
enum class BufferKind {
  Acts, ActsGrad, Weights, WeightInc, WeightGrad, Biases, BiasInc, BiasGrad, Mask, Noise, Draws,
  WeightGavg, WeightG2avg  // §4.4's running averages, (0, 0) unless the matrix has superEps > 0
};
// "acts", "acts_grad", "weights", "weight_inc", "weight_grad", "biases",
// "bias_inc", "bias_grad", "mask", "noise", "draws", "weight_gavg", "weight_g2avg";
// throws std::invalid_argument otherwise.
BufferKind buffer_kind(const std::string& name);
const char* buffer_kind_name(BufferKind kind);

struct BufferInfo {
  int64_t rows = 0, cols = 0;  // (0, 0): the layer has no such buffer
  bool fortran = false;        // fc weights and increments: column-major (Din, Dout)
  int matrix = -1;             // weights, increments, gradients: index into Plan::matrices
};

// How a weight layer's matrices look to its kernels: given by its plan
// function (layer_types.cpp) to Plan::plan_weights.
struct WeightLayout {
  std::vector<int64_t> rows, cols;  // per input, the matrix shape the kernels index with
  const char* shape_rule = "";      // e.g. "fc weight matrix must be (inputs, outputs)", for messages
  bool fortran = false;             // fc: the release's (Din, Dout) Fortran-order matrix
  bool gradient = false;            // a gradient buffer, and inc <- mom*inc + eps*G in update (conv)
  bool filter_spread = false;       // wcNormMin/Max on the columns (conv, §3.4)
  std::vector<UpdateRule> max_norm; // per input: the max-norm geometry (blocks ... element_stride)
  int64_t biases = 0;               // how many biases the layer has
};

class Plan {
 public:
  // Checks every spec (see the top of this file); max_cases >= 1.
  Plan(std::vector<LayerSpec> specs, int64_t max_cases);
  // The parameter structs point into the specs held here: never copied or moved.
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  std::vector<LayerPlan> layers;
  std::vector<MatrixPlan> matrices;   // layer order; each layer's weights, then its bias
  std::vector<UpdateRule> update_rules;  // one per owned matrix, in matrices' order
  int64_t max_cases = 0;

  // §4.2 wupdate_freq F (driver.md --wupdate-freq): gradients and increments
  // accumulate over F minibatches and update() applies them on the F-th; the
  // others only count. `accumulated` is how many minibatches the buffers hold
  // since the last applied update (0 ... F-1): the state a checkpoint keeps.
  int update_freq = 1;
  int accumulated = 0;
  // Data parallel (harness/distributed.py): a process that computes one share of a
  // minibatch of N cases divides by that N, so that the shares' gradients sum to the
  // whole minibatch's; 0 (the default): the cases of this forward.
  int64_t grad_cases = 0;
  // §1.5: the N that gradients are divided by: the minibatch's cases n (or
  // grad_cases when set) when F = 1, else F x max_cases (the nominal minibatch
  // size, even for a short one).
  float grad_scale(int64_t n) const {
    return 1.0f / static_cast<float>(update_freq > 1 ? static_cast<int64_t>(update_freq) * max_cases
                                                     : (grad_cases > 0 ? grad_cases : n));
  }
  // Whether this backward starts an accumulation (always when F = 1): the first
  // contribution to a matrix then overwrites its gradient, or applies momentum to
  // its increment (fc, local); later ones add.
  bool starts_accumulation() const { return accumulated == 0; }
  // update()'s count: true when the update is due (the F-th minibatch), which
  // restarts the count; false while the accumulation goes on.
  bool update_due() {
    if (++accumulated < update_freq) return false;
    accumulated = 0;
    return true;
  }
  // Checked setters (std::invalid_argument): F >= 1, set between updates
  // (accumulated 0); 0 <= accumulated < F.
  void set_update_freq(int freq);
  void set_accumulated(int minibatches);

  int num_layers() const { return static_cast<int>(layers.size()); }
  // Throws std::out_of_range("no layer named '<name>'").
  int find(const std::string& name) const;

  // Shape of a buffer with `cases` columns for acts and gradients; throws
  // std::out_of_range for a layer index, or an input of a layer without it.
  BufferInfo buffer_info(BufferKind kind, int layer, int input, int64_t cases) const;

  // set_data's checks: the case count, and a data layer's rows; returns the
  // data layers that read matrix data_idx (throws when there is none).
  std::vector<int> data_layers(int data_idx, int64_t rows, int64_t cases) const;

  // §4.3: every owned matrix's rate at progress p, times 1 + |z|*noiseStdev
  // with one draw per matrix from `rng`, in matrices' order.
  void schedule_rates(double progress, std::mt19937_64& rng);
  // Clears the `contributed` marks before a backward.
  void begin_backward();
  // Whether update() changes matrix m: it learns, and, for a weight matrix, this
  // backward formed its gradient (a layer that no gradient reached, or the later
  // users of a shared matrix, form none). A bias updates whenever it learns, from
  // the gradient its buffer holds, as the engine always did.
  bool updates(const MatrixPlan& m) const { return m.eps_base > 0.0f && (m.contributed || m.input < 0); }

  // For the plan functions of weight layers (layer_types.cpp): checks the
  // spec's weight shapes, sharing and learning parameters against `layout`,
  // and adds the layer's matrices, biases and update rules.
  void plan_weights(LayerPlan& L, const WeightLayout& layout);

 private:
  std::map<std::string, int> index_;
  void check_and_plan(LayerPlan& L, int li);
  void mark_gradients();
};

// Throws std::invalid_argument("layer '<name>': <why>").
[[noreturn]] void fail_layer(const LayerSpec& s, const std::string& why);

// Runs one of op_params.h's checks, naming the layer in its message.
template <class F>
void checked(const LayerSpec& s, F&& check) {
  try {
    check();
  } catch (const std::invalid_argument& e) {
    fail_layer(s, e.what());
  }
}

// The draws of one forward pass, made on the host from the net's generator, so
// that both nets draw the same numbers in the same order for one seed. One
// object per pass: the normal distribution keeps a spare value between calls,
// so layers after the first continue its sequence.
class ForwardDraws {
 public:
  explicit ForwardDraws(std::mt19937_64& rng) : rng_(rng) {}
  // nrelu (§3.11): one N(0,1) draw per element, every pass.
  void normal(float* out, int64_t count);
  // hs (§3.16): 1 with probability keep (U in (0, 1], kept when U < keep), else 0.
  void dropout_mask(float* out, int64_t count, float keep);
  // rscale (§3.22): count draws U in [0, 1), which rscale_draw (op_params.h) maps.
  void uniform(double* out, int64_t count);
  // pool=rand without doMax (§3.6, a reconstruction): one pick per output element of
  // n_cases cases, (C·OX·OX, n_cases) case fastest, in that order (op_params.h pool_rand_pick).
  void pool_picks(const PoolParams& p, float* out, int64_t n_cases);

 private:
  std::mt19937_64& rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  std::normal_distribution<float> normal_{0.0f, 1.0f};
};

}  // namespace alexnet
