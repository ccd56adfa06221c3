"""The project's own checkpoint format: arrays plus JSON metadata, no pickle.

One ``.npz`` file (numpy's zip of ``.npy`` arrays, read with
``allow_pickle=False``, so loading one cannot run code) holding, for every weight
layer, its weight matrices and increments (momentum buffers) and its biases and
bias increments, in the release's layouts; and a ``__meta__`` entry with a JSON
document: a magic string and version, the network's signature (layer names,
types and matrix shapes), the training state (epoch, batch, progress) and any
options the caller stores.

Version 2 adds what the update rules of engine.md §4.2 and §4.4 carry between
minibatches, so that a resumed run continues bit for bit: for a layer with
``superEps`` > 0, the running averages of each weight matrix
(``<layer>/weights_gavg/<i>``, ``<layer>/weights_g2avg/<i>``); and, for a
checkpoint taken in the middle of a ``--wupdate-freq`` accumulation, the meta's
``"update": {"freq": F, "accumulated": k}`` with k > 0 and the gradients summed so
far (``<layer>/weights_grad/<i>`` where the matrix has a gradient buffer,
``<layer>/biases_grad``); the increments already hold the fc and local sums. Such
a checkpoint resumes only with the same F. Averages missing from a file (version 1,
or superEps turned on in the parameter file, which every start re-reads) start at
zero, as a fresh net's. Version 1 files are read as before.

Files are written to a temporary file in the same folder, flushed and fsynced,
then renamed over the target (:func:`alexnet_replay.files.atomic_write_bytes`),
so a run killed at any moment leaves the previous checkpoint intact.

:func:`convert_checkpoint` converts between this format and the release's
(:mod:`.release_checkpoint`); :mod:`.checkpoint_format` tells the two apart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import WEIGHT_LAYER_TYPES, EngineNet
from ..errors import ReplayError, quote
from ..files import atomic_write_bytes
from ..original.shownet import load as load_config
from .checkpoint_format import RELEASE, checkpoint_format
from .npzfile import FileProblem, NpzProblem, read_npz
from .release_checkpoint import (load_release_checkpoint, read_release_checkpoint, save_release_checkpoint,
                                 unusable_weights)

MAGIC = "alexnet-replay checkpoint"
VERSION = 2
READABLE = (1, 2)  # version 1: no superEps averages, never mid-accumulation


def signature(net: EngineNet) -> list[list[Any]]:
    """[name, type, [matrix shapes...], bias shape] for every weight layer, in order."""
    sig = []
    for layer in net.config.layers.values():
        if layer.type in WEIGHT_LAYER_TYPES:
            sig.append([layer.name, layer.type, [list(shape) for shape in layer.weights], list(layer.biases)])
    return sig


def _has(net: EngineNet, kind: str, layer: str, i: int) -> bool:
    return net.has_array(kind, layer, i)  # an engine net, or the port's (harness/backends.py)


def _targets(net: EngineNet, accumulating: bool = False) -> dict[str, tuple[str, str, int]]:
    """Checkpoint array name -> (kind, layer, input) of EngineNet.array / set_array.
    `accumulating`: also the gradients summed so far (mid-accumulation, see the module docstring)."""
    targets = {}
    for layer in net.config.layers.values():
        if layer.type not in WEIGHT_LAYER_TYPES:
            continue
        for i, src in enumerate(layer.weight_sources):
            if src is None:  # a shared matrix is stored once, by its owner
                targets[f"{layer.name}/weights/{i}"] = ("weights", layer.name, i)
                targets[f"{layer.name}/weights_inc/{i}"] = ("weight_inc", layer.name, i)
                if _has(net, "weight_gavg", layer.name, i):  # superEps > 0 (engine.md §4.4)
                    targets[f"{layer.name}/weights_gavg/{i}"] = ("weight_gavg", layer.name, i)
                    targets[f"{layer.name}/weights_g2avg/{i}"] = ("weight_g2avg", layer.name, i)
                if accumulating and _has(net, "weight_grad", layer.name, i):
                    targets[f"{layer.name}/weights_grad/{i}"] = ("weight_grad", layer.name, i)
        targets[f"{layer.name}/biases"] = ("biases", layer.name, 0)
        targets[f"{layer.name}/biases_inc"] = ("bias_inc", layer.name, 0)
        if accumulating:
            targets[f"{layer.name}/biases_grad"] = ("bias_grad", layer.name, 0)
    return targets


def nonfinite_arrays(net: EngineNet) -> list[str]:
    """The weight and bias arrays of `net` (engine or port) that hold a NaN or an infinity, by
    their checkpoint names: a run stops on them before it saves (issue 13)."""
    return [name for name, (kind, layer, i) in _targets(net).items()
            if kind in ("weights", "biases") and not np.isfinite(net.array(kind, layer, i)).all()]


def _arrays(net: EngineNet, accumulating: bool = False) -> dict[str, np.ndarray]:
    # views on the CPU, copies on CUDA (EngineNet.array); and the connection tables of random
    # sparse inputs, which a resumed run (or --init-from's initCFunc) must use again
    arrays = {name: net.array(*target) for name, target in _targets(net, accumulating).items()}
    for layer, tables in getattr(net, "conns", {}).items():
        for i, table in enumerate(tables):
            if table is not None:
                arrays[f"{layer}/conns/{i}"] = np.asarray(table, dtype=np.int32)
    return arrays


def saved_conns(path: str | Path) -> dict[str, list[list[int] | None]]:
    """The connection tables a checkpoint of this project holds, by layer ({} for none)."""
    try:  # within the limits of .npzfile (regular files only, sizes checked first)
        found = {name: a for name, a in read_npz(path).items() if name.count("/") == 2 and "/conns/" in name}
    except (FileProblem, NpzProblem):
        return {}  # read_checkpoint reports what is wrong with the file
    out: dict[str, list[list[int] | None]] = {}
    for name, table in found.items():
        layer, _, i = name.split("/")
        tables = out.setdefault(layer, [])
        tables += [None] * (int(i) + 1 - len(tables))
        tables[int(i)] = [int(v) for v in table.ravel()]
    return out


def save_checkpoint(path: str | Path, net: EngineNet, state: dict[str, Any] | None = None, *,
                    compress: bool = False) -> None:
    """Write `net`'s weights and increments and `state` (JSON-able) to `path`, atomically;
    `compress` deflates the arrays (the driver's ``--zip-save=1``), which the reader needs not know."""
    meta = {"format": MAGIC, "version": VERSION, "layers_file": net.config.path,
            "params_file": net.config.params_path, "image_size": list(net.config.profile.image),
            "signature": signature(net), "state": state or {},
            "update": {"freq": net.update_freq, "accumulated": net.accumulated}}
    header = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    # Streamed into the temporary file; Fortran-ordered fc matrices are stored as
    # they are (np.save records the order).
    savez = np.savez_compressed if compress else np.savez
    arrays = _arrays(net, accumulating=net.accumulated > 0)
    atomic_write_bytes(Path(path), lambda f: savez(f, __meta__=header, **arrays))


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, arrays) of a checkpoint, with one clear ReplayError for a bad file."""
    path = Path(path)
    try:  # within the limits of .npzfile: declared sizes checked before anything is read
        arrays = read_npz(path)
    except FileProblem as exc:
        raise ReplayError(f"{path}: " + ("no such checkpoint" if exc.kind == "missing" else exc.reason)) from None
    except NpzProblem as exc:
        raise ReplayError(f"{path}: not a readable alexnet-replay checkpoint (truncated or another format: "
                          f"{exc})") from None
    raw = arrays.pop("__meta__", None)
    try:
        meta = json.loads(bytes(raw).decode("utf-8")) if raw is not None and raw.dtype == np.uint8 else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    except RecursionError:
        raise ReplayError(f"{path}: checkpoint header (__meta__) is nested too deeply to read") from None
    if not isinstance(meta, dict) or meta.get("format") != MAGIC:
        raise ReplayError(f"{path}: not an alexnet-replay checkpoint (no '{MAGIC}' header); a checkpoint "
                          "of the 2012 release is a pickle: convert it with the release-checkpoint reader")
    if meta.get("version") not in READABLE:
        raise ReplayError(f"{path}: checkpoint format version {json.dumps(meta.get('version'))[:40]}, this "
                          f"alexnet-replay reads versions {', '.join(map(str, READABLE))}")
    problem = header_problem(meta)
    if problem:
        raise ReplayError(f"{path}: checkpoint header (__meta__) was edited or damaged: {problem}")
    for name, array in arrays.items():
        bad = unusable_weights(array) if "/conns/" not in name else None
        if bad:
            raise ReplayError(f"{path}: layer '{name.split('/')[0]}': array '{name}': {bad}")
    return meta, arrays


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def header_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the types of a checkpoint header's fields (the ones this reader
    uses), or None: a hand-edited header gets one message instead of a crash later."""
    def shape(v: Any) -> bool:
        return isinstance(v, list) and all(_is_int(d) and d >= 0 for d in v)

    sig = meta.get("signature")
    if not isinstance(sig, list) or not all(
            isinstance(r, list) and len(r) == 4 and isinstance(r[0], str) and isinstance(r[1], str)
            and isinstance(r[2], list) and all(shape(m) for m in r[2]) and shape(r[3]) for r in sig):
        return "'signature' must be a list of [layer name, type, [matrix shapes], bias shape]"
    for key in ("layers_file", "params_file"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            return f"'{key}' must be a path (text), not {type(meta[key]).__name__}"
    size = meta.get("image_size")
    if size is not None and not (shape(size) and len(size) == 3 and min(size) >= 1):
        return "'image_size' must be [channels, height, width], three positive integers"
    state = meta.get("state")
    if not isinstance(state, dict):
        return f"'state' must be an object (got {'null' if state is None else type(state).__name__})"
    for key, low in (("epoch", 1), ("batchnum", 0), ("batches_done", 0)):
        if key in state and not (_is_int(state[key]) and low <= state[key] < 2**31):
            return f"'state.{key}' must be an integer from {low} (got {quote(json.dumps(state[key]), 40)})"
    if state.get("options") is not None and not isinstance(state["options"], dict):
        return "'state.options' must be an object"
    update = meta.get("update", {"freq": 1, "accumulated": 0})
    if not isinstance(update, dict) or not all(
            _is_int(update.get(k, d)) and update.get(k, d) >= d for k, d in (("freq", 1), ("accumulated", 0))):
        return "'update' must be {\"freq\": integer >= 1, \"accumulated\": integer >= 0}"
    return None


def load_checkpoint(path: str | Path, net: EngineNet) -> dict[str, Any]:
    """Copy a checkpoint's weights and increments into `net`; returns its stored state.

    Refuses (ReplayError, net untouched) a checkpoint of another network.
    """
    meta, arrays = read_checkpoint(path)
    want = signature(net)
    if meta["signature"] != want:
        theirs = {row[0]: row for row in meta["signature"]}
        ours = {row[0]: row for row in want}
        missing = sorted(set(ours) - set(theirs))
        differing = sorted(n for n in set(ours) & set(theirs) if ours[n] != theirs[n])
        detail = f"layers missing from it: {', '.join(missing[:5])}" if missing else \
            f"layers with other shapes: {', '.join(differing[:5]) or '(order differs)'}"
        raise ReplayError(f"{path}: checkpoint of another network ({meta.get('layers_file')}), not of "
                          f"{net.config.path}: {detail}")
    update = meta.get("update") or {"freq": 1, "accumulated": 0}
    accumulated = int(update.get("accumulated", 0))
    if accumulated and int(update.get("freq", 1)) != net.update_freq:
        raise ReplayError(f"{path}: checkpoint taken after {accumulated} minibatch(es) of a --wupdate-freq="
                          f"{update.get('freq')} accumulation; resume it with --wupdate-freq={update.get('freq')} "
                          f"(this net has {net.update_freq})")
    if net.accumulated:
        raise ReplayError(f"{path}: the net holds {net.accumulated} accumulated minibatch(es); load a checkpoint "
                          "into a net between updates")
    targets = _arrays(net, accumulating=accumulated > 0)
    optional = {name for name in targets if "/weights_gavg/" in name or "/weights_g2avg/" in name}
    for name, target in targets.items():
        if name in optional and name not in arrays:
            continue  # superEps's averages start at zero (see the module docstring)
        if name not in arrays or arrays[name].shape != target.shape:
            raise ReplayError(f"{path}: array '{name}' is missing or has the wrong shape")
    for name, (kind, layer, i) in _targets(net, accumulated > 0).items():  # set_array: the same on CPU and CUDA
        net.set_array(kind, layer, arrays.get(name, 0.0), i)
    net.accumulated = accumulated
    return meta["state"]


def convert_checkpoint(source: str | Path, target: str | Path, *, layers: str | None = None,
                       params: str | None = None, image_size: tuple[int, int, int] | None = None) -> str:
    """Convert between this project's format (``.npz``) and the release's pickle (driver.md §C.7),
    the direction chosen by what `source` is. The network is rebuilt from `layers`/`params` or,
    when not given, from the files the checkpoint names (the own format's meta; the release's
    ``--layer-def``/``--layer-params`` options); its weights, biases and increments are loaded
    (a checkpoint of another network is refused) and written in the other format, atomically.
    Returns the target's format: ``"release"`` or ``"own"``.
    """
    source, target = Path(source), Path(target)
    if not source.is_file() and (not os.path.lexists(source) or source.is_dir()):  # a FIFO, a device: refused
        raise ReplayError(f"{source}: no such checkpoint file")                       # by name when read
    if source.resolve() == target.resolve():
        raise ReplayError(f"{target}: the converted file would overwrite its source")
    from_release = checkpoint_format(source) == RELEASE
    if from_release:
        release = read_release_checkpoint(source)
        layers = layers or release.options.get("layer_def")
        params = params or release.options.get("layer_params")
        if image_size is None:  # the data layer's record says how many values an image has
            data = [r for r in release.layers.values() if r.get("type") == "data" and r.get("dataIdx") == 0]
            if data and isinstance(data[0].get("outputs"), int):
                side = int(round((data[0]["outputs"] / 3) ** 0.5))
                image_size = (3, side, side)
        state = {"epoch": release.epoch, "batchnum": release.batchnum, "batches_done": release.batches_done,
                 "options": release.options,
                 "last_test": (release.test_outputs[-1][0] if release.test_outputs
                               and isinstance(release.test_outputs[-1], (tuple, list)) else None),
                 "history": release.history().to_state(),  # train_outputs, test_outputs (.history)
                 "test_outputs": [costs for _, _, costs in release.history().test]}
    else:
        meta, _ = read_checkpoint(source)
        layers = layers or meta.get("layers_file")
        params = params or meta.get("params_file")
        if image_size is None and meta.get("image_size"):
            image_size = tuple(meta["image_size"])
        state = meta.get("state") or {}
    if not layers or not params:
        raise ReplayError(f"{source}: the checkpoint does not name its layer-definition and parameter files; "
                          "give --layer-def and --layer-params")
    config, _ = load_config(layers, params, image_size=image_size)
    net = EngineNet(config, 1, 0)
    if from_release:
        load_release_checkpoint(release, net)
        save_checkpoint(target, net, state)
        return "own"
    load_checkpoint(source, net)
    save_release_checkpoint(target, net, state)
    return "release"
