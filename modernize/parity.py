"""Layer-by-layer parity of the PyTorch port against the C++ engine (``alexnet-replay parity``).

>>> report = run_parity("cifar-18pct", None, minibatch=4, steps=3)
>>> report.passed, report.first_divergence        # True, None
>>> write_report(report, "parity-out")            # report.json, report.md, report.html

Engine and port get the same weights (the engine's, copied), the same data, the same
dropout masks and nrelu noise (drawn by the port, injected into the engine with
``port.masks_to_engine``). What is compared, per layer in execution order
(docs/parity.md has the whole story):

* ``forward``: the port's layer run on the ENGINE's inputs, against the engine's output
  (isolated: the tolerance measures that layer's arithmetic only, so bit-exact classes
  are checked with tolerance 0);
* ``backward``: the gradient -dE/d(output) the layer receives, built from the port's
  vjps fed with the engine's incoming gradients (isolated, as above);
* ``weight_grad[i]``, ``bias_grad``: G = -(1/N) dE/dW (isolated);
* ``forward_e2e``, ``backward_e2e``: the same, the port running from the data alone;
  layers below a gate that the two forwards decided differently (a max-pool near-tie,
  a relu at ~0) are judged by relative Frobenius error, as tests/test_port.py does;
* ``step<k>:weights[i]``, ``step<k>:biases``: weights after k steps of the engine's
  ``train_step`` and of the port's ``ReleaseSGD``.

The engine's gradients are read from a gradient configuration (every rate 1, momentum
and decay 0: the increment is G; ``gradcheck._gradient_config``).

Tolerances are ``atol + rtol*|expected|`` with ``atol = scale * max|expected|`` (see TOL).
"""

from __future__ import annotations

import base64
import copy
import html
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import _core
from ..engine import EngineNet
from ..errors import ReplayError
from ..gradcheck import _gradient_config
from ..original.layers import Network
from ..original.shownet import load as load_config
from ..testing import compare
from . import port

FORMAT = "alexnet-replay parity"
VERSION = 1

# ---------------------------------------------------------------------------
# Tolerances, per layer class: (scale, rtol); atol = scale * max|expected|.
EXACT = (0.0, 0.0)
TOL: dict[str, tuple[float, float]] = {
    # Isolated layers, forward (the port's op on the engine's input).
    "copy": EXACT,         # data movement and products with 0/1 or a constant: same float ops
    "pool": EXACT,         # max/maxabs select an input; avg: raster-order sum from 0, one IEEE division
    "blur": EXACT,         # the same taps, order and separate roundings (mul, then add) as the engine
    "eltsum": EXACT,       # coeff*x, then additions in input order
    "neuron": EXACT,       # relu, nrelu, brelu, abs, square, linear, ident: +, *, compare only
    "neuron-exp": (5e-7, 2e-6),  # softrelu, drelu, logistic, tanh, sqrt: torch's exp/tanh/sigmoid/sqrt
                                 # kernels vs std::exp and the release's formulas; a few ulp
    "norm": (5e-7, 2e-6),  # window sums bit-equal; D^(-beta) by torch.pow vs std::pow: ulps
    "softmax": (5e-7, 2e-6),     # exp, and torch's vectorised max/sum/normalise order; for more
                                 # than 1000 classes rtol grows as sqrt(D/1000) (softmax_tol)
    "gemm": (1e-5, 0.0),   # conv/local/fc: OpenBLAS sgemm vs torch's conv/matmul; different fp32
                           # summation order and FMA use, both chosen per CPU by the libraries:
                           # error ~ sqrt(K) ulp of the sum of |terms| (measured up to 1.7e-6)
    "cost": (0.0, 1e-6),   # -sum log p: torch.log vs std::log per case (1 ulp), float64 sums
    # Isolated layers, backward (engine's dY fed to the port's vjp; sums over consumers
    # in the engine's order).
    "grad-copy": EXACT,    # routing/scaling of dY only, one consumer
    "grad-sum": (5e-7, 1e-6),    # several contributions added (pool windows, consumers, eltmax ties)
                                 # in autograd's order, not the engine's
    "grad-exp": (1e-5, 2e-6),    # neurons/softmax/norms: derivative formulas of the same math,
                                 # different roundings (g/(2y) vs g*(1/(2y)); tanh: autograd's
                                 # a*b*(1 - t^2) vs the release's b*(a - y^2/a), a difference of
                                 # nearly equal numbers near saturation: error ~ ulp(a)*|dY|)
    "grad-gemm": (1e-5, 0.0),    # dX and G of conv/local/fc: sgemm vs torch, as "gemm"
    # End to end, from the data: errors of every layer above accumulate.
    "e2e-forward": (1e-5, 0.0),  # the gemm error of every layer below, carried up
    "e2e-grad": (2e-5, 0.0),     # -dE/dy, G: products of the forward's errors with the backward's
    "e2e-rerouted": (0.1, 0.0),  # relative Frobenius error, for layers below a rerouted gate (see
                                 # gate_flips): a near-tie or near-zero decided differently by
                                 # the two forwards moves a whole gradient element; with N = 2 a few
                                 # such elements carry a few % of the norm below them
    "e2e-cost": (0.0, 1e-5),     # -sum log p of probabilities that carry the e2e-forward error
    # Training: weights and increments after K steps.
    "steps": (2e-5, 3e-7),       # atol relative to max|W - W0| (resp. max|inc|): G's error times eps;
                                 # rtol: the last rounding of W + inc (~1 ulp of W)
}
# On CUDA, nvcc contracts a*b + c into one FMA (one rounding instead of two) in torch's
# elementwise kernels, so the classes that are bit-exact on the CPU get one ulp of room.
CUDA_TOL: dict[str, tuple[float, float]] = {
    "pool": (0.0, 2.5e-7), "blur": (1e-7, 2.5e-7), "eltsum": (1e-7, 2.5e-7), "neuron": (0.0, 2.5e-7),
    "grad-copy": (0.0, 2.5e-7), "gemm": (2e-5, 0.0), "grad-gemm": (2e-5, 0.0),
}
REL_FLOOR = 1e-3  # max rel error counts elements with |ref| >= REL_FLOOR * max|ref| only

QUANTITY_ORDER = ("forward", "forward_e2e", "backward", "backward_e2e", "weight_grad", "bias_grad")


# ---------------------------------------------------------------------------
# Shared helpers (also used by tests/test_port.py)


def forward_kind(layer) -> str:
    t = layer.type
    if t in ("conv", "local", "fc"):
        return "gemm"
    if t in ("rnorm", "cnorm", "cmrnorm"):
        return "norm"
    if t == "neuron":
        return "neuron" if layer.neuron.split("[")[0] in ("relu", "nrelu", "brelu", "abs", "square", "linear",
                                                         "ident") else "neuron-exp"
    return {"pool": "pool", "blur": "blur", "eltsum": "eltsum", "softmax": "softmax"}.get(t, "copy")


def backward_kind(layer, summed: bool) -> str:
    t = layer.type
    if t in ("conv", "local", "fc"):
        return "grad-gemm"
    if t in ("rnorm", "cnorm", "cmrnorm", "softmax", "cost.logreg", "cost.sum2") or (
            t == "neuron" and forward_kind(layer) == "neuron-exp"):
        return "grad-exp"
    if summed or t in ("pool", "blur", "eltmax"):
        return "grad-sum"
    return "grad-copy"


def fused_softmax(config, name: str) -> bool:
    """§3.12: a softmax whose only consumer is a logreg (as its probabilities) gets the fused gradient."""
    layer = config.layers[name]
    users = [l for l in config.layers.values() if name in l.inputs]
    return layer.type == "softmax" and len(users) == 1 and users[0].type == "cost.logreg" and \
        users[0].inputs[1] == name


def softmax_tol(tol: dict[str, tuple[float, float]], classes: int) -> dict[str, tuple[float, float]]:
    """`tol` with the softmax class widened for a softmax over `classes` values: the
    normalising sum of D terms is added in another order on each side, and the
    difference of two such roundings grows as sqrt(D) ulp. TOL's rtol holds for the
    1000 classes of ImageNet 2012; the 10184 of ImageNet 2009 get sqrt(10.2) times it."""
    scale, rtol = tol["softmax"]
    return {**tol, "softmax": (scale, rtol * max(1.0, float(np.sqrt(classes / 1000))))}


def classes_of(config) -> int:
    return next(l.outputs for l in config.layers.values() if l.type == "softmax")


def make_batch(config, cases: int, seed: int):
    """Port data (images NCHW, then one array per further data matrix) and the engine's
    (D, N) matrices of the same batch. Matrix 0 holds the images, N(0, 1); a one-value
    matrix holds class labels below the softmax's class count; a wider one (Flickr's tag
    vectors, §D.7) holds 0/1 targets."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cases, *config.profile.image)).astype(np.float32)
    port_data, engine_data = [torch.from_numpy(x)], [np.ascontiguousarray(x.reshape(cases, -1).T)]
    widths = {l.attrs["dataIdx"]: l.outputs for l in config.layers.values() if l.type == "data"}
    for idx in range(1, max(widths) + 1):
        width = widths.get(idx, 1)
        if width == 1:
            y = rng.integers(0, classes_of(config), cases).astype(np.float32)
        else:
            y = (rng.random((cases, width)) < 0.5).astype(np.float32)
        port_data.append(torch.from_numpy(y))
        engine_data.append(np.ascontiguousarray(y.reshape(cases, -1).T))
    return port_data, engine_data


def rescale_weights(net: EngineNet, seed: int, cache: dict | None = None) -> None:
    """Weights N(0, 1/fan-in) and biases N(0, 0.1^2): signals of order 1 in every layer,
    so that relative errors are measured on values that matter. `cache` (a dict) keeps
    the draws, so a second net with the same seed is filled by copying."""
    def draw(key, shape, divisor: float = 1.0, factor: float = 1.0) -> np.ndarray:
        if cache is not None and (seed, key) in cache:
            return cache[(seed, key)]
        a = (factor * rng.standard_normal(shape) / divisor).astype(np.float32)
        if cache is not None:
            cache[(seed, key)] = a
        return a

    rng = np.random.default_rng(seed)
    for layer in net.config.layers.values():
        if layer.type in port.WEIGHT_TYPES:
            for i, (rows, cols) in enumerate(layer.weights):
                if layer.weight_sources[i] is None:
                    fan_in = rows // (layer.attrs["modules"] if layer.type == "local" else 1)
                    net.set_weights(layer.name, draw((layer.name, i), (rows, cols), divisor=np.sqrt(fan_in)), i)
            net.set_biases(layer.name, draw((layer.name, "bias"), layer.biases, factor=0.1))


def engine_image(net: EngineNet, name: str, config) -> torch.Tensor:
    return port.from_engine_acts(net.acts(name), config.layers[name])


def gate_flips(config, engine: EngineNet, out, cases: int) -> dict[str, np.ndarray]:
    """Where the two forwards took a different branch of a discontinuous backward.

    The backward of max pooling, eltmax, relu, nrelu, brelu and abs depends on comparisons
    (which elements tie with the max, which outputs are > 0). Two forwards that differ by a
    few ulp can decide a near-tie or a near-zero differently, and then a whole gradient
    element goes elsewhere. Returns, per input layer, the positions (engine layout) whose
    received gradient such a flip changes; empty when the forwards branch alike. `out`:
    the port's outputs (any device).
    """
    flips: dict[str, np.ndarray] = {}

    def mark(name: str, where: torch.Tensor) -> None:
        w = port.to_engine_acts(where.reshape(cases, -1).float()).numpy() > 0
        flips[name] = flips.get(name, np.zeros_like(w)) | w

    for layer in [l for l in config.layers.values() if l.type in ("pool", "eltmax", "neuron")]:
        ye, yp = engine_image(engine, layer.name, config), out[layer.name].detach().cpu()
        xes = [engine_image(engine, i, config) for i in layer.inputs]
        xps = [out[i].detach().cpu() for i in layer.inputs]
        if layer.type == "pool" and layer.attrs["pool"] != "avg":
            a = layer.attrs
            c, side = a["channels"], a["imgSize"]

            def ties(x, y):
                xp = port._exact_pad(x.reshape(cases, c, side, side), a["start"], a["outputsX"], a["sizeX"],
                                     a["stride"], float("nan"))
                cols = torch.nn.functional.unfold(xp, a["sizeX"], stride=a["stride"])
                return cols.view(cases, c, a["sizeX"] ** 2, -1) == y.reshape(cases, c, 1, -1)

            te, tp = ties(xes[0], ye), ties(xps[0], yp)
            windows = (te != tp).any(2, keepdim=True).expand_as(te).float().reshape(cases, -1, te.shape[-1])
            size = port._exact_pad(xes[0].reshape(cases, c, side, side), a["start"], a["outputsX"],
                                   a["sizeX"], a["stride"], 0.0).shape[-1]
            hit = torch.nn.functional.fold(windows, (size, size), a["sizeX"], stride=a["stride"]) > 0
            if hit.any():  # back to the input's geometry: undo _exact_pad's shift and crop
                orig = torch.zeros(cases, c, side, side, dtype=torch.bool)
                shift = min(a["start"], 0)  # padded index q is image index q + shift (+ start if > 0)
                first = max(a["start"], 0)
                for q in range(size):
                    for r in range(size):
                        y, x = q + shift + first, r + shift + first
                        if 0 <= y < side and 0 <= x < side:
                            orig[..., y, x] = hit[..., q, r]
                mark(layer.inputs[0], orig)
        elif layer.type == "eltmax":
            for i, (xe, xp) in enumerate(zip(xes, xps)):
                mark(layer.inputs[i], (xe.reshape(ye.shape) == ye) != (xp.reshape(yp.shape) == yp))
        elif layer.type == "neuron":
            kind = layer.neuron.split("[")[0]
            if kind in ("relu", "nrelu"):
                mark(layer.inputs[0], ((ye > 0) != (yp > 0)).reshape(xes[0].shape))
            elif kind == "brelu":
                a = float(layer.neuron.split("[")[1].rstrip("]"))
                mark(layer.inputs[0], (((ye > 0) & (ye < a)) != ((yp > 0) & (yp < a))).reshape(xes[0].shape))
            elif kind == "abs":
                mark(layer.inputs[0], (xes[0] > 0) != (xps[0] > 0))
    return {k: v for k, v in flips.items() if v.any()}


# ---------------------------------------------------------------------------
# Metrics and the report


@dataclass
class Metric:
    """One (layer, quantity) comparison. ``kind`` names the TOL row used."""

    layer: str
    quantity: str
    kind: str
    max_abs: float
    max_rel: float           # over elements with |ref| >= REL_FLOOR * max|ref|
    cosine: float
    max_ref: float
    atol: float
    rtol: float
    tolerance_used: float    # max over elements of |err| / (atol + rtol|ref|); <= 1 passes
    passed: bool
    elements: int
    note: str = ""


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _flat32(x, order: str) -> np.ndarray | None:
    """x as a 1-d float32 array in `order` ("C" or "F"), a view where the layout allows;
    None when x is not float32 (then the float64 numpy path measures it)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return np.ravel(x, order=order) if x.dtype == np.float32 else None


def _stats(actual, expected, scale_of, mask, scale: float, rtol: float) -> dict | None:
    """The engine's one-pass metrics (_core.compare_arrays), or None when an input is not float32.
    Both arrays are flattened in the expected array's memory order, so that a Fortran-order
    fc weight view is read in place."""
    e_arr = expected.detach().cpu().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    order = "F" if e_arr.flags.f_contiguous and not e_arr.flags.c_contiguous else "C"
    a, e = _flat32(actual, order), _flat32(e_arr, order)
    s = None if scale_of is None else _flat32(scale_of, order)
    if a is None or e is None or (scale_of is not None and s is None) or a.size != e.size:
        return None
    m = None if mask is None else np.ascontiguousarray(np.ravel(np.asarray(mask, dtype=bool), order=order))
    return _core.compare_arrays(a, e, s, m, scale, rtol, REL_FLOOR)


def _cosine(dot: float, na: float, ne: float) -> float:
    return dot / (na * ne) if na > 0 and ne > 0 else (1.0 if na == ne else 0.0)


def measure(actual, expected, kind: str, layer: str, quantity: str, tol: dict[str, tuple[float, float]],
            scale_of=None, mask=None) -> Metric:
    """Compare with the table's tolerance; atol is relative to max|scale_of| (default: expected).
    `mask` (bool, expected's shape): positions left out (taken from expected).

    float32 inputs go through the engine's one-pass metric (exact differences in float64,
    sums in a fixed order); anything else through :func:`measure_numpy`, the reference
    that tests/test_parity.py holds it to."""
    scale, rtol = tol[kind]
    r = _stats(actual, expected, scale_of, mask, scale, rtol)
    if r is None:
        return measure_numpy(actual, expected, kind, layer, quantity, tol, scale_of, mask)
    n = int(np.size(expected))
    if r["nonfinite_actual"] or r["nonfinite_expected"]:
        return _nonfinite(layer, quantity, kind, rtol, n, r["nonfinite_actual"], r["nonfinite_expected"])
    na, ne = np.sqrt(r["norm2_actual"]), np.sqrt(r["norm2_expected"])
    return Metric(layer, quantity, kind, r["max_abs_diff"], r["max_rel"], float(_cosine(r["dot"], na, ne)),
                  r["max_abs_expected"], r["atol"], rtol, r["tolerance_used"], r["over"] == 0, n)


def _nonfinite(layer, quantity, kind, rtol, n, bad_a, bad_e) -> Metric:  # a failure, whatever the tolerance
    return Metric(layer, quantity, kind, float("inf"), float("inf"), float("nan"), float("nan"), float("nan"),
                  rtol, float("inf"), False, n, note=f"non-finite values: port {bad_a}, engine {bad_e}")


def measure_numpy(actual, expected, kind: str, layer: str, quantity: str, tol: dict[str, tuple[float, float]],
                  scale_of=None, mask=None) -> Metric:
    """:func:`measure` in plain float64 numpy, element by element as docs/parity.md states it."""
    a, e = _numpy(actual), _numpy(expected)
    if mask is not None:
        a = np.where(mask, e, a)
    ref = np.abs(e if scale_of is None else _numpy(scale_of))
    scale, rtol = tol[kind]
    top = float(ref.max()) if ref.size else 0.0
    atol = scale * top
    if not (np.isfinite(a).all() and np.isfinite(e).all()):
        return _nonfinite(layer, quantity, kind, rtol, int(e.size), int((~np.isfinite(a)).sum()),
                          int((~np.isfinite(e)).sum()))
    m = compare(a, e, atol=atol, rtol=rtol)
    diff = np.abs(a - e)
    big = np.abs(e) >= REL_FLOOR * float(np.abs(e).max()) if e.size else np.zeros(0, bool)
    big &= np.abs(e) > 0
    max_rel = float((diff[big] / np.abs(e[big])).max()) if big.any() else (0.0 if not diff.any() else float("inf"))
    na, ne = float(np.linalg.norm(a)), float(np.linalg.norm(e))
    cosine = _cosine(float(np.vdot(a.ravel(), e.ravel())), na, ne)
    return Metric(layer, quantity, kind, m["max_abs"], max_rel, cosine, float(np.abs(e).max()) if e.size else 0.0,
                  atol, rtol, m["tolerance_used"], bool(m["passed"]), int(e.size))


def measure_rerouted(actual, expected, layer: str, quantity: str, tol) -> Metric:
    """Below a flipped gate: relative Frobenius error against TOL["e2e-rerouted"]."""
    limit = tol["e2e-rerouted"][0]
    r = _stats(actual, expected, None, None, 0.0, 0.0)
    if r is None:  # not float32: the same numbers in float64 numpy
        a, e = _numpy(actual), _numpy(expected)
        d = a - e
        r = {"nonfinite_actual": int((~np.isfinite(a)).sum()), "nonfinite_expected": int((~np.isfinite(e)).sum()),
             "max_abs_diff": float(np.abs(d).max()) if d.size else 0.0,
             "max_abs_expected": float(np.abs(e).max()) if e.size else 0.0, "dot": float(np.vdot(a, e)),
             "norm2_actual": float(np.vdot(a, a)), "norm2_expected": float(np.vdot(e, e)),
             "norm2_diff": float(np.vdot(d, d))}
    n = int(np.size(expected))
    if r["nonfinite_actual"] or r["nonfinite_expected"]:
        return _nonfinite(layer, quantity, "e2e-rerouted", 0.0, n, r["nonfinite_actual"], r["nonfinite_expected"])
    na, ne, nd = np.sqrt(r["norm2_actual"]), np.sqrt(r["norm2_expected"]), np.sqrt(r["norm2_diff"])
    rel = float(nd / ne) if ne > 0 else float(na)
    cosine = float(r["dot"] / (na * ne)) if na > 0 and ne > 0 else 1.0
    return Metric(layer, quantity, "e2e-rerouted", r["max_abs_diff"], rel, cosine, r["max_abs_expected"],
                  limit, 0.0, rel / limit if limit else float("inf"), rel <= limit, n,
                  note="below a flipped gate: max_rel is the relative Frobenius error")


@dataclass
class ParityReport:
    network: str
    params: str | None
    image_size: tuple[int, ...]
    minibatch: int
    steps: int
    seed: int
    device: str
    fault: str | None
    layers: list[str]                       # execution order
    metrics: list[Metric] = field(default_factory=list)
    flips: dict[str, int] = field(default_factory=dict)  # layer -> gradient positions moved by a gate flip
    notes: list[str] = field(default_factory=list)       # what was changed to make the run comparable

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.metrics)

    def failures(self) -> list[Metric]:
        return [m for m in self.metrics if not m.passed]

    @property
    def first_divergence(self) -> Metric | None:
        """Where the port first departs from the engine. Stages in order: isolated forward
        (execution order), isolated backward and G (reverse execution order, the order the
        gradient travels), end-to-end forward, end-to-end backward, then the steps. The
        isolated stages come first because they localise an error: a faulty layer fails
        there alone, while end to end every layer after it fails too."""
        bad = self.failures()
        if not bad:
            return None
        pos = {name: i for i, name in enumerate(self.layers)}
        return min(bad, key=lambda m: _stage_key(m, pos))

    def quantities(self) -> list[str]:
        """Plot groups: forward, backward, step1..stepK."""
        groups = ["forward", "backward"]
        groups += [f"step{k}" for k in range(1, self.steps + 1)]
        return groups

    def to_dict(self) -> dict[str, Any]:
        first = self.first_divergence
        return {
            "format": FORMAT, "version": VERSION,
            "network": self.network, "params": self.params, "image_size": list(self.image_size),
            "minibatch": self.minibatch, "steps": self.steps, "seed": self.seed, "device": self.device,
            "fault": self.fault, "passed": self.passed,
            "first_divergence": None if first is None else {"layer": first.layer, "quantity": first.quantity},
            "rel_floor": REL_FLOOR,
            "tolerances": {k: {"scale": v[0], "rtol": v[1]} for k, v in self._tol().items()},
            "layers": self.layers,
            "gate_flips": self.flips,
            "notes": self.notes,
            "metrics": [_jsonable(asdict(m)) for m in self.metrics],
        }

    def _tol(self) -> dict[str, tuple[float, float]]:
        return tolerances(self.device)


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not np.isfinite(v):
            v = str(v)  # JSON has no inf/nan
        out[k] = v
    return out


def _quantity_rank(q: str) -> tuple[int, str]:
    base = q.split("[")[0]
    if base.startswith("step"):
        return (100 + int(base[4:].split(":")[0]), q)
    return (QUANTITY_ORDER.index(base) if base in QUANTITY_ORDER else 50, q)


def _stage_key(m: Metric, pos: dict[str, int]) -> tuple:
    q = m.quantity
    p = pos.get(m.layer, len(pos))
    if q.startswith("step"):
        return (4 + int(q[4:].split(":")[0]), p, q)
    if q == "forward":
        return (0, p, q)
    if q == "forward_e2e":
        return (2, p, q)
    if q.endswith("_e2e") or "_e2e[" in q:
        return (3, -p, q)
    return (1, -p, q)  # backward, weight_grad[i], bias_grad (isolated)


def _group(q: str) -> str:
    if q.startswith("step"):
        return q.split(":")[0]
    return "forward" if q.startswith("forward") or q == "cost" else "backward"


def tolerances(device: str) -> dict[str, tuple[float, float]]:
    tol = dict(TOL)
    if device.startswith("cuda"):
        tol.update(CUDA_TOL)
    return tol


# ---------------------------------------------------------------------------
# Faults: a deliberate error in one layer of the port, to show the report finds it


def _fault_min_div(config: Network, module: port.ReleaseNet, name: str) -> None:
    """The norm layer ignores minDiv (uses 1)."""
    layer = config.layers[name]
    if layer.type not in ("cmrnorm", "rnorm", "cnorm"):
        raise ReplayError(f"fault minDiv: layer '{name}' is a {layer.type}, not a norm layer")
    if layer.params.get("minDiv", 1.0) == 1.0:
        raise ReplayError(f"fault minDiv: layer '{name}' has minDiv 1; ignoring it changes nothing")
    layer.params["minDiv"] = 1.0


def _fault_scale(config: Network, module: port.ReleaseNet, name: str) -> None:
    """The layer's output is multiplied by 1 + 1e-4 (a small, smooth error)."""
    inner = module._layer

    def patched(layer, xs, train, masks, noise):
        y = inner(layer, xs, train, masks, noise)
        return y * (1 + 1e-4) if layer.name == name and not layer.is_cost else y

    module._layer = patched  # instance attribute shadows the method


FAULTS: dict[str, Callable[[Network, port.ReleaseNet, str], None]] = {"minDiv": _fault_min_div,
                                                                       "scale": _fault_scale}


def _parse_fault(fault: str | None, config: Network) -> tuple[str, str] | None:
    if fault is None:
        return None
    kind, sep, name = fault.partition(":")
    if not sep or kind not in FAULTS:
        raise ReplayError(f"fault {fault!r}: expected KIND:LAYER with KIND one of {', '.join(FAULTS)}")
    if name not in config.layers:
        raise ReplayError(f"fault {fault!r}: no layer '{name}' in the network")
    return kind, name


def _port_module(config: Network, seed: int, fault: tuple[str, str] | None, device: torch.device):
    """The port of `config` (a faulty copy when `fault` is given), weights not initialised."""
    cfg = copy.deepcopy(config) if fault else config
    module = port.build_module(cfg, seed=seed, init=False)
    if fault:
        FAULTS[fault[0]](cfg, module, fault[1])
    return module.to(device)


# ---------------------------------------------------------------------------
# The run


def _device(device: str) -> torch.device:
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ReplayError(f"CUDA requested but not available: torch {torch.__version__} "
                              f"(built with CUDA {torch.version.cuda}) finds no usable GPU")
        # STYLE habit 9: exact by default, no TF32 in anything a parity test covers.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return torch.device(device)
    if device != "cpu":
        raise ReplayError(f"device must be cpu or cuda (got {device!r})")
    return torch.device("cpu")


def run_parity(layers, params=None, image_size=None, minibatch: int = 4, steps: int = 3, seed: int = 0,
               device: str = "cpu", fault: str | None = None, *, lenient: bool = False,
               rescale: bool = True) -> ParityReport:
    """Compare engine and port on one network; see the module docstring.

    `layers`/`params`: definition and parameter files (or a bundled name such as
    ``cifar-18pct``), or a parsed :class:`Network` as `layers` (then `params` is ignored).
    `rescale`: weights N(0, 1/fan-in) instead of the file's initW, so signals are of
    order 1 in every layer and relative errors mean something.
    """
    if minibatch < 1 or steps < 0:
        raise ReplayError(f"minibatch must be >= 1 and steps >= 0 (got {minibatch}, {steps})")
    dev = _device(device)
    if isinstance(layers, Network):
        config = layers
    else:
        config, _ = load_config(layers, params, image_size=tuple(image_size) if image_size else None,
                                lenient=lenient)
    if config.params_path is None:
        raise ReplayError(f"{config.path}: parity needs the layer-parameter file too")
    config, quiet = _without_rate_noise(config)
    parsed_fault = _parse_fault(fault, config)
    tol = tolerances(str(dev))
    report = ParityReport(str(config.path), str(config.params_path), tuple(config.profile.image), minibatch, steps,
                          seed, str(dev), fault, list(config.layers), notes=quiet)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype())
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    try:
        drawn: dict | None = {} if rescale else None  # the rescaled weights, drawn once for both nets
        with torch.random.fork_rng(devices=[]):
            _gradients(report, config, minibatch, seed, dev, parsed_fault, tol, drawn)
            if steps:
                _training(report, config, minibatch, seed, steps, dev, parsed_fault, tol, drawn)
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.set_default_dtype(saved[1])
    return report


def _without_rate_noise(config: Network) -> tuple[Network, list[str]]:
    """§4.3's rate noise (noiseStdev > 0) is drawn by the engine from its own generator and
    cannot be injected; parity runs such schedules with noiseStdev 0 (on both sides)."""
    from ..original.params import Schedule

    noisy = [(l.name, k) for l in config.layers.values() for k in ("schedW", "schedB")
             if k in l.params and dict(l.params[k].params).get("noiseStdev", 0.0) > 0]
    if not noisy:
        return config, []
    cfg = copy.deepcopy(config)
    for name, key in noisy:
        s = cfg.layers[name].params[key]
        cfg.layers[name].params[key] = Schedule(s.type, tuple((k, 0.0 if k == "noiseStdev" else v)
                                                              for k, v in s.params))
    return cfg, [f"noiseStdev set to 0 in {len(noisy)} schedule(s) ({', '.join(f'{n}.{k}' for n, k in noisy)}): "
                 "the engine draws its rate noise itself"]


def _engine_weight_grad(engine: EngineNet, layer, i: int) -> np.ndarray:
    # conv keeps G in its gradient buffer; fc and local fold it into the increment (eps 1, mom 0)
    return engine.weight_grad(layer.name, i) if layer.type == "conv" else engine.weight_inc(layer.name, i)


def isolated_backward(cfg: Network, engine: EngineNet, mod, out: dict, masks: dict, noise: dict, cases: int,
                      tol: dict[str, tuple[float, float]], dev=torch.device("cpu")):
    """The port's backward, layer by layer, each layer fed the engine's inputs and the engine's
    incoming gradient. Returns ({layer: gradient it receives}, {layer: TOL class of that
    gradient}, [(layer, input index or None for the bias, G)]).

    Contributions to each producer come from its consumers in reverse execution order, the
    first overwriting (and href always overwriting, §13 item 8), as the engine adds them.
    A fused softmax (§3.12) is skipped: the logreg's gradient goes to the softmax's input.
    """
    received: dict[str, torch.Tensor] = {}
    kind_of: dict[str, str] = {}
    weight_grads: list[tuple] = []

    def inputs_of(layer):
        return [engine_image(engine, i, cfg).to(dev).requires_grad_(True) for i in layer.inputs]

    def needs_grad(name: str) -> bool:
        return out[name].requires_grad and cfg.layers[name].type != "data"

    for layer in reversed(list(cfg.layers.values())):
        if layer.type == "data" or fused_softmax(cfg, layer.name):
            continue
        xs = inputs_of(layer)
        wparams: list[tuple[int | None, torch.Tensor]] = []
        if layer.type in port.WEIGHT_TYPES:
            w = mod.weight_layer(layer.name)
            wparams = [(i, p) for i, p in enumerate(w.weight)] + [(None, w.bias)]
        if layer.is_cost:
            coeff = layer.params.get("coeff", 1.0)
            if layer.type == "cost.logreg" and fused_softmax(cfg, layer.inputs[1]):
                soft = cfg.layers[layer.inputs[1]]  # the fused gradient goes to the softmax's input
                x = inputs_of(soft)[0]
                cost = mod.layer_forward(layer.name, [xs[0], mod.layer_forward(soft.name, [x])])
                (g,) = torch.autograd.grad(-coeff * cost[0], [x])
                targets = [(soft.inputs[0], g, soft)]
            else:
                cost = mod.layer_forward(layer.name, xs)
                gs = torch.autograd.grad(-coeff * cost[0], xs, allow_unused=True)
                targets = [(n, g, layer) for n, g in zip(layer.inputs, gs) if g is not None]
        else:
            y = mod.layer_forward(layer.name, xs, train=True, masks=masks, noise=noise)
            if not y.requires_grad:
                continue
            dy = port.from_engine_acts(engine.acts_grad(layer.name), layer).to(dev)
            gs = torch.autograd.grad(y, xs + [p for _, p in wparams], grad_outputs=dy, allow_unused=True)
            targets = [(n, g, layer) for n, g in zip(layer.inputs, gs[:len(xs)]) if g is not None]
            for (i, _), g in zip(wparams, gs[len(xs):]):
                if g is not None:
                    weight_grads.append((layer, i, g / cases))
        for name, g, source in targets:
            if not needs_grad(name):
                continue
            g = g.reshape(out[name].shape)
            if name not in received or source.type == "href":
                received[name] = g
                kind_of[name] = backward_kind(source, summed=False)
            else:  # the loosest class of the contributions, and at least a sum's
                received[name] = received[name] + g
                kind_of[name] = max(kind_of[name], backward_kind(source, summed=True), key=lambda k: tol[k])
    return received, kind_of, weight_grads


def _gradients(report: ParityReport, cfg: Network, cases: int, seed: int, dev, fault, tol, rescale) -> None:
    """One forward and backward: isolated and end-to-end comparisons."""
    engine = EngineNet(_gradient_config(cfg), cases, seed, dev.type, init_weights=rescale is None)  # cuda: CUDA engine
    if rescale is not None:
        rescale_weights(engine, seed + 100, rescale)
    mod = _port_module(cfg, seed, fault, dev)
    port.load_engine_weights(mod, engine)
    mod.to(dev)
    data, engine_data = make_batch(cfg, cases, seed + 200)
    data = [d.to(dev) for d in data]
    mod.generator = torch.Generator().manual_seed(seed + 300)
    out = mod(data, train=True)
    masks, noise = dict(mod.last_masks), dict(mod.last_noise)
    port.masks_to_engine(mod, engine)
    engine.forward(engine_data, train=True)
    engine.backward()
    grads = port.engine_gradients(mod, out)
    add = report.metrics.append

    def needs_grad(name: str) -> bool:
        return out[name].requires_grad and cfg.layers[name].type != "data"

    def inputs_of(layer):
        return [engine_image(engine, i, cfg).to(dev).requires_grad_(True) for i in layer.inputs]

    def acts(t):
        return port.to_engine_acts(t.detach().cpu())

    # Isolated forward.
    for layer in cfg.layers.values():
        if layer.type == "data":
            continue
        with torch.no_grad():
            y = mod.layer_forward(layer.name, inputs_of(layer), train=True, masks=masks, noise=noise)
        if layer.is_cost:
            add(measure(y[:1], engine.costs()[layer.name][:1], "cost", layer.name, "forward", tol))
        else:
            add(measure(acts(y), engine.acts(layer.name), forward_kind(layer), layer.name, "forward",
                        softmax_tol(tol, layer.outputs) if layer.type == "softmax" else tol))

    received, kind_of, weight_grads = isolated_backward(cfg, engine, mod, out, masks, noise, cases, tol, dev)
    for name, g in received.items():
        add(measure(acts(g), engine.acts_grad(name), kind_of[name], name, "backward", tol))
    for layer, i, g in weight_grads:
        if i is None:
            add(measure(port.bias_to_engine(layer, g), engine.bias_grad(layer.name), "grad-gemm", layer.name,
                        "bias_grad", tol))
        else:
            add(measure(port.weight_to_engine(layer, i, g, copy=False), _engine_weight_grad(engine, layer, i),
                        "grad-gemm", layer.name, f"weight_grad[{i}]", tol))

    # End to end, with the gate flips of tests/test_port.py's check_end_to_end.
    flips = gate_flips(cfg, engine, out, cases)
    report.flips = {name: int(m.sum()) for name, m in flips.items()}
    below: set[str] = set()
    stack = [i for name in flips for i in cfg.layers[name].inputs]
    while stack:
        name = stack.pop()
        if name not in below:
            below.add(name)
            stack.extend(cfg.layers[name].inputs)

    def grad_metric(actual, expected, diffuse: bool, layer: str, quantity: str, mask=None) -> Metric:
        if diffuse:
            return measure_rerouted(actual, expected, layer, quantity, tol)
        return measure(actual, expected, "e2e-grad", layer, quantity, tol, mask=mask)

    for layer in cfg.layers.values():
        if layer.type == "data":
            continue
        if layer.is_cost:
            add(measure(out[layer.name][:1], engine.costs()[layer.name][:1], "e2e-cost", layer.name,
                        "forward_e2e", tol))
            continue
        add(measure(acts(out[layer.name]), engine.acts(layer.name), "e2e-forward", layer.name, "forward_e2e", tol))
        if needs_grad(layer.name) and not fused_softmax(cfg, layer.name):
            add(grad_metric(grads.acts_grad[layer.name].cpu(), engine.acts_grad(layer.name), layer.name in below,
                            layer.name, "backward_e2e", flips.get(layer.name)))
    for layer in cfg.layers.values():
        if layer.type not in port.WEIGHT_TYPES:
            continue
        diffuse = layer.name in below or layer.name in flips  # G sums dY over the flipped positions too
        for i in range(len(layer.inputs)):
            add(grad_metric(grads.weight_grad[(layer.name, i)], _engine_weight_grad(engine, layer, i), diffuse,
                            layer.name, f"weight_grad_e2e[{i}]"))
        add(grad_metric(grads.bias_grad[layer.name], engine.bias_grad(layer.name), diffuse, layer.name,
                        "bias_grad_e2e"))


def _with_ancestors(cfg: Network, flips) -> set[str]:
    """The flipped layers and every layer below them (whose gradients the flip reaches)."""
    seen: set[str] = set()
    stack = list(flips)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(cfg.layers[name].inputs)
    return seen


def _training(report: ParityReport, cfg: Network, cases: int, seed: int, steps: int, dev, fault, tol,
              rescale) -> None:
    """K steps: the port's ReleaseSGD on its summed loss vs the engine's train_step."""
    engine = EngineNet(cfg, cases, seed, dev.type, init_weights=rescale is None)  # cuda: CUDA engine
    if rescale is not None:
        rescale_weights(engine, seed + 100, rescale)
    mod = _port_module(cfg, seed, fault, dev)
    port.load_engine_weights(mod, engine)
    mod.to(dev)
    start = {k: v.clone() for k, v in mod.state_dict().items()}
    opt = port.ReleaseSGD.for_module(mod)
    mod.generator = torch.Generator().manual_seed(seed + 400)
    progress = [k / max(steps, 1) for k in range(steps)]
    rerouted: set[str] = set()  # layers whose G, in some step so far, held a gate flip's element
    diverged = False
    for step, p in enumerate(progress, 1):
        data, engine_data = make_batch(cfg, cases, seed + 500 + step)
        out = mod([d.to(dev) for d in data], train=True)
        port.masks_to_engine(mod, engine)
        engine.train_step(engine_data, progress=p)
        flips = gate_flips(cfg, engine, out, cases)  # the engine's acts are still this step's
        for name, m in flips.items():
            report.flips[f"step{step}:{name}"] = int(m.sum())
        rerouted |= _with_ancestors(cfg, flips)
        if diverged:  # an earlier flip moved weights by more than rounding: every layer is off now
            rerouted |= set(cfg.layers)
        diverged = diverged or bool(flips)
        opt.zero_grad()
        mod.objective(out).backward()
        opt.set_progress(p, z=0.0)
        opt.step(cases)
        state = mod.state_dict()
        for layer in cfg.layers.values():
            if layer.type not in port.WEIGHT_TYPES:
                continue
            for i in range(len(layer.inputs)):
                key = f"{layer.name}.weight.{i}"
                w0 = port.weight_to_engine(layer, i, start[key], copy=False)  # start is never changed
                ew = engine.weights(layer.name, i)
                if layer.name in rerouted:  # a whole gradient element moved: compare W - W0 in norm
                    report.metrics.append(measure_rerouted(port.weight_to_engine(layer, i, state[key], copy=False) - w0, ew - w0,
                                                           layer.name, f"step{step}:weights[{i}]", tol))
                    continue
                report.metrics.append(measure(port.weight_to_engine(layer, i, state[key], copy=False), ew, "steps", layer.name,
                                              f"step{step}:weights[{i}]", tol, scale_of=ew - w0))
            b0 = port.bias_to_engine(layer, start[f"{layer.name}.bias"])
            eb = engine.biases(layer.name)
            if layer.name in rerouted:
                report.metrics.append(measure_rerouted(port.bias_to_engine(layer, state[f"{layer.name}.bias"]) - b0,
                                                       eb - b0, layer.name, f"step{step}:biases", tol))
                continue
            report.metrics.append(measure(port.bias_to_engine(layer, state[f"{layer.name}.bias"]), eb, "steps",
                                          layer.name, f"step{step}:biases", tol, scale_of=eb - b0))


# ---------------------------------------------------------------------------
# Writers


def _atomic_write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fmt(v: float) -> str:
    return f"{v:.3g}" if np.isfinite(v) else str(v)


def report_markdown(report: ParityReport) -> str:
    first = report.first_divergence
    lines = [f"# Parity: {Path(report.network).name}", "",
             f"Image {'x'.join(map(str, report.image_size))}, minibatch {report.minibatch}, {report.steps} steps, "
             f"seed {report.seed}, device {report.device}" + (f", fault {report.fault}" if report.fault else "") + ".",
             "", f"**{'PASS' if report.passed else 'FAIL'}**" +
             (f": first divergence at layer `{first.layer}` ({first.quantity})" if first else ""), "",
             "| layer | quantity | class | max abs | max rel | cosine | tol used | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for m in _ordered(report):
        lines.append(f"| {m.layer} | {m.quantity} | {m.kind} | {_fmt(m.max_abs)} | {_fmt(m.max_rel)} | "
                     f"{m.cosine:.9f} | {_fmt(m.tolerance_used)} | {'pass' if m.passed else 'FAIL'} |")
    if report.flips:
        lines += ["", "Gate flips (gradient positions moved by a near-tie decided differently): " +
                  ", ".join(f"{k}: {v}" for k, v in report.flips.items())]
    return "\n".join(lines) + "\n"


def _ordered(report: ParityReport) -> list[Metric]:
    """Forward, backward, then steps; layers in execution order within each."""
    pos = {name: i for i, name in enumerate(report.layers)}
    return sorted(report.metrics, key=lambda m: (_group_rank(m.quantity), pos.get(m.layer, 0),
                                                 _quantity_rank(m.quantity)))


def _group_rank(q: str) -> int:
    g = _group(q)
    return 0 if g == "forward" else 1 if g == "backward" else 1 + int(g[4:])


def _plot(report: ParityReport, group: str) -> str | None:
    """Max rel error per layer (execution order) of one group, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    metrics = [m for m in report.metrics if _group(m.quantity) == group]
    if not metrics:
        return None
    layers = [l for l in report.layers if any(m.layer == l for m in metrics)]
    x = {l: i for i, l in enumerate(layers)}
    floor = 1e-10  # exact (0) drawn here
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(layers) + 2), 3.6), dpi=80)
    series: dict[str, list[tuple[int, float, bool]]] = {}
    for m in metrics:
        name = m.quantity.split(":")[-1].split("[")[0]
        v = m.max_rel if np.isfinite(m.max_rel) else 1e3
        series.setdefault(name, []).append((x[m.layer], max(v, floor), m.passed))
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, lw=1, label=name)
        bad = [p for p in pts if not p[2]]
        if bad:
            ax.plot([p[0] for p in bad], [p[1] for p in bad], "x", color="red", ms=9, mew=2)
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"max rel error (|ref| >= {REL_FLOOR:g} max|ref|)")
    ax.set_title(f"{group} (exact = {floor:g}; red x = fail)")
    ax.legend(fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}td.l{text-align:left}
tr.pass td{background:#e6f6e6}tr.fail td{background:#f9d6d6}h1{font-size:1.3em}
.verdict-pass{color:#176117}.verdict-fail{color:#a01010}img{display:block;margin:0.5em 0}"""


def report_html(report: ParityReport) -> str:
    e = html.escape
    first = report.first_divergence
    head = (f"<h1>Parity: {e(Path(report.network).name)}</h1><p>Image {'x'.join(map(str, report.image_size))}, "
            f"minibatch {report.minibatch}, {report.steps} steps, seed {report.seed}, device {e(report.device)}"
            + (f", fault {e(report.fault)}" if report.fault else "") + ".</p>")
    verdict = "PASS" if report.passed else "FAIL"
    head += f"<p class='verdict-{verdict.lower()}'><b>{verdict}</b>"
    if first:
        head += f": first divergence at layer <code>{e(first.layer)}</code> ({e(first.quantity)})"
    head += "</p>"
    plots = ""
    for group in report.quantities():
        png = _plot(report, group)
        if png:
            plots += f"<h2>{e(group)}</h2><img alt='{e(group)} error per layer' src='data:image/png;base64,{png}'>"
    rows = "".join(
        f"<tr class='{'pass' if m.passed else 'fail'}'><td class='l'>{e(m.layer)}</td><td class='l'>{e(m.quantity)}"
        f"</td><td class='l'>{e(m.kind)}</td><td>{_fmt(m.max_abs)}</td><td>{_fmt(m.max_rel)}</td>"
        f"<td>{m.cosine:.9f}</td><td>{_fmt(m.atol)}</td><td>{_fmt(m.rtol)}</td><td>{_fmt(m.tolerance_used)}</td>"
        f"<td class='l'>{'pass' if m.passed else 'FAIL'}</td></tr>" for m in _ordered(report))
    table = ("<table id='metrics'><tr><th>layer</th><th>quantity</th><th>class</th><th>max abs</th><th>max rel</th>"
             "<th>cosine</th><th>atol</th><th>rtol</th><th>tol used</th><th>verdict</th></tr>" + rows + "</table>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>parity {e(Path(report.network).name)}"
            f"</title><style>{_CSS}</style></head><body>{head}{plots}<h2>All comparisons</h2>{table}</body></html>\n")


def write_report(report: ParityReport, folder) -> dict[str, Path]:
    """report.json, report.md and report.html in `folder` (created), each written atomically."""
    folder = Path(folder)
    paths = {"json": folder / "report.json", "md": folder / "report.md", "html": folder / "report.html"}
    _atomic_write(paths["json"], json.dumps(report.to_dict(), indent=1) + "\n")
    _atomic_write(paths["md"], report_markdown(report))
    _atomic_write(paths["html"], report_html(report))
    return paths


# ---------------------------------------------------------------------------
# CLI


def summary_text(report: ParityReport) -> str:
    """One line per layer: the worst tolerance use over its comparisons."""
    worst: dict[str, Metric] = {}
    for m in report.metrics:
        if m.layer not in worst or (not m.passed, m.tolerance_used) > (not worst[m.layer].passed,
                                                                       worst[m.layer].tolerance_used):
            worst[m.layer] = m
    lines = [f"parity {Path(report.network).name} {'x'.join(map(str, report.image_size))}, minibatch "
             f"{report.minibatch}, {report.steps} steps, {report.device}" + (f", fault {report.fault}"
                                                                               if report.fault else "")]
    for name in report.layers:
        m = worst.get(name)
        if m is None:
            continue
        lines.append(f"  {'ok  ' if m.passed else 'FAIL'} {name:24s} worst {m.quantity:22s} [{m.kind}] "
                     f"max rel {_fmt(m.max_rel)}, {_fmt(m.tolerance_used)}x tolerance")
    first = report.first_divergence
    lines.append("all within tolerance" if first is None else
                 f"first diverging layer: {first.layer} ({first.quantity}, max rel {_fmt(first.max_rel)})")
    return "\n".join(lines)


def cli_parity(args) -> int:
    """``alexnet-replay parity``: 0 when every comparison is within tolerance, 1 otherwise."""
    report = run_parity(args.layers, args.params, image_size=args.image_size, minibatch=args.minibatch,
                        steps=args.steps, seed=getattr(args, "seed", 0), device=args.device,
                        lenient=getattr(args, "lenient", False))
    if args.report:
        write_report(report, args.report)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(summary_text(report))
        if args.report:
            print(f"report written to {args.report}")
    return 0 if report.passed else 1
