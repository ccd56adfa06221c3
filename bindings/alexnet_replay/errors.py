"""Errors that are the user's to fix. The CLI prints them without a traceback.

Anything else that escapes is a bug in alexnet-replay and keeps its traceback.
"""

from __future__ import annotations


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
