// The one interface of both nets (STYLE.md habit 13): cpu::CpuNet
// (alexnet/cpu/net.h) runs a network on the host, cuda::CudaNet
// (alexnet/cuda/net.h) on GPUs, and whatever drives them (the bindings, the
// Python harness) sees the same methods, the same buffer kinds and the same
// upload and download.
//
// Both build a Plan (net_plan.h) first: a bad spec fails there, with the same
// message on both, before any buffer or device is touched. Both draw masks,
// noise and schedule noise on the host from one generator in one order, so one
// seed gives both nets the same draws.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "alexnet/core/layer_spec.h"
#include "alexnet/core/net_plan.h"

namespace alexnet {

class Net {
 public:
  virtual ~Net() = default;
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;

  // "cpu" or "cuda".
  virtual const char* device() const = 0;
  // What runs it, for logs and reports: {"device": ..., and the backend's own
  // facts: the CPU's BLAS, or CUDA's GEMM and device count}.
  virtual std::map<std::string, std::string> info() const = 0;

  // Copy matrix `data_idx` of the minibatch, (D, n) case fastest, from host
  // memory into the data layers that read it.
  virtual void set_data(int data_idx, const float* values, int64_t rows, int64_t cases) = 0;
  int64_t cases() const { return cases_; }

  // Restart the generator (dropout masks, nrelu noise, schedule noise). The
  // harness reseeds before every batch from (seed, epoch, batch), so that a
  // resumed run draws what the uninterrupted run drew.
  void reseed(uint64_t seed) { rng_.seed(seed); }
  // The learning rates of the coming step: each matrix's schedule at progress
  // p in [0, 1] (§4.3). fc and local use them in backward, the rest in update.
  void set_progress(double progress) { plan_.schedule_rates(progress, rng_); }

  virtual void forward(PassType pass) = 0;  // returns with the costs on the host
  // Runs again, after a forward, only `layer` and the layers that depend on it
  // (the users of the matrices it owns, and every consumer of those, in
  // execution order), with the last forward's pass: what a forward would give
  // after a change to the layer's weights or biases, bit for bit, since each
  // layer runs the same code on the same inputs (only this layer's matrices may
  // have changed since that forward: new data, other weights or an update need a
  // whole forward; a backward changes no output). The other layers' outputs and
  // the costs of cost layers it does not reach stay as they were. For the
  // gradient check (engine.md §8): one weight moves, the layers below it cannot
  // change. It draws nothing: std::logic_error when a layer it would run holds
  // drawn numbers (hs, pool=rand, nrelu, rscale) and inject_masks is false, or
  // when no forward came after set_data.
  virtual void forward_from(int layer) = 0;
  virtual void backward() = 0;
  // §4.2, with the rates of set_progress (the base rates until it is called).
  // Called once per minibatch: with update_freq F > 1 it applies the update on
  // every F-th call only, and the calls between count the minibatches whose
  // gradients backward accumulated.
  virtual void update() = 0;
  // wupdate_freq F (§4.2, §1.5): gradients and increments accumulate over F
  // minibatches, divided by F x the net's minibatch size, momentum applied on
  // the first. Set between updates (std::invalid_argument otherwise, or F < 1).
  void set_update_freq(int freq) { plan_.set_update_freq(freq); }
  int update_freq() const { return plan_.update_freq; }
  // Minibatches accumulated since the last applied update (0 ... F-1); with the
  // weight and bias buffers (increments, gradients, superEps averages) the whole
  // state of a run, so that a checkpoint taken mid-accumulation resumes exactly.
  int accumulated() const { return plan_.accumulated; }
  void set_accumulated(int minibatches) { plan_.set_accumulated(minibatches); }
  // The N of 1/N for F = 1 (0: this forward's cases): a data-parallel share of a
  // minibatch of N cases sets N, so that the shares' gradients add up (Plan::grad_cases).
  int64_t grad_cases() const { return plan_.grad_cases; }
  void set_grad_cases(int64_t cases) {
    if (cases < 0) throw std::invalid_argument("grad_cases: must be >= 0 (got " + std::to_string(cases) + ")");
    plan_.grad_cases = cases;
  }
  virtual void synchronize() {}  // waits for work a backend runs asynchronously (CUDA)

  // Costs of the last forward, per cost layer: logreg [sum -log p, top-1 errors,
  // top-k errors], others [cost]. Sums over the cases, as the release reported.
  const std::map<std::string, std::vector<double>>& costs() const { return costs_; }

  // When true, hs layers use the masks already in their mask buffers, and nrelu
  // layers the noise in theirs, instead of drawing new ones (engine and port
  // replay the same draw).
  bool inject_masks = false;

  // When true, each pass adds every layer's seconds to layer_seconds:
  // {layer: [forward, backward, update]}. For the benchmarks.
  bool profile = false;
  std::map<std::string, std::vector<double>> layer_seconds;

  // ---- buffers ----
  const Plan& plan() const { return plan_; }
  int num_layers() const { return plan_.num_layers(); }
  const LayerSpec& spec(int layer) const { return plan_.layers.at(static_cast<size_t>(layer)).spec; }
  int layer_index(const std::string& name) const { return plan_.find(name); }  // std::out_of_range if unknown

  // Shape of a buffer: acts and acts_grad (D, cases); masks and noise
  // (D, max_cases), of which a forward on n cases uses the first D*n values as
  // a (D, n) matrix; (0, 0) where the layer has none.
  BufferInfo buffer_info(BufferKind kind, int layer, int input) const {
    return plan_.buffer_info(kind, layer, input, cases_);
  }
  // Copy a buffer to or from host memory of rows*cols floats, in the memory
  // order of buffer_info (fortran: column-major).
  virtual void download(BufferKind kind, int layer, int input, float* host) = 0;
  virtual void upload(BufferKind kind, int layer, int input, const float* host) = 0;
  // The buffer itself when it lives in host memory (the CPU net), so that a
  // caller can view it without a copy; nullptr otherwise.
  virtual float* host_data(BufferKind kind, int layer, int input) {
    (void)kind, (void)layer, (void)input;
    return nullptr;
  }

 protected:
  // Checks the specs (the Plan) before a derived constructor allocates anything.
  Net(std::vector<LayerSpec> specs, int64_t max_cases, uint64_t seed) : plan_(std::move(specs), max_cases) {
    rng_.seed(seed);
  }

  Plan plan_;
  std::mt19937_64 rng_;
  PassType pass_ = PassType::Test;
  int64_t cases_ = 0;
  std::map<std::string, std::vector<double>> costs_;
  bool forwarded_ = false;  // a forward ran since the last set_data (forward_from's precondition)

  // forward_from's layers: 1 for `layer`, the users of its matrices and their
  // consumers, transitively (inputs are always earlier layers, so one sweep).
  // Checks the preconditions above.
  std::vector<char> layers_from(int layer) const {
    if (!forwarded_) throw std::logic_error("forward_from before forward");
    const auto& layers = plan_.layers;
    if (layer < 0 || layer >= num_layers()) throw std::out_of_range("forward_from: no layer " + std::to_string(layer));
    std::vector<char> run(layers.size(), 0);
    run[static_cast<size_t>(layer)] = 1;
    for (size_t li = 0; li < layers.size(); ++li) {
      const LayerPlan& L = layers[li];
      for (int m : L.weights)
        if (m >= 0 && plan_.matrices[static_cast<size_t>(m)].layer == layer) run[li] = 1;
      for (int in : L.spec.inputs)
        if (run[static_cast<size_t>(in)]) run[li] = 1;
      // Whatever holds a drawn buffer (hs masks, pool=rand picks, nrelu noise, rscale's draws)
      // may draw in this pass: refused unless injected, whatever the pass.
      const bool draws = L.has_noise || L.draw_count > 0 || L.has_mask;
      if (run[li] && draws && !inject_masks)
        throw std::logic_error("forward_from: layer '" + L.spec.name +
                               "' would draw new numbers; set inject_masks to hold the last draws");
    }
    return run;
  }
};

}  // namespace alexnet
