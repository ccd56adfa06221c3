"""The one array comparison of the project (STYLE.md habit 4).

:func:`assert_close` fails on NaN and Inf, and on failure says how far off the
arrays are, where, with a few sample pairs and how much of the tolerance was
used, so that a failing parity or golden test explains itself.
Tolerances are ``atol + rtol * |expected|``, element by element.
"""

from __future__ import annotations

import numpy as np


def compare(actual, expected, atol: float = 0.0, rtol: float = 0.0) -> dict:
    """Metrics of `actual` against `expected`: max abs and rel error, worst index, tolerance used."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"shape {a.shape} differs from expected {e.shape}")
    diff = np.abs(a - e)
    allowed = atol + rtol * np.abs(e)
    used = np.divide(diff, allowed, out=np.where(diff > 0, np.inf, 0.0), where=allowed > 0)
    finite = bool(np.isfinite(a).all() and np.isfinite(e).all())
    worst = np.unravel_index(int(np.nanargmax(used)) if used.size else 0, a.shape) if a.size else ()
    rel = np.divide(diff, np.abs(e), out=np.where(diff > 0, np.inf, 0.0), where=np.abs(e) > 0)
    return {
        "finite": finite,
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "max_rel": float(rel.max()) if rel.size else 0.0,
        "worst_index": tuple(int(i) for i in worst),
        "tolerance_used": float(used.max()) if used.size else 0.0,
        "passed": finite and bool((diff <= allowed).all()),
    }


def assert_close(actual, expected, atol: float = 0.0, rtol: float = 0.0, what: str = "array") -> None:
    """Assert |actual - expected| <= atol + rtol*|expected| everywhere, and both finite.

    With atol = rtol = 0 this is a bit-exact comparison.
    """
    m = compare(actual, expected, atol, rtol)
    if m["passed"]:
        return
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    lines = [f"{what}: not within atol={atol:g} + rtol={rtol:g}*|expected|"]
    if not m["finite"]:
        bad = np.argwhere(~(np.isfinite(a) & np.isfinite(e)))[:5]
        lines.append(f"  non-finite values at {[tuple(int(i) for i in b) for b in bad]}")
    lines.append(f"  max abs error {m['max_abs']:.6g}, max rel error {m['max_rel']:.6g}, "
                 f"{m['tolerance_used']:.3g}x the tolerance at index {m['worst_index']}")
    over = np.argwhere(np.abs(a - e) > atol + rtol * np.abs(e))
    lines.append(f"  {len(over)} of {a.size} elements out of tolerance; samples (index: actual vs expected):")
    for idx in over[:5]:
        t = tuple(int(i) for i in idx)
        lines.append(f"    {t}: {a[t]!r} vs {e[t]!r}")
    raise AssertionError("\n".join(lines))
