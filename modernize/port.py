"""The release's networks in PyTorch: today's NCHW layout, autograd, a torch optimizer.

>>> from alexnet_replay.original.shownet import load
>>> config, _ = load("paper-2012")            # the parsed cfg files (layers and parameters)
>>> net = build_module(config, seed=1)        # the weights alexnet_replay.load(..., seed=1) draws
>>> out = net([images, labels], train=True)   # images (N, C, H, W) float32, labels (N,)
>>> out["conv1a"].shape, out["logprob"]       # every layer's output by name, and the costs
>>> net.objective(out).backward()             # E = sum over cost layers of coeff * cost[0]

What the port computes is the engine's network (engine.md §3), not a
re-interpretation of it. Where a standard PyTorch operation is exactly the
release's operation it is used; where it is not, a small explicit operation is:

* conv: grouped ``F.conv2d``; the ceiling in ``modulesX = 1 + ceil((2p + S - K)/st)``
  is explicit extra zero padding on the bottom and right (§3.4); random sparse
  connectivity gathers the input channels by the connection table, then runs a
  grouped conv (index_select's backward sums the copies, as §3.4's overSample sum).
* local (unshared): ``F.unfold`` and one product per module.
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

Sign and scale (§1.1): the port's loss is E, summed over the cases, so
``param.grad = dE/dW``; the engine's gradients are ``-dE/d(output)`` and
``G = -(1/N) dE/dW``. :func:`engine_gradients` returns the port's gradients in the
engine's convention and layouts. :class:`ReleaseSGD` applies §4.2 from ``param.grad``.

Layouts (§1.3): the state dict holds PyTorch layouts -- conv ``(F, Cg, K, K)``, fc
``(Dout, Din)``, local ``(MY, MX, F, Cg, K, K)``, biases ``(F,)``, or ``(F, MY, MX)``
when unshared -- under ``<layer>.weight.<input>`` and ``<layer>.bias``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ReplayError
from ..original.layers import Layer, Network, parse_neuron

SUPPORTED = ("data", "conv", "local", "fc", "pool", "rnorm", "cnorm", "cmrnorm", "neuron", "softmax", "hs",
             "eltsum", "eltmax", "concat", "nailbed", "blur", "href", "cost.logreg", "cost.sum2")
WEIGHT_TYPES = ("conv", "local", "fc")
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
# The module


def draw_conns(config: Network, seed: int) -> dict[str, list[list[int] | None]]:
    """Connection tables of random sparse conv/local inputs (§3.4) as the engine draws them.

    engine.py builds the layer specs in execution order from
    ``numpy.random.RandomState(seed)`` before any weight is drawn; for each input with
    randSparse it concatenates overSample permutations of its channels. This replays
    that order, so ``build_module(config, seed=s)`` and ``alexnet_replay.load(..., seed=s)``
    share their connection tables.
    """
    rng = np.random.RandomState(seed)
    tables: dict[str, list[list[int] | None]] = {}
    for layer in config.layers.values():
        if layer.type in ("conv", "local"):
            a = layer.attrs
            tables[layer.name] = [
                [int(v) for _ in range(a["overSample"][i]) for v in rng.permutation(a["channels"][i])]
                if a["randSparse"][i] else None
                for i in range(len(layer.inputs))]
    return tables


@dataclass(frozen=True)
class _ConvGeom:
    channels: int
    img: int
    size: int
    pad: int
    stride: int
    groups: int
    fchan: int       # Cg, channels per filter
    modules_x: int
    filters: int     # F, all groups

    @property
    def extra(self) -> int:
        """Implicit zero rows/cols on the bottom/right beyond the padding (§3.4)."""
        return max(0, (self.modules_x - 1) * self.stride + self.size - (self.img + 2 * self.pad))


def _conv_geoms(layer: Layer) -> list[_ConvGeom]:
    a = layer.attrs
    return [_ConvGeom(a["channels"][i], a["imgSize"][i], a["filterSize"][i], -a["padding"][i], a["stride"][i],
                      a["groups"][i], a["filterChannels"][i], a["modulesX"], layer.image[0])
            for i in range(len(layer.inputs))]


def weight_shape(layer: Layer, i: int) -> tuple[int, ...]:
    """PyTorch shape of weight matrix `i` of `layer` in the port's state dict."""
    if layer.type == "fc":
        rows, cols = layer.weights[i]
        return (cols, rows)
    g = _conv_geoms(layer)[i]
    if layer.type == "conv":
        return (g.filters, g.fchan, g.size, g.size)
    return (g.modules_x, g.modules_x, g.filters, g.fchan, g.size, g.size)


def bias_shape(layer: Layer) -> tuple[int, ...]:
    if layer.type == "fc":
        return (layer.outputs,)
    f, mx = layer.image
    if layer.type == "conv" and layer.attrs.get("sharedBiases", True):
        return (f,)
    return (f, mx, mx)


class _WeightLayer(nn.Module):
    """Holds one layer's weights (one per input, shared ones by reference) and bias."""

    def __init__(self, layer: Layer, weights: list[nn.Parameter]) -> None:
        super().__init__()
        self.weight = nn.ParameterList(weights)
        self.bias = nn.Parameter(torch.zeros(bias_shape(layer)))


class ReleaseNet(nn.Module):
    """A parsed release network (``alexnet_replay.original``) as a torch module, NCHW.

    ``forward(data, train=None, masks=None, noise=None)``: ``data`` is a list indexed by
    dataIdx, or a dict {dataIdx: tensor}: images (N, C, H, W) (or (N, C*H*W)), labels
    (N,) of class indices (float or int). Returns a dict: every layer's output by name
    ((N, C, H, W) for images, (N, D) otherwise; data layers too, labels as (N, 1)) and,
    for each cost layer, its costs as a float64 vector: logreg [sum of -log p_label,
    top-1 errors, top-k errors], sum2 [sum of x^2] -- sums over the cases (§3.23);
    entry 0 carries the gradient. ``masks`` gives dropout masks by layer name (0/1, the
    layer's output shape); in a train pass any mask not given is drawn and left in
    :attr:`last_masks`. ``noise`` gives nrelu noise by layer name (drawn if missing).
    """

    def __init__(self, config: Network, conns: Mapping[str, Sequence[Sequence[int] | None]] | None = None,
                 seed: int = 0, init: bool = True) -> None:
        super().__init__()
        self.config = config
        self.generator: torch.Generator | None = None  # for masks and noise the caller does not give
        self.last_masks: dict[str, Tensor] = {}
        self.last_noise: dict[str, Tensor] = {}
        layers = config.layers
        drawn = draw_conns(config, seed) if conns is None else {}
        self._weight_layers: dict[str, _WeightLayer] = {}
        self._neurons: dict[str, tuple[str, float, float]] = {}
        for layer in layers.values():
            self._check(layer)
            if layer.type == "neuron":
                kind, numbers = parse_neuron(layer.neuron or "", lambda why: ReplayError(
                    f"layer '{layer.name}': {why}"))
                self._neurons[layer.name] = (kind, *(list(numbers) + [0.0, 0.0])[:2])
            if layer.type in WEIGHT_TYPES:
                params = []
                for i, src in enumerate(layer.weight_sources):
                    if src is not None:
                        owner = self._weight_layers[src[0]] if src[0] != layer.name else None
                        params.append(owner.weight[src[1]] if owner is not None else params[src[1]])
                    else:
                        params.append(nn.Parameter(torch.zeros(weight_shape(layer, i))))
                mod = _WeightLayer(layer, params)
                if "." in layer.name or (hasattr(self, layer.name) and layer.name not in self._modules):
                    raise ReplayError(f"layer '{layer.name}': the name cannot be a torch module name "
                                      "(it contains '.' or is an attribute of nn.Module)")
                self.add_module(layer.name, mod)
                self._weight_layers[layer.name] = mod
            if layer.type in ("conv", "local"):
                tables = (conns or {}).get(layer.name) if conns is not None else drawn[layer.name]
                for i, g in enumerate(_conv_geoms(layer)):
                    table = tables[i] if tables is not None and i < len(tables) else None
                    if layer.attrs["randSparse"][i]:
                        if table is None or len(table) != g.groups * g.fchan:
                            raise ReplayError(f"layer '{layer.name}': input {i} needs a connection table of "
                                              f"{g.groups * g.fchan} channels (groups x filterChannels)")
                        buf = torch.tensor(list(table), dtype=torch.long)
                        if buf.min() < 0 or buf.max() >= g.channels:
                            raise ReplayError(f"layer '{layer.name}': connection table of input {i} names a "
                                              f"channel outside 0..{g.channels - 1}")
                        self.register_buffer(f"_conns_{layer.name}_{i}", buf, persistent=False)
        # §13 item 8: href's backward overwrites its input's gradient; uses of that input by
        # layers after the href (in execution order) contribute nothing.
        self._detached: set[tuple[str, str]] = set()
        order = list(layers)
        for pos, layer in enumerate(layers.values()):
            if layer.type != "href":
                continue
            for later in order[pos + 1:]:
                if layer.inputs[0] in layers[later].inputs:
                    self._detached.add((later, layer.inputs[0]))
        # §3.12: a softmax whose only consumer is a cost.logreg (as its probabilities) takes
        # the fused gradient coeff * (onehot - p); see _FusedSoftmax.
        self._fused_softmax: set[str] = set()
        for layer in layers.values():
            users = [u for u in layers.values() if layer.name in u.inputs]
            if layer.type == "softmax" and len(users) == 1 and users[0].type == "cost.logreg" and \
                    users[0].inputs[1] == layer.name:
                self._fused_softmax.add(layer.name)
        if init:
            self.init_release(seed)

    # -- construction --------------------------------------------------------
    @staticmethod
    def _check(layer: Layer) -> None:
        if layer.type not in SUPPORTED:
            raise ReplayError(f"layer '{layer.name}': the port has no '{layer.type}' layer "
                              f"(supported: {', '.join(SUPPORTED)})")
        if layer.type == "pool" and layer.attrs["pool"] == "rand" and not layer.params.get("doMax"):
            raise ReplayError(f"layer '{layer.name}': pool=rand without doMax uses a kernel that was never "
                              "published (engine.md §3.6); only doMax=1 (max pooling) is supported")

    def init_release(self, seed: int) -> None:
        """Weights as the engine draws them (engine.md §4.1, engine.py): after the connection
        tables, ``initW * randn(rows, cols)`` in float64 per owned matrix in layer order, in
        the release's layout, cast to float32; biases ``initB``."""
        rng = np.random.RandomState(seed)
        draw_conns_rng(self.config, rng)
        for layer in self.config.layers.values():
            if layer.type not in WEIGHT_TYPES:
                continue
            for key in ("initWFunc", "initBFunc", "initCFunc"):
                if key in layer.attrs:
                    raise ReplayError(f"layer '{layer.name}': {key}={layer.attrs[key]} imports Python code "
                                      "from the release; build with init=False and set the weights")
            mod = self._weight_layers[layer.name]
            with torch.no_grad():
                for i, (rows, cols) in enumerate(layer.weights):
                    if layer.weight_sources[i] is None:
                        w = (layer.attrs["initW"][i] * rng.standard_normal((rows, cols))).astype(np.float32)
                        mod.weight[i].copy_(weight_from_engine(layer, i, w))
                mod.bias.fill_(float(np.float32(layer.attrs["initB"])))

    def weight_layer(self, name: str) -> _WeightLayer:
        return self._weight_layers[name]

    # -- forward -------------------------------------------------------------
    def forward(self, data: Sequence[Any] | Mapping[int, Any], train: bool | None = None,
                masks: Mapping[str, Tensor] | None = None,
                noise: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        train = self.training if train is None else train
        masks = dict(masks or {})
        noise = dict(noise or {})
        out: dict[str, Tensor] = {}
        self.last_masks, self.last_noise = {}, {}
        for layer in self.config.layers.values():
            if layer.type == "data":
                out[layer.name] = self._data(layer, data)
                continue
            xs = [out[i].detach() if (layer.name, i) in self._detached else out[i] for i in layer.inputs]
            if layer.name in self._fused_softmax:
                n = xs[0].shape[0]
                out[layer.name] = _FusedSoftmax.apply(xs[0].reshape(n, -1)).reshape(n, *layer.shape)
            elif layer.type == "cost.logreg" and layer.inputs[1] in self._fused_softmax:
                n = xs[0].shape[0]
                out[layer.name] = _logreg_costs(xs[0], xs[1].reshape(n, -1), layer.params.get("topk", 1), fused=True)
            else:
                out[layer.name] = self._run(layer, xs, train, masks, noise)
        return out

    def layer_forward(self, name: str, inputs: Sequence[Tensor], train: bool | None = None,
                      masks: Mapping[str, Tensor] | None = None,
                      noise: Mapping[str, Tensor] | None = None) -> Tensor:
        """One layer on given inputs (its input layers' outputs, in order; any layout with
        the right number of values per case): its output, or its costs for a cost layer."""
        layer = self.config.layers[name]
        if layer.type == "data":
            raise ReplayError(f"layer '{name}' is a data layer")
        train = self.training if train is None else train
        return self._run(layer, list(inputs), train, dict(masks or {}), dict(noise or {}))

    def _run(self, layer: Layer, xs: list[Tensor], train: bool, masks: dict[str, Tensor],
             noise: dict[str, Tensor]) -> Tensor:
        y = self._layer(layer, xs, train, masks, noise)
        return y if layer.is_cost else y.reshape(y.shape[0], *layer.shape)

    def _data(self, layer: Layer, data: Sequence[Any] | Mapping[int, Any]) -> Tensor:
        idx = layer.attrs["dataIdx"]
        try:
            value = data[idx]
        except (KeyError, IndexError):
            raise ReplayError(f"layer '{layer.name}': no data matrix {idx} given") from None
        dtype = self._dtype()
        t = torch.as_tensor(value)
        t = t.to(device=self._device(), dtype=dtype)
        n = t.shape[0]
        if t.numel() != n * layer.outputs:
            raise ReplayError(f"layer '{layer.name}': data matrix {idx} has {t.numel() // max(n, 1)} values per "
                              f"case, the network needs {layer.outputs} (shape {layer.shape})")
        return t.reshape(n, *layer.shape)

    def _dtype(self) -> torch.dtype:
        p = next(self.parameters(), None)
        return p.dtype if p is not None else torch.float32

    def _device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _layer(self, layer: Layer, xs: list[Tensor], train: bool,
               masks: dict[str, Tensor], noise: dict[str, Tensor]) -> Tensor:
        t, a, p = layer.type, layer.attrs, layer.params
        n = xs[0].shape[0]
        if t == "conv" or t == "local":
            return self._conv(layer, xs)
        if t == "fc":
            mod = self._weight_layers[layer.name]
            y = F.linear(xs[0].reshape(n, -1), mod.weight[0], mod.bias)  # §1.4: bias right after input 0
            for i in range(1, len(xs)):
                y = y + F.linear(xs[i].reshape(n, -1), mod.weight[i])
            return y
        if t == "pool":  # rand reaches here only with doMax (checked at build): max pooling
            kind = "max" if a["pool"] == "rand" else a["pool"]
            x = self._image(xs[0], a["channels"], a["imgSize"])
            return pool2d(x, kind, a["sizeX"], a["stride"], a["start"], a["outputsX"])
        if t in ("rnorm", "cnorm"):
            x = self._image(xs[0], a["channels"], a["imgSize"])
            return spatial_norm(x, a["size"], p["scale"], p["pow"], contrast=t == "cnorm")
        if t == "cmrnorm":
            x = self._image(xs[0], a["channels"], a["imgSize"])
            return cross_map_norm(x, a["size"], p["scale"], p["pow"], p.get("minDiv", 1.0), a.get("blocked", False))
        if t == "neuron":
            kind, na, nb = self._neurons[layer.name]
            eps = None
            if kind == "nrelu":
                eps = noise.get(layer.name)
                if eps is None:
                    eps = self._draw(torch.randn, xs[0])
                eps = eps.reshape(xs[0].shape).to(xs[0])
                self.last_noise[layer.name] = eps
            return _neuron(kind, na, nb, xs[0], eps)
        if t == "softmax":
            return F.softmax(xs[0].reshape(n, -1), dim=1)
        if t == "hs":
            x = xs[0]
            if train and p.get("enable", True):
                m = masks.get(layer.name)
                if m is None:
                    m = (self._draw(torch.rand, x) < a["keep"]).to(x.dtype)
                m = m.reshape(x.shape).to(x)
                self.last_masks[layer.name] = m
                return x * m  # no rescaling at train time (§3.16)
            return x * float(np.float32(a["keep"]))
        if t == "eltsum":
            coeffs = a["coeffs"]
            y = xs[0].reshape(n, -1) * float(np.float32(coeffs[0]))
            for i in range(1, len(xs)):
                y = y + xs[i].reshape(n, -1) * float(np.float32(coeffs[i]))
            return y
        if t == "eltmax":
            return _EltMax.apply(*[x.reshape(n, -1) for x in xs])
        if t == "concat":
            return torch.cat([x.reshape(n, -1) for x in xs], dim=1)
        if t == "nailbed":
            x = self._image(xs[0], a["channels"], a["imgSize"])
            s0, st, ox = a["start"], a["stride"], a["outputsX"]
            return x[:, :, s0::st, s0::st][:, :, :ox, :ox]
        if t == "blur":  # float32 taps, as the engine holds them
            taps = [float(np.float32(v)) for v in a["filter"]]
            return blur(self._image(xs[0], a["channels"], a["imgSize"]), taps)
        if t == "href":
            return self._image(xs[0], a["channels"], a["imgSize"]).flip(-1)
        if t == "cost.logreg":
            return _logreg_costs(xs[0], xs[1].reshape(n, -1), p.get("topk", 1))
        if t == "cost.sum2":
            x = xs[0]
            return (x * x).to(torch.float64).sum().reshape(1)
        raise ReplayError(f"layer '{layer.name}': the port has no '{t}' layer")  # pragma: no cover

    def _draw(self, fn, like: Tensor) -> Tensor:
        """A draw shaped like `like` from :attr:`generator` (torch's default one when None)."""
        if self.generator is None:
            return fn(like.shape, device=like.device, dtype=like.dtype)
        return fn(like.shape, generator=self.generator, device=self.generator.device, dtype=like.dtype).to(like)

    @staticmethod
    def _image(x: Tensor, channels: int, side: int) -> Tensor:
        return x.reshape(x.shape[0], channels, side, side)

    def _conv(self, layer: Layer, xs: list[Tensor]) -> Tensor:
        mod = self._weight_layers[layer.name]
        y = None
        for i, g in enumerate(_conv_geoms(layer)):
            x = self._image(xs[i], g.channels, g.img)
            if layer.attrs["randSparse"][i]:
                x = x.index_select(1, getattr(self, f"_conns_{layer.name}_{i}"))
            pad = (g.pad, g.pad + g.extra, g.pad, g.pad + g.extra)
            if any(pad):
                x = F.pad(x, pad)
            if layer.type == "conv":
                part = F.conv2d(x, mod.weight[i], stride=g.stride, groups=g.groups)
            else:
                part = _local(x, mod.weight[i], g)
            if i == 0:  # §1.4: the bias right after the first input
                b = mod.bias
                part = part + (b.view(1, -1, 1, 1) if b.dim() == 1 else b.unsqueeze(0))
                y = part
            else:
                y = y + part
        return y

    # -- the objective ---------------------------------------------------------
    def objective(self, out: Mapping[str, Tensor]) -> Tensor:
        """E = sum over cost layers of coeff * cost[0], costs summed over the cases (§1.1)."""
        total = None
        for layer in self.config.layers.values():
            if layer.is_cost:
                term = float(layer.params.get("coeff", 1.0)) * out[layer.name][0]
                total = term if total is None else total + term
        if total is None:
            raise ReplayError("the network has no cost layer")
        return total


def draw_conns_rng(config: Network, rng: np.random.RandomState) -> None:
    """Advance `rng` past the connection-table draws of engine.py (see :func:`draw_conns`)."""
    for layer in config.layers.values():
        if layer.type in ("conv", "local"):
            a = layer.attrs
            for i in range(len(layer.inputs)):
                if a["randSparse"][i]:
                    for _ in range(a["overSample"][i]):
                        rng.permutation(a["channels"][i])


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


def build_module(config: Network, conns: Mapping[str, Sequence[Sequence[int] | None]] | None = None,
                 seed: int = 0, init: bool = True) -> ReleaseNet:
    """The network of `config` as a :class:`ReleaseNet`.

    Connection tables of random sparse inputs come from `conns` ({layer: [table or None
    per input]}) or, when None, from the engine's draw with `seed` (:func:`draw_conns`).
    With `init`, weights and biases are the engine's initial ones for the same seed.
    Any layer type outside :data:`SUPPORTED` raises ReplayError naming the layer.
    """
    return ReleaseNet(config, conns, seed, init)


# ---------------------------------------------------------------------------
# Layout converters (§1.2, §1.3)


def to_engine_acts(t: Tensor) -> Tensor:
    """(N, ...) batch-first -> (D, N) case fastest, the engine's activation layout."""
    return t.reshape(t.shape[0], -1).t().contiguous()


def from_engine_acts(a: Any, layer: Layer) -> Tensor:
    """(D, N) case fastest -> (N, *layer.shape)."""
    t = torch.as_tensor(np.ascontiguousarray(a))
    return t.t().reshape(t.shape[1], *layer.shape).contiguous()


def weight_from_engine(layer: Layer, i: int, w: Any) -> Tensor:
    """The release's matrix `i` of `layer` (its (rows, cols) logical shape) -> the port's layout."""
    w = np.asarray(w, dtype=np.float32)
    if layer.type == "fc":  # (Din, Dout) -> (Dout, Din)
        return torch.from_numpy(np.ascontiguousarray(w.T))
    g = _conv_geoms(layer)[i]
    k = g.size
    if layer.type == "conv":  # (Cg*K*K, F) C-order -> (F, Cg, K, K)
        return torch.from_numpy(np.ascontiguousarray(w.reshape(g.fchan, k, k, g.filters).transpose(3, 0, 1, 2)))
    mx = g.modules_x  # local (M*Cg*K*K, F) -> (MY, MX, F, Cg, K, K)
    return torch.from_numpy(np.ascontiguousarray(
        w.reshape(mx, mx, g.fchan, k, k, g.filters).transpose(0, 1, 5, 2, 3, 4)))


def weight_to_engine(layer: Layer, i: int, t: Tensor, copy: bool = True) -> np.ndarray:
    """The port's weight `i` of `layer` -> the release's (rows, cols) matrix (float32, logical shape).

    `copy=False` lets an fc weight come back as a transposed view of the tensor's memory
    (the release's Fortran-order matrix is the port's (Dout, Din) matrix as it lies), for
    a comparison made at once; the view follows the tensor if it changes later."""
    w = t.detach().to("cpu", torch.float32).numpy()
    if layer.type == "fc":
        return np.ascontiguousarray(w.T) if copy else w.T
    g = _conv_geoms(layer)[i]
    if layer.type == "conv":
        return np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(-1, g.filters))
    return np.ascontiguousarray(w.transpose(0, 1, 3, 4, 5, 2).reshape(-1, g.filters))


def bias_from_engine(layer: Layer, b: Any) -> Tensor:
    """(F, 1), (F*M, 1) or (1, Dout) -> (F,), (F, MY, MX) or (Dout,)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(b, dtype=np.float32)).reshape(bias_shape(layer)).copy())


def bias_to_engine(layer: Layer, t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().reshape(layer.biases).copy()


def state_dict_from_engine(net: Any) -> dict[str, Tensor]:
    """The engine net's weights and biases as a port state dict (``<layer>.weight.<i>``, ``<layer>.bias``).

    Shared matrices (weightSource) appear under every layer that uses them, as in the
    port's own state dict. Connection tables are not weights: build the module with
    the engine's seed (or pass them) to get the same ones.
    """
    state: dict[str, Tensor] = {}
    for layer in net.config.layers.values():
        if layer.type in WEIGHT_TYPES:
            for i in range(len(layer.inputs)):
                state[f"{layer.name}.weight.{i}"] = weight_from_engine(layer, i, net.weights(layer.name, i))
            state[f"{layer.name}.bias"] = bias_from_engine(layer, net.biases(layer.name))
    return state


def load_engine_weights(module: ReleaseNet, net: Any) -> None:
    """Copy the engine net's weights and biases into `module` (in place)."""
    module.load_state_dict(state_dict_from_engine(net), strict=True)


def copy_to_engine(state: Mapping[str, Tensor] | ReleaseNet, net: Any) -> None:
    """Write a port state dict (or a module's weights) into the engine net's matrices."""
    if isinstance(state, nn.Module):
        state = state.state_dict()
    for layer in net.config.layers.values():
        if layer.type not in WEIGHT_TYPES:
            continue
        for i, src in enumerate(layer.weight_sources):
            if src is None:
                net.set_weights(layer.name, weight_to_engine(layer, i, state[f"{layer.name}.weight.{i}"]), i)
        net.set_biases(layer.name, bias_to_engine(layer, state[f"{layer.name}.bias"]))


def masks_to_engine(module: ReleaseNet, net: Any, masks: Mapping[str, Tensor] | None = None,
                    noise: Mapping[str, Tensor] | None = None) -> None:
    """Write dropout masks and nrelu noise (default: those of the module's last forward)
    into the engine net, and make it use them instead of drawing its own (§3.16)."""
    net.inject_masks = True
    for name, m in (module.last_masks if masks is None else masks).items():
        m2 = to_engine_acts(m.detach().cpu()).numpy()
        net.set_mask(name, m2)
    for name, e in (module.last_noise if noise is None else noise).items():
        e2 = to_engine_acts(e.detach().cpu()).numpy()
        net.set_noise(name, e2)


# ---------------------------------------------------------------------------
# Gradients in the engine's convention (§1.1)


@dataclass
class EngineGradients:
    """What the engine holds after a backward, computed by the port.

    acts_grad[name]: -dE/d(output) as a tensor (D, N), case fastest, for every layer whose
    output depends on a parameter (zeros where E does not depend on it).
    weight_grad[(name, i)], bias_grad[name]: G = -(1/N) dE/dW as float32 numpy arrays in
    the release's layouts (the logical (rows, cols) shape of ``net.weights(name, i)`` /
    ``net.biases(name)``); a shared matrix carries the sum over its uses under every name.
    """

    acts_grad: dict[str, Tensor]
    weight_grad: dict[tuple[str, int], np.ndarray]
    bias_grad: dict[str, np.ndarray]


def engine_gradients(module: ReleaseNet, out: Mapping[str, Tensor]) -> EngineGradients:
    """-dE/d(every layer output) and -(1/N) dE/d(every weight) of one forward's outputs."""
    config = module.config
    names = [l.name for l in config.layers.values() if not l.is_cost and out[l.name].requires_grad]
    params: list[tuple[str, int | None, Tensor]] = []
    for layer in config.layers.values():
        if layer.type in WEIGHT_TYPES:
            mod = module.weight_layer(layer.name)
            params += [(layer.name, i, w) for i, w in enumerate(mod.weight)] + [(layer.name, None, mod.bias)]
    tensors = [out[n] for n in names] + [p for *_, p in params]
    grads = torch.autograd.grad(module.objective(out), tensors, allow_unused=True)
    n_cases = next(out[l.name] for l in config.layers.values() if l.type == "data").shape[0]
    acts = {}
    for name, g in zip(names, grads[:len(names)]):
        acts[name] = to_engine_acts(-(torch.zeros_like(out[name]) if g is None else g))
    weight_grad, bias_grad = {}, {}
    for (name, i, p), g in zip(params, grads[len(names):]):
        g = torch.zeros_like(p) if g is None else g
        layer = config.layers[name]
        gm = g * (-1.0 / n_cases)
        if i is None:
            bias_grad[name] = bias_to_engine(layer, gm)
        else:
            weight_grad[(name, i)] = weight_to_engine(layer, i, gm)
    return EngineGradients(acts, weight_grad, bias_grad)


# ---------------------------------------------------------------------------
# The release's optimizer (§4.2, §4.3)


def schedule_rate(kind: str, base: float, progress: float, tgt_factor: float = 1.0, noise_stdev: float = 0.0,
                  num_steps: int = 1, z: float = 0.0) -> float:
    """§4.3 learning rate at progress p in [0, 1] (clipped), times 1 + |z|*noiseStdev. Doubles."""
    p = min(max(progress, 0.0), 1.0)
    final = base / tgt_factor

    def exp_rate(q: float) -> float:  # base^(1 + q*(ln final/ln base - 1)), as the release wrote it
        if base == 0.0:
            return 0.0
        return base ** (1.0 + q * (math.log(final) / math.log(base) - 1.0))

    if kind == "default":
        rate = base
    elif kind == "linear":
        rate = base * (1.0 - p) + final * p
    elif kind == "exp":
        rate = exp_rate(p)
    elif kind in ("dexp", "jdexp"):
        k = max(1, num_steps)
        level = min(max(math.ceil(p * k) - 1, 0), k - 1)  # level i serves p in (i/k, (i+1)/k]

        def level_rate(i: int) -> float:
            return final if i == k - 1 else exp_rate(i / (k - 1))

        rate = level_rate(level)
        if kind == "jdexp" and level > 0 and 0.2 < p < 0.9 and p > (level + 0.5) / k:
            rate = math.sqrt(rate * level_rate(level - 1))
    else:
        raise ValueError(f"unknown schedule type '{kind}' (default, linear, exp, dexp, jdexp)")
    return rate * (1.0 + abs(z) * noise_stdev)


def _schedule_args(sched: Any) -> dict:
    if sched is None:
        return {"kind": "default"}
    p = dict(sched.params)
    return {"kind": sched.type, "tgt_factor": float(p.get("tgtFactor", 1.0)),
            "noise_stdev": float(p.get("noiseStdev", 0.0)), "num_steps": int(p.get("numSteps", 1))}


def release_param_groups(module: ReleaseNet) -> list[dict]:
    """One parameter group per owned matrix and per bias, with the parameter file's
    eps/mom/wc/schedule and the constraints (wball x fan-in, wcNormMin/Max)."""
    groups = []
    for layer in module.config.layers.values():
        if layer.type not in WEIGHT_TYPES:
            continue
        p = layer.params
        if "epsW" not in p:
            raise ReplayError(f"layer '{layer.name}': the optimizer needs its learning parameters "
                              "(give the layer-parameter file)")
        if p.get("superEps", 0.0) > 0:
            raise ReplayError(f"layer '{layer.name}': superEps (engine.md §4.4) is not implemented")
        mod = module.weight_layer(layer.name)
        for i, src in enumerate(layer.weight_sources):
            if src is None:
                groups.append({"params": [mod.weight[i]], "name": f"{layer.name}.weight.{i}", "kind": layer.type,
                               "eps": p["epsW"][i], "mom": p["momW"][i], "wc": p["wc"][i],
                               "schedule": _schedule_args(p["schedW"]), "wball": p["wballNormed"][i],
                               "norm_min": p.get("wcNormMin", [0.0] * (i + 1))[i],
                               "norm_max": p.get("wcNormMax", [0.0] * (i + 1))[i]})
        groups.append({"params": [mod.bias], "name": f"{layer.name}.bias", "kind": "bias", "eps": p["epsB"],
                       "mom": p["momB"], "wc": 0.0, "schedule": _schedule_args(p["schedB"]),
                       "wball": 0.0, "norm_min": 0.0, "norm_max": 0.0})
    return groups


def _f32(v: float) -> float:
    return float(np.float32(v))


class ReleaseSGD(torch.optim.Optimizer):
    """The release's momentum update (engine.md §4.2), per matrix:

        G   = -(1/N) dE/dW          (= -param.grad / N: the port's loss E is summed over cases)
        inc <- mom * inc + eps * G
        inc <- inc + (-wc * eps) * W      if wc > 0
        W   <- W + inc

    then the constraints (§3.2, §3.4: max-norm ``wball`` per output vector, conv's
    ``wcNormMin/Max``). The learning rate sits inside the momentum term and the decay is
    multiplied by it; with the mean loss L = E/N this is ``v <- mu v - eps dL/dw -
    eps wc w; w <- w + v``, the paper's rule. torch.optim.SGD (``v <- mu v + g + wc w;
    w <- w - lr v``) is the same only while the rate is constant.

    Each group carries ``eps`` (base rate), ``mom``, ``wc``, ``schedule`` (§4.3) and
    ``lr`` (the scheduled rate of the coming step, float32 like the engine's kernels);
    :meth:`set_progress` sets ``lr``. :meth:`step` needs the minibatch size N. A
    parameter without a gradient is left alone, as the engine skips matrices that got
    no gradient. Matrices with base rate 0 never move.
    """

    def __init__(self, params: Iterable[Any], eps: float = 0.01, mom: float = 0.9, wc: float = 0.0,
                 schedule: dict | None = None) -> None:
        defaults = {"eps": eps, "mom": mom, "wc": wc, "schedule": schedule or {"kind": "default"},
                    "wball": 0.0, "norm_min": 0.0, "norm_max": 0.0, "kind": "other", "name": ""}
        super().__init__(params, defaults)
        for group in self.param_groups:
            group.setdefault("lr", _f32(group["eps"]))

    @classmethod
    def for_module(cls, module: ReleaseNet) -> "ReleaseSGD":
        return cls(release_param_groups(module))

    def set_progress(self, progress: float, z: float | Mapping[str, float] | torch.Generator | None = None) -> None:
        """Rates of the coming steps at schedule progress p (§4.3). Noise draws z ~ N(0,1):
        one per matrix from `z` (a number, a {group name: z} map, or a generator; default
        a fresh draw from torch's generator) -- used only where noiseStdev > 0."""
        for group in self.param_groups:
            s = dict(group["schedule"])
            kind = s.pop("kind")
            zz = 0.0
            if s.get("noise_stdev", 0.0) > 0:
                if isinstance(z, Mapping):
                    zz = float(z[group["name"]])
                elif isinstance(z, (int, float)):
                    zz = float(z)
                else:
                    zz = float(torch.randn((), generator=z))
            group["lr"] = _f32(schedule_rate(kind, group["eps"], progress, z=zz, **s))

    @torch.no_grad()
    def step(self, cases: int, closure=None):  # type: ignore[override]
        if cases < 1:
            raise ValueError(f"cases must be >= 1 (got {cases})")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        scale = _f32(-1.0 / cases)
        for group in self.param_groups:
            if group["eps"] <= 0:
                continue  # §4.2: a matrix with base rate 0 gets no gradient and no update
            eps, mom, wc = group["lr"], _f32(group["mom"]), _f32(group["wc"])
            decay = _f32(np.float32(-wc) * np.float32(eps))
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "inc" not in state:
                    state["inc"] = torch.zeros_like(p)
                inc = state["inc"]
                g = p.grad * scale                       # G = -(1/N) dE/dW
                g.mul_(eps)                              # separate roundings, as the engine's kernel:
                inc.mul_(mom).add_(g)                    # inc*mom, G*eps, their sum (in place, no FMA)
                if wc > 0:
                    inc.add_(torch.mul(p, decay, out=g))
                p.add_(inc)
                _constrain(p, group)
        return loss


def _constrain(p: Tensor, group: dict) -> None:
    """§3.4 wcNormMin/Max (conv) then §3.2/§3.4/§3.5 max-norm on each output vector."""
    kind = group.get("kind")
    if kind not in ("conv", "fc", "local"):
        return
    dims = {"conv": (1, 2, 3), "fc": (1,), "local": (3, 4, 5)}[kind]
    if kind == "conv" and group.get("norm_max", 0.0) > 0:
        length = p[0].numel()
        mean = p.sum(dim=dims, keepdim=True) / float(length)
        a = torch.sqrt(((p - mean) ** 2).sum(dim=dims, keepdim=True)) / float(length)
        lo, hi = _f32(group["norm_min"]), _f32(group["norm_max"])
        factor = torch.where(a < lo, lo / a, torch.where(a > hi, hi / a, torch.ones_like(a)))
        p.mul_(factor)
    bound = _f32(group.get("wball", 0.0))
    if bound > 0:
        norm = torch.sqrt((p * p).sum(dim=dims, keepdim=True))
        p.mul_(torch.where(norm > bound, bound / norm, torch.ones_like(norm)))


__all__ = [
    "ReleaseNet", "ReleaseSGD", "EngineGradients", "SUPPORTED", "build_module", "pool2d", "cross_map_norm",
    "spatial_norm", "blur", "draw_conns", "engine_gradients",
    "state_dict_from_engine", "load_engine_weights", "copy_to_engine", "masks_to_engine", "to_engine_acts",
    "from_engine_acts", "weight_from_engine", "weight_to_engine", "bias_from_engine", "bias_to_engine",
    "release_param_groups", "schedule_rate", "weight_shape", "bias_shape",
]
