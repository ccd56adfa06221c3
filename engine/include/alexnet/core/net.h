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
  virtual void backward() = 0;
  virtual void update() = 0;  // §4.2, with the rates of set_progress (the base rates until it is called)
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
};

}  // namespace alexnet
