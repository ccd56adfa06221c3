"""The parity suite's tolerance table, per layer class, each row with its reason.

A comparison passes where ``|actual - expected| <= atol + rtol*|expected|`` element by
element, with ``atol = scale * max|expected|`` (or the max of another array, see
metrics.measure): the array's own magnitude, so one table serves layers of any size.
docs/parity.md prints the table; tests/test_port.py judges its checks by it too.
"""

from __future__ import annotations

import numpy as np

from ..port.layers import tolerance_class

# Per layer class: (scale, rtol); atol = scale * max|expected|.
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
                           # (cost.tica: the same A, summed in float64 in another order;
                           # cost.msm: the double lattice by numpy vs glibc exp/log, ~1e-16)
    "resize": EXACT,       # resize, rscale: the engine's float32 operations of §3.20 in its order,
                           # one rounding each (the crop of rscale is a copy)
    "color": EXACT,        # rgb2yuv: three products and two sums per value, left to right as the engine
    "color-pow": (1e-6, 2e-6),   # rgb2lab: t^0.3333 by torch.pow vs std::pow (an ulp of h), times
                                 # 500 in a = 500 (h(X) - h(Y)), a difference of nearly equal numbers
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
    "grad-tica": EXACT,   # cost.tica: A and its window sums in the engine's raster order, then
                          # (-coeff*x)*sum (or sqrt(sum)), the engine's roundings
    "grad-msm": (1e-7, 1e-6),    # cost.msm: coeff*(q - p) from the same double lattice (numpy's
                                 # exp/log vs glibc's, ~1e-16), rounded to float32 once: an ulp at most
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
    "resize": (1e-7, 2.5e-7), "color": (1e-7, 2.5e-7), "grad-tica": (1e-7, 2.5e-7),
}
REL_FLOOR = 1e-3  # max rel error counts elements with |ref| >= REL_FLOOR * max|ref| only


def tolerances(device: str) -> dict[str, tuple[float, float]]:
    """The table for a run on `device`: on a GPU, CUDA_TOL's rows replace TOL's."""
    tol = dict(TOL)
    if device.startswith("cuda"):
        tol.update(CUDA_TOL)
    return tol


# ---------------------------------------------------------------------------
# Which row of the table a comparison uses


def forward_kind(layer) -> str:
    """The class of a layer's forward: the one its port op declares (port/layers.py)."""
    return tolerance_class(layer)


def backward_kind(layer, summed: bool) -> str:
    """The class of a layer's isolated backward: the one its port op declares; a gradient
    that adds several contributions (`summed`: several consumers) in autograd's order rather
    than the engine's needs grad-sum where the op itself would be exact."""
    kind = tolerance_class(layer, backward=True)
    return "grad-sum" if summed and kind == "grad-copy" else kind


def steps_tol(tol: dict[str, tuple[float, float]], step: int) -> dict[str, tuple[float, float]]:
    """`tol` with the steps class for the weights after `step` steps: its atol times `step`.
    The weights after step k carry the gradient errors of every step before, and each step's
    forward and gradients start from weights that already differ by them, so the error of
    W - W0 grows with k; the rtol (the last rounding of W + inc) does not."""
    scale, rtol = tol["steps"]
    return {**tol, "steps": (scale * max(1, step), rtol)}


def softmax_tol(tol: dict[str, tuple[float, float]], classes: int) -> dict[str, tuple[float, float]]:
    """`tol` with the softmax class widened for a softmax over `classes` values: the
    normalising sum of D terms is added in another order on each side, and the
    difference of two such roundings grows as sqrt(D) ulp. TOL's rtol holds for the
    1000 classes of ImageNet 2012; the 10184 of ImageNet 2009 get sqrt(10.2) times it."""
    scale, rtol = tol["softmax"]
    return {**tol, "softmax": (scale, rtol * max(1.0, float(np.sqrt(classes / 1000))))}
