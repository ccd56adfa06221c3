"""The parity run: engine and port on the same network, compared layer by layer.

Engine and port get the same weights (the engine's, copied), the same data, the same
dropout masks and nrelu noise (drawn by the port, injected into the engine with
``port.masks_to_engine``). What is compared, per layer in execution order
(docs/parity.md has the whole story):

* ``forward``: the port's layer run on the ENGINE's inputs, against the engine's output
  (isolated: the tolerance measures that layer's arithmetic only, so bit-exact classes
  are checked with tolerance 0);
* ``backward``: the gradient -dE/d(output) the layer receives, built from the port's
  vjps fed with the engine's incoming gradients (isolated, as above);
* ``weight_grad[i]``, ``bias_grad``: G = -(1/N) dE/dW (isolated);
* ``forward_e2e``, ``backward_e2e``: the same, the port running from the data alone;
  layers below a gate that the two forwards decided differently (a max-pool near-tie,
  a relu at ~0) are judged by relative Frobenius error, as tests/test_port.py does;
* ``step<k>:weights[i]``, ``step<k>:biases``: weights after k steps of the engine's
  ``train_step`` and of the port's ``ReleaseSGD`` (with ``update_freq`` F > 1, the driver's
  ``--wupdate-freq``, a step is a minibatch and the weights move on every F-th).

The engine's gradients are read from a gradient configuration (every rate 1, momentum
and decay 0: the increment is G; ``gradcheck._gradient_config``). Each comparison is
judged by its row of tolerances.TOL. A fault (``run_parity(..., fault="KIND:LAYER")``)
puts a deliberate error in one layer of the port, to show that the report finds it.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch

from ...engine import EngineNet
from ...errors import ReplayError
from ...gradcheck import _gradient_config
from ...original.layers import Network
from ...original.params import Schedule
from ...original.reconstructions import by_layer, reconstructions, with_transfers
from ...original.shownet import load as load_config
from .. import port
from ..port.ops import _exact_pad
from .metrics import Metric, measure, measure_rerouted
from .report import ParityReport
from .tolerances import backward_kind, forward_kind, softmax_tol, steps_tol, tolerances

# ---------------------------------------------------------------------------
# Shared helpers (also used by tests/test_port.py): the same inputs on both sides,
# and where the two forwards took different branches


def takes_fused_gradient(config, name: str) -> bool:
    """Whether layer `name` takes its cost's gradient directly (port.fused_cost: a softmax
    under a cost.logreg, §3.12, or a logistic under a cost.crossent2, §3.11)."""
    return port.fused_cost(config, name) is not None


def layers_below(config, names) -> set[str]:
    """Every layer that feeds one of `names`, directly or through others."""
    below: set[str] = set()
    stack = [i for name in names for i in config.layers[name].inputs]
    while stack:
        name = stack.pop()
        if name not in below:
            below.add(name)
            stack.extend(config.layers[name].inputs)
    return below


def classes_of(config) -> int:
    """The softmax's class count (10 in a network without one, for its one-value data)."""
    return next((l.outputs for l in config.layers.values() if l.type == "softmax"), 10)


def make_batch(config, cases: int, seed: int):
    """Port data (images NCHW, then one array per further data matrix) and the engine's
    (D, N) matrices of the same batch. Matrix 0 holds the images, N(0, 1); a one-value
    matrix holds class labels below the softmax's class count; a wider one (Flickr's tag
    vectors, §D.7) holds 0/1 targets."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cases, *config.profile.image)).astype(np.float32)
    port_data, engine_data = [torch.from_numpy(x)], [np.ascontiguousarray(x.reshape(cases, -1).T)]
    widths = {l.attrs["dataIdx"]: l.outputs for l in config.layers.values() if l.type == "data"}
    for idx in range(1, max(widths) + 1):
        width = widths.get(idx, 1)
        if width == 1:
            y = rng.integers(0, classes_of(config), cases).astype(np.float32)
        else:
            y = (rng.random((cases, width)) < 0.5).astype(np.float32)
        port_data.append(torch.from_numpy(y))
        engine_data.append(np.ascontiguousarray(y.reshape(cases, -1).T))
    return port_data, engine_data


def rescale_weights(net: EngineNet, seed: int, cache: dict | None = None) -> None:
    """Weights N(0, 1/fan-in) and biases N(0, 0.1^2): signals of order 1 in every layer,
    so that relative errors are measured on values that matter. `cache` (a dict) keeps
    the draws, so a second net with the same seed is filled by copying."""
    def draw(key, shape, divisor: float = 1.0, factor: float = 1.0) -> np.ndarray:
        if cache is not None and (seed, key) in cache:
            return cache[(seed, key)]
        a = (factor * rng.standard_normal(shape) / divisor).astype(np.float32)
        if cache is not None:
            cache[(seed, key)] = a
        return a

    rng = np.random.default_rng(seed)
    for layer in net.config.layers.values():
        if layer.type in port.WEIGHT_TYPES:
            for i, (rows, cols) in enumerate(layer.weights):
                if layer.weight_sources[i] is None:
                    fan_in = rows // (layer.attrs["modules"] if layer.type == "local" else 1)
                    net.set_weights(layer.name, draw((layer.name, i), (rows, cols), divisor=np.sqrt(fan_in)), i)
            net.set_biases(layer.name, draw((layer.name, "bias"), layer.biases, factor=0.1))


def engine_image(net: EngineNet, name: str, config) -> torch.Tensor:
    return port.from_engine_acts(net.acts(name), config.layers[name])


def gate_flips(config, engine: EngineNet, out, cases: int) -> dict[str, np.ndarray]:
    """Where the two forwards took a different branch of a discontinuous backward.

    The backward of max pooling, eltmax, relu, nrelu, brelu and abs depends on comparisons
    (which elements tie with the max, which outputs are > 0). Two forwards that differ by a
    few ulp can decide a near-tie or a near-zero differently, and then a whole gradient
    element goes elsewhere. Returns, per input layer, the positions (engine layout) whose
    received gradient such a flip changes; empty when the forwards branch alike. `out`:
    the port's outputs (any device).
    """
    flips: dict[str, np.ndarray] = {}

    def mark(name: str, where: torch.Tensor) -> None:
        w = port.to_engine_acts(where.reshape(cases, -1).float()).numpy() > 0
        flips[name] = flips.get(name, np.zeros_like(w)) | w

    for layer in [l for l in config.layers.values() if l.type in ("pool", "eltmax", "neuron")]:
        ye, yp = engine_image(engine, layer.name, config), out[layer.name].detach().cpu()
        xes = [engine_image(engine, i, config) for i in layer.inputs]
        xps = [out[i].detach().cpu() for i in layer.inputs]
        if layer.type == "pool" and layer.attrs["pool"] != "avg":
            a = layer.attrs
            c, side = a["channels"], a["imgSize"]

            def ties(x, y, a=a, c=c, side=side):  # this layer's geometry, bound (called at once, in the loop)
                xp = _exact_pad(x.reshape(cases, c, side, side), a["start"], a["outputsX"], a["sizeX"],
                                a["stride"], float("nan"))
                cols = torch.nn.functional.unfold(xp, a["sizeX"], stride=a["stride"])
                return cols.view(cases, c, a["sizeX"] ** 2, -1) == y.reshape(cases, c, 1, -1)

            te, tp = ties(xes[0], ye), ties(xps[0], yp)
            windows = (te != tp).any(2, keepdim=True).expand_as(te).float().reshape(cases, -1, te.shape[-1])
            size = _exact_pad(xes[0].reshape(cases, c, side, side), a["start"], a["outputsX"],
                              a["sizeX"], a["stride"], 0.0).shape[-1]
            hit = torch.nn.functional.fold(windows, (size, size), a["sizeX"], stride=a["stride"]) > 0
            if hit.any():  # back to the input's geometry: undo _exact_pad's shift and crop
                orig = torch.zeros(cases, c, side, side, dtype=torch.bool)
                shift = min(a["start"], 0)  # padded index q is image index q + shift (+ start if > 0)
                first = max(a["start"], 0)
                for q in range(size):
                    for r in range(size):
                        y, x = q + shift + first, r + shift + first
                        if 0 <= y < side and 0 <= x < side:
                            orig[..., y, x] = hit[..., q, r]
                mark(layer.inputs[0], orig)
        elif layer.type == "eltmax":
            for i, (xe, xp) in enumerate(zip(xes, xps)):
                mark(layer.inputs[i], (xe.reshape(ye.shape) == ye) != (xp.reshape(yp.shape) == yp))
        elif layer.type == "neuron":
            kind = layer.neuron.split("[")[0]
            if kind in ("relu", "nrelu"):
                mark(layer.inputs[0], ((ye > 0) != (yp > 0)).reshape(xes[0].shape))
            elif kind == "brelu":
                a = float(layer.neuron.split("[")[1].rstrip("]"))
                mark(layer.inputs[0], (((ye > 0) & (ye < a)) != ((yp > 0) & (yp < a))).reshape(xes[0].shape))
            elif kind == "abs":
                mark(layer.inputs[0], (xes[0] > 0) != (xps[0] > 0))
    return {k: v for k, v in flips.items() if v.any()}


def _half(a: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def rounding_flips(config, engine: EngineNet, out, cases: int,
                   grads: dict[str, np.ndarray] | None = None) -> tuple[set[str], dict[str, np.ndarray]]:
    """Where a half-precision transfer (a quant layer, §6, a reconstruction: docs/fidelity.md)
    rounded the two sides' values to different halves. Rounding is a step: two inputs an ulp
    apart (a conv below, "gemm" class) can round 2^-11 apart. Returns the quant layers whose
    forward did so (every value above them, and so every gradient, then differs by more than
    rounding) and, when `grads` gives the port's -dE/d(output) of the quant layers (engine
    layout), {producer: positions whose gradient a differently rounded quantB moved}, as
    gate_flips returns them. `out`: the port's outputs (any device)."""
    forward: set[str] = set()
    backward: dict[str, np.ndarray] = {}
    for layer in config.layers.values():
        if layer.type != "quant":
            continue
        if layer.attrs["quantF"] == "half":
            yp = port.to_engine_acts(out[layer.name].detach().cpu().reshape(cases, -1)).numpy()
            if not np.array_equal(engine.acts(layer.name), yp):
                forward.add(layer.name)
        if layer.attrs["quantB"] == "half" and grads is not None and layer.name in grads:
            moved = _half(engine.acts_grad(layer.name)) != _half(grads[layer.name])
            if moved.any():
                src = layer.inputs[0]
                backward[src] = backward.get(src, np.zeros_like(moved)) | moved
    return forward, backward


def layers_above(config, names) -> set[str]:
    """`names` and every layer fed by one of them, directly or through others."""
    above = set(names)
    for layer in config.layers.values():  # execution order: inputs come first
        if any(i in above for i in layer.inputs):
            above.add(layer.name)
    return above


# ---------------------------------------------------------------------------
# Faults: a deliberate error in one layer of the port, to show the report finds it


def _fault_min_div(config: Network, module: port.ReleaseNet, name: str) -> None:
    """The norm layer ignores minDiv (uses 1)."""
    layer = config.layers[name]
    if layer.type not in ("cmrnorm", "rnorm", "cnorm"):
        raise ReplayError(f"fault minDiv: layer '{name}' is a {layer.type}, not a norm layer")
    if layer.params.get("minDiv", 1.0) == 1.0:
        raise ReplayError(f"fault minDiv: layer '{name}' has minDiv 1; ignoring it changes nothing")
    layer.params["minDiv"] = 1.0


def _fault_scale(config: Network, module: port.ReleaseNet, name: str) -> None:
    """The layer's output is multiplied by 1 + 1e-4 (a small, smooth error)."""
    inner = module._run

    def patched(layer, xs, train, masks, noise, fused=False):
        y = inner(layer, xs, train, masks, noise, fused)
        return y * (1 + 1e-4) if layer.name == name and not layer.is_cost else y

    module._run = patched  # instance attribute shadows the method that runs one layer


FAULTS: dict[str, Callable[[Network, port.ReleaseNet, str], None]] = {"minDiv": _fault_min_div,
                                                                       "scale": _fault_scale}


def _parse_fault(fault: str | None, config: Network) -> tuple[str, str] | None:
    if fault is None:
        return None
    kind, sep, name = fault.partition(":")
    if not sep or kind not in FAULTS:
        raise ReplayError(f"fault {fault!r}: expected KIND:LAYER with KIND one of {', '.join(FAULTS)}")
    if name not in config.layers:
        raise ReplayError(f"fault {fault!r}: no layer '{name}' in the network")
    return kind, name


def _port_module(config: Network, seed: int, fault: tuple[str, str] | None, device: torch.device):
    """The port of `config` (a faulty copy when `fault` is given), weights not initialised."""
    cfg = copy.deepcopy(config) if fault else config
    module = port.build_module(cfg, seed=seed, init=False)
    if fault:
        FAULTS[fault[0]](cfg, module, fault[1])
    return module.to(device)


# ---------------------------------------------------------------------------
# The run


def _device(device: str) -> torch.device:
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ReplayError(f"CUDA requested but not available: torch {torch.__version__} "
                              f"(built with CUDA {torch.version.cuda}) finds no usable GPU")
        # STYLE habit 9: exact by default, no TF32 in anything a parity test covers.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return torch.device(device)
    if device != "cpu":
        raise ReplayError(f"device must be cpu or cuda (got {device!r})")
    return torch.device("cpu")


def run_parity(layers, params=None, image_size=None, minibatch: int = 4, steps: int = 3, seed: int = 0,
               device: str = "cpu", fault: str | None = None, *, lenient: bool = False,
               rescale: bool = True, update_freq: int = 1) -> ParityReport:
    """Compare engine and port on one network; see the module docstring.

    `layers`/`params`: definition and parameter files (or a bundled name such as
    ``cifar-18pct``), or a parsed :class:`Network` as `layers` (then `params` is ignored).
    `rescale`: weights N(0, 1/fan-in) instead of the file's initW, so signals are of
    order 1 in every layer and relative errors mean something. `update_freq`: both sides
    accumulate the gradients of that many steps per update (engine.md §4.2 wupdate_freq).
    """
    if minibatch < 1 or steps < 0 or update_freq < 1:
        raise ReplayError(f"minibatch and update_freq must be >= 1 and steps >= 0 (got {minibatch}, "
                          f"{update_freq}, {steps})")
    dev = _device(device)
    if isinstance(layers, Network):
        config = layers
    else:
        config, _ = load_config(layers, params, image_size=tuple(image_size) if image_size else None,
                                lenient=lenient)
    if config.params_path is None:
        raise ReplayError(f"{config.path}: parity needs the layer-parameter file too")
    config, quiet = _without_rate_noise(config)
    if update_freq > 1:
        quiet = quiet + [f"update_freq {update_freq}: gradients of {update_freq} steps per update"]
    config = with_transfers(config)  # the quant layers engine and port both run (§6), compared like the rest
    parsed_fault = _parse_fault(fault, config)
    tol = tolerances(str(dev))
    report = ParityReport(str(config.path), str(config.params_path), tuple(config.profile.image), minibatch, steps,
                          seed, str(dev), fault, list(config.layers), notes=quiet,
                          reconstructions=by_layer(reconstructions(config)))
    saved = (torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype())
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    try:
        drawn: dict | None = {} if rescale else None  # the rescaled weights, drawn once for both nets
        with torch.random.fork_rng(devices=[]):
            _gradients(report, config, minibatch, seed, dev, parsed_fault, tol, drawn)
            if steps:
                _training(report, config, minibatch, seed, steps, dev, parsed_fault, tol, drawn, update_freq)
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.set_default_dtype(saved[1])
    return report


def _without_rate_noise(config: Network) -> tuple[Network, list[str]]:
    """§4.3's rate noise (noiseStdev > 0) is drawn by the engine from its own generator and
    cannot be injected; parity runs such schedules with noiseStdev 0 (on both sides)."""
    noisy = [(l.name, k) for l in config.layers.values() for k in ("schedW", "schedB")
             if k in l.params and dict(l.params[k].params).get("noiseStdev", 0.0) > 0]
    if not noisy:
        return config, []
    cfg = copy.deepcopy(config)
    for name, key in noisy:
        s = cfg.layers[name].params[key]
        cfg.layers[name].params[key] = Schedule(s.type, tuple((k, 0.0 if k == "noiseStdev" else v)
                                                              for k, v in s.params))
    return cfg, [f"noiseStdev set to 0 in {len(noisy)} schedule(s) ({', '.join(f'{n}.{k}' for n, k in noisy)}): "
                 "the engine draws its rate noise itself"]


def _engine_weight_grad(engine: EngineNet, layer, i: int) -> np.ndarray:
    # conv and treefc keep G in a gradient buffer; fc and local fold it into the increment (eps 1, mom 0)
    return engine.weight_grad(layer.name, i) if layer.type in ("conv", "treefc") else engine.weight_inc(layer.name, i)


def isolated_backward(cfg: Network, engine: EngineNet, mod, out: dict, masks: dict, noise: dict, cases: int,
                      tol: dict[str, tuple[float, float]], dev: torch.device | None = None):
    """The port's backward, layer by layer, each layer fed the engine's inputs and the engine's
    incoming gradient. Returns ({layer: gradient it receives}, {layer: TOL class of that
    gradient}, [(layer, input index or None for the bias, G)]).

    Contributions to each producer come from its consumers in reverse execution order, the
    first overwriting (and href always overwriting, §13 item 8), as the engine adds them.
    A fused layer (§3.12, §3.11) is skipped: its cost's gradient goes to the fused layer's input.
    `dev`: the port's device (the CPU when None).
    """
    dev = torch.device("cpu") if dev is None else dev
    received: dict[str, torch.Tensor] = {}
    kind_of: dict[str, str] = {}
    weight_grads: list[tuple] = []

    def inputs_of(layer):
        return [engine_image(engine, i, cfg).to(dev).requires_grad_(True) for i in layer.inputs]

    def needs_grad(name: str) -> bool:
        return out[name].requires_grad and cfg.layers[name].type != "data"

    for layer in reversed(list(cfg.layers.values())):
        if layer.type == "data" or takes_fused_gradient(cfg, layer.name):
            continue
        xs = inputs_of(layer)
        wparams: list[tuple[int | None, torch.Tensor]] = []
        if layer.type in port.WEIGHT_TYPES:
            w = mod.weight_layer(layer.name)
            wparams = [(i, p) for i, p in enumerate(w.weight)] + [(None, w.bias)]
        if layer.is_cost:
            coeff = layer.params.get("coeff", 1.0)
            if len(layer.inputs) == 2 and takes_fused_gradient(cfg, layer.inputs[1]):
                soft = cfg.layers[layer.inputs[1]]  # the fused gradient goes to the fused layer's input
                x = inputs_of(soft)[0]
                cost = mod.layer_forward(layer.name, [xs[0], mod.layer_forward(soft.name, [x], fused=True)],
                                         fused=True)
                (g,) = torch.autograd.grad(-coeff * cost[0], [x])
                targets = [(soft.inputs[0], g, soft)]
            else:
                cost = mod.layer_forward(layer.name, xs)
                gs = torch.autograd.grad(-coeff * cost[0], xs, allow_unused=True)
                targets = [(n, g, layer) for n, g in zip(layer.inputs, gs) if g is not None]
        else:
            y = mod.layer_forward(layer.name, xs, train=True, masks=masks, noise=noise)
            if not y.requires_grad:
                continue
            dy = port.from_engine_acts(engine.acts_grad(layer.name), layer).to(dev)
            gs = torch.autograd.grad(y, xs + [p for _, p in wparams], grad_outputs=dy, allow_unused=True)
            targets = [(n, g, layer) for n, g in zip(layer.inputs, gs[:len(xs)]) if g is not None]
            for (i, _), g in zip(wparams, gs[len(xs):]):
                if g is not None:
                    weight_grads.append((layer, i, g / cases))
        for name, g, source in targets:
            if not needs_grad(name):
                continue
            g = g.reshape(out[name].shape)
            if name not in received or source.type == "href":
                received[name] = g
                kind_of[name] = backward_kind(source, summed=False)
            else:  # the loosest class of the contributions, and at least a sum's
                received[name] = received[name] + g
                kind_of[name] = max(kind_of[name], backward_kind(source, summed=True), key=lambda k: tol[k])
    return received, kind_of, weight_grads


def _gradients(report: ParityReport, cfg: Network, cases: int, seed: int, dev, fault, tol, rescale) -> None:
    """One forward and backward: isolated and end-to-end comparisons."""
    engine = EngineNet(_gradient_config(cfg), cases, seed, dev.type, init_weights=rescale is None)  # cuda: CUDA engine
    if rescale is not None:
        rescale_weights(engine, seed + 100, rescale)
    mod = _port_module(cfg, seed, fault, dev)
    port.load_engine_weights(mod, engine)
    mod.to(dev)
    data, engine_data = make_batch(cfg, cases, seed + 200)
    data = [d.to(dev) for d in data]
    mod.generator = torch.Generator().manual_seed(seed + 300)
    out = mod(data, train=True)
    masks, noise = dict(mod.last_masks), dict(mod.last_noise)
    port.masks_to_engine(mod, engine)
    engine.forward(engine_data, train=True)
    engine.backward()
    grads = port.engine_gradients(mod, out)
    add = report.metrics.append

    def needs_grad(name: str) -> bool:
        return out[name].requires_grad and cfg.layers[name].type != "data"

    def inputs_of(layer):
        return [engine_image(engine, i, cfg).to(dev).requires_grad_(True) for i in layer.inputs]

    def acts(t):
        return port.to_engine_acts(t.detach().cpu())

    # Isolated forward.
    for layer in cfg.layers.values():
        if layer.type == "data":
            continue
        with torch.no_grad():
            y = mod.layer_forward(layer.name, inputs_of(layer), train=True, masks=masks, noise=noise)
        if layer.is_cost:
            add(measure(y[:1], engine.costs()[layer.name][:1], forward_kind(layer), layer.name, "forward", tol))
        else:
            add(measure(acts(y), engine.acts(layer.name), forward_kind(layer), layer.name, "forward",
                        softmax_tol(tol, layer.outputs) if layer.type == "softmax" else tol))

    received, kind_of, weight_grads = isolated_backward(cfg, engine, mod, out, masks, noise, cases, tol, dev)
    for name, g in received.items():
        add(measure(acts(g), engine.acts_grad(name), kind_of[name], name, "backward", tol))
    for layer, i, g in weight_grads:
        if i is None:
            add(measure(port.bias_to_engine(layer, g), engine.bias_grad(layer.name), "grad-gemm", layer.name,
                        "bias_grad", tol))
        else:
            add(measure(port.weight_to_engine(layer, i, g, copy=False), _engine_weight_grad(engine, layer, i),
                        "grad-gemm", layer.name, f"weight_grad[{i}]", tol))

    # End to end, with the gate flips of tests/test_port.py's check_end_to_end, and the half
    # roundings of quant layers decided differently (rounding_flips): above a forward one every
    # value and every gradient differs by more than rounding, and is judged like a rerouted gate.
    flips = gate_flips(cfg, engine, out, cases)
    rounded, moved = rounding_flips(cfg, engine, out, cases,
                                    {name: g.detach().cpu().numpy() for name, g in grads.acts_grad.items()})
    for name, m in moved.items():
        flips[name] = flips.get(name, np.zeros_like(m)) | m
    report.flips = {name: int(m.sum()) for name, m in flips.items()}
    report.flips.update({f"{name} (half rounding)": 1 for name in sorted(rounded)})
    below = set(cfg.layers) if rounded else layers_below(cfg, flips)
    above = layers_above(cfg, rounded)

    def grad_metric(actual, expected, diffuse: bool, layer: str, quantity: str, mask=None) -> Metric:
        if diffuse:
            return measure_rerouted(actual, expected, layer, quantity, tol)
        return measure(actual, expected, "e2e-grad", layer, quantity, tol, mask=mask)

    for layer in cfg.layers.values():
        if layer.type == "data":
            continue
        if layer.is_cost:
            cost = (out[layer.name][:1].detach().cpu().numpy(), np.asarray(engine.costs()[layer.name][:1]))
            add(measure_rerouted(*cost, layer.name, "forward_e2e", tol) if layer.name in above else
                measure(*cost, "e2e-cost", layer.name, "forward_e2e", tol))
            continue
        if layer.name in above:
            add(measure_rerouted(acts(out[layer.name]), engine.acts(layer.name), layer.name, "forward_e2e", tol))
        else:
            add(measure(acts(out[layer.name]), engine.acts(layer.name), "e2e-forward", layer.name, "forward_e2e",
                        tol))
        if needs_grad(layer.name) and not takes_fused_gradient(cfg, layer.name):
            add(grad_metric(grads.acts_grad[layer.name].cpu(), engine.acts_grad(layer.name), layer.name in below,
                            layer.name, "backward_e2e", flips.get(layer.name)))
    for layer in cfg.layers.values():
        if layer.type not in port.WEIGHT_TYPES:
            continue
        diffuse = layer.name in below or layer.name in flips  # G sums dY over the flipped positions too
        for i in range(len(layer.inputs)):
            add(grad_metric(grads.weight_grad[(layer.name, i)], _engine_weight_grad(engine, layer, i), diffuse,
                            layer.name, f"weight_grad_e2e[{i}]"))
        add(grad_metric(grads.bias_grad[layer.name], engine.bias_grad(layer.name), diffuse, layer.name,
                        "bias_grad_e2e"))


def _with_ancestors(cfg: Network, flips) -> set[str]:
    """The flipped layers and every layer below them (whose gradients the flip reaches)."""
    seen: set[str] = set()
    stack = list(flips)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(cfg.layers[name].inputs)
    return seen


def _training(report: ParityReport, cfg: Network, cases: int, seed: int, steps: int, dev, fault, tol,
              rescale, update_freq: int = 1) -> None:
    """K steps: the port's ReleaseSGD on its summed loss vs the engine's train_step."""
    engine = EngineNet(cfg, cases, seed, dev.type, init_weights=rescale is None,  # cuda: CUDA engine
                       update_freq=update_freq)
    if rescale is not None:
        rescale_weights(engine, seed + 100, rescale)
    mod = _port_module(cfg, seed, fault, dev)
    port.load_engine_weights(mod, engine)
    mod.to(dev)
    start = {k: v.clone() for k, v in mod.state_dict().items()}
    opt = port.ReleaseSGD.for_module(mod, update_freq=update_freq, minibatch=cases)
    mod.generator = torch.Generator().manual_seed(seed + 400)
    progress = [k / max(steps, 1) for k in range(steps)]
    rerouted: set[str] = set()  # layers whose G, in some step so far, held a gate flip's element
    diverged = False
    for step, p in enumerate(progress, 1):
        data, engine_data = make_batch(cfg, cases, seed + 500 + step)
        out = mod([d.to(dev) for d in data], train=True)
        port.masks_to_engine(mod, engine)
        engine.train_step(engine_data, progress=p)
        flips = gate_flips(cfg, engine, out, cases)  # the engine's acts are still this step's
        rounded, _ = rounding_flips(cfg, engine, out, cases)
        for name, m in flips.items():
            report.flips[f"step{step}:{name}"] = int(m.sum())
        rerouted |= _with_ancestors(cfg, flips)
        if diverged or rounded:  # an earlier flip, or a half rounding now, moves every layer by more than rounding
            rerouted |= set(cfg.layers)
        diverged = diverged or bool(flips) or bool(rounded)
        opt.zero_grad()
        quants = [l.name for l in cfg.layers.values() if l.type == "quant" and out[l.name].requires_grad]
        for name in quants:
            out[name].retain_grad()
        mod.objective(out).backward()
        _, moved = rounding_flips(cfg, engine, out, cases, {  # the engine's -dE/dy; the port's is -grad
            name: port.to_engine_acts(-out[name].grad.detach().cpu().reshape(cases, -1)).numpy()
            for name in quants if out[name].grad is not None})
        for name, m in moved.items():
            report.flips[f"step{step}:{name}"] = report.flips.get(f"step{step}:{name}", 0) + int(m.sum())
        rerouted |= _with_ancestors(cfg, moved)
        diverged = diverged or bool(moved)
        opt.set_progress(p, z=0.0)
        opt.step(cases)
        state = mod.state_dict()
        tol_k = steps_tol(tol, step)
        for layer in cfg.layers.values():
            if layer.type not in port.WEIGHT_TYPES:
                continue
            for i in range(len(layer.inputs)):
                key = f"{layer.name}.weight.{i}"
                w0 = port.weight_to_engine(layer, i, start[key], copy=False)  # start is never changed
                ew = engine.weights(layer.name, i)
                if layer.name in rerouted:  # a whole gradient element moved: compare W - W0 in norm
                    pw = port.weight_to_engine(layer, i, state[key], copy=False)
                    report.metrics.append(measure_rerouted(pw - w0, ew - w0, layer.name, f"step{step}:weights[{i}]",
                                                           tol))
                    continue
                pw = port.weight_to_engine(layer, i, state[key], copy=False)
                report.metrics.append(measure(pw, ew, "steps", layer.name, f"step{step}:weights[{i}]", tol_k,
                                              scale_of=ew - w0))
            b0 = port.bias_to_engine(layer, start[f"{layer.name}.bias"])
            eb = engine.biases(layer.name)
            if layer.name in rerouted:
                report.metrics.append(measure_rerouted(port.bias_to_engine(layer, state[f"{layer.name}.bias"]) - b0,
                                                       eb - b0, layer.name, f"step{step}:biases", tol))
                continue
            report.metrics.append(measure(port.bias_to_engine(layer, state[f"{layer.name}.bias"]), eb, "steps",
                                          layer.name, f"step{step}:biases", tol_k, scale_of=eb - b0))
