"""The release's numerical gradient check (engine.md §8), as a normal mode.

For each weight matrix and bias of the net, every element w is moved by a step
h and the objective E = sum over cost layers of coeff * cost[0] (summed over
the cases) is recomputed; the one-sided difference (E(w + h) - E(w)) / (N h)
is compared with the engine's gradient, which holds -(1/N) dE/dw (§1.1). A
matrix passes when ||numeric - analytic|| / ||analytic|| < 0.02.

Steps as the release chose them: fc weights and biases 0.01; other weights
0.02 and biases 0.05. The engine computes in float32, as the release did.

To read the gradients of every matrix, the check builds the net with every
learning rate 1 and every momentum and decay 0 and never calls update: then
fc's increment is its gradient and conv's gradient buffer is G.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .engine import WEIGHT_LAYER_TYPES, EngineNet
from .original.layers import Network

THRESHOLD = 0.02  # §8: relative error of a matrix must stay below 2%


@dataclass
class MatrixCheck:
    layer: str
    what: str          # "weights[i]" or "biases"
    elements: int
    step: float
    relative_error: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.relative_error)) and self.relative_error < THRESHOLD

    def text(self) -> str:
        """One line of the report (``check-grads``, ``train --check-grads=1``)."""
        return (f"{self.layer:>16} {self.what:<11} {self.elements:>9} elements  step {self.step:<5g} "
                f"relative error {self.relative_error:.3e}  {'ok' if self.passed else 'FAIL'}")

    def to_dict(self) -> dict:
        return {"layer": self.layer, "matrix": self.what, "elements": self.elements, "step": self.step,
                "relative_error": self.relative_error, "passed": self.passed}


def _gradient_config(config: Network) -> Network:
    """The same net with eps 1, momentum 0 and no decay, so that increments are gradients."""
    cfg = copy.deepcopy(config)
    for layer in cfg.layers.values():
        p = layer.params
        if "epsW" in p:
            n = len(p["epsW"])
            p.update(epsW=[1.0] * n, momW=[0.0] * n, wc=[0.0] * n, wballNormed=[0.0] * n,
                     epsB=1.0, momB=0.0)
            if "wcNormMax" in p:
                p.update(wcNormMax=[0.0] * n, wcNormMin=[0.0] * n)
    return cfg


def _objective(net: EngineNet, coeffs: dict[str, float]) -> float:
    net._net.forward("gradient-check")
    return float(sum(coeffs[name] * values[0] for name, values in net._net.costs().items()))


def check_gradients(config: Network, data: Sequence[np.ndarray], seed: int = 0,
                    progress: Callable[[int, int], None] | None = None,
                    max_elements: int | None = None, central: bool = False,
                    steps: tuple[float, float] | None = None,
                    load: Callable[[EngineNet], None] | None = None) -> list[MatrixCheck]:
    """Run the check on one minibatch.

    `max_elements` checks only the first elements of each matrix (the release
    checked all; a whole AlexNet would take days). `central` uses the central
    difference (E(w+h) - E(w-h)) / 2Nh instead of the release's one-sided one;
    its error is O(h^2), so it can judge a gradient much more tightly. `steps`
    overrides the release's (weight, bias) steps for every layer. `load(net)`, when given, sets
    the weights and biases to check around (a checkpoint's) in place of the seeded ones.
    """
    cases = int(np.asarray(data[0]).shape[1])
    net = EngineNet(_gradient_config(config), cases, seed)
    if load is not None:
        load(net)
    net.set_data(data)
    # The release's PASS_GC: dropout scales by keep, as in testing; nrelu noise is
    # drawn once and then held fixed between the evaluations.
    net._net.forward("gradient-check")
    net.inject_masks = True
    coeffs = {name: layer.params.get("coeff", 1.0) for name, layer in config.layers.items() if layer.is_cost}
    base = _objective(net, coeffs)
    net.backward()  # after the gradient-check pass, backward scales by keep too

    jobs = []
    for name, layer in config.layers.items():
        if layer.type not in WEIGHT_LAYER_TYPES:
            continue
        w_step, b_step = steps or ((0.01, 0.01) if layer.type == "fc" else (0.02, 0.05))
        for i, src in enumerate(layer.weight_sources):
            if src is None:
                analytic = net.weight_inc(name, i) if layer.type in ("fc", "local") else net.weight_grad(name, i)
                jobs.append((name, f"weights[{i}]", net.weights(name, i), analytic.copy(order="K"), w_step))
        jobs.append((name, "biases", net.biases(name), net.bias_grad(name).copy(order="K"), b_step))

    total = sum(min(a.size, max_elements or a.size) for *_, a, _ in jobs)
    done = 0
    results = []
    for name, what, values, analytic, step in jobs:
        # Both in memory order (fc matrices are Fortran-ordered views); ravel of a contiguous
        # array is a view, so writing flat_values moves the net's weight.
        flat_values = values.ravel(order="K")
        flat_analytic = analytic.ravel(order="K")
        count = min(flat_values.size, max_elements or flat_values.size)
        numeric = np.empty(count)
        for k in range(count):
            keep = flat_values[k]
            flat_values[k] = keep + np.float32(step)
            plus = _objective(net, coeffs)
            if central:
                flat_values[k] = keep - np.float32(step)
                numeric[k] = (plus - _objective(net, coeffs)) / (2 * cases * step)
            else:
                numeric[k] = (plus - base) / (cases * step)
            flat_values[k] = keep
            done += 1
            if progress and done % 64 == 0:
                progress(done, total)
        ana = -flat_analytic[:count].astype(np.float64)  # the engine holds -(1/N) dE/dw
        denom = np.linalg.norm(ana)
        err = float(np.linalg.norm(numeric - ana) / denom) if denom > 0 else float(np.linalg.norm(numeric))
        results.append(MatrixCheck(name, what, count, step, err))
    if progress:
        progress(total, total)
    return results
