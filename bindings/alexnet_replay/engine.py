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

``device="cuda"`` builds the same network in the CUDA engine (docs/cuda.md): every
buffer stays on the GPU, so the accessors return host *copies* (same shapes and
memory order as the CPU views) and arrays are written with the ``set_*`` methods
(``set_weights``, ``set_biases``, ``set_mask``, ...), which work on both devices.
Without a CUDA build or a GPU it raises ReplayError with the reason; it never
falls back to the CPU.
"""

from __future__ import annotations

import os

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import _core
from .errors import ConfigError, ReplayError
from .original.layers import Layer, Network, parse_neuron
from .original.params import Schedule as CfgSchedule
from .original.reconstructions import QUANT_TYPE, with_transfers
from .original.shownet import load as load_config


# The engine's layer-type table (engine/core/layer_types.cpp), the one list of
# what the engine runs; the port and the harness read it from here.
LAYER_TYPES: tuple[str, ...] = tuple(_core.LAYER_TYPES)
WEIGHT_LAYER_TYPES: tuple[str, ...] = tuple(_core.WEIGHT_LAYER_TYPES)
COST_LAYER_TYPES: tuple[str, ...] = tuple(_core.COST_LAYER_TYPES)


def _schedule(s: CfgSchedule) -> _core.Schedule:
    out = _core.Schedule()
    out.type = s.type
    p = dict(s.params)
    out.tgt_factor = float(p.get("tgtFactor", 1.0))
    out.noise_stdev = float(p.get("noiseStdev", 0.0))
    out.num_steps = int(p.get("numSteps", 1))
    return out


def _spec(layer: Layer, index: dict[str, int], rng: np.random.RandomState,
          conns: Sequence[Sequence[int] | None] | None = None) -> _core.LayerSpec:
    s = _core.LayerSpec()
    s.name, s.type = layer.name, layer.type
    s.gpu = layer.gpu  # the CUDA engine's placement (engine.md §6); the CPU ignores it
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
            if a["randSparse"][i] and conns is not None and conns[i] is not None:
                c.conns = [int(v) for v in conns[i]]  # given: initCFunc's table, or a checkpoint's (no draw)
            elif a["randSparse"][i]:  # §3.4: overSample concatenated random permutations of the channels
                c.conns = [int(v) for _ in range(a["overSample"][i]) for v in rng.permutation(c.channels)]
            convs.append(c)
        s.conv = convs
        s.filters, s.modules_x = layer.image[0], a["modulesX"]
        s.partial_sum = a.get("partialSum", 0)
        s.shared_biases = a.get("sharedBiases", True) if layer.type == "conv" else False
    if layer.type in WEIGHT_LAYER_TYPES:
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
        if layer.type == "treefc":
            tree = a.get("tree")
            if tree is None:
                raise ReplayError(f"layer '{layer.name}': treefc needs the data's label tree "
                                  "(batches.meta['tree'], engine.md §3.3), and none was given")
            s.tree, s.tree_root = [list(c) for c in tree.children], tree.root
        s.super_eps = p.get("superEps", 0.0)  # §4.4: > 0 gives the weight matrices the RMS update
    if layer.type in ("pool", "nailbed", "blur", "href", "rnorm", "cnorm", "cmrnorm", "resize", "rscale", "rgb2yuv",
                      "rgb2lab", "cost.tica"):
        s.channels = a["channels"]
        s.img_size = a["imgSize"]
    if layer.type == "pool":
        s.pool, s.size_x, s.start, s.stride, s.outputs_x = a["pool"], a["sizeX"], a["start"], a["stride"], a["outputsX"]
        if a["pool"] == "rand" and p.get("doMax"):
            s.pool = "max"  # §3.6: rand with doMax is max pooling (without: a reconstruction)
    if layer.type == QUANT_TYPE:  # §6's half-precision transfer, a reconstruction (with_transfers)
        s.half_forward, s.half_backward = a["quantF"] == "half", a["quantB"] == "half"
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
    if layer.type == "resize":
        s.scale = a["scale"]
    if layer.type == "rscale":
        s.max_scale, s.tgt_size = a["maxScale"], a["tgtSize"]
    if layer.type == "rgb2lab":
        s.center = a["center"]
    if layer.type == "cost.tica":
        s.size_x = a["sizeX"]
    if layer.type == "cost.msm":
        s.set_size = p["setSize"]
    if layer.is_cost:
        s.coeff = p.get("coeff", 1.0)
        s.topk = p.get("topk", 1)
    return s


DEVICES = ("cpu", "cuda")


def cuda_unavailable_reason() -> str | None:
    """Why device="cuda" cannot run here (no CUDA in this build, no GPU), or None."""
    if not _core.build_info().get("cuda_compiled") or not hasattr(_core, "CudaNet"):
        return "this build has no CUDA code (built with ALEXNET_CUDA=OFF or without nvcc)"
    count, reason = _core.cuda_device_count()
    if count < 1:
        return f"no usable GPU ({reason})"
    return None


def cublas_candidates() -> list[str]:
    """libcublas files of the nvidia-cublas wheel installed in this Python (nvidia/cu13/lib
    for CUDA 13, nvidia/cublas/lib for older wheels), looked up at run time so that a module
    built in an isolated environment still finds the one installed beside it."""
    import importlib.util

    found: list[str] = []
    for package in ("nvidia.cu13", "nvidia.cublas"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for folder in (spec.submodule_search_locations or []) if spec else []:
            found += sorted(str(p) for p in Path(folder, "lib").glob("libcublas.so.*"))
    return found


def _cpu_net(specs: list, minibatch: int, seed: int, num_gpus: int | None, gemm: str):
    return _core.CpuNet(specs, minibatch, seed)


def _cuda_net(specs: list, minibatch: int, seed: int, num_gpus: int | None, gemm: str):
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise ReplayError(f"device='cuda': {reason}")
    if gemm != "builtin" and _core.build_info().get("cuda_gemm", "").startswith("cuBLAS"):
        ok, message = _core.cuda_load_cublas(cublas_candidates())
        if not ok:
            raise ReplayError(f"device='cuda': {message}. Install it (pip install nvidia-cublas), or pass "
                              "gemm='builtin' for the engine's own (much slower) matrix product")
    return _core.CudaNet(specs, minibatch, seed, num_gpus or 0, gemm)


# How each device's net is built: the one place that knows the devices apart.
# Both are a _core.Net (alexnet/core/net.h), driven with the same methods.
_BACKENDS = {"cpu": _cpu_net, "cuda": _cuda_net}


class EngineNet:
    """A network in the C++ engine, on either device. The accessors return views of the
    engine's arrays on the CPU and host copies on CUDA; the ``set_*`` methods write an array
    on either device."""

    def __init__(self, config: Network, minibatch: int, seed: int, device: str = "cpu", *,
                 init_weights: bool = True, num_gpus: int | None = None, gemm: str = "auto",
                 conns: Mapping[str, Sequence[Sequence[int] | None]] | None = None,
                 skip_init_funcs: bool = False, update_freq: int = 1) -> None:
        """`conns` gives connection tables by layer (random sparse inputs; None entries are
        drawn). Layers with initWFunc/initBFunc (driver.md §A.5) are refused unless
        `skip_init_funcs`: then they draw nothing and the caller fills them
        (harness/init_from.py). `update_freq`: the driver's --wupdate-freq (see
        :attr:`update_freq`)."""
        if device not in DEVICES:
            raise ReplayError(f"device must be 'cpu' or 'cuda' (got {device!r})")
        config = with_transfers(config)  # quantF/quantB = half across gpus: quant layers (§6)
        self.config = config
        self.minibatch = minibatch
        self.device = device
        self.skip_init_funcs = skip_init_funcs
        rng = np.random.RandomState(seed)
        index = {name: i for i, name in enumerate(config.layers)}
        conns = conns or {}
        specs = [_spec(layer, index, rng, conns.get(layer.name)) for layer in config.layers.values()]
        # The connection tables in use, by layer (None for dense inputs): checkpoints keep them.
        self.conns: dict[str, list[list[int] | None]] = {
            spec.name: [list(c.conns) or None for c in spec.conv] for spec in specs if len(spec.conv)}
        _check_memory(config, minibatch)
        try:
            self._net = _BACKENDS[device](specs, minibatch, seed, num_gpus, gemm)
        except MemoryError:
            raise ReplayError(f"{config.path}: a minibatch of {minibatch} cases does not fit in this machine's "
                              "memory; use a smaller --mini") from None
        except ValueError as exc:  # a spec the engine's plan refuses, naming the layer
            raise ReplayError(f"{config.path}: {exc}") from None
        except RuntimeError as exc:  # CUDA failures (out of memory, driver errors)
            raise ReplayError(f"device='{device}': {exc}") from None
        self.update_freq = update_freq
        if init_weights:  # False: weights and biases stay 0, for a caller that sets them all (parity)
            self._init_weights(rng)

    def _init_weights(self, rng: np.random.RandomState) -> None:
        """engine.md §4.1: W = initW * randn (float64, then float32), biases = initB."""
        for layer in self.config.layers.values():
            if layer.type not in WEIGHT_LAYER_TYPES:
                continue
            funcs = [key for key in ("initWFunc", "initBFunc") if key in layer.attrs]
            if funcs and not self.skip_init_funcs:
                raise ReplayError(f"{self.config.path}: layer '{layer.name}': {funcs[0]}={layer.attrs[funcs[0]]} "
                                  "copies an earlier run's arrays; give that run's checkpoint with --init-from "
                                  "CHECKPOINT (train), or set them with set_weights/set_biases")
            for i, (rows, cols) in enumerate(layer.weights):
                if layer.weight_sources[i] is None and "initWFunc" not in layer.attrs:  # else: init_from.py
                    w = layer.attrs["initW"][i] * rng.standard_normal((rows, cols))
                    if layer.type == "treefc":  # §4.1: the inner nodes' vectors start at zero
                        w[:, layer.outputs:] = 0.0
                    self.set_weights(layer.name, w.astype(np.float32), i)
            if "initBFunc" not in layer.attrs:
                self.set_biases(layer.name, np.float32(layer.attrs["initB"]))

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

    def forward_from(self, layer: str) -> dict[str, list[float]]:
        """After a forward: rerun only `layer` and the layers that depend on it, with the same
        pass, bit for bit what a whole forward gives after a change to its weights (other
        layers and costs stay). Draws nothing: set inject_masks where a rerun layer draws."""
        try:
            self._net.forward_from(layer)
        except (IndexError, RuntimeError) as exc:
            raise ReplayError(f"forward_from('{layer}'): {exc}") from None
        return self.costs()

    def backward(self) -> None:
        self._net.backward()

    def update(self) -> None:
        """The end of a minibatch: the update of engine.md §4.2 (§4.4 for superEps matrices),
        applied on every :attr:`update_freq`-th call (every call when it is 1)."""
        self._net.update()

    @property
    def update_freq(self) -> int:
        """wupdate_freq F (engine.md §4.2, §1.5): with F > 1, backward accumulates the gradients
        and increments of F minibatches, divided by F x `minibatch` (nominal, also for a short
        minibatch), momentum applied on the first, and :meth:`update` applies them on every F-th
        call only. Set between updates (``accumulated == 0``)."""
        return self._net.update_freq

    @update_freq.setter
    def update_freq(self, freq: int) -> None:
        try:
            self._net.update_freq = int(freq)
        except ValueError as exc:
            raise ReplayError(f"update_freq: {exc}") from None

    @property
    def accumulated(self) -> int:
        """Minibatches whose gradients the buffers hold since the last applied update
        (0 ... update_freq - 1); a checkpoint keeps it (harness/checkpoint.py)."""
        return self._net.accumulated

    @accumulated.setter
    def accumulated(self, minibatches: int) -> None:
        self._net.accumulated = int(minibatches)

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

    def info(self) -> dict[str, str]:
        """What runs the net: {"device": ..., and the CPU's BLAS, or CUDA's GEMM and device count}."""
        return dict(self._net.info())

    @property
    def gemm(self) -> str | None:
        """CUDA: what multiplies the matrices (cuBLAS and its version, or the built-in kernel)."""
        return self.info().get("gemm")

    def synchronize(self) -> None:
        """Wait until the device has finished the work issued (CUDA's backward and update
        return early; on the CPU everything has finished already)."""
        self._net.synchronize()

    # -- arrays --------------------------------------------------------------------
    # Kinds, as in the engine's buffers (alexnet/core/net_plan.h BufferKind).
    KINDS = ("acts", "acts_grad", "weights", "weight_inc", "weight_grad", "biases", "bias_inc", "bias_grad",
             "mask", "noise", "draws", "weight_gavg", "weight_g2avg")

    def array(self, kind: str, name: str, input: int = 0) -> np.ndarray:
        """The array `kind` of layer `name` (input `input` for weight matrices): a view on the
        CPU, a copy with the same shape and memory order on CUDA."""
        if kind not in self.KINDS:
            raise ReplayError(f"array kind must be one of {', '.join(self.KINDS)} (got {kind!r})")
        return self._net.array(kind, name, input)

    def has_array(self, kind: str, name: str, input: int = 0) -> bool:
        """Whether this net holds array `kind` of layer `name` (not (0, 0)): a gradient buffer only
        on the useGrad path, superEps's averages only with superEps (engine.md §4.2, §4.4)."""
        rows, cols, _ = self._net.buffer_info(kind, name, input)
        return rows * cols > 0

    def set_array(self, kind: str, name: str, values, input: int = 0) -> None:
        """Write `values` (broadcast to the array's shape, cast to float32) into array `kind`
        of layer `name`, on either device: the documented way to set weights."""
        rows, cols, fortran = self._net.buffer_info(kind, name, input)
        a = np.broadcast_to(np.asarray(values, dtype=np.float32), (rows, cols))
        self._net.upload(kind, name, np.asfortranarray(a) if fortran else np.ascontiguousarray(a), input)

    def set_weights(self, name: str, values, input: int = 0) -> None:
        self.set_array("weights", name, values, input)

    def set_weight_inc(self, name: str, values, input: int = 0) -> None:
        self.set_array("weight_inc", name, values, input)

    def set_biases(self, name: str, values) -> None:
        self.set_array("biases", name, values)

    def set_bias_inc(self, name: str, values) -> None:
        self.set_array("bias_inc", name, values)

    def set_mask(self, name: str, values) -> None:
        """hs layers: the (D, n) 0/1 mask of the next forward on n cases (with
        inject_masks = True); pool=rand layers without doMax: the (D, n) picks, each the
        position of the chosen pixel in its clipped window, raster order (a reconstruction,
        original/reconstructions.py). The engine reads it case fastest from the start of its
        buffer, as it stores its own draws (see :meth:`mask`)."""
        self._set_prefix("mask", name, values)

    def set_noise(self, name: str, values) -> None:
        """nrelu layers: the (D, n) N(0,1) noise of the next forward on n cases."""
        self._set_prefix("noise", name, values)

    def set_draws(self, name: str, values) -> None:
        """rscale layers: the draws of the next training forward (with inject_masks = True),
        four numbers: scale index s, scale factor, crop row, crop column (engine.md §3.22)."""
        self.set_array("draws", name, np.asarray(values, dtype=np.float32).reshape(1, -1))

    def _set_prefix(self, kind: str, name: str, values) -> None:
        values = np.asarray(values, dtype=np.float32)
        full = self._net.download(kind, name)
        if values.ndim != 2 or values.shape[0] != full.shape[0] or values.shape[1] > full.shape[1]:
            raise ValueError(f"{kind} of layer '{name}': expected (D, n) = ({full.shape[0]}, n <= "
                             f"{full.shape[1]}), got {values.shape}")
        full.reshape(-1)[:values.size] = values.reshape(-1)
        self._net.upload(kind, name, full)

    def _prefix(self, kind: str, name: str, cases: int | None) -> np.ndarray:
        full = self.array(kind, name)
        n = self.cases if cases is None else cases
        n = n or full.shape[1]  # before the first forward: the whole buffer
        return full.reshape(-1)[:full.shape[0] * n].reshape(full.shape[0], n)

    def acts(self, name: str) -> np.ndarray:
        return self.array("acts", name)

    def acts_grad(self, name: str) -> np.ndarray:
        return self.array("acts_grad", name)

    def weights(self, name: str, input: int = 0) -> np.ndarray:
        return self.array("weights", name, input)

    def weight_inc(self, name: str, input: int = 0) -> np.ndarray:
        return self.array("weight_inc", name, input)

    def weight_grad(self, name: str, input: int = 0) -> np.ndarray:
        return self.array("weight_grad", name, input)

    def weight_gavg(self, name: str, input: int = 0) -> np.ndarray:
        """superEps's running average of G (engine.md §4.4); (0, 0) without superEps."""
        return self.array("weight_gavg", name, input)

    def weight_g2avg(self, name: str, input: int = 0) -> np.ndarray:
        """superEps's running average of G squared (engine.md §4.4); (0, 0) without superEps."""
        return self.array("weight_g2avg", name, input)

    def biases(self, name: str) -> np.ndarray:
        return self.array("biases", name)

    def bias_inc(self, name: str) -> np.ndarray:
        return self.array("bias_inc", name)

    def bias_grad(self, name: str) -> np.ndarray:
        return self.array("bias_grad", name)

    def mask(self, name: str, cases: int | None = None) -> np.ndarray:
        """hs layers: the (D, n) mask of the last forward (n = its cases, or `cases`); pool=rand
        layers without doMax: the picks of the last forward (see :meth:`set_mask`).
        The buffer holds max_cases columns' worth; a forward on n cases uses its first
        D*n values, case fastest (on the CPU a view, on CUDA a copy)."""
        return self._prefix("mask", name, cases)

    def noise(self, name: str, cases: int | None = None) -> np.ndarray:
        """nrelu layers: the (D, n) noise of the last forward, as :meth:`mask`."""
        return self._prefix("noise", name, cases)

    def draws(self, name: str) -> np.ndarray:
        """rscale layers: the (4,) draws of the last training forward: scale index s, scale
        factor, crop row, crop column (engine.md §3.22; a view on the CPU, a copy on CUDA)."""
        return self.array("draws", name).reshape(-1)

    @property
    def layer_names(self) -> list[str]:
        return list(self._net.layer_names)


def _check_memory(config: Network, minibatch: int) -> None:
    """Refuse, before allocating, a net whose per-case buffers (each layer's outputs and their
    gradients, float32) alone would not fit in this machine's memory."""
    need = 2 * 4 * minibatch * sum(max(0, int(layer.outputs or 0)) for layer in config.layers.values())
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no estimate
        return
    if need > have:
        raise ReplayError(f"{config.path}: a minibatch of {minibatch} cases needs at least {need / 2**30:.1f} GiB for "
                          f"the layers' outputs and gradients, more than this machine's {have / 2**30:.1f} GiB; "
                          "use a smaller --mini")


def load(layers: str | Path, params: str | Path | None = None, *, image_size: tuple[int, int, int] | None = None,
         minibatch: int = 128, seed: int = 0, lenient: bool = False, device: str = "cpu",
         num_gpus: int | None = None, gemm: str = "auto") -> EngineNet:
    """Build an engine net from a definition file (or bundled name) and its parameter file.

    device: "cpu" or "cuda". num_gpus (CUDA): devices to spread the layers over by their
    gpu= (default: every visible one; 1 puts every tower on one GPU; the numbers are the
    same). gemm (CUDA): "auto" (cuBLAS when the build has it), "cublas" or "builtin"."""
    if minibatch < 1:
        raise ReplayError(f"minibatch must be >= 1 (got {minibatch})")
    if device not in DEVICES:
        raise ReplayError(f"device must be 'cpu' or 'cuda' (got {device!r})")
    config, _ = load_config(layers, params, image_size=image_size, lenient=lenient)
    if config.params_path is None:
        raise ReplayError(f"{config.path}: the engine needs a layer-parameter file too")
    return EngineNet(config, minibatch, seed, device, num_gpus=num_gpus, gemm=gemm)


def check_plan(config: Network, minibatch: int = 2) -> None:
    """Whether the engine can build `config`, without building it: the layer specs are made
    as :class:`EngineNet` makes them and the engine's plan checks them (nothing is allocated,
    no weight is drawn). Raises ReplayError naming the file and layer, as EngineNet would."""
    config = with_transfers(config)
    index = {name: i for i, name in enumerate(config.layers)}
    rng = np.random.RandomState(0)  # only random sparse connection tables draw from it
    specs = [_spec(layer, index, rng, None) for layer in config.layers.values()]
    try:
        _core.check_plan(specs, minibatch)
    except ValueError as exc:
        raise ReplayError(f"{config.path}: {exc}") from None
