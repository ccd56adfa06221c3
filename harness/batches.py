"""The release's data folder: ``data_batch_<N>`` and ``batches.meta`` (driver.md §D.1, §D.3, §D.4).

Layout, as the release's CIFAR and raw-pixel providers read it:

* ``data_batch_<N>``: a pickled dict with ``data``, a (num_vis, N) array with
  **one column per image** (cuda-convnet layout, driver.md §D.3; uint8 for CIFAR),
  pixel index ``c*S*S + y*S + x`` (channel-major, driver.md §0), and ``labels``,
  a list of N integers in 0 … len(label_names)−1.
* ``batches.meta``: a pickled dict with ``data_mean`` (num_vis values as a column,
  same pixel order), ``label_names``, ``num_vis``; optionally ``color_pca`` = (s, V)
  with s of length 3 and V 3×3, eigenvectors in columns (§D.4, used by colour
  noise §D.6), and the ImageNet keys ``batch_size``, ``label_offset``, ``no_crop``,
  ``dp_type`` and Flickr's ``freq_to_id`` (kept as read).

Other layouts: the JPEG tuple ``(jpegs, sizes, labels)`` of ``inet-lr-cropped-jpeg``
(§D.4, :func:`read_jpeg_batch`); the Flickr tuple ``(jpegs, sizes, tag lists)`` of
``flickr-ce-cropped`` (§D.7, :func:`read_flickr_batch`, with :func:`tag_ids` and
:func:`normalise_tag`); and the ``wordpres`` matrix of ``inet-lr`` (§D.2,
:func:`wordpres_matrix`).

The CIFAR-10 python archive from the dataset's site stores ``data`` the other way
round (N × 3072, one row per image); :mod:`.make_batches` converts it.

Readers validate and raise one :class:`~.pickles.DataError` (a ReplayError) naming
the file and the key. Writers write protocol 2 pickles atomically.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .pickles import DataError, load_pickle, save_pickle

__all__ = [
    "META_NAME",
    "Batch",
    "BatchMeta",
    "FlickrBatch",
    "JpegBatch",
    "WORDPRES_ROWS",
    "batch_path",
    "list_batches",
    "meta_path",
    "normalise_tag",
    "read_batch",
    "read_flickr_batch",
    "read_jpeg_batch",
    "read_meta",
    "tag_ids",
    "validate_batch",
    "validate_flickr_batch",
    "validate_jpeg_batch",
    "validate_meta",
    "wordpres_matrix",
    "write_batch",
    "write_flickr_batch",
    "write_jpeg_batch",
    "write_meta",
]

META_NAME = "batches.meta"
_BATCH_RE = re.compile(r"^data_batch_(\d+)$")


# -- paths -------------------------------------------------------------------------------

def meta_path(data_dir: str | os.PathLike) -> Path:
    """``<data_dir>/batches.meta``; a path that already names a file is returned as it is."""
    p = Path(data_dir)
    return p if p.name == META_NAME else p / META_NAME


def batch_path(data_dir: str | os.PathLike, batch_num: int) -> Path:
    """``<data_dir>/data_batch_<batch_num>``."""
    return Path(data_dir) / f"data_batch_{int(batch_num)}"


def list_batches(data_dir: str | os.PathLike) -> list[int]:
    """The batch numbers present in `data_dir`, in increasing order."""
    nums = []
    for entry in Path(data_dir).iterdir():
        m = _BATCH_RE.match(entry.name)
        if m and entry.is_file():
            nums.append(int(m.group(1)))
    return sorted(nums)


def _ranges_text(nums: Sequence[int]) -> str:
    if not nums:
        return "none"
    parts, start, prev = [], nums[0], nums[0]
    for n in list(nums[1:]) + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


# -- meta ----------------------------------------------------------------------------------

@dataclass
class BatchMeta:
    """A validated ``batches.meta``."""

    path: Path
    num_vis: int
    label_names: list[str]
    data_mean: np.ndarray                                  # (num_vis, 1), dtype as stored
    color_pca: tuple[np.ndarray, np.ndarray] | None = None  # s (3,), V (3, 3) columns = eigenvectors
    raw: dict = field(default_factory=dict)                # every key as read

    @property
    def num_classes(self) -> int:
        """``len(label_names)`` (driver.md §D.1)."""
        return len(self.label_names)

    @property
    def dp_type(self) -> str | None:
        return self.raw.get("dp_type")

    @property
    def image_size(self) -> int | None:
        """S with num_vis = 3·S², or None when num_vis is not of that form."""
        s = math.isqrt(self.num_vis // 3)
        return s if 3 * s * s == self.num_vis else None


def _as_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("latin1")
    if isinstance(value, np.str_):
        return str(value)
    return None


def _dict_keys_as_str(obj: dict) -> dict:
    """Python 3 pickles of Python 2 dicts may carry bytes keys; the release's keys are text."""
    return {(_as_str(k) if isinstance(k, (bytes, np.bytes_)) else k): v for k, v in obj.items()}


def _int_value(value: Any) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    return None


def _float_array(value: Any, file: Path, key: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) and not isinstance(value, (list, tuple)):
        raise DataError(f"must be a numeric array (got {type(value).__name__})", file=file, key=key)
    try:
        arr = np.asarray(value)
    except ValueError as exc:
        raise DataError(f"must be a numeric array ({exc})", file=file, key=key) from None
    if arr.dtype.kind not in "iuf":
        raise DataError(f"must be a numeric array (dtype {arr.dtype})", file=file, key=key)
    if not np.isfinite(arr).all():
        raise DataError("holds NaN or infinite values", file=file, key=key)
    return arr


def validate_meta(obj: Any, path: str | os.PathLike) -> BatchMeta:
    """Check a loaded ``batches.meta`` dict and return it as :class:`BatchMeta`."""
    path = Path(path)
    if not isinstance(obj, dict):
        raise DataError(f"must hold a pickled dict (got {type(obj).__name__})", file=path)
    raw = _dict_keys_as_str(obj)
    for key in ("num_vis", "label_names", "data_mean"):
        if key not in raw:
            raise DataError(f"missing (batches.meta needs num_vis, label_names and data_mean, "
                            f"driver.md §D.3; keys present: {sorted(map(str, raw))})", file=path, key=key)
    num_vis = _int_value(raw["num_vis"])
    if num_vis is None or num_vis <= 0:
        raise DataError(f"must be a positive integer (got {raw['num_vis']!r})", file=path, key="num_vis")

    names_in = raw["label_names"]
    if not isinstance(names_in, (list, tuple, np.ndarray)) or len(names_in) == 0:
        raise DataError("must be a non-empty list of class names", file=path, key="label_names")
    names = []
    for i, n in enumerate(names_in):
        s = _as_str(n)
        if s is None:
            raise DataError(f"entry {i} is {type(n).__name__}, not a string", file=path, key="label_names")
        names.append(s)

    mean = _float_array(raw["data_mean"], path, "data_mean")
    if mean.size != num_vis or (mean.ndim == 2 and 1 not in mean.shape) or mean.ndim > 2:
        raise DataError(f"shape {mean.shape}: must hold num_vis = {num_vis} values as a column",
                        file=path, key="data_mean")
    mean = mean.reshape(num_vis, 1)

    pca = None
    if raw.get("color_pca") is not None:
        cp = raw["color_pca"]
        if not isinstance(cp, (list, tuple)) or len(cp) != 2:
            raise DataError("must be a pair (s, V): s of 3 values, V 3x3 with eigenvectors in columns "
                            "(driver.md §D.4)", file=path, key="color_pca")
        s = _float_array(cp[0], path, "color_pca")
        v = _float_array(cp[1], path, "color_pca")
        if s.size != 3 or v.shape != (3, 3):
            raise DataError(f"s has shape {s.shape} and V {v.shape}; need 3 values and 3x3",
                            file=path, key="color_pca")
        pca = (s.reshape(3), v)

    if "dp_type" in raw and raw["dp_type"] is not None and _as_str(raw["dp_type"]) is None:
        raise DataError(f"must be a provider name (got {type(raw['dp_type']).__name__})", file=path, key="dp_type")
    if raw.get("dp_type") is not None:
        raw["dp_type"] = _as_str(raw["dp_type"])
    return BatchMeta(path=path, num_vis=num_vis, label_names=names, data_mean=mean, color_pca=pca, raw=raw)


def read_meta(data_dir: str | os.PathLike) -> BatchMeta:
    """Read and validate ``<data_dir>/batches.meta`` (or the meta file `data_dir` names)."""
    path = meta_path(data_dir)
    if not os.path.lexists(path):  # anything else there (a FIFO, a device, a link) load_pickle refuses by name
        where = path.parent
        raise DataError(f"missing: the data folder {where} needs {META_NAME} beside its data_batch_N files "
                        "(driver.md §D.1)", file=path)
    return validate_meta(load_pickle(path), path)


def write_meta(path: str | os.PathLike, *, data_mean, label_names: Sequence[str], num_vis: int | None = None,
               color_pca: tuple[np.ndarray, np.ndarray] | None = None, **extra: Any) -> BatchMeta:
    """Write a ``batches.meta`` (protocol 2, atomically). `path` is the file or its folder.

    ``data_mean`` is stored as a (num_vis, 1) column in its own float dtype; ``color_pca``
    as a tuple (s float32 (3,), V float32 (3, 3)). Extra keys (``dp_type``, ``batch_size``,
    ...) are stored as given. Returns the meta as a reader would see it.
    """
    path = meta_path(path)
    mean = np.asarray(data_mean)
    if mean.dtype.kind != "f":
        mean = mean.astype(np.float64)
    num_vis = int(mean.size if num_vis is None else num_vis)
    obj: dict[str, Any] = {
        "data_mean": mean.reshape(-1, 1),
        "label_names": [str(n) for n in label_names],
        "num_vis": num_vis,
    }
    if color_pca is not None:
        s, v = color_pca
        obj["color_pca"] = (np.asarray(s, dtype=np.float32).reshape(3), np.asarray(v, dtype=np.float32))
    obj.update(extra)
    meta = validate_meta(obj, path)  # refuse to write what we could not read back
    save_pickle(path, obj)
    return meta


# -- batches -------------------------------------------------------------------------------

@dataclass
class Batch:
    """A validated ``data_batch_<N>``."""

    path: Path
    data: np.ndarray    # (num_vis, N), one column per image, dtype as stored (uint8 for CIFAR)
    labels: np.ndarray  # (N,) int64
    raw: dict = field(default_factory=dict)

    @property
    def num_cases(self) -> int:
        return int(self.data.shape[1])


def _labels_array(labels: Any, file: Path, num_classes: int | None) -> np.ndarray:
    if isinstance(labels, (list, tuple)):
        if not all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))
                   for x in labels):
            bad = next(i for i, x in enumerate(labels)
                       if not isinstance(x, (int, float, np.integer, np.floating)) or isinstance(x, (bool, np.bool_)))
            raise DataError(f"entry {bad} is {type(labels[bad]).__name__}, not an integer", file=file, key="labels")
        arr = np.asarray(labels, dtype=np.float64 if any(isinstance(x, (float, np.floating)) for x in labels)
                         else np.int64)
    elif isinstance(labels, np.ndarray):
        arr = labels
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 1:
            raise DataError(f"shape {labels.shape}: must be a list of N labels (or a 1 x N array)",
                            file=file, key="labels")
        if arr.dtype.kind not in "iuf":
            raise DataError(f"must hold integers (dtype {arr.dtype})", file=file, key="labels")
    else:
        raise DataError(f"must be a list of integers (got {type(labels).__name__})", file=file, key="labels")
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if bad.size:
            raise DataError(f"label {arr[bad[0]]!r} at position {int(bad[0])} is not an integer",
                            file=file, key="labels")
    out = arr.astype(np.int64)
    if num_classes is not None and out.size:
        bad = np.flatnonzero((out < 0) | (out >= num_classes))
        if bad.size:
            i = int(bad[0])
            raise DataError(f"label {int(out[i])} at position {i} is out of range 0..{num_classes - 1} "
                            f"(len(label_names) = {num_classes}; {bad.size} label(s) out of range)",
                            file=file, key="labels")
    return out


def validate_batch(obj: Any, path: str | os.PathLike, meta: BatchMeta | None = None, *,
                   num_vis: int | None = None, num_classes: int | None = None) -> Batch:
    """Check a loaded ``data_batch_<N>`` dict against `meta` (or explicit num_vis / num_classes)."""
    path = Path(path)
    if meta is not None:
        num_vis = meta.num_vis if num_vis is None else num_vis
        num_classes = meta.num_classes if num_classes is None else num_classes
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        hint = " (a tuple is the JPEG batch format, driver.md §D.4, which these providers do not read)" \
            if isinstance(obj, tuple) else ""
        raise DataError(f"must hold a pickled dict with 'data' and 'labels' (got {kind}){hint}", file=path)
    raw = _dict_keys_as_str(obj)
    for key in ("data", "labels"):
        if key not in raw:
            raise DataError(f"missing (keys present: {sorted(map(str, raw))})", file=path, key=key)
    data = raw["data"]
    if not isinstance(data, np.ndarray):
        raise DataError(f"must be a numpy array (got {type(data).__name__})", file=path, key="data")
    if data.dtype.kind not in "iuf":
        raise DataError(f"must hold numbers (dtype {data.dtype})", file=path, key="data")
    if data.ndim != 2:
        raise DataError(f"shape {data.shape}: must be 2-D (num_vis rows, one column per image)",
                        file=path, key="data")
    if num_vis is not None and data.shape[0] != num_vis:
        hint = ""
        if data.shape[1] == num_vis:
            hint = (" (this looks like one image per row, the CIFAR-10 python archive's layout; "
                    "convert it with alexnet_replay.harness.make_batches.cifar10_python_archive)")
        raise DataError(f"shape {data.shape}: must have num_vis = {num_vis} rows, one column per image "
                        f"(driver.md §D.3){hint}", file=path, key="data")
    if data.shape[1] == 0:
        raise DataError("holds 0 images (a batch the release would have trained on silently)", file=path,
                        key="data")
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        if bad.any():
            row, col = (int(v[0]) for v in np.nonzero(bad))
            raise DataError(f"{int(bad.sum())} NaN or infinite value(s), the first in row {row} of image {col}; "
                            "float pixels must be finite", file=path, key="data")
    labels = _labels_array(raw["labels"], path, num_classes)
    if labels.size != data.shape[1]:
        raise DataError(f"{labels.size} labels for {data.shape[1]} images (columns of 'data'): "
                        "the batch is truncated or damaged", file=path, key="labels")
    return Batch(path=path, data=data, labels=labels, raw=raw)


def read_batch(data_dir: str | os.PathLike, batch_num: int, meta: BatchMeta | None = None) -> Batch:
    """Read and validate ``<data_dir>/data_batch_<batch_num>`` (against `meta` when given)."""
    path = batch_path(data_dir, batch_num)
    if not os.path.lexists(path):
        folder = Path(data_dir)
        if Path(f"{path}.1").is_file():
            raise DataError(f"missing; {path.name}.1 exists, but sub-batches (driver.md §D.1) are "
                            "not read by these providers: merge them into one batch", file=path)
        present = list_batches(folder) if folder.is_dir() else []
        raise DataError(f"missing (batches in {folder}: {_ranges_text(present)})", file=path)
    return validate_batch(load_pickle(path), path, meta)


def write_batch(path: str | os.PathLike, data: np.ndarray, labels: Sequence[int], *,
                num_classes: int | None = None, extra: dict | None = None) -> Batch:
    """Write a ``data_batch_<N>``: ``{'data': (num_vis, N) array, 'labels': list of int}``,
    protocol 2, atomically. Returns the batch as a reader would see it."""
    path = Path(path)
    data = np.asarray(data)
    batch = validate_batch({"data": data, "labels": list(np.asarray(labels).tolist())}, path,
                           num_vis=int(data.shape[0]) if data.ndim == 2 else None, num_classes=num_classes)
    obj: dict[str, Any] = {"data": np.ascontiguousarray(data), "labels": [int(x) for x in batch.labels]}
    if extra:
        obj.update(extra)
    save_pickle(path, obj)
    return batch


# -- JPEG batches (driver.md §D.4) -------------------------------------------------------------

def _jpeg_list(jpegs_in: Any, path: Path) -> list[bytes]:
    """The first member of a JPEG or Flickr batch tuple as a list of bytes (key ``jpegs``)."""
    if not isinstance(jpegs_in, (list, tuple)):
        raise DataError(f"must be a list of JPEG byte strings (got {type(jpegs_in).__name__})", file=path,
                        key="jpegs")
    jpegs = []
    for i, j in enumerate(jpegs_in):
        if isinstance(j, (bytes, bytearray, np.bytes_)):
            jpegs.append(bytes(j))
        elif isinstance(j, str):  # a Python 2 str read with latin1: the original bytes
            jpegs.append(j.encode("latin1"))
        else:
            raise DataError(f"entry {i} is {type(j).__name__}, not JPEG bytes", file=path, key="jpegs")
    return jpegs

@dataclass
class JpegBatch:
    """A validated JPEG ``data_batch_<N>``: the pickled tuple ``(jpegs, sizes, labels)``.

    ``labels`` are the class indices with ``None`` (unlabelled test images) read as 0 and
    ``batches.meta['label_offset']`` added (driver.md §D.4); ``wnids`` the first member of
    every label pair. ``sizes`` is kept as read; the provider ignores it, as the release did.
    """

    path: Path
    jpegs: list[bytes]
    labels: np.ndarray  # (N,) int64
    wnids: list[Any]
    sizes: Any = None

    @property
    def num_cases(self) -> int:
        return len(self.jpegs)


def _jpeg_tuple(obj: Any, path: Path, third: str, section: str, on_dict: str) -> tuple[list[bytes], Any, Any]:
    """(jpegs, sizes, third entry) of a pickled JPEG batch, the 3-tuple (jpegs, sizes, `third`)
    of driver.md `section`; a dict (message `on_dict`) or another shape is refused naming the file."""
    if isinstance(obj, dict):
        raise DataError(on_dict, file=path)
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        kind = f"a {type(obj).__name__} of {len(obj)}" if isinstance(obj, (tuple, list)) else type(obj).__name__
        raise DataError(f"must hold a pickled 3-tuple (jpegs, sizes, {third}), driver.md {section} (got {kind})",
                        file=path)
    jpegs_in, sizes, rest = obj
    return _jpeg_list(jpegs_in, path), sizes, rest


def validate_jpeg_batch(obj: Any, path: str | os.PathLike, meta: BatchMeta | None = None) -> JpegBatch:
    """Check a loaded JPEG batch (driver.md §D.4) against `meta` (class count, ``label_offset``)."""
    path = Path(path)
    jpegs, sizes, labels_in = _jpeg_tuple(
        obj, path, "labels", "§D.4", "holds a dict (the raw-pixel format of inet-lr-cropped or cifar, driver.md "
        "§D.5); inet-lr-cropped-jpeg reads a tuple (jpegs, sizes, labels)")
    if not isinstance(labels_in, (list, tuple)):
        raise DataError(f"must be a list of (wnid, class index) pairs (got {type(labels_in).__name__})",
                        file=path, key="labels")
    if len(labels_in) != len(jpegs):
        raise DataError(f"{len(labels_in)} labels for {len(jpegs)} JPEG images: the batch is truncated or "
                        "damaged", file=path, key="labels")
    offset = 0 if meta is None else meta.raw.get("label_offset", 0) or 0
    if _int_value(offset) is None:
        raise DataError(f"must be an integer (got {offset!r})", file=None if meta is None else meta.path,
                        key="label_offset")
    wnids, idx = [], []
    for i, pair in enumerate(labels_in):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise DataError(f"entry {i} is {pair!r}, not a pair (wnid, class index)", file=path, key="labels")
        wnid, k = pair
        if k is None:
            k = 0  # unlabelled test images get label 0 (§D.4)
        elif _int_value(k) is None:
            raise DataError(f"entry {i}: class index {k!r} is not an integer", file=path, key="labels")
        wnids.append(_as_str(wnid) if _as_str(wnid) is not None else wnid)
        idx.append(int(k) + int(offset))
    labels = np.asarray(idx, dtype=np.int64)
    if meta is not None and labels.size:
        bad = np.flatnonzero((labels < 0) | (labels >= meta.num_classes))
        if bad.size:
            i = int(bad[0])
            shift = f" (class index + label_offset {offset})" if offset else ""
            raise DataError(f"label {int(labels[i])}{shift} at position {i} is out of range "
                            f"0..{meta.num_classes - 1} (len(label_names) = {meta.num_classes}; "
                            f"{bad.size} label(s) out of range)", file=path, key="labels")
    return JpegBatch(path=path, jpegs=jpegs, labels=labels, wnids=wnids, sizes=sizes)


def _existing_batch(data_dir: str | os.PathLike, batch_num: int) -> Path:
    """The path of batch `batch_num`, or a DataError listing the batches that are there."""
    path = batch_path(data_dir, batch_num)
    if not os.path.lexists(path):
        folder = Path(data_dir)
        present = list_batches(folder) if folder.is_dir() else []
        raise DataError(f"missing (batches in {folder}: {_ranges_text(present)})", file=path)
    return path


def read_jpeg_batch(data_dir: str | os.PathLike, batch_num: int, meta: BatchMeta | None = None) -> JpegBatch:
    """Read and validate the JPEG batch ``<data_dir>/data_batch_<batch_num>`` (driver.md §D.4)."""
    path = _existing_batch(data_dir, batch_num)
    return validate_jpeg_batch(load_pickle(path), path, meta)


def write_jpeg_batch(path: str | os.PathLike, jpegs: Sequence[bytes], labels: Sequence[int],
                     wnids: Sequence[str], sizes: Sequence[tuple[int, int]] | None = None) -> Path:
    """Write a JPEG batch ``(jpegs, sizes, [(wnid, index), ...])`` (driver.md §D.4), protocol 2,
    atomically. `sizes` defaults to a list of None (the reader ignores it)."""
    jpegs = [bytes(j) for j in jpegs]
    labels = [int(x) for x in labels]
    if not (len(jpegs) == len(labels) == len(wnids)):
        raise ValueError(f"{len(jpegs)} JPEGs, {len(labels)} labels and {len(wnids)} wnids: need one of each "
                         "per image")
    sizes = [None] * len(jpegs) if sizes is None else [None if x is None else tuple(int(v) for v in x) for x in sizes]
    return save_pickle(path, (jpegs, sizes, [(str(w), k) for w, k in zip(wnids, labels)]))


# -- Flickr batches (driver.md §D.7) -----------------------------------------------------------

def normalise_tag(tag: str) -> str:
    """A raw Flickr tag as it is looked up in ``freq_to_id`` (driver.md §D.7): lower-cased, every
    whitespace character removed (``" New  York "`` → ``"newyork"``). §D.7 says "whitespace is
    removed"; this reads it as all of it, not only the ends."""
    return "".join(tag.lower().split())


@dataclass
class FlickrBatch:
    """A validated Flickr ``data_batch_<N>``: the pickled tuple ``(jpegs, sizes, tag lists)``
    (driver.md §D.7). ``tags[i]`` is image i's raw tags as text, as stored (not normalised);
    ``sizes`` is kept as read and ignored, as for JPEG batches (§D.4)."""

    path: Path
    jpegs: list[bytes]
    tags: list[list[str]]
    sizes: Any = None

    @property
    def num_cases(self) -> int:
        return len(self.jpegs)


def validate_flickr_batch(obj: Any, path: str | os.PathLike) -> FlickrBatch:
    """Check a loaded Flickr batch (driver.md §D.7): a 3-tuple of JPEG bytes, ignored sizes and one
    list of text tags per image (bytes are read as latin1, like a Python 2 ``str``)."""
    path = Path(path)
    jpegs, sizes, tags_in = _jpeg_tuple(obj, path, "tag lists", "§D.7", "holds a dict (a raw-pixel batch); "
                                        "flickr-ce-cropped reads a tuple (jpegs, sizes, tag lists), driver.md §D.7")
    if not isinstance(tags_in, (list, tuple)):
        raise DataError(f"must be a list with one list of tags per image (got {type(tags_in).__name__})",
                        file=path, key="tags")
    if len(tags_in) != len(jpegs):
        raise DataError(f"{len(tags_in)} tag lists for {len(jpegs)} JPEG images: the batch is truncated or "
                        "damaged", file=path, key="tags")
    tags = []
    for i, image_tags in enumerate(tags_in):
        if not isinstance(image_tags, (list, tuple)):
            raise DataError(f"entry {i} is {type(image_tags).__name__}, not a list of tags", file=path, key="tags")
        row = []
        for t in image_tags:
            text = _as_str(t)
            if text is None:
                raise DataError(f"entry {i}: tag {t!r} is {type(t).__name__}, not text", file=path, key="tags")
            row.append(text)
        tags.append(row)
    return FlickrBatch(path=path, jpegs=jpegs, tags=tags, sizes=sizes)


def read_flickr_batch(data_dir: str | os.PathLike, batch_num: int) -> FlickrBatch:
    """Read and validate the Flickr batch ``<data_dir>/data_batch_<batch_num>`` (driver.md §D.7)."""
    path = _existing_batch(data_dir, batch_num)
    return validate_flickr_batch(load_pickle(path), path)


def write_flickr_batch(path: str | os.PathLike, jpegs: Sequence[bytes], tags: Sequence[Sequence[str]],
                       sizes: Sequence[tuple[int, int]] | None = None) -> Path:
    """Write a Flickr batch ``(jpegs, sizes, [[tag, ...], ...])`` (driver.md §D.7), protocol 2,
    atomically; tags are stored as given (the provider normalises them). `sizes` defaults to a
    list of None."""
    jpegs = [bytes(j) for j in jpegs]
    tags = [[str(t) for t in row] for row in tags]
    if len(jpegs) != len(tags):
        raise ValueError(f"{len(jpegs)} JPEGs and {len(tags)} tag lists: need one of each per image")
    sizes = [None] * len(jpegs) if sizes is None else [None if x is None else tuple(int(v) for v in x) for x in sizes]
    return save_pickle(path, (jpegs, sizes, tags))


def tag_ids(meta: BatchMeta) -> dict[str, int]:
    """``batches.meta['freq_to_id']`` checked (driver.md §D.7): a dict from normalised tag to its
    row of the multi-hot matrix, 0 … len(label_names)−1 (``label_names`` gives the tag count,
    §D.1). Several tags may share a row."""
    raw = meta.raw.get("freq_to_id")
    if raw is None:
        raise DataError("missing: flickr-ce-cropped maps each tag to its row through it (driver.md §D.7)",
                        file=meta.path, key="freq_to_id")
    if not isinstance(raw, dict):
        raise DataError(f"must be a dict from tag to row (got {type(raw).__name__})", file=meta.path,
                        key="freq_to_id")
    out = {}
    for tag, row in raw.items():
        text, k = _as_str(tag), _int_value(row)
        if text is None:
            raise DataError(f"key {tag!r} is {type(tag).__name__}, not a tag", file=meta.path, key="freq_to_id")
        if k is None or not 0 <= k < meta.num_classes:
            raise DataError(f"tag {text!r} maps to {row!r}, not a row in 0..{meta.num_classes - 1} "
                            f"(len(label_names) = {meta.num_classes})", file=meta.path, key="freq_to_id")
        out[text] = k
    return out


# -- inet-lr's word presence (driver.md §D.2) --------------------------------------------------

#: Rows of ``inet-lr``'s third matrix (driver.md §D.2: its ``dataIdx`` size is 100).
WORDPRES_ROWS = 100


def wordpres_matrix(batch: Batch) -> np.ndarray:
    """The ``wordpres`` entry of an ``inet-lr`` batch as a (100, N) float32 matrix, one column per
    image like ``data`` (driver.md §D.2). The spec gives only the key and the row count; the values
    are passed on as stored (converted to float32), so any finite numbers are accepted."""
    if "wordpres" not in batch.raw:
        raise DataError(f"missing: inet-lr batches hold 'data', 'labels' and 'wordpres' (keys present: "
                        f"{sorted(map(str, batch.raw))})", file=batch.path, key="wordpres")
    w = batch.raw["wordpres"]
    if isinstance(w, np.ndarray) and w.dtype == np.bool_:
        w = w.astype(np.uint8)  # presence flags stored as booleans
    w = _float_array(w, batch.path, "wordpres")
    n = batch.num_cases
    if w.shape != (WORDPRES_ROWS, n):
        hint = " (one row per image: transpose it to one column per image)" if w.shape == (n, WORDPRES_ROWS) else ""
        raise DataError(f"shape {w.shape}: must be {WORDPRES_ROWS} x {n} ({WORDPRES_ROWS} rows, one column per "
                        f"image of 'data'){hint}", file=batch.path, key="wordpres")
    return np.ascontiguousarray(w, dtype=np.float32)
