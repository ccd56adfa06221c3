"""Export a release network, with the engine's weights, as a torch.export or ONNX file.

>>> result = export_model("cifar-18pct", None, Path("cifar.pt2"), weights="ckpt.npz")
>>> result.max_abs_error, result.passed           # checked against the engine's forward

The exported model is the port's inference path (the test pass of engine.md §3.16:
dropout scales by keep, no mask): it takes images (N, C, H, W) float32 and returns
the probabilities of the network's softmax layer (N, classes). Only the layers the
softmax depends on are in it; label inputs and cost layers are left out.

The file's suffix names the format (:data:`FORMATS`):

* ``.pt2``: PyTorch's supported path, an ExportedProgram (``torch.export.export``, saved
  with ``torch.export.save``; load it with ``torch.export.load(path).module()``);
* ``.onnx``: ONNX, by the exporter torch recommends (``torch.onnx.export(dynamo=True)``,
  itself built on torch.export; it needs the onnx and onnxscript packages);
* ``.pt``: TorchScript (``torch.jit.trace``), only where the installed torch still runs
  torch.jit without a deprecation warning (:func:`torchscript_supported`: torch 2.13
  deprecates it, 2.14 warns with a FutureWarning); elsewhere a one-line error names
  the other two.

In all three the batch dimension stays free. The port's custom autograd Functions
(max-undo pooling, the abs/brelu/drelu neurons, eltmax) exist for their backward
only, and a traced or exported graph cannot hold them; :func:`inference_layer`
computes the same forward values with plain operations (tests/test_export.py shows
them bit-equal to the port's forward).

Every export is checked before it is kept: the file is loaded back
(``torch.export.load``, ``torch.jit.load``, or an onnxruntime session on the CPU), run
on a random batch of another size than the export's example, and compared with the
C++ engine's test-pass probabilities on the same batch within :data:`FORWARD_TOL`. A
file that fails the check is not written; one that passes is written atomically
(``alexnet_replay.files``), so a reader never sees part of one.
"""

from __future__ import annotations

import argparse
import functools
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..engine import load as load_engine
from ..errors import ReplayError
from ..files import atomic_write_bytes
from ..harness.checkpoint import load_checkpoint
from ..original.layers import Layer, Network
from ..testing import compare
from . import port
from .port.ops import eltmax_forward, neuron_forward, pool_forward

FORMATS = {".pt2": "exportedprogram", ".onnx": "onnx", ".pt": "torchscript"}
# Probabilities in [0, 1]. The port's conv/fc sums run in another fp32 order than the
# engine's OpenBLAS (~1e-6 relative on the logits, tests/test_port.py), softmax adds a
# few ulp, and onnxruntime may fuse ops; 1e-5 absolute + 1e-4 relative holds all of that
# with room and is far below any difference a wrong weight or layout would make.
FORWARD_TOL = (1e-5, 1e-4)  # (atol, rtol): |exported - engine| <= atol + rtol * |engine|
CHECK_CASES = 3             # odd on purpose; the export itself is traced with 2 cases


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and how its check went."""

    path: Path
    format: str                 # "exportedprogram", "onnx" or "torchscript" (FORMATS)
    output: str                 # the softmax layer whose probabilities the model returns
    image: tuple[int, int, int]  # (C, H, W) of the input
    classes: int
    cases: int                  # size of the random batch of the check
    max_abs_error: float        # max |exported - engine| over the batch's probabilities
    max_rel_error: float
    atol: float
    rtol: float
    passed: bool

    def summary(self) -> str:
        c, h, w = self.image
        return (f"{self.path}: {self.format}, images (N, {c}, {h}, {w}) -> {self.output} (N, {self.classes}); "
                f"against the engine on {self.cases} random images: max abs error {self.max_abs_error:.3g} "
                f"(tolerance {self.atol:g} + {self.rtol:g}*|p|), {'ok' if self.passed else 'FAILED'}")


def inference_layer(net: port.ReleaseNet, layer: Layer, xs: list[Tensor]) -> Tensor:
    """One layer's test-pass output, (N, *layer.shape), with exportable operations only:
    the port op's plain-operation forward where it has one (port/layers.py), else its forward."""
    n = xs[0].shape[0]
    entry = port.LAYERS[layer.type]
    if entry.inference is None:
        y = net.layer_forward(layer.name, xs, train=False)
    else:
        y = entry.inference(layer, xs)
    return y.reshape(n, *layer.shape)


def _output_layer(config: Network) -> Layer:
    softmaxes = [l for l in config.layers.values() if l.type == "softmax"]
    if not softmaxes:
        raise ReplayError(f"{config.path}: the network has no softmax layer, so there are no probabilities "
                          "to export")
    return softmaxes[-1]


def _needed(config: Network, output: Layer) -> list[Layer]:
    """The layers `output` depends on, itself included, in execution order."""
    need = {output.name}
    for layer in reversed(list(config.layers.values())):
        if layer.name in need:
            need.update(layer.inputs)
    return [l for l in config.layers.values() if l.name in need]


class InferenceModel(nn.Module):
    """images (N, C, H, W) float32 -> the softmax layer's probabilities (N, classes), test pass."""

    def __init__(self, net: port.ReleaseNet, output: Layer | None = None) -> None:
        super().__init__()
        self.net = net
        config = net.config
        self.output = output or _output_layer(config)
        self.layers = _needed(config, self.output)
        data = [l for l in self.layers if l.type == "data"]
        if len(data) != 1:
            raise ReplayError(f"{config.path}: layer '{self.output.name}' depends on {len(data)} data layers; "
                              "an exported model takes one input, the images")
        self.data = data[0]
        image = config.profile.image
        if self.data.outputs != int(np.prod(image)):
            raise ReplayError(f"{config.path}: data layer '{self.data.name}' has {self.data.outputs} values per "
                              f"case, not the images' {image}")
        self.image = tuple(int(v) for v in image)
        self.net.eval()

    def forward(self, images: Tensor) -> Tensor:
        n = images.shape[0]
        out = {self.data.name: images.reshape(n, *self.image)}
        for layer in self.layers:
            if layer.type != "data":
                out[layer.name] = inference_layer(self.net, layer, [out[i] for i in layer.inputs])
        return out[self.output.name].reshape(n, -1)


# ---------------------------------------------------------------------------
# Writing and checking


@functools.cache
def torchscript_supported() -> bool:
    """Whether the installed torch traces, saves and loads TorchScript without a
    deprecation warning. torch 2.13 deprecates torch.jit (DeprecationWarning) and 2.14
    says so louder (FutureWarning): a .pt written there is a format on its way out, and
    under warnings-as-errors it fails outright, so .pt is offered only where torch.jit
    is quiet. Asked of torch itself, on a one-weight model, rather than by version."""
    probe = nn.Linear(1, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            buf = io.BytesIO()
            torch.jit.save(torch.jit.trace(probe, (torch.zeros(1, 1),), check_trace=False), buf)
            torch.jit.load(io.BytesIO(buf.getvalue()))
        except Exception:  # a torch without a working torch.jit
            return False
    return not any(issubclass(w.category, (DeprecationWarning, FutureWarning)) for w in caught)


def _format_of(to: Path) -> str:
    fmt = FORMATS.get(to.suffix.lower())
    choices = "model.pt2 (torch.export) or model.onnx (ONNX)"
    if fmt is None:
        if torchscript_supported():
            choices = "model.pt2 (torch.export), model.onnx (ONNX) or model.pt (TorchScript)"
        raise ReplayError(f"{to}: unknown export format '{to.suffix or '(no suffix)'}'; name the file {choices}")
    if fmt == "torchscript" and not torchscript_supported():
        raise ReplayError(f"{to}: TorchScript (.pt) is deprecated in torch {torch.__version__} and is not "
                          f"written; name the file {choices}")
    return fmt


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ReplayError("checking an ONNX export needs onnxruntime: pip install onnxruntime") from None
    return onnxruntime


def _to_bytes(model: InferenceModel, fmt: str, example: Tensor) -> bytes:
    """The serialised model, its batch dimension free: an ExportedProgram (torch.export),
    TorchScript (torch.jit.trace) or ONNX (torch.onnx.export)."""
    batch = torch.export.Dim("batch")
    with torch.no_grad(), warnings.catch_warnings():
        if fmt == "exportedprogram":
            program = torch.export.export(model, (example,), dynamic_shapes={"images": {0: batch}})
            buf = io.BytesIO()
            torch.export.save(program, buf)
            return buf.getvalue()
        if fmt == "torchscript":
            # The tracer warns where a size becomes a Python number: the image sizes are constants
            # of the model (only N varies, and the check runs another N than the trace's).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(model, (example,), check_trace=False)  # checked against the engine instead
            buf = io.BytesIO()
            torch.jit.save(traced, buf)
            return buf.getvalue()
        try:
            import onnx  # noqa: F401  (torch.onnx's exporter needs onnx and onnxscript)
            import onnxscript  # noqa: F401
        except ImportError as exc:
            raise ReplayError(f"exporting to ONNX needs the onnx and onnxscript packages ({exc.name} is missing): "
                              "pip install onnx onnxscript onnxruntime") from None
        warnings.simplefilter("ignore", FutureWarning)  # deprecations inside torch's own exporter
        quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed" notes
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(model, (example,), input_names=["images"], output_names=["probs"],
                                        dynamo=True, dynamic_shapes={"images": {0: batch}}, verbose=False)
        finally:
            quiet.setLevel(level)
        return program.model_proto.SerializeToString()


def _run_exported(data: bytes, fmt: str, images: np.ndarray) -> np.ndarray:
    """Load the serialised model back, as a user would, and run it on `images`."""
    if fmt == "exportedprogram":
        program = torch.export.load(io.BytesIO(data)).module()
        with torch.no_grad():
            return program(torch.from_numpy(images)).numpy()
    if fmt == "torchscript":
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
        loaded.eval()
        with torch.no_grad():
            return loaded(torch.from_numpy(images)).numpy()
    ort = _onnxruntime()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {session.get_inputs()[0].name: images})
    return np.asarray(probs)


def _engine_probs(engine: Any, model: InferenceModel, images: np.ndarray) -> np.ndarray:
    """The engine's test-pass probabilities for `images` (N, C, H, W): (N, classes)."""
    n = images.shape[0]
    config = engine.config
    data = []
    for idx in range(1 + max(l.attrs["dataIdx"] for l in config.layers.values() if l.type == "data")):
        layer = next((l for l in config.layers.values() if l.type == "data" and l.attrs["dataIdx"] == idx), None)
        if layer is not None and layer.name == model.data.name:
            data.append(np.ascontiguousarray(images.reshape(n, -1).T))
        else:  # labels and other inputs the probabilities do not depend on: class 0 / zeros
            data.append(np.zeros((layer.outputs if layer is not None else 1, n), dtype=np.float32))
    engine.forward(data, train=False)
    return np.ascontiguousarray(np.asarray(engine.acts(model.output.name)).T)


def compare_probs(exported: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> dict:
    """The comparison of the check (alexnet_replay.testing.compare; a seam for tests)."""
    return compare(exported, expected, atol, rtol)


def export_model(layers: str | Path, params: str | Path | None, to: str | Path, weights: str | Path | None = None,
                 image_size: tuple[int, int, int] | None = None, seed: int = 0) -> ExportResult:
    """Export the network of `layers` (+ `params`) with the engine's weights to `to` (.pt2, .onnx, .pt).

    Weights: a fresh engine net initialised with `seed` (engine.md §4.1), or, with
    `weights`, those of a checkpoint written by ``harness.checkpoint.save_checkpoint``.
    Random sparse connection tables are not in a checkpoint: they come from `seed`, as
    when the checkpoint's net was built (give the same seed). The exported file is
    checked against the engine's forward (see the module doc) before it is written;
    a failed check raises ReplayError and writes nothing.
    """
    to = Path(to)
    fmt = _format_of(to)
    if fmt == "onnx":
        _onnxruntime()  # fail before any work
    if not to.parent.is_dir():
        raise ReplayError(f"{to.parent}: no such folder")
    engine = load_engine(layers, params, image_size=image_size, minibatch=CHECK_CASES, seed=seed)
    if weights is not None:
        load_checkpoint(weights, engine)
    net = port.build_module(engine.config, seed=seed, init=False)
    port.load_engine_weights(net, engine)
    model = InferenceModel(net).eval()
    for p in model.parameters():
        p.requires_grad_(False)

    rng = np.random.default_rng(seed)
    example = torch.from_numpy(rng.standard_normal((2, *model.image)).astype(np.float32))
    images = rng.standard_normal((CHECK_CASES, *model.image)).astype(np.float32)
    try:
        data = _to_bytes(model, fmt, example)
    except ReplayError:
        raise
    except Exception as exc:  # the exporter's own errors are long; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReplayError(f"{to}: the {fmt} export failed: {first}") from exc
    got = _run_exported(data, fmt, images)
    want = _engine_probs(engine, model, images)
    atol, rtol = FORWARD_TOL
    m = compare_probs(got, want, atol, rtol) if got.shape == want.shape else None
    if m is None or not m["passed"]:
        detail = (f"shape {got.shape}, the engine's {want.shape}" if m is None else
                  f"max abs error {m['max_abs']:.3g}, max rel error {m['max_rel']:.3g}, "
                  f"{m['tolerance_used']:.3g}x the tolerance" + ("" if m["finite"] else ", non-finite values"))
        raise ReplayError(f"{to}: the exported model does not match the engine's forward on {CHECK_CASES} random "
                          f"images ({detail}; tolerance {atol:g} + {rtol:g}*|p|); nothing was written")
    atomic_write_bytes(to, lambda f: f.write(data))
    return ExportResult(path=to, format=fmt, output=model.output.name, image=model.image,
                        classes=int(want.shape[1]), cases=CHECK_CASES, max_abs_error=m["max_abs"],
                        max_rel_error=m["max_rel"], atol=atol, rtol=rtol, passed=True)


# ---------------------------------------------------------------------------
# The `alexnet-replay export` subcommand (wired in cli.py)


def cli_export(args: argparse.Namespace) -> int:
    """``alexnet-replay export`` (arguments defined in alexnet_replay/cli.py, so that the
    CLI loads torch only for the commands that use it)."""
    result = export_model(args.layers, args.params, Path(args.to), weights=args.weights,
                          image_size=args.image_size, seed=args.seed)
    print(result.summary())
    return 0 if result.passed else 1


__all__ = ["ExportResult", "FORMATS", "FORWARD_TOL", "InferenceModel", "export_model", "inference_layer",
           "pool_forward", "neuron_forward", "eltmax_forward", "cli_export", "compare_probs", "torchscript_supported"]
