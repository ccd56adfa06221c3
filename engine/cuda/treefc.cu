// CUDA treefc layer, engine.md §3.3; the semantics of engine/cpu/treefc.cpp.
// Layouts in alexnet/cuda/treefc.h. Every element is one thread's fixed
// sequence of float operations, the CPU's, so the tree's sums and the update
// are exact against it; the products are fc's GEMMs ("close only").
#include "alexnet/cuda/fc.h"
#include "alexnet/cuda/treefc.h"
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {

__global__ void leaf_weights_kernel(DeviceTree t, const float* w, float* weff, int64_t din) {
  const int64_t total = t.leaves * din;
  for (int64_t k = grid_start(); k < total; k += grid_step()) {
    const int64_t leaf = k / din, i = k % din;
    const int64_t first = t.path_start[leaf], last = t.path_start[leaf + 1];
    float sum = w[t.path[first] * din + i];
    for (int64_t j = first + 1; j < last; ++j) sum = sum + w[t.path[j] * din + i];
    weff[k] = sum;
  }
}

// One thread per element i: the inner nodes in bottom-up order, each the sum of its
// children in the tree's order, as the CPU adds them.
__global__ void distribute_kernel(DeviceTree t, float* g, int64_t din) {
  for (int64_t i = grid_start(); i < din; i += grid_step())
    for (int64_t k = 0; k < t.inner; ++k) {
      const int64_t u = t.bottom_up[k], first = t.child_start[u], last = t.child_start[u + 1];
      float sum = g[t.children[first] * din + i];
      for (int64_t j = first + 1; j < last; ++j) sum = sum + g[t.children[j] * din + i];
      g[u * din + i] = sum;
    }
}

__global__ void update_kernel(DeviceTree t, float* w, float* inc, const float* g, int64_t din, float eps, float mom,
                              float wc) {
  const int64_t total = t.nodes * din;
  for (int64_t k = grid_start(); k < total; k += grid_step()) {
    const float n = t.leaf_count[k / din];
    const float eps_u = eps / n, wc_u = wc / n;
    inc[k] = mom * inc[k] + eps_u * (g[k] - wc_u * w[k]);
    w[k] = w[k] + inc[k];
  }
}

}  // namespace

void treefc_leaf_weights(const Launch& l, const DeviceTree& t, const float* w, float* weff, int64_t din) {
  const int64_t total = t.leaves * din;
  if (total <= 0) return;
  leaf_weights_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(t, w, weff, din);
  check_launch(l, "treefc_leaf_weights_kernel");
}

void treefc_distribute_gradients(const Launch& l, const DeviceTree& t, float* g, int64_t din) {
  if (din <= 0 || t.inner <= 0) return;
  distribute_kernel<<<grid_for(din), kThreads, 0, l.stream>>>(t, g, din);
  check_launch(l, "treefc_distribute_kernel");
}

void treefc_update(const Launch& l, const DeviceTree& t, float* w, float* inc, const float* g, int64_t din, float eps,
                   float mom, float wc) {
  const int64_t total = t.nodes * din;
  if (total <= 0) return;
  update_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(t, w, inc, g, din, eps, mom, wc);
  check_launch(l, "treefc_update_kernel");
}

}  // namespace alexnet::cuda

// ---- the treefc layer in the CUDA net (layer.h) -------------------------------------------

namespace alexnet::cuda {
namespace {

void setup(const LayerPlan& L, LayerStore& B, Devices& D) {
  const std::string of = " of layer '" + L.spec.name + "'";
  DeviceTree& t = B.tree;
  t.nodes = L.tree.nodes;
  t.leaves = L.tree.leaves;
  t.path_start = D.upload(B.dev, L.tree.path_start, "tree paths" + of);
  t.path = D.upload(B.dev, L.tree.path, "tree paths" + of);
  t.child_start = D.upload(B.dev, L.tree.child_start, "tree children" + of);
  t.children = D.upload(B.dev, L.tree.children, "tree children" + of);
  t.leaf_count = D.upload(B.dev, L.tree.leaf_count, "tree leaf counts" + of);
  t.bottom_up = D.upload(B.dev, L.tree.bottom_up, "tree order" + of);
  t.inner = static_cast<int64_t>(L.tree.bottom_up.size());
  t.leaf_weights = D.alloc(B.dev, L.tree.leaves * L.input_sizes[0], "leaf weights" + of);
}

ConstMatView leaf_weights(const LayerRun& r) {
  return ConstMatView(r.store.tree.leaf_weights, r.layer.tree.leaves, r.layer.input_sizes[0]);
}

void forward(const LayerRun& r) {
  const int64_t din = r.layer.input_sizes[0];
  r.op("leaf_weights", [&] { treefc_leaf_weights(r.lc, r.store.tree, r.weight(0).w, r.store.tree.leaf_weights, din); });
  weight_layer_forward(
      r, [&](size_t, MatView y, float st) { fc_fprop(r.lc, r.gemm, r.in(0), leaf_weights(r), y, st); },
      [&](MatView y) { fc_add_bias(r.lc, r.bias().w, y); });
}

void backward(const LayerRun& r) {
  const float inv_n = r.grad_scale();  // 1/N (§1.5)
  const int64_t din = r.layer.input_sizes[0];
  weight_layer_backward(
      r, [&](size_t, MatView dx, float st) { fc_bprop_acts(r.lc, r.gemm, r.dy(), leaf_weights(r), dx, st); },
      [&](size_t, bool first) {  // G of the leaves (+)= (1/N) dY X^T, then the inner nodes' sums of them
        float* g = r.weight(0).grad;
        fc_bprop_weights(r.lc, r.gemm, r.in(0), r.dy(), MatView{g, r.layer.tree.leaves, din}, inv_n,
                         first ? 0.0f : 1.0f);
        treefc_distribute_gradients(r.lc, r.store.tree, g, din);
      },
      [&](bool first) { fc_bprop_bias(r.lc, r.dy(), r.bias().grad, inv_n, first ? 0.0f : 1.0f); });
}

const bool registered = register_layer("treefc", {forward, backward, setup});

}  // namespace
}  // namespace alexnet::cuda
