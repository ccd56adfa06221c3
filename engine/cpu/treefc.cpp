// treefc: engine.md §3.3. Layouts in treefc.h. The products are fc's (fc.h)
// with the effective leaf weights, which the forward recomputes from the node
// weights every pass (the release recomputed them after each update; the
// weights change nowhere else, so the values are the same). Accumulate-or-
// overwrite: the forward overwrites Y; backward follows cpu/layer.h's target().
#include "alexnet/cpu/treefc.h"

#include <algorithm>

#include "alexnet/cpu/fc.h"
#include "alexnet/cpu/layer.h"

namespace alexnet::cpu {

void treefc_leaf_weights(const LabelTree& tree, const float* w, float* weff, int64_t din) {
#pragma omp parallel for schedule(static)
  for (int64_t l = 0; l < tree.leaves; ++l) {
    float* out = weff + l * din;
    const int64_t* node = tree.path.data() + tree.path_start[static_cast<size_t>(l)];
    const int64_t* end = tree.path.data() + tree.path_start[static_cast<size_t>(l) + 1];
    std::copy(w + *node * din, w + (*node + 1) * din, out);
    for (++node; node < end; ++node) {
      const float* v = w + *node * din;
      for (int64_t i = 0; i < din; ++i) out[i] += v[i];
    }
  }
}

void treefc_distribute_gradients(const LabelTree& tree, float* g, int64_t din) {
  // One element i of every node at a time: the nodes in bottom-up order, each the sum
  // of its children in the tree's order (one fixed order per element).
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < din; ++i)
    for (int64_t u : tree.bottom_up) {
      const size_t node = static_cast<size_t>(u);
      const int64_t first = tree.child_start[node], last = tree.child_start[node + 1];
      float sum = g[tree.children[static_cast<size_t>(first)] * din + i];
      for (int64_t j = first + 1; j < last; ++j) sum += g[tree.children[static_cast<size_t>(j)] * din + i];
      g[u * din + i] = sum;
    }
}

void treefc_update(const LabelTree& tree, float* w, float* inc, const float* g, int64_t din, float eps, float mom,
                   float wc) {
#pragma omp parallel for schedule(static)
  for (int64_t u = 0; u < tree.nodes; ++u) {
    const float n = tree.leaf_count[static_cast<size_t>(u)];
    const float eps_u = eps / n, wc_u = wc / n;
    for (int64_t i = u * din; i < (u + 1) * din; ++i) {
      inc[i] = mom * inc[i] + eps_u * (g[i] - wc_u * w[i]);
      w[i] = w[i] + inc[i];
    }
  }
}

}  // namespace alexnet::cpu

// ---- the treefc layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

ConstMatView leaf_weights(const LayerRun& r) {
  return ConstMatView(r.store().tree_weights.data(), r.layer.tree.leaves, r.layer.input_sizes[0]);
}

void forward(const LayerRun& r) {
  const int64_t din = r.layer.input_sizes[0];
  treefc_leaf_weights(r.layer.tree, r.weight(0).w.data(), r.store().tree_weights.data(), din);
  weight_layer_forward(
      r, [&](size_t, MatView y, float st) { fc_fprop(r.in(0), leaf_weights(r), y, st); },
      [&](MatView y) { fc_add_bias(r.bias().w.data(), y); });
}

void backward(const LayerRun& r) {
  const float inv_n = r.grad_scale();  // 1/N (§1.5)
  const int64_t din = r.layer.input_sizes[0];
  weight_layer_backward(
      r, [&](size_t, MatView dx, float st) { fc_bprop_acts(r.dy(), leaf_weights(r), dx, st); },
      [&](size_t, bool first) {  // G of the leaves (+)= (1/N) dY X^T, then the inner nodes' sums of them
        float* g = r.weight(0).grad.data();
        fc_bprop_weights(r.in(0), r.dy(), MatView{g, r.layer.tree.leaves, din}, inv_n, first ? 0.0f : 1.0f);
        treefc_distribute_gradients(r.layer.tree, g, din);
      },
      [&](bool first) { fc_bprop_bias(r.dy(), r.bias().grad.data(), inv_n, first ? 0.0f : 1.0f); });
}

const bool registered = register_layer("treefc", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
