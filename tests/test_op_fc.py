"""fc (engine.md §3.2), the update rule (§4.2), constraints and schedules (§4.3).

References are plain numpy written from the spec. Tolerances:
* products through the BLAS sum in the library's order, so they are compared
  with a float64 reference at rtol 2e-6 plus atol 1e-6 x the sum of |terms|
  (a few float32 roundings of a dot product of that magnitude);
* element-wise update arithmetic is compared bit for bit against float32
  numpy doing the same operations in the same order (§7.3: feasible).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from alexnet_replay import _core
from alexnet_replay.testing import assert_close

RNG = np.random.default_rng(20121203)


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def dot_tolerance(a64, b64):
    """atol for a float32 product: 1e-6 x sum of |terms| per output element."""
    return 1e-6 * float((np.abs(a64) @ np.abs(b64)).max())


# -- fc ----------------------------------------------------------------------
def test_fc_forward_two_inputs_with_bias():
    n = 7
    x0, x1 = f32(13, n), f32(5, n)
    w0, w1 = f32(13, 11), f32(5, 11)          # the release's (Din, Dout) matrices
    b = f32(11)
    y = np.full((11, n), np.nan, np.float32)  # overwritten without being read
    _core.fc_fprop(x0, np.ascontiguousarray(w0.T), y, 0.0)
    _core.fc_add_bias(b, y)
    _core.fc_fprop(x1, np.ascontiguousarray(w1.T), y, 1.0)
    ref = w0.T.astype(np.float64) @ x0 + b[:, None] + w1.T.astype(np.float64) @ x1
    atol = dot_tolerance(w0.T.astype(np.float64), x0) + dot_tolerance(w1.T.astype(np.float64), x1)
    assert_close(y, ref, atol=atol, rtol=2e-6, what="fc forward")


def test_fc_backward_to_input_accumulates():
    dy, w = f32(11, 5), f32(13, 11)
    dx = f32(13, 5)
    before = dx.astype(np.float64)
    _core.fc_bprop_acts(dy, np.ascontiguousarray(w.T), dx, 1.0)
    ref = before + w.astype(np.float64) @ dy
    assert_close(dx, ref, atol=dot_tolerance(w.astype(np.float64), dy), rtol=2e-6, what="fc dx")


def test_fc_gradients_match_finite_differences():
    """E = sum(R * Y); the engine's backward gives -dE/dX and -(1/N) dE/dW (§1.1)."""
    n = 5
    x, w, r = f32(9, n), f32(9, 4), f32(4, n)
    dx = np.empty_like(x)
    _core.fc_bprop_acts(-r, np.ascontiguousarray(w.T), dx, 0.0)
    inc_t = np.zeros((4, 9), np.float32)
    _core.fc_bprop_weights(x, -r, inc_t, 1.0 / n, 0.0)   # eps = 1: inc = G
    gb = np.empty(4, np.float32)
    _core.fc_bprop_bias(-r, gb, 1.0 / n, 0.0)

    def energy(x64, w64, b64):
        return float(np.sum(r * (w64.T @ x64 + b64[:, None])))

    x64, w64, b64, h = x.astype(np.float64), w.astype(np.float64), np.zeros(4), 1e-6
    num_dx = np.zeros_like(x64)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x64)
        e[idx] = h
        num_dx[idx] = (energy(x64 + e, w64, b64) - energy(x64 - e, w64, b64)) / (2 * h)
    num_dw = np.zeros_like(w64)
    for idx in np.ndindex(*w.shape):
        e = np.zeros_like(w64)
        e[idx] = h
        num_dw[idx] = (energy(x64, w64 + e, b64) - energy(x64, w64 - e, b64)) / (2 * h)
    num_db = np.array([(energy(x64, w64, b64 + h * np.eye(4)[i]) - energy(x64, w64, b64 - h * np.eye(4)[i]))
                       / (2 * h) for i in range(4)])
    assert_close(dx, -num_dx, atol=1e-5, rtol=1e-5, what="dx vs finite differences")
    assert_close(inc_t.T, -num_dw / n, atol=1e-5, rtol=1e-5, what="G vs finite differences")
    assert_close(gb, -num_db / n, atol=1e-5, rtol=1e-5, what="bias gradient vs finite differences")


def test_fc_increment_folds_momentum_into_the_product():
    """inc <- mom*inc + (eps/N) dY X^T in one GEMM (beta = mom, alpha = eps/N)."""
    n, eps, mom = 7, np.float32(0.01), np.float32(0.9)
    x, dy, inc_t = f32(6, n), f32(3, n), f32(3, 6)
    ref = mom * inc_t.astype(np.float64) + (eps / n) * (dy.astype(np.float64) @ x.T)
    _core.fc_bprop_weights(x, dy, inc_t, float(eps / n), float(mom))
    assert_close(inc_t, ref, atol=1e-7, rtol=2e-6, what="fc increment")


def test_fc_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="wt: expected shape"):
        _core.fc_fprop(f32(5, 3), f32(4, 6), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="x: expected dtype float32"):
        _core.fc_fprop(np.zeros((5, 3)), f32(4, 5), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="scale_targets"):
        _core.fc_fprop(f32(5, 3), f32(4, 5), np.zeros((4, 3), np.float32), 0.5)


# -- the update rule -----------------------------------------------------------
def reference_step(w, inc, grad, eps, mom, wc):
    """§4.2 useGrad path as separate float32 element-wise operations."""
    eps, mom = np.float32(eps), np.float32(mom)
    inc = mom * inc + eps * grad
    if wc > 0:
        inc = inc + (np.float32(-wc) * eps) * w
    return w + inc, inc


def test_three_update_steps_with_momentum_decay_and_a_rate_change_are_bit_exact():
    w, inc = f32(7, 13, scale=0.1), np.zeros((7, 13), np.float32)
    ref_w, ref_inc = w.copy(), inc.copy()
    for step, eps in enumerate([0.01, 0.01, 0.001]):   # the rate drops before step 3
        grad = f32(7, 13)
        _core.update_increment(inc.reshape(-1), grad.reshape(-1), eps, 0.9)
        _core.update_decay_and_step(w.reshape(-1), inc.reshape(-1), eps, 0.0005)
        ref_w, ref_inc = reference_step(ref_w, ref_inc, grad, eps, 0.9, 0.0005)
        assert_close(inc, ref_inc, what=f"increment after step {step + 1}")
        assert_close(w, ref_w, what=f"weights after step {step + 1}")


def test_no_decay_when_wc_is_zero():
    w, inc = f32(10), f32(10)
    expected_w = w + inc
    _core.update_decay_and_step(w, inc.copy(), 0.5, 0.0)
    assert_close(w, expected_w, what="w + inc")


# -- constraints ---------------------------------------------------------------
def test_max_norm_clips_columns_and_rows():
    w = f32(6, 4)
    w[:, 1] *= 10
    bound = 2.5
    col = w.copy()
    _core.constrain_max_norm(col, bound, True)
    norms = np.linalg.norm(w.astype(np.float64), axis=0)
    ref = w * np.where(norms > bound, bound / norms, 1.0)[None, :]
    assert_close(col, ref, rtol=1e-6, what="column max-norm")
    assert (np.linalg.norm(col, axis=0) <= bound * (1 + 1e-6)).all()
    row = w.copy()
    _core.constrain_max_norm(row, bound, False)
    rnorms = np.linalg.norm(w.astype(np.float64), axis=1)
    assert_close(row, w * np.where(rnorms > bound, bound / rnorms, 1.0)[:, None], rtol=1e-6, what="row max-norm")


def test_filter_spread_as_written():
    """a = sqrt(sum (w - mean)^2) / length, not a standard deviation (engine.md §13 item 11)."""
    length, filters = 27, 5
    w = f32(length, filters)
    w[:, 0] *= 0.001          # below the minimum: scaled up
    w[:, 3] *= 100            # above the maximum: scaled down
    lo, hi = 0.05, 0.5
    got = w.copy()
    _core.constrain_filter_spread(got, lo, hi)
    w64 = w.astype(np.float64)
    a = np.sqrt(((w64 - w64.mean(axis=0)) ** 2).sum(axis=0)) / length
    factor = np.where(a < lo, lo / a, np.where(a > hi, hi / a, 1.0))
    assert factor[0] > 1 and factor[3] < 1 and (factor[[1, 2, 4]] == 1).all()
    assert_close(got, w64 * factor, rtol=1e-5, what="filter spread")


# -- schedules -----------------------------------------------------------------
def test_dexp_matches_the_worked_example():
    """driver.md §B.3: eps 0.01, tgtFactor 250, 4 steps -> 0.01, 0.0015874, 0.00025198, 0.00004."""
    levels = [0.01, 0.01 * 250 ** (-1 / 3), 0.01 * 250 ** (-2 / 3), 0.01 / 250]
    assert [round(v, 8) for v in levels] == [0.01, 0.0015874, 0.00025198, 0.00004]
    for p, level in [(0.0, 0), (0.1, 0), (0.25, 0), (0.26, 1), (0.5, 1), (0.51, 2), (0.75, 2), (0.76, 3), (1.0, 3)]:
        got = _core.schedule_rate("dexp", 0.01, p, tgt_factor=250, num_steps=4)
        assert math.isclose(got, levels[level], rel_tol=1e-12), (p, got, levels[level])


@pytest.mark.parametrize("p", [0.0, 0.13, 0.5, 0.77, 1.0, 1.5, -0.2])
def test_default_linear_exp(p):
    base, factor = 0.02, 100.0
    q = min(max(p, 0.0), 1.0)
    assert _core.schedule_rate("default", base, p) == base
    assert math.isclose(_core.schedule_rate("linear", base, p, tgt_factor=factor),
                        base * (1 - q) + base / factor * q, rel_tol=1e-12)
    assert math.isclose(_core.schedule_rate("exp", base, p, tgt_factor=factor),
                        base * (1 / factor) ** q, rel_tol=1e-12)


def test_exp_of_a_zero_rate_is_zero():
    assert _core.schedule_rate("exp", 0.0, 0.5, tgt_factor=10) == 0.0


def test_jdexp_blends_in_the_second_half_of_levels_between_0_2_and_0_9():
    base, f, k = 0.01, 1000.0, 4
    r = [base * (1 / f) ** (i / (k - 1)) for i in range(k - 1)] + [base / f]
    cases = {
        0.10: r[0],                       # level 0: never blended
        0.30: r[1],                       # level 1, first half (0.25, 0.375]
        0.45: math.sqrt(r[1] * r[0]),     # level 1, second half
        0.55: r[2],
        0.70: math.sqrt(r[2] * r[1]),
        0.80: r[3],                       # level 3 first half (0.75, 0.875]
        0.88: math.sqrt(r[3] * r[2]),
        0.95: r[3],                       # past 0.9: not blended
    }
    for p, want in cases.items():
        assert math.isclose(_core.schedule_rate("jdexp", base, p, tgt_factor=f, num_steps=k), want,
                            rel_tol=1e-12), p


def test_noise_multiplies_by_one_plus_abs_z_times_stdev():
    got = _core.schedule_rate("linear", 0.01, 0.0, tgt_factor=1.0, noise_stdev=0.5, z=-1.5)
    assert math.isclose(got, 0.01 * (1 + 1.5 * 0.5), rel_tol=1e-15)


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="type: unknown schedule"):
        _core.schedule_rate("cosine", 0.1, 0.5)
    with pytest.raises(ValueError, match="num_steps"):
        _core.schedule_rate("dexp", 0.1, 0.5, tgt_factor=10, num_steps=1)
