// The CUDA net (docs/cuda.md): the one net interface (alexnet/core/net.h) with
// every buffer in GPU memory for the whole step. Host <-> device copies happen
// only for the minibatch data in, the costs out, dropout masks and nrelu noise
// in (drawn on the host by the base's generator, in the CPU net's order, so both
// nets see the same draws for one seed), and explicit download/upload.
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

#include "alexnet/core/net.h"

namespace alexnet::cuda {

// Number of CUDA devices the runtime sees; 0 without a GPU or driver, with the
// reason in *error (engine/cuda/runtime_info.cu).
int device_count(std::string* error);

// Opens cuBLAS (engine/cuda/gemm.cu): `candidates` are library paths tried
// first (the Python side passes the nvidia-cublas wheel's). Returns false with
// the reasons in *message when none loads or this build has no cuBLAS.
bool load_cublas_library(const std::vector<std::string>& candidates, std::string* message);

// The layer types this backend has an implementation of (engine/cuda/layer.h).
std::vector<std::string> implemented_layer_types();

class CudaNet final : public Net {
 public:
  // The Plan checks the specs first, with the CPU net's messages
  // (std::invalid_argument naming the layer), before any device is touched;
  // then num_gpus devices are used (0: every visible one; more than visible:
  // all of them). gemm: "auto" (cuBLAS if this build has it, and it must
  // load), "cublas", or "builtin". CUDA failures: std::runtime_error.
  CudaNet(std::vector<LayerSpec> specs, int64_t max_cases, uint64_t seed, int num_gpus = 0,
          const std::string& gemm = "auto");
  ~CudaNet() override;

  const char* device() const override { return "cuda"; }
  std::map<std::string, std::string> info() const override;
  void set_data(int data_idx, const float* values, int64_t rows, int64_t cases) override;
  void forward(PassType pass) override;  // returns with the costs on the host (synchronises)
  void forward_from(int layer) override;  // as forward (synchronises)
  void backward() override;              // asynchronous
  void update() override;                // asynchronous
  void synchronize() override;           // waits for every device
  void download(BufferKind kind, int layer, int input, float* host) override;
  void upload(BufferKind kind, int layer, int input, const float* host) override;

  // Profile mode also fills kernel_seconds {"<type>:<operation>": s}, summed
  // over calls, read after each pass (CUDA events around every operation).
  std::map<std::string, double> kernel_seconds;
  // Synchronise after every operation and check for faults there, naming the
  // layer and operation (slow; for finding a fault). ALEXNET_CUDA_SYNC=1 sets it.
  bool synchronous = false;

  int layer_device(int layer) const;
  int devices() const;
  std::string gemm_name() const;
  int64_t allocated_bytes() const;                 // what this net allocated on its devices
  std::vector<int64_t> device_used_bytes() const;  // cudaMemGetInfo: total − free, per device

 private:
  struct State;
  std::unique_ptr<State> state_;
  void run_layers(PassType pass, const std::vector<char>* only, ForwardDraws* draws);
};

}  // namespace alexnet::cuda
