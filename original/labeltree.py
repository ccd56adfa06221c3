"""The label tree of a ``treefc`` layer (engine.md §3.3, driver.md §A.3).

The release's ImageNet tree nets read it from the data: ``batches.meta['tree']``
holds the children of every node (node ``u``'s list at index ``u``) and
``batches.meta['all_wnids']['gproot']`` names the root. The classes are the leaves,
nodes ``0 .. classes-1``; the other nodes are inner nodes whose weight vectors the
classes below them share. The release does not ship that tree (it was built from
WordNet for the 2012 data), so a replay without the data uses a stand-in:
:func:`LabelTree.stand_in`, a balanced tree over the classes, marked as such.

The engine checks the tree again when it plans the layer (engine/core/label_tree.cpp);
this module checks what a ``batches.meta`` holds, so that a bad tree is named by its
file and key before any net is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import ReplayError


@dataclass(frozen=True)
class LabelTree:
    """Children per node (``children[u]``, in the file's order) and the root node."""

    children: tuple[tuple[int, ...], ...]
    root: int
    source: str = "batches.meta"  # where it came from, for logs and reports

    @property
    def nodes(self) -> int:
        return len(self.children)

    @property
    def leaves(self) -> int:
        return sum(1 for c in self.children if not c)

    def parents(self) -> list[int]:
        parent = [-1] * self.nodes
        for u, kids in enumerate(self.children):
            for c in kids:
                parent[c] = u
        return parent

    def paths(self) -> list[list[int]]:
        """Each leaf's nodes from the root down to the leaf."""
        parent = self.parents()
        out = []
        for leaf in range(self.leaves):
            up = [leaf]
            while parent[up[-1]] >= 0:
                up.append(parent[up[-1]])
            out.append(up[::-1])
        return out

    def leaf_counts(self) -> list[int]:
        """How many leaves lie below each node (1 for a leaf)."""
        counts = [0] * self.nodes
        for path in self.paths():
            for u in path:
                counts[u] += 1
        return counts

    @classmethod
    def from_lists(cls, children: Sequence[Sequence[int]], root: int, classes: int,
                   source: str = "batches.meta") -> "LabelTree":
        """A checked tree; ValueError says what is wrong (the engine's rules, label_tree.h)."""
        kids = tuple(tuple(int(c) for c in cs) for cs in children)
        n = len(kids)
        if n < 1 or not (1 <= classes <= n):
            raise ValueError(f"{n} nodes for {classes} classes: the classes are the tree's leaves")
        if not (0 <= root < n):
            raise ValueError(f"root {root} is not a node (0..{n - 1})")
        parent = [-1] * n
        for u, cs in enumerate(kids):
            for c in cs:
                if not (0 <= c < n) or c == root:
                    raise ValueError(f"node {u} has child {c}, which is " + ("the root" if c == root else "not a node"))
                if parent[c] >= 0:
                    raise ValueError(f"node {c} has two parents ({parent[c]} and {u})")
                parent[c] = u
            if (not cs) != (u < classes):
                raise ValueError(f"node {u} " + ("has no children but is not a class" if not cs
                                                 else "is a class but has children: the classes must be the leaves"))
        seen, stack = {root}, [root]
        while stack:
            for c in kids[stack.pop()]:
                seen.add(c)
                stack.append(c)
        if len(seen) != n:
            missing = min(set(range(n)) - seen)
            raise ValueError(f"node {missing} is not below the root {root}")
        return cls(kids, int(root), source)

    @classmethod
    def from_meta(cls, raw: Mapping[str, Any], classes: int, file: str = "batches.meta") -> "LabelTree | None":
        """The tree of a ``batches.meta`` dict, or None when it has none."""
        if "tree" not in raw:
            return None
        tree = raw["tree"]
        try:
            if isinstance(tree, Mapping):
                keys = sorted(int(k) for k in tree)
                if keys != list(range(len(keys))):
                    raise ValueError("its keys must be the nodes 0..len-1")
                tree = [tree[k] if k in tree else tree[str(k)] for k in keys]
            children = [list(c) for c in tree]
            wnids = raw.get("all_wnids")
            if not isinstance(wnids, Mapping) or "gproot" not in wnids:
                raise ValueError("all_wnids['gproot'] (the root node) is missing")
            return cls.from_lists(children, int(wnids["gproot"]), classes, f"{file} 'tree'")
        except (TypeError, ValueError) as exc:
            raise ReplayError(f"{file}: key 'tree': not a label tree: {exc}") from None

    @classmethod
    def stand_in(cls, classes: int, branching: int = 10) -> "LabelTree":
        """A balanced tree over `classes` leaves: consecutive nodes grouped `branching` at a
        time, level by level, up to one root. For replays without the release's data."""
        if classes < 1 or branching < 2:
            raise ValueError("a stand-in tree needs classes >= 1 and branching >= 2")
        children: list[tuple[int, ...]] = [()] * classes
        level = list(range(classes))
        while len(level) > 1 or not children[level[0]]:
            parents = []
            for start in range(0, len(level), branching):
                children.append(tuple(level[start:start + branching]))
                parents.append(len(children) - 1)
            level = parents
        return cls(tuple(children), level[0], f"stand-in: balanced, {branching} children per node")
