"""The port as a training backend: a :class:`ReleaseNet` and its :class:`ReleaseSGD`
driven with the methods the driver calls on an engine net (``alexnet-replay train
--backend port``, harness/backends.py).

:class:`PortNet` starts from an engine net (``EngineNet``) that the driver has built and
filled as it always does (the seeded initial weights, ``--init-from``, a checkpoint of
either backend, ``--unshare-weights``) and copies its whole training state: weights,
biases, their increments, superEps's averages and, mid ``--wupdate-freq`` accumulation,
the gradients summed so far. :meth:`PortNet.array` and :meth:`PortNet.set_array` read and
write that state in the engine's kinds and layouts, so harness/checkpoint.py writes and
reads the port's checkpoints unchanged, and a checkpoint moves between the backends.

Data arrive as the engine takes them, (D, N) matrices with the cases fastest; costs come
back as the engine reports them, sums over the cases (engine.md §3.23). Each step is
§4.2's: E summed over the cases, ``param.grad = dE/dW``, ``ReleaseSGD.step(N)``.

Data parallel (docs/scaling.md): with a `group` (harness/distributed.py: ``rank``,
``world``, ``share(n)``, ``all_reduce_``), each process runs its share of the minibatch,
the gradients dE/dW of the shares are summed, and every process takes the step of the
whole minibatch's N cases. The draws of dropout and nrelu are made for the whole
minibatch, in the order a single process draws them, and each share keeps its rows, so
K processes draw what one draws.

Towers (``devices``): entry g is the torch device of the layers with ``gpu=g`` (engine.md
§6); each layer's weights live on its device and its inputs are moved there. The numbers
do not depend on the placement.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ...engine import WEIGHT_LAYER_TYPES
from ...errors import ReplayError
from ...original.layers import Layer
from .convert import bias_from_engine, bias_to_engine, load_engine_weights, to_engine_acts, weight_from_engine, \
    weight_to_engine
from .network import ReleaseNet
from .optim import ReleaseSGD

__all__ = ["PortNet", "resolve_device", "DRAW_TYPES"]

# Layers whose forward draws from the generator; the data-parallel path pre-draws the first
# two for the whole minibatch, and refuses the others (their draw is not one per case).
DRAW_TYPES = ("hs", "nrelu", "rscale", "pool=rand")


def resolve_device(text: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device, checked; on CUDA the settings
    that make a run reproducible (docs/scaling.md): TF32 off, cuDNN's deterministic
    algorithms, torch's deterministic mode. Never a fallback to the CPU."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ReplayError(f"--device {text}: expected cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ReplayError(f"--device {text}: the port runs on cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ReplayError(f"--device {text}: CUDA requested but not available (torch {torch.__version__}, "
                          f"built for CUDA {torch.version.cuda or 'none'}); this run does not fall back to the CPU")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ReplayError(f"--device {text}: CUDA shows {torch.cuda.device_count()} device(s)")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)
    return device


def _draw_kind(layer: Layer) -> str | None:
    if layer.type == "hs":
        return "hs"
    if layer.type == "neuron" and (layer.neuron or "").split("[")[0].strip() == "nrelu":
        return "nrelu"
    if layer.type == "rscale":
        return "rscale"
    if layer.type == "pool" and layer.attrs.get("pool") == "rand" and not layer.params.get("doMax"):
        return "pool=rand"
    return None


class _PlacedNet(ReleaseNet):
    """ReleaseNet whose layers run on the device of their gpu= (towers)."""

    def place(self, devices: Sequence[torch.device]) -> None:
        self._devices = list(devices)
        for layer in self.config.layers.values():
            if layer.type in WEIGHT_LAYER_TYPES:
                mine = self.layer_device(layer)
                for src in layer.weight_sources:
                    if src is not None and self.layer_device(self.config.layers[src[0]]) != mine:
                        raise ReplayError(f"--gpu: layer '{layer.name}' shares a matrix of '{src[0]}', which sits "
                                          "on another device; give one device (or put both on one gpu=)")
                self.weight_layer(layer.name).to(mine)

    def layer_device(self, layer: Layer) -> torch.device:
        devices = getattr(self, "_devices", None) or [self._device()]
        return devices[min(max(layer.gpu, 0), len(devices) - 1)]

    def _run(self, layer: Layer, xs: list[Tensor], train: bool, masks: dict[str, Tensor],
             noise: dict[str, Tensor], fused: bool = False) -> Tensor:
        if getattr(self, "_devices", None) and len(set(self._devices)) > 1:
            device = self.layer_device(layer)
            xs = [x.to(device) for x in xs]
        return super()._run(layer, xs, train, masks, noise, fused)

    def objective(self, out: Mapping[str, Tensor]) -> Tensor:
        if getattr(self, "_devices", None) and len(set(self._devices)) > 1:
            first = self._devices[0]
            out = {name: (t.to(first) if self.config.layers[name].is_cost else t) for name, t in out.items()}
        return super().objective(out)


class PortNet:
    """The port with an engine net's driving interface (see the module docstring)."""

    def __init__(self, engine: Any, device: str = "cpu", *, minibatch: int, towers: Sequence[str] | None = None,
                 group: Any = None) -> None:
        self.config = engine.config
        self.conns = dict(engine.conns)
        self.minibatch = minibatch
        self.update_freq = engine.update_freq
        self.group = group
        self.torch_device = resolve_device(device)
        self.device = self.torch_device.type
        devices = [resolve_device(t) for t in towers] if towers else [self.torch_device]
        self.module = _PlacedNet(self.config, conns=self.conns, init=False)
        self.module.to(devices[0])
        self.module.place(devices)
        load_engine_weights(self.module, engine)
        self.module.place(devices)  # load_state_dict copied into the placed tensors
        self.optimizer = ReleaseSGD.for_module(self.module, update_freq=self.update_freq, minibatch=minibatch)
        self._groups = {g["name"]: g for g in self.optimizer.param_groups}
        self._kinds = {name: (layer, i) for layer in self.config.layers.values()
                       if layer.type in WEIGHT_LAYER_TYPES for name, i in
                       [(f"{layer.name}.weight.{i}", i) for i in range(len(layer.inputs))]}
        self.generator: torch.Generator | None = None
        self._out: dict[str, Tensor] = {}
        self._cases = 0
        self._draw_layers = [(l, _draw_kind(l)) for l in self.config.layers.values() if _draw_kind(l)]
        if group is not None and group.world > 1:
            refused = [f"{l.name} ({k})" for l, k in self._draw_layers if k not in ("hs", "nrelu")]
            if refused:
                raise ReplayError(f"data parallel: layers {', '.join(refused)} draw once per pass, not per case, "
                                  "so shares cannot replay one process's draw; train them in one process")
        # the whole training state: increments, averages, partial sums, the accumulation count
        for layer in self.config.layers.values():
            if layer.type not in WEIGHT_LAYER_TYPES:
                continue
            for i, src in enumerate(layer.weight_sources):
                if src is None:
                    for kind in ("weight_inc", "weight_gavg", "weight_g2avg"):
                        if engine.has_array(kind, layer.name, i):
                            self.set_array(kind, layer.name, engine.array(kind, layer.name, i), i)
                    if engine.accumulated and engine.has_array("weight_grad", layer.name, i):
                        self.set_array("weight_grad", layer.name, engine.array("weight_grad", layer.name, i), i)
            self.set_array("bias_inc", layer.name, engine.array("bias_inc", layer.name))
            if engine.accumulated:
                self.set_array("bias_grad", layer.name, engine.array("bias_grad", layer.name))
        self.accumulated = engine.accumulated

    # -- the state, in the engine's kinds and layouts ----------------------------------
    @property
    def accumulated(self) -> int:
        return self.optimizer.accumulated

    @accumulated.setter
    def accumulated(self, minibatches: int) -> None:
        self.optimizer.accumulated = int(minibatches)

    def _param(self, kind: str, name: str, i: int) -> tuple[Tensor, Layer]:
        layer = self.config.layers.get(name)
        if layer is None or layer.type not in WEIGHT_LAYER_TYPES:
            raise ReplayError(f"no weight layer '{name}'")
        mod = self.module.weight_layer(name)
        return (mod.bias if kind.startswith("bias") else mod.weight[i]), layer

    def _group(self, param: Tensor) -> dict:
        return next(g for g in self.optimizer.param_groups if any(p is param for p in g["params"]))

    def has_array(self, kind: str, name: str, i: int = 0) -> bool:
        """Whether the engine would hold array `kind` for this matrix (harness/checkpoint.py)."""
        param, layer = self._param(kind, name, i)
        if kind in ("weight_gavg", "weight_g2avg"):
            return self._group(param).get("super_eps", 0.0) > 0
        if kind == "weight_grad":  # the useGrad path (engine.md §4.2): conv, treefc, superEps
            return layer.type not in ("fc", "local") or self._group(param).get("super_eps", 0.0) > 0
        return True

    _STATE = {"weight_inc": "inc", "bias_inc": "inc", "weight_gavg": "gavg", "weight_g2avg": "g2avg",
              "weight_grad": "grad", "bias_grad": "grad"}

    def array(self, kind: str, name: str, input: int = 0) -> np.ndarray:
        """A copy of array `kind` of layer `name` in the engine's layout ((0, 0) where the engine has none)."""
        param, layer = self._param(kind, name, input)
        if not self.has_array(kind, name, input):
            return np.zeros((0, 0), np.float32)
        value = param if kind in ("weights", "biases") else self.optimizer.state[param].get(self._STATE[kind])
        if value is None:
            value = torch.zeros_like(param)
        if kind.startswith("bias"):
            return bias_to_engine(layer, value)
        return weight_to_engine(layer, input, value)

    def set_array(self, kind: str, name: str, values, input: int = 0) -> None:
        param, layer = self._param(kind, name, input)
        shape = tuple(layer.biases) if kind.startswith("bias") else tuple(layer.weights[input])
        a = np.array(np.broadcast_to(np.asarray(values, dtype=np.float32), shape))  # writable, for torch
        t = (bias_from_engine(layer, a) if kind.startswith("bias") else weight_from_engine(layer, input, a))
        t = t.to(param.device)
        with torch.no_grad():
            if kind in ("weights", "biases"):
                param.copy_(t)
            else:
                self.optimizer.state[param][self._STATE[kind]] = t.clone()

    def weights(self, name: str, input: int = 0) -> np.ndarray:
        return self.array("weights", name, input)

    def weight_inc(self, name: str, input: int = 0) -> np.ndarray:
        return self.array("weight_inc", name, input)

    def biases(self, name: str) -> np.ndarray:
        return self.array("biases", name)

    def set_weights(self, name: str, values, input: int = 0) -> None:
        self.set_array("weights", name, values, input)

    def set_biases(self, name: str, values) -> None:
        self.set_array("biases", name, values)

    def info(self) -> dict[str, str]:
        return {"device": str(self.torch_device), "backend": "port", "torch": torch.__version__}

    # -- a step ----------------------------------------------------------------------------
    def reseed(self, seed: int) -> None:
        """The generator of this batch's dropout masks, noise and schedule noise."""
        self.generator = torch.Generator(device=self.torch_device).manual_seed(int(seed) % 2**63)
        self.module.generator = self.generator

    def set_progress(self, progress: float) -> None:
        self.optimizer.set_progress(progress, z=self.generator if self.generator is not None else None)

    def _inputs(self, data: Sequence[np.ndarray], lo: int = 0, hi: int | None = None) -> list[Tensor]:
        device = self.module._device()
        return [torch.from_numpy(np.ascontiguousarray(np.asarray(m, dtype=np.float32)[:, lo:hi].T)).to(device)
                for m in data]

    def _costs(self, out: Mapping[str, Tensor]) -> dict[str, list[float]]:
        return {l.name: [float(v) for v in out[l.name].detach().double().cpu()]
                for l in self.config.layers.values() if l.is_cost}

    def forward(self, data: Sequence[np.ndarray], train: bool = True) -> dict[str, list[float]]:
        """A forward pass of the whole minibatch in this process (tests, predictions)."""
        with torch.no_grad():
            self._out = self.module(self._inputs(data), train=train)
        self._cases = data[0].shape[1]
        return self._costs(self._out)

    def acts(self, name: str) -> np.ndarray:
        """Layer `name`'s output of the last forward, (D, N) as the engine holds it."""
        return to_engine_acts(self._out[name].detach().float().cpu()).numpy()

    @property
    def cases(self) -> int:
        return self._cases

    def _predraw(self, cases: int, lo: int, hi: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Dropout masks and nrelu noise of the whole minibatch, drawn in execution order as one
        process's forward draws them, cut to this share's rows."""
        masks: dict[str, Tensor] = {}
        noise: dict[str, Tensor] = {}
        for layer, kind in self._draw_layers:
            source = self.config.layers[layer.inputs[0]]
            like = torch.zeros((cases, *source.shape), dtype=torch.float32, device=self.module._device())
            if kind == "hs" and layer.params.get("enable", True):
                masks[layer.name] = (self.module._draw(torch.rand, like) < layer.attrs["keep"]).float()[lo:hi]
            elif kind == "nrelu":
                noise[layer.name] = self.module._draw(torch.randn, like)[lo:hi]
        return masks, noise

    def train_step(self, data: Sequence[np.ndarray]) -> dict[str, list[float]]:
        """One minibatch: forward, backward (summed over the processes' shares), ReleaseSGD's step."""
        cases = data[0].shape[1]
        group = self.group if self.group is not None and self.group.world > 1 else None
        lo, hi = group.share(cases) if group is not None else (0, cases)
        masks, noise = self._predraw(cases, lo, hi) if group is not None else ({}, {})
        self.module.zero_grad(set_to_none=True)
        out = self.module(self._inputs(data, lo, hi), train=True, masks=masks, noise=noise)
        self.module.objective(out).backward()
        costs = self._costs(out)
        if group is not None:
            # which matrices get a gradient is the graph's, the same in every share (none is empty)
            group.all_reduce_([p.grad for g in self.optimizer.param_groups for p in g["params"]
                               if p.grad is not None])
            costs = group.all_reduce_costs(costs)
        self.optimizer.step(cases)
        self._out, self._cases = {}, cases
        return costs
