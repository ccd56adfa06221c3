"""One function per layer type: what the port computes for it (engine.md §3).

Each function takes the module (:class:`~.network.ReleaseNet`, for the layer's
weights, the draws and the conv products: its ``weight_layer``, ``_draw`` and
``_conv``, underscored so that no layer's name can collide with them), the
layer, its inputs as the network holds them (NCHW images, or (N, D)) and the
:class:`Step` (train or test, the masks and noise to
replay), and returns the layer's output (any layout with the right number of
values per case) or, for a cost layer, its costs. ``@port_layer`` registers it
under the cfg type with the parity suite's tolerance classes of its forward and
of its backward (modernize/parity/tolerances.py explains each class), so adding a
layer type to the port is adding one function here (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import ReplayError
from ...original.layers import Layer, parse_neuron
from .ops import (_Crossent2, _EltMax, _FusedLogistic, _FusedSoftmax, _logreg_costs, _Msm, _neuron, _Quant, _Tica,
                  blur, check_rand_picks, cross_map_norm, eltmax_forward, half_round, neuron_forward, pool2d,
                  pool_forward, rand_pool, rand_pool_picks, resize, rgb2lab, rgb2yuv, rscale, rscale_check_draw,
                  rscale_draw, safelog, spatial_norm)

if TYPE_CHECKING:  # annotations only: network.py imports this module to run the layers
    from .network import ReleaseNet


@dataclass
class Step:
    """What one forward pass gives every layer."""

    train: bool
    # hs masks to replay, rscale draws (s, factor, crop_y, crop_x, §3.22), and the picks of
    # pool=rand layers without doMax (§3.6, a reconstruction), by layer
    masks: dict[str, Tensor] = field(default_factory=dict)
    noise: dict[str, Tensor] = field(default_factory=dict)  # nrelu noise to replay, by layer
    # The layer is one of a fused pair (network.fused_cost): a softmax or logistic that
    # takes its cost's gradient directly, or that cost (§3.12, §3.11).
    fused: bool = False


Forward = Callable[["ReleaseNet", Layer, list, Step], Tensor]
Tolerance = Union[str, Callable[[Layer], str]]


@dataclass(frozen=True)
class PortLayer:
    """The port's implementation of one layer type."""

    forward: Forward
    tolerance: Tolerance       # the parity class of its forward (a class name, or one per layer)
    grad_tolerance: Tolerance  # of its isolated backward with one consumer
    check: Callable[[Layer], None] | None = None  # refuses a layer the port cannot run, at build
    # The test-pass forward with plain operations only, for export (export.py), where the
    # forward holds an autograd Function that a traced or exported graph cannot.
    inference: Callable[[Layer, list], Tensor] | None = None


LAYERS: dict[str, PortLayer] = {}


def port_layer(type_: str, tolerance: Tolerance = "copy", grad_tolerance: Tolerance = "grad-copy",
               check: Callable[[Layer], None] | None = None,
               inference: Callable[[Layer, list], Tensor] | None = None) -> Callable[[Forward], Forward]:
    """Register the decorated function as the port's `type_` layer."""
    def register(fn: Forward) -> Forward:
        if type_ in LAYERS:
            raise ValueError(f"two port implementations of layer type {type_!r}")
        LAYERS[type_] = PortLayer(fn, tolerance, grad_tolerance, check, inference)
        return fn
    return register


def tolerance_class(layer: Layer, backward: bool = False) -> str:
    """The parity class of the layer's forward (or isolated backward)."""
    entry = LAYERS[layer.type]
    t = entry.grad_tolerance if backward else entry.tolerance
    return t(layer) if callable(t) else t


def _image(x: Tensor, channels: int, side: int) -> Tensor:
    return x.reshape(x.shape[0], channels, side, side)


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


# ---- data, weight layers (§3.1, §3.2, §3.4, §3.5) --------------------------------------------

@port_layer("data")
def _data(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:  # filled by ReleaseNet._data
    raise ReplayError(f"layer '{layer.name}' is a data layer")


@port_layer("conv", "gemm", "grad-gemm")
def _conv(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    return net._conv(layer, xs)


@port_layer("local", "gemm", "grad-gemm")
def _local(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    return net._conv(layer, xs)


@port_layer("fc", "gemm", "grad-gemm")
def _fc(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    mod = net.weight_layer(layer.name)
    y = F.linear(_flat(xs[0]), mod.weight[0], mod.bias)  # §1.4: the bias right after input 0
    for i in range(1, len(xs)):
        y = y + F.linear(_flat(xs[i]), mod.weight[i])
    return y


@lru_cache(maxsize=None)
def _tree_levels(tree) -> list[tuple[Tensor, Tensor]]:
    """(leaves, their node at depth d) for each depth d of the label tree: the terms of
    each leaf's effective weights, root first (engine.md §3.3)."""
    paths = tree.paths()
    levels = []
    for d in range(max(len(p) for p in paths)):
        leaves = [l for l, p in enumerate(paths) if len(p) > d]
        levels.append((torch.tensor(leaves), torch.tensor([paths[l][d] for l in leaves])))
    return levels


@port_layer("treefc", "gemm", "grad-gemm")
def _treefc(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    """fc with each class's weights the sum of the node vectors on its root-to-leaf path,
    added root first as the engine adds them; autograd gives each node the sum of its
    leaves' gradients, which is what the engine's bottom-up distribution computes."""
    mod = net.weight_layer(layer.name)
    w = mod.weight[0]  # (nodes, Din)
    levels = _tree_levels(layer.attrs["tree"])
    leaves0, nodes0 = levels[0]
    weff = w[nodes0.to(w.device)]
    for leaves, nodes in levels[1:]:
        weff = weff.index_add(0, leaves.to(w.device), w[nodes.to(w.device)])
    return F.linear(_flat(xs[0]), weff, mod.bias)


# ---- pool (§3.6), norms (§3.8–§3.10) -------------------------------------------------------------

def _random_pool(layer: Layer) -> bool:
    """pool=rand without doMax: the reconstruction (rand with doMax is max pooling, §3.6)."""
    return layer.attrs["pool"] == "rand" and not layer.params.get("doMax")


def _pool_args(layer: Layer, xs: list) -> tuple:
    a = layer.attrs
    kind = "max" if a["pool"] == "rand" else a["pool"]  # rand with doMax: max pooling
    return _image(xs[0], a["channels"], a["imgSize"]), kind, a["sizeX"], a["stride"], a["start"], a["outputsX"]


def _pool_inference(layer: Layer, xs: list) -> Tensor:
    if _random_pool(layer):
        raise ReplayError(f"layer '{layer.name}': pool=rand without doMax draws a pixel per window in every "
                          "pass (engine.md §3.6); an exported graph holds no such draw")
    return pool_forward(*_pool_args(layer, xs))


@port_layer("pool", "pool", "grad-sum", inference=_pool_inference)
def _pool(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    if not _random_pool(layer):
        return pool2d(*_pool_args(layer, xs))
    # §3.6 pool=rand without doMax, a reconstruction (original/reconstructions.py): one pick per
    # window, channel and case in every pass, given in step.masks or drawn, kept in net.last_masks
    x, _, size, stride, start, ox = _pool_args(layer, xs)
    side = x.shape[-1]
    picks = step.masks.get(layer.name)
    if picks is None:
        u = net._draw(torch.rand, torch.zeros(x.shape[0], x.shape[1], ox, ox, dtype=x.dtype, device=x.device))
        picks = rand_pool_picks(u, side, size, stride, start, ox)
    else:
        picks = picks.detach().reshape(x.shape[0], x.shape[1], ox, ox).to(x)
        check_rand_picks(layer.name, picks, side, size, stride, start, ox)
    net.last_masks[layer.name] = picks
    return rand_pool(x, picks, size, stride, start, ox)


@port_layer("quant", "copy", "grad-copy",
            inference=lambda layer, xs: half_round(xs[0]) if layer.attrs["quantF"] == "half" else xs[0])
def _quant(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    """§6, quantF/quantB = half across gpus, a reconstruction: the copy a consumer on another gpu
    reads (inserted by original/reconstructions.py's with_transfers)."""
    a = layer.attrs
    return _Quant.apply(xs[0], a["quantF"] == "half", a["quantB"] == "half")


@port_layer("rnorm", "norm", "grad-exp")
def _rnorm(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    a, p = layer.attrs, layer.params
    return spatial_norm(_image(xs[0], a["channels"], a["imgSize"]), a["size"], p["scale"], p["pow"])


@port_layer("cnorm", "norm", "grad-exp")
def _cnorm(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    a, p = layer.attrs, layer.params
    return spatial_norm(_image(xs[0], a["channels"], a["imgSize"]), a["size"], p["scale"], p["pow"], contrast=True)


@port_layer("cmrnorm", "norm", "grad-exp")
def _cmrnorm(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    a, p = layer.attrs, layer.params
    return cross_map_norm(_image(xs[0], a["channels"], a["imgSize"]), a["size"], p["scale"], p["pow"],
                          p.get("minDiv", 1.0), a.get("blocked", False))


# ---- neuron (§3.11), softmax (§3.12), hs (§3.16) -------------------------------------------------

# Neurons computed with +, * and comparisons only: bit-exact against the engine.
_EXACT_NEURONS = ("relu", "nrelu", "brelu", "abs", "square", "linear", "ident")


@lru_cache(maxsize=None)
def _neuron_of(name: str, spec: str) -> tuple[str, float, float]:
    kind, numbers = parse_neuron(spec, lambda why: ReplayError(f"layer '{name}': {why}"))
    return (kind, *(list(numbers) + [0.0, 0.0])[:2])


def _neuron_class(layer: Layer) -> str:
    return "neuron" if _neuron_of(layer.name, layer.neuron or "")[0] in _EXACT_NEURONS else "neuron-exp"


def _neuron_grad_class(layer: Layer) -> str:
    return "grad-copy" if _neuron_class(layer) == "neuron" else "grad-exp"


@port_layer("neuron", _neuron_class, _neuron_grad_class, check=lambda layer: _neuron_of(layer.name, layer.neuron or ""),
            inference=lambda layer, xs: neuron_forward(*_neuron_of(layer.name, layer.neuron or ""), xs[0]))
def _neuron_layer(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    kind, a, b = _neuron_of(layer.name, layer.neuron or "")
    if step.fused:  # a logistic under its cost.crossent2 (§3.11)
        return _FusedLogistic.apply(xs[0])
    eps = None
    if kind == "nrelu":  # one N(0,1) draw per element, every pass (§3.11), or the one given
        eps = step.noise.get(layer.name)
        if eps is None:
            eps = net._draw(torch.randn, xs[0])
        eps = eps.reshape(xs[0].shape).to(xs[0])
        net.last_noise[layer.name] = eps
    return _neuron(kind, a, b, xs[0], eps)


@port_layer("softmax", "softmax", "grad-exp")
def _softmax(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    if step.fused:  # under its cost.logreg (§3.12)
        return _FusedSoftmax.apply(_flat(xs[0]))
    return F.softmax(_flat(xs[0]), dim=1)


@port_layer("hs")
def _hs(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    x = xs[0]
    if step.train and layer.params.get("enable", True):
        m = step.masks.get(layer.name)
        if m is None:
            m = (net._draw(torch.rand, x) < layer.attrs["keep"]).to(x.dtype)
        m = m.reshape(x.shape).to(x)
        net.last_masks[layer.name] = m
        return x * m  # no rescaling at train time (§3.16)
    return x * float(np.float32(layer.attrs["keep"]))


# ---- eltsum (§3.13), eltmax (§3.14), concat (§3.15) -----------------------------------------------

@port_layer("eltsum", "eltsum")
def _eltsum(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    coeffs = layer.attrs["coeffs"]
    y = _flat(xs[0]) * float(np.float32(coeffs[0]))
    for i in range(1, len(xs)):
        y = y + _flat(xs[i]) * float(np.float32(coeffs[i]))
    return y


@port_layer("eltmax", "copy", "grad-sum", inference=lambda layer, xs: eltmax_forward([_flat(x) for x in xs]))
def _eltmax(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    return _EltMax.apply(*[_flat(x) for x in xs])


@port_layer("concat")
def _concat(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    return torch.cat([_flat(x) for x in xs], dim=1)


# ---- nailbed (§3.17), blur (§3.18), href (§3.19) ---------------------------------------------------

@port_layer("nailbed")
def _nailbed(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    a = layer.attrs
    s0, st, ox = a["start"], a["stride"], a["outputsX"]
    return _image(xs[0], a["channels"], a["imgSize"])[:, :, s0::st, s0::st][:, :, :ox, :ox]


@port_layer("blur", "blur", "grad-sum")
def _blur(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    a = layer.attrs
    taps = [float(np.float32(v)) for v in a["filter"]]  # float32 taps, as the engine holds them
    return blur(_image(xs[0], a["channels"], a["imgSize"]), taps)


@port_layer("href")
def _href(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    # Its overwriting backward (§13 item 8) is arranged by ReleaseNet, which detaches later uses of its input.
    return _image(xs[0], layer.attrs["channels"], layer.attrs["imgSize"]).flip(-1)


# ---- resize (§3.20), rgb2yuv and rgb2lab (§3.21), rscale (§3.22): no backward ----------------------
# Each computes on a detached input: nothing below gets a gradient through them, as in the engine.

@port_layer("resize", "resize")
def _resize(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    a = layer.attrs
    return resize(_image(xs[0], a["channels"], a["imgSize"]), layer.image[1], a["scale"])


@port_layer("rgb2yuv", "color")
def _rgb2yuv(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    return rgb2yuv(_image(xs[0], 3, layer.attrs["imgSize"]))


@port_layer("rgb2lab", "color-pow")
def _rgb2lab(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    return rgb2lab(_image(xs[0], 3, layer.attrs["imgSize"]), layer.attrs.get("center", False))


@port_layer("rscale", "resize")
def _rscale(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    """§3.22. Training: one draw per pass (s, factor, crop_y, crop_x), given in step.masks or
    drawn from four uniforms of the module's generator, kept in net.last_masks. Test: the
    input copied unchanged, as written (§13 item 5), which needs imgSize == tgtSize."""
    a = layer.attrs
    side, tgt, max_scale = a["imgSize"], a["tgtSize"], a["maxScale"]
    x = _image(xs[0], a["channels"], side)
    if not step.train:
        if side != tgt:
            raise ReplayError(f"layer '{layer.name}': an rscale test pass copies its input unchanged (engine.md "
                              f"§13 item 5, kept as written), which needs imgSize == tgtSize (got {side} and {tgt})")
        return x.detach()
    draw = step.masks.get(layer.name)
    if draw is None:
        u = net._draw(torch.rand, torch.zeros(4, dtype=torch.float64)).tolist()
        draw = torch.tensor(rscale_draw(side, tgt, max_scale, u), dtype=torch.float32)
    else:
        draw = draw.detach().reshape(-1).to("cpu", torch.float32)
        rscale_check_draw(layer.name, side, tgt, max_scale, draw.tolist())
    net.last_masks[layer.name] = draw
    return rscale(x, tgt, draw.tolist())


# ---- cost layers (§3.23, §3.27) ---------------------------------------------------------------------

@port_layer("cost.logreg", "cost", "grad-exp")
def _logreg(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    return _logreg_costs(xs[0], _flat(xs[1]), layer.params.get("topk", 1), fused=step.fused)


@port_layer("cost.sum2", "cost", "grad-exp")
def _sum2(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    x = xs[0]
    return (x * x).to(torch.float64).sum().reshape(1)


@port_layer("cost.crossent", "cost", "grad-exp")
def _crossent(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    """§3.24: [-sum t*safelog(y), N - sum correct]. As written, a softmax whose only consumer
    is this cost gets no gradient (the release's fused kernel is never called)."""
    t, y = _flat(xs[0]), _flat(xs[1])
    probs = net.config.layers[layer.inputs[1]]
    if probs.type == "softmax" and sum(probs.name in u.inputs for u in net.config.layers.values()) == 1:
        y = y.detach()
    nll = -(t * safelog(y)).to(torch.float64).sum()
    with torch.no_grad():  # correct: 1/#max when some maximal class has a positive target
        top = y.amax(dim=1, keepdim=True)
        at_max = y == top
        hit = (at_max & (t > 0)).any(dim=1)
        correct = torch.where(hit, 1.0 / at_max.sum(1).to(torch.float64), torch.zeros(hit.shape, dtype=torch.float64,
                                                                                      device=hit.device))
        errors = y.shape[0] - correct.sum()
    return torch.cat([nll.reshape(1), errors.reshape(1).to(nll.device)])


@port_layer("cost.crossent2", "cost", "grad-exp")
def _crossent2(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    return _Crossent2.apply(_flat(xs[0]), _flat(xs[1]), step.fused).reshape(1)


@port_layer("cost.rflickr", "cost", "grad-exp")
def _rflickr(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    d = _flat(xs[1]) - _flat(xs[0])  # §3.26: sum log(1 + (y - t)^2)
    return torch.log(1 + d * d).to(torch.float64).sum().reshape(1)


@port_layer("cost.gsum2", "cost", "grad-exp")
def _gsum2(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    g, x = _flat(xs[0]), _flat(xs[1])  # §3.28: sum_n g_n * sum_d x[d, n]^2
    return (g * (x * x)).to(torch.float64).sum().reshape(1)


# ---- cost.tica (§3.29), cost.msm (§3.30) ------------------------------------------------------------

def _reaches_input_first(net: ReleaseNet, layer: Layer) -> bool:
    """Whether `layer` is the first consumer of its input that the backward (reverse execution
    order) reaches: no later layer reads the same input. The engine then overwrites the
    input's gradient (scale_targets 0), later ones add (§1.4)."""
    order = list(net.config.layers)
    later = order[order.index(layer.name) + 1:]
    return not any(layer.inputs[0] in net.config.layers[name].inputs for name in later)


@port_layer("cost.tica", "cost", "grad-tica")
def _tica(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    """§3.29: reported cost sum A; the as-written backward of the overwrite or the accumulate
    path (§13 item 3), whichever the engine takes for this layer."""
    a = layer.attrs
    return _Tica.apply(_image(xs[0], a["channels"], a["imgSize"]), a["sizeX"], _reaches_input_first(net, layer))


@port_layer("cost.msm", "cost", "grad-msm")
def _msm(net: ReleaseNet, layer: Layer, xs: list, step: Step) -> Tensor:
    """§3.30: labels and energies (any layer); k = setSize."""
    return _Msm.apply(_flat(xs[0]).reshape(-1), _flat(xs[1]), layer.params["setSize"])
