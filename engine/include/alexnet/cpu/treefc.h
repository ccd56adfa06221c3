// The label-tree classifier, engine.md §3.3. Layouts (§1.2, §1.3):
//   X     (Din, N)       input, case fastest
//   Y     (L, N)         output, one row per class (leaf), case fastest
//   W     (U, Din)       row-major: the release's Fortran (Din, U) matrix, one
//                        contiguous weight vector per node of the tree (U nodes)
//   Weff  (L, Din)       row-major: each leaf's effective weights, the sum of
//                        the vectors on its root-to-leaf path
//   G     (U, Din)       gradient of W, same layout
// The layer is an fc layer (fc.h) with Weff as its weight matrix.
#pragma once

#include <cstdint>

#include "alexnet/core/label_tree.h"

namespace alexnet::cpu {

// Weff[l] <- W[root] + W[next] + ... + W[l], added down the path in that order.
void treefc_leaf_weights(const LabelTree& tree, const float* w, float* weff, int64_t din);

// G[u] <- sum of G[c] over u's children c, in the tree's order, for every inner
// node u from the lowest up (the leaves' rows hold their gradients already).
void treefc_distribute_gradients(const LabelTree& tree, float* g, int64_t din);

// §3.3 update, node u with n_u leaves below it: eps_u = eps/n_u, wc_u = wc/n_u,
// inc <- mom*inc + eps_u*(G - wc_u*W), W <- W + inc (one rounding per operation).
void treefc_update(const LabelTree& tree, float* w, float* inc, const float* g, int64_t din, float eps, float mom,
                   float wc);

}  // namespace alexnet::cpu
