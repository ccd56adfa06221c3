// The net object: a whole minibatch forward, backward and update in C++, with
// no call back into Python per layer (engine.md §1.4, §1.5, §4).
//
// It is built from a list of LayerSpec, plain data that the Python side fills
// from the cfg reader's parsed network (alexnet_replay/engine.py), in an
// execution order (every layer after its inputs). The net owns every buffer:
// outputs and their gradients (D, N) case fastest, weights, increments and
// gradients in the release's layouts (§1.3), norm denominators, dropout masks.
// All of it is allocated when the net is built, for `max_cases` cases, so a
// training step allocates nothing after the first minibatch.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "alexnet/cpu/schedule.h"

namespace alexnet {

// One input of a conv or local layer (engine.md §3.4).
struct ConvInputSpec {
  int64_t channels = 0;
  int64_t img_size = 0;
  int64_t filter_size = 0;
  int64_t padding = 0;  // >= 0 as written in the cfg
  int64_t stride = 1;
  int64_t groups = 1;
  int64_t filter_channels = 0;
  std::vector<int32_t> conns;  // random sparse connectivity, (G*Cg); empty = dense
};

struct LayerSpec {
  std::string name;
  std::string type;         // the cfg type: "conv", "fc", "pool", ..., "cost.logreg"
  std::vector<int> inputs;  // indices of earlier specs
  int64_t outputs = 0;      // D, values per case
  int data_idx = -1;        // data layers: which matrix of the minibatch
  int gpu = -1;             // the cfg's gpu= (-1: none, data layers); the CUDA net places the layer on
                            // device gpu % devices (engine.md §6); the CPU net ignores it

  // conv, local
  std::vector<ConvInputSpec> conv;
  int64_t filters = 0;  // F, all groups together
  int64_t modules_x = 0;
  int64_t partial_sum = 0;
  bool shared_biases = true;

  // weight layers (conv, local, fc): one entry per input
  std::vector<int64_t> weight_rows, weight_cols;  // the release's matrix shape per input
  std::vector<int> share_layer, share_index;      // weightSource: (spec index, matrix) or -1
  std::vector<float> eps_w, mom_w, wc, wball_normed, wcnorm_min, wcnorm_max;
  std::vector<Schedule> sched_w;
  int64_t bias_rows = 0, bias_cols = 0;
  float eps_b = 0.0f, mom_b = 0.0f;
  Schedule sched_b;

  // pool, nailbed, blur, href, norms: image geometry of the input
  std::string pool;
  int64_t channels = 0, img_size = 0, size_x = 0, start = 0, stride = 1, outputs_x = 0;
  int64_t size = 0;  // norms
  float alpha = 0.0f, beta = 0.0f, min_div = 1.0f;  // alpha already divided by size or size^2 (§3.7)
  bool blocked = false;
  std::vector<float> filter;  // blur taps

  // neuron
  std::string neuron;
  float neuron_a = 0.0f, neuron_b = 0.0f;

  // hs (dropout)
  float keep = 1.0f;
  bool enable = true;

  // eltsum
  std::vector<float> coeffs;

  // cost layers
  float coeff = 1.0f;
  int topk = 1;
};

// engine.md §1.5 pass types. Dropout draws masks only in Train; Test and
// GradientCheck multiply by keep (§3.16: "enable and PASS_TRAIN").
enum class PassType { Train, Test, GradientCheck };

class Net {
 public:
  // Throws std::invalid_argument naming the layer when a spec is inconsistent
  // or its type is not supported, so that bad input fails here, never in a step.
  Net(std::vector<LayerSpec> specs, int64_t max_cases, uint64_t seed);
  ~Net();
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;

  // Copy matrix `data_idx` of the minibatch, (D, n) case fastest, into the data layers.
  void set_data(int data_idx, const float* values, int64_t rows, int64_t cases);
  int64_t cases() const { return cases_; }

  // Restart the net's generator (dropout masks, nrelu noise, schedule noise).
  // The harness reseeds before every batch from (seed, epoch, batch), so that a
  // resumed run draws what the uninterrupted run drew.
  void reseed(uint64_t seed);

  // The learning rates of the coming step: each matrix's schedule at progress
  // p in [0, 1] (§4.3). fc and local use them in backward, the rest in update.
  void set_progress(double progress);
  void forward(PassType pass);
  void backward();
  void update();  // §4.2, with the rates of set_progress (the base rates until it is called)

  // Costs of the last forward, per cost layer: logreg [sum -log p, top-1 errors,
  // top-k errors], others [cost]. Sums over the cases, as the release reported.
  const std::map<std::string, std::vector<double>>& costs() const { return costs_; }

  // When true, hs layers use the masks already in their mask buffers, and nrelu
  // layers the noise in theirs, instead of drawing new ones (engine and port
  // replay the same draw).
  bool inject_masks = false;

  // When true, forward and backward add each layer's wall time (seconds) to
  // layer_seconds: {layer: [forward, backward]}. For the benchmarks.
  bool profile = false;
  std::map<std::string, std::vector<double>> layer_seconds;

  struct Buffer {  // a view of one of the net's arrays, for the bindings
    float* data = nullptr;
    int64_t rows = 0, cols = 0;
    bool fortran = false;  // fc weights: the release's (Din, Dout) Fortran-order matrix
  };
  int layer_index(const std::string& name) const;
  const LayerSpec& spec(int layer) const;
  int num_layers() const;
  Buffer acts(int layer);        // (D, cases)
  Buffer acts_grad(int layer);   // (D, cases): -dE/d(output), what the layer received
  Buffer weights(int layer, int input);
  Buffer weight_inc(int layer, int input);
  Buffer weight_grad(int layer, int input);  // conv: G of the last backward; fc/local: empty (folded into inc)
  Buffer biases(int layer);
  Buffer bias_inc(int layer);
  Buffer bias_grad(int layer);
  // hs masks and nrelu N(0,1) draws: buffers of (D, max_cases) floats, of which a
  // forward on n cases uses (and draws into) the first D*n as a (D, n) matrix.
  Buffer mask(int layer);
  Buffer noise(int layer);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t cases_ = 0;
  std::map<std::string, std::vector<double>> costs_;
};

}  // namespace alexnet
