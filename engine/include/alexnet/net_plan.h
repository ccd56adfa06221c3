// What the CPU net (alexnet/net.h) and the CUDA net (alexnet/cuda/net.h) share
// before and beside their buffers: the layer types, the checks of a LayerSpec
// list (each message names the layer), the kernel parameters read from a spec,
// which layers need a gradient, the fused softmax + cost.logreg (engine.md
// §3.12), and the draws from the net's generator (dropout masks, nrelu noise,
// schedule noise). One place for the draws keeps their order the same on both
// nets, so one seed gives both the same numbers.
//
// Device-independent: no CUDA headers; the CUDA net's host code includes it.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "alexnet/cpu/conv.h"
#include "alexnet/cpu/neuron.h"
#include "alexnet/cpu/norm.h"
#include "alexnet/cpu/pool.h"
#include "alexnet/cpu/schedule.h"
#include "alexnet/net.h"

namespace alexnet {

enum class LayerKind {
  Data, Conv, Local, Fc, Pool, Rnorm, Cnorm, Cmrnorm, Neuron, Softmax, Dropout, Eltsum, Eltmax, Concat,
  Nailbed, Blur, Href, Logreg, Sum2,
};

// The kind of the cfg type s.type; throws std::invalid_argument naming the
// layer and listing the supported types.
LayerKind layer_kind(const LayerSpec& s);
bool is_weight_kind(LayerKind k);                  // conv, local, fc
inline bool is_cost_kind(LayerKind k) { return k == LayerKind::Logreg || k == LayerKind::Sum2; }
const char* type_name(LayerKind k);                // the cfg type ("hs" for Dropout)

// Throws std::invalid_argument("layer '<name>': <why>").
[[noreturn]] void fail_layer(const LayerSpec& s, const std::string& why);

// The checks of spec `li` against the specs before it (type, unique name,
// inputs earlier, inputs and outputs present), in the order both nets make
// them; records the name in `index`. Returns the layer's kind.
LayerKind check_layer(const LayerSpec& s, int li, std::map<std::string, int>& index);

// Kernel parameters of one layer, read from its spec (with the checks both nets make).
// conv/local input i, whose producer has `input_size` values per case; conns
// points into the spec's table (host memory).
cpu::ConvParams conv_params(const LayerSpec& s, size_t i, int64_t input_size);
cpu::PoolParams pool_params(const LayerSpec& s);
cpu::SpatialNormParams spatial_norm_params(const LayerSpec& s);
cpu::CrossMapNormParams cross_map_norm_params(const LayerSpec& s);
cpu::NeuronParams neuron_params(const LayerSpec& s);

// The learning parameters of one weight matrix (or bias), without its storage;
// each net's Weights adds its buffers.
struct WeightParams {
  int64_t rows = 0, cols = 0;
  float eps_base = 0.0f, mom = 0.0f, wc = 0.0f, wball = 0.0f, norm_min = 0.0f, norm_max = 0.0f;
  Schedule sched;
  float eps = 0.0f;          // scheduled rate of the current step
  bool contributed = false;  // a gradient was formed this step (shared matrices add after the first)
  int64_t size() const { return rows * cols; }
};

// A weight layer's per-input lists must all have one entry per input.
void check_weight_lists(const LayerSpec& s);
WeightParams weight_params(const LayerSpec& s, size_t i);  // matrix i, eps at its base rate
WeightParams bias_params(const LayerSpec& s);

// Input i of weight layer `li` takes its matrix from weightSource: the checked
// pointer to that earlier matrix (Layer: a net's LayerState, with weights[]).
template <class Layer>
auto shared_matrix(std::vector<Layer>& layers, const LayerSpec& s, int li, size_t i) {
  const int src = s.share_layer[i];
  if (src > li || (src == li && s.share_index[i] >= static_cast<int>(i)))
    fail_layer(s, "weightSource must name an earlier matrix");
  Layer& owner = layers[static_cast<size_t>(src)];
  if (s.share_index[i] < 0 || s.share_index[i] >= static_cast<int>(owner.weights.size()))
    fail_layer(s, "weightSource index out of range");
  auto* shared = owner.weights[static_cast<size_t>(s.share_index[i])];
  if (shared->rows != s.weight_rows[i] || shared->cols != s.weight_cols[i]) fail_layer(s, "shared matrix shape differs");
  return shared;
}

// Which layers need a gradient (those that learn, and everything above them),
// and which softmax layers take the fused gradient: their only consumer is a
// cost.logreg that reads them as its probabilities (§3.12).
template <class Layer>
void mark_gradients(std::vector<Layer>& layers, const std::map<std::string, int>& index) {
  for (Layer& L : layers) {
    bool learns = false;
    for (const auto* w : L.weights) learns = learns || w->eps_base > 0.0f;
    learns = learns || (L.has_bias && L.bias.eps_base > 0.0f);
    bool below = false;
    for (int in : L.spec.inputs) below = below || layers[static_cast<size_t>(in)].needs_grad;
    L.needs_grad = learns || below;
  }
  for (Layer& L : layers)
    if (L.kind == LayerKind::Softmax && L.consumers.size() == 1 &&
        layers[static_cast<size_t>(L.consumers[0])].kind == LayerKind::Logreg &&
        layers[static_cast<size_t>(L.consumers[0])].spec.inputs[1] == index.at(L.spec.name))
      L.fused_logreg = true;
}

// The learning rates of the coming step (§4.3): each owned matrix's and bias's
// schedule at progress p, times 1 + |z|*noiseStdev with one draw per matrix, in
// layer order, each layer's matrices before its bias.
template <class Layer>
void schedule_rates(std::vector<Layer>& layers, double progress, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  auto rate = [&](const WeightParams& w) {
    double eps = schedule_rate(w.sched, w.eps_base, progress);
    if (w.sched.noise_stdev > 0.0) eps *= schedule_noise_factor(w.sched, normal(rng));
    return static_cast<float>(eps);  // §4.2: a double on the host, a float in the kernels
  };
  for (Layer& L : layers) {
    for (auto& owned : L.owned) owned->eps = rate(*owned);
    if (L.has_bias) L.bias.eps = rate(L.bias);
  }
}

// The draws of one forward pass, made on the host from the net's generator.
// One object per pass: the normal distribution keeps a spare value between
// calls, so layers after the first continue its sequence.
class ForwardDraws {
 public:
  explicit ForwardDraws(std::mt19937_64& rng) : rng_(rng) {}
  // nrelu (§3.11): one N(0,1) draw per element, every pass.
  void normal(float* out, int64_t count);
  // hs (§3.16): 1 with probability keep (U in (0, 1], kept when U < keep), else 0.
  void dropout_mask(float* out, int64_t count, float keep);

 private:
  std::mt19937_64& rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  std::normal_distribution<float> normal_{0.0f, 1.0f};
};

// set_data's checks: the case count, and a data layer's rows.
void check_minibatch(int64_t cases, int64_t max_cases);
void check_data_rows(const LayerSpec& s, int data_idx, int64_t rows);
[[noreturn]] void fail_no_data_layer(int data_idx);
// layer_index(): throws std::out_of_range for an unknown name.
int find_layer(const std::map<std::string, int>& index, const std::string& name);

}  // namespace alexnet
