"""The C++ engine as a Python object, built from a parsed configuration.

>>> net = alexnet_replay.load("paper-2012", image_size=(3, 224, 224), minibatch=16, seed=1)
>>> costs = net.train_step(images, labels)          # one minibatch: forward, backward, update
>>> net.weights("conv1a").shape                       # (363, 48), the release's layout, a view

:func:`load` reads a definition file (and its parameter file) with the cfg
reader, turns each layer into a plain ``_core.LayerSpec``, builds the
``_core.Net`` (which allocates every buffer once) and initialises the weights as
the release did (engine.md §4.1): ``initW * randn`` in float64, cast to float32,
biases ``initB``; random sparse connection tables are concatenated random
permutations of the channels (§3.4). Every draw comes from
``numpy.random.RandomState(seed)``, so a seed replays a run bit for bit, and any
array can be overwritten through the views before training.

A layer type the engine lacks, or a shape it cannot run, fails here with a
message naming the layer, never inside a step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from . import _core
from .errors import ConfigError, ReplayError
from .original.layers import Layer, Network, parse_neuron
from .original.params import Schedule as CfgSchedule
from .original.shownet import load as load_config


def _schedule(s: CfgSchedule) -> _core.Schedule:
    out = _core.Schedule()
    out.type = s.type
    p = dict(s.params)
    out.tgt_factor = float(p.get("tgtFactor", 1.0))
    out.noise_stdev = float(p.get("noiseStdev", 0.0))
    out.num_steps = int(p.get("numSteps", 1))
    return out


def _spec(layer: Layer, index: dict[str, int], rng: np.random.RandomState) -> _core.LayerSpec:
    s = _core.LayerSpec()
    s.name, s.type = layer.name, layer.type
    s.inputs = [index[i] for i in layer.inputs]
    s.outputs = layer.outputs
    a, p = layer.attrs, layer.params
    if layer.type == "data":
        s.data_idx = a["dataIdx"]
    if layer.type in ("conv", "local"):
        convs = []
        for i in range(len(layer.inputs)):
            c = _core.ConvInputSpec()
            c.channels, c.img_size, c.filter_size = a["channels"][i], a["imgSize"][i], a["filterSize"][i]
            c.padding = -a["padding"][i]  # the layer record holds -p (driver.md §A.3)
            c.stride, c.groups, c.filter_channels = a["stride"][i], a["groups"][i], a["filterChannels"][i]
            if a["randSparse"][i]:  # §3.4: overSample concatenated random permutations of the channels
                c.conns = [int(v) for _ in range(a["overSample"][i]) for v in rng.permutation(c.channels)]
            convs.append(c)
        s.conv = convs
        s.filters, s.modules_x = layer.image[0], a["modulesX"]
        s.partial_sum = a.get("partialSum", 0)
        s.shared_biases = a.get("sharedBiases", True) if layer.type == "conv" else False
    if layer.type in ("conv", "local", "fc"):
        if "epsW" not in p:
            raise ReplayError(f"layer '{layer.name}': the engine needs its learning parameters "
                              "(give the layer-parameter file)")
        s.weight_rows = [r for r, _ in layer.weights]
        s.weight_cols = [c for _, c in layer.weights]
        s.share_layer = [index[src[0]] if src else -1 for src in layer.weight_sources]
        s.share_index = [src[1] if src else -1 for src in layer.weight_sources]
        s.eps_w, s.mom_w, s.wc = p["epsW"], p["momW"], p["wc"]
        s.wball_normed = p["wballNormed"]
        s.wcnorm_min = p.get("wcNormMin", [0.0] * len(layer.inputs))
        s.wcnorm_max = p.get("wcNormMax", [0.0] * len(layer.inputs))
        s.sched_w = [_schedule(p["schedW"])] * len(layer.inputs)
        s.bias_rows, s.bias_cols = layer.biases
        s.eps_b, s.mom_b, s.sched_b = p["epsB"], p["momB"], _schedule(p["schedB"])
        if p.get("superEps", 0.0) > 0:
            raise ReplayError(f"layer '{layer.name}': superEps (the experimental RMS update, engine.md §4.4) "
                              "is not implemented by the engine")
    if layer.type in ("pool", "nailbed", "blur", "href", "rnorm", "cnorm", "cmrnorm"):
        s.channels = a["channels"]
        s.img_size = a["imgSize"]
    if layer.type == "pool":
        s.pool, s.size_x, s.start, s.stride, s.outputs_x = a["pool"], a["sizeX"], a["start"], a["stride"], a["outputsX"]
        if a["pool"] == "rand" and p.get("doMax"):
            s.pool = "max"  # §3.6: rand with doMax is max pooling
    if layer.type == "nailbed":
        s.stride = a["stride"]
    if layer.type == "blur":
        s.filter = [float(np.float32(t)) for t in a["filter"]]
    if layer.type in ("rnorm", "cnorm", "cmrnorm"):
        s.size, s.alpha, s.beta = a["size"], p["scale"], p["pow"]
        s.min_div, s.blocked = p.get("minDiv", 1.0), a.get("blocked", False)
    if layer.type == "neuron":
        name, numbers = parse_neuron(layer.neuron or "", lambda why: ConfigError(why, section=layer.name))
        s.neuron = name
        s.neuron_a, s.neuron_b = (list(numbers) + [0.0, 0.0])[:2]
    if layer.type == "hs":
        s.keep, s.enable = a["keep"], p["enable"]
    if layer.type == "eltsum":
        s.coeffs = a["coeffs"]
    if layer.is_cost:
        s.coeff = p.get("coeff", 1.0)
        s.topk = p.get("topk", 1)
    return s


class EngineNet:
    """A network in the C++ engine. Arrays returned by the accessors are views."""

    def __init__(self, config: Network, minibatch: int, seed: int, *, init_weights: bool = True) -> None:
        self.config = config
        self.minibatch = minibatch
        rng = np.random.RandomState(seed)
        index = {name: i for i, name in enumerate(config.layers)}
        specs = [_spec(layer, index, rng) for layer in config.layers.values()]
        try:
            self._net = _core.Net(specs, minibatch, seed)
        except ValueError as exc:
            raise ReplayError(f"{config.path}: {exc}") from None
        if init_weights:  # False: weights and biases stay 0, for a caller that sets them all (parity)
            self._init_weights(rng)

    def _init_weights(self, rng: np.random.RandomState) -> None:
        """engine.md §4.1: W = initW * randn (float64, then float32), biases = initB."""
        for layer in self.config.layers.values():
            if layer.type not in ("conv", "local", "fc"):
                continue
            for key in ("initWFunc", "initBFunc", "initCFunc"):
                if key in layer.attrs:
                    raise ReplayError(f"layer '{layer.name}': {key}={layer.attrs[key]} imports Python code "
                                      "from the release; set the weights through net.weights() instead")
            for i, (rows, cols) in enumerate(layer.weights):
                if layer.weight_sources[i] is None:
                    w = layer.attrs["initW"][i] * rng.standard_normal((rows, cols))
                    self._net.weights(layer.name, i)[...] = w.astype(np.float32)
            self._net.biases(layer.name)[...] = np.float32(layer.attrs["initB"])

    # -- a step ------------------------------------------------------------------
    def set_data(self, data: Sequence[np.ndarray]) -> None:
        """The minibatch: data[i] is matrix i, (D, N) float32, case fastest (labels (1, N))."""
        for i, values in enumerate(data):
            if any(l.type == "data" and l.attrs["dataIdx"] == i for l in self.config.layers.values()):
                self._net.set_data(i, np.ascontiguousarray(values, dtype=np.float32))

    def forward(self, data: Sequence[np.ndarray] | None = None, train: bool = True,
                pass_type: str | None = None) -> dict[str, list[float]]:
        """A forward pass: training (dropout draws masks) or test (dropout scales by keep);
        `pass_type` "gradient-check" is the release's PASS_GC (as test, for dropout)."""
        if data is not None:
            self.set_data(data)
        self._net.forward(pass_type or ("train" if train else "test"))
        return self.costs()

    def backward(self) -> None:
        self._net.backward()

    def update(self) -> None:
        self._net.update()

    def reseed(self, seed: int) -> None:
        """Restart the engine's generator of dropout masks and noise draws."""
        self._net.reseed(int(seed) & 0xFFFFFFFFFFFFFFFF)

    def set_progress(self, progress: float) -> None:
        """Schedule progress p in [0, 1] for the coming steps (engine.md §4.3)."""
        self._net.set_progress(progress)

    def train_step(self, data: Sequence[np.ndarray], progress: float | None = None) -> dict[str, list[float]]:
        """One minibatch as the release trained it: forward, backward, update. Returns the costs."""
        if progress is not None:
            self.set_progress(progress)
        costs = self.forward(data, train=True)
        self.backward()
        self.update()
        return costs

    def costs(self) -> dict[str, list[float]]:
        """Per cost layer, sums over the minibatch as the release reported them (engine.md §3.23):
        logreg [sum of -log p, top-1 errors, top-k errors]. Divide by :attr:`cases` to print."""
        return {k: list(v) for k, v in self._net.costs().items()}

    @property
    def cases(self) -> int:
        return self._net.cases

    @property
    def inject_masks(self) -> bool:
        return self._net.inject_masks

    @inject_masks.setter
    def inject_masks(self, value: bool) -> None:
        self._net.inject_masks = value

    # -- views ---------------------------------------------------------------------
    def acts(self, name: str) -> np.ndarray:
        return self._net.acts(name)

    def acts_grad(self, name: str) -> np.ndarray:
        return self._net.acts_grad(name)

    def weights(self, name: str, input: int = 0) -> np.ndarray:
        return self._net.weights(name, input)

    def weight_inc(self, name: str, input: int = 0) -> np.ndarray:
        return self._net.weight_inc(name, input)

    def weight_grad(self, name: str, input: int = 0) -> np.ndarray:
        return self._net.weight_grad(name, input)

    def biases(self, name: str) -> np.ndarray:
        return self._net.biases(name)

    def bias_inc(self, name: str) -> np.ndarray:
        return self._net.bias_inc(name)

    def bias_grad(self, name: str) -> np.ndarray:
        return self._net.bias_grad(name)

    def mask(self, name: str) -> np.ndarray:
        return self._net.mask(name)

    def noise(self, name: str) -> np.ndarray:
        return self._net.noise(name)

    @property
    def layer_names(self) -> list[str]:
        return list(self._net.layer_names)


def load(layers: str | Path, params: str | Path | None = None, *, image_size: tuple[int, int, int] | None = None,
         minibatch: int = 128, seed: int = 0, lenient: bool = False) -> EngineNet:
    """Build an engine net from a definition file (or bundled name) and its parameter file."""
    if minibatch < 1:
        raise ReplayError(f"minibatch must be >= 1 (got {minibatch})")
    config, _ = load_config(layers, params, image_size=image_size, lenient=lenient)
    if config.params_path is None:
        raise ReplayError(f"{config.path}: the engine needs a layer-parameter file too")
    return EngineNet(config, minibatch, seed)
