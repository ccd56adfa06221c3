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

from typing import TYPE_CHECKING, Sequence

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
    with torch.no_grad():
        p = probs.detach()
        pl = p_label.detach()
        top = p.amax(dim=1, keepdim=True)
        at_max = (p == top).sum(1).to(torch.float64)
        top1 = torch.where(pl.squeeze(1) == top.squeeze(1), 1.0 / at_max, torch.zeros_like(at_max))
        above = (p > pl).sum(1)
        equal = (p == pl).sum(1).to(torch.float64)
        slots = (topk - above).to(torch.float64)
        topk_credit = torch.where(slots <= 0, torch.zeros_like(slots),
                                  torch.where(equal <= slots, torch.ones_like(slots), slots / equal))
        errs = torch.stack([n - top1.sum(), n - topk_credit.sum()])
    return torch.cat([nll.reshape(1), errs.to(nll.device)])


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
