"""Converters between the engine's release layouts and the port's tensors.

Layouts (engine.md §1.2, §1.3): the engine holds activations as (D, N) matrices, case
fastest, and weights as the release's (rows, cols) matrices; the port's state dict holds
PyTorch layouts -- conv ``(F, Cg, K, K)``, fc ``(Dout, Din)``, treefc ``(nodes, Din)``, local
``(MY, MX, F, Cg, K, K)``, biases ``(F,)``, or ``(F, MY, MX)`` when unshared -- under
``<layer>.weight.<input>`` and ``<layer>.bias``.

Sign and scale (§1.1): the port's loss is E, summed over the cases, so
``param.grad = dE/dW``; the engine's gradients are ``-dE/d(output)`` and
``G = -(1/N) dE/dW``. :func:`engine_gradients` returns the port's gradients in the
engine's convention and layouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ...engine import WEIGHT_LAYER_TYPES
from ...original.layers import Layer

if TYPE_CHECKING:  # annotations only: network.py imports this module
    from .network import ReleaseNet

# The layer types that hold weights (one matrix per input) and a bias: the engine's table's.
WEIGHT_TYPES = WEIGHT_LAYER_TYPES


# ---------------------------------------------------------------------------
# Geometry and state-dict shapes


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
    if layer.type in ("fc", "treefc"):  # treefc: one row per node of the label tree
        rows, cols = layer.weights[i]
        return (cols, rows)
    g = _conv_geoms(layer)[i]
    if layer.type == "conv":
        return (g.filters, g.fchan, g.size, g.size)
    return (g.modules_x, g.modules_x, g.filters, g.fchan, g.size, g.size)


def bias_shape(layer: Layer) -> tuple[int, ...]:
    if layer.type in ("fc", "treefc"):
        return (layer.outputs,)
    f, mx = layer.image
    if layer.type == "conv" and layer.attrs.get("sharedBiases", True):
        return (f,)
    return (f, mx, mx)


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
    if layer.type in ("fc", "treefc"):  # (Din, Dout) -> (Dout, Din)
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
    if layer.type in ("fc", "treefc"):
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
    """Write dropout masks, rscale draws and nrelu noise (default: those of the module's last
    forward) into the engine net, and make it use them instead of drawing its own (§3.16, §3.22)."""
    net.inject_masks = True
    for name, m in (module.last_masks if masks is None else masks).items():
        if module.config.layers[name].type == "rscale":  # (s, factor, crop_y, crop_x)
            net.set_draws(name, m.detach().cpu().numpy())
            continue
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

