"""The release's checkpoints (driver.md §C.7): read safely, map onto an engine net, write.

A checkpoint of the 2012 driver is a Python 2 ``cPickle`` (protocol 2; optionally
inside a zip archive with one member ``data``) of a dict::

    {"op": <the option parser object>,
     "model_state": {"layers": {name: layer record}, "train_outputs": [...],
                     "test_outputs": [...], "epoch": E, "batchnum": B}}

Weight layers' records hold ``weights`` and ``weightsInc`` (one float32 matrix per
input), ``biases`` and ``biasesInc``, in the layouts of driver.md §A.6, which are
also the engine's, so arrays are copied as they are. Whether a file is the release's
checkpoint or this project's is decided by :func:`.checkpoint_format.checkpoint_format`.

Reading goes through the restricted unpickler (:mod:`.pickles`). The option
parser's classes (module ``options``, not in the release) are replaced by inert
stand-ins that only keep their pickled attributes; ``collections.OrderedDict``
(and the old ``ordereddict`` module's) is admitted as a plain container. Any other
global is refused by name, never imported or called.

Writing uses our own protocol-2 writer of plain data (:func:`dumps_plain`): dicts,
lists, tuples, text, numbers, None and numpy arrays, the arrays spelled as Python 2
numpy pickled them (``numpy.core.multiarray._reconstruct``), so the 2012 tools'
``cPickle.load`` can read ``model_state``. The option parser object cannot be
written without the release's ``options`` classes: ``op`` is written as a plain
dict of option values under the release's names (driver.md §C.2 "dest" column), and
this harness's own options (``seed``, ``device``) under theirs.
The 2012 ``convnet.py -f`` therefore cannot resume from a converted file as it
is; this project's driver, shownet-style readers of ``model_state`` and this
module can.
"""

from __future__ import annotations

import io
import pickletools
import struct
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import WEIGHT_LAYER_TYPES, EngineNet
from ..errors import ReplayError
from ..files import atomic_write_bytes
from ..readfile import FileProblem, read_regular_file
from .history import History
from .options import OPTIONS, parse_range
from .pickles import MAX_PICKLE_BYTES, DataError, loads_pickle, unzip_member_bounded

__all__ = [
    "RELEASE_OPTION_NAMES",
    "ReleaseCheckpoint",
    "dumps_plain",
    "load_release_checkpoint",
    "read_release_checkpoint",
    "save_release_checkpoint",
]

# driver.md §C.2: the release's dest name -> this harness's option key.
RELEASE_OPTION_NAMES = {
    "train_batch_range": "train_range", "test_batch_range": "test_range", "data_path": "data_path",
    "save_path": "save_path", "dp_type": "data_provider", "testing_freq": "test_freq", "num_epochs": "epochs",
    "max_filesize_mb": "max_filesize", "test_one": "test_one", "minibatch_size": "mini", "layer_def": "layer_def",
    "layer_params": "layer_params", "crop_border": "crop_border", "color_noise": "color_noise",
    "test_only": "test_only",
}
_OUR_TO_RELEASE = {ours: theirs for theirs, ours in RELEASE_OPTION_NAMES.items()}
_RANGE_OPTIONS = ("train_range", "test_range")


# -- reading --------------------------------------------------------------------------------------

class OptionsStandIn:
    """Stands in for a class of the release's ``options`` module: it keeps the pickled
    attributes and does nothing else (no method of the original is imitated)."""

    release_name = "options.?"

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slot dict)
            for part in state:
                if isinstance(part, dict):
                    self.__dict__.update(part)
        elif isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state

    def __repr__(self) -> str:
        return f"<{self.release_name} stand-in>"


def _stand_ins(raw: bytes) -> dict[tuple[str, str], Any]:
    """Stand-ins for the ``options.*`` and OrderedDict globals this pickle names. The opcodes
    are only listed (pickletools does not run them); a damaged stream is left to the loader."""
    extra: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict, ("ordereddict", "OrderedDict"): OrderedDict,
        ("numpy", "matrix"): np.matrix, ("numpy.matrixlib.defmatrix", "matrix"): np.matrix,
    }
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(raw)):
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                module, _, name = arg.partition(" ")
                if module == "options" and name.isidentifier():
                    extra[(module, name)] = type(name, (OptionsStandIn,), {"release_name": f"options.{name}"})
    except Exception:  # noqa: BLE001 - truncated or not a pickle: the loader reports it
        pass
    return extra


def _unzip(raw: bytes, what: str) -> bytes:
    if raw[:4] == b"PK\x03\x04":  # --zip-save=1: one member 'data'
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                if "data" in zf.namelist():
                    return unzip_member_bounded(zf, "data", what)
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError) as exc:
            raise DataError(f"zip archive is damaged or truncated ({exc})", file=what) from None
    return raw


@dataclass
class ReleaseCheckpoint:
    """What a release checkpoint holds, in plain Python: layer records by name, the options
    under this harness's keys (those it knows) and under the release's names, and the state."""

    path: str
    layers: dict[str, dict[str, Any]]
    epoch: int
    batchnum: int
    options: dict[str, Any] = field(default_factory=dict)
    release_options: dict[str, Any] = field(default_factory=dict)
    train_outputs: list[Any] = field(default_factory=list)
    test_outputs: list[Any] = field(default_factory=list)
    replay: dict[str, Any] = field(default_factory=dict)  # model_state['replay']: see .history

    def history(self) -> History:
        """The cost history: ``train_outputs`` and ``test_outputs`` with their positions (.history)."""
        return History.from_release(self.train_outputs, self.test_outputs, self.replay, self.options, self.path)

    @property
    def batches_done(self) -> int:
        """driver.md §C.4: len(train_range)·(epoch − 1) + position of batchnum + 1 when the
        training range is known, else the number of stored training outputs (one per batch)."""
        text = self.options.get("train_range")
        if text:
            batches = parse_range(text, "train_range")
            if self.batchnum in batches:
                return len(batches) * (self.epoch - 1) + batches.index(self.batchnum) + 1
        return len(self.train_outputs)


def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def _range_text(value: Any) -> Any:
    """The release stores ranges as lists of batch numbers; this harness as ``a-b``."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        if list(value) == list(range(value[0], value[0] + len(value))):
            return f"{value[0]}-{value[-1]}" if len(value) > 1 else str(value[0])
    return value


def _options_of(op: Any) -> dict[str, Any]:
    """{release name: value} from the stored option parser, or from a plain dict (our files).
    [inferred] the parser keeps a dict ``options`` of Option objects with a ``value``."""
    if isinstance(op, dict):
        return {str(_text(k)): _text(v) for k, v in op.items()}
    table = getattr(op, "options", None)
    if not isinstance(table, dict):
        return {}
    out = {}
    for name, opt in table.items():
        if hasattr(opt, "value"):
            out[str(_text(name))] = _text(opt.value)
    return out


def read_release_checkpoint(path: str | Path) -> ReleaseCheckpoint:
    """Read a checkpoint of the 2012 driver with the restricted unpickler.

    One :class:`~.pickles.DataError` naming the file (and key) for a missing, truncated or
    malicious file (a refused global is never imported or called) or one of another shape.
    """
    path = Path(path)
    what = str(path)
    try:
        raw = read_regular_file(path, MAX_PICKLE_BYTES, "a checkpoint")
    except FileProblem as exc:
        raise DataError("no such checkpoint" if exc.kind == "missing" else "is a folder; give a checkpoint file"
                        if exc.kind == "folder" else exc.reason, file=path) from None
    raw = _unzip(raw, what)
    obj = loads_pickle(raw, what, extra_globals=_stand_ins(raw))
    if not isinstance(obj, dict):
        raise DataError(f"a release checkpoint is a pickled dict, this holds {type(obj).__name__}", file=path)
    obj = {_text(k): v for k, v in obj.items()}
    state = obj.get("model_state")
    if not isinstance(state, dict):
        raise DataError("missing or not a dict (is this a checkpoint of the 2012 driver?)", file=path,
                        key="model_state")
    state = {_text(k): v for k, v in state.items()}
    layers = state.get("layers")
    if not isinstance(layers, dict):
        raise DataError("missing or not a dict of layer records", file=path, key="model_state.layers")
    records = {}
    for name, rec in layers.items():
        if not isinstance(rec, dict):
            raise DataError(f"record of layer '{_text(name)}' is {type(rec).__name__}, not a dict", file=path,
                            key="model_state.layers")
        records[str(_text(name))] = {_text(k): v for k, v in rec.items()}
    release_options = _options_of(obj.get("op"))
    options = {}
    for theirs, value in release_options.items():
        ours = RELEASE_OPTION_NAMES.get(theirs, theirs if theirs in OPTIONS else None)
        if ours is not None:
            options[ours] = _range_text(value) if ours in _RANGE_OPTIONS else value
    try:
        epoch, batchnum = int(state.get("epoch", 1)), int(state.get("batchnum", 0))
    except (TypeError, ValueError):
        raise DataError("epoch and batchnum must be integers", file=path, key="model_state") from None
    replay = state.get("replay")
    return ReleaseCheckpoint(what, records, epoch, batchnum, options, release_options,
                             list(state.get("train_outputs") or []), list(state.get("test_outputs") or []),
                             {_text(k): v for k, v in replay.items()} if isinstance(replay, dict) else {})


_RECORD_KEYS = {"weights": "weights", "weight_inc": "weightsInc", "biases": "biases", "bias_inc": "biasesInc"}


def unusable_weights(array: np.ndarray) -> str | None:
    """Why a stored weight array cannot be loaded (complex, not numbers, NaN or infinite
    values), or None. The release's matrices are real floats; NaN or infinities would only
    ever train to NaN."""
    if array.dtype.kind not in "fiu":
        return f"dtype {array.dtype} is not real numbers (the release's matrices are float32)"
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            return (f"{int(bad.sum())} NaN or infinite value(s) (first at flat index "
                    f"{int(np.flatnonzero(bad.ravel())[0])}); a checkpoint of a run that diverged")
    return None


def _matrices(rec: dict[str, Any], key: str) -> list[Any]:
    value = rec.get(key)
    if isinstance(value, (list, tuple)):
        return list(value)
    return [] if value is None else [value]


def load_release_checkpoint(source: str | Path | ReleaseCheckpoint, net: EngineNet) -> ReleaseCheckpoint:
    """Copy a release checkpoint's weights, biases and momentum buffers into `net`.

    Every array is checked first (layer present, shape equal); a checkpoint of another
    network raises one ReplayError naming the file and the layers, and `net` is untouched.
    """
    ck = source if isinstance(source, ReleaseCheckpoint) else read_release_checkpoint(source)
    plan: list[tuple[str, str, int, np.ndarray]] = []  # (array kind, layer, input, values)
    missing, differing = [], []
    ours = [l for l in net.config.layers.values() if l.type in WEIGHT_LAYER_TYPES]
    for layer in ours:
        rec = ck.layers.get(layer.name)
        if rec is None or "weights" not in rec:
            missing.append(layer.name)
            continue
        pairs = []
        for i, src in enumerate(layer.weight_sources):
            if src is not None:  # shared: the owner's matrix is the one copied
                continue
            pairs += [(_matrices(rec, "weights"), i, "weights"), (_matrices(rec, "weightsInc"), i, "weight_inc")]
        pairs += [(_matrices(rec, "biases"), 0, "biases"), (_matrices(rec, "biasesInc"), 0, "bias_inc")]
        for arrays, i, kind in pairs:
            array = arrays[i] if i < len(arrays) else None
            shape = net.array(kind, layer.name, i).shape
            if not isinstance(array, np.ndarray) or array.shape != shape:
                got = getattr(array, "shape", type(array).__name__)
                differing.append(f"{layer.name} (checkpoint {got}, net {shape})")
                break
            bad = unusable_weights(array)
            if bad:
                raise DataError(f"layer '{layer.name}': {_RECORD_KEYS[kind]}: {bad}", file=ck.path,
                                key="model_state.layers")
            plan.append((kind, layer.name, i, np.asarray(array)))
    theirs = {n for n, r in ck.layers.items() if "weights" in r}
    extra = sorted(theirs - {l.name for l in ours})
    if missing or differing or extra:
        parts = []
        if missing:
            parts.append(f"layers missing from it: {', '.join(missing[:5])}")
        if differing:
            parts.append(f"layers with other shapes: {', '.join(differing[:3])}")
        if extra:
            parts.append(f"weight layers the net lacks: {', '.join(extra[:5])}")
        raise ReplayError(f"{ck.path}: checkpoint of another network, not of {net.config.path}: "
                          + "; ".join(parts))
    for kind, name, i, array in plan:  # set_array: on the CPU or the GPU alike
        net.set_array(kind, name, array, i)
    return ck


# -- writing ----------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """Layer attributes as plain data: schedules as {'type', 'params'}, tuples kept."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def layer_records(net: EngineNet) -> dict[str, dict[str, Any]]:
    """The release's layer records (driver.md §C.7) for `net`: name, type, inputs (names; the
    release's ``inputLayers`` references are not written), outputs, gpu, the definition and
    parameter keys, and for weight layers copies of the weights, biases and increments."""
    records = {}
    for layer in net.config.layers.values():
        rec: dict[str, Any] = {"name": layer.name, "type": layer.type, "inputs": list(layer.inputs),
                               "outputs": int(layer.outputs), "gpu": int(layer.gpu)}
        rec.update(_plain(layer.attrs))
        rec.update(_plain(layer.params))
        if layer.neuron is not None:
            rec["neuron"] = layer.neuron
        if layer.type in WEIGHT_LAYER_TYPES:
            owners = {}
            for i, src in enumerate(layer.weight_sources):
                owner, idx = (layer.name, i) if src is None else src
                owners[i] = (owner, idx)
            rec["weights"] = [np.array(net.weights(*owners[i]), copy=True, order="K") for i in owners]
            rec["weightsInc"] = [np.array(net.weight_inc(*owners[i]), copy=True, order="K") for i in owners]
            rec["biases"] = np.array(net.biases(layer.name), copy=True, order="K")
            rec["biasesInc"] = np.array(net.bias_inc(layer.name), copy=True, order="K")
        records[layer.name] = rec
    return records


def release_options(options: dict[str, Any]) -> dict[str, Any]:
    """This harness's options under the release's names; ranges as lists of batch numbers."""
    out = {}
    for ours, value in options.items():
        if value is None or ours.startswith("_"):
            continue
        if ours in _RANGE_OPTIONS and isinstance(value, str):
            value = parse_range(value, ours)
        out[_OUR_TO_RELEASE.get(ours, ours)] = value  # options the release lacks (--seed) keep our name
    return out


def save_release_checkpoint(path: str | Path, net: EngineNet, state: dict[str, Any] | None = None) -> Path:
    """Write `net` as a release checkpoint (protocol-2 pickle of plain data), atomically.

    `state` is this project's checkpoint state (epoch, batchnum, options, history, last_test).
    ``train_outputs`` and ``test_outputs`` come from its history (.history), with their
    positions under ``replay``; a state without history (an older checkpoint) writes its last
    test, when known, as the one entry of ``test_outputs``, with 0 cases (not recorded).
    """
    state = state or {}
    last = state.get("last_test")
    history = History.from_state(state)
    outputs = history.to_release() if history.train or history.test else \
        {"train_outputs": [], "test_outputs": [(last, 0)] if last else []}
    model_state = {
        "layers": layer_records(net),
        **outputs,
        "epoch": int(state.get("epoch", 1)),
        "batchnum": int(state.get("batchnum", 0)),
    }
    # the files the net was built from, unless the options name them: a reader can rebuild it
    options = {"layer_def": net.config.path, "layer_params": net.config.params_path, **(state.get("options") or {})}
    top = {"op": release_options(options), "model_state": model_state}
    return atomic_write_bytes(Path(path), dumps_plain(top))


# Protocol-2 opcodes (pickletools' names), written by hand so that only plain data and numpy
# arrays can ever be in the file, under the module names Python 2's numpy used.
_PROTO, _STOP, _MARK = b"\x80\x02", b".", b"("
_NONE, _TRUE, _FALSE = b"N", b"\x88", b"\x89"
_EMPTY_LIST, _APPENDS, _EMPTY_DICT, _SETITEMS, _EMPTY_TUPLE, _TUPLE = b"]", b"e", b"}", b"u", b")", b"t"
_TUPLE_N = {1: b"\x85", 2: b"\x86", 3: b"\x87"}
_REDUCE, _BUILD = b"R", b"b"
_RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\n"
_NDARRAY, _DTYPE = b"cnumpy\nndarray\n", b"cnumpy\ndtype\n"
_ARRAY_KINDS = "fiub"


def _write(obj: Any, out: io.BytesIO) -> None:
    w = out.write
    if obj is None:
        w(_NONE)
    elif isinstance(obj, (bool, np.bool_)):
        w(_TRUE if obj else _FALSE)
    elif isinstance(obj, (int, np.integer)):
        x = int(obj)
        if 0 <= x < 256:
            w(b"K" + bytes([x]))
        elif -2**31 <= x < 2**31:
            w(b"J" + struct.pack("<i", x))
        else:
            raw = x.to_bytes((x.bit_length() + 8) // 8, "little", signed=True)
            w(b"\x8a" + bytes([len(raw)]) + raw)
    elif isinstance(obj, (float, np.floating)):
        w(b"G" + struct.pack(">d", float(obj)))
    elif isinstance(obj, bytes):
        _write_bytes(obj, out)
    elif isinstance(obj, str):
        if obj.isascii():  # a Python 2 str, as the release's keys and paths were
            _write_bytes(obj.encode("ascii"), out)
        else:
            raw = obj.encode("utf-8")
            w(b"X" + struct.pack("<I", len(raw)) + raw)
    elif isinstance(obj, np.ndarray):
        _write_array(obj, out)
    elif isinstance(obj, (list, tuple)):
        if isinstance(obj, tuple) and not obj:
            w(_EMPTY_TUPLE)
        elif isinstance(obj, tuple) and len(obj) in _TUPLE_N:
            for item in obj:
                _write(item, out)
            w(_TUPLE_N[len(obj)])
        elif isinstance(obj, tuple):
            w(_MARK)
            for item in obj:
                _write(item, out)
            w(_TUPLE)
        else:
            w(_EMPTY_LIST)
            if obj:
                w(_MARK)
                for item in obj:
                    _write(item, out)
                w(_APPENDS)
    elif isinstance(obj, dict):
        w(_EMPTY_DICT)
        if obj:
            w(_MARK)
            for key, value in obj.items():
                if not isinstance(key, (str, int)):
                    raise TypeError(f"dict keys must be text or integers, not {type(key).__name__}")
                _write(key, out)
                _write(value, out)
            w(_SETITEMS)
    else:
        raise TypeError(f"{type(obj).__name__} is not plain data (dict, list, tuple, text, number, "
                        "None, numpy array)")


def _write_bytes(raw: bytes, out: io.BytesIO) -> None:
    if len(raw) < 256:
        out.write(b"U" + bytes([len(raw)]) + raw)
    else:
        out.write(b"T" + struct.pack("<I", len(raw)) + raw)


def _write_array(a: np.ndarray, out: io.BytesIO) -> None:
    """numpy's own reduction of an ndarray: _reconstruct(ndarray, (0,), 'b'), then the state
    (1, shape, dtype, is_fortran, raw bytes) with a dtype rebuilt from ('f4', False, True) and
    its state (3, byte order, None, None, None, -1, -1, 0)."""
    if a.dtype.kind not in _ARRAY_KINDS or a.dtype.fields is not None or a.dtype.subdtype is not None:
        raise TypeError(f"array dtype {a.dtype} is not a plain number type")
    a = np.asarray(a)
    fortran = bool(a.flags.f_contiguous and not a.flags.c_contiguous)
    dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    raw = a.astype(dtype, copy=False).tobytes(order="F" if fortran else "C")
    w = out.write
    w(_RECONSTRUCT + _NDARRAY)
    _write((0,), out)
    _write_bytes(b"b", out)
    w(_TUPLE_N[3] + _REDUCE + _MARK + b"K\x01")
    _write(tuple(int(s) for s in a.shape), out)
    w(_DTYPE)
    _write_bytes(dtype.str[1:].encode("ascii"), out)
    w(_FALSE + _TRUE + _TUPLE_N[3] + _REDUCE + _MARK + b"K\x03")
    _write_bytes(b"|" if dtype.itemsize == 1 else b"<", out)
    w(_NONE + _NONE + _NONE + b"J" + struct.pack("<i", -1) + b"J" + struct.pack("<i", -1) + b"K\x00"
      + _TUPLE + _BUILD)
    w(_TRUE if fortran else _FALSE)
    _write_bytes(raw, out)
    w(_TUPLE + _BUILD)


def dumps_plain(obj: Any) -> bytes:
    """A protocol-2 pickle of plain data and numpy arrays, readable by Python 2's cPickle."""
    out = io.BytesIO()
    out.write(_PROTO)
    _write(obj, out)
    out.write(_STOP)
    return out.getvalue()
