// make_label_tree (label_tree.h): the checks and the derived walks of a treefc's tree.
#include "alexnet/core/label_tree.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace alexnet {

namespace {

std::string str(int64_t v) { return std::to_string(v); }

[[noreturn]] void bad(const std::string& why) { throw std::invalid_argument("label tree: " + why); }

}  // namespace

LabelTree make_label_tree(const std::vector<std::vector<int64_t>>& children, int64_t root, int64_t leaves) {
  LabelTree t;
  t.nodes = static_cast<int64_t>(children.size());
  t.leaves = leaves;
  t.root = root;
  if (t.nodes < 1) bad("has no nodes");
  if (leaves < 1 || leaves > t.nodes)
    bad(str(leaves) + " classes, but the tree has " + str(t.nodes) + " nodes (the classes are its leaves)");
  if (root < 0 || root >= t.nodes) bad("root " + str(root) + " is not a node (0.." + str(t.nodes - 1) + ")");
  std::vector<int64_t> parent(static_cast<size_t>(t.nodes), -1);
  t.child_start.push_back(0);
  for (int64_t u = 0; u < t.nodes; ++u) {
    for (int64_t c : children[static_cast<size_t>(u)]) {
      if (c < 0 || c >= t.nodes) bad("node " + str(u) + " has child " + str(c) + ", not a node");
      if (c == root) bad("the root " + str(root) + " is a child of node " + str(u));
      if (parent[static_cast<size_t>(c)] >= 0)
        bad("node " + str(c) + " has two parents (" + str(parent[static_cast<size_t>(c)]) + " and " + str(u) + ")");
      parent[static_cast<size_t>(c)] = u;
      t.children.push_back(c);
    }
    t.child_start.push_back(static_cast<int64_t>(t.children.size()));
    const bool leaf = children[static_cast<size_t>(u)].empty();
    if (leaf != (u < leaves))
      bad("node " + str(u) + (leaf ? " has no children but is not one of the " + str(leaves) + " classes (0.." +
                                         str(leaves - 1) + ")"
                                   : " is class " + str(u) + " but has children: the classes must be the leaves"));
  }
  // Depth from the root; a node the walk from the root never reaches is on a cycle or cut off.
  std::vector<int64_t> depth(static_cast<size_t>(t.nodes), -1), order{root};
  depth[static_cast<size_t>(root)] = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    const int64_t u = order[k];
    for (int64_t j = t.child_start[static_cast<size_t>(u)]; j < t.child_start[static_cast<size_t>(u) + 1]; ++j) {
      const int64_t c = t.children[static_cast<size_t>(j)];
      depth[static_cast<size_t>(c)] = depth[static_cast<size_t>(u)] + 1;
      order.push_back(c);
    }
  }
  for (int64_t u = 0; u < t.nodes; ++u)
    if (depth[static_cast<size_t>(u)] < 0) bad("node " + str(u) + " is not below the root " + str(root));
  // Heights and leaf counts, children before parents (reverse breadth-first order).
  std::vector<int64_t> height(static_cast<size_t>(t.nodes), 0);
  t.leaf_count.assign(static_cast<size_t>(t.nodes), 0.0f);
  for (size_t k = order.size(); k-- > 0;) {
    const size_t u = static_cast<size_t>(order[k]);
    if (t.child_start[u] == t.child_start[u + 1]) t.leaf_count[u] = 1.0f;
    if (parent[u] >= 0) {
      const size_t p = static_cast<size_t>(parent[u]);
      t.leaf_count[p] += t.leaf_count[u];
      height[p] = std::max(height[p], height[u] + 1);
    }
  }
  for (int64_t u = leaves; u < t.nodes; ++u) t.bottom_up.push_back(u);
  auto lower = [&](int64_t a, int64_t b) { return height[static_cast<size_t>(a)] < height[static_cast<size_t>(b)]; };
  std::stable_sort(t.bottom_up.begin(), t.bottom_up.end(), lower);
  // Root-to-leaf paths.
  t.path_start.push_back(0);
  std::vector<int64_t> up;
  for (int64_t l = 0; l < leaves; ++l) {
    up.clear();
    for (int64_t u = l; u >= 0; u = parent[static_cast<size_t>(u)]) up.push_back(u);
    t.path.insert(t.path.end(), up.rbegin(), up.rend());
    t.path_start.push_back(static_cast<int64_t>(t.path.size()));
  }
  return t;
}

}  // namespace alexnet
