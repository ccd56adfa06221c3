"""Writing files so that nothing is ever half-written: the one place that does it.

Every file the project writes (checkpoints, batches, pickles, reports, exported
models, schedule state) goes through :func:`atomic_write_bytes` or
:func:`atomic_write_text`: the content is written to a temporary file beside the
target, flushed and fsynced, given the permissions a plain ``open(path, "w")``
would give (``0o666`` less the umask, not ``mkstemp``'s ``0o600``), renamed over
the target, and the folder is fsynced so the rename survives a crash. If anything
fails before the rename, the temporary file is removed and the target keeps its
previous content, or stays absent.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write_bytes", "atomic_write_text"]


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None] | bytes) -> Path:
    """Write `path` atomically: ``write(f)`` on a temporary file beside it (or the bytes
    given), fsync, rename. The folder must exist; returns `path` as a Path."""
    path = Path(path)
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; give the file the usual permissions
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            if isinstance(write, (bytes, bytearray, memoryview)):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write_bytes` of `text` encoded (UTF-8 by default)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable where the platform allows opening a folder (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
