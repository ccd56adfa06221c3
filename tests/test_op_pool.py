"""pool (engine.md §3.6), nailbed (§3.17), blur (§3.18), href (§3.19), concat (§3.15),
eltsum (§3.13) and eltmax (§3.14) on the CPU engine.

References are plain numpy loops written from the spec, in float32, doing the
same operations in the same order as the spec states (pooling windows in raster
order, §7.2). Tolerances (atol + rtol*|ref|), one table:
* BIT_EXACT (0, 0): §7.3 lists pooling forward and backward, eltsum, eltmax,
  concat, nailbed and reflection as bit-identical-feasible; the reference does
  the same float32 operations in the same order. Blur is compared bit for bit
  too: the spec gives no order for it, so the engine's order (taps k = 0..K-1)
  is our choice and the reference follows it.
* FD_TOL (1e-5, 1e-5): the engine's float32 backward against a float64 central
  difference of a float64 forward. All these layers are (piecewise) linear, so
  the difference is exact up to float64 rounding; what remains is a few float32
  roundings of O(1) values (a sum of at most ~9 terms).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from alexnet_replay import _core
from alexnet_replay.testing import assert_close

F32 = np.float32
BIT_EXACT = dict(atol=0.0, rtol=0.0)
FD_TOL = dict(atol=1e-5, rtol=1e-5)


def rng(seed):
    return np.random.default_rng(seed)


def normal(r, *shape):
    return r.standard_normal(shape).astype(F32)


# ---------------------------------------------------------------------------
# numpy references, written from the spec
# ---------------------------------------------------------------------------
def outputs_x_auto(S, start, size, stride):
    """§3.6: ceil((S - start - sizeX)/stride) + 1."""
    return math.ceil((S - start - size) / stride) + 1


def spans(S, size, start, stride, OX):
    """Clipped [lo, hi) rows of each window o (§3.6)."""
    return [(max(start + o * stride, 0), min(start + o * stride + size, S)) for o in range(OX)]


def ref_pool_fprop(x, mode, C, S, size, start, stride, OX, dtype=F32):
    N = x.shape[1]
    img = x.reshape(C, S, S, N).astype(dtype)
    y = np.empty((C, OX, OX, N), dtype)
    sp = spans(S, size, start, stride, OX)
    for oy, (y0, y1) in enumerate(sp):
        for ox, (x0, x1) in enumerate(sp):
            if mode == "max":
                acc = np.full((C, N), -2e38, dtype)
            else:
                acc = np.zeros((C, N), dtype)
            for iy in range(y0, y1):          # raster order over the clipped window
                for ix in range(x0, x1):
                    v = img[:, iy, ix, :]
                    if mode == "max":
                        acc = np.fmax(acc, v)
                    elif mode == "maxabs":
                        acc = np.where(np.abs(v) >= np.abs(acc), v, acc)  # later wins |a| == |b|
                    else:
                        acc = acc + v
            if mode == "avg":
                acc = acc / dtype((y1 - y0) * (x1 - x0))
            y[:, oy, ox, :] = acc
    return y.reshape(C * OX * OX, N)


def ref_pool_bprop(x, y, dy, mode, C, S, size, start, stride, OX):
    """Scatter form (the engine gathers): windows in raster order of (oy, ox)."""
    N = x.shape[1]
    img = x.reshape(C, S, S, N)
    yy = y.reshape(C, OX, OX, N)
    g = dy.reshape(C, OX, OX, N)
    dx = np.zeros((C, S, S, N), F32)
    sp = spans(S, size, start, stride, OX)
    for oy, (y0, y1) in enumerate(sp):
        for ox, (x0, x1) in enumerate(sp):
            if mode == "avg":
                recip = F32(1.0) / F32((y1 - y0) * (x1 - x0))
                dx[:, y0:y1, x0:x1, :] += (g[:, oy, ox, :] * recip)[:, None, None, :]
            else:
                hit = (img[:, y0:y1, x0:x1, :] == yy[:, oy, ox, None, None, :]).astype(F32)
                dx[:, y0:y1, x0:x1, :] += hit * g[:, oy, ox, None, None, :]
    return dx.reshape(C * S * S, N)


def nailbed_geometry(S, stride):
    """§3.17: outputsX = ceil(S/stride), start = floor((S - stride*(outputsX-1))/2)."""
    ox = math.ceil(S / stride)
    return ox, (S - stride * (ox - 1)) // 2


def ref_nailbed_fprop(x, C, S, stride, dtype=F32):
    OX, st = nailbed_geometry(S, stride)
    N = x.shape[1]
    img = x.reshape(C, S, S, N).astype(dtype)
    y = np.empty((C, OX, OX, N), dtype)
    for oy in range(OX):
        for ox in range(OX):
            y[:, oy, ox] = img[:, st + oy * stride, st + ox * stride]
    return y.reshape(C * OX * OX, N)


def ref_nailbed_bprop(dy, C, S, stride):
    OX, st = nailbed_geometry(S, stride)
    N = dy.shape[1]
    g = dy.reshape(C, OX, OX, N)
    dx = np.zeros((C, S, S, N), F32)
    for oy in range(OX):
        for ox in range(OX):
            dx[:, st + oy * stride, st + ox * stride] = g[:, oy, ox]
    return dx.reshape(C * S * S, N)


def gaussian_filter(K, sigma):
    """§3.18: g_i = exp(-(floor(K/2) - i)^2 / (2 sigma^2)), normalised, float32."""
    i = np.arange(K, dtype=F32)
    g = np.exp(-((F32(K // 2) - i) ** 2) / F32(2 * sigma * sigma)).astype(F32)
    return (g / g.sum(dtype=F32)).astype(F32)


def ref_blur_pass(x, g, C, S, horizontal, dtype=F32):
    """z[j] = sum_k in[j + k - r] g_k, zero outside, k increasing, from +0."""
    N = x.shape[1]
    K = len(g)
    r = K // 2
    img = x.reshape(C, S, S, N).astype(dtype)
    g = g.astype(dtype)
    if not horizontal:
        img = img.transpose(0, 2, 1, 3)      # pass along columns = along rows of the transpose
    z = np.zeros_like(img)
    for j in range(S):
        acc = np.zeros((C, S, N), dtype)
        for k in range(K):
            src = j + k - r
            if 0 <= src < S:
                acc = acc + img[:, :, src, :] * g[k]
        z[:, :, j, :] = acc
    if not horizontal:
        z = z.transpose(0, 2, 1, 3)
    return np.ascontiguousarray(z).reshape(C * S * S, N)


def ref_blur(x, g, C, S, dtype=F32):
    return ref_blur_pass(ref_blur_pass(x, g, C, S, True, dtype), g, C, S, False, dtype)


def ref_href(x, C, S):
    N = x.shape[1]
    return np.ascontiguousarray(x.reshape(C, S, S, N)[:, :, ::-1, :]).reshape(C * S * S, N)


def ref_eltmax(xs):
    y = np.where(xs[1] > xs[0], xs[1], xs[0])        # max(X1, X0), a > b ? a : b
    for x in xs[2:]:
        y = np.where(y > x, y, x)                     # max(Y, Xi)
    return y


# ---------------------------------------------------------------------------
# engine wrappers (allocate the output; scale_targets 0)
# ---------------------------------------------------------------------------
def pool_f(x, mode, C, S, size, start, stride, OX, **kw):
    y = np.full((C * OX * OX, x.shape[1]), np.nan, F32)
    _core.pool_fprop(x, y, mode, C, S, size, start, stride, OX, **kw)
    return y


def pool_b(x, y, dy, mode, C, S, size, start, stride, OX, **kw):
    dx = np.full_like(x, np.nan)
    _core.pool_bprop(x, y, dy, dx, mode, C, S, size, start, stride, OX, **kw)
    return dx


# ---------------------------------------------------------------------------
# pool
# ---------------------------------------------------------------------------
# (C, S, size, start, stride, N): clipped edges, negative and positive start,
# overlapping windows, non-overlapping windows, AlexNet's 55 -> 27 with 3/2.
GEOMETRIES = [
    (3, 7, 3, 0, 3, 5),     # OX = 3, last window clipped to 1 column
    (2, 8, 3, 0, 2, 3),     # OX = 4, last window clipped to 2 columns
    (2, 7, 3, -1, 2, 7),    # negative start: first and last windows clipped
    (2, 8, 3, 1, 2, 3),     # positive start: row/column 0 in no window
    (1, 13, 4, -2, 3, 5),   # ragged both sides
    (2, 5, 2, 0, 1, 3),     # stride 1: heavy overlap
    (3, 55, 3, 0, 2, 3),    # AlexNet pool1: 55 -> 27
]


@pytest.mark.parametrize("mode", ["max", "maxabs", "avg"])
@pytest.mark.parametrize("geom", GEOMETRIES, ids=lambda g: "C{}S{}k{}s{}st{}N{}".format(*g))
def test_pool_matches_reference_bit_exact(mode, geom):
    C, S, size, start, stride, N = geom
    OX = outputs_x_auto(S, start, size, stride)
    r = rng(zlib.crc32(repr((mode, geom)).encode()))
    x = normal(r, C * S * S, N)
    dy = normal(r, C * OX * OX, N)
    y = pool_f(x, mode, C, S, size, start, stride, OX)
    assert_close(y, ref_pool_fprop(x, mode, C, S, size, start, stride, OX), **BIT_EXACT, what=f"{mode} forward")
    dx = pool_b(x, y, dy, mode, C, S, size, start, stride, OX)
    assert_close(dx, ref_pool_bprop(x, y, dy, mode, C, S, size, start, stride, OX), **BIT_EXACT,
                 what=f"{mode} backward")


def test_pool_alexnet_geometry_size():
    assert outputs_x_auto(55, 0, 3, 2) == 27
    x = normal(rng(1), 3 * 55 * 55, 3)
    assert pool_f(x, "max", 3, 55, 3, 0, 2, 27).shape == (3 * 27 * 27, 3)


def test_avg_pool_divides_by_in_image_count():
    """Ones in, ones out: the divisor is the clipped area, not sizeX^2 (§3.6)."""
    for C, S, size, start, stride, N in GEOMETRIES:
        OX = outputs_x_auto(S, start, size, stride)
        y = pool_f(np.ones((C * S * S, N), F32), "avg", C, S, size, start, stride, OX)
        assert_close(y, np.ones_like(y), **BIT_EXACT, what="avg of ones")


def test_avg_pool_clipped_edges_by_hand():
    # S=7, size 3, stride 3, start 0: OX = ceil(4/3)+1 = 3; windows [0,3) [3,6) [6,7).
    S = 7
    assert outputs_x_auto(S, 0, 3, 3) == 3
    pix = np.arange(S * S, dtype=F32).reshape(S * S, 1)      # value = y*7 + x
    y = pool_f(pix, "avg", 1, S, 3, 0, 3, 3).reshape(3, 3)
    assert y[2, 2] == 48.0                                    # 1x1 window: pixel (6, 6)
    assert y[0, 2] == F32(6 + 13 + 20) / F32(3)               # 3x1 window: rows 0..2, col 6
    assert y[2, 0] == F32(42 + 43 + 44) / F32(3)              # 1x3 window: row 6, cols 0..2
    assert y[1, 1] == F32(sum(r * 7 + c for r in range(3, 6) for c in range(3, 6))) / F32(9)
    # negative start: S=7, size 3, stride 2, start -1: OX = ceil(5/2)+1 = 4,
    # windows [0,2) [1,4) [3,6) [5,7).
    assert outputs_x_auto(S, -1, 3, 2) == 4
    y = pool_f(pix, "avg", 1, S, 3, -1, 2, 4).reshape(4, 4)
    assert y[0, 0] == F32(0 + 1 + 7 + 8) / F32(4)
    assert y[3, 3] == F32(40 + 41 + 47 + 48) / F32(4)
    # backward: each window sends dy/area to its pixels; corner (0,0) is only in window (0,0)
    dy = np.ones((16, 1), F32)
    dx = pool_b(pix, y.reshape(16, 1), dy, "avg", 1, S, 3, -1, 2, 4).reshape(S, S)
    assert dx[0, 0] == F32(0.25)
    expected_11 = np.float32(0)
    for area in (4, 6, 6, 9):                                 # (0,0), (0,1), (1,0), (1,1) in raster order
        expected_11 = F32(expected_11 + F32(1) / F32(area))
    assert dx[1, 1] == expected_11


def test_max_pool_ties_get_full_gradient_and_overlaps_add():
    # S=4, size 2, stride 1: 3x3 overlapping windows; a constant image ties everywhere.
    S, OX = 4, 3
    x = np.full((S * S, 2), 5.0, F32)
    dy = np.ones((OX * OX, 2), F32)
    dy[:, 1] = np.arange(1, 10, dtype=F32)                   # case 1: window w sends w+1
    y = pool_f(x, "max", 1, S, 2, 0, 1, OX)
    assert (y == 5.0).all()
    dx = pool_b(x, y, dy, "max", 1, S, 2, 0, 1, OX)
    counts = np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]], F32)
    assert_close(dx[:, 0].reshape(S, S), counts, **BIT_EXACT, what="windows holding each pixel")
    w = np.arange(1, 10, dtype=F32).reshape(3, 3)
    d1 = dx[:, 1].reshape(S, S)
    assert d1[0, 0] == w[0, 0]
    assert d1[1, 1] == w[0, 0] + w[0, 1] + w[1, 0] + w[1, 1]
    assert d1[3, 3] == w[2, 2]
    assert d1[2, 1] == w[1, 0] + w[1, 1] + w[2, 0] + w[2, 1]


@pytest.mark.parametrize("mode", ["max", "maxabs"])
def test_max_pool_many_ties_bit_exact(mode):
    """Small integers make exact ties inside and across overlapping windows."""
    C, S, size, start, stride, N = 2, 9, 3, -1, 2, 5
    OX = outputs_x_auto(S, start, size, stride)
    r = rng(7)
    x = r.integers(-2, 3, size=(C * S * S, N)).astype(F32)
    dy = normal(r, C * OX * OX, N)
    y = pool_f(x, mode, C, S, size, start, stride, OX)
    assert_close(y, ref_pool_fprop(x, mode, C, S, size, start, stride, OX), **BIT_EXACT, what="forward")
    dx = pool_b(x, y, dy, mode, C, S, size, start, stride, OX)
    ref = ref_pool_bprop(x, y, dy, mode, C, S, size, start, stride, OX)
    assert_close(dx, ref, **BIT_EXACT, what="backward with ties")
    # the input really had ties: some window has >1 pixel equal to its pooled value
    hits = ref_pool_bprop(x, y, np.ones_like(dy), mode, C, S, size, start, stride, OX)
    assert hits.max() >= 2 and (hits > 0).sum() > OX * OX * C


def test_maxabs_sign_and_ties_by_hand():
    # one 2x2 window (S=2, size 2, stride 2); each case a different pattern, raster order
    cases = np.array([
        [-5, 3, 2, 1],      # -> -5, sign kept
        [4, -4, 1, 0],      # |4| == |-4|: the later (-4) wins
        [-4, 4, 0, 0],      # the later (4) wins
        [3, -3, 3, 1],      # 3, then -3 (tie, later), then 3 (tie, later) -> 3
        [0, 0, 0, 0],       # start value 0
    ], F32).T.copy()
    y = pool_f(cases, "maxabs", 1, 2, 2, 0, 2, 1)
    assert y.tolist() == [[-5.0, -4.0, 4.0, 3.0, 0.0]]
    dy = np.array([[10, 20, 30, 40, 50]], F32)
    dx = pool_b(cases, y, dy, "maxabs", 1, 2, 2, 0, 2, 1)
    # backward compares x == y: both 3s of case 3 get the gradient, -3 does not
    expected = np.array([[10, 0, 0, 0], [0, 20, 0, 0], [0, 30, 0, 0], [40, 0, 40, 0], [50, 50, 50, 50]], F32).T
    assert_close(dx, expected, **BIT_EXACT, what="maxabs backward")


def test_max_pool_ignores_nan():
    x = np.array([[1.0], [np.nan], [-3.0], [0.5]], F32)          # one 2x2 window
    y = pool_f(x, "max", 1, 2, 2, 0, 2, 1)
    assert y[0, 0] == 1.0
    dx = pool_b(x, y, np.array([[2.0]], F32), "max", 1, 2, 2, 0, 2, 1)
    assert dx[:, 0].tolist() == [2.0, 0.0, 0.0, 0.0]
    allnan = np.full((4, 1), np.nan, F32)
    assert pool_f(allnan, "max", 1, 2, 2, 0, 2, 1)[0, 0] == F32(-2e38)   # fmax from the start value


def test_rand_pool():
    C, S, N = 2, 7, 3
    x = normal(rng(3), C * S * S, N)
    assert_close(pool_f(x, "rand", C, S, 3, 0, 2, 3, do_max=True), pool_f(x, "max", C, S, 3, 0, 2, 3),
                 **BIT_EXACT, what="rand with do_max is max")
    y = np.zeros((C * 9, N), F32)
    # Without do_max: the reconstruction takes its picks (tests/test_reconstructions.py)
    with pytest.raises(ValueError, match="pool_rand_fprop"):
        _core.pool_fprop(x, y, "rand", C, S, 3, 0, 2, 3)


def test_pool_argument_checks():
    C, S, N = 1, 7, 3
    x = np.zeros((C * S * S, N), F32)
    y = np.zeros((9, N), F32)
    with pytest.raises(ValueError, match="stride"):
        _core.pool_fprop(x, y, "max", C, S, 3, 0, 0, 3)
    with pytest.raises(ValueError, match="size_x"):
        _core.pool_fprop(x, y, "max", C, S, 0, 0, 1, 3)
    with pytest.raises(ValueError, match="mode"):
        _core.pool_fprop(x, y, "min", C, S, 3, 0, 2, 3)
    with pytest.raises(ValueError, match="outputs_x"):          # last window starts at 8 >= 7
        _core.pool_fprop(x, np.zeros((25, N), F32), "avg", C, S, 3, 0, 2, 5)
    with pytest.raises(ValueError, match="start"):              # first window [-3, 0) is empty
        _core.pool_fprop(x, y, "avg", C, S, 3, -3, 2, 3)
    with pytest.raises(ValueError, match="^y: expected shape"):
        _core.pool_fprop(x, np.zeros((10, N), F32), "max", C, S, 3, 0, 2, 3)
    with pytest.raises(ValueError, match="^x: expected dtype float32"):
        _core.pool_fprop(x.astype(np.float64), y, "max", C, S, 3, 0, 2, 3)
    with pytest.raises(ValueError, match="scale_targets"):
        _core.pool_fprop(x, y, "max", C, S, 3, 0, 2, 3, 0.5)
    with pytest.raises(ValueError, match="^dx: expected shape"):
        _core.pool_bprop(x, y, y, np.zeros((48, N), F32), "max", C, S, 3, 0, 2, 3)
    buf = np.zeros((60, N), F32)
    with pytest.raises(ValueError, match="y: must not share memory with x"):
        _core.pool_fprop(buf[:49], buf[40:49], "max", C, S, 3, 0, 2, 3)


# ---------------------------------------------------------------------------
# nailbed, href, concat, eltsum, eltmax, blur: forward and backward
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("S,stride", [(7, 2), (13, 3), (8, 3), (9, 4), (5, 1)])
def test_nailbed_bit_exact(S, stride):
    assert tuple(_core.nailbed_geometry(S, stride)) == nailbed_geometry(S, stride)
    C, N = 3, 5
    OX, _ = nailbed_geometry(S, stride)
    r = rng(S * 10 + stride)
    x = normal(r, C * S * S, N)
    y = np.full((C * OX * OX, N), np.nan, F32)
    _core.nailbed_fprop(x, y, C, S, stride)
    assert_close(y, ref_nailbed_fprop(x, C, S, stride), **BIT_EXACT, what="nailbed forward")
    dy = normal(r, C * OX * OX, N)
    dx = np.full_like(x, np.nan)                               # non-sampled pixels become 0
    _core.nailbed_bprop(dy, dx, C, S, stride)
    assert_close(dx, ref_nailbed_bprop(dy, C, S, stride), **BIT_EXACT, what="nailbed backward")


def test_nailbed_geometry_by_hand():
    # S=7, stride 2: OX=4, start=floor((7-6)/2)=0; S=8, stride 3: OX=3, start=floor((8-6)/2)=1
    assert tuple(_core.nailbed_geometry(7, 2)) == (4, 0)
    assert tuple(_core.nailbed_geometry(8, 3)) == (3, 1)
    assert tuple(_core.nailbed_geometry(13, 4)) == (4, 0)
    assert tuple(_core.nailbed_geometry(9, 4)) == (3, 0)
    assert tuple(_core.nailbed_geometry(10, 4)) == (3, 1)
    with pytest.raises(ValueError, match="stride"):
        _core.nailbed_geometry(7, 0)


@pytest.mark.parametrize("C,S,N", [(1, 7, 3), (3, 13, 5)])
def test_href_bit_exact(C, S, N):
    x = normal(rng(S), C * S * S, N)
    y = np.full_like(x, np.nan)
    _core.href_fprop(x, y, C, S)
    assert_close(y, ref_href(x, C, S), **BIT_EXACT, what="href forward")
    row = x.reshape(C, S, S, N)[0, 2, :, 0]
    assert y.reshape(C, S, S, N)[0, 2, :, 0].tolist() == row[::-1].tolist()
    dy = normal(rng(S + 1), C * S * S, N)
    dx = np.full_like(x, np.nan)
    _core.href_bprop(dy, dx, C, S)
    assert_close(dx, ref_href(dy, C, S), **BIT_EXACT, what="href backward")


def test_href_backward_ignores_scale_targets():
    """§13 item 8, kept as written: the backward overwrites even when asked to add."""
    C, S, N = 2, 5, 3
    dy = normal(rng(5), C * S * S, N)
    dx = np.full_like(dy, 7.0)
    _core.href_bprop(dy, dx, C, S, 1.0)
    assert_close(dx, ref_href(dy, C, S), **BIT_EXACT, what="href backward with scale_targets=1")
    dx = np.full_like(dy, np.nan)
    _core.href_bprop(dy, dx, C, S, 1.0)
    assert_close(dx, ref_href(dy, C, S), **BIT_EXACT, what="href backward over NaN with scale_targets=1")


def test_concat_bit_exact():
    N = 5
    r = rng(11)
    xs = [normal(r, d, N) for d in (3, 7, 1)]
    y = np.full((11, N), np.nan, F32)
    off = 0
    for x in xs:
        _core.concat_fprop(x, y, off)
        # rows not yet written are untouched (still NaN)
        assert np.isnan(y[off + x.shape[0]:]).all()
        off += x.shape[0]
    assert_close(y, np.concatenate(xs), **BIT_EXACT, what="concat forward")
    dy = normal(r, 11, N)
    off = 0
    for x in xs:
        dx = np.full_like(x, np.nan)
        _core.concat_bprop(dy, dx, off)
        assert_close(dx, dy[off:off + x.shape[0]], **BIT_EXACT, what="concat backward")
        off += x.shape[0]
    with pytest.raises(ValueError, match="offset"):
        _core.concat_fprop(xs[1], y, 5)
    with pytest.raises(ValueError, match="offset"):
        _core.concat_bprop(dy, np.zeros((3, N), F32), -1)
    with pytest.raises(ValueError, match="^x: expected shape"):
        _core.concat_fprop(np.zeros((3, N + 1), F32), y, 0)


def test_eltsum_bit_exact_and_in_place():
    N = 7
    r = rng(12)
    xs = [normal(r, 13, N) for _ in range(3)]
    coeffs = [F32(1.0), F32(-0.3), F32(2.5)]
    y = np.full((13, N), np.nan, F32)
    for i, (x, c) in enumerate(zip(xs, coeffs)):
        _core.eltsum_fprop(x, y, float(c), 0.0 if i == 0 else 1.0)
    ref = coeffs[0] * xs[0]
    for x, c in zip(xs[1:], coeffs[1:]):
        ref = ref + c * x                                     # first written, later added (§3.13)
    assert_close(y, ref, **BIT_EXACT, what="eltsum forward")
    dy = normal(r, 13, N)
    for c in coeffs:
        dx = np.full_like(dy, np.nan)
        _core.eltsum_bprop(dy, dx, float(c), 0.0)
        assert_close(dx, c * dy, **BIT_EXACT, what="eltsum backward")
    # in place, the output buffer shared with the first input (§1.5)
    z = xs[0].copy()
    _core.eltsum_fprop(z, z, float(coeffs[1]), 0.0)
    assert_close(z, coeffs[1] * xs[0], **BIT_EXACT, what="eltsum in place")
    buf = np.zeros((14, N), F32)
    with pytest.raises(ValueError, match="y: must be the same array as x"):
        _core.eltsum_fprop(buf[:13], buf[1:], 1.0, 0.0)


def test_eltmax_bit_exact_with_ties():
    N = 5
    r = rng(13)
    xs = [r.integers(-2, 3, size=(11, N)).astype(F32) for _ in range(3)]   # many exact ties
    y = np.full((11, N), np.nan, F32)
    _core.eltmax_fprop(xs, y)
    ref = ref_eltmax(xs)
    assert_close(y, ref, **BIT_EXACT, what="eltmax forward")
    dy = normal(r, 11, N)
    ties = sum((x == ref).astype(int) for x in xs)
    assert (ties >= 2).any()                                   # the input really has ties
    for x in xs:
        dx = np.full_like(x, np.nan)
        _core.eltmax_bprop(x, y, dy, dx)
        assert_close(dx, np.where(x == ref, dy, F32(0)), **BIT_EXACT, what="eltmax backward")
    # literal a > b ? a : b: max(x1=+0, x0=-0) keeps x0 = -0; max(y, x2) on a tie keeps x2
    a = np.array([[0.0]], F32)
    b = np.array([[-0.0]], F32)
    out = np.zeros((1, 1), F32)
    _core.eltmax_fprop([b, a], out)
    assert np.signbit(out[0, 0])
    _core.eltmax_fprop([a, a, b], out)
    assert np.signbit(out[0, 0])
    with pytest.raises(ValueError, match="at least 2"):
        _core.eltmax_fprop([a], out)
    with pytest.raises(ValueError, match=r"^xs\[1\]: expected shape"):
        _core.eltmax_fprop([a, np.zeros((2, 1), F32)], out)


@pytest.mark.parametrize("K,sigma", [(3, 1.0), (5, 1.5), (7, 2.0), (9, 1.2)])
@pytest.mark.parametrize("S", [7, 13])
def test_blur_bit_exact(K, sigma, S):
    C, N = 2, 3
    g = gaussian_filter(K, sigma)
    assert (g == g[::-1]).all()
    r = rng(K * 100 + S)
    x = normal(r, C * S * S, N)
    for horizontal in (True, False):
        y = np.full_like(x, np.nan)
        _core.blur_pass(x, y, g, C, S, horizontal)
        assert_close(y, ref_blur_pass(x, g, C, S, horizontal), **BIT_EXACT, what=f"blur pass h={horizontal}")
    y = np.full_like(x, np.nan)
    scratch = np.full_like(x, np.nan)
    _core.blur_fprop(x, y, scratch, g, C, S)
    assert_close(y, ref_blur(x, g, C, S), **BIT_EXACT, what="blur forward")
    dy = normal(r, C * S * S, N)
    dx = np.full_like(x, np.nan)
    _core.blur_bprop(dy, dx, scratch, g, C, S)
    assert_close(dx, ref_blur(dy, g, C, S), **BIT_EXACT, what="blur backward")


def test_blur_argument_checks():
    C, S, N = 1, 5, 3
    x = np.zeros((C * S * S, N), F32)
    y, s = np.zeros_like(x), np.zeros_like(x)
    with pytest.raises(ValueError, match="filter: must be symmetric"):
        _core.blur_fprop(x, y, s, np.array([0.2, 0.5, 0.3], F32), C, S)
    with pytest.raises(ValueError, match="filter: must have an odd"):
        _core.blur_fprop(x, y, s, np.array([0.5, 0.5], F32), C, S)
    with pytest.raises(ValueError, match="scratch: must not share memory with y"):
        _core.blur_fprop(x, y, y, gaussian_filter(3, 1.0), C, S)


# ---------------------------------------------------------------------------
# scale_targets: 1 adds to the target, 0 overwrites a NaN target unread
# ---------------------------------------------------------------------------
def _st_cases():
    """name -> (shape of target, function(target, scale_targets), reference result)."""
    r = rng(99)
    C, S, N = 2, 7, 3
    x = normal(r, C * S * S, N)
    cases = {}
    for mode in ("max", "maxabs", "avg"):
        OX = 3
        geo = (C, S, 3, 0, 3, OX)
        y = ref_pool_fprop(x, mode, *geo)
        dy = normal(r, C * OX * OX, N)
        cases[f"pool_fprop_{mode}"] = (y.shape, lambda t, st, m=mode, g=geo: _core.pool_fprop(x, t, m, *g, st), y)
        cases[f"pool_bprop_{mode}"] = (
            x.shape, lambda t, st, m=mode, g=geo, y=y, dy=dy: _core.pool_bprop(x, y, dy, t, m, *g, st),
            ref_pool_bprop(x, y, dy, mode, *geo))
    OX, _ = nailbed_geometry(S, 2)
    dyn = normal(r, C * OX * OX, N)
    cases["nailbed_fprop"] = ((C * OX * OX, N), lambda t, st: _core.nailbed_fprop(x, t, C, S, 2, st),
                              ref_nailbed_fprop(x, C, S, 2))
    cases["nailbed_bprop"] = (x.shape, lambda t, st: _core.nailbed_bprop(dyn, t, C, S, 2, st),
                              ref_nailbed_bprop(dyn, C, S, 2))
    g = gaussian_filter(5, 1.0)
    scratch = np.empty_like(x)
    cases["blur_pass"] = (x.shape, lambda t, st: _core.blur_pass(x, t, g, C, S, False, st),
                          ref_blur_pass(x, g, C, S, False))
    cases["blur_fprop"] = (x.shape, lambda t, st: _core.blur_fprop(x, t, scratch, g, C, S, st), ref_blur(x, g, C, S))
    cases["blur_bprop"] = (x.shape, lambda t, st: _core.blur_bprop(x, t, scratch, g, C, S, st), ref_blur(x, g, C, S))
    cases["href_fprop"] = (x.shape, lambda t, st: _core.href_fprop(x, t, C, S, st), ref_href(x, C, S))
    big = normal(r, 30, N)
    cases["concat_bprop"] = ((11, N), lambda t, st: _core.concat_bprop(big, t, 4, st), big[4:15])
    cases["eltsum_fprop"] = (x.shape, lambda t, st: _core.eltsum_fprop(x, t, -0.7, st), F32(-0.7) * x)
    cases["eltsum_bprop"] = (x.shape, lambda t, st: _core.eltsum_bprop(x, t, 1.3, st), F32(1.3) * x)
    x2 = normal(r, *x.shape)
    ym = ref_eltmax([x, x2])
    cases["eltmax_bprop"] = (x.shape, lambda t, st: _core.eltmax_bprop(x2, ym, x, t, st),
                             np.where(x2 == ym, x, F32(0)))
    return cases


ST_CASES = _st_cases()


@pytest.mark.parametrize("name", sorted(ST_CASES))
def test_scale_targets(name):
    shape, run, ref = ST_CASES[name]
    t = np.full(shape, np.nan, F32)
    run(t, 0.0)
    assert_close(t, ref, **BIT_EXACT, what=f"{name} overwrite")
    before = normal(rng(len(name)), *shape)
    t = before.copy()
    run(t, 1.0)
    assert_close(t, before + ref, **BIT_EXACT, what=f"{name} accumulate")


# ---------------------------------------------------------------------------
# finite differences: E = sum(R * forward(x)), delta_y = -R, engine gives -dE/dx
# ---------------------------------------------------------------------------
def distinct_values(r, shape, spacing=0.05):
    """Values at least `spacing` apart in value and in |value|: no ties, no kinks within h."""
    n = int(np.prod(shape))
    mags = (r.permutation(n) + 1) * spacing
    return (mags * r.choice([-1.0, 1.0], size=n)).reshape(shape).astype(F32)


def finite_difference(fwd64, x, R, h):
    x64 = x.astype(np.float64)
    g = np.empty_like(x64)
    for i in np.ndindex(x.shape):
        xp, xm = x64.copy(), x64.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (np.sum(R * fwd64(xp)) - np.sum(R * fwd64(xm))) / (2 * h)
    return g


def _fd_cases():
    """name -> (x, engine forward f(x) -> y, engine backward b(x, y, dy) -> dx, float64 forward)."""
    r = rng(2024)
    C, S, N = 2, 7, 3
    cases = {}
    for mode, geo in [("avg", (C, S, 3, -1, 2, 4)), ("max", (C, S, 3, 0, 2, 3)), ("maxabs", (C, S, 3, 1, 2, 3)),
                      ("avg", (C, S, 3, 0, 3, 3))]:
        x = distinct_values(r, (C * S * S, N)) if mode != "avg" else normal(r, C * S * S, N)
        cases[f"pool_{mode}_start{geo[3]}_stride{geo[4]}"] = (
            x, lambda x, m=mode, g=geo: pool_f(x, m, *g),
            lambda x, y, dy, m=mode, g=geo: pool_b(x, y, dy, m, *g),
            lambda x, m=mode, g=geo: ref_pool_fprop(x, m, *g, dtype=np.float64))
    g5 = gaussian_filter(5, 1.3)

    def blur_f(x):
        y, s = np.empty_like(x), np.empty_like(x)
        _core.blur_fprop(x, y, s, g5, C, S)
        return y

    def blur_b(x, y, dy):
        dx, s = np.empty_like(dy), np.empty_like(dy)
        _core.blur_bprop(dy, dx, s, g5, C, S)
        return dx

    cases["blur"] = (normal(r, C * S * S, N), blur_f, blur_b, lambda x: ref_blur(x, g5, C, S, np.float64))

    def nail_f(x):
        OX, _ = nailbed_geometry(S, 3)
        y = np.empty((C * OX * OX, N), F32)
        _core.nailbed_fprop(x, y, C, S, 3)
        return y

    def nail_b(x, y, dy):
        dx = np.empty_like(x)
        _core.nailbed_bprop(dy, dx, C, S, 3)
        return dx

    cases["nailbed"] = (normal(r, C * S * S, N), nail_f, nail_b,
                        lambda x: ref_nailbed_fprop(x, C, S, 3, np.float64))

    def href_f(x):
        y = np.empty_like(x)
        _core.href_fprop(x, y, C, S)
        return y

    def href_b(x, y, dy):
        dx = np.empty_like(dy)
        _core.href_bprop(dy, dx, C, S)
        return dx

    cases["href"] = (normal(r, C * S * S, N), href_f, href_b, lambda x: ref_href(x, C, S))

    # multi-input layers: the gradient with respect to one input, the others fixed
    a, b = normal(r, 4, 5), normal(r, 6, 5)

    def concat_f(x):
        y = np.empty((13, 5), F32)
        for xi, off in ((a, 0), (x, 4), (b, 7)):
            _core.concat_fprop(xi, y, off)
        return y

    def concat_b(x, y, dy):
        dx = np.empty_like(x)
        _core.concat_bprop(dy, dx, 4)
        return dx

    cases["concat"] = (normal(r, 3, 5), concat_f, concat_b, lambda x: np.concatenate([a, x, b]))
    o1, o2 = normal(r, 9, 5), normal(r, 9, 5)

    def eltsum_f(x):
        y = np.empty_like(x)
        _core.eltsum_fprop(o1, y, 1.0, 0.0)
        _core.eltsum_fprop(x, y, -0.6, 1.0)
        _core.eltsum_fprop(o2, y, 2.0, 1.0)
        return y

    def eltsum_b(x, y, dy):
        dx = np.empty_like(x)
        _core.eltsum_bprop(dy, dx, -0.6, 0.0)
        return dx

    cases["eltsum"] = (normal(r, 9, 5), eltsum_f, eltsum_b, lambda x: o1 + F32(-0.6) * x + 2.0 * o2)
    m1, m2 = distinct_values(r, (9, 5)), distinct_values(r, (9, 5))
    mx = distinct_values(r, (9, 5), spacing=0.05) + F32(0.025)   # never equal to m1, m2 values

    def eltmax_f(x):
        y = np.empty_like(x)
        _core.eltmax_fprop([m1, x, m2], y)
        return y

    def eltmax_b(x, y, dy):
        dx = np.empty_like(x)
        _core.eltmax_bprop(x, y, dy, dx)
        return dx

    cases["eltmax"] = (mx, eltmax_f, eltmax_b, lambda x: np.maximum(np.maximum(m1, x), m2))
    return cases


FD_CASES = _fd_cases()


@pytest.mark.parametrize("name", sorted(FD_CASES))
def test_gradient_matches_finite_differences(name):
    x, fwd, bwd, fwd64 = FD_CASES[name]
    y = fwd(x)
    R = normal(rng(len(name) + 1), *y.shape)
    dx = bwd(x, y, -R)                                  # delta_y = -dE/dy = -R
    fd = finite_difference(fwd64, x, R.astype(np.float64), h=1e-3)
    assert np.abs(fd).max() > 0.1                       # the check is not vacuous
    assert_close(dx, -fd, **FD_TOL, what=f"{name}: engine backward vs -dE/dx by finite differences")
