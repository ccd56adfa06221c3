// CUDA treefc (engine.md §3.3), the semantics of engine/cpu/treefc.cpp.
// Layouts (DEVICE memory) as cpu/treefc.h: w and g (U, Din) row-major, one
// vector per node; weff (L, Din) row-major. The products are fc's (fc.h).
#pragma once

#include <cstdint>

#include "alexnet/core/label_tree.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

// The tree's tables in device memory (label_tree.h), made once per net.
struct DeviceTree {
  int64_t nodes = 0, leaves = 0;
  const int64_t* path_start = nullptr;
  const int64_t* path = nullptr;
  const int64_t* child_start = nullptr;
  const int64_t* children = nullptr;
  const float* leaf_count = nullptr;
  const int64_t* bottom_up = nullptr;  // the inner nodes, children before parents
  int64_t inner = 0;
  float* leaf_weights = nullptr;  // (L, Din), the effective weights of the last forward
};

// weff[l] <- w[root] + ... + w[l], down the path in that order (one thread per element).
void treefc_leaf_weights(const Launch& l, const DeviceTree& t, const float* w, float* weff, int64_t din);
// g[u] <- sum of g[c] over u's children, in order, for the inner nodes bottom-up.
void treefc_distribute_gradients(const Launch& l, const DeviceTree& t, float* g, int64_t din);
// §3.3: inc <- mom·inc + (eps/n_u)·(g − (wc/n_u)·w), w <- w + inc.
void treefc_update(const Launch& l, const DeviceTree& t, float* w, float* inc, const float* g, int64_t din, float eps,
                   float mom, float wc);

}  // namespace alexnet::cuda
