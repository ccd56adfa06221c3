"""neuron (engine.md §3.11), softmax (§3.12), hs dropout (§3.16) and the cost
layers logreg, crossent, crossent2, rflickr, sum2, gsum2 (§3.23–§3.28).

References are plain numpy written from the spec tables. Sign convention
(§1.1): every backward returns delta = -dE/d(input), E the summed objective.

Tolerances (atol + rtol*|ref|) sit in the TOL table below, each with its
reason; the softmax ones depend on the class count (softmax_tol).
"""

from __future__ import annotations

import numpy as np
import pytest

from alexnet_replay import _core
from alexnet_replay.original.layers import parse_neuron
from alexnet_replay.testing import assert_close, compare

RNG = np.random.default_rng(20120930)
F32_EPS = float(np.finfo(np.float32).eps)  # 2^-23

TOL = {
    # Only +, -, *, /, sqrt and comparisons, evaluated in the engine's order on
    # float32: IEEE makes each result unique, so bit-exact (§7.3 "feasible").
    "exact": (0.0, 0.0),
    # One std::exp or std::log (glibc, <= 1 ulp) and a few roundings, compared
    # with a float64 reference: ~8 ulp relative, plus an absolute floor for
    # results near 0 that come out of a cancellation such as 2/(1+e) - 1 or
    # x - a*tanh(x/a) (error ~ a few ulp of the operands' scale, <= 6).
    "transcendental": (1e-6, 1e-6),
    # Reported costs: float32 terms (one std::log each) summed in float64.
    "cost_log": (1e-6, 1e-6),
    # float32 terms without transcendental functions, summed in float64 in
    # storage order; the reference sums the same float32 terms in float64 with
    # numpy's pairwise order, so only the float64 summation order differs.
    "cost_f64_sum": (0.0, 1e-12),
    # Central differences in float64 (h = 1e-5: truncation ~1e-10) against the
    # engine's float32 gradient, whose own error is a few float32 ulp of the
    # gradient's magnitude (values here are O(1)).
    "finite_diff": (2e-6, 2e-5),
}


def f32(*shape, scale=1.0, low=None, high=None):
    if low is not None:
        return RNG.uniform(low, high, shape).astype(np.float32)
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def away_from(x, points, gap=0.1):
    """Push the values of x that lie within `gap` of any of `points` away from it."""
    x = x.astype(np.float64)
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, gap, -gap) * 1.5
    return x.astype(np.float32)


def fd_elementwise(f, x, r, h=1e-5):
    """d/dx of sum(r * f(x)) for an element-wise f, central difference in float64."""
    x = x.astype(np.float64)
    return r.astype(np.float64) * (f(x + h) - f(x - h)) / (2 * h)


def fd_general(energy, x, h=1e-5):
    """dE/dx of a scalar float64 function of a (small) array, element by element."""
    x = x.astype(np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (energy(xp) - energy(xm)) / (2 * h)
    return g


def close(actual, expected, kind, what, scale=1.0):
    atol, rtol = TOL[kind]
    assert_close(actual, expected, atol=atol * scale, rtol=rtol, what=what)


# -- neuron reference (engine.md §3.11 table) ----------------------------------
# (name, params) for each of the twelve types; parameters are typical values.
NEURONS = [
    ("ident", ()), ("relu", ()), ("nrelu", ()), ("brelu", (1.5,)), ("softrelu", ()), ("drelu", (0.75,)),
    ("abs", ()), ("logistic", ()), ("tanh", (1.7159, 0.6667)), ("square", ()), ("sqrt", ()),
    ("linear", (0.7, -0.3)),
]
EXACT_NEURONS = {"ident", "relu", "nrelu", "brelu", "abs", "square", "sqrt", "linear"}


def ref_forward64(kind, p, x, eps=None):
    x = x.astype(np.float64)
    if kind == "ident":
        return x
    if kind == "relu":
        return np.where(x < 0, 0.0, x)
    if kind == "nrelu":
        r = np.where(x < 0, 0.0, x)
        v = r + r * eps
        return np.where(v < 0, 0.0, v)
    if kind == "brelu":
        return np.minimum(p[0], np.maximum(0.0, x))
    if kind == "softrelu":
        return np.where(x > 4, x, np.log1p(np.exp(np.minimum(x, 4.0))))
    if kind == "drelu":
        return x - p[0] * np.tanh(x / p[0])
    if kind == "abs":
        return np.abs(x)
    if kind == "logistic":
        return 1.0 / (1.0 + np.exp(-x))
    if kind == "tanh":
        return p[0] * np.tanh(p[1] * x)
    if kind == "square":
        return x * x
    if kind == "sqrt":
        return np.sqrt(x)
    if kind == "linear":
        return p[0] * x + p[1]
    raise AssertionError(kind)


def ref_forward32(kind, p, x, eps=None):
    """The bit-exact types, evaluated in float32 in the order the spec writes them."""
    f = np.float32
    zero = f(0)
    if kind == "ident":
        return x.copy()
    if kind == "relu":
        return np.where(x < 0, zero, x)
    if kind == "nrelu":
        r = np.where(x < 0, zero, x)
        v = r + r * eps
        return np.where(v < 0, zero, v)
    if kind == "brelu":
        return np.minimum(f(p[0]), np.maximum(zero, x))
    if kind == "abs":
        return np.abs(x)
    if kind == "square":
        return x * x
    if kind == "sqrt":
        return np.sqrt(x)
    if kind == "linear":
        return f(p[0]) * x + f(p[1])
    raise AssertionError(kind)


def ref_factor(kind, p, x, y, dtype):
    """The backward factor f' of the table, from the input x or the output y ("uses")."""
    x = x.astype(dtype)
    y = y.astype(dtype)
    one, zero = dtype(1), dtype(0)
    a = dtype(p[0]) if p else None
    if kind == "ident":
        return np.ones_like(x)
    if kind in ("relu", "nrelu"):
        return np.where(y > 0, one, zero)
    if kind == "brelu":
        return np.where((y > 0) & (y < a), one, zero)
    if kind == "softrelu":
        e = np.exp(np.minimum(x, 4))
        return np.where(x > 4, one, e / (1 + e))
    if kind == "drelu":
        return np.tanh(x / a) ** 2
    if kind == "abs":
        return np.where(x > 0, one, -one)
    if kind == "logistic":
        return y * (1 - y)
    if kind == "tanh":
        return dtype(p[1]) * (a - y * y / a)
    if kind == "square":
        return dtype(2) * x
    if kind == "sqrt":
        return one / (dtype(2) * y)
    if kind == "linear":
        return np.full_like(x, a)
    raise AssertionError(kind)


def neuron_input(kind, p, n=7):
    """(4, n) inputs whose first row holds the interesting values of the type."""
    special = {
        "relu": [-2.0, -0.5, 0.0, 0.5, 3.0],
        "nrelu": [-2.0, 0.0, 0.5, 1.0, 3.0],
        "brelu": [-1.0, 0.0, 0.75, 1.5, 2.5],
        "softrelu": [-20.0, 0.0, 3.99, 4.0, 4.01],
        "drelu": [-2.0, -0.01, 0.0, 0.01, 3.0],
        "abs": [-2.0, -0.5, 0.0, 0.5, 3.0],
        "logistic": [-20.0, -1.0, 0.0, 1.0, 20.0],
        "tanh": [-5.0, -0.5, 0.0, 0.01, 5.0],
        "sqrt": [0.0625, 0.5, 1.0, 2.0, 9.0],
    }.get(kind, [-3.0, -0.5, 0.0, 0.5, 2.0])
    x = f32(4, n, scale=2.0)
    if kind == "sqrt":
        x = f32(4, n, low=0.05, high=5.0)
    if kind == "softrelu":
        x[1] = f32(n, low=2.0, high=7.0)  # both sides of 4
    x[0, :5] = special
    return x


def run_forward(kind, p, x, eps=None):
    y = np.full_like(x, np.nan)
    _core.neuron_fprop(x, y, kind, p, eps if kind == "nrelu" else None)
    return y


def run_backward(kind, p, x, y, dy, scale_targets=0.0, dx=None):
    if dx is None:
        dx = np.full_like(x, np.nan)
    _core.neuron_bprop(x, y, dy, dx, kind, p, scale_targets)
    return dx


@pytest.mark.parametrize("kind,p", NEURONS, ids=[k for k, _ in NEURONS])
def test_neuron_forward_golden(kind, p):
    x = neuron_input(kind, p)
    eps = f32(*x.shape)
    y = run_forward(kind, p, x, eps)
    if kind in EXACT_NEURONS:
        close(y, ref_forward32(kind, p, x, eps), "exact", f"{kind} forward")
    else:
        close(y, ref_forward64(kind, p, x, eps), "transcendental", f"{kind} forward")


@pytest.mark.parametrize("kind,p", NEURONS, ids=[k for k, _ in NEURONS])
def test_neuron_backward_golden(kind, p):
    x = neuron_input(kind, p)
    eps = f32(*x.shape)
    y = run_forward(kind, p, x, eps)
    dy = f32(*x.shape)
    dx = run_backward(kind, p, x, y, dy)
    if kind in EXACT_NEURONS:  # dY * f', both in float32
        close(dx, dy * ref_factor(kind, p, x, y, np.float32), "exact", f"{kind} backward")
    else:
        ref = dy.astype(np.float64) * ref_factor(kind, p, x, y, np.float64)
        close(dx, ref, "transcendental", f"{kind} backward", scale=float(np.abs(dy).max()))


def test_neuron_special_points():
    """The kinks, spelled out: relu and brelu give 0 at their edges, abs gives -1 at 0."""
    dy = np.ones((1, 5), np.float32)
    x = np.array([[-1.0, 0.0, 0.75, 1.5, 2.0]], np.float32)
    y = run_forward("relu", (), x)
    assert y.tolist() == [[0.0, 0.0, 0.75, 1.5, 2.0]]
    assert run_backward("relu", (), x, y, dy).tolist() == [[0.0, 0.0, 1.0, 1.0, 1.0]]
    y = run_forward("brelu", (1.5,), x)
    assert y.tolist() == [[0.0, 0.0, 0.75, 1.5, 1.5]]
    assert run_backward("brelu", (1.5,), x, y, dy).tolist() == [[0.0, 0.0, 1.0, 0.0, 0.0]]
    y = run_forward("abs", (), x)
    assert y.tolist() == [[1.0, 0.0, 0.75, 1.5, 2.0]]
    assert run_backward("abs", (), x, y, dy).tolist() == [[-1.0, -1.0, 1.0, 1.0, 1.0]]
    # softrelu switches formula strictly above 4: at 4 itself it is log(1 + e^4).
    x = np.array([[3.99, 4.0, 4.01]], np.float32)
    y = run_forward("softrelu", (), x)
    assert abs(float(y[0, 1]) - np.log1p(np.exp(4.0))) < 1e-5
    assert y[0, 2] == np.float32(4.01)
    g = run_backward("softrelu", (), x, y, np.ones_like(x))
    assert abs(float(g[0, 1]) - np.exp(4.0) / (1 + np.exp(4.0))) < 1e-6 and g[0, 2] == 1.0


def test_nrelu_noise_is_used_and_scales_with_the_activation():
    """§3.11/§13 item 7: y = relu(r + r*eps), so eps = -1 silences a unit and eps = 1 doubles it."""
    x = np.array([[2.0, 2.0, 2.0, -1.0, 0.0]], np.float32)
    eps = np.array([[-1.0, 1.0, -3.0, 5.0, 5.0]], np.float32)
    y = np.empty_like(x)
    _core.neuron_fprop(x, y, "nrelu", (), eps)
    assert y.tolist() == [[0.0, 4.0, 0.0, 0.0, 0.0]]
    g = run_backward("nrelu", (), x, y, np.full_like(x, 3.0))
    assert g.tolist() == [[0.0, 3.0, 0.0, 0.0, 0.0]]  # [out > 0], the noise factor (1+eps) is not applied


@pytest.mark.parametrize("kind,p", NEURONS, ids=[k for k, _ in NEURONS])
def test_neuron_backward_reads_what_the_table_says(kind, p):
    """The array the table does not name may hold NaN without affecting the result."""
    uses = _core.NEURON_TYPES[kind][2]
    x = neuron_input(kind, p)
    eps = f32(*x.shape)
    y = run_forward(kind, p, x, eps)
    dy = f32(*x.shape)
    ref = run_backward(kind, p, x, y, dy)
    nan = np.full_like(x, np.nan)
    got = run_backward(kind, p, x if uses == "input" else nan, y if uses == "output" else nan, dy)
    close(got, ref, "exact", f"{kind} backward with the unused array NaN")


DIFFERENTIABLE = [(k, p) for k, p in NEURONS if k != "nrelu"]  # nrelu: see test_nrelu_noise...


@pytest.mark.parametrize("kind,p", DIFFERENTIABLE, ids=[k for k, _ in DIFFERENTIABLE])
def test_neuron_gradient_matches_finite_differences(kind, p):
    """E = -sum(R * f(x)) so the engine's dX from dY = R must be d/dx sum(R * f(x))."""
    n = 5
    if kind == "sqrt":
        x = f32(3, n, low=0.2, high=4.0)
    else:
        x = f32(3, n, scale=2.0)
        x[0] = [4.5, 6.0, -1.0, 3.5, 2.0] if kind == "softrelu" else x[0]
        kinks = {"relu": [0.0], "abs": [0.0], "brelu": [0.0, p[0] if p else 0.0], "softrelu": [4.0]}
        x = away_from(x, kinks.get(kind, []))
    r = f32(3, n)
    y = run_forward(kind, p, x)
    dx = run_backward(kind, p, x, y, r)
    ref = fd_elementwise(lambda v: ref_forward64(kind, p, v), x, r)
    close(dx, ref, "finite_diff", f"{kind} gradient vs finite differences")


@pytest.mark.parametrize("kind,p", [("relu", ()), ("linear", (0.7, -0.3)), ("tanh", (1.7159, 0.6667))])
def test_neuron_large_arrays_take_the_threaded_path(kind, p):
    """301 x 131 elements exceed the kernels' threading threshold; each element must not change."""
    x = f32(301, 131, scale=2.0)
    y = run_forward(kind, p, x)
    dy = f32(*x.shape)
    dx = run_backward(kind, p, x, y, dy)
    for rows in (slice(0, 1), slice(150, 151), slice(300, 301)):  # single rows: the serial path
        xs = np.ascontiguousarray(x[rows])
        ys = run_forward(kind, p, xs)
        close(y[rows], ys, "exact", f"{kind} forward, threaded vs serial")
        close(dx[rows], run_backward(kind, p, xs, ys, np.ascontiguousarray(dy[rows])), "exact",
              f"{kind} backward, threaded vs serial")
    if kind in EXACT_NEURONS:
        close(y, ref_forward32(kind, p, x), "exact", f"{kind} forward, large")


def test_neuron_params_from_the_cfg_reader():
    """(name, numbers) straight from parse_neuron drive the binding."""
    name, numbers = parse_neuron("tanh[1.7159,0.6667]", ValueError)
    x = f32(3, 5)
    y = run_forward(name, numbers, x)
    close(y, 1.7159 * np.tanh(0.6667 * x.astype(np.float64)), "transcendental", "tanh via parse_neuron")
    assert set(_core.NEURON_TYPES) == {k for k, _ in NEURONS}
    ids = sorted(v[0] for v in _core.NEURON_TYPES.values())
    assert ids == list(range(12))
    for k, p in NEURONS:
        assert _core.NEURON_TYPES[k][1] == len(p)


def test_neuron_in_place():
    x = neuron_input("relu", ())
    ref = ref_forward32("relu", (), x)
    _core.neuron_fprop(x, x, "relu")
    close(x, ref, "exact", "relu in place")


def test_neuron_argument_errors():
    x = f32(3, 5)
    y = np.empty_like(x)
    with pytest.raises(ValueError, match="kind: unknown neuron 'abstanh'"):
        _core.neuron_fprop(x, y, "abstanh", (1.0, 1.0))
    with pytest.raises(ValueError, match="params: neuron 'tanh' takes 2"):
        _core.neuron_fprop(x, y, "tanh", (1.0,))
    with pytest.raises(ValueError, match="params: neuron 'brelu' needs numbers"):
        _core.neuron_fprop(x, y, "brelu", ("a",))
    with pytest.raises(ValueError, match="params: neuron 'drelu' needs a != 0"):
        _core.neuron_fprop(x, y, "drelu", (0.0,))
    with pytest.raises(ValueError, match="noise: nrelu needs"):
        _core.neuron_fprop(x, y, "nrelu")
    with pytest.raises(ValueError, match="noise: only nrelu"):
        _core.neuron_fprop(x, y, "relu", (), np.zeros_like(x))
    with pytest.raises(ValueError, match="noise: expected shape"):
        _core.neuron_fprop(x, y, "nrelu", (), np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="dx: expected shape"):
        _core.neuron_bprop(x, y, x, np.empty((5, 3), np.float32), "relu")
    with pytest.raises(ValueError, match="y: expected dtype float32"):
        _core.neuron_fprop(x, y.astype(np.float64), "relu")


# -- softmax (§3.12) -----------------------------------------------------------
def ref_softmax64(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=0))
    return e / e.sum(axis=0)


def softmax(x):
    y = np.full_like(x, np.nan)
    _core.softmax_fprop(x, y)
    return y


def softmax_tol(classes):
    """exp (<= 1 ulp), a sequential sum of `classes` positive terms (<= classes-1 roundings), one
    division; atol: probabilities below float32's normal range are subnormal or 0."""
    return float(np.finfo(np.float32).tiny), (classes + 3) * F32_EPS


@pytest.mark.parametrize("classes,n", [(13, 5), (7, 7), (1, 3), (10, 130)])
def test_softmax_forward(classes, n):
    x = f32(classes, n, scale=3.0)
    y = softmax(x)
    atol, rtol = softmax_tol(classes)
    assert_close(y, ref_softmax64(x), atol=atol, rtol=rtol, what="softmax forward")


def test_softmax_is_shift_safe_and_ties_exactly():
    """The max is subtracted first (no overflow at 1e4), and equal logits give equal probabilities."""
    x = np.array([[1e4, 2.0], [1e4, 2.0], [1e4 - 1, -1.0]], np.float32)
    y = softmax(x)
    assert y[0, 0] == y[1, 0] and y[0, 1] == y[1, 1]
    assert_close(y, ref_softmax64(x), *softmax_tol(3), what="softmax with large logits")


def test_softmax_subtracts_the_max():
    """Logits 160 apart: exp(x - max) stays finite; subtracting anything smaller would overflow."""
    x = np.array([[80.0, -3.0], [-80.0, 3.0], [0.0, 0.0]], np.float32)
    y = softmax(x)
    assert_close(y, ref_softmax64(x), *softmax_tol(3), what="softmax over a wide range")


def test_softmax_blocks_do_not_change_results():
    """Cases are processed in blocks (and threads): each column must equal its solo computation."""
    x = f32(13, 4099, scale=2.0)
    y = softmax(x)
    for n in (0, 63, 64, 65, 2048, 4098):
        solo = softmax(np.ascontiguousarray(x[:, n:n + 1]))
        close(y[:, n:n + 1], solo, "exact", f"softmax column {n}")


def test_softmax_backward_golden_and_finite_differences():
    classes, n = 7, 5
    x = f32(classes, n, scale=2.0)
    y = softmax(x)
    r = f32(classes, n)
    dx = np.full_like(x, np.nan)
    _core.softmax_bprop(y, r, dx, 0.0)
    y64, r64 = y.astype(np.float64), r.astype(np.float64)
    ref = np.empty_like(y64)  # the spec's literal form: y_i * sum_j dY_j (1[i=j] - y_j)
    for i in range(classes):
        ref[i] = y64[i] * sum(r64[j] * ((i == j) - y64[j]) for j in range(classes))
    # float32 sum of 7 products of O(1) terms, then a product: a few ulp of sum|dY_j y_j|
    assert_close(dx, ref, atol=8 * F32_EPS * float(np.abs(r).max()), rtol=4 * F32_EPS, what="softmax backward")
    # E = -sum(R * softmax(x)) -> dX = d/dx sum(R * softmax(x))
    fd = fd_general(lambda v: float((r64 * ref_softmax64(v)).sum()), x)
    close(dx, fd, "finite_diff", "softmax gradient vs finite differences")


# -- cost.logreg (§3.23) -------------------------------------------------------
def ref_logreg(labels, probs, k):
    """Per-case loops straight from §3.23; credits and sums in float64, case order."""
    d, n = probs.shape
    s_log = s1 = sk = 0.0
    for c in range(n):
        p = probs[:, c]
        lab = int(labels[0, c])
        s_log += float(np.log(np.float64(p[lab])))
        mx = p.max()
        if p[lab] == mx:
            s1 += 1.0 / int((p == mx).sum())
        b, e = int((p > p[lab]).sum()), int((p == p[lab]).sum())
        slots = k - b
        sk += 0.0 if slots <= 0 else (1.0 if e <= slots else slots / e)
    return -s_log, n - s1, n - sk


def labels_row(values):
    return np.array([values], np.float32)


def tie_probs():
    """13 classes, 7 cases; each column is a tie situation for top-1 / top-5 (labels below)."""
    base = np.linspace(0.01, 0.02, 13, dtype=np.float32)
    probs = np.tile(base[:, None], (1, 7)).astype(np.float32)
    # case 0: label 3 unique max                -> top1 1, top5 1
    probs[3, 0] = 0.5
    # case 1: labels 2 and 9 tie at max          -> top1 1/2, top5 1
    probs[[2, 9], 1] = 0.3
    # case 2: 2 above, label tied with 5 others (e = 6 > slots = 3) -> top1 0, top5 3/6
    probs[[0, 1], 2] = 0.4
    probs[[4, 5, 6, 7, 8, 10], 2] = 0.03
    # case 3: label 12 below every other class   -> top5 0 (slots <= 0)
    probs[[0, 1, 2, 3, 4], 3] = 0.2
    probs[12, 3] = 0.001
    # case 4: 2 above, e = 3 <= slots = 3          -> top5 1
    probs[[0, 1], 4] = 0.4
    probs[[5, 6, 7], 4] = 0.05
    # case 5: label tied max with two others      -> top1 1/3
    probs[[1, 6, 11], 5] = 0.25
    # case 6: 4 above, label unique               -> slots 1, e 1 -> top5 1
    probs[[0, 1, 2, 3], 6] = 0.2
    probs[8, 6] = 0.1
    labels = labels_row([3, 9, 6, 12, 6, 11, 8])
    return labels, probs


def test_logreg_cost_ties():
    labels, probs = tie_probs()
    got = _core.logreg_cost(labels, probs, 5)
    ref = ref_logreg(labels, probs, 5)
    # credits: float64 sums in case order on both sides -> bit-exact
    assert got[1] == ref[1] == 7 - (1 + 0.5 + 0 + 0 + 0 + 1 / 3 + 0)
    assert got[2] == ref[2] == 7 - (1 + 1 + 0.5 + 0 + 1 + 1 + 1)
    close(np.array(got[0]), np.array(ref[0]), "cost_log", "logreg -sum log p")
    got1 = _core.logreg_cost(labels, probs, 1)
    assert got1[2] == got1[1] == ref[1]  # k = 1: the third number equals the second


@pytest.mark.parametrize("classes,n,k", [(13, 5, 5), (13, 7, 1), (10, 7, 3), (5, 5, 7)])
def test_logreg_cost_random(classes, n, k):
    x = f32(classes, n, scale=2.0)
    x[:, 0] = np.round(x[:, 0])  # integer logits: likely ties in case 0
    probs = softmax(x)
    labels = labels_row(RNG.integers(0, classes, n))
    got = _core.logreg_cost(labels, probs, k)
    ref = ref_logreg(labels, probs, k)
    close(np.array(got[0]), np.array(ref[0]), "cost_log", "logreg -sum log p")
    assert got[1:] == ref[1:]


def test_softmax_tie_gives_half_top1_credit():
    """Two equal maximal logits -> two bit-equal probabilities -> top-1 credit 1/2 for either label."""
    x = np.array([[2.0, 2.0, 0.5], [1.0, 2.0, 0.25], [2.0, -1.0, 0.75]], np.float32)
    probs = softmax(x)
    assert probs[0, 0] == probs[2, 0] and probs[0, 1] == probs[1, 1]
    _, top1, _ = _core.logreg_cost(labels_row([2, 0, 2]), probs, 1)
    assert top1 == 3 - (0.5 + 0.5 + 1.0)


def test_logreg_fused_gradient():
    classes, n, coeff = 13, 7, 0.8
    x = f32(classes, n, scale=2.0)
    labels = labels_row(RNG.integers(0, classes, n))
    y = softmax(x)
    dx = np.full_like(x, np.nan)
    _core.logreg_softmax_bprop(labels, y, dx, coeff, 0.0)
    onehot = (np.arange(classes)[:, None] == labels.astype(int)).astype(np.float32)
    close(dx, np.float32(coeff) * (onehot - y), "exact", "fused softmax+logreg gradient")
    lab = labels[0].astype(int)

    def energy(v):  # E = coeff * (-sum_n log p_label)
        return -coeff * float(np.log(ref_softmax64(v)[lab, np.arange(n)]).sum())

    close(dx, -fd_general(energy, x), "finite_diff", "fused gradient vs -dE/dx")


def test_logreg_unfused_gradient_and_chain():
    classes, n, coeff = 7, 5, 1.3
    x = f32(classes, n)
    labels = labels_row(RNG.integers(0, classes, n))
    y = softmax(x)
    dp = np.full_like(y, np.nan)
    _core.logreg_bprop(labels, y, dp, coeff, 0.0)
    onehot = (np.arange(classes)[:, None] == labels.astype(int)).astype(np.float32)
    close(dp, (np.float32(coeff) * onehot) / y, "exact", "unfused logreg gradient")
    lab = labels[0].astype(int)
    fd = fd_general(lambda p: -coeff * float(np.log(p[lab, np.arange(n)]).sum()), y, h=1e-7)
    close(dp, -fd, "finite_diff", "unfused gradient vs -dE/dp")
    # Through the generic softmax backward it equals the fused gradient (up to rounding).
    dx = np.full_like(y, np.nan)
    _core.softmax_bprop(y, dp, dx, 0.0)
    fused = np.empty_like(y)
    _core.logreg_softmax_bprop(labels, y, fused, coeff, 0.0)
    assert_close(dx, fused, atol=16 * F32_EPS * coeff, rtol=0.0, what="unfused chain vs fused")


@pytest.mark.parametrize("bad", [2.5, -1.0, 13.0, np.nan])
def test_labels_are_checked(bad):
    probs = softmax(f32(13, 3))
    labels = labels_row([0, bad, 4])
    with pytest.raises(ValueError, match=r"labels: case 1 holds .*integer class index in \[0, 13\)"):
        _core.logreg_cost(labels, probs, 1)
    with pytest.raises(ValueError, match="labels: case 1"):
        _core.logreg_softmax_bprop(labels, probs, np.empty_like(probs), 1.0, 0.0)
    with pytest.raises(ValueError, match="labels: case 1"):
        _core.logreg_bprop(labels, probs, np.empty_like(probs), 1.0, 0.0)
    with pytest.raises(ValueError, match=r"labels: expected shape \(1, 3\)"):
        _core.logreg_cost(labels_row([0, 1]), probs, 1)
    with pytest.raises(ValueError, match="topk: must be >= 1"):
        _core.logreg_cost(labels_row([0, 1, 2]), probs, 0)


# -- hs dropout (§3.16) --------------------------------------------------------
def test_dropout_train_and_test():
    x = f32(11, 7)
    mask = (RNG.uniform(size=x.shape) < 0.5).astype(np.float32)
    keep = np.float32(0.5)
    y = np.full_like(x, np.nan)
    _core.dropout_fprop(x, y, mask, 0.5, True)  # enable and PASS_TRAIN: no rescaling
    close(y, x * mask, "exact", "dropout train forward")
    _core.dropout_fprop(x, y, None, 0.5, False)  # any test pass, or enable=false in training
    close(y, keep * x, "exact", "dropout test forward")
    dy = f32(11, 7)
    dx = np.full_like(x, np.nan)
    _core.dropout_bprop(dy, dx, mask, 0.5, True, 0.0)
    close(dx, dy * mask, "exact", "dropout train backward")
    _core.dropout_bprop(dy, dx, None, 0.5, False, 0.0)
    close(dx, keep * dy, "exact", "dropout test backward")
    k = np.float32(0.3)
    _core.dropout_fprop(x, y, None, 0.3, False)
    close(y, k * x, "exact", "dropout test forward, keep 0.3")
    ref = x * mask
    _core.dropout_fprop(x, x, mask, 0.5, True)  # in place (the layer may share its buffer, §1.5)
    close(x, ref, "exact", "dropout train forward in place")


def test_dropout_argument_errors():
    x = f32(3, 5)
    y = np.empty_like(x)
    with pytest.raises(ValueError, match="mask: required when train"):
        _core.dropout_fprop(x, y, None, 0.5, True)
    with pytest.raises(ValueError, match="mask: given, but train is False"):
        _core.dropout_fprop(x, y, np.ones_like(x), 0.5, False)
    with pytest.raises(ValueError, match="mask: element 2 is neither 0 nor 1"):
        _core.dropout_fprop(x, y, np.array([[1, 0, 0.5, 1, 1]] * 3, np.float32), 0.5, True)
    with pytest.raises(ValueError, match=r"keep: must be in \(0, 1\]"):
        _core.dropout_bprop(x, y, None, 0.0, False, 0.0)


# -- cost.sum2, gsum2, rflickr (§3.26–§3.28) -----------------------------------
def test_sum2():
    x, coeff = f32(9, 7), 0.7
    close(np.array(_core.sum2_cost(x)), np.array((x * x).astype(np.float64).sum()), "cost_f64_sum", "sum2 cost")
    dx = np.full_like(x, np.nan)
    _core.sum2_bprop(x, dx, coeff, 0.0)
    close(dx, np.float32(-2 * np.float32(coeff)) * x, "exact", "sum2 backward")
    fd = fd_elementwise(lambda v: coeff * v * v, x, np.ones_like(x))
    close(dx, -fd, "finite_diff", "sum2 gradient vs -dE/dx")


def test_gsum2():
    d, n, coeff = 9, 7, 0.6
    x, g = f32(d, n), f32(1, n, low=0.1, high=2.0)
    sq = x * x
    close(np.array(_core.gsum2_cost(g, x)), np.array((g * sq).astype(np.float64).sum()), "cost_f64_sum",
          "gsum2 cost")
    dg, dx = np.full_like(g, np.nan), np.full_like(x, np.nan)
    _core.gsum2_bprop(g, x, dg, dx, coeff, 0.0)
    ss = np.zeros((1, n), np.float32)
    for i in range(d):  # float32, d in increasing order
        ss += sq[i]
    c = np.float32(coeff)
    close(dg, -c * ss, "exact", "gsum2 gate gradient")
    close(dx, (np.float32(-2) * c * g) * x, "exact", "gsum2 input gradient")

    def energy(gv, xv):
        return coeff * float((gv * xv * xv).sum())

    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    close(dg, -fd_general(lambda v: energy(v, x64), g), "finite_diff", "gsum2 dg vs -dE/dg")
    close(dx, -fd_general(lambda v: energy(g64, v), x), "finite_diff", "gsum2 dx vs -dE/dx")
    only = np.full_like(x, np.nan)  # one target at a time
    _core.gsum2_bprop(g, x, None, only, coeff, 0.0)
    close(only, dx, "exact", "gsum2 dx alone")


def test_rflickr():
    t, y, coeff = f32(5, 7), f32(5, 7), 0.9
    dd = (y - t).astype(np.float64)
    close(np.array(_core.rflickr_cost(t, y)), np.array(np.log1p(dd * dd).sum()), "cost_log", "rflickr cost")
    dy = np.full_like(y, np.nan)
    _core.rflickr_bprop(t, y, dy, coeff, 0.0)
    d = y - t
    close(dy, -np.float32(coeff) * np.float32(2) * d / (np.float32(1) + d * d), "exact", "rflickr backward")
    fd = fd_elementwise(lambda v: coeff * np.log1p((v - t) ** 2), y, np.ones_like(y))
    close(dy, -fd, "finite_diff", "rflickr gradient vs -dE/dy")


# -- cost.crossent2 (§3.25) ----------------------------------------------------
def crossent2_setup():
    d, n = 4, 7
    x = f32(d, n)
    y = run_forward("logistic", (), x)
    t = f32(d, n, low=0.0, high=1.0)
    t[0] = [0.0, 1.0, 0.0, 1.0, 0.5, 0.25, 1.0]
    return x, y, t


def test_crossent2_cost():
    _, y, t = crossent2_setup()
    y = y.copy()
    y[1, :2] = [0.0, 1.0]  # safelog(0) = -50 on either side
    t64, y64 = t.astype(np.float64), y.astype(np.float64)

    def safelog(v):
        return np.where(v > 0, np.log(np.maximum(v, 1e-300)), -50.0)

    ref = -(t64 * safelog(y64) + (1 - t64) * safelog(1 - y64)).sum()
    close(np.array(_core.crossent2_cost(t, y)), np.array(ref), "cost_log", "crossent2 cost")


def test_crossent2_unfused_plus_quirk():
    """§13 item 2: coeff*(t/y + (1-t)/(1-y)) - NOT the derivative, which has a minus."""
    _, y, t = crossent2_setup()
    coeff = 0.5
    dy = np.full_like(y, np.nan)
    _core.crossent2_bprop(t, y, dy, coeff, 0.0)
    c, one = np.float32(coeff), np.float32(1)
    close(dy, c * (t / y + (one - t) / (one - y)), "exact", "crossent2 unfused gradient as written")
    t64 = t.astype(np.float64)

    def cost(v):  # E = coeff * (-sum A), element-wise in y
        return -coeff * (t64 * np.log(v) + (1 - t64) * np.log(1 - v))

    true = -fd_elementwise(cost, y, np.ones_like(y))
    assert not compare(dy, true, *TOL["finite_diff"])["passed"], "the quirk should not match -dE/dy"
    # ... and it is off by exactly the sign of the second fraction:
    y64 = y.astype(np.float64)
    close(dy, true + 2 * coeff * (1 - t64) / (1 - y64), "finite_diff", "quirk = true gradient + 2c(1-t)/(1-y)")
    # where t == 1 the second fraction vanishes and the two agree
    close(dy[t == 1], true[t == 1], "finite_diff", "quirk at t = 1")


def test_crossent2_fused_logistic_gradient():
    """§3.11: a logistic below crossent2 gets coeff*(t - y), the true -dE/dx."""
    x, y, t = crossent2_setup()
    coeff = 0.5
    dx = np.full_like(x, np.nan)
    _core.crossent2_logistic_bprop(t, y, dx, coeff, 0.0)
    close(dx, np.float32(coeff) * (t - y), "exact", "fused logistic+crossent2 gradient")
    t64 = t.astype(np.float64)

    def cost(v):
        s = 1 / (1 + np.exp(-v))
        return -coeff * (t64 * np.log(s) + (1 - t64) * np.log(1 - s))

    close(dx, -fd_elementwise(cost, x, np.ones_like(x)), "finite_diff", "fused gradient vs -dE/dx")


# -- cost.crossent (§3.24) -----------------------------------------------------
def test_crossent_cost_and_unfused_gradient():
    d, n, coeff = 5, 5, 0.7
    probs = softmax(f32(d, n))
    t = softmax(f32(d, n))  # target distributions
    probs[:, 1] = [0.0, 0.25, 0.25, 0.3, 0.2]  # y = 0 with t > 0: safelog gives -50
    probs[:, 2] = [0.4, 0.4, 0.1, 0.05, 0.05]  # tie at max; class 1 has t > 0 -> credit 1/2
    t[:, 2] = [0.0, 0.5, 0.5, 0.0, 0.0]
    probs[:, 3] = [0.6, 0.1, 0.1, 0.1, 0.1]  # max class has t == 0 -> credit 0
    t[:, 3] = [0.0, 0.25, 0.25, 0.25, 0.25]
    t64, p64 = t.astype(np.float64), probs.astype(np.float64)
    ll = (t64 * np.where(p64 > 0, np.log(np.maximum(p64, 1e-300)), -50.0)).sum()
    correct = 0.0
    for c in range(n):  # §3.24: 1/#max if some maximal class has t > 0
        at_max = probs[:, c] == probs[:, c].max()
        correct += 1.0 / at_max.sum() if (t[at_max, c] > 0).any() else 0.0
    got = _core.crossent_cost(t, probs)
    close(np.array(got[0]), np.array(-ll), "cost_log", "crossent cost")
    assert got[1] == n - correct and correct <= n - 1.5
    # Unfused gradient (used by the release only when the softmax has other consumers, §13 item 1)
    probs[:, 1] = [0.05, 0.2, 0.25, 0.3, 0.2]
    dp = np.full_like(probs, np.nan)
    _core.crossent_bprop(t, probs, dp, coeff, 0.0)
    close(dp, np.float32(coeff) * t / probs, "exact", "crossent gradient")
    fd = fd_elementwise(lambda v: coeff * t64 * np.log(v), probs, np.ones_like(probs), h=1e-7)
    close(dp, fd, "finite_diff", "crossent gradient vs -dE/dy")


# -- accumulate-or-overwrite (§1.4) for every backward -------------------------
def _bprop_calls():
    d, n = 6, 5
    x, y_soft = f32(d, n), softmax(f32(d, n))
    labels = labels_row(RNG.integers(0, d, n))
    t = f32(d, n, low=0.05, high=0.95)
    y01 = f32(d, n, low=0.05, high=0.95)
    g = f32(1, n)
    mask = (RNG.uniform(size=(d, n)) < 0.5).astype(np.float32)
    pos_x, pos_y = np.abs(x) + 0.1, np.abs(x) + 0.2  # valid for every type (sqrt needs y > 0)
    calls = {
        f"neuron_{k}": (lambda dst, st, k=k, p=p: _core.neuron_bprop(pos_x, pos_y, x, dst, k, p, st))
        for k, p in NEURONS
    }
    calls.update({
        "softmax": lambda dst, st: _core.softmax_bprop(y_soft, x, dst, st),
        "logreg_softmax": lambda dst, st: _core.logreg_softmax_bprop(labels, y_soft, dst, 0.5, st),
        "logreg": lambda dst, st: _core.logreg_bprop(labels, y_soft, dst, 0.5, st),
        "dropout_train": lambda dst, st: _core.dropout_bprop(x, dst, mask, 0.5, True, st),
        "dropout_test": lambda dst, st: _core.dropout_bprop(x, dst, None, 0.5, False, st),
        "sum2": lambda dst, st: _core.sum2_bprop(x, dst, 0.5, st),
        "gsum2_x": lambda dst, st: _core.gsum2_bprop(g, x, None, dst, 0.5, st),
        "rflickr": lambda dst, st: _core.rflickr_bprop(t, y01, dst, 0.5, st),
        "crossent2": lambda dst, st: _core.crossent2_bprop(t, y01, dst, 0.5, st),
        "crossent2_logistic": lambda dst, st: _core.crossent2_logistic_bprop(t, y01, dst, 0.5, st),
        "crossent": lambda dst, st: _core.crossent_bprop(t, y01, dst, 0.5, st),
    })
    return calls, (d, n)


CALLS, SHAPE = _bprop_calls()


@pytest.mark.parametrize("name", sorted(CALLS) + ["gsum2_gates"])
def test_scale_targets(name):
    shape = (1, SHAPE[1]) if name == "gsum2_gates" else SHAPE
    if name == "gsum2_gates":
        x, g = f32(*SHAPE), f32(*shape)

        def call(dst, st):
            _core.gsum2_bprop(g, x, dst, None, 0.5, st)
    else:
        call = CALLS[name]
    fresh = np.full(shape, np.nan, np.float32)  # scale_targets 0 must not read it
    call(fresh, 0.0)
    assert np.isfinite(fresh).all(), f"{name}: NaN in the target leaked into an overwrite"
    base = f32(*shape)
    acc = base.copy()
    call(acc, 1.0)
    close(acc, base + fresh, "exact", f"{name} with scale_targets 1")  # 1*t + r: one float32 addition
