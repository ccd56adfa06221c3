"""conv (engine.md §3.4) and local (§3.5) layers of the CPU engine.

References are plain numpy loops written from the spec (module windows with
top-left corner (-p + my*st, -p + mx*st), zeros outside the image including the
ceiling overhang, filter f in group f // (F/G), channel g*Cg + c' or
conns[g*Cg + c']), computed in float64 from the float32 inputs.

Tolerances (TOL below):
* "sum": the engine sums in OpenBLAS's order (engine.md §7.3: "close only").
  Any order of a float32 sum of L products has |error| <= ~L*u*sum|terms|
  (u = 2**-24); the tests use atol = (L + 4)*u*max(sum|terms|), with sum|terms|
  computed by the same reference on |inputs|, and rtol = 0. The + 4 covers the
  final rounding, the scale (1/N) product, the per-block scaling and the blend.
* "bias": bias gradients are summed in double and rounded once, then one
  float32 product with the scale: at most ~1 ulp, rtol = 2**-22.
* "exact": bias addition and the partialSum block arithmetic at P = 1, N = 1
  (each block is one product) have a fixed float32 order: compared bit for bit.
* "fd": finite differences of the float64 reference (the layer is linear, so a
  central difference is exact up to float64 rounding / h) against the float32
  engine: rtol 1e-4 plus atol 1e-4 x max |gradient|.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import alexnet_replay
from alexnet_replay import _core
from alexnet_replay.testing import assert_close

U = 2.0 ** -24
TOL = {
    "bias": dict(atol=0.0, rtol=2.0 ** -22),   # double sum rounded once, one float32 product
    "exact": dict(atol=0.0, rtol=0.0),         # fixed float32 order, reproduced in numpy
    "fd_rel": 1e-4,                            # float32 engine vs float64 difference quotient
}


def sum_atol(terms: int, abs_ref) -> float:
    """atol for a float32 sum of `terms` products in an unknown order (see module doc)."""
    return (terms + 4) * U * float(np.max(np.abs(abs_ref)))


# -- geometry and references --------------------------------------------------
def modules_x(S, K, p, st):
    """engine.md §3.4: 1 + ceil((2p + S - K)/stride)."""
    return 1 + math.ceil((2 * p + S - K) / st)


@dataclass
class Geo:
    C: int
    S: int
    K: int
    p: int
    st: int
    G: int
    F: int
    N: int
    conns: np.ndarray | None = None

    @property
    def MX(self):
        return modules_x(self.S, self.K, self.p, self.st)

    @property
    def M(self):
        return self.MX ** 2

    @property
    def Cg(self):
        return self.C // self.G if self.conns is None else len(self.conns) // self.G

    @property
    def Fg(self):
        return self.F // self.G

    def channels(self, g):
        """Image channel read by each filter channel c' of group g (§3.4)."""
        if self.conns is None:
            return [g * self.Cg + c for c in range(self.Cg)]
        return [int(self.conns[g * self.Cg + c]) for c in range(self.Cg)]

    def args(self):
        return (self.C, self.S, self.K, self.p, self.st, self.G, self.MX)

    def kw(self):
        return {} if self.conns is None else {"conns": self.conns}

    def w_rows(self, local):
        return (self.M if local else 1) * self.Cg * self.K * self.K

    def extent(self):
        """Side of the zero-padded image that holds every module's window."""
        return max(self.p + self.S, (self.MX - 1) * self.st + self.K)


def padded(x, geo):
    """(C*S*S, N) -> (C, E, E, N) float64 with the image at offset p, zeros around."""
    E = geo.extent()
    out = np.zeros((geo.C, E, E, geo.N))
    out[:, geo.p:geo.p + geo.S, geo.p:geo.p + geo.S] = np.asarray(x, np.float64).reshape(geo.C, geo.S, geo.S, geo.N)
    return out


def weights4(w, geo, local):
    shape = (geo.M, geo.Cg, geo.K, geo.K, geo.F) if local else (1, geo.Cg, geo.K, geo.K, geo.F)
    return np.asarray(w, np.float64).reshape(shape)


def windows(geo):
    for my in range(geo.MX):
        for mx in range(geo.MX):
            yield my * geo.MX + mx, slice(my * geo.st, my * geo.st + geo.K), slice(mx * geo.st, mx * geo.st + geo.K)


def ref_fprop(x, w, geo, local=False):
    """Y[f, m, n] = sum_{c', ky, kx} W[c', ky, kx, f] X[c(f, c'), top+ky, left+kx, n] (§3.4)."""
    X, W = padded(x, geo), weights4(w, geo, local)
    Y = np.zeros((geo.F, geo.M, geo.N))
    for m, rows, cols in windows(geo):
        Wm = W[m if local else 0]
        for g in range(geo.G):
            fs = slice(g * geo.Fg, (g + 1) * geo.Fg)
            patch = X[geo.channels(g)][:, rows, cols]          # (Cg, K, K, N)
            Y[fs, m] = np.einsum("cklf,ckln->fn", Wm[..., fs], patch)
    return Y.reshape(geo.F * geo.M, geo.N)


def ref_bprop_acts(dy, w, geo, local=False):
    """dX[c, y, x, n] = sum over filters fed by c and modules covering (y, x) of W dY (§3.4)."""
    dXp = np.zeros((geo.C, geo.extent(), geo.extent(), geo.N))
    W, dY = weights4(w, geo, local), np.asarray(dy, np.float64).reshape(geo.F, geo.M, geo.N)
    for m, rows, cols in windows(geo):
        Wm = W[m if local else 0]
        for g in range(geo.G):
            fs = slice(g * geo.Fg, (g + 1) * geo.Fg)
            contrib = np.einsum("cklf,fn->ckln", Wm[..., fs], dY[fs, m])
            for ci, c in enumerate(geo.channels(g)):   # a channel may repeat: add every connection
                dXp[c, rows, cols] += contrib[ci]
    return dXp[:, geo.p:geo.p + geo.S, geo.p:geo.p + geo.S].reshape(geo.C * geo.S * geo.S, geo.N)


def ref_weight_sum(x, dy, geo, local=False):
    """sum_m sum_n X-patch * dY: (Cg*K*K, F) for conv, (M*Cg*K*K, F) for local (unscaled)."""
    X, dY = padded(x, geo), np.asarray(dy, np.float64).reshape(geo.F, geo.M, geo.N)
    Gw = np.zeros((geo.M if local else 1, geo.Cg, geo.K, geo.K, geo.F))
    for m, rows, cols in windows(geo):
        for g in range(geo.G):
            fs = slice(g * geo.Fg, (g + 1) * geo.Fg)
            patch = X[geo.channels(g)][:, rows, cols]
            Gw[m if local else 0][..., fs] += np.einsum("ckln,fn->cklf", patch, dY[fs, m])
    return Gw.reshape(geo.w_rows(local), geo.F)


def ref_bias_sum(dy, geo, shared):
    dY = np.asarray(dy, np.float64).reshape(geo.F, geo.M, geo.N)
    return (dY.sum(axis=(1, 2)) if shared else dY.reshape(geo.F * geo.M, geo.N).sum(axis=1))[:, None]


def rng_for(name):
    """A generator seeded from the test's name (stable across runs, unlike hash())."""
    return np.random.default_rng([ord(ch) for ch in name])


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def two_permutations(rng, C):
    return np.concatenate([rng.permutation(C), rng.permutation(C)]).astype(np.int32)


_PERM_RNG = np.random.default_rng(2012)

# Awkward geometries: odd N, the ceiling overhang, groups, random sparsity.
CASES = {
    # (2*2 + 15 - 5)/4 = 3.5 -> MX = 5: the last module covers rows 14..18 of a
    # 15-row image: one image row, the 2 padding rows and 2 rows of overhang.
    "pad2_stride4_overhang": Geo(C=3, S=15, K=5, p=2, st=4, G=1, F=5, N=3),
    # The brief's S=13 example: (4 + 13 - 5)/4 = 3 exactly, MX = 4, no overhang past p.
    "pad2_stride4_exact": Geo(C=1, S=13, K=5, p=2, st=4, G=1, F=2, N=1),
    # (2 + 13 - 5)/3 = 3.33 -> MX = 5: last window rows 11..15, 2 rows beyond the padding.
    "pad1_stride3_overhang": Geo(C=2, S=13, K=5, p=1, st=3, G=1, F=3, N=5),
    "groups2": Geo(C=4, S=7, K=3, p=1, st=2, G=2, F=6, N=5),
    # C=8, G=4, filterChannels=4: overSample = G*Cg/C = 2, conns = two permutations of 0..7.
    "sparse_oversample2": Geo(C=8, S=7, K=3, p=0, st=1, G=4, F=8, N=3, conns=two_permutations(_PERM_RNG, 8)),
    # A channel table with repeats inside a group (an initCFunc may return one): every connection counts.
    "sparse_repeats": Geo(C=3, S=6, K=2, p=1, st=2, G=2, F=4, N=3,
                          conns=np.array([0, 0, 2, 1, 1, 1], np.int32)),
    "filter1x1_stride2": Geo(C=5, S=7, K=1, p=0, st=2, G=1, F=3, N=7),
}
CASE_IDS = list(CASES)


def engine_weight_grad(x, dy, geo, partial_sum=0, scale=1.0, g=None, scale_targets=0.0, **kw):
    if g is None:
        g = np.full((geo.w_rows(False), geo.F), np.nan, np.float32)
    _core.conv_bprop_weights(x, dy, g, *geo.args(), partial_sum, scale, scale_targets=scale_targets,
                             **geo.kw(), **kw)
    return g


# -- geometry ---------------------------------------------------------------------
def test_conv_modules_matches_spec_formula():
    # AlexNet conv1 on 224 (55, with 3 rows of overhang), conv2, conv3, and awkward ones.
    for S, K, p, st in [(224, 11, 0, 4), (27, 5, 2, 1), (13, 3, 1, 1), (15, 5, 2, 4), (13, 5, 1, 3), (7, 7, 0, 3)]:
        assert _core.conv_modules(S, K, p, st) == modules_x(S, K, p, st)
    assert _core.conv_modules(224, 11, 0, 4) == 55
    assert _core.conv_modules(15, 5, 2, 4) == 5


# -- forward -------------------------------------------------------------------------
@pytest.mark.parametrize("local", [False, True], ids=["conv", "local"])
@pytest.mark.parametrize("case", CASE_IDS)
def test_forward_matches_reference(case, local):
    geo, rng = CASES[case], rng_for(case)
    x, w = f32(rng, geo.C * geo.S * geo.S, geo.N), f32(rng, geo.w_rows(local), geo.F)
    y = np.full((geo.F * geo.M, geo.N), np.nan, np.float32)   # overwritten without being read
    (_core.local_fprop if local else _core.conv_fprop)(x, w, y, *geo.args(), **geo.kw())
    ref = ref_fprop(x, w, geo, local)
    abs_ref = ref_fprop(np.abs(x), np.abs(w), geo, local)
    assert_close(y, ref, atol=sum_atol(geo.Cg * geo.K * geo.K, abs_ref), what=f"{case} forward")


def test_overhang_reads_zeros():
    """Only tap (K-1, K-1) is nonzero: the last module row and column read beyond
    the image (rows 17, 18 of a 15-row image) and must give exactly 0."""
    geo = CASES["pad2_stride4_overhang"]
    rng = rng_for("overhang")
    x = (np.abs(f32(rng, geo.C * geo.S * geo.S, geo.N)) + 1.0).astype(np.float32)   # no zeros in the image
    w = np.zeros((geo.Cg, geo.K, geo.K, geo.F), np.float32)
    w[:, geo.K - 1, geo.K - 1, :] = 1.0
    w = w.reshape(geo.w_rows(False), geo.F)
    y = np.full((geo.F * geo.M, geo.N), np.nan, np.float32)
    _core.conv_fprop(x, w, y, *geo.args())
    Y = y.reshape(geo.F, geo.MX, geo.MX, geo.N)
    last = geo.MX - 1
    assert -geo.p + last * geo.st + geo.K - 1 >= geo.S + geo.p   # the tap lies past the padding
    assert (Y[:, last, :, :] == 0).all() and (Y[:, :, last, :] == 0).all()
    # The module before the last reads image pixel (14, 14) through that tap: the sum over channels.
    X = x.reshape(geo.C, geo.S, geo.S, geo.N).astype(np.float64)
    yy = -geo.p + (last - 1) * geo.st + geo.K - 1
    inside = X[:, yy, yy].sum(axis=0)
    assert_close(Y[0, last - 1, last - 1], inside, atol=sum_atol(geo.C, inside), what="tap inside the image")


def test_forward_two_inputs_bias_after_first():
    """Y = (X0*W0 + b) + X1*W1 (engine.md §1.4): scale_targets 0 for the first input, then 1."""
    g0 = Geo(C=3, S=9, K=3, p=1, st=2, G=1, F=4, N=5)
    g1 = Geo(C=4, S=9, K=3, p=1, st=2, G=2, F=4, N=5)
    rng = rng_for("two inputs")
    x0, x1 = f32(rng, 3 * 81, 5), f32(rng, 4 * 81, 5)
    w0, w1 = f32(rng, g0.w_rows(False), 4), f32(rng, g1.w_rows(False), 4)
    b = f32(rng, 4, 1)
    y = np.full((4 * g0.M, 5), np.nan, np.float32)
    _core.conv_fprop(x0, w0, y, *g0.args(), scale_targets=0.0)
    _core.conv_add_bias(y, b, shared=True)
    _core.conv_fprop(x1, w1, y, *g1.args(), scale_targets=1.0)
    ref = ref_fprop(x0, w0, g0) + np.repeat(b.astype(np.float64), g0.M, axis=0) + ref_fprop(x1, w1, g1)
    abs_ref = ref_fprop(np.abs(x0), np.abs(w0), g0) + np.abs(b).max() + ref_fprop(np.abs(x1), np.abs(w1), g1)
    assert_close(y, ref, atol=sum_atol(2 * 3 * 9 + 1, abs_ref), what="two-input forward")


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "unshared"])
def test_add_bias_exact(shared):
    geo = CASES["groups2"]
    rng = rng_for("bias add")
    y = f32(rng, geo.F * geo.M, geo.N)
    b = f32(rng, geo.F if shared else geo.F * geo.M, 1)
    ref = y + (np.repeat(b, geo.M, axis=0) if shared else b)   # one float32 addition per element
    y_local = y.copy()
    _core.conv_add_bias(y, b, shared=shared)
    assert_close(y, ref, **TOL["exact"], what="bias add")
    if not shared:   # local layers' biases are always unshared (§3.5)
        _core.local_add_bias(y_local, b)
        assert_close(y_local, ref, **TOL["exact"], what="local bias add")


# -- backward to the input ----------------------------------------------------------------
@pytest.mark.parametrize("local", [False, True], ids=["conv", "local"])
@pytest.mark.parametrize("case", CASE_IDS)
def test_bprop_acts_matches_reference(case, local):
    geo, rng = CASES[case], rng_for(case + " acts")
    dy, w = f32(rng, geo.F * geo.M, geo.N), f32(rng, geo.w_rows(local), geo.F)
    fn = _core.local_bprop_acts if local else _core.conv_bprop_acts
    ref = ref_bprop_acts(dy, w, geo, local)
    abs_ref = ref_bprop_acts(np.abs(dy), np.abs(w), geo, local)
    terms = geo.G * geo.Cg * geo.Fg * geo.K * geo.K    # bound on the products reaching one pixel
    dx = np.full((geo.C * geo.S * geo.S, geo.N), np.nan, np.float32)   # overwritten without being read
    fn(dy, w, dx, *geo.args(), **geo.kw())
    assert_close(dx, ref, atol=sum_atol(terms, abs_ref), what=f"{case} dx")
    # scale_targets = 1 adds to what is there (a second consumer of the input).
    old = f32(rng, *dx.shape)
    dx = old.copy()
    fn(dy, w, dx, *geo.args(), scale_targets=1.0, **geo.kw())
    assert_close(dx, old + ref, atol=sum_atol(terms, abs_ref + np.abs(old)), what=f"{case} dx accumulated")


# -- weight gradients -------------------------------------------------------------------
@pytest.mark.parametrize("case", CASE_IDS)
def test_bprop_weights_matches_reference(case):
    geo, rng = CASES[case], rng_for(case + " weights")
    x, dy = f32(rng, geo.C * geo.S * geo.S, geo.N), f32(rng, geo.F * geo.M, geo.N)
    scale = 1.0 / geo.N
    ref = scale * ref_weight_sum(x, dy, geo)
    abs_ref = scale * ref_weight_sum(np.abs(x), np.abs(dy), geo)
    g = engine_weight_grad(x, dy, geo, 0, scale)
    assert_close(g, ref, atol=sum_atol(geo.M * geo.N, abs_ref), what=f"{case} weight gradient")
    # Shared weights: a second use adds (scale_targets = 1).
    old = f32(rng, *g.shape)
    g = engine_weight_grad(x, dy, geo, 0, scale, g=old.copy(), scale_targets=1.0)
    assert_close(g, old + ref, atol=sum_atol(geo.M * geo.N, abs_ref + np.abs(old)), what=f"{case} accumulated")


@pytest.mark.parametrize("case", CASE_IDS)
def test_local_weight_increment(case):
    """inc <- mom*inc + (eps/N)*sum_n X*dY per module (engine.md §3.5, §4.2)."""
    geo, rng = CASES[case], rng_for(case + " local weights")
    x, dy = f32(rng, geo.C * geo.S * geo.S, geo.N), f32(rng, geo.F * geo.M, geo.N)
    mom, eps = 0.9, 0.01
    ref_sum = ref_weight_sum(x, dy, geo, local=True)
    abs_sum = ref_weight_sum(np.abs(x), np.abs(dy), geo, local=True)
    inc0 = f32(rng, geo.w_rows(True), geo.F)
    inc = inc0.copy()
    _core.local_bprop_weights(x, dy, inc, *geo.args(), np.float32(eps / geo.N), scale_targets=mom, **geo.kw())
    ref = np.float32(mom) * inc0.astype(np.float64) + np.float32(eps / geo.N) * ref_sum
    abs_ref = np.abs(inc0) + (eps / geo.N) * abs_sum
    assert_close(inc, ref, atol=sum_atol(geo.N, abs_ref), what=f"{case} local increment")
    over = np.full_like(inc0, np.nan)
    _core.local_bprop_weights(x, dy, over, *geo.args(), 1.0 / geo.N, **geo.kw())
    assert_close(over, ref_sum / geo.N, atol=sum_atol(geo.N, abs_sum / geo.N), what=f"{case} local gradient")


def test_partial_sum_block_structure_exact():
    """P = 1 with one case: each block is one product x*dy, so the engine's result is
    fixed: T_b = fl(scale * fl(x*dy)), summed in block order (engine.md §3.4, §7.2)."""
    geo = Geo(C=2, S=7, K=3, p=1, st=2, G=1, F=3, N=1)
    rng = rng_for("partial sum exact")
    x, dy = f32(rng, geo.C * geo.S * geo.S, 1), f32(rng, geo.F * geo.M, 1)
    scale = np.float32(0.3)
    X = padded(x, geo).astype(np.float32)
    dY = dy.reshape(geo.F, geo.M)
    acc = None
    for m, rows, cols in windows(geo):   # blocks of one module, raster order
        patch = X[:, rows, cols, 0].reshape(-1, 1)                       # (Cg*K*K, 1)
        t = scale * (patch * dY[:, m][None, :])                          # float32 product, then scale
        acc = t if acc is None else acc + t
    g = engine_weight_grad(x, dy, geo, 1, float(scale))
    assert_close(g, acc, **TOL["exact"], what="P=1 blocks")
    # P = 0 (one block, scaled once) differs only in rounding.
    g0 = engine_weight_grad(x, dy, geo, 0, float(scale))
    ref = float(scale) * ref_weight_sum(x, dy, geo)
    assert_close(g0, ref, atol=sum_atol(geo.M, np.abs(float(scale) * ref_weight_sum(np.abs(x), np.abs(dy), geo))),
                 what="P=0")


def test_partial_sum_changes_rounding_only():
    geo = Geo(C=4, S=9, K=3, p=1, st=1, G=2, F=4, N=7)   # M = 81 modules
    rng = rng_for("partial sum")
    x, dy = f32(rng, geo.C * geo.S * geo.S, geo.N), f32(rng, geo.F * geo.M, geo.N)
    scale = 1.0 / geo.N
    ref = scale * ref_weight_sum(x, dy, geo)
    atol = sum_atol(geo.M * geo.N, scale * ref_weight_sum(np.abs(x), np.abs(dy), geo))
    results = {}
    for P in [0, 1, 3, 9, 27, 81]:
        results[P] = engine_weight_grad(x, dy, geo, P, scale)
        assert_close(results[P], ref, atol=atol, what=f"partialSum={P}")
    # P = M and P = 0 are both one block of all modules: the same computation.
    assert_close(results[81], results[0], **TOL["exact"], what="P=M vs P=0")
    for P in [1, 3, 9, 27]:
        assert_close(results[P], results[0], atol=2 * atol, what=f"P={P} vs P=0")


@pytest.mark.parametrize("chunk", [1, 2, 7])
def test_chunked_lowering(chunk):
    """Lowering a few modules at a time changes only the summation tree."""
    geo = CASES["groups2"]
    rng = rng_for(f"chunk {chunk}")
    x, w = f32(rng, geo.C * geo.S * geo.S, geo.N), f32(rng, geo.w_rows(False), geo.F)
    wl, dy = f32(rng, geo.w_rows(True), geo.F), f32(rng, geo.F * geo.M, geo.N)
    kw = dict(chunk_modules=chunk)
    for local, wt in [(False, w), (True, wl)]:
        y = np.full((geo.F * geo.M, geo.N), np.nan, np.float32)
        (_core.local_fprop if local else _core.conv_fprop)(x, wt, y, *geo.args(), **kw)
        assert_close(y, ref_fprop(x, wt, geo, local),
                     atol=sum_atol(geo.Cg * 9, ref_fprop(np.abs(x), np.abs(wt), geo, local)), what="chunked fprop")
        dx = np.full_like(x, np.nan)
        (_core.local_bprop_acts if local else _core.conv_bprop_acts)(dy, wt, dx, *geo.args(), **kw)
        assert_close(dx, ref_bprop_acts(dy, wt, geo, local),
                     atol=sum_atol(geo.F * 9 * geo.Cg, ref_bprop_acts(np.abs(dy), np.abs(wt), geo, local)),
                     what="chunked dx")
    for P in [0, 4, 8]:   # blocks of 4 or 8 modules cut by chunks of 1, 2 or 7
        g = engine_weight_grad(x, dy, geo, P, 0.2, **kw)
        assert_close(g, 0.2 * ref_weight_sum(x, dy, geo),
                     atol=sum_atol(geo.M * geo.N, 0.2 * ref_weight_sum(np.abs(x), np.abs(dy), geo)),
                     what=f"chunked weights P={P}")
    inc = np.full((geo.w_rows(True), geo.F), np.nan, np.float32)
    _core.local_bprop_weights(x, dy, inc, *geo.args(), 1.0, **kw)
    assert_close(inc, ref_weight_sum(x, dy, geo, True),
                 atol=sum_atol(geo.N, ref_weight_sum(np.abs(x), np.abs(dy), geo, True)), what="chunked local inc")


# -- bias gradients --------------------------------------------------------------------------
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "unshared"])
def test_bias_gradient(shared):
    geo = CASES["pad1_stride3_overhang"]
    rng = rng_for("bias grad")
    dy = f32(rng, geo.F * geo.M, geo.N)
    rows = geo.F if shared else geo.F * geo.M
    scale = 1.0 / geo.N
    gb = np.full((rows, 1), np.nan, np.float32)
    _core.conv_bprop_bias(dy, gb, shared, scale)
    ref = np.float32(scale) * ref_bias_sum(dy, geo, shared)
    assert_close(gb, ref, **TOL["bias"], what="bias gradient")
    old = f32(rng, rows, 1)
    gb = old.copy()
    _core.conv_bprop_bias(dy, gb, shared, scale, scale_targets=1.0)
    # old + T: one more float32 addition (half an ulp of the larger magnitude).
    assert_close(gb, old + ref, atol=U * float(np.max(np.abs(old) + np.abs(ref))), rtol=2.0 ** -22,
                 what="bias gradient accumulated")
    if not shared:
        gl = np.full((rows, 1), np.nan, np.float32)
        _core.local_bprop_bias(dy, gl, scale)
        assert_close(gl, ref, **TOL["bias"], what="local bias gradient")


# -- finite differences ----------------------------------------------------------------------
@pytest.mark.parametrize("local", [False, True], ids=["conv", "local"])
@pytest.mark.parametrize("case", ["pad2_stride4_overhang", "sparse_oversample2", "groups2"])
def test_gradients_match_finite_differences(case, local):
    """E = sum(R * (Y + b)); the engine's backward returns -dE/dX, -(1/N) dE/dW, -(1/N) dE/db (§1.1)."""
    geo, rng = CASES[case], rng_for(case + " fd")
    x, w = f32(rng, geo.C * geo.S * geo.S, geo.N), f32(rng, geo.w_rows(local), geo.F)
    shared = not local
    b = f32(rng, geo.F if shared else geo.F * geo.M, 1)
    R = f32(rng, geo.F * geo.M, geo.N)
    dy = -R                                               # δ = -dE/dY

    def energy(x64, w64, b64):
        y = ref_fprop(x64, w64, geo, local) + (np.repeat(b64, geo.M, axis=0) if shared else b64)
        return float(np.sum(R * y))

    x64, w64, b64, h = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1e-3

    def numeric(arr, which, picks):
        out = []
        for idx in picks:
            args_p, args_m = [x64, w64, b64], [x64, w64, b64]
            e = np.zeros_like(arr)
            e[idx] = h
            args_p[which], args_m[which] = arr + e, arr - e
            out.append((energy(*args_p) - energy(*args_m)) / (2 * h))
        return np.array(out)

    def picks(arr, k=8):
        flat = rng.choice(arr.size, size=min(k, arr.size), replace=False)
        return [np.unravel_index(i, arr.shape) for i in flat]

    dx = np.empty_like(x)
    (_core.local_bprop_acts if local else _core.conv_bprop_acts)(dy, w, dx, *geo.args(), **geo.kw())
    gw = np.empty_like(w)
    if local:
        _core.local_bprop_weights(x, dy, gw, *geo.args(), 1.0 / geo.N, **geo.kw())
    else:
        _core.conv_bprop_weights(x, dy, gw, *geo.args(), 0, 1.0 / geo.N, **geo.kw())
    gb = np.empty_like(b)
    _core.conv_bprop_bias(dy, gb, shared, 1.0 / geo.N)

    for name, arr, which, engine, factor in [("x", x64, 0, dx, 1.0), ("w", w64, 1, gw, geo.N),
                                             ("b", b64, 2, gb, geo.N)]:
        p = picks(arr)
        num = numeric(arr, which, p)
        got = np.array([engine[i] for i in p], np.float64) * factor
        assert_close(got, -num, atol=TOL["fd_rel"] * float(np.max(np.abs(num))), rtol=TOL["fd_rel"],
                     what=f"{case} d{name} vs finite differences")


# -- threads ---------------------------------------------------------------------------------
_THREAD_SCRIPT = r"""
import hashlib, numpy as np
from alexnet_replay import _core
rng = np.random.default_rng(5)
C, S, K, p, st, G, F, N = 16, 13, 3, 1, 1, 2, 32, 16
MX = _core.conv_modules(S, K, p, st); M = MX * MX
x = rng.standard_normal((C*S*S, N)).astype(np.float32)
w = rng.standard_normal((C//G*K*K, F)).astype(np.float32)
wl = rng.standard_normal((M*C//G*K*K, F)).astype(np.float32)
dy = rng.standard_normal((F*M, N)).astype(np.float32)
h = hashlib.sha256()
geo = (C, S, K, p, st, G, MX)
for fp, bp, ww in [(_core.conv_fprop, _core.conv_bprop_acts, w), (_core.local_fprop, _core.local_bprop_acts, wl)]:
    y = np.empty((F*M, N), np.float32); fp(x, ww, y, *geo); h.update(y.tobytes())
    dx = np.empty_like(x); bp(dy, ww, dx, *geo); h.update(dx.tobytes())
for P in (0, 13):
    g = np.empty_like(w); _core.conv_bprop_weights(x, dy, g, *geo, P, 1.0 / N); h.update(g.tobytes())
inc = np.empty_like(wl); _core.local_bprop_weights(x, dy, inc, *geo, 0.1); h.update(inc.tobytes())
gb = np.empty((F, 1), np.float32); _core.conv_bprop_bias(dy, gb, True, 1.0 / N); h.update(gb.tobytes())
print(h.hexdigest())
"""


def test_results_do_not_depend_on_thread_count():
    pkg_parent = os.path.dirname(os.path.dirname(alexnet_replay.__file__))
    digests = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
                   PYTHONPATH=os.pathsep.join([pkg_parent, os.environ.get("PYTHONPATH", "")]))
        out = subprocess.run([sys.executable, "-c", _THREAD_SCRIPT], env=env, capture_output=True, text=True,
                             check=True, timeout=120)
        digests.append(out.stdout.strip())
    assert len(digests[0]) == 64 and digests[0] == digests[1]


# -- argument checks -------------------------------------------------------------------------
def _base():
    geo = CASES["groups2"]
    rng = rng_for("checks")
    x, w = f32(rng, geo.C * geo.S * geo.S, geo.N), f32(rng, geo.w_rows(False), geo.F)
    y = np.empty((geo.F * geo.M, geo.N), np.float32)
    return geo, x, w, y


@pytest.mark.parametrize("change, name", [
    (dict(stride=0), "stride"),
    (dict(padding=-1), "padding"),
    (dict(groups=0), "groups"),
    (dict(groups=3), "groups"),          # channels 4 not divisible by 3 (and filters 6 are)
    (dict(filter_size=10), "filter_size"),   # K > S + 2p = 9
    (dict(modules_x=3), "modules_x"),
    (dict(channels=6), "x"),             # rows no longer C*S*S
])
def test_geometry_errors_name_the_argument(change, name):
    geo, x, w, y = _base()
    args = dict(channels=geo.C, img_size=geo.S, filter_size=geo.K, padding=geo.p, stride=geo.st, groups=geo.G,
                modules_x=geo.MX)
    args.update(change)
    with pytest.raises(ValueError, match=rf"^{name}:"):
        _core.conv_fprop(x, w, y, **args)


def test_array_and_table_errors_name_the_argument():
    geo, x, w, y = _base()
    a = geo.args()
    with pytest.raises(ValueError, match=r"^filters: .*not divisible by groups"):
        _core.conv_fprop(x, np.ascontiguousarray(w[:, :5]), y, *a)
    with pytest.raises(ValueError, match=r"^conns: entry 1 = 4 is not a channel"):
        _core.conv_fprop(x, w, y, *a, conns=np.array([0, 4, 1, 2], np.int32))
    with pytest.raises(ValueError, match=r"^conns: expected dtype int32"):
        _core.conv_fprop(x, w, y, *a, conns=np.array([0, 1, 2, 3], np.int64))
    with pytest.raises(ValueError, match=r"^conns: length 3"):
        _core.conv_fprop(x, w, y, *a, conns=np.array([0, 1, 2], np.int32))
    with pytest.raises(ValueError, match=r"^w: expected shape"):   # 4 filter channels per group: 36 rows
        _core.conv_fprop(x, w, y, *a, conns=np.arange(8, dtype=np.int32) % 4)
    with pytest.raises(ValueError, match=r"^x: expected dtype float32"):
        _core.conv_fprop(x.astype(np.float64), w, y, *a)
    with pytest.raises(ValueError, match=r"^out: expected shape"):
        _core.conv_fprop(x, w, y[:-1], *a)
    with pytest.raises(ValueError, match=r"^out: shares memory with x"):
        big = np.zeros((geo.C * geo.S * geo.S, geo.N), np.float32)
        _core.conv_fprop(big, w, big[: geo.F * geo.M], *a)
    dy = np.zeros_like(y)
    with pytest.raises(ValueError, match=r"^partial_sum: must be 0 or divide the 16 modules"):
        _core.conv_bprop_weights(x, dy, np.empty_like(w), *a, 3, 0.2)
    with pytest.raises(ValueError, match=r"^w: expected shape"):   # a conv matrix given to local
        _core.local_fprop(x, w, y, *a)
    with pytest.raises(ValueError, match=r"^b: .*shared biases do not divide"):
        _core.conv_add_bias(y, np.zeros((5, 1), np.float32), shared=True)
    with pytest.raises(ValueError, match=r"^gb: unshared biases need one per row"):
        _core.conv_bprop_bias(dy, np.zeros((geo.F, 1), np.float32), False, 0.2)
    with pytest.raises(ValueError, match=r"^filter_size:"):
        _core.conv_modules(5, 8, 1, 1)
