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
import gzip
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ReplayError
from ..files import atomic_write_bytes

__all__ = [
    "DataError",
    "RefusedGlobal",
    "RestrictedUnpickler",
    "load_pickle",
    "loads_pickle",
    "save_pickle",
]


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


def _allowed_globals() -> dict[tuple[str, str], Any]:
    ma = _numpy_multiarray()
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Python 2 era pickles name numpy.core.multiarray, numpy 2 writes numpy._core.multiarray.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = ma._reconstruct
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


def _unwrap_container(raw: bytes, what: str) -> bytes:
    """The pickle inside a gzip file or a zip archive with one member ``data`` (driver.md §C.7,
    ``--zip-save=1``); other bytes are returned as they are."""
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"gzip file is damaged or truncated ({exc})", file=what) from None
    if raw[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                if "data" not in zf.namelist():
                    raise DataError(f"zip archive has no member 'data' (members: {zf.namelist()[:5]})",
                                    file=what)
                return zf.read("data")
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise DataError(f"zip archive is damaged or truncated ({exc})", file=what) from None
    return raw


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
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # a damaged stream can make any constructor argument invalid
        raise DataError(f"not a pickle, or a damaged one ({type(exc).__name__}: {exc})", file=what) from None
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
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("missing (no such file)", file=path) from None
    except IsADirectoryError:
        raise DataError("is a folder, not a pickle file", file=path) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", file=path) from None
    return loads_pickle(raw, str(path), extra_globals=extra_globals)


def save_pickle(path: str | os.PathLike, obj: Any, protocol: int = 2) -> Path:
    """Pickle `obj` to `path` atomically, protocol 2 by default (the release's ``cPickle`` protocol)."""
    return atomic_write_bytes(path, lambda f: pickle.dump(obj, f, protocol=protocol))
