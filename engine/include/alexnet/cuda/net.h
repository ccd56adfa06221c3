// The CUDA net (docs/cuda.md): the same LayerSpec input and the same operations
// as alexnet::Net (alexnet/net.h), with every buffer in GPU memory for the whole
// step. Host <-> device copies happen only for the minibatch data in, the costs
// out, dropout masks and nrelu noise in (drawn on the host by the CPU net's
// generator, so both nets see the same draws for one seed), and the explicit
// download/upload of a buffer.
//
// Placement (engine.md §6): layer L lives on device spec.gpu % devices (data
// layers and layers without gpu= on device 0). An input on another device is
// copied to a replica on the consumer's device in forward; in backward a
// consumer on another device works on a replica of the producer's gradient and
// copies it back, so every kernel computes exactly what it computes on one
// device: the numbers are the same with one GPU or several.
//
// This header is plain C++ (no CUDA headers), so that the bindings compile
// without the toolkit's include paths.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "alexnet/net.h"

namespace alexnet::cuda {

// Opens cuBLAS (engine/cuda/gemm.cu): `candidates` are library paths tried
// first (the Python side passes the nvidia-cublas wheel's). Returns false with
// the reasons in *message when none loads or this build has no cuBLAS.
bool load_cublas_library(const std::vector<std::string>& candidates, std::string* message);

class CudaNet {
 public:
  // num_gpus: devices to use (0: every visible one; more than visible: all of
  // them). gemm: "auto" (cuBLAS if this build has it, and it must load),
  // "cublas", or "builtin". Throws std::invalid_argument naming the layer for a
  // bad spec (the CPU net's checks), std::runtime_error for CUDA failures.
  CudaNet(std::vector<LayerSpec> specs, int64_t max_cases, uint64_t seed, int num_gpus = 0,
          const std::string& gemm = "auto");
  ~CudaNet();
  CudaNet(const CudaNet&) = delete;
  CudaNet& operator=(const CudaNet&) = delete;

  void set_data(int data_idx, const float* values, int64_t rows, int64_t cases);
  int64_t cases() const { return cases_; }
  void reseed(uint64_t seed);
  void set_progress(double progress);
  void forward(PassType pass);  // returns with the costs on the host (synchronises)
  void backward();              // asynchronous
  void update();                // asynchronous
  void synchronize();           // waits for every device
  const std::map<std::string, std::vector<double>>& costs() const { return costs_; }

  bool inject_masks = false;  // hs/nrelu use the uploaded mask/noise buffers instead of drawing
  // Profile mode: CUDA events around every operation; layer_seconds {layer:
  // [forward, backward, update]} and kernel_seconds {"<type>:<operation>": s},
  // summed over calls, read after each pass.
  bool profile = false;
  std::map<std::string, std::vector<double>> layer_seconds;
  std::map<std::string, double> kernel_seconds;
  // Synchronise after every operation and check for faults there, naming the
  // layer and operation (slow; for finding a fault). ALEXNET_CUDA_SYNC=1 sets it.
  bool synchronous = false;

  // Buffers, the CPU net's views (Net::acts ... Net::noise) by kind name:
  // acts, acts_grad, weights, weight_inc, weight_grad, biases, bias_inc,
  // bias_grad, mask, noise. fortran: fc weights, the release's (Din, Dout)
  // Fortran-order matrix (the memory holds it as (Dout, Din) row-major).
  enum class BufferKind { Acts, ActsGrad, Weights, WeightInc, WeightGrad, Biases, BiasInc, BiasGrad, Mask, Noise };
  static BufferKind buffer_kind(const std::string& name);  // throws std::invalid_argument
  struct BufferInfo {
    int64_t rows = 0, cols = 0;
    bool fortran = false;
  };
  BufferInfo buffer_info(BufferKind kind, int layer, int input) const;
  void download(BufferKind kind, int layer, int input, float* host);        // rows·cols floats
  void upload(BufferKind kind, int layer, int input, const float* host);    // rows·cols floats

  int layer_index(const std::string& name) const;
  const LayerSpec& spec(int layer) const;
  int num_layers() const;
  int layer_device(int layer) const;
  int devices() const;
  std::string gemm_name() const;
  int64_t allocated_bytes() const;             // what this net allocated on its devices
  std::vector<int64_t> device_used_bytes() const;  // cudaMemGetInfo: total − free, per device used

  struct Impl;  // defined in engine/cuda/net.cpp (public only so that its helpers there can name it)

 private:
  std::unique_ptr<Impl> impl_;
  int64_t cases_ = 0;
  std::map<std::string, std::vector<double>> costs_;
};

}  // namespace alexnet::cuda
