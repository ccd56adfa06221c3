"""What a test prints and writes (driver.md §C.4, §C.5).

* The test block of the log: a ``=`` rule, ``Test output:`` with this test's per-case costs,
  a ``-`` rule, ``Averages:`` with the mean of the last ``len(--test-range)`` tests' per-case
  costs (this one included), and for every weight layer, in sorted name order, one line per
  weight matrix and one for the biases with the mean absolute value of the matrix and of its
  increment (the momentum buffer): ``Layer 'conv1' weights[0]: 1.234567e-02 [5.432100e-05]``.
* ``--test-only``'s line per test batch: ``batch N: ({cost: [sums over the cases]}, cases)``,
  the form ``test.py`` adds up.
* ``--test-out``'s prediction files: ``DIR/test_preds_<batch>``, a pickled dict
  ``{'data': float32 (cases x classes), 'note': 'generated from <checkpoint folder>'}`` holding
  the probabilities the ``--logreg-name`` layer scored (averaged over the views with
  ``--multiview-test=1``), written atomically as a protocol-2 pickle that Python 2's numpy reads
  (:func:`.release_checkpoint.dumps_plain`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..engine import WEIGHT_LAYER_TYPES, EngineNet
from ..errors import ReplayError
from ..files import atomic_write_bytes
from .release_checkpoint import dumps_plain

__all__ = ["RULE", "averages", "batch_line", "format_costs", "format_test_block", "weight_lines", "write_predictions"]

RULE = 24  # width of the = and - rule lines


def format_costs(costs: dict[str, Sequence[float]], cases: int) -> str:
    """``name:  v1, v2, v3`` for every cost layer, values divided by `cases`, 6 decimals (§C.4)."""
    return " ".join(f"{name}:  " + ", ".join(f"{v / cases:.6f}" for v in values) for name, values in costs.items())


def averages(history: Sequence[dict[str, Sequence[float]]], count: int) -> dict[str, list[float]]:
    """Per cost value, the mean over the last `count` tests of `history` (per-case costs each).
    A cost missing from an older test (another network) is averaged over the tests that have it."""
    recent = list(history)[-max(count, 1):]
    if not recent:
        return {}
    out: dict[str, list[float]] = {}
    for name, values in recent[-1].items():
        rows = [list(t[name]) for t in recent if name in t and len(t[name]) == len(values)]
        out[name] = [float(np.mean([row[k] for row in rows])) for k in range(len(values))]
    return out


def weight_lines(net: EngineNet) -> list[str]:
    """``Layer 'X' weights[i]: mean|W| [mean|inc|]`` and ``Layer 'X' biases: ...`` (§C.4)."""
    lines = []
    for name in sorted(l.name for l in net.config.layers.values() if l.type in WEIGHT_LAYER_TYPES):
        layer = net.config.layers[name]
        pairs = [(f"weights[{i}]", net.array("weights", name, i), net.array("weight_inc", name, i))
                 for i in range(len(layer.weights))]
        pairs.append(("biases", net.array("biases", name), net.array("bias_inc", name)))
        for what, values, inc in pairs:
            lines.append(f"Layer '{name}' {what}: {_mean_abs(values):e} [{_mean_abs(inc):e}]")
    return lines


def _mean_abs(a: np.ndarray) -> float:
    return float(np.mean(np.abs(a), dtype=np.float64)) if a.size else 0.0


def format_test_block(costs: dict[str, Sequence[float]], cases: int, mean: dict[str, Sequence[float]],
               weights: Sequence[str]) -> str:
    """The block a test prints: `costs` are sums over `cases`; `mean` holds per-case values."""
    return "\n".join(["=" * RULE, "Test output: " + format_costs(costs, cases), "-" * RULE,
                      "Averages: " + format_costs(mean, 1), *weights])


def batch_line(batchnum: int, sums: dict[str, Sequence[float]], cases: int) -> str:
    """``batch N: ({'logprob': [s1, s2, s3]}, cases)`` (§C.5): Python reprs of plain floats."""
    plain = {name: [float(v) for v in values] for name, values in sums.items()}
    return f"batch {batchnum}: {(plain, int(cases))!r}"


def write_predictions(folder: str | Path, batchnum: int, probs: np.ndarray, source: str | Path) -> Path:
    """``folder/test_preds_<batchnum>``: `probs` (classes, cases) stored as float32 (cases, classes)."""
    path = Path(folder) / f"test_preds_{batchnum}"
    data = np.ascontiguousarray(np.asarray(probs, dtype=np.float32).T)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # our protocol-2 writer: numpy 2's pickle names numpy._core, which Python 2's numpy lacks
        return atomic_write_bytes(path, dumps_plain({"data": data, "note": f"generated from {source}"}))
    except OSError as exc:
        raise ReplayError(f"--test-out: cannot write {path} ({exc.strerror or exc}); give another folder, "
                          "or --test-out= (empty) to write none") from None
