"""The multiview test (driver.md §C.5, ``--multiview-test=1``; engine.md §3.23).

The test provider lays every case out as V views in V column blocks of N cases
(10 for the ImageNet providers, §D.4; 9 for CIFAR, §D.3). The release's C++ side
sums each ``cost.logreg`` layer's softmax outputs over the views, in view order,
scales the sum by 1/V, and computes the costs from that average. Here the
engine runs plain test passes over consecutive minibatches, the probabilities
are collected, and the average and the costs are computed in float32 with the
tie rules of engine.md §3.23.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ReplayError
from .providers import minibatches

__all__ = ["logreg_costs", "multiview_costs"]


def logreg_costs(probs: np.ndarray, labels: np.ndarray, topk: int = 1) -> list[float]:
    """engine.md §3.23 on (classes, N) float32 probabilities and N class indices:
    [−Σ log p_label, N − Σ top-1 score, N − Σ top-k score], with fractional credit on ties
    (top-1: 1/#{i: p_i = max} when p_label is the max; top-k: slots = k − #{p_i > p_label},
    0 if slots <= 0, 1 if #{p_i = p_label} <= slots, else slots / #{p_i = p_label})."""
    p = np.asarray(probs, dtype=np.float32)
    lab = np.asarray(labels).reshape(-1).astype(np.int64)
    n = lab.size
    pl = p[lab, np.arange(n)]
    nll = -float(np.sum(np.log(pl).astype(np.float64)))
    ties_max = (p == p.max(axis=0)).sum(axis=0)
    top1 = np.where(pl == p.max(axis=0), 1.0 / ties_max, 0.0)
    above = (p > pl).sum(axis=0)
    equal = (p == pl).sum(axis=0)
    slots = topk - above
    topk_score = np.where(slots <= 0, 0.0, np.where(equal <= slots, 1.0, slots / np.maximum(equal, 1)))
    return [nll, float(n - top1.sum()), float(n - topk_score.sum())]


def multiview_costs(net, matrices: Sequence[np.ndarray], views: int, mini: int,
                    probs_out: dict[str, np.ndarray] | None = None) -> dict[str, list[float]]:
    """Costs of one multiview test batch: `matrices` hold N·`views` columns, view-major blocks.
    Every cost layer must be a ``cost.logreg``; returns {name: [sums over the N cases]}.
    `probs_out`, when given, receives each cost layer's averaged probabilities (classes, N)."""
    cols = matrices[0].shape[1]
    if views < 1 or cols % views:
        raise ReplayError(f"multiview test: {cols} columns are not {views} views of the same cases")
    n = cols // views
    costs = [l for l in net.config.layers.values() if l.is_cost]
    for layer in costs:
        if layer.type != "cost.logreg":
            raise ReplayError(f"--multiview-test averages softmax outputs for cost.logreg layers; "
                              f"layer '{layer.name}' is {layer.type}")
    probs: dict[str, list[np.ndarray]] = {l.name: [] for l in costs}
    for part in minibatches(matrices, mini):
        net.forward(part, train=False)
        for layer in costs:
            probs[layer.name].append(np.array(net.acts(layer.inputs[1]), dtype=np.float32, copy=True))
    out = {}
    for layer in costs:
        p = np.concatenate(probs[layer.name], axis=1)              # (classes, V·N)
        label_layer = net.config.layers[layer.inputs[0]]
        if label_layer.type != "data":
            raise ReplayError(f"--multiview-test: the labels of '{layer.name}' must come from a data layer")
        labels = matrices[label_layer.attrs["dataIdx"]][0, :n]
        acc = p[:, :n].copy()
        for v in range(1, views):                                   # summed in view order (§3.23)
            acc += p[:, v * n:(v + 1) * n]
        acc *= np.float32(1.0 / views)
        if probs_out is not None:
            probs_out[layer.name] = acc
        out[layer.name] = logreg_costs(acc, labels, int(layer.params.get("topk", 1)))
    return out
