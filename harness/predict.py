"""Predictions of a trained network (``alexnet-replay predict``; driver.md §C.5, §F).

A checkpoint (this project's or the release's) is rebuilt into an engine net, and the test
batches of a range go through it as the driver tests them: the centre crop, or with
``multiview`` the V views of §C.5 (10 for the ImageNet providers, 9 for CIFAR) whose softmax
outputs are averaged in view order (:mod:`.multiview`). The result is a :class:`Predictions`:
the probabilities of one ``cost.logreg`` layer's softmax per image, the true labels, and the
batch of each image.

Errors are reported as the paper reports them: an image counts as a top-k error when its
true class is not among the k classes of its ranked list, the list being the one a
submission file holds (:func:`ranked`: decreasing probability, ties by the lower class
index). The engine's log uses another rule for ties (fractional credit, engine.md §3.23);
both are given (``top1``/``top5`` and ``top1_tie_credit``/``top5_tie_credit``), and they
differ only where probabilities tie.

Written files (:func:`write_predictions`, docs/json-formats.md): ``predictions.npz``
(arrays and a JSON header), ``predictions.json`` (the header, the errors, per class),
``test_preds_<batch>`` (the release's pickles, as ``--test-out`` wrote them, readable by
Python 2's numpy) and ``submission.txt`` (``txt-preds.py``'s format: per image, the five best
classes, 1-based, best first).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..engine import WEIGHT_LAYER_TYPES, EngineNet
from ..errors import ReplayError
from ..files import atomic_write_bytes, atomic_write_text
from ..readfile import FileProblem
from ..original.shownet import load as load_config
from . import checkpoint as ckpt
from .batches import read_batch, read_jpeg_batch, read_meta
from .checkpoint_format import RELEASE, checkpoint_format, newest_checkpoint
from .classes import data_facts
from .history import History
from .multiview import logreg_costs, multiview_costs
from .npzfile import NpzProblem, read_npz
from .options import OPTIONS, parse_range
from .pickles import DataError, load_pickle
from .providers import make_provider, minibatches
from .release_checkpoint import ReleaseCheckpoint, dumps_plain, load_release_checkpoint, read_release_checkpoint

__all__ = ["MAGIC", "Predictions", "Trained", "error_report", "forward_outputs", "load_trained", "predict",
           "ranked", "read_predictions", "submission_lines", "write_predictions"]

MAGIC = "alexnet-replay predictions"
VERSION = 1
TOP = 5


# -- a trained network ---------------------------------------------------------------------------------

@dataclass
class Trained:
    """A checkpoint opened for evaluation: the file, its options and state, its parsed network."""

    source: Path
    options: dict[str, Any]
    state: dict[str, Any]
    config: Any
    release: ReleaseCheckpoint | None = None
    net: EngineNet | None = None
    provider: Any = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # this project's format: its arrays

    @property
    def history(self) -> History:
        return self.release.history() if self.release is not None else History.from_state(self.state, str(self.source))

    def weights(self, layer: str, i: int = 0) -> np.ndarray:
        """Weight matrix `i` of `layer` as stored in the checkpoint (the owner's, when shared)."""
        lay = self.config.layers.get(layer)
        if lay is None or lay.type not in WEIGHT_LAYER_TYPES:
            have = [l.name for l in self.config.layers.values() if l.type in WEIGHT_LAYER_TYPES]
            raise ReplayError(f"{self.source}: no weight layer '{layer}' (weight layers: {', '.join(have)})")
        src = lay.weight_sources[i] if i < len(lay.weight_sources) else None
        owner, idx = (layer, i) if src is None else src
        if self.release is not None:
            mats = self.release.layers[owner].get("weights")
            mats = mats if isinstance(mats, (list, tuple)) else [mats]
            return np.asarray(mats[idx])
        key = f"{owner}/weights/{idx}"
        if key not in self.arrays:
            raise ReplayError(f"{self.source}: array '{key}' is missing")
        return self.arrays[key]


def _state_of(source: Path) -> tuple[dict[str, Any], dict[str, Any], ReleaseCheckpoint | None, dict[str, Any],
                                     dict[str, np.ndarray]]:
    """(options, state, release checkpoint or None, own meta, own arrays) of a checkpoint file,
    read by the checkpoint readers (their checks and limits)."""
    if checkpoint_format(source) == RELEASE:
        release = read_release_checkpoint(source)
        return dict(release.options), {"epoch": release.epoch, "batchnum": release.batchnum}, release, {}, {}
    meta, arrays = ckpt.read_checkpoint(source)
    state = meta.get("state") or {}
    options = dict(state.get("options") or {})
    options.setdefault("layer_def", meta.get("layers_file"))
    options.setdefault("layer_params", meta.get("params_file"))
    return options, state, None, meta, arrays


def load_trained(checkpoint: str | Path, *, data_path: str | None = None, data_provider: str | None = None,
                 image_size: tuple[int, int, int] | None = None) -> Trained:
    """Open a checkpoint (a file, or a run folder: its newest) without building a net.
    The network is parsed from the files it names, at the image size of the data (when a data
    path is known) or the checkpoint's."""
    source = newest_checkpoint(checkpoint)
    if not Path(source).is_file():
        raise ReplayError(f"{source}: no such checkpoint")
    options, state, release, meta, arrays = _state_of(Path(source))
    options = {**{k: d for k, (_, d) in OPTIONS.items()}, **options}
    if data_path:
        options["data_path"] = str(data_path)
    if data_provider:
        options["data_provider"] = data_provider
    if not options.get("layer_def") or not options.get("layer_params"):
        raise ReplayError(f"{source}: the checkpoint does not name its layer-definition and parameter files")
    if image_size is None and meta.get("image_size"):
        image_size = tuple(meta["image_size"])
    if image_size is None and release is not None:
        data = [r for r in release.layers.values() if r.get("type") == "data" and r.get("dataIdx") == 0]
        if data and isinstance(data[0].get("outputs"), int):
            side = int(round((data[0]["outputs"] / 3) ** 0.5))
            image_size = (3, side, side)
    config, _ = load_config(options["layer_def"], options["layer_params"], image_size=image_size)
    pairs = [tuple(p) for p in state.get("unshared", [])]
    if pairs:  # --unshare-weights made these copies when the run trained (driver.md §A.7)
        config = copy.deepcopy(config)
        for name, i in pairs:
            config.layers[name].weight_sources[int(i)] = None
    return Trained(Path(source), options, state, config, release, arrays=arrays)


def open_data(trained: Trained, batches: Sequence[int], multiview: bool) -> Any:
    """The test provider over `batches` of the checkpoint's (or the given) data, as the driver
    makes it; the network is parsed again when the data's image size differs."""
    opts = trained.options
    if not opts.get("data_path"):
        raise ReplayError(f"{trained.source}: the checkpoint names no data; give --data-path")
    dp = make_provider(opts.get("data_provider") or None, opts["data_path"], list(batches), test=True,
                       multiview=multiview, crop_border=int(opts.get("crop_border") or 4), workers=0,
                       scalar_mean=bool(opts.get("scalar_mean")))
    side = int(round((dp.get_data_dims(0) / 3) ** 0.5))
    if tuple(trained.config.profile.image) != (3, side, side):
        facts = data_facts(dp)
        trained.config, _ = load_config(opts["layer_def"], opts["layer_params"], image_size=(3, side, side),
                                        tree=facts["tree"])
        trained.net = None
    trained.provider = dp
    return dp


def build_net(trained: Trained, minibatch: int, device: str = "cpu") -> EngineNet:
    """An engine net holding the checkpoint's weights (built once per Trained)."""
    if trained.net is not None:
        return trained.net
    update = (trained.state.get("update") if isinstance(trained.state.get("update"), dict) else None) or {}
    conns = ckpt.saved_conns(trained.source) if trained.release is None else None
    net = EngineNet(trained.config, minibatch, int(trained.options.get("seed") or 0), device, conns=conns,
                    skip_init_funcs=True, update_freq=int(update.get("freq", 1)))
    if trained.release is not None:
        load_release_checkpoint(trained.release, net)
    else:
        ckpt.load_checkpoint(trained.source, net)
    trained.net = net
    return net


def prediction_layer(config, name: str | None):
    """The ``cost.logreg`` layer whose softmax is predicted: `name`, or the network's only one."""
    logregs = [l for l in config.layers.values() if l.type == "cost.logreg"]
    if name:
        layer = config.layers.get(name)
        if layer is None or layer.type != "cost.logreg":
            raise ReplayError(f"--logreg-name={name}: not a cost.logreg layer of {config.path} (its cost.logreg "
                              f"layers: {', '.join(l.name for l in logregs) or 'none'})")
        return layer
    if len(logregs) != 1:
        raise ReplayError(f"{config.path}: {len(logregs)} cost.logreg layers "
                          f"({', '.join(l.name for l in logregs) or 'none'}); name one with --logreg-name")
    return logregs[0]


def forward_outputs(net: EngineNet, matrices: Sequence[np.ndarray], layers: Sequence[str],
                    mini: int) -> dict[str, np.ndarray]:
    """Outputs (D, N) of `layers` for one batch, in test mode, minibatch by minibatch."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    for part in minibatches(matrices, mini):
        net.forward(part, train=False)
        for name in layers:
            parts[name].append(np.array(net.acts(name), dtype=np.float32, copy=True))
    return {name: np.concatenate(p, axis=1) for name, p in parts.items()}


# -- predictions -----------------------------------------------------------------------------------------

@dataclass
class Predictions:
    """Per image: probabilities (N, classes) float32, true label (-1: unknown) and batch number."""

    probs: np.ndarray
    labels: np.ndarray
    batches: np.ndarray
    label_names: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.probs = np.ascontiguousarray(self.probs, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.batches = np.asarray(self.batches, dtype=np.int64).reshape(-1)
        if self.probs.ndim != 2 or self.labels.size != self.probs.shape[0] or self.batches.size != self.labels.size:
            raise ReplayError(f"predictions: {self.probs.shape} probabilities for {self.labels.size} labels and "
                              f"{self.batches.size} batch numbers")

    @property
    def has_labels(self) -> bool:
        return bool(self.labels.size) and bool((self.labels >= 0).all())


def predict(trained: Trained, batches: Sequence[int], *, multiview: bool = False, logreg_name: str | None = None,
            minibatch: int = 128, device: str = "cpu") -> Predictions:
    """The softmax outputs of `logreg_name` (or the network's one cost.logreg) for every image of
    test batches `batches`: centre crops, or the average over the views with `multiview`."""
    dp = open_data(trained, batches, multiview)
    try:
        net = build_net(trained, minibatch, device)
        layer = prediction_layer(trained.config, logreg_name or trained.options.get("logreg_name") or None)
        label_layer = trained.config.layers[layer.inputs[0]]
        if label_layer.type != "data":
            raise ReplayError(f"{trained.config.path}: the labels of '{layer.name}' must come from a data layer")
        classes = trained.config.layers[layer.inputs[1]].outputs
        views = getattr(dp, "num_views", 1)
        probs, labels, nums = [], [], []
        for b in batches:
            matrices = dp.get_batch(b)
            if views > 1:  # averaged in view order, as the driver's multiview test (§C.5)
                out: dict[str, np.ndarray] = {}
                multiview_costs(net, matrices, views, minibatch, probs_out=out)
                p = out[layer.name]
            else:
                p = forward_outputs(net, matrices, [layer.inputs[1]], minibatch)[layer.inputs[1]]
            lab = matrices[label_layer.attrs["dataIdx"]][0, :p.shape[1]].astype(np.int64)
            if lab.size and lab.max() >= classes:
                raise ReplayError(f"{trained.options['data_path']}: batch {b} has label {int(lab.max())}, but "
                                  f"'{layer.inputs[1]}' has {classes} outputs")
            probs.append(p.T)
            labels.append(lab)
            nums.append(np.full(lab.size, b))
    finally:
        close = getattr(dp, "close", None)
        if close is not None:
            close()
    names = list(dp.meta.label_names) if getattr(dp, "meta", None) is not None else []
    return Predictions(np.concatenate(probs), np.concatenate(labels), np.concatenate(nums), names,
                       {"source": str(trained.source), "layer": layer.name, "softmax": layer.inputs[1],
                        "views": views, "data_path": str(trained.options["data_path"]),
                        "batches": [int(b) for b in batches]})


# -- ranks and errors ------------------------------------------------------------------------------------

def ranked(probs: np.ndarray, k: int = TOP) -> np.ndarray:
    """(N, k) class indices per image, in decreasing probability; equal probabilities in
    increasing class index (a stable sort), so the list is the same on every machine."""
    p = np.asarray(probs, dtype=np.float32)
    return np.argsort(-p, axis=1, kind="stable")[:, :min(k, p.shape[1])]


def error_report(preds: Predictions) -> dict[str, Any]:
    """Top-1 and top-5 error (ranked lists, and the engine's tie credit), overall and per class."""
    if not preds.has_labels:
        return {"images": int(preds.labels.size), "labelled": False}
    n = preds.labels.size
    top = ranked(preds.probs, TOP)
    hit1 = top[:, 0] == preds.labels
    hit5 = (top == preds.labels[:, None]).any(axis=1)
    with np.errstate(divide="ignore"):  # a probability of 0 (an ensemble's zero weight): -log p is not used
        _, e1, e5 = logreg_costs(preds.probs.T, preds.labels, TOP)
    per_class = []
    for c in np.unique(preds.labels):
        sel = preds.labels == c
        per_class.append({"class": int(c), "name": _name(preds, int(c)), "images": int(sel.sum()),
                          "top1": float(1 - hit1[sel].mean()), "top5": float(1 - hit5[sel].mean())})
    return {"images": int(n), "labelled": True, "top1": float(1 - hit1.mean()), "top5": float(1 - hit5.mean()),
            "top1_tie_credit": e1 / n, "top5_tie_credit": e5 / n, "per_class": per_class}


def _name(preds: Predictions, c: int) -> str:
    return preds.label_names[c] if 0 <= c < len(preds.label_names) else f"class {c}"


def submission_lines(preds: Predictions) -> list[str]:
    """``txt-preds.py``'s format: per image, the 5 best classes, 1-based, best first."""
    return [" ".join(str(int(c) + 1) for c in row) for row in ranked(preds.probs, TOP)]


# -- files -------------------------------------------------------------------------------------------------

def _header(preds: Predictions) -> dict[str, Any]:
    return {"format": MAGIC, "version": VERSION, "label_names": preds.label_names, **preds.info}


def write_predictions(preds: Predictions, out: str | Path, *, release: bool = True) -> dict[str, Path]:
    """Write predictions.npz, predictions.json, submission.txt and (`release`) the release's
    ``test_preds_<batch>`` pickles into folder `out`, each atomically."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReplayError(f"{out}: cannot make the folder ({exc.strerror or exc})") from None
    header = _header(preds)
    raw = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    paths = {"npz": atomic_write_bytes(out / "predictions.npz", lambda f: np.savez(
        f, __meta__=raw, probs=preds.probs, labels=preds.labels, batches=preds.batches))}
    paths["json"] = atomic_write_text(out / "predictions.json",
                                      json.dumps({**header, "errors": error_report(preds)}, indent=1))
    paths["txt"] = atomic_write_text(out / "submission.txt", "\n".join(submission_lines(preds)) + "\n")
    if release:
        note = f"generated from {preds.info.get('source', 'alexnet-replay')}"
        for b in dict.fromkeys(preds.batches.tolist()):
            data = np.ascontiguousarray(preds.probs[preds.batches == b], dtype=np.float32)
            atomic_write_bytes(out / f"test_preds_{b}", dumps_plain({"data": data, "note": note}))
    return paths


def _read_npz(path: Path) -> Predictions:
    try:  # the checkpoints' reader: sizes checked before anything is read, no pickle
        arrays = read_npz(path)
    except FileProblem as exc:
        raise ReplayError(f"{path}: " + ("no such file" if exc.kind == "missing" else exc.reason)) from None
    except NpzProblem as exc:
        raise ReplayError(f"{path}: not a readable predictions file ({exc})") from None
    try:
        header = json.loads(bytes(arrays.pop("__meta__")).decode("utf-8"))
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        header = None
    if not isinstance(header, dict) or header.get("format") != MAGIC:
        raise ReplayError(f"{path}: not an alexnet-replay predictions file (no '{MAGIC}' header)")
    for key in ("probs", "labels", "batches"):
        if key not in arrays:
            raise ReplayError(f"{path}: array '{key}' is missing")
    info = {k: v for k, v in header.items() if k not in ("format", "version", "label_names")}
    return Predictions(arrays["probs"], arrays["labels"], arrays["batches"], list(header.get("label_names") or []),
                       info)


def _read_release_folder(folder: Path, data_path: str | None) -> Predictions:
    """``test_preds_<b>`` files of --test-out or avg-test.py; labels from `data_path`'s batches."""
    files = sorted((p for p in folder.iterdir() if re.fullmatch(r"test_preds_\d+", p.name)),
                   key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not files:
        raise ReplayError(f"{folder}: no predictions.npz and no test_preds_<batch> files")
    probs, labels, nums = [], [], []
    meta = read_meta(data_path) if data_path else None
    for path in files:
        obj = load_pickle(path)
        data = obj.get("data") if isinstance(obj, dict) else None
        if not isinstance(data, np.ndarray) or data.ndim != 2:
            raise DataError("missing or not a (cases x classes) array", file=path, key="data")
        b = int(path.name.rsplit("_", 1)[1])
        if meta is not None:
            try:
                lab = np.asarray(read_batch(data_path, b, meta).labels).reshape(-1)
            except DataError:  # a JPEG batch (driver.md §D.4)
                lab = np.asarray(read_jpeg_batch(data_path, b, meta).labels).reshape(-1)
            if lab.size != data.shape[0]:
                raise ReplayError(f"{path}: {data.shape[0]} rows, but batch {b} of {data_path} has {lab.size} images")
        else:
            lab = np.full(data.shape[0], -1)
        probs.append(data)
        labels.append(lab)
        nums.append(np.full(data.shape[0], b))
    names = list(meta.label_names) if meta is not None else []
    return Predictions(np.concatenate(probs), np.concatenate(labels), np.concatenate(nums), names,
                       {"source": str(folder)})


def read_predictions(path: str | Path, data_path: str | None = None) -> Predictions:
    """A predictions.npz, a folder holding one, or a folder of the release's ``test_preds_<b>``
    (labels from the batches of `data_path`, else unknown)."""
    path = Path(path)
    if path.is_dir():
        return _read_npz(path / "predictions.npz") if (path / "predictions.npz").is_file() \
            else _read_release_folder(path, data_path)
    return _read_npz(path)


def parse_batches(text: str, what: str = "test_range") -> list[int]:
    return parse_range(text, what)
