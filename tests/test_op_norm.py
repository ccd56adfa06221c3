"""The CPU engine's normalisation layers: rnorm, cmrnorm, cnorm (engine.md §3.7–§3.10).

Golden values come from the plain numpy loops below, written from the spec's
formulas (never from the engine's code). The backward references are written in
"scatter" form from the FORWARD window: for each output position in raster (or
increasing-channel) order, A is added to every input position in its window.
That reproduces the spec's per-element summation order (§7.2) without using the
adjoint-window formula, so it also checks the engine's adjoint windows.

α passed to the kernels is already rewritten by the cfg reader (§3.7): the tests
pass α directly.

Tolerances (atol + rtol·|expected|) sit in one table, TOL, each with its reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from alexnet_replay import _core
from alexnet_replay.testing import assert_close, compare

F32 = np.float32
ULP = 2.0 ** -23  # largest relative spacing of normal float32 numbers

TOL = {
    # D, Dm (= X − μ) and the prelim A use only float32 +, ×, / in the order the
    # spec gives (sum from 0 in raster / increasing-channel order, then
    # minDiv + α·sum; ((−2αβ)·δY)·Y/D); the engine builds without FMA
    # contraction, so both sides are bit-identical.
    "exact": dict(atol=0.0, rtol=0.0),
    # Y = X·D^(−β): the engine's libm powf (< 1 ulp) against the float64 pow
    # rounded once to float32, then one product: at most ~2 ulp; 4 ulp leaves room
    # for other libms. ("close only" parity class, §7.3: the GPU used __powf.)
    "pow": dict(atol=0.0, rtol=4 * ULP),
    # δX = X·ΣA (bit-identical) + δY·D^(−β) (≤ 1.5 ulp of |δY·D^(−β)|, and
    # |D^(−β)| ≤ 1 here because D ≥ 1): the sum can cancel, so an absolute term
    # of 4 ulp of max|δY| (set per test) plus 4 ulp relative.
    "grad_rtol": 4 * ULP,
    "grad_atol_per_dy": 4 * ULP,
    # Engine (float32) against a float64 central difference of the float64
    # reference: the float32 rounding of O(1) terms dominates (observed max
    # 1.2e-7 absolute); the difference's own error (h = 1e-5, float64) is ~1e-10.
    "fd": dict(atol=1e-6, rtol=1e-6),
    # float64 reference backward against the float64 central difference: only
    # the difference's truncation and rounding error.
    "fd64": dict(atol=1e-8, rtol=1e-7),
}

FD_STEP = 1e-5

# ---------------------------------------------------------------------------
# numpy references, written from engine.md (float32 in the spec's order, or
# float64 for the gradient checks: the dtype of the input decides).


def window(i: int, size: int, n: int) -> tuple[int, int]:
    """[i − ⌊s/2⌋, i − ⌊s/2⌋ + s) ∩ [0, n) as (lo, hi)."""
    start = i - size // 2
    return max(start, 0), min(start + size, n)


def block(f: int, size: int, n: int) -> tuple[int, int]:
    """Blocked cmrnorm window [⌊f/s⌋·s, ⌊f/s⌋·s + s) ∩ [0, n)."""
    lo = f // size * size
    return lo, min(lo + size, n)


def neg_pow(d: np.ndarray, beta: float) -> np.ndarray:
    """D^(−β): float32 inputs get the float64 power rounded once to float32."""
    if d.dtype == np.float32:
        return (d.astype(np.float64) ** -np.float64(F32(beta))).astype(np.float32)
    return d ** -beta


def spatial_window_sum_sq(src: np.ndarray, size: int, alpha, const=1.0) -> np.ndarray:
    """D = const + α·Σ_W src², src (C, S, S, N); raster order, sum starting at 0."""
    t = src.dtype.type
    _, S, _, _ = src.shape
    d = np.empty_like(src)
    for y in range(S):
        for x in range(S):
            y0, y1 = window(y, size, S)
            x0, x1 = window(x, size, S)
            acc = np.zeros_like(src[:, 0, 0, :])
            for wy in range(y0, y1):
                for wx in range(x0, x1):
                    v = src[:, wy, wx, :]
                    acc = acc + v * v
            d[:, y, x, :] = t(const) + t(alpha) * acc
    return d


def spatial_scatter(a: np.ndarray, size: int) -> np.ndarray:
    """out[y,x] = Σ_{(y',x') : (y,x) ∈ W(y',x')} a[y',x'], (y',x') in raster order."""
    _, S, _, _ = a.shape
    out = np.zeros_like(a)
    for y in range(S):
        for x in range(S):
            y0, y1 = window(y, size, S)
            x0, x1 = window(x, size, S)
            out[:, y0:y1, x0:x1, :] += a[:, y : y + 1, x : x + 1, :]
    return out


def prelim(y, d, dy, alpha, beta):
    """A = ((−2αβ)·δY)·Y / D, left to right."""
    t = y.dtype.type
    k = t(-2.0) * t(alpha) * t(beta)
    return k * dy * y / d


def ref_rnorm_fprop(x, size, alpha, beta):
    d = spatial_window_sum_sq(x, size, alpha)
    return x * neg_pow(d, beta), d


def ref_spatial_bprop(src, y, d, dy, size, alpha, beta):
    """δX = src·Σ_{adjoint} A + δY·D^(−β) (rnorm: src = X; cnorm as written: src = Dm)."""
    a = prelim(y, d, dy, alpha, beta)
    return src * spatial_scatter(a, size) + dy * neg_pow(d, beta), a


def ref_local_mean_diff(x, size):
    """Dm = X − (Σ_W X in raster order) / (valid count)."""
    t = x.dtype.type
    _, S, _, _ = x.shape
    dm = np.empty_like(x)
    for y in range(S):
        for xx in range(S):
            y0, y1 = window(y, size, S)
            x0, x1 = window(xx, size, S)
            acc = np.zeros_like(x[:, 0, 0, :])
            for wy in range(y0, y1):
                for wx in range(x0, x1):
                    acc = acc + x[:, wy, wx, :]
            dm[:, y, xx, :] = x[:, y, xx, :] - acc / t((y1 - y0) * (x1 - x0))
    return dm


def ref_cnorm_fprop(x, size, alpha, beta):
    dm = ref_local_mean_diff(x, size)
    d = spatial_window_sum_sq(dm, size, alpha)
    return x * neg_pow(d, beta), d, dm


def ref_avgpool_adjoint(g, size):
    """Σ_{k : i ∈ W(k)} g[k] / count(k): the adjoint of the local mean."""
    _, S, _, _ = g.shape
    out = np.zeros_like(g)
    for y in range(S):
        for x in range(S):
            y0, y1 = window(y, size, S)
            x0, x1 = window(x, size, S)
            out[:, y0:y1, x0:x1, :] += g[:, y : y + 1, x : x + 1, :] / ((y1 - y0) * (x1 - x0))
    return out


def ref_cnorm_exact_bprop(x, dy, size, alpha, beta):
    """The exact −∂E/∂X of cnorm's forward (float64), the mean's dependence included."""
    y, d, dm = ref_cnorm_fprop(x, size, alpha, beta)
    a = prelim(y, d, dy, alpha, beta)
    g = dm * spatial_scatter(a, size)  # −∂E/∂Dm through D
    return g - ref_avgpool_adjoint(g, size) + dy * neg_pow(d, beta)


def cm_window(f, size, n, blocked):
    return block(f, size, n) if blocked else window(f, size, n)


def ref_cmrnorm_fprop(x, size, alpha, beta, min_div, blocked):
    """x (F, P, N). D = minDiv + α·Σ_{f'∈W(f)} X[f']², increasing f'."""
    t = x.dtype.type
    F = x.shape[0]
    d = np.empty_like(x)
    for f in range(F):
        lo, hi = cm_window(f, size, F, blocked)
        acc = np.zeros_like(x[0])
        for g in range(lo, hi):
            acc = acc + x[g] * x[g]
        d[f] = t(min_div) + t(alpha) * acc
    return x * neg_pow(d, beta), d


def ref_cmrnorm_bprop(x, y, d, dy, size, alpha, beta, blocked):
    a = prelim(y, d, dy, alpha, beta)
    F = x.shape[0]
    s = np.zeros_like(a)
    for f in range(F):  # scatter A[f] into its window, f increasing
        lo, hi = cm_window(f, size, F, blocked)
        s[lo:hi] += a[f : f + 1]
    return x * s + dy * neg_pow(d, beta), a


# ---------------------------------------------------------------------------
# Engine wrappers: (C, S, S, N) or (F, P, N) arrays in, the same shapes out.


def flat(a):
    return np.ascontiguousarray(a.reshape(a.shape[0] * int(np.prod(a.shape[1:-1])), a.shape[-1]), dtype=np.float32)


def eng_rnorm_fprop(x, size, alpha, beta):
    C, S, _, _ = x.shape
    xf = flat(x)
    y, d = np.full_like(xf, np.nan), np.full_like(xf, np.nan)  # overwritten without being read
    _core.rnorm_fprop(xf, y, d, C, S, size, alpha, beta)
    return y.reshape(x.shape), d.reshape(x.shape)


def eng_rnorm_bprop(x, y, d, dy, size, alpha, beta):
    C, S, _, _ = x.shape
    dx, scratch = np.full_like(flat(x), np.nan), np.full_like(flat(x), np.nan)
    _core.rnorm_bprop(flat(x), flat(y), flat(d), flat(dy), dx, scratch, C, S, size, alpha, beta, 0.0)
    return dx.reshape(x.shape), scratch.reshape(x.shape)


def eng_cnorm_fprop(x, size, alpha, beta):
    C, S, _, _ = x.shape
    xf = flat(x)
    y, d, dm = (np.full_like(xf, np.nan) for _ in range(3))
    _core.cnorm_fprop(xf, y, d, dm, C, S, size, alpha, beta)
    return y.reshape(x.shape), d.reshape(x.shape), dm.reshape(x.shape)


def eng_cnorm_bprop(dm, y, d, dy, size, alpha, beta):
    C, S, _, _ = dm.shape
    dx, scratch = np.full_like(flat(dm), np.nan), np.full_like(flat(dm), np.nan)
    _core.cnorm_bprop(flat(dm), flat(y), flat(d), flat(dy), dx, scratch, C, S, size, alpha, beta, 0.0)
    return dx.reshape(dm.shape), scratch.reshape(dm.shape)


def eng_cmrnorm_fprop(x, size, alpha, beta, min_div, blocked):
    xf = flat(x)
    y, d = np.full_like(xf, np.nan), np.full_like(xf, np.nan)
    _core.cmrnorm_fprop(xf, y, d, x.shape[0], size, alpha, beta, min_div, blocked)
    return y.reshape(x.shape), d.reshape(x.shape)


def eng_cmrnorm_bprop(x, y, d, dy, size, alpha, beta, blocked):
    dx, scratch = np.full_like(flat(x), np.nan), np.full_like(flat(x), np.nan)
    _core.cmrnorm_bprop(flat(x), flat(y), flat(d), flat(dy), dx, scratch, x.shape[0], size, alpha, beta, blocked,
                        0.0)
    return dx.reshape(x.shape), scratch.reshape(x.shape)


def grad_tol(dy):
    return dict(atol=TOL["grad_atol_per_dy"] * float(np.abs(dy).max()), rtol=TOL["grad_rtol"])


def data(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------
# Golden tests: forward and backward against the float32 references.

RNORM_CASES = [
    # (C, S, size, N, alpha, beta): clipped edges at S = 7 with odd and even windows,
    # a window as large as the image, S = 13, a batch wider than the engine's case tile.
    (3, 7, 3, 5, 0.3, 0.75),
    (3, 7, 4, 3, 0.3, 0.75),
    (2, 7, 7, 7, 0.05, 0.5),
    (1, 13, 5, 3, 0.004, 0.75),
    (2, 5, 4, 261, 0.2, 0.75),
    (2, 7, 1, 3, 0.5, 1.0),
]


@pytest.mark.parametrize("C,S,size,N,alpha,beta", RNORM_CASES)
def test_rnorm_golden(C, S, size, N, alpha, beta):
    rng = np.random.default_rng(100 + size + S)
    x, dy = data(rng, (C, S, S, N)), data(rng, (C, S, S, N))
    y_ref, d_ref = ref_rnorm_fprop(x, size, alpha, beta)
    y, d = eng_rnorm_fprop(x, size, alpha, beta)
    assert_close(d, d_ref, **TOL["exact"], what="rnorm denoms")
    assert_close(y, y_ref, **TOL["pow"], what="rnorm y")
    # Backward from the engine's own forward output, so that A is bit-identical.
    dx_ref, a_ref = ref_spatial_bprop(x, y, d, dy, size, alpha, beta)
    dx, a = eng_rnorm_bprop(x, y, d, dy, size, alpha, beta)
    assert_close(a, a_ref, **TOL["exact"], what="rnorm prelim A (scratch)")
    assert_close(dx, dx_ref, **grad_tol(dy), what="rnorm dx")


CMRNORM_CASES = [
    # (F, P, size, N, alpha, beta, min_div, blocked)
    (7, 9, 3, 5, 0.3, 0.75, 1.0, False),
    (7, 9, 3, 5, 0.3, 0.75, 2.0, False),  # minDiv = 2 (the paper's k)
    (9, 4, 4, 3, 0.25, 0.75, 1.0, False),  # even size: f−2 … f+1
    (20, 6, 5, 7, 1e-4 / 5, 0.75, 1.0, False),  # AlexNet's layer-params: scale 1e-4, size 5
    (20, 6, 5, 7, 0.2, 0.75, 2.0, False),  # size 5 with a sizeable α
    (7, 6, 3, 5, 0.3, 0.75, 1.0, True),  # blocked, the last block [6, 7) partial
    (8, 5, 4, 3, 0.3, 0.6, 2.0, True),  # blocked, even size, F a multiple of it
    (5, 3, 5, 261, 0.2, 0.75, 1.0, False),  # size = F, batch wider than the case tile
]


@pytest.mark.parametrize("F,P,size,N,alpha,beta,min_div,blocked", CMRNORM_CASES)
def test_cmrnorm_golden(F, P, size, N, alpha, beta, min_div, blocked):
    rng = np.random.default_rng(200 + F + size)
    x, dy = data(rng, (F, P, N)), data(rng, (F, P, N))
    y_ref, d_ref = ref_cmrnorm_fprop(x, size, alpha, beta, min_div, blocked)
    y, d = eng_cmrnorm_fprop(x, size, alpha, beta, min_div, blocked)
    assert_close(d, d_ref, **TOL["exact"], what="cmrnorm denoms")
    assert_close(y, y_ref, **TOL["pow"], what="cmrnorm y")
    dx_ref, a_ref = ref_cmrnorm_bprop(x, y, d, dy, size, alpha, beta, blocked)
    dx, a = eng_cmrnorm_bprop(x, y, d, dy, size, alpha, beta, blocked)
    assert_close(a, a_ref, **TOL["exact"], what="cmrnorm prelim A (scratch)")
    assert_close(dx, dx_ref, **grad_tol(dy), what="cmrnorm dx")


CNORM_CASES = [(3, 7, 3, 5, 0.3, 0.75), (2, 7, 4, 3, 0.3, 0.75), (1, 13, 5, 7, 0.1, 0.5), (2, 5, 3, 261, 0.2, 0.75)]


@pytest.mark.parametrize("C,S,size,N,alpha,beta", CNORM_CASES)
def test_cnorm_golden_as_written(C, S, size, N, alpha, beta):
    rng = np.random.default_rng(300 + size + S)
    x, dy = data(rng, (C, S, S, N)), data(rng, (C, S, S, N))
    y_ref, d_ref, dm_ref = ref_cnorm_fprop(x, size, alpha, beta)
    y, d, dm = eng_cnorm_fprop(x, size, alpha, beta)
    assert_close(dm, dm_ref, **TOL["exact"], what="cnorm mean_diffs")
    assert_close(d, d_ref, **TOL["exact"], what="cnorm denoms")
    assert_close(y, y_ref, **TOL["pow"], what="cnorm y (raw x as numerator)")
    # The numerator is the raw input, not Dm (§13 item 12): x·D^(−β) ≠ Dm·D^(−β).
    assert not compare(y, dm * neg_pow(d, beta), **TOL["pow"])["passed"]
    dx_ref, a_ref = ref_spatial_bprop(dm, y, d, dy, size, alpha, beta)
    dx, a = eng_cnorm_bprop(dm, y, d, dy, size, alpha, beta)
    assert_close(a, a_ref, **TOL["exact"], what="cnorm prelim A (scratch)")
    assert_close(dx, dx_ref, **grad_tol(dy), what="cnorm dx (as written)")


# ---------------------------------------------------------------------------
# The window rules, seen directly: one non-zero input, which outputs does it reach?


def test_rnorm_even_window_reaches_one_further_before():
    # s = 4 at S = 7: W(y) = [y−2, y+2). An impulse at row/col 3 is inside W(y) for
    # y ∈ {2, 3, 4, 5}: the windows extend two before and one after their pixel.
    x = np.zeros((1, 7, 7, 3), np.float32)
    x[0, 3, 3, :] = 2.0
    _, d = eng_rnorm_fprop(x, 4, 0.25, 0.75)
    hit = np.argwhere(d[0, :, :, 0] != 1.0)
    assert sorted({int(r) for r, _ in hit}) == [2, 3, 4, 5]
    assert sorted({int(c) for _, c in hit}) == [2, 3, 4, 5]
    assert_close(d[0, 2:6, 2:6, :], np.full((4, 4, 3), 1.0 + 0.25 * 4.0, np.float32), **TOL["exact"])


@pytest.mark.parametrize("blocked,impulse,expected", [(False, 3, [2, 3, 4, 5]), (True, 4, [4, 5, 6, 7]),
                                                     (True, 9, [8, 9])])
def test_cmrnorm_window_reach(blocked, impulse, expected):
    # size 4 over F = 10 maps: centred W(f) = [f−2, f+2); blocked W(f) = the block
    # of 4 holding f, the last one [8, 10) clipped.
    x = np.zeros((10, 2, 3), np.float32)
    x[impulse] = 1.5
    _, d = eng_cmrnorm_fprop(x, 4, 0.5, 0.75, 2.0, blocked)
    assert [int(f) for f in np.argwhere(d[:, 0, 0] != 2.0).ravel()] == expected
    assert np.all(d[expected] == F32(2.0) + F32(0.5) * F32(1.5 * 1.5))


# ---------------------------------------------------------------------------
# Finite differences (float64, central, per input position for all cases at once:
# the normalisations never mix cases, so case n's objective only sees case n).


def fd_grad(forward64, x64, r64):
    """−∂E/∂x with E = Σ r ⊙ forward(x), E evaluated per case."""
    g = np.empty_like(x64)
    it = np.ndindex(*x64.shape[:-1])
    for idx in it:
        xp, xm = x64.copy(), x64.copy()
        xp[idx] += FD_STEP
        xm[idx] -= FD_STEP
        ep = (r64 * forward64(xp)).reshape(-1, x64.shape[-1]).sum(axis=0)
        em = (r64 * forward64(xm)).reshape(-1, x64.shape[-1]).sum(axis=0)
        g[idx] = -(ep - em) / (2 * FD_STEP)
    return g


@pytest.mark.parametrize("size", [3, 4])
def test_rnorm_gradient_matches_finite_differences(size):
    C, S, N, alpha, beta = 2, 6, 3, 0.4, 0.75
    rng = np.random.default_rng(7 + size)
    x, r = data(rng, (C, S, S, N)), data(rng, (C, S, S, N))
    fd = fd_grad(lambda v: ref_rnorm_fprop(v, size, alpha, beta)[0], x.astype(np.float64), r.astype(np.float64))
    y, d = eng_rnorm_fprop(x, size, alpha, beta)
    dx, _ = eng_rnorm_bprop(x, y, d, -r, size, alpha, beta)  # δY = −∂E/∂Y = −r
    assert_close(dx, fd, **TOL["fd"], what="rnorm dx vs finite differences")
    y64, d64 = ref_rnorm_fprop(x.astype(np.float64), size, alpha, beta)
    dx64, _ = ref_spatial_bprop(x.astype(np.float64), y64, d64, -r.astype(np.float64), size, alpha, beta)
    assert_close(dx64, fd, **TOL["fd64"], what="float64 reference rnorm dx vs finite differences")


@pytest.mark.parametrize("size,min_div,blocked", [(5, 2.0, False), (4, 1.0, False), (3, 1.0, True)])
def test_cmrnorm_gradient_matches_finite_differences(size, min_div, blocked):
    F, P, N, alpha, beta = 8, 4, 3, 0.3, 0.75
    rng = np.random.default_rng(11 + size)
    x, r = data(rng, (F, P, N)), data(rng, (F, P, N))
    fwd = lambda v: ref_cmrnorm_fprop(v, size, alpha, beta, min_div, blocked)[0]  # noqa: E731
    fd = fd_grad(fwd, x.astype(np.float64), r.astype(np.float64))
    y, d = eng_cmrnorm_fprop(x, size, alpha, beta, min_div, blocked)
    dx, _ = eng_cmrnorm_bprop(x, y, d, -r, size, alpha, beta, blocked)
    assert_close(dx, fd, **TOL["fd"], what="cmrnorm dx vs finite differences")


# The as-written cnorm gradient misses the term through the local mean. With
# these sizes it is off by far more than the float32 tolerance TOL["fd"]: we
# require a worst error above 10% of max|∂E/∂x| (measured: 29%, i.e. ~10^5 times
# the tolerance rnorm and cmrnorm meet), while the exact gradient (the missing
# term added back, float64) matches the finite difference to 1e-8.
CNORM_FD_MIN_ERROR = 0.10


def test_cnorm_as_written_gradient_is_not_exact():
    C, S, size, N, alpha, beta = 2, 6, 3, 3, 1.0, 0.75
    rng = np.random.default_rng(14)
    x, r = data(rng, (C, S, S, N)), data(rng, (C, S, S, N))
    x64, r64 = x.astype(np.float64), r.astype(np.float64)
    fd = fd_grad(lambda v: ref_cnorm_fprop(v, size, alpha, beta)[0], x64, r64)
    y, d, dm = eng_cnorm_fprop(x, size, alpha, beta)
    dx, _ = eng_cnorm_bprop(dm, y, d, -r, size, alpha, beta)
    err = float(np.abs(dx - fd).max())
    assert err > CNORM_FD_MIN_ERROR * float(np.abs(fd).max()), (
        f"as-written cnorm gradient is within {err:.3g} of the finite difference; the spec says it ignores the mean")
    # ...and the difference is exactly the mean's term: the exact gradient matches.
    exact = ref_cnorm_exact_bprop(x64, -r64, size, alpha, beta)
    assert_close(exact, fd, **TOL["fd64"], what="exact cnorm gradient vs finite differences")
    # the float64 reference of the as-written formula agrees with the engine
    y64, d64, dm64 = ref_cnorm_fprop(x64, size, alpha, beta)
    as_written64, _ = ref_spatial_bprop(dm64, y64, d64, -r64, size, alpha, beta)
    assert_close(dx, as_written64, **TOL["fd"], what="engine cnorm dx vs float64 as-written formula")


# ---------------------------------------------------------------------------
# Accumulate-or-overwrite, in-place prelim, thread-count independence.


def _bprop_cases(rng):
    """(name, call(dx, scratch, scale_targets), y array) for the three backward functions."""
    C, S, N = 2, 5, 3
    x = flat(data(rng, (C, S, S, N)))
    dy = flat(data(rng, (C, S, S, N)))
    out = []
    y, d = np.empty_like(x), np.empty_like(x)
    _core.rnorm_fprop(x, y, d, C, S, 3, 0.3, 0.75)
    out.append(("rnorm", lambda dx, s, st, y=y, d=d: _core.rnorm_bprop(x, y, d, dy, dx, s, C, S, 3, 0.3, 0.75, st),
                y))
    y2, d2 = np.empty_like(x), np.empty_like(x)
    F = C * S  # the same rows read as F = 10 maps of P = 5 pixels
    _core.cmrnorm_fprop(x, y2, d2, F, 5, 0.3, 0.75, 2.0, False)
    out.append(("cmrnorm", lambda dx, s, st, y=y2, d=d2: _core.cmrnorm_bprop(x, y, d, dy, dx, s, F, 5, 0.3, 0.75,
                                                                              False, st), y2))
    y3, d3, m3 = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    _core.cnorm_fprop(x, y3, d3, m3, C, S, 4, 0.3, 0.75)
    out.append(("cnorm", lambda dx, s, st, y=y3, d=d3: _core.cnorm_bprop(m3, y, d, dy, dx, s, C, S, 4, 0.3, 0.75,
                                                                          st), y3))
    return out


def test_scale_targets_add_and_overwrite():
    rng = np.random.default_rng(21)
    for name, call, y in _bprop_cases(rng):
        fresh = np.full_like(y, np.nan)
        call(fresh, np.full_like(y, np.nan), 0.0)  # NaN in dx and scratch is never read
        assert np.isfinite(fresh).all(), name
        prior = data(rng, y.shape)
        acc = prior.copy()
        call(acc, np.empty_like(y), 1.0)
        # blend(t, r, 1) = 1·t + r = t + r, one float32 rounding like numpy's add.
        assert_close(acc, prior + fresh, **TOL["exact"], what=f"{name} dx with scale_targets=1")
        with pytest.raises(ValueError, match="scale_targets"):
            call(acc, np.empty_like(y), 0.5)


def test_forward_overwrites_nan_outputs():
    # Outputs pre-filled with NaN and with zeros must end up bit-identical.
    rng = np.random.default_rng(22)
    x = flat(data(rng, (2, 5, 5, 3)))
    calls = {
        "rnorm": lambda o: _core.rnorm_fprop(x, o[0], o[1], 2, 5, 3, 0.3, 0.75),
        "cmrnorm": lambda o: _core.cmrnorm_fprop(x, o[0], o[1], 2, 2, 0.3, 0.75, 1.0, False),
        "cnorm": lambda o: _core.cnorm_fprop(x, o[0], o[1], o[2], 2, 5, 3, 0.3, 0.75),
    }
    for name, call in calls.items():
        a = [np.full_like(x, np.nan) for _ in range(3)]
        b = [np.zeros_like(x) for _ in range(3)]
        call(a)
        call(b)
        used = 3 if name == "cnorm" else 2
        for u, v in zip(a[:used], b[:used]):
            assert_close(u, v, **TOL["exact"], what=f"{name} forward output written over NaN")


def test_scratch_may_be_y_like_the_release():
    # The release wrote A over the layer's output (§13 item 9). Passing scratch=y
    # must give the same δX and leave A in y.
    rng = np.random.default_rng(23)
    for name, call, y in _bprop_cases(rng):
        dx_sep, scratch = np.empty_like(y), np.empty_like(y)
        call(dx_sep, scratch, 0.0)
        y_before = y.copy()
        dx_inplace = np.empty_like(y)
        call(dx_inplace, y, 0.0)
        assert_close(dx_inplace, dx_sep, **TOL["exact"], what=f"{name} dx with scratch=y")
        assert_close(y, scratch, **TOL["exact"], what=f"{name} y destroyed into A")
        assert not np.array_equal(y, y_before)


THREAD_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from alexnet_replay import _core
    rng = np.random.default_rng(5)
    C, S, N = 6, 9, 37
    x = rng.standard_normal((C * S * S, N)).astype(np.float32)
    dy = rng.standard_normal((C * S * S, N)).astype(np.float32)
    e = lambda: np.empty_like(x)
    y, d, dx, s = e(), e(), e(), e()
    _core.rnorm_fprop(x, y, d, C, S, 4, 0.3, 0.75)
    _core.rnorm_bprop(x, y, d, dy, dx, s, C, S, 4, 0.3, 0.75, 0.0)
    y2, d2, dx2, s2 = e(), e(), e(), e()
    _core.cmrnorm_fprop(x, y2, d2, C, 5, 0.3, 0.75, 2.0, False)
    _core.cmrnorm_bprop(x, y2, d2, dy, dx2, s2, C, 5, 0.3, 0.75, False, 0.0)
    y3, d3, m3, dx3, s3 = e(), e(), e(), e(), e()
    _core.cnorm_fprop(x, y3, d3, m3, C, S, 3, 0.3, 0.75)
    _core.cnorm_bprop(m3, y3, d3, dy, dx3, s3, C, S, 3, 0.3, 0.75, 0.0)
    np.save(sys.argv[1], np.stack([y, d, dx, y2, d2, dx2, y3, d3, m3, dx3]))
""")


def test_results_do_not_depend_on_thread_count(tmp_path):
    runs = []
    for threads in ("1", "3"):
        out = tmp_path / f"t{threads}.npy"
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        subprocess.run([sys.executable, "-c", THREAD_SCRIPT, str(out)], check=True, env=env)
        runs.append(np.load(out))
    assert_close(runs[1], runs[0], **TOL["exact"], what="1 thread vs 3 threads")


# ---------------------------------------------------------------------------
# Argument checks in the binding.


def test_binding_rejects_bad_arguments():
    x = np.zeros((2 * 25, 3), np.float32)
    e = np.empty_like
    with pytest.raises(ValueError, match="size"):
        _core.rnorm_fprop(x, e(x), e(x), 2, 5, 6, 0.1, 0.75)  # size > img_size
    with pytest.raises(ValueError, match="size"):
        _core.rnorm_fprop(x, e(x), e(x), 2, 5, 0, 0.1, 0.75)
    with pytest.raises(ValueError, match="x: expected shape"):
        _core.rnorm_fprop(x, e(x), e(x), 2, 4, 3, 0.1, 0.75)  # C·S·S ≠ rows
    with pytest.raises(ValueError, match="denoms"):
        _core.cnorm_fprop(x, e(x), np.empty((50, 4), np.float32), e(x), 2, 5, 3, 0.1, 0.75)
    with pytest.raises(ValueError, match="y: expected dtype float32"):
        _core.rnorm_fprop(x, np.empty((50, 3)), e(x), 2, 5, 3, 0.1, 0.75)
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        _core.cmrnorm_fprop(np.asfortranarray(np.zeros((50, 4), np.float32)), np.empty((50, 4), np.float32),
                            np.empty((50, 4), np.float32), 2, 2, 0.1, 0.75)
    with pytest.raises(ValueError, match="channels"):
        _core.cmrnorm_fprop(x, e(x), e(x), 3, 2, 0.1, 0.75)  # 3 does not divide 50
    with pytest.raises(ValueError, match="size"):
        _core.cmrnorm_fprop(x, e(x), e(x), 2, 3, 0.1, 0.75)  # size > channels
    with pytest.raises(ValueError, match="y: must not share memory with x"):
        _core.cmrnorm_fprop(x, x, e(x), 2, 2, 0.1, 0.75)
    y, d, dy = e(x), e(x), e(x)
    with pytest.raises(ValueError, match="dx: must not share memory with scratch"):
        s = e(x)
        _core.cmrnorm_bprop(x, y, d, dy, s, s, 2, 2, 0.1, 0.75)
    with pytest.raises(ValueError, match="dx: must not share memory with dy"):
        _core.rnorm_bprop(x, y, d, dy, dy, e(x), 2, 5, 3, 0.1, 0.75)
    with pytest.raises(ValueError, match="scratch: must not share memory with denoms"):
        _core.cnorm_bprop(x, y, d, dy, e(x), d, 2, 5, 3, 0.1, 0.75)
    big = np.empty((100, 3), np.float32)
    with pytest.raises(ValueError, match="partly overlap"):
        _core.rnorm_bprop(x, big[:50], d, dy, e(x), big[25:75], 2, 5, 3, 0.1, 0.75)
