"""The release network as a torch module: built from a parsed config, run in its order.

>>> from alexnet_replay.original.shownet import load
>>> config, _ = load("paper-2012")            # the parsed cfg files (layers and parameters)
>>> net = build_module(config, seed=1)        # the weights alexnet_replay.load(..., seed=1) draws
>>> out = net([images, labels], train=True)   # images (N, C, H, W) float32, labels (N,)
>>> out["conv1a"].shape, out["logprob"]       # every layer's output by name, and the costs
>>> net.objective(out).backward()             # E = sum over cost layers of coeff * cost[0]

:class:`ReleaseNet` runs the layers in the config's execution order (engine.md §3)
with the operations of ops.py, and arranges the backward as the engine does it:
href's overwriting backward (§13 item 8) by detaching the later uses of its input,
and the fused softmax + logreg gradient (§3.12). Connection tables (§3.4) and initial
weights (§4.1) are drawn in engine.py's order, so the same seed gives the same net.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ReplayError
from ...original.layers import Layer, Network
from ...original.reconstructions import with_transfers
from .convert import WEIGHT_TYPES, _conv_geoms, bias_shape, weight_from_engine, weight_shape
from .layers import LAYERS, Step
from .ops import _local

# The layer types the port builds (one function each in layers.py, the engine's
# table's types); any other raises ReplayError naming the layer.
SUPPORTED = tuple(LAYERS)


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
        config = with_transfers(config)  # quantF/quantB = half across gpus: quant layers (§6, as engine.py)
        self.config = config
        self.generator: torch.Generator | None = None  # for masks and noise the caller does not give
        self.last_masks: dict[str, Tensor] = {}
        self.last_noise: dict[str, Tensor] = {}
        layers = config.layers
        drawn = draw_conns(config, seed) if conns is None else {}
        self._weight_layers: dict[str, _WeightLayer] = {}
        for layer in layers.values():
            self._check(layer)
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
        # §3.12, §3.11: the fused pairs (fused_cost), both layers of each run fused.
        self._fused: set[str] = set()
        for layer in layers.values():
            cost = fused_cost(config, layer.name)
            if cost is not None:
                self._fused |= {layer.name, cost}
        if init:
            self.init_release(seed)

    # -- construction --------------------------------------------------------
    @staticmethod
    def _check(layer: Layer) -> None:
        if layer.type not in LAYERS:
            raise ReplayError(f"layer '{layer.name}': the port has no '{layer.type}' layer "
                              f"(supported: {', '.join(SUPPORTED)})")
        check = LAYERS[layer.type].check
        if check is not None:
            check(layer)

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
                        if layer.type == "treefc":  # §4.1: the inner nodes' vectors start at zero
                            w[:, layer.outputs:] = 0.0
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
            out[layer.name] = self._run(layer, xs, train, masks, noise, layer.name in self._fused)
        return out

    def layer_forward(self, name: str, inputs: Sequence[Tensor], train: bool | None = None,
                      masks: Mapping[str, Tensor] | None = None,
                      noise: Mapping[str, Tensor] | None = None, fused: bool = False) -> Tensor:
        """One layer on given inputs (its input layers' outputs, in order; any layout with
        the right number of values per case): its output, or its costs for a cost layer.
        `fused`: run it as one of a fused pair (fused_cost), as forward does."""
        layer = self.config.layers[name]
        if layer.type == "data":
            raise ReplayError(f"layer '{name}' is a data layer")
        train = self.training if train is None else train
        return self._run(layer, list(inputs), train, dict(masks or {}), dict(noise or {}), fused)

    def _run(self, layer: Layer, xs: list[Tensor], train: bool, masks: dict[str, Tensor],
             noise: dict[str, Tensor], fused: bool = False) -> Tensor:
        y = LAYERS[layer.type].forward(self, layer, xs, Step(train, masks, noise, fused))
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

    def _draw(self, fn, like: Tensor) -> Tensor:
        """A draw shaped like `like` from :attr:`generator` (torch's default one when None)."""
        if self.generator is None:
            return fn(like.shape, device=like.device, dtype=like.dtype)
        return fn(like.shape, generator=self.generator, device=self.generator.device, dtype=like.dtype).to(like)

    @staticmethod
    def _image(x: Tensor, channels: int, side: int) -> Tensor:
        return x.reshape(x.shape[0], channels, side, side)

    def _conv(self, layer: Layer, xs: list[Tensor]) -> Tensor:
        """A conv or local layer (§3.4, §3.5): per input its connection table, padding and
        overhang, the product, and the bias right after the first input."""
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


def fused_cost(config: Network, name: str) -> str | None:
    """The cost layer whose gradient layer `name` takes directly, or None: a softmax whose
    only consumer is a cost.logreg reading it as its probabilities (§3.12), or a logistic
    neuron whose only consumer is a cost.crossent2 reading it as its predictions (§3.11).
    The engine's plan marks the same pairs (engine/core/net_plan.cpp)."""
    layer = config.layers[name]
    users = [u for u in config.layers.values() if name in u.inputs]
    if len(users) != 1 or len(users[0].inputs) != 2 or users[0].inputs[1] != name:
        return None
    cost = users[0]
    if layer.type == "softmax" and cost.type == "cost.logreg":
        return cost.name
    if layer.type == "neuron" and (layer.neuron or "").split("[")[0] == "logistic" and cost.type == "cost.crossent2":
        return cost.name
    return None


def draw_conns_rng(config: Network, rng: np.random.RandomState) -> None:
    """Advance `rng` past the connection-table draws of engine.py (see :func:`draw_conns`)."""
    for layer in config.layers.values():
        if layer.type in ("conv", "local"):
            a = layer.attrs
            for i in range(len(layer.inputs)):
                if a["randSparse"][i]:
                    for _ in range(a["overSample"][i]):
                        rng.permutation(a["channels"][i])


def build_module(config: Network, conns: Mapping[str, Sequence[Sequence[int] | None]] | None = None,
                 seed: int = 0, init: bool = True) -> ReleaseNet:
    """The network of `config` as a :class:`ReleaseNet`.

    Connection tables of random sparse inputs come from `conns` ({layer: [table or None
    per input]}) or, when None, from the engine's draw with `seed` (:func:`draw_conns`).
    With `init`, weights and biases are the engine's initial ones for the same seed.
    Any layer type outside :data:`SUPPORTED` raises ReplayError naming the layer.
    """
    return ReleaseNet(config, conns, seed, init)

