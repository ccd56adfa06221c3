"""The release's numerical gradient check (engine.md §8), as a normal mode.

For each weight matrix and bias of the net, every element w is moved by a step
h and the objective E = sum over cost layers of coeff * cost[0] (summed over
the cases, in float64 from the engine's float32 terms) is recomputed, and the
difference quotient is compared with the engine's gradient, which holds
-(1/N) dE/dw (§1.1). A matrix passes when ||numeric - analytic|| /
||analytic|| < 0.02.

Two rules:

* ``central`` (the default): (E(w + h) - E(w - h)) / (2 N h). Its error is
  O(h^2). With the release's steps the one-sided rule's O(h) error alone breaks
  the 2% bound on correct gradients: on layers.gc.cfg at seed 0 the conv biases
  (h = 0.05, each moving 900 outputs per case through relu, cmrnorm and two fc
  layers) show 2-6% one-sided and 0.06-0.3% central.
* ``one-sided``: (E(w + h) - E(w)) / (N h), the release's rule exactly.

Steps as the release chose them: fc weights and biases 0.01; other weights
0.02 and biases 0.05. The engine computes in float32, as the release did.

A third verdict besides ok and FAIL: not checkable at this point, ``saturated``
(or ``flat``). When a softmax under a cost rounds a case's largest probability to
exactly 1 in float32, that case's -log p is 0 and stays 0 under a step, while the
analytic gradient is tiny but not 0: a matrix whose gradient comes only from such
cases gets a relative error near 1 that says nothing about the gradient. So when
no step moved E by more than its float32 resolution and the engine's gradient
agrees that none should have, the matrix is reported as not checkable, with the
softmax layers' largest |input| and their cases at p = 1 ("saturated" when there
are such cases, "flat" otherwise), instead of FAIL. It is not a pass.

Each evaluation reruns only the layers below the moved matrix
(``Net.forward_from``: bit for bit what a whole forward gives).

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


RULES = ("central", "one-sided")


@dataclass
class MatrixCheck:
    layer: str
    what: str          # "weights[i]" or "biases"
    elements: int
    step: float
    relative_error: float
    rule: str = "central"            # one of RULES
    unresolved: str | None = None    # why E cannot resolve this matrix's gradient here (see the module's text)
    saturated: bool = False          # ... and a softmax under a cost rounds some case's top probability to 1

    @property
    def passed(self) -> bool:
        return self.unresolved is None and bool(np.isfinite(self.relative_error)) and self.relative_error < THRESHOLD

    @property
    def verdict(self) -> str:
        """"ok", "FAIL", or, neither a pass nor a failure, "saturated" or "flat" (not checkable here)."""
        if self.unresolved is not None:
            return "saturated" if self.saturated else "flat"
        return "ok" if self.passed else "FAIL"

    def text(self) -> str:
        """One line of the report (``check-grads``, ``train --check-grads=1``)."""
        verdict = self.verdict
        if self.unresolved is not None:
            verdict += f": not checkable at this point ({self.unresolved})"
        return (f"{self.layer:>16} {self.what:<11} {self.elements:>9} elements  step {self.step:<5g} "
                f"relative error {self.relative_error:.3e}  {verdict}")

    def to_dict(self) -> dict:
        return {"layer": self.layer, "matrix": self.what, "elements": self.elements, "step": self.step,
                "rule": self.rule, "relative_error": self.relative_error, "passed": self.passed,
                "verdict": self.verdict, "unresolved": self.unresolved}


def summary(checks: Sequence[MatrixCheck]) -> str:
    """The report's last line: the rule, and how many matrices passed, failed and could not be checked."""
    failed = sum(c.verdict == "FAIL" for c in checks)
    unresolved = sum(c.unresolved is not None for c in checks)
    rule = checks[0].rule if checks else RULES[0]
    return (f"{len(checks) - failed - unresolved} of {len(checks)} matrices within {THRESHOLD:.0%} ({rule} differences)"
            + (f"; {failed} failed" if failed else "") + (f"; {unresolved} not checkable" if unresolved else ""))


def _gradient_config(config: Network) -> Network:
    """The same net with eps 1, momentum 0 and no decay, so that increments are gradients."""
    cfg = copy.deepcopy(config)
    for layer in cfg.layers.values():
        p = layer.params
        if "epsW" in p:
            n = len(p["epsW"])
            p.update(epsW=[1.0] * n, momW=[0.0] * n, wc=[0.0] * n, wballNormed=[0.0] * n,
                     epsB=1.0, momB=0.0, superEps=0.0)
            if "wcNormMax" in p:
                p.update(wcNormMax=[0.0] * n, wcNormMin=[0.0] * n)
    return cfg


def _objective(net: EngineNet, coeffs: dict[str, float], layer: str | None = None) -> float:
    """E after a whole forward, or after rerunning only `layer` and the layers below it."""
    if layer is None:
        net._net.forward("gradient-check")
    else:
        net._net.forward_from(layer)
    return _costs(net, coeffs)


def _costs(net: EngineNet, coeffs: dict[str, float]) -> float:
    """E = sum over cost layers of coeff * cost[0], in float64, from the last (partial) forward."""
    return float(sum(coeffs[name] * values[0] for name, values in net._net.costs().items()))


def _softmax_saturation(net: EngineNet, config: Network) -> tuple[str, bool]:
    """The softmax layers under a cost: the largest |input| and the cases whose largest
    probability rounds to 1 in float32, for the text of a not-checkable verdict; and
    whether any such case exists."""
    parts, saturated = [], False
    for layer in config.layers.values():
        if layer.type != "softmax" or not any(config.layers[c].is_cost for c in _consumers(config, layer.name)):
            continue
        probs = net.acts(layer.name)
        top = int(np.count_nonzero(probs.max(axis=0) == np.float32(1)))
        saturated = saturated or top > 0
        x = float(np.abs(net.acts(layer.inputs[0])).max())
        parts.append(f"softmax '{layer.name}': max |input| {x:.3g}, {top} of {probs.shape[1]} cases with max p = 1")
    return "; ".join(parts), saturated


def _consumers(config: Network, name: str) -> list[str]:
    return [other.name for other in config.layers.values() if name in other.inputs]


def _fc_row_step(net: EngineNet, config: Network, name: str, what: str
                 ) -> Callable[[int, np.float32], None] | None:
    """For an fc weight matrix that only its own layer uses, on the CPU: a function that moves
    element k by h by adding h x (input row r) to output row c of the layer's output (the
    weight's whole effect on it; W is (D_in, D_out) in Fortran order, k = r + c*D_in), then
    reruns only the layers below. The change is added to the output instead of rerunning the
    layer's product, which is the whole cost of a step on layers.gc.cfg (0.4 ms for an fc16
    layer: 16 outputs of 43,200 inputs): the same finite difference, up to the float32
    rounding of that one output row. With h = 0 it only puts the row back (the next step
    reruns the layers below; after the matrix, the caller's forward_from does). None where
    this does not apply."""
    layer = config.layers[name]
    if net.device != "cpu" or layer.type != "fc" or not what.startswith("weights["):
        return None
    i = int(what[len("weights["):-1])
    shared = any(src is not None and src[0] == name for other in config.layers.values()
                 for src in other.weight_sources)
    below = _consumers(config, name)
    if shared or not below:
        return None
    x = net.acts(layer.inputs[i])        # (D_in, N), the input the product read
    y = net.acts(name)                   # (D_out, N), a view of the engine's output
    base = y.copy()
    rows = x.shape[0]

    def step(k: int, h: np.float32) -> None:
        r, c = divmod(k, rows)[::-1]
        if not h:  # only the output: the next step reruns the layers below, the matrix's end all of them
            y[c] = base[c]
            return
        y[c] = base[c] + h * x[r]
        for consumer in below:
            net._net.forward_from(consumer)

    return step


def _indices(size: int, max_elements: int | None) -> np.ndarray:
    """All elements, or `max_elements` of them spread evenly over the matrix (first and last included)."""
    if max_elements is None or max_elements >= size:
        return np.arange(size)
    return np.unique(np.linspace(0, size - 1, max(1, max_elements)).round().astype(np.int64))


def check_gradients(config: Network, data: Sequence[np.ndarray], seed: int = 0,
                    progress: Callable[[int, int], None] | None = None,
                    max_elements: int | None = None, central: bool = True,
                    steps: tuple[float, float] | None = None,
                    load: Callable[[EngineNet], None] | None = None) -> list[MatrixCheck]:
    """Run the check on one minibatch.

    `central` (the default) uses the central difference (E(w+h) - E(w-h)) / 2Nh,
    whose error is O(h^2); ``central=False`` the release's one-sided (E(w+h) - E(w)) / Nh.
    `max_elements` checks only that many elements of each matrix, spread evenly over
    it (the release checked all). `steps` overrides the release's (weight, bias) steps
    for every layer. `load(net)`, when given, sets the weights and biases to check around
    (a checkpoint's) in place of the seeded ones.
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
    # E's float32 resolution: each case's term is a float32 (about 2^-24 relative, and
    # 2^-24 absolute where a probability sits next to 1), summed in float64.
    resolution = 2.0 ** -22 * (abs(base) + cases)
    saturation, saturated = _softmax_saturation(net, config)

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
    rule = "central" if central else "one-sided"
    for name, what, values, analytic, step in jobs:
        # Both in memory order (fc matrices are Fortran-ordered views); ravel of a contiguous
        # array is a view, so writing flat_values moves the net's weight.
        flat_values = values.ravel(order="K")
        flat_analytic = analytic.ravel(order="K")
        picked = _indices(flat_values.size, max_elements)
        delta = np.empty(picked.size)  # E(w + h) - E(w - h), or E(w + h) - E(w)
        h = np.float32(step)
        row_step = _fc_row_step(net, config, name, what)
        for j, k in enumerate(picked):
            if row_step is not None:
                row_step(int(k), h)
                plus = _costs(net, coeffs)
                if central:
                    row_step(int(k), -h)
                    delta[j] = plus - _costs(net, coeffs)
                else:
                    delta[j] = plus - base
                row_step(int(k), np.float32(0))
                done += 1
                if progress and done % 64 == 0:
                    progress(done, total)
                continue
            keep = flat_values[k]
            flat_values[k] = keep + h
            plus = _objective(net, coeffs, name)
            if central:
                flat_values[k] = keep - h
                delta[j] = plus - _objective(net, coeffs, name)
            else:
                delta[j] = plus - base
            flat_values[k] = keep
            done += 1
            if progress and done % 64 == 0:
                progress(done, total)
        net._net.forward_from(name)  # the layers below back to the unmoved weights, for the next matrix
        numeric = delta / ((2 if central else 1) * cases * step)
        ana = -flat_analytic[picked].astype(np.float64)  # the engine holds -(1/N) dE/dw
        denom = np.linalg.norm(ana)
        err = float(np.linalg.norm(numeric - ana) / denom) if denom > 0 else float(np.linalg.norm(numeric))
        # Not checkable: E did not move at its resolution under any step, and the engine's
        # gradient agrees that it should not have, so no gradient error of visible size hides
        # here; a relative error of such differences measures rounding, not the gradient.
        flat = (np.abs(delta).max(initial=0.0) < resolution
                and float(np.abs(ana).max(initial=0.0)) * (2 if central else 1) * cases * step < resolution)
        why = None
        if flat:
            why = f"E moves less than its float32 resolution {resolution:.1e}"
            why += f"; {saturation}" if saturation else ""
        results.append(MatrixCheck(name, what, int(picked.size), step, err, rule, why, flat and saturated))
    if progress:
        progress(total, total)
    return results
