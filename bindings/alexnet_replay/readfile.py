"""Opening the user's files for reading: regular files only, and no larger than a bound.

Every reader of an input file (cfg files, pickles, checkpoints, batches) opens it here,
so that a name that is a FIFO cannot hang a command (it is opened without waiting for a
writer, then refused), a link to ``/dev/zero`` cannot fill the memory (a character
device is refused before a byte is read), and a file larger than its reader's limit is
refused from its size before it is read. The limits themselves are each reader's
(docs/fidelity.md, "Limits of the readers").

Problems are raised as :class:`FileProblem` with a reason and a ``kind``; each reader
turns it into its own error (ConfigError, DataError, ReplayError) naming the file.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

__all__ = ["FileProblem", "describe_mode", "open_regular_file", "read_regular_file"]

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


class FileProblem(Exception):
    """Why a file cannot be read: ``kind`` is one of missing, dangling-link, folder, special,
    too-large, unreadable; ``reason`` says it in words."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(reason)


def describe_mode(mode: int) -> str:
    """What a non-regular file is, in words ('a FIFO (named pipe)', 'a character device', ...)."""
    for test, text in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return text
    return "not a plain file"


def _size_text(n: int) -> str:
    return f"{n:,} bytes" if n < 1024 * 1024 else f"{n / (1024 * 1024):,.1f} MiB ({n:,} bytes)"


def open_regular_file(path: str | os.PathLike, max_bytes: int, what: str = "a file") -> io.BufferedReader:
    """`path` opened for binary reading, after checking that it is a regular file of at most
    `max_bytes` bytes (`what` names the kind of file in the message). Raises FileProblem."""
    path = os.fspath(path)
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        if os.path.islink(path):
            raise FileProblem("dangling-link", f"is a link to {os.readlink(path)!r}, which does not exist") from None
        raise FileProblem("missing", "no such file") from None
    except IsADirectoryError:
        raise FileProblem("folder", f"is a folder, not {what}") from None
    except PermissionError:
        raise FileProblem("unreadable", "cannot read: permission denied") from None
    except OSError as exc:
        raise FileProblem("unreadable", f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FileProblem("folder", f"is a folder, not {what}")
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem("special", f"is {describe_mode(info.st_mode)}, not a regular file; only regular "
                                         f"files are read")
        if info.st_size > max_bytes:
            raise FileProblem("too-large", f"is {_size_text(info.st_size)}, more than the {_size_text(max_bytes)} "
                                           f"the reader accepts for {what} (limit of the reader)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike, max_bytes: int, what: str = "a file") -> bytes:
    """The bytes of `path`, a regular file of at most `max_bytes` bytes (see
    :func:`open_regular_file`); a file that grows past the bound while read is refused too."""
    with open_regular_file(path, max_bytes, what) as f:
        try:  # the size fstat gave and a little more; a read of the bound itself would reserve that much
            parts = [f.read(min(max_bytes, os.fstat(f.fileno()).st_size) + 4096)]
            got = len(parts[0])
            while got <= max_bytes:  # a file that grows while it is read
                more = f.read(min(1 << 20, max_bytes + 1 - got))
                if not more:
                    break
                parts.append(more)
                got += len(more)
        except OSError as exc:
            raise FileProblem("unreadable", f"cannot read: {exc.strerror or exc}") from None
    if got > max_bytes:
        raise FileProblem("too-large", f"is more than the {_size_text(max_bytes)} the reader accepts for {what} "
                                       "(limit of the reader)")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def is_regular_file(path: str | os.PathLike) -> bool:
    """True for a regular file (a link is followed), False for anything else or nothing."""
    try:
        return stat.S_ISREG(Path(path).stat().st_mode)
    except OSError:
        return False
