"""Read a cfg file with the rules of Python 2.7's ``SafeConfigParser``.

The release's driver read its layer-definition and layer-parameter files with
that class (``../shared/spec/driver.md`` §A.1). Python 3's ``configparser``
differs in ways that change what a file means (strict duplicate handling,
inline comments, Unicode whitespace), so the rules are re-stated here:

* ``[name]`` at the very start of a line opens a section; text after ``]`` is
  ignored; the name is case-sensitive and not stripped. A repeated header
  merges into the earlier section, later keys overwriting earlier ones.
* ``key=value`` or ``key: value``; keys are lower-cased (ASCII only), values
  stripped; a value of exactly ``""`` becomes empty.
* Comments: a line starting with ``#`` or ``;``, or starting with ``r``/``R``
  whose first word is ``rem`` in any case. Blank lines are skipped.
* Inline comment: only the *first* ``;`` of a value is looked at, and it ends
  the value when the character before it is whitespace. (When the ``;`` is the
  first character, Python 2 looked at the *last* character of the value
  instead; reproduced.)
* A line starting with whitespace continues the previous key's value (joined
  with a newline), unless it is blank after stripping.
* A non-comment line before the first header is fatal at once; any other line
  that is neither header nor option is collected and reported after the read.
* ``%(key)s`` and ``%%`` are interpolated when a value is read; a lone ``%`` is
  an error. Interpolation sees the section's keys, then ``[DEFAULT]``'s;
  ``%(__name__)s`` is the section's name.

Python 2 strings were bytes: the file is decoded as Latin-1 (every byte is a
character, nothing can fail to decode) and only ASCII whitespace counts as
whitespace, as it did for Python 2's ``str``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, quote
from ..readfile import FileProblem, read_regular_file

# Python 2's str.isspace / str.strip / \s: ASCII whitespace only.
_WS = " \t\n\r\x0b\x0c"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# The two line patterns of Python 2.7's RawConfigParser, with \s made ASCII.
_SECTION_RE = re.compile(r"\[(?P<header>[^]]+)\]")
_OPTION_RE = re.compile(r"(?P<option>[^:=\s][^:=]*)\s*(?P<vi>[:=])\s*(?P<value>.*)$", re.ASCII)
# Interpolation tokens of SafeConfigParser: %(name)s and %%.
_INTERP_KEY_RE = re.compile(r"%\(([^)]*)\)s")
_MAX_INTERPOLATION_DEPTH = 10  # Python 2's limit

# -- limits (docs/fidelity.md, "Limits of the readers") --------------------------------------
# Python 2 had no bound on what interpolation makes of a value: ten levels of references that
# each repeat the next a few times grow without end. The release's own files interpolate
# nothing, and their largest file is a few KB; these bounds are far above what a real file needs.
MAX_CFG_BYTES = 4 * 1024 * 1024          # a cfg file larger than this is refused before reading
MAX_INTERPOLATED_CHARS = 64 * 1024       # one value after %(key)s interpolation
MAX_INTERPOLATION_STEPS = 10_000         # %(key)s substitutions while reading one value

DEFAULT_SECTION = "DEFAULT"


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, as Python 2's ``str.lower`` did in the C locale."""
    return text.translate(_ASCII_LOWER)


@dataclass
class Entry:
    """One key of a section: its raw (uninterpolated) value, where it was set, and
    the key as the file wrote it (lookups are case-insensitive; messages quote this)."""

    value: str
    line: int
    spelling: str = ""


@dataclass
class Section:
    """One section after merging repeated headers. ``lines`` lists every header line."""

    name: str
    lines: list[int]
    entries: dict[str, Entry] = field(default_factory=dict)

    @property
    def line(self) -> int:
        return self.lines[0]


class CfgFile:
    """A parsed cfg file: ordered sections with line numbers, values read as Python 2 did."""

    def __init__(self, path: str, sections: dict[str, Section], defaults: Section) -> None:
        self.path = path
        self.sections = sections
        self.defaults = defaults

    # -- queries ----------------------------------------------------------
    def section_names(self) -> list[str]:
        return list(self.sections)

    def has_section(self, name: str) -> bool:
        return name in self.sections

    def has_option(self, section: str, key: str) -> bool:
        key = ascii_lower(key)
        return key in self.sections[section].entries or key in self.defaults.entries

    def keys(self, section: str) -> list[str]:
        """Keys of a section (lower-cased), the defaults' keys included."""
        own = list(self.sections[section].entries)
        return own + [k for k in self.defaults.entries if k not in self.sections[section].entries]

    def entry(self, section: str, key: str) -> Entry | None:
        key = ascii_lower(key)
        sec = self.sections[section]
        return sec.entries.get(key) or self.defaults.entries.get(key)

    def line_of(self, section: str, key: str | None = None) -> int:
        """Line of `key` in `section`, or of the section header when the key is absent."""
        if key is not None:
            found = self.entry(section, key)
            if found is not None:
                return found.line
        return self.sections[section].line

    def get(self, section: str, key: str) -> str:
        """The interpolated value of `key` (KeyError when absent)."""
        found = self.entry(section, key)
        if found is None:
            raise KeyError(key)
        return self._interpolate(section, found.spelling or ascii_lower(key), found.value, found.line)

    def error(self, reason: str, section: str | None = None, key: str | None = None) -> ConfigError:
        """A ConfigError that names this file and the line of `key` (or of the section)."""
        line = None
        if section is not None and section in self.sections:
            line = self.line_of(section, key)
        return ConfigError(reason, file=self.path, line=line, section=section, key=key)

    # -- interpolation ----------------------------------------------------
    def _interpolate(self, section: str, key: str, value: str, line: int) -> str:
        """SafeConfigParser._interpolate_some, recursively, with its depth limit and this
        project's bounds on the work and the size of the result (the limits above)."""
        if "%" not in value:
            return value
        budget = [MAX_INTERPOLATION_STEPS, MAX_INTERPOLATED_CHARS]  # substitutions, characters left
        return self._interpolate_some(section, key, value, line, 1, budget)

    def _interpolate_some(self, section: str, key: str, rest: str, line: int, depth: int,
                          budget: list[int]) -> str:
        if depth > _MAX_INTERPOLATION_DEPTH:
            raise ConfigError(
                f"value references itself more than {_MAX_INTERPOLATION_DEPTH} levels deep "
                "(interpolation loop)", file=self.path, line=line, section=section, key=key)
        out: list[str] = []

        def emit(text: str) -> None:
            budget[1] -= len(text)
            if budget[1] < 0:
                raise ConfigError(
                    f"value grows past {MAX_INTERPOLATED_CHARS} characters through %(name)s references "
                    "(limit of the reader)", file=self.path, line=line, section=section, key=key)
            out.append(text)
        while rest:
            pos = rest.find("%")
            if pos < 0:
                emit(rest)
                break
            emit(rest[:pos])
            rest = rest[pos:]
            nxt = rest[1:2]
            if nxt == "%":
                emit("%")
                rest = rest[2:]
                continue
            if nxt == "(":
                match = _INTERP_KEY_RE.match(rest)
                if match is None:
                    raise ConfigError(
                        f"bad interpolation syntax in {quote(rest)} (write %(name)s, or %% for a "
                        "literal %)", file=self.path, line=line, section=section, key=key)
                budget[0] -= 1
                if budget[0] < 0:
                    raise ConfigError(
                        f"more than {MAX_INTERPOLATION_STEPS} %(name)s substitutions to read this value "
                        "(limit of the reader)", file=self.path, line=line, section=section, key=key)
                name = ascii_lower(match.group(1))
                rest = rest[match.end():]
                ref = self.entry(section, name)
                if name == "__name__" and name not in self.sections[section].entries:
                    ref = Entry(section, line)  # Python 2 kept each section's name under __name__
                if ref is None:
                    raise ConfigError(
                        f"value refers to %({quote(name)[1:-1]})s but the section has no key {quote(name)}",
                        file=self.path, line=line, section=section, key=key)
                if "%" in ref.value:
                    # the inner call has counted its characters against the budget already
                    out.append(self._interpolate_some(section, key, ref.value, line, depth + 1, budget))
                else:
                    emit(ref.value)
                continue
            raise ConfigError(
                f"'%' must be followed by '%' or '(' (found {quote(rest)}); write %% for a literal %",
                file=self.path, line=line, section=section, key=key)
        return "".join(out)


def _is_comment_or_blank(line: str) -> bool:
    if line.strip(_WS) == "" or line[0] in "#;":
        return True
    first_word = re.split(r"[ \t\n\r\x0b\x0c]+", line.strip(_WS), maxsplit=1)[0]
    return line[0] in "rR" and ascii_lower(first_word) == "rem"


def _strip_inline_comment(value: str) -> str:
    """Python 2.7: look at the first ';' only; it ends the value after whitespace."""
    pos = value.find(";")
    if pos != -1 and value[pos - 1] in _WS:  # pos == 0 reads value[-1], as Python 2 did
        value = value[:pos]
    return value


def parse_cfg_text(text: str, path: str = "<string>") -> CfgFile:
    """Parse cfg text (already decoded) with the Python 2 rules; see the module docstring."""
    sections: dict[str, Section] = {}
    defaults = Section(DEFAULT_SECTION, [0])
    current: Section | None = None
    key: str | None = None
    bad_lines: list[tuple[int, str]] = []
    pieces: dict[tuple[int, str], list[str]] = {}  # multi-line values, joined at the end

    for lineno, line in enumerate(text.split("\n"), start=1):
        if _is_comment_or_blank(line):
            continue
        if line[0] in _WS and current is not None and key is not None:
            more = line.strip(_WS)
            if more:
                pieces.setdefault((id(current), key), [current.entries[key].value]).append(more)
            continue
        header = _SECTION_RE.match(line)
        if header:
            name = header.group("header")
            if name == DEFAULT_SECTION:
                current = defaults
            elif name in sections:
                current = sections[name]
                current.lines.append(lineno)
            else:
                current = sections[name] = Section(name, [lineno])
            key = None
            continue
        if current is None:
            raise ConfigError(
                f"text before the first [section] header: {line.strip(_WS)[:60]!r}",
                file=path, line=lineno)
        option = _OPTION_RE.match(line)
        if option is None:
            bad_lines.append((lineno, line))
            continue
        spelling = option.group("option").rstrip(_WS)
        key = ascii_lower(spelling)
        value = _strip_inline_comment(option.group("value")).strip(_WS)
        if value == '""':
            value = ""
        current.entries[key] = Entry(value, lineno, spelling)
        pieces.pop((id(current), key), None)

    if bad_lines:
        lineno, line = bad_lines[0]
        more = f" (and {len(bad_lines) - 1} more such lines)" if len(bad_lines) > 1 else ""
        raise ConfigError(
            f"not a [section] header, a key=value line or a comment: "
            f"{line.strip(_WS)[:60]!r}{more}", file=path, line=lineno)

    for sec in [defaults, *sections.values()]:
        for k, entry in sec.entries.items():
            joined = pieces.get((id(sec), k))
            if joined:
                entry.value = "\n".join(joined)
    return CfgFile(path, sections, defaults)


def read_cfg(path: str | Path, display_name: str | None = None) -> CfgFile:
    """Read and parse a cfg file. Errors name `display_name` (default: the path)."""
    name = display_name or str(path)
    try:
        data = read_regular_file(path, MAX_CFG_BYTES, "a cfg file")
    except FileProblem as exc:
        raise ConfigError("file not found" if exc.kind == "missing" else exc.reason, file=name) from None
    return parse_cfg_text(data.decode("latin-1"), name)
