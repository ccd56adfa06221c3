"""Pickles from outside, read safely, and pickles we write, written atomically.

The release's data batches, ``batches.meta`` and checkpoints are Python 2 pickles
(protocols 0 to 2, driver.md §C.7 and §D), mostly dicts of numpy arrays. A pickle
can name any importable callable, so :class:`RestrictedUnpickler` admits only the
globals numpy needs to rebuild arrays, dtypes and scalars; plain containers (dict,
list, tuple, str, bytes, int, float, bool, None) are built by opcodes and need no
global. Anything else (``os.system``, ``builtins.eval``, ...) is refused by name
before it is looked up, so it is never imported or called.

Python 2 ``str`` objects are read with ``encoding="latin1"``, as driver.md §C.7
advises: numpy turns a latin1 ``str`` holding an array's raw bytes back into those
bytes. Protocol 2 pickles written by Python 3 spell ``bytes`` as
``_codecs.encode(text, "latin1")``; that one call is admitted, for latin1 only.

Writing: :func:`save_pickle` writes protocol 2 through
:func:`alexnet_replay.files.atomic_write_bytes`, so a reader sees the old file or the
new one, never part of one.
"""

from __future__ import annotations

import _compat_pickle
import io
import os
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ReplayError, quote
from ..files import atomic_write_bytes
from ..readfile import FileProblem, read_regular_file

__all__ = [
    "DataError",
    "RefusedGlobal",
    "RestrictedUnpickler",
    "load_pickle",
    "loads_pickle",
    "save_pickle",
]


# -- limits (docs/fidelity.md, "Limits of the readers") --------------------------------------
# The release's largest pickles are raw-pixel ImageNet batches (~200 MB) and the paper's
# checkpoint (~0.5 GB); the bounds leave room above those and refuse what only a damaged or
# hostile file holds.
MAX_PICKLE_BYTES = 2 * 1024**3      # a pickle, as stored or after gunzip/unzip (declared size checked first)
MAX_ARRAY_BYTES = 1024**3           # one numpy array rebuilt from a pickle
MAX_PICKLE_DEPTH = 100              # containers inside containers
MAX_PICKLE_ITEMS = 20_000_000       # values reached walking the result, a shared list counted each time


class DataError(ReplayError):
    """A data file (batch, meta, pickle, archive) the harness cannot accept.

    The message names the file, then the key when there is one, then the reason:
    ``data/data_batch_3: key 'labels': label 12 at position 40 is out of range 0..9``.
    The parts are kept as attributes for programs.
    """

    def __init__(self, reason: str, *, file: str | os.PathLike | None = None, key: str | None = None) -> None:
        self.reason = reason
        self.file = None if file is None else str(file)
        self.key = key
        parts = []
        if self.file:
            parts.append(self.file)
        if key is not None:
            parts.append(f"key '{key}'")
        parts.append(reason)
        super().__init__(": ".join(parts))


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allowed set (it was not imported or called)."""

    def __init__(self, module: str, name: str, written: str | None = None) -> None:
        self.module = module
        self.name = name
        as_written = f" (written '{written}', its Python 2 name)" if written else ""
        super().__init__(f"refused global '{module}.{name}'{as_written}: only numpy arrays, dtypes, "
                         "scalars and plain containers are read from outside pickles")


def _numpy_multiarray():
    """numpy's multiarray module, found without importing the deprecated ``numpy.core`` alias
    (numpy 2 warns on that import, and the tests turn warnings into errors)."""
    core = getattr(np, "_core", None)
    if core is not None and hasattr(core, "multiarray"):
        return core.multiarray
    import numpy.core.multiarray as multiarray  # numpy 1.x

    return multiarray


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as protocol-2 pickles of ``bytes`` use it, for latin1 only."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode({type(text).__name__}, {encoding!r}): "
                                     "only latin1 text to bytes is admitted")
    return text.encode("latin1", errors)


class _NdarrayToken:
    """What ``numpy.ndarray`` is unpickled as: the class argument of ``_reconstruct``, which
    rebuilds arrays through :func:`_bounded_reconstruct`; calling it directly (an array of any
    shape, allocated before anything is read) is refused."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("numpy.ndarray called directly (arrays are rebuilt with _reconstruct)")


_NDARRAY = _NdarrayToken()


def _bounded_reconstruct(reconstruct):
    def rebuild(cls, shape, dtype):
        if cls is _NDARRAY:
            cls = np.ndarray
        if not (isinstance(cls, type) and issubclass(cls, np.ndarray)):
            raise pickle.UnpicklingError(f"_reconstruct of {type(cls).__name__}, not of a numpy array class")
        dims = shape if isinstance(shape, (tuple, list)) else (shape,)
        count = 1
        for d in dims:
            if not isinstance(d, int) or d < 0:
                raise pickle.UnpicklingError(f"array shape {dims!r:.60} is not a tuple of sizes")
            count *= d
        if count > MAX_ARRAY_BYTES:
            raise pickle.UnpicklingError(f"array of {count:,} elements, more than the {MAX_ARRAY_BYTES:,} "
                                         "bytes allowed for one array (limit of the reader)")
        return reconstruct(cls, shape, dtype)

    return rebuild


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()``, as protocol-2 pickles of Python 3 spell an empty bytes object; with arguments
    (``bytes(10**12)`` would allocate them) it is refused."""
    if args:
        raise pickle.UnpicklingError("refused builtins.bytes with arguments: only bytes() is admitted")
    return b""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    ma = _numpy_multiarray()
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "bytes"): _empty_bytes,
    }
    # Python 2 era pickles name numpy.core.multiarray, numpy 2 writes numpy._core.multiarray.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _bounded_reconstruct(ma._reconstruct)
        allowed[(module, "scalar")] = ma.scalar
    # Protocol 5 (Python 3.8+) rebuilds contiguous arrays from their bytes with _frombuffer.
    numeric = getattr(getattr(np, "_core", None), "numeric", None)
    frombuffer = getattr(numeric, "_frombuffer", None)
    if frombuffer is not None:
        for module in ("numpy.core.numeric", "numpy._core.numeric"):
            allowed[(module, "_frombuffer")] = frombuffer
    return allowed


_ALLOWED = _allowed_globals()


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """The Python 3 spelling of a Python 2 global, as pickle's own ``fix_imports`` maps it
    (``__builtin__.open`` → ``builtins.open``); used only to compare names, never to import."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers, nothing else.

    `extra_globals` maps ``(module, name)`` to a stand-in object the caller trusts,
    e.g. stand-ins for the release's ``options.OptionsParser`` classes when reading
    a checkpoint (driver.md §C.7). Refused globals raise :class:`RefusedGlobal`.
    """

    def __init__(self, file, *, extra_globals: Mapping[tuple[str, str], Any] | None = None) -> None:
        super().__init__(file, encoding="latin1")
        self._extra = dict(extra_globals or {})

    def find_class(self, module: str, name: str) -> Any:
        written = (module, name)
        key = _python3_name(module, name)
        for k in (written, key):
            if k in self._extra:
                return self._extra[k]
            if k in _ALLOWED:
                return _ALLOWED[k]
        raise RefusedGlobal(*key, written=".".join(written) if key != written else None)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not admitted")


def gunzip_bounded(raw: bytes, what: str, limit: int = MAX_PICKLE_BYTES) -> bytes:
    """The content of a one-member gzip file, never more than its trailer declares (ISIZE) nor
    `limit`: the declared size is checked before anything is decompressed, and the output is
    cut at it, so a file that decompresses to more than it says is refused without the memory."""
    if len(raw) < 18:
        raise DataError(f"gzip file is damaged or truncated ({len(raw)} bytes)", file=what)
    declared = int.from_bytes(raw[-4:], "little")
    if declared > limit:
        raise DataError(f"gzip file declares {declared:,} bytes decompressed, more than the {limit:,} the reader "
                        "accepts (limit of the reader)", file=what)
    inflate = zlib.decompressobj(wbits=31)
    try:
        out = inflate.decompress(raw, declared + 1)
    except zlib.error as exc:
        raise DataError(f"gzip file is damaged or truncated ({exc})", file=what) from None
    if len(out) > declared:
        raise DataError(f"gzip file decompresses to more than the {declared:,} bytes its trailer declares "
                        "(damaged, or made to fill the memory)", file=what)
    if not inflate.eof:
        raise DataError("gzip file is damaged or truncated (the compressed data ends early)", file=what)
    if inflate.unused_data.strip(b"\0"):
        raise DataError("gzip file holds more than one member (the release wrote one)", file=what)
    if len(out) != declared or zlib.crc32(out) != int.from_bytes(raw[-8:-4], "little"):
        raise DataError("gzip file is damaged (its size or CRC does not match its trailer)", file=what)
    return out


def unzip_member_bounded(zf: zipfile.ZipFile, member: str, what: str, limit: int = MAX_PICKLE_BYTES) -> bytes:
    """Member `member` of an open zip archive, refused from its declared size when larger than
    `limit`; zipfile stops at the declared size and checks the CRC."""
    info = zf.getinfo(member)
    if info.file_size > limit:
        raise DataError(f"zip member '{member}' declares {info.file_size:,} bytes, more than the {limit:,} the "
                        "reader accepts (limit of the reader)", file=what)
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > info.file_size:
        raise DataError(f"zip member '{member}' holds more than it declares", file=what)
    return data


def _unwrap_container(raw: bytes, what: str) -> bytes:
    """The pickle inside a gzip file or a zip archive with one member ``data`` (driver.md §C.7,
    ``--zip-save=1``); other bytes are returned as they are."""
    if raw[:2] == b"\x1f\x8b":
        return gunzip_bounded(raw, what)
    if raw[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                if "data" not in zf.namelist():
                    raise DataError(f"zip archive has no member 'data' (members: {zf.namelist()[:5]})",
                                    file=what)
                return unzip_member_bounded(zf, "data", what)
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError) as exc:
            raise DataError(f"zip archive is damaged or truncated ({exc})", file=what) from None
    return raw


def _children(value: Any) -> Any:
    """The values a container holds (None for a value that holds none)."""
    if isinstance(value, (str, bytes, bytearray, int, float, complex, bool, np.ndarray, np.generic)) or value is None:
        return None
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return value
    state = getattr(value, "__dict__", None)
    return list(state.values()) if isinstance(state, dict) else None


def check_size(obj: Any, what: str) -> None:
    """Refuse a loaded pickle that holds itself, is nested deeper than MAX_PICKLE_DEPTH, or
    reaches more than MAX_PICKLE_ITEMS values when walked (a list shared by two others is
    counted twice, as any reader walking the result reaches it twice: lists that each hold
    the next twice are a small pickle and an endless walk). Each container is visited once:
    its walked size and depth are summed from its children's."""
    sizes: dict[int, tuple[int, int]] = {}  # id -> (values reached walking it, depth)
    open_: set[int] = set()                 # containers whose walk is under way
    stack: list[tuple[Any, bool]] = [(obj, False)]
    while stack:
        value, finished = stack.pop()
        children = _children(value)
        if children is None:
            continue
        key = id(value)
        if finished:
            open_.discard(key)
            total, depth = 1, 1
            for child in children:
                known = sizes.get(id(child)) if _children(child) is not None else None
                if known is None:
                    total += 1
                else:
                    total += known[0]
                    depth = max(depth, known[1] + 1)
            if depth > MAX_PICKLE_DEPTH:
                raise DataError(f"nested more than {MAX_PICKLE_DEPTH} levels deep (limit of the reader)", file=what)
            if total > MAX_PICKLE_ITEMS:
                raise DataError(f"reaches more than {MAX_PICKLE_ITEMS:,} values when read (shared lists counted each "
                                "time they are reached; limit of the reader)", file=what)
            sizes[key] = (total, depth)
            continue
        if key in sizes:
            continue
        if key in open_:
            raise DataError(f"a {type(value).__name__} holds itself (a loop no reader could walk to its end)",
                            file=what)
        open_.add(key)
        stack.append((value, True))
        stack.extend((child, False) for child in children if _children(child) is not None)


def loads_pickle(raw: bytes, what: str = "<bytes>", *,
                 extra_globals: Mapping[tuple[str, str], Any] | None = None) -> Any:
    """Unpickle `raw` with :class:`RestrictedUnpickler`; `what` names the source in errors.

    Every failure is one :class:`DataError` (a ReplayError) naming `what`: an empty or
    truncated pickle, a refused global, or bytes that are not a pickle.
    """
    raw = _unwrap_container(raw, what)
    if not raw:
        raise DataError("empty file, not a pickle", file=what)
    stream = io.BytesIO(raw)
    try:
        obj = RestrictedUnpickler(stream, extra_globals=extra_globals).load()
    except RefusedGlobal as exc:
        raise DataError(str(exc), file=what) from None
    except EOFError:
        raise DataError(f"truncated pickle: the data ends before the pickle's STOP opcode "
                        f"({len(raw)} bytes read)", file=what) from None
    except pickle.UnpicklingError as exc:
        if "truncated" in str(exc):
            raise DataError(f"truncated pickle ({exc}; {len(raw)} bytes read)", file=what) from None
        raise DataError(f"not a pickle, or a damaged one ({exc})", file=what) from None
    except RecursionError:
        raise DataError(f"nested too deeply to read (limit of the reader: {MAX_PICKLE_DEPTH} levels)",
                        file=what) from None
    except MemoryError:
        raise DataError("needs more memory than there is to read (damaged, or made to fill the memory)",
                        file=what) from None
    except Exception as exc:  # a damaged stream can make any constructor argument invalid
        raise DataError(f"not a pickle, or a damaged one ({type(exc).__name__}: {quote(exc, 200)})",
                        file=what) from None
    check_size(obj, what)
    return obj


def load_pickle(path: str | os.PathLike, *,
                extra_globals: Mapping[tuple[str, str], Any] | None = None) -> Any:
    """Read a pickle written by the release (or by :func:`save_pickle`) safely.

    Gzip files and zip archives holding a member ``data`` are opened transparently.
    Raises one :class:`DataError` naming `path` for a missing or unreadable file, a
    truncated pickle, a refused global, or a file that is not a pickle.
    """
    path = Path(path)
    try:
        raw = read_regular_file(path, MAX_PICKLE_BYTES, "a pickle")
    except FileProblem as exc:
        raise DataError("missing (no such file)" if exc.kind == "missing" else
                        "is a folder, not a pickle file" if exc.kind == "folder" else exc.reason, file=path) from None
    return loads_pickle(raw, str(path), extra_globals=extra_globals)


def save_pickle(path: str | os.PathLike, obj: Any, protocol: int = 2) -> Path:
    """Pickle `obj` to `path` atomically, protocol 2 by default (the release's ``cPickle`` protocol)."""
    return atomic_write_bytes(path, lambda f: pickle.dump(obj, f, protocol=protocol))
