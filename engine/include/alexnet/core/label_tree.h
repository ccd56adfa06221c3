// The label tree of a treefc layer (engine.md §3.3; driver.md §A.3): the data
// provider's batches.meta['tree'], a children list per node, and its root.
// Leaves are the classes and are nodes 0..leaves-1; every other node is an
// inner node whose weight vector is shared by the classes below it.
//
// make_label_tree() checks the tree once (a plan check, STYLE.md habit 14) and
// derives what the kernels walk: each leaf's root-to-leaf path, the inner
// nodes in bottom-up order, and each node's leaf count.
#pragma once

#include <cstdint>
#include <vector>

namespace alexnet {

struct LabelTree {
  int64_t nodes = 0, leaves = 0;
  int64_t root = -1;
  // Children of node u: children[child_start[u] .. child_start[u+1]), in the file's order.
  std::vector<int64_t> child_start, children;
  // Path of leaf l from the root down to l: path[path_start[l] .. path_start[l+1]).
  std::vector<int64_t> path_start, path;
  // Inner nodes ordered by height (1 first): each after all of its children.
  std::vector<int64_t> bottom_up;
  // Leaves under each node (1 for a leaf): the divisor of its rate and decay (§3.3).
  std::vector<float> leaf_count;
};

// Throws std::invalid_argument naming what is wrong: a child out of range, a
// node with two parents, a cycle, a node the root does not reach, or leaves
// (nodes without children) that are not exactly 0..leaves-1.
LabelTree make_label_tree(const std::vector<std::vector<int64_t>>& children, int64_t root, int64_t leaves);

}  // namespace alexnet
