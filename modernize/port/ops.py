"""The release's operations where PyTorch has no exact equivalent, on NCHW tensors.

What the port computes is the engine's network (engine.md §3), not a
re-interpretation of it. Where a standard PyTorch operation is exactly the
release's operation it is used; where it is not, a small explicit operation is.
Layer by layer (the explicit operations and autograd Functions are in this module;
network.py assembles them with the standard ones):

* conv: grouped ``F.conv2d``; the ceiling in ``modulesX = 1 + ceil((2p + S - K)/st)``
  is explicit extra zero padding on the bottom and right (§3.4); random sparse
  connectivity gathers the input channels by the connection table, then runs a
  grouped conv (index_select's backward sums the copies, as §3.4's overSample sum).
* local (unshared): ``F.unfold`` and one product per module (:func:`_local`).
* fc: ``F.linear`` on the CHW-flattened input (§1.2), bias after the first input (§1.4).
* pool: windows are clipped, never padded (§3.6). max: ``F.max_pool2d`` on an input
  padded with -inf to exactly the windows' extent (exact: the max ignores the pad),
  floored at -2e38 like the release's start value. Its backward is NOT autograd's:
  the release gives the full gradient to every element equal to the pooled value
  (ties duplicated), autograd to one argmax, so a custom Function does max-undo.
  maxabs: explicit (largest |x|, later element wins ties) with the same max-undo.
  avg: the window sums by ``F.avg_pool2d(divisor_override=1)`` on a zero-padded
  input, divided by the in-image count. ``F.avg_pool2d(count_include_pad=False,
  ceil_mode=True)`` divides by the same count, but its padding must be symmetric
  and at most sizeX/2 and its output count is computed with padding on both sides,
  so it only covers start = 0 (and a few negative starts); one formulation covers all.
* cmrnorm: explicit. ``F.local_response_norm(x, size, alpha=scale_file, beta, k=minDiv)``
  has the same window (``[c - size//2, c - size//2 + size)``, even sizes included) and
  the same alpha/size, but computes ``x / (k + alpha * mean(x^2))^beta`` with the mean
  taken by a division, where the release computes ``x * (minDiv + (scale/size) * sum)^(-beta)``;
  mathematically equal, a few ulp apart, and it has no ``blocked`` mode. The explicit
  op adds the squares in increasing channel order, as the engine does.
* rnorm, cnorm: explicit window sums in raster order (§3.8, §3.10); cnorm as written:
  the numerator is the raw input and the local mean is a constant for the gradient
  (``.detach()``), which gives exactly the release's backward (§13 item 12).
* neurons (§3.11): autograd where the release's backward factor is the derivative
  (relu, logistic, tanh, square, sqrt, linear, ident, softrelu); custom Functions where
  it is not: abs (factor -1 at x = 0, autograd gives 0), brelu (0 at both ends of
  [0, a], clamp's autograd passes 1 there), nrelu (factor [y > 0], ignoring the
  noise's 1 + eps), drelu (factor tanh^2 computed directly; autograd's 1 - (1 - t^2)
  cancels for small t).
* eltmax: custom Function: every input equal to the max gets the full gradient
  (torch.maximum splits ties in half).
* href: ``flip``; its backward overwrites rather than adds (§13 item 8): uses of
  the same input by layers after the href (in execution order) get a detached
  input, so their gradient contribution is dropped exactly as the engine drops it.
* softmax + cost.logreg: ``F.softmax``, and ``-coeff * log p_label``. When the softmax's
  only consumer is the logreg, the pair passes the gradient through log p
  (``_FusedSoftmax``/``_FusedNLL``): the release's fused ``coeff * (onehot - y)``, finite
  even where a probability underflows to 0 (autograd of -log p would give NaN there).
* dropout (``hs``): train: ``x * mask`` with an injected (or drawn) 0/1 mask, no
  rescale; test, or enable=false: ``keep * x`` (§3.16).

Parity with the C++ engine (tests/test_port.py, each layer fed the engine's inputs):
bit-identical forward for data movement (nailbed, href, concat, dropout), eltsum,
eltmax, all pooling, blur and the neurons built from +, * and comparisons; a few ulp
for exp/log/pow (softmax, logistic, tanh, softrelu, drelu, sqrt, the three norms); and
~1e-6 relative for conv/local/fc, whose fp32 sums run in a different order (OpenBLAS
sgemm there, torch's kernels here).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import ReplayError

if TYPE_CHECKING:  # only for the annotation of _local; convert.py does not import this module back
    from .convert import _ConvGeom

MAX_START = -2e38  # §3.6: the release's max pooling starts from -2e38


# ---------------------------------------------------------------------------
# Autograd Functions for the places where the release's backward is not autograd's


class _MaxUndo(torch.autograd.Function):
    """max / maxabs pooling on an exactly padded input: forward given, backward max-undo (§3.6).

    ``xp`` (N, C, P, P) is padded so that the OX windows of side K at stride st cover it
    exactly, with a value no pooled output can equal (-inf, or NaN). Backward:
    dX[c, y, x] = sum over windows w holding (y, x) of [X == Y_w] * dY_w.
    """

    @staticmethod
    def forward(ctx, xp: Tensor, y: Tensor, size: int, stride: int) -> Tensor:
        ctx.save_for_backward(xp, y)
        ctx.size, ctx.stride = size, stride
        return y.clone()

    @staticmethod
    def backward(ctx, dy: Tensor):
        xp, y = ctx.saved_tensors
        n, c, p, _ = xp.shape
        k, st = ctx.size, ctx.stride
        cols = F.unfold(xp, k, stride=st).view(n, c, k * k, -1)
        hit = (cols == y.reshape(n, c, 1, -1)).to(dy.dtype)
        g = hit * dy.reshape(n, c, 1, -1)
        return F.fold(g.view(n, c * k * k, -1), (p, p), k, stride=st), None, None, None


class _EltMax(torch.autograd.Function):
    """§3.14: Y = max(X1, X0), then max(Y, Xi); every input equal to Y gets the full dY."""

    @staticmethod
    def forward(ctx, *xs: Tensor) -> Tensor:
        y = torch.where(xs[1] > xs[0], xs[1], xs[0])
        for x in xs[2:]:
            y = torch.where(y > x, y, x)
        ctx.save_for_backward(y, *xs)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        y, *xs = ctx.saved_tensors
        return tuple(dy * (x == y).to(dy.dtype) for x in xs)


class _Abs(torch.autograd.Function):
    """§3.11 abs: backward factor x > 0 ? 1 : -1 (so -1 at x = 0; autograd gives 0)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x.abs()

    @staticmethod
    def backward(ctx, dy: Tensor):
        (x,) = ctx.saved_tensors
        return dy * torch.where(x > 0, 1.0, -1.0).to(dy.dtype)


class _FusedSoftmax(torch.autograd.Function):
    """§3.12 softmax fused with the cost.logreg that is its only consumer.

    Forward: ``F.softmax``. Backward: its incoming gradient is taken as dE/d(log p) (what
    :class:`_FusedNLL` sends, -coeff at the label, 0 elsewhere), so dE/dx = g - p sum(g):
    ``coeff * (p - onehot)``, the release's fused gradient. Going through log p keeps it
    finite when a probability underflows to 0, where autograd's dE/dp = -coeff/p is -inf
    and the product with the softmax Jacobian is NaN.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        p = F.softmax(x, dim=1)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, g: Tensor):
        (p,) = ctx.saved_tensors
        return g - p * g.sum(dim=1, keepdim=True)


class _FusedNLL(torch.autograd.Function):
    """sum over cases of -log p[label] (float64), for a :class:`_FusedSoftmax` output. Its
    backward sends dE/d(log p) = -grad at each case's label (see :class:`_FusedSoftmax`)."""

    @staticmethod
    def forward(ctx, p: Tensor, lab: Tensor) -> Tensor:
        ctx.save_for_backward(lab)
        ctx.like = (p.shape, p.dtype, p.device)
        return -torch.log(p.gather(1, lab)).to(torch.float64).sum()

    @staticmethod
    def backward(ctx, grad: Tensor):
        (lab,) = ctx.saved_tensors
        shape, dtype, device = ctx.like
        g = torch.zeros(shape, dtype=dtype, device=device)
        g.scatter_(1, lab, (-grad).to(dtype).expand(lab.shape).contiguous())
        return g, None


class _FusedLogistic(torch.autograd.Function):
    """§3.11 logistic fused with the cost.crossent2 that is its only consumer.

    Forward: the port's logistic. Backward: its incoming gradient is taken as dE/dx already
    (what :class:`_Crossent2` sends when fused, coeff * (y - t)): the release's fused
    gradient coeff * (t - y) in the engine's sign, whatever the crossent2's own formula."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return _neuron("logistic", 0.0, 0.0, x, None)

    @staticmethod
    def backward(ctx, g: Tensor):
        return g


def safelog(x: Tensor) -> Tensor:
    """§3.24/§3.25: log(x) for x > 0, else -50."""
    return torch.where(x > 0, torch.log(torch.where(x > 0, x, torch.ones_like(x))), torch.full_like(x, -50.0))


class _Crossent2(torch.autograd.Function):
    """§3.25 cost.crossent2: -sum [t safelog(y) + (1 - t) safelog(1 - y)] (float32 terms, float64 sum).

    Backward, as the release computes it: fused (`fused`, y from a :class:`_FusedLogistic`):
    dE/dy = coeff * (y - t), passed through to the logistic's input; unfused:
    dE/dy = -coeff * (t/y + (1 - t)/(1 - y)), with the release's "+" where the true
    derivative has a minus (engine.md §13 item 2)."""

    @staticmethod
    def forward(ctx, t: Tensor, y: Tensor, fused: bool) -> Tensor:
        ctx.save_for_backward(t, y)
        ctx.fused = fused
        return -(t * safelog(y) + (1 - t) * safelog(1 - y)).to(torch.float64).sum()

    @staticmethod
    def backward(ctx, grad: Tensor):
        t, y = ctx.saved_tensors
        coeff = grad.to(y.dtype)
        if ctx.fused:
            return None, coeff * (y - t), None
        return None, -(coeff * (t / y + (1 - t) / (1 - y))), None


class _Brelu(torch.autograd.Function):
    """§3.11 brelu[a]: min(a, max(0, x)); backward factor [0 < y < a] (clamp's autograd passes 1 at 0 and a)."""

    @staticmethod
    def forward(ctx, x: Tensor, a: float) -> Tensor:
        y = torch.clamp(torch.clamp(x, min=0.0), max=a)
        ctx.save_for_backward(y)
        ctx.a = a
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        (y,) = ctx.saved_tensors
        return dy * ((y > 0) & (y < ctx.a)).to(dy.dtype), None


class _Nrelu(torch.autograd.Function):
    """§3.11 nrelu: r = relu(x), y = relu(r + r*eps); backward factor [y > 0] (the noise's 1 + eps is ignored)."""

    @staticmethod
    def forward(ctx, x: Tensor, noise: Tensor) -> Tensor:
        r = torch.relu(x)
        y = torch.relu(r + r * noise)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        (y,) = ctx.saved_tensors
        return dy * (y > 0).to(dy.dtype), None


def _drelu_tanh(x: Tensor, a: float) -> Tensor:
    return 2.0 / (1.0 + torch.exp(-2.0 * x / a)) - 1.0  # as the release writes tanh(x/a)


class _Drelu(torch.autograd.Function):
    """§3.11 drelu[a]: x - a*tanh(x/a); backward factor tanh(x/a)^2, computed directly
    (autograd of the forward forms 1 - (1 - t^2), which cancels for small t)."""

    @staticmethod
    def forward(ctx, x: Tensor, a: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.a = a
        return x - a * _drelu_tanh(x, a)

    @staticmethod
    def backward(ctx, dy: Tensor):
        (x,) = ctx.saved_tensors
        t = _drelu_tanh(x, ctx.a)
        return dy * (t * t), None


def _neuron(kind: str, a: float, b: float, x: Tensor, noise: Tensor | None) -> Tensor:
    """The twelve neurons of §3.11 (forward; backward by autograd or the Functions above)."""
    if kind == "ident":
        return x.view_as(x)
    if kind == "relu":
        return torch.relu(x)  # autograd: dY * [y > 0], the release's factor
    if kind == "nrelu":
        return _Nrelu.apply(x, torch.zeros_like(x) if noise is None else noise)
    if kind == "brelu":
        return _Brelu.apply(x, a)
    if kind == "softrelu":
        # x > 4 ? x : log(1 + e^x); the exp only sees x <= 4 so that no inf reaches autograd
        small = torch.where(x > 4.0, torch.zeros_like(x), x)
        return torch.where(x > 4.0, x, torch.log(1.0 + torch.exp(small)))
    if kind == "drelu":
        return _Drelu.apply(x, a)
    if kind == "abs":
        return _Abs.apply(x)
    if kind == "logistic":
        return torch.sigmoid(x)  # backward y(1 - y), the release's factor
    if kind == "tanh":
        return a * torch.tanh(b * x)  # backward a*b*(1 - t^2) = b*(a - y^2/a)
    if kind == "square":
        return x * x
    if kind == "sqrt":
        return torch.sqrt(x)  # backward dY / (2y), the release's 1/(2y)
    if kind == "linear":
        return a * x + b
    raise ReplayError(f"unknown neuron '{kind}'")


# ---------------------------------------------------------------------------
# Small geometric helpers


def _exact_pad(x: Tensor, start: int, out: int, size: int, stride: int, value: float) -> Tensor:
    """Pad/crop the last two dims so that `out` windows of `size` at `stride`, the first
    starting at `start` (may be < 0), cover the result exactly (no padding on the left
    when start >= 0: the image is cropped instead)."""
    s = x.shape[-1]
    if start > 0:
        x = x[..., start:, start:]
        s -= start
        start = 0
    left = -start
    extent = (out - 1) * stride + size
    keep = min(s, extent - left)
    x = x[..., :keep, :keep]
    right = extent - left - keep
    if left or right:
        x = F.pad(x, (left, right, left, right), value=value)
    return x


def _clipped_counts(start: int, out: int, size: int, stride: int, side: int) -> list[int]:
    """In-image length of each window along one axis (§3.6)."""
    return [max(0, min(start + o * stride + size, side) - max(start + o * stride, 0)) for o in range(out)]


def _window_sum(x: Tensor, lo: int, size: int) -> Tensor:
    """Sum over the square windows rows/cols [i + lo, i + lo + size) of (..., S, S), zero
    outside, added one shifted copy at a time in raster order from 0: the engine's order
    (§7.2), and the zeros outside the image add nothing, so the sums are the engine's."""
    s = x.shape[-1]
    before, after = -lo, size + lo - 1
    xp = F.pad(x, (before, after, before, after))
    acc = torch.zeros_like(x)
    for dy in range(size):
        for dx in range(size):
            acc = acc + xp[..., dy:dy + s, dx:dx + s]
    return acc


def _channel_window_sum(x: Tensor, size: int, blocked: bool) -> Tensor:
    """cmrnorm's sum of squares over channels (§3.9), in increasing channel order."""
    n, c = x.shape[:2]
    sq = x * x
    if blocked:  # W(f) = [floor(f/s)*s, +s) clipped
        blocks = -(-c // size)
        padded = F.pad(sq, (0, 0, 0, 0, 0, blocks * size - c)).view(n, blocks, size, *x.shape[2:])
        acc = torch.zeros_like(padded[:, :, 0])
        for k in range(size):
            acc = acc + padded[:, :, k]
        return acc.repeat_interleave(size, dim=1)[:, :c]
    before = size // 2  # W(f) = [f - size//2, f - size//2 + size)
    padded = F.pad(sq, (0, 0, 0, 0, before, size - 1 - before))
    acc = torch.zeros_like(sq)
    for k in range(size):
        acc = acc + padded[:, k:k + c]
    return acc


# ---------------------------------------------------------------------------
# The layer operations on NCHW tensors (usable on their own)


def pool2d(x: Tensor, kind: str, size: int, stride: int, start: int, outputs_x: int) -> Tensor:
    """§3.6 pooling of (N, C, S, S): windows [start + o*stride, + size) clipped to the image."""
    side = x.shape[-1]
    if kind == "max":
        xp = _exact_pad(x, start, outputs_x, size, stride, float("-inf"))
        y = F.max_pool2d(xp.detach(), size, stride).clamp_min(MAX_START)
        return _MaxUndo.apply(xp, y, size, stride)
    if kind == "maxabs":
        xp = _exact_pad(x, start, outputs_x, size, stride, float("nan"))
        n, c = x.shape[:2]
        with torch.no_grad():
            cols = F.unfold(xp, size, stride=stride).view(n, c, size * size, -1)
            mag = torch.nan_to_num(cols.abs(), nan=-1.0)
            last = size * size - 1 - mag.flip(2).argmax(dim=2, keepdim=True)  # later element wins ties
            y = cols.gather(2, last).squeeze(2)
            y = torch.nan_to_num(y, nan=0.0).view(n, c, outputs_x, outputs_x)  # all-outside window: 0
        return _MaxUndo.apply(xp, y, size, stride)
    if kind == "avg":  # sums of the clipped window / number of in-image pixels, one IEEE division
        xp = _exact_pad(x, start, outputs_x, size, stride, 0.0)
        sums = F.avg_pool2d(xp, size, stride, divisor_override=1)
        counts = torch.tensor(_clipped_counts(start, outputs_x, size, stride, side), dtype=x.dtype, device=x.device)
        return sums / (counts.view(-1, 1) * counts.view(1, -1))
    raise ReplayError(f"unknown pool '{kind}' (max, maxabs, avg)")


def _window_starts(start: int, out: int, stride: int) -> list[int]:
    """First in-image row (or column) of each clipped window along one axis (§3.6)."""
    return [max(start + o * stride, 0) for o in range(out)]


def rand_pool_areas(side: int, size: int, stride: int, start: int, outputs_x: int) -> Tensor:
    """(OX, OX) in-image pixel counts of the clipped windows of pool=rand (§3.6)."""
    counts = torch.tensor(_clipped_counts(start, outputs_x, size, stride, side), dtype=torch.long)
    return counts.view(-1, 1) * counts.view(1, -1)


def rand_pool_picks(u: Tensor, side: int, size: int, stride: int, start: int, outputs_x: int) -> Tensor:
    """Picks from uniforms u in [0, 1) of shape (N, C, OX, OX): floor(u * area), at most
    area - 1, as the engine maps its draws (op_params.h pool_rand_pick). Float, like a mask."""
    area = rand_pool_areas(side, size, stride, start, outputs_x).to(u.device)
    k = torch.floor(u.to(torch.float64) * area).to(torch.long)
    return torch.minimum(k, area - 1).to(u.dtype)


def check_rand_picks(name: str, picks: Tensor, side: int, size: int, stride: int, start: int,
                     outputs_x: int) -> None:
    """Injected picks must be whole numbers in [0, window area): the engine's check_pool_picks."""
    area = rand_pool_areas(side, size, stride, start, outputs_x).to(picks.device)
    ok = (picks >= 0) & (picks < area.to(picks.dtype)) & (picks == torch.floor(picks))
    if not bool(ok.all()):
        raise ReplayError(f"layer '{name}': picks must be whole numbers in [0, window area) "
                          "(a pixel of each clipped window, raster order)")


def rand_pool(x: Tensor, picks: Tensor, size: int, stride: int, start: int, outputs_x: int) -> Tensor:
    """pool=rand without doMax (§3.6; the release's kernel was never published, this is the
    project's reconstruction, original/reconstructions.py): of (N, C, S, S), the pixel at
    position k = picks[n, c, oy, ox] of each clipped window in raster order (row k // width,
    column k % width); backward max-undo against that value, as for max pooling."""
    n, c, side = x.shape[0], x.shape[1], x.shape[-1]
    k = picks.reshape(n, c, outputs_x, outputs_x).to(device=x.device, dtype=torch.long)
    lo = torch.tensor(_window_starts(start, outputs_x, stride), device=x.device)
    width = torch.tensor(_clipped_counts(start, outputs_x, size, stride, side), device=x.device)
    iy = lo.view(-1, 1) + k // width.view(1, -1)
    ix = lo.view(1, -1) + k % width.view(1, -1)
    with torch.no_grad():
        y = x.reshape(n, c, -1).gather(2, (iy * side + ix).reshape(n, c, -1)).view(n, c, outputs_x, outputs_x)
    xp = _exact_pad(x, start, outputs_x, size, stride, float("nan"))
    return _MaxUndo.apply(xp, y, size, stride)


def half_round(x: Tensor) -> Tensor:
    """x rounded to IEEE half precision (round to nearest even) and back: §6's quantizer as
    the project reconstructs it (op_params.h round_to_half)."""
    return x.to(torch.float16).to(x.dtype)


class _Quant(torch.autograd.Function):
    """The quant layer (§6, quantF/quantB = half across gpus; a reconstruction): forward
    rounds x to half when `forward_half`, backward rounds dY when `backward_half`."""

    @staticmethod
    def forward(ctx, x: Tensor, forward_half: bool, backward_half: bool) -> Tensor:
        ctx.backward_half = backward_half
        return half_round(x) if forward_half else x.clone()

    @staticmethod
    def backward(ctx, dy: Tensor):
        return (half_round(dy) if ctx.backward_half else dy), None, None


def cross_map_norm(x: Tensor, size: int, alpha: float, beta: float, min_div: float = 1.0,
                   blocked: bool = False) -> Tensor:
    """§3.9 cmrnorm: x * (minDiv + alpha * sum of squares over the channel window)^(-beta);
    alpha is the engine's (the file's scale / size)."""
    return x * torch.pow(min_div + alpha * _channel_window_sum(x, size, blocked), -beta)


def spatial_norm(x: Tensor, size: int, alpha: float, beta: float, contrast: bool = False) -> Tensor:
    """§3.8 rnorm (or §3.10 cnorm with `contrast`): x * (1 + alpha * sum over the clipped
    size x size window of x^2 (cnorm: of (x - local mean)^2))^(-beta); alpha = scale/size^2.
    cnorm as written: the numerator is x, and the mean is a constant for the gradient."""
    side = x.shape[-1]
    lo = -(size // 2)  # window [y - size//2, y - size//2 + size), clipped
    src = x
    if contrast:
        counts = torch.tensor(_clipped_counts(lo, side, size, 1, side), dtype=x.dtype, device=x.device)
        mean = _window_sum(x, lo, size) / (counts.view(-1, 1) * counts.view(1, -1))
        src = x - mean.detach()
    return x * torch.pow(1.0 + alpha * _window_sum(src * src, lo, size), -beta)


def blur(x: Tensor, taps: Sequence[float]) -> Tensor:
    """§3.18: separable filter, zero padding, horizontal pass then vertical; each output adds
    its in-image taps in order from 0 (the engine's order; zeros outside add nothing)."""
    r = len(taps) // 2
    s = x.shape[-1]
    h = F.pad(x, (r, r))
    acc = torch.zeros_like(x)
    for k, g in enumerate(taps):
        acc = acc + h[..., k:k + s] * g
    v = F.pad(acc, (0, 0, r, r))
    out = torch.zeros_like(x)
    for k, g in enumerate(taps):
        out = out + v[..., k:k + s, :] * g
    return out


# ---------------------------------------------------------------------------
# Parts of the local and cost layers


def _local(x: Tensor, w: Tensor, g: _ConvGeom) -> Tensor:
    """Unshared conv on a padded input: y[n, f, m] = sum_r cols[n, g(f), r, m] * w[m, f, r]."""
    n = x.shape[0]
    m = g.modules_x * g.modules_x
    fg = g.filters // g.groups
    r = g.fchan * g.size * g.size
    cols = F.unfold(x, g.size, stride=g.stride).view(n, g.groups, r, m)
    wm = w.reshape(m, g.groups, fg, r)
    y = torch.einsum("ngrm,mgfr->ngfm", cols, wm)
    return y.reshape(n, g.filters, g.modules_x, g.modules_x)


def _logreg_costs(labels: Tensor, probs: Tensor, topk: int, fused: bool = False) -> Tensor:
    """§3.23: [sum -log p_label, N - sum top-1 credit, N - sum top-k credit], float64.
    `fused`: `probs` comes from a :class:`_FusedSoftmax` (the gradient goes through it)."""
    n = probs.shape[0]
    lab = labels.reshape(n, 1).to(torch.long)
    p_label = probs.gather(1, lab)
    nll = _FusedNLL.apply(probs, lab) if fused else -torch.log(p_label).to(torch.float64).sum()
    return torch.cat([nll.reshape(1), _error_counts(lab, probs, topk).to(nll.device)])


def _error_counts(lab: Tensor, scores: Tensor, topk: int) -> Tensor:
    """§3.23's tie rules: [N - sum top-1 credit, N - sum top-k credit] (float64) of scores
    (N, D) against the labels (N, 1): 1/#max when the label's score is a maximum; with b
    scores above the label's and e equal to it, slots = k - b: 0, 1 if e <= slots, else slots/e."""
    n = scores.shape[0]
    with torch.no_grad():
        p = scores.detach()
        pl = p.gather(1, lab)
        top = p.amax(dim=1, keepdim=True)
        at_max = (p == top).sum(1).to(torch.float64)
        top1 = torch.where(pl.squeeze(1) == top.squeeze(1), 1.0 / at_max, torch.zeros_like(at_max))
        above = (p > pl).sum(1)
        equal = (p == pl).sum(1).to(torch.float64)
        slots = (topk - above).to(torch.float64)
        topk_credit = torch.where(slots <= 0, torch.zeros_like(slots),
                                  torch.where(equal <= slots, torch.ones_like(slots), slots / equal))
        return torch.stack([n - top1.sum(), n - topk_credit.sum()])


# ---------------------------------------------------------------------------
# Forwards with plain operations only, for export (same values as the forwards above,
# without their autograd Functions, which a traced or exported graph cannot hold)


def pool_forward(x: Tensor, kind: str, size: int, stride: int, start: int, outputs_x: int) -> Tensor:
    """pool2d's forward values without its max-undo Function (§3.6)."""
    if kind == "max":
        xp = _exact_pad(x, start, outputs_x, size, stride, float("-inf"))
        return F.max_pool2d(xp, size, stride).clamp_min(MAX_START)
    if kind == "maxabs":  # largest |x| in the window, the later element winning ties; 0 if all outside
        xp = _exact_pad(x, start, outputs_x, size, stride, float("nan"))
        n, c = x.shape[:2]
        cols = F.unfold(xp, size, stride=stride).view(n, c, size * size, -1)
        mag = torch.nan_to_num(cols.abs(), nan=-1.0)
        last = size * size - 1 - mag.flip(2).argmax(dim=2, keepdim=True)
        y = cols.gather(2, last).squeeze(2)
        return torch.nan_to_num(y, nan=0.0).view(n, c, outputs_x, outputs_x)
    if kind == "avg":
        # port.pool2d sums with F.avg_pool2d(divisor_override=1), which ONNX's AveragePool cannot
        # express (the exporter drops the override and divides by size^2: found by the ONNX test).
        # The same sums, added one window offset at a time in raster order from 0 (the engine's
        # order, §7.2; the zero padding adds nothing), then one IEEE division by the in-image count.
        xp = _exact_pad(x, start, outputs_x, size, stride, 0.0)
        span = (outputs_x - 1) * stride + 1
        acc = torch.zeros_like(xp[..., :span:stride, :span:stride])
        for dy in range(size):
            for dx in range(size):
                acc = acc + xp[..., dy:dy + span:stride, dx:dx + span:stride]
        counts = torch.tensor(_clipped_counts(start, outputs_x, size, stride, x.shape[-1]), dtype=x.dtype,
                              device=x.device)
        return acc / (counts.view(-1, 1) * counts.view(1, -1))
    raise ReplayError(f"unknown pool '{kind}' (max, maxabs, avg)")


def neuron_forward(kind: str, a: float, b: float, x: Tensor) -> Tensor:
    """The port's neuron forward values; abs, brelu and drelu without their Functions (§3.11)."""
    if kind == "abs":
        return x.abs()
    if kind == "brelu":
        return torch.clamp(torch.clamp(x, min=0.0), max=a)
    if kind == "drelu":
        return x - a * _drelu_tanh(x, a)
    if kind == "nrelu":
        raise ReplayError("nrelu draws noise in every pass, the test pass included (engine.md §3.11, §13 "
                          "item 7): its output is random, so the model cannot be exported deterministically")
    return _neuron(kind, a, b, x, None)


def eltmax_forward(xs: Sequence[Tensor]) -> Tensor:
    """§3.14's forward: Y = max(X1, X0), then max(Y, Xi), as the port's _EltMax."""
    y = torch.where(xs[1] > xs[0], xs[1], xs[0])
    for x in xs[2:]:
        y = torch.where(y > x, y, x)
    return y


# ---------------------------------------------------------------------------
# resize (§3.20), rgb2yuv and rgb2lab (§3.21), rscale (§3.22): no backward. Each
# computes on a detached input, so nothing below them gets a gradient through them,
# as in the engine (whose plan refuses a learning layer below them).

_F32 = np.float32


def resize_sample(x: Tensor, tgt: int, scale: float, rows: range, cols: range) -> Tensor:
    """§3.20 on NCHW x (side S): target pixels (ty, tx), ty in `rows`, tx in `cols`, of the
    (tgt, tgt) resize with `scale` source pixels per target pixel, in the engine's float32
    operations and order (op_params.h resize_sample): c = S/2 - (T/2)*scale; s = clamp(t*scale
    + c, 0, S - 1.01); u = floor(sx + 1) - sx, w = sy - floor(sy); top = u*(v00 - v01) + v01,
    bottom likewise, result w*(bottom - top) + top."""
    side = x.shape[-1]
    sc = _F32(scale)
    c = _F32(side) / _F32(2) - _F32(tgt) / _F32(2) * sc  # numpy float32 scalars: each step rounded
    hi = float(_F32(side) - _F32(1.01))

    def positions(ts: range) -> Tensor:
        t = torch.arange(ts.start, ts.stop, dtype=torch.float32, device=x.device)
        return torch.clamp(t * float(sc) + float(c), min=0.0, max=hi)

    sx, sy = positions(cols), positions(rows)
    fx, fy = torch.floor(sx), torch.floor(sy)
    u = (torch.floor(sx + 1.0) - sx).view(1, 1, 1, -1)
    w = (sy - fy).view(1, 1, -1, 1)
    x0, y0 = fx.long(), fy.long()
    r0, r1 = y0.view(-1, 1), (y0 + 1).view(-1, 1)
    c0, c1 = x0.view(1, -1), (x0 + 1).view(1, -1)
    v00, v01, v10, v11 = x[..., r0, c0], x[..., r0, c1], x[..., r1, c0], x[..., r1, c1]
    top = u * (v00 - v01) + v01
    bottom = u * (v10 - v11) + v11
    return w * (bottom - top) + top


def resize(x: Tensor, tgt: int, scale: float) -> Tensor:
    """§3.20: the (tgt, tgt) bilinear resize of NCHW x; tgt = floor(S/scale), the reader's side."""
    return resize_sample(x.detach(), tgt, scale, range(tgt), range(tgt))


def _channels(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    x = x.detach()
    return x[:, 0], x[:, 1], x[:, 2]


def _k(v: float) -> float:
    """A float32 constant of the engine's formulas (0.2126f ...), as a Python float."""
    return float(_F32(v))


def rgb2yuv(x: Tensor) -> Tensor:
    """§3.21: (R, G, B) -> (Y, U, V), products and sums in the engine's order (left to right)."""
    r, g, b = _channels(x)
    y = _k(0.2126) * r + _k(0.7152) * g + _k(0.0722) * b
    u = -_k(0.09991) * r - _k(0.33609) * g + _k(0.436) * b
    v = _k(0.615) * r - _k(0.55861) * g - _k(0.05639) * b
    return torch.stack([y, u, v], dim=1)


def rgb2lab(x: Tensor, center: bool) -> Tensor:
    """§3.21: (R, G, B) -> (L, a, b) with h(t) = t^0.3333 (exponent 0.3333, not 1/3) above
    0.0088564517, else 7.787037 t + 0.13793103; L = 116 h(Y) - 16, minus 50 with `center`."""
    r, g, b = _channels(x)
    X = _k(0.49) * r + _k(0.31) * g + _k(0.2) * b
    Y = _k(0.17697) * r + _k(0.8124) * g + _k(0.01063) * b
    Z = _k(0.01) * g + _k(0.99) * b

    def h(t: Tensor) -> Tensor:
        above = t > _k(0.0088564517)
        return torch.where(above, torch.pow(torch.where(above, t, torch.ones_like(t)), _k(0.3333)),
                           _k(7.787037) * t + _k(0.13793103))

    hx, hy, hz = h(X), h(Y), h(Z)
    L = 116.0 * hy - 16.0
    if center:
        L = L - 50.0
    return torch.stack([L, 500.0 * (hx - hy), 200.0 * (hy - hz)], dim=1)


def rscale_num_scales(img_size: int, tgt_size: int, max_scale: float) -> int:
    """§3.22: scale indices s = 0 .. num - 1, rescaled sides tgt + s up to min(floor(tgt *
    maxScale), S), as the engine's rscale_num_scales (op_params.h)."""
    return min(math.floor(tgt_size * max_scale), img_size) - tgt_size + 1


def rscale_draw(img_size: int, tgt_size: int, max_scale: float, u: Sequence[float]) -> tuple[int, float, int, int]:
    """§3.22: (s, factor, crop_y, crop_x) from four uniforms in [0, 1), in double as the
    engine's rscale_draw (op_params.h): s the first index whose cumulative weight (s+1)^2
    exceeds u0 * total; factor = lo + u1 * (hi - lo), lo = max(1, S/(R+1)), hi = S/R,
    R = tgt + s, rounded to float32; each offset floor(u * (s+1)), at most s."""
    num = rscale_num_scales(img_size, tgt_size, max_scale)
    total = 0.0
    for k in range(num):
        total += float((k + 1) * (k + 1))
    target = float(u[0]) * total
    s, cum = num - 1, 0.0
    for k in range(num):
        cum += float((k + 1) * (k + 1))
        if target < cum:
            s = k
            break
    big, rescaled = float(img_size), float(tgt_size + s)
    lo, hi = max(1.0, big / (rescaled + 1.0)), big / rescaled
    factor = float(_F32(lo + float(u[1]) * (hi - lo)))
    span = float(s + 1)
    return s, factor, min(int(float(u[2]) * span), s), min(int(float(u[3]) * span), s)


def rscale_check_draw(name: str, img_size: int, tgt_size: int, max_scale: float, draw: Sequence[float]) -> None:
    """An injected draw must be one the engine accepts (op_params.h rscale_load)."""
    num = rscale_num_scales(img_size, tgt_size, max_scale)
    s, factor, cy, cx = (float(v) for v in draw)

    def whole(v: float, hi: float) -> bool:
        return 0 <= v <= hi and v == math.floor(v)

    if not whole(s, num - 1) or not (factor > 0 and math.isfinite(factor)) or not (whole(cy, s) and whole(cx, s)):
        raise ReplayError(f"layer '{name}': rscale draws (s, factor, crop_y, crop_x) = {tuple(draw)} are not a "
                          f"draw of this layer (s in 0..{num - 1}, factor > 0, offsets in 0..s)")


def rscale(x: Tensor, tgt_size: int, draw: Sequence[float]) -> Tensor:
    """§3.22, a training pass with draw (s, factor, crop_y, crop_x): the (R, R) resize of NCHW
    x by factor, R = tgt + s (x itself when R == S), cropped at (crop_y, crop_x) to tgt."""
    s, factor, cy, cx = int(draw[0]), float(draw[1]), int(draw[2]), int(draw[3])
    x = x.detach()
    rescaled = tgt_size + s
    if rescaled == x.shape[-1]:
        return x[..., cy:cy + tgt_size, cx:cx + tgt_size].clone()
    return resize_sample(x, rescaled, factor, range(cy, cy + tgt_size), range(cx, cx + tgt_size))


# ---------------------------------------------------------------------------
# cost.tica (§3.29)


class _Tica(torch.autograd.Function):
    """§3.29 cost.tica on NCHW x: A = 1/(0.001 + sqrt(sum_W x^2)) (rnorm's window), the
    reported cost sum A (float64). Backward as written (§13 item 3): dE/dx = g * x * sum_W A
    on the overwrite path (`overwrite`: no later consumer of the input has added its
    gradient first), g * x * sqrt(sum_W A) on the accumulate path; W is the same window
    as the forward's, the adjoint only for odd sizes. Window sums in the engine's raster
    order, so A and its sums are the engine's bit for bit."""

    @staticmethod
    def forward(ctx, x: Tensor, size: int, overwrite: bool) -> Tensor:
        a = tica_a(x, size)
        ctx.save_for_backward(x, a)
        ctx.size, ctx.overwrite = size, overwrite
        return a.to(torch.float64).sum().reshape(1)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, a = ctx.saved_tensors
        sums = _window_sum(a, -(ctx.size // 2), ctx.size)
        k = g.reshape(()).to(x.dtype)
        return x * k * (sums if ctx.overwrite else _sqrtf(sums)), None, None


def _sqrtf(x: Tensor) -> Tensor:
    """The correctly rounded float32 square root (IEEE sqrtf, as the engine's): torch's
    vectorised float32 sqrt is not always (a last-bit difference in ~15% of values); the
    float64 root rounded to float32 is."""
    return torch.sqrt(x.to(torch.float64)).to(x.dtype)


def tica_a(x: Tensor, size: int) -> Tensor:
    """§3.29's A of NCHW x, float32: 1/(0.001 + sqrt(window sum of x^2))."""
    return 1.0 / (_k(0.001) + _sqrtf(_window_sum(x * x, -(size // 2), size)))


# ---------------------------------------------------------------------------
# cost.msm (§3.30): the release computed it on the CPU in double; so does the port, in
# numpy, with the engine's lattice (core/multisoftmax.h) and approximate logadd.

_MSM_NEG = -1e35


def _logadd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """§3.30's approximate log(e^a + e^b): the larger value past a gap of 15, plus exp(-gap)
    past 5, else the exact max + log(1 + exp(-gap)); -inf is -1e35."""
    hi = np.maximum(a, b)
    gap = np.abs(a - b)
    return np.where(gap > 15.0, hi, np.where(gap > 5.0, hi + np.exp(-gap), hi + np.log(1.0 + np.exp(-gap))))


def msm_marginals(energies: np.ndarray, set_size: int, forced: np.ndarray | None = None) -> np.ndarray:
    """P(i in S) under P(S) ~ exp(sum_{j in S} e_j), |S| = set_size, for energies (N, D)
    float32, in float64 by the engine's lattice (core/multisoftmax.h: a forward table over
    the classes in index order, a backward sweep, the logadds in the same order). `forced`
    (N,) class indices: the marginals given that class is in the set (its skip branch -1e35)."""
    e = energies.astype(np.float64)
    e = e - energies.max(axis=1, keepdims=True).astype(np.float64)
    n, d = e.shape
    k = set_size
    neg = np.full((n, 1), _MSM_NEG)
    table = np.empty((d + 1, n, k + 1))
    table[0] = _MSM_NEG
    table[0][:, 0] = 0.0
    for i in range(d):
        f = table[i]
        skip = f if forced is None else np.where((forced == i)[:, None], _MSM_NEG, f)
        take = np.concatenate([neg, f[:, :-1] + e[:, i:i + 1]], axis=1)
        table[i + 1] = _logadd(skip, take)
    log_z = table[d][:, k]
    out = np.empty((n, d))
    nxt = np.full((n, k + 1), _MSM_NEG)
    nxt[:, 0] = 0.0
    for i in range(d - 1, -1, -1):
        f = table[i]
        acc = np.full(n, _MSM_NEG)
        for j in range(k):
            acc = _logadd(acc, f[:, j] + nxt[:, k - 1 - j])
        out[:, i] = np.exp((acc + e[:, i]) - log_z)
        skip = nxt if forced is None else np.where((forced == i)[:, None], _MSM_NEG, nxt)
        take = np.concatenate([neg, nxt[:, :-1] + e[:, i:i + 1]], axis=1)
        nxt = _logadd(skip, take)
    return out


class _Msm(torch.autograd.Function):
    """§3.30 cost.msm on labels (N,) and energies (N, D): [-sum log p_label (float32 log of
    the float32 marginal), N - sum top-1 credit, N - sum top-k credit] (float64, k =
    set_size, the credits from the energies). Backward: d cost[0] / de = p - q (q the
    marginals with the label forced in), formed in double and rounded to float32 once, so
    the engine's coeff * (q - p) is -coeff times it."""

    @staticmethod
    def forward(ctx, labels: Tensor, energies: Tensor, set_size: int) -> Tensor:
        e = energies.detach().cpu().numpy()
        lab = labels.detach().reshape(-1).to(torch.long)
        p = msm_marginals(e, set_size)
        ctx.save_for_backward(lab)
        ctx.e, ctx.p, ctx.k, ctx.like = e, p, set_size, (energies.dtype, energies.device)
        p_label = torch.from_numpy(p[np.arange(len(p)), lab.cpu().numpy()].astype(np.float32))
        nll = -torch.log(p_label).to(torch.float64).sum()
        errs = _error_counts(lab.reshape(-1, 1), energies.detach(), set_size)
        return torch.cat([nll.reshape(1).to(energies.device), errs.to(energies.device)])

    @staticmethod
    def backward(ctx, g: Tensor):
        (lab,) = ctx.saved_tensors
        q = msm_marginals(ctx.e, ctx.k, lab.cpu().numpy())
        grad = float(g[0]) * (ctx.p - q)  # double, then one rounding to float32
        dtype, device = ctx.like
        return None, torch.from_numpy(grad.astype(np.float32)).to(device=device, dtype=dtype), None
