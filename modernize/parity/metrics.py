"""One (layer, quantity) comparison of port against engine, as a :class:`Metric`.

:func:`measure` judges float32 arrays with the engine's one-pass metric
(``_core.compare_arrays``: one pass over arrays read in place, exact differences in
float64, sums in a fixed order); anything else goes to :func:`measure_numpy`, the
plain float64 reference that tests/test_parity.py holds the one-pass path to.
:func:`measure_rerouted` is the relative Frobenius error used below a gate that the
two forwards decided differently (runner.gate_flips).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ... import _core
from ...testing import compare
from .tolerances import REL_FLOOR


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
