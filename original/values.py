"""Typed reads of cfg values with the conversion rules of the release's parser.

``../shared/spec/driver.md`` §A.1 ("Value conversions"): ints and floats are
Python 2's ``int()`` / ``float()`` of the text, bools are ``1/yes/true/on`` or
``0/no/false/off``, lists split on ``,`` with each item stripped, and a list
of bools is lenient (an item is true iff it is ``true`` or ``1``).

Every failure is a :class:`ConfigError` naming the file, the line, the section
and the key, with the text that was found.
"""

from __future__ import annotations

import math
import re
from typing import Callable, TypeVar

from ..errors import ConfigError, quote
from .cfgfile import _WS, CfgFile

T = TypeVar("T")

# Python 2's int() and float() of a str: ASCII digits, optional sign, surrounding
# ASCII whitespace; no underscores (Python 3 accepts them, Python 2 did not).
# int() also skipped whitespace between the sign and the digits: int("- 2") == -2.
_INT_RE = re.compile(r"[ \t\n\r\x0b\x0c]*([+-]?)[ \t\n\r\x0b\x0c]*([0-9]+)[ \t\n\r\x0b\x0c]*")
_FLOAT_RE = re.compile(
    r"[ \t\n\r\x0b\x0c]*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)"
    r"[ \t\n\r\x0b\x0c]*",
    re.IGNORECASE,
)
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}

MISSING = object()  # marks "no default: the key is required"

# -- limits (docs/fidelity.md, "Limits of the readers") --------------------------------------
# Python 2's float() read "nan" and "inf", and its int() any size; the release passed these
# values to C++ layers as floats and C ints, where NaN or an infinite rate trains to NaN and an
# int past 2**31 does not fit. Reader.float/int refuse them when the file is read.
INT_LIMIT = 2**31 - 1  # the largest C int: |value| above it is refused


class _Refused(ValueError):
    """A value that parses but that the release could not have used; the reason says why."""


def py2_int(text: str) -> int:
    match = _INT_RE.fullmatch(text)
    if not match:
        raise ValueError(text)
    return int(match.group(1) + match.group(2))


def py2_float(text: str) -> float:
    if not _FLOAT_RE.fullmatch(text):
        raise ValueError(text)
    return float(text)


def c_int(text: str) -> int:
    """py2_int, bounded to a C int (the type the release's layers held it in)."""
    value = py2_int(text)
    if abs(value) > INT_LIMIT:
        raise _Refused(f"{value} does not fit the release's C int (limit +-{INT_LIMIT:,})")
    return value


def finite_float(text: str) -> float:
    """py2_float, refusing NaN and infinities (the release would train to NaN with them)."""
    value = py2_float(text)
    if not math.isfinite(value):
        raise _Refused(f"must be a finite number (got {quote(text.strip(_WS))}): NaN and infinities "
                       "train to NaN")
    return value


def py2_bool(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(text)


def lenient_bool(text: str) -> bool:
    """An item of a bool list: true iff it is 'true' or '1' (never an error)."""
    return text.strip(_WS).lower() in ("true", "1")


class Reader:
    """Typed access to the keys of one cfg file, with errors that say where."""

    def __init__(self, cfg: CfgFile) -> None:
        self.cfg = cfg

    def has(self, section: str, key: str) -> bool:
        return self.cfg.has_section(section) and self.cfg.has_option(section, key)

    def error(self, section: str, key: str | None, reason: str) -> ConfigError:
        """An error naming `key` as the file spells it (or as given, when absent)."""
        if key is not None and self.cfg.has_section(section):
            entry = self.cfg.entry(section, key)
            if entry is not None and entry.spelling:
                key = entry.spelling
        return self.cfg.error(reason, section=section, key=key)

    def _get(self, section: str, key: str, default: object, convert: Callable[[str], T], kind: str):
        if not self.has(section, key):
            if default is MISSING:
                raise self.error(section, key, f"required parameter '{key}' missing")
            return default
        text = self.cfg.get(section, key)
        try:
            return convert(text)
        except _Refused as exc:
            raise self.error(section, key, str(exc)) from None
        except ValueError:
            raise self.error(section, key, f"must be {kind} (got {quote(text)})") from None

    def text(self, section: str, key: str, default: object = MISSING) -> str:
        return self._get(section, key, default, lambda s: s, "text")

    def int(self, section: str, key: str, default: object = MISSING) -> int:
        return self._get(section, key, default, c_int, "an int")

    def float(self, section: str, key: str, default: object = MISSING) -> float:
        return self._get(section, key, default, finite_float, "a float")

    def bool(self, section: str, key: str, default: object = MISSING) -> bool:
        return self._get(section, key, default, py2_bool, "a bool (1/yes/true/on or 0/no/false/off)")

    def _list(self, section: str, key: str, default: object, item: Callable[[str], T], kind: str,
              length: int | None) -> list:
        def convert(text: str) -> list:
            return [item(piece.strip(_WS)) for piece in text.split(",")]  # Python 2: ASCII whitespace

        values = self._get(section, key, default, convert, f"a ','-delimited list of {kind}")
        if values is not default and length is not None and len(values) != length:
            raise self.error(
                section, key,
                f"list has {len(values)} entries but the layer has {length} inputs "
                f"('{key}' list length does not match number of inputs)")
        return list(values)

    def int_list(self, section: str, key: str, default: object = MISSING, length: int | None = None) -> list[int]:
        return self._list(section, key, default, c_int, "ints", length)

    def float_list(self, section: str, key: str, default: object = MISSING,
                   length: int | None = None) -> list[float]:
        return self._list(section, key, default, finite_float, "floats", length)

    def bool_list(self, section: str, key: str, default: object = MISSING, length: int | None = None) -> list[bool]:
        return self._list(section, key, default, lenient_bool, "bools", length)

    def text_list(self, section: str, key: str, default: object = MISSING, length: int | None = None) -> list[str]:
        return self._list(section, key, default, lambda s: s, "names", length)
