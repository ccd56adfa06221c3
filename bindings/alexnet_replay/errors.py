"""Errors that are the user's to fix. The CLI prints them without a traceback.

Anything else that escapes is a bug in alexnet-replay and keeps its traceback.
"""

from __future__ import annotations

import os


# Characters that would act on a terminal instead of showing: C0 and C1 controls,
# DEL, and the bidirectional overrides that reorder what follows them.
_UNSAFE = set(range(0x20)) | set(range(0x7F, 0xA0)) | set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A))


def quote(text: object, limit: int = 80) -> str:
    """Untrusted text (a value, a name or a line from a user's file) made safe to put
    in a message: in quotes, control characters and terminal escapes written as
    escapes (``\\x1b``, ``\\n``), and cut to `limit` characters with the full
    length said."""
    s = str(text)
    out = []
    for ch in s[:limit]:
        code = ord(ch)
        if code in _UNSAFE:
            out.append({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}.get(code) or
                       (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"))
        elif ch in "'\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    body = "".join(out)
    if len(s) > limit:
        return f"'{body}'... ({len(s)} characters)"
    return f"'{body}'"


class ReplayError(Exception):
    """A problem with the user's input (files, options); the message says what to fix."""

    exit_code = 1


class ConfigError(ReplayError):
    """A layer-definition or layer-parameter file the reader cannot accept.

    The message names the file, then the line or section, the key and the reason:
    ``layers.cfg: line 12: [conv1] key 'filters': must be int (got '4.0')``.
    The parts are also kept as attributes for programs.
    """

    exit_code = 2

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.section = section
        self.key = key
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.line is not None:
            parts.append(f"line {self.line}")
        where = []
        if self.section is not None:
            where.append(f"[{self.section}]")
        if self.key is not None:
            where.append(f"key '{self.key}'")
        if where:
            parts.append(" ".join(where))
        parts.append(self.reason)
        return ": ".join(parts)

    def with_file(self, file: str) -> "ConfigError":
        """The same error, naming `file` if it did not name one yet."""
        if self.file:
            return self
        return ConfigError(self.reason, file=file, line=self.line, section=self.section, key=self.key)


def os_error_message(exc: OSError) -> str:
    """One line for a failure of the file system (a full disk, a read-only folder, a file where a
    folder should be): the path or paths it concerns, and what the system said."""
    import errno

    why = {errno.EEXIST: "exists already (and is not what was expected there)",
           errno.ENOTDIR: "a part of this path is a file, not a folder",
           errno.EISDIR: "is a folder, not a file",
           errno.ENOSPC: "no space left on the device; nothing was left half-written",
           errno.EROFS: "the file system is read-only",
           errno.EACCES: "permission denied",
           errno.EPERM: "operation not permitted",
           errno.ENOENT: "no such file or folder",
           errno.EFBIG: "the file would be larger than allowed; nothing was left half-written"}.get(
        exc.errno, exc.strerror or type(exc).__name__)
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(quote(os.fsdecode(p), 200) for p in paths)
    return f"{where}: {why}" if where else why
