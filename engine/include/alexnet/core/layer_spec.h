// What a network is made of, as plain data: one LayerSpec per layer, in an
// execution order (every layer after its inputs). The Python side fills them
// from the cfg reader's parsed network (alexnet_replay/engine.py); the net plan
// (net_plan.h) checks them once for both backends.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "alexnet/core/schedule.h"

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
  std::string type;         // the cfg type: "conv", "fc", "pool", ..., "cost.logreg" (layer_types.h)
  std::vector<int> inputs;  // indices of earlier specs
  int64_t outputs = 0;      // D, values per case (0 for cost layers)
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
  float super_eps = 0.0f;  // §4.4: > 0 gives the layer's weight matrices the RMS-normalised update
  Schedule sched_b;

  // pool, nailbed, blur, href, norms, resize, rscale, rgb2yuv, rgb2lab, cost.tica: image geometry
  // of the input (size_x: pool's window, cost.tica's window)
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

  // treefc (§3.3): batches.meta['tree'], children per node, and the root node
  std::vector<std::vector<int64_t>> tree;
  int64_t tree_root = -1;

  // resize (§3.20), rscale (§3.22), rgb2lab (§3.21); channels and img_size above. The cfg's
  // scale and maxScale as written (double): the target side floor(S/scale) is the reader's
  // arithmetic, the kernels sample with float(scale).
  double scale = 1.0;
  double max_scale = 1.0;
  int64_t tgt_size = 0;
  bool center = false;

  // quant (§6, a reconstruction): round the forward copy / the returning gradient to half
  bool half_forward = false, half_backward = false;

  // cost layers
  float coeff = 1.0f;
  int topk = 1;
  int64_t set_size = 0;  // cost.msm (§3.30): k, the size of the chosen subsets
};

// engine.md §1.5 pass types. Dropout draws masks only in Train; Test and
// GradientCheck multiply by keep (§3.16: "enable and PASS_TRAIN").
enum class PassType { Train, Test, GradientCheck };

}  // namespace alexnet
