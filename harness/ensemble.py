"""Ensembles: the weighted average of several networks' predictions (``alexnet-replay average``;
driver.md §F, ``avg-test.py`` and ``avg-valid.py``).

The members must predict the same images in the same order (the same batches of the same
data) with the same classes. The average is Σ wᵢ·pᵢ / Σ wᵢ: ``avg-test.py`` wrote the sum
without dividing, which ranks the classes the same; dividing keeps each row a probability
distribution.

Without weights, they are searched as ``avg-valid.py`` did, on the labelled images given:
each weight takes a value in 0, 0.05, …, 1; starting from all weights 1, each pass visits
the members in order and sets the member's weight to the value with the lowest top-5 error
(the others held; ``metric="top1"`` searches on the top-1 error instead, for a set on which
every member's top-5 error is 0), a value replacing the current one only when its error is strictly lower,
lower values tried first; the search stops after a pass that changes nothing, or after 5
passes. Weights chosen on the images they are then scored on give an optimistic error, as
in 2012: search on a validation set, then give the weights (``--weights``) for the test set.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import ReplayError
from .predict import Predictions, error_report, ranked

__all__ = ["GRID", "MAX_PASSES", "average", "search_weights", "top5_error"]

GRID = tuple(round(0.05 * i, 2) for i in range(21))
MAX_PASSES = 5


def _check(members: Sequence[Predictions], names: Sequence[str]) -> None:
    if not members:
        raise ReplayError("average: give at least one predictions file")
    first = members[0]
    for m, name in zip(members[1:], names[1:]):
        if m.probs.shape != first.probs.shape:
            raise ReplayError(f"{name}: {m.probs.shape[0]} images x {m.probs.shape[1]} classes, but {names[0]} "
                              f"has {first.probs.shape[0]} x {first.probs.shape[1]}: average predictions of the "
                              "same images")
        if not np.array_equal(m.batches, first.batches) or \
                (m.has_labels and first.has_labels and not np.array_equal(m.labels, first.labels)):
            raise ReplayError(f"{name}: its images are not those of {names[0]} (other batches or labels)")


def average(members: Sequence[Predictions], weights: Sequence[float], names: Sequence[str] | None = None
            ) -> Predictions:
    """Σ wᵢ·pᵢ / Σ wᵢ (float64 sums, stored as float32)."""
    names = list(names or [f"member {i + 1}" for i in range(len(members))])
    _check(members, names)
    w = np.asarray(weights, dtype=np.float64)
    if w.size != len(members):
        raise ReplayError(f"--weights: {w.size} weight(s) for {len(members)} predictions files")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ReplayError(f"--weights: {', '.join(map(str, weights))}: weights must be >= 0, not all 0")
    acc = np.zeros(members[0].probs.shape, dtype=np.float64)
    for wi, m in zip(w, members):
        acc += wi * m.probs.astype(np.float64)
    acc /= w.sum()
    labelled = next((m for m in members if m.has_labels), members[0])
    return Predictions(acc.astype(np.float32), labelled.labels, members[0].batches, members[0].label_names,
                       {"source": "average of " + ", ".join(names), "members": list(names),
                        "weights": [float(x) for x in w], "views": members[0].info.get("views"),
                        "batches": members[0].info.get("batches")})


def top5_error(probs: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """The fraction of images whose label is not in their ranked top `k` (:func:`.predict.ranked`)."""
    return float(1.0 - (ranked(probs, k) == labels[:, None]).any(axis=1).mean())


def search_weights(members: Sequence[Predictions], names: Sequence[str] | None = None, metric: str = "top5"
                   ) -> tuple[list[float], list[dict[str, Any]]]:
    """(weights, passes) by the coordinate search of the module docstring; `passes` lists, per
    pass, the weights after it and the error searched on (`metric`: ``top5`` or ``top1``)."""
    if metric not in ("top1", "top5"):
        raise ReplayError(f"--search-on {metric}: top1 or top5")
    k = 1 if metric == "top1" else 5
    names = list(names or [f"member {i + 1}" for i in range(len(members))])
    _check(members, names)
    labels = next((m.labels for m in members if m.has_labels), None)
    if labels is None:
        raise ReplayError("average: searching weights needs labels; give --data-path (the batches the predictions "
                          "are of) or --weights")
    probs = [m.probs.astype(np.float64) for m in members]
    w = [1.0] * len(members)

    def err(ws: Sequence[float]) -> float:
        return top5_error(sum(wi * p for wi, p in zip(ws, probs)), labels, k)

    best = err(w)
    passes = []
    for _ in range(MAX_PASSES):
        changed = False
        for i in range(len(members)):
            for value in GRID:
                if value == w[i]:
                    continue
                trial = w[:i] + [value] + w[i + 1:]
                if sum(trial) <= 0:
                    continue
                e = err(trial)
                if e < best:
                    best, w, changed = e, trial, True
        passes.append({"weights": list(w), metric: best})
        if not changed:
            break
    return w, passes


def member_errors(members: Sequence[Predictions], names: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for m, name in zip(members, names):
        rep = error_report(m)
        out.append({"name": name, **{k: rep.get(k) for k in ("top1", "top5", "top1_tie_credit", "top5_tie_credit")}})
    return out
