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
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

from .errors import ReplayError, quote

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: folders are not locked
    fcntl = None

__all__ = ["FolderLock", "atomic_write_bytes", "atomic_write_text", "remove_stale_temporaries"]


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


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write_bytes` leaves in `folder` when its
    process is killed before the rename (``.<name>.<random>.tmp``). Call it only while holding
    the folder's :class:`FolderLock`, so that no writer is still working on one."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(path)
    return removed


class FolderLock:
    """An exclusive lock on a folder, so that two runs never write into one: an advisory lock
    (``flock``) on the file ``.alexnet-replay.lock`` in it, which says who holds it. The system
    releases it when the holder exits, however it exits, so a killed run never leaves a stale
    lock. Where ``fcntl`` is missing (Windows) nothing is locked."""

    NAME = ".alexnet-replay.lock"

    def __init__(self, folder: str | os.PathLike, what: str) -> None:
        self.folder = Path(folder)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        if fcntl is None:  # pragma: no cover - not POSIX
            return self
        path = self.folder / self.NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ReplayError(f"{self.folder}: in use by {quote(holder, 300)}; two runs in one folder would "
                              "overwrite each other's checkpoints and logs. Wait for it to end, or stop it") from None
        text = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: {self.what}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock; the file stays for the next holder
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
