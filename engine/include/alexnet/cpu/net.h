// The CPU net: a whole minibatch forward, backward and update in C++, with no
// call back into Python per layer (engine.md §1.4, §1.5, §4), behind the one
// net interface of alexnet/core/net.h.
//
// It owns every buffer, in host memory: outputs and their gradients (D, N)
// case fastest, weights, increments and gradients in the release's layouts
// (§1.3), norm denominators, dropout masks. All of it is allocated when the
// net is built, for `max_cases` cases, so a training step allocates nothing
// after the first minibatch. host_data() hands out the buffers themselves, so
// the bindings can give numpy views instead of copies.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "alexnet/core/net.h"

namespace alexnet::cpu {

class CpuNet final : public Net {
 public:
  // Throws std::invalid_argument naming the layer when a spec is inconsistent
  // or its type is not supported (the Plan's checks), never in a step.
  CpuNet(std::vector<LayerSpec> specs, int64_t max_cases, uint64_t seed);
  ~CpuNet() override;

  const char* device() const override { return "cpu"; }
  std::map<std::string, std::string> info() const override;
  void set_data(int data_idx, const float* values, int64_t rows, int64_t cases) override;
  void forward(PassType pass) override;
  void forward_from(int layer) override;
  void backward() override;
  void update() override;
  void download(BufferKind kind, int layer, int input, float* host) override;
  void upload(BufferKind kind, int layer, int input, const float* host) override;
  float* host_data(BufferKind kind, int layer, int input) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace alexnet::cpu
