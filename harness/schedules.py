"""Training schedules (driver.md §E): a run script of ``convnet.py`` lines, or a TOML file
that says the same, replayed stage by stage through the driver.

The 2012 runs had no automatic schedule (§E.1): the author stopped the job, switched the
parameter file and resumed with ``-f``, giving the new stop epoch in ``--epochs``. A
schedule is that list of commands. Each stage is one driver run; every stage after the
first resumes (as ``-f`` would) from the last checkpoint of the stage before, with the
options it changes, and options persist as in the driver (§C.3). With the §C.4 stop rule,
each stage trains one batch into epoch N+1 and the next one restarts from the last test
checkpoint, as §E.2 describes.

Two spellings of the same content:

* a shell script (``run4.sh`` style). Each command is ``[python] convnet.py OPTIONS``;
  ``;`` and ``&&`` separate commands, a backslash continues a line, options are read as
  ``getopt`` did (``--name=value``, ``--name value``, unique prefixes, ``-f PATH``).
  Output redirection (``>> log``, ``| tee -a log``, ``2>&1``) is ignored with a note: the
  schedule keeps its own log. Any other command (``cd``, ``export``, another script) is
  **refused** with its line number, because skipping it could change what the schedule
  means. Comment lines ``# alexnet-replay: ...`` carry what a script cannot say (the
  schedule's name and description, and per-stage rate edits); the shell ignores them.
* a TOML file: a ``[schedule]`` table (name, description, source, data, notes) and one
  ``[[stage]]`` table per command, with the options' names as keys (``epochs = 22``,
  ``layer-params = "..."``, ``f = "..."`` for ``-f``), an optional ``note`` and an optional
  ``[stage.rates]`` table of rate edits: ``"conv1*" = {epsW = 0, epsB = 0}``.

Rate edits stand for the parameter-file edits the author made by hand (§E.3, whose
intermediate files are not in the release): the stage's parameter file is copied with
``epsW``/``epsB`` replaced in the sections whose names match the pattern (fnmatch; later
patterns win) and the copy is written into the schedule's folder. Per-input lists keep
their length.

A chain of runs (§A.5): a stage that gives ``init-from`` starts a *new* run (no ``-f``) whose
layers with ``initWFunc``/``initBFunc``/``initCFunc`` copy the arrays of an earlier run, the way
the release's ``initw.py`` read them from a path written into it. ``init-from = "previous"``
names the last checkpoint of the stage before (for the first stage: the checkpoint given with
``--from``); any other value is a checkpoint file or folder. This is how "pre-train on one data
set, then fine-tune a network initialised from it" is written (the named schedule
``146-2012-2009``). Each such stage keeps its run in ``stage-K/`` of the schedule's folder; the
stages after it resume that run. A new run takes only its own stage's options (and the
overrides): nothing carries over from the run it was initialised from.

Running is resumable: the schedule's folder (``--out``) holds ``schedule.json`` (stages
finished, run folder, a digest of the schedule), ``log.txt`` and the driver's run folder.
Re-running the same command after a kill continues from the last checkpoint and ends
bit-identical to an uninterrupted run (the driver's draws depend only on seed, epoch and
batch). A run script's ``-f`` paths name the author's folders; in a replay the first
stage resumes from ``--from CKPT`` (copied into the schedule's folder, never written to),
and later stages from the schedule's own run folder.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .. import networks
from ..errors import ReplayError
from ..files import FolderLock, atomic_write_text
from .checkpoint import convert_checkpoint
from .checkpoint_format import RELEASE, checkpoint_format, newest_checkpoint
from .driver import train
from .options import OPTIONS, add_train_arguments

__all__ = ["PREVIOUS", "Schedule", "Stage", "named_schedules", "load_named", "load_schedule", "parse_script",
           "parse_toml", "stage_options", "to_script", "to_toml", "run_schedule"]

# driver.md §C.2, every long option of the 2012 driver, and what a replay does with it.
RELEASE_OPTIONS = (
    "train-range", "test-range", "data-path", "save-path", "data-provider", "test-freq", "epochs", "max-filesize",
    "num-gpus", "gpu", "test-only", "test-one", "zip-save", "mini", "layer-def", "layer-params", "check-grads",
    "multiview-test", "crop-border", "conv-to-local", "unshare-weights", "conserve-mem", "color-noise", "pca-noise",
    "scalar-mean", "test-out", "logreg-name", "wupdate-freq",
)
HARNESS_OPTIONS = ("seed", "device", "decode-workers", "init-from", "backend")
PREVIOUS = "previous"  # init-from = "previous": the last checkpoint of the stage before (stage 1: --from)
IGNORED = {  # accepted, with a note; they do not change the arithmetic of a replay
    "num-gpus": "GPU selection: the replay runs on --device",
    "gpu": "GPU selection: the replay runs on --device",
    "conserve-mem": "memory saving only",
    "pca-noise": "stored but never used by the release (§C.2)",
}
ONLY_DEFAULT = {"check-grads": "0", "conv-to-local": ""}
WHY_ONLY_DEFAULT = {  # why another value cannot be replayed in a schedule
    "check-grads": "a gradient check trains nothing and leaves no checkpoint for the next stage",
    "conv-to-local": "the release's conversion was broken and never ran (driver.md §A.7)",
}
RATE_KEYS = ("epsW", "epsB")
STATE_MAGIC = "alexnet-replay schedule state"
_PATH_OPTIONS = ("layer_def", "layer_params")


@dataclass
class Stage:
    """One ``convnet.py`` command: options by the driver's key (``layer_params``), as text."""

    options: dict[str, str]
    resume: str | None = None                       # the -f value as written; None: a fresh start
    rates: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str = ""
    where: str = ""                                 # "run4.sh: line 3"

    @property
    def init_from(self) -> str | None:
        """The source of a stage that starts a new, initialised run (see the module docstring)."""
        return self.options.get("init_from")


@dataclass
class Schedule:
    name: str
    stages: list[Stage]
    description: str = ""
    source: str = ""
    data: str = ""
    notes: list[str] = field(default_factory=list)
    base_dir: Path | None = None                    # relative cfg paths are looked up here too

    def digest(self) -> str:
        """What must not change between a run and its resumption: the stages."""
        # a later stage's -f path is where the author's run was; a replay resumes its own run
        text = json.dumps([[s.options, s.resume if k == 0 else None, s.rates] for k, s in enumerate(self.stages)],
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- options -------------------------------------------------------------------------------------

def _option(name: str, value: str, where: str, notes: list[str]) -> tuple[str, str] | None:
    """Check one option (full name, no dashes) and return (driver key, value), or None when the
    replay ignores it (noted)."""
    key = name.replace("-", "_")
    if name in IGNORED:
        notes.append(f"{where}: --{name}={value} ignored ({IGNORED[name]})")
        return None
    if name in ONLY_DEFAULT:
        if value.strip() != ONLY_DEFAULT[name]:
            why = WHY_ONLY_DEFAULT.get(name, "not implemented by this harness")
            raise ReplayError(f"{where}: --{name}={value} cannot be replayed: {why} "
                              f"(only --{name}={ONLY_DEFAULT[name]!s} can)")
        return None
    if key not in OPTIONS:
        raise ReplayError(f"{where}: --{name} is not implemented by this harness")
    kind = OPTIONS[key][0]
    try:
        kind(value)
    except ValueError:
        raise ReplayError(f"{where}: --{name}: {value!r} is not a valid {kind.__name__}") from None
    return key, value


def _long_name(text: str, where: str) -> str:
    """getopt's unique-prefix rule over the release's options and the harness's (§C.1)."""
    names = RELEASE_OPTIONS + HARNESS_OPTIONS
    if text in names:
        return text
    hits = [n for n in names if n.startswith(text)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ReplayError(f"{where}: option --{text} is ambiguous ({', '.join('--' + h for h in hits)})")
    raise ReplayError(f"{where}: unknown option --{text} (the 2012 driver aborts on it, §C.1)")


def _command_options(tokens: list[str], where: str, notes: list[str]) -> Stage:
    stage = Stage({}, where=where)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "-f" or (tok.startswith("-f") and not tok.startswith("--")):
            value = tok[2:] if len(tok) > 2 else None
            if value is None:
                if i + 1 >= len(tokens):
                    raise ReplayError(f"{where}: -f needs a path")
                i, value = i + 1, tokens[i + 1]
            stage.resume = value
        elif tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            name = _long_name(name, where)
            if not eq:
                if i + 1 >= len(tokens):
                    raise ReplayError(f"{where}: --{name} needs a value (every option of the driver takes one)")
                i, value = i + 1, tokens[i + 1]
            got = _option(name, value, where, notes)
            if got:
                stage.options[got[0]] = got[1]
        elif tok.startswith("-"):
            raise ReplayError(f"{where}: unknown option {tok} (the one short option is -f)")
        else:
            notes.append(f"{where}: positional argument {tok!r} ignored (as the driver did, §C.1)")
        i += 1
    if stage.init_from is not None and stage.resume is not None:
        raise ReplayError(f"{where}: -f and --init-from exclude each other (-f resumes a run, --init-from "
                          "starts a new one from an earlier run's arrays)")
    return stage


# -- the shell form ----------------------------------------------------------------------------------

_DIRECTIVE = re.compile(r"#\s*alexnet-replay:\s*(\w+)\s*(.*)$")
_REDIRECT = {">", ">>", "|", ">&", "&>", "&>>", "<&", "|&"}
_PYTHON = re.compile(r"python[0-9.]*$")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for n, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = n
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending += line[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _parse_rates(text: str, where: str) -> dict[str, dict[str, float]]:
    rates: dict[str, dict[str, float]] = {}
    for item in text.split():
        m = re.fullmatch(r"(.+)\.(epsW|epsB)=([-+0-9.eE]+)", item)
        if not m:
            raise ReplayError(f"{where}: rate edit {item!r} must be PATTERN.epsW=VALUE or PATTERN.epsB=VALUE")
        rates.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3))
    return rates


def parse_script(text: str, name: str = "<script>", base_dir: Path | None = None) -> Schedule:
    """A run script of ``convnet.py`` commands as a schedule (see the module docstring)."""
    notes: list[str] = []
    stages: list[Stage] = []
    header = {"schedule": Path(name).stem, "description": "", "source": "", "data": ""}
    pending_rates: dict[str, dict[str, float]] = {}
    pending_note = ""
    for lineno, line in _logical_lines(text):
        where = f"{name}: line {lineno}"
        stripped = line.strip()
        directive = _DIRECTIVE.match(stripped)
        if directive:
            key, value = directive.group(1), directive.group(2).strip()
            if key == "rates":
                pending_rates = _parse_rates(value, where)
            elif key == "note":
                pending_note = value
            elif key in header:
                header[key] = value
            elif key == "notes":
                notes.append(value)
            else:
                raise ReplayError(f"{where}: unknown directive '# alexnet-replay: {key}'")
            continue
        if not stripped or stripped.startswith("#"):
            continue
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        lex.commenters = "#"
        try:
            tokens = list(lex)
        except ValueError as exc:
            raise ReplayError(f"{where}: cannot split the line as the shell would ({exc})") from None
        commands: list[list[str]] = [[]]
        redirected = False
        for tok in tokens:
            if tok in (";", "&&"):
                commands.append([])
                redirected = False
            elif tok in ("||", "&", "<", "(", ")"):
                raise ReplayError(f"{where}: shell operator {tok!r} cannot be replayed (only ';' and '&&' "
                                  "between convnet.py commands, and output redirection)")
            elif tok in _REDIRECT or redirected:
                if not redirected:
                    notes.append(f"{where}: output redirection ignored (the schedule writes its own log.txt)")
                    if tok in (">", ">>", ">&") and commands[-1] and commands[-1][-1] in ("1", "2"):
                        commands[-1].pop()  # the file descriptor of '2>&1' or '1>> log'
                redirected = True
            else:
                commands[-1].append(tok)
        for cmd in commands:
            if not cmd:
                continue
            at = next((i for i, t in enumerate(cmd) if os.path.basename(t) == "convnet.py"), None)
            before = cmd[:at] if at is not None else cmd
            if at is None or any(not _PYTHON.fullmatch(os.path.basename(t)) for t in before):
                raise ReplayError(f"{where}: only convnet.py commands can be replayed ({cmd[0]!r} is not one)")
            stage = _command_options(cmd[at + 1:], where, notes)
            stage.rates, stage.note = pending_rates, pending_note
            pending_rates, pending_note = {}, ""
            stages.append(stage)
    if not stages:
        raise ReplayError(f"{name}: no convnet.py command in this script")
    return Schedule(header["schedule"], stages, header["description"], header["source"], header["data"], notes,
                    base_dir)


# -- the TOML form ------------------------------------------------------------------------------------

def parse_toml(text: str, name: str = "<toml>", base_dir: Path | None = None) -> Schedule:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ReplayError(f"{name}: not valid TOML ({exc})") from None
    head = doc.get("schedule", {})
    raw = doc.get("stage")
    if not isinstance(head, dict) or not isinstance(raw, list) or not raw:
        raise ReplayError(f"{name}: a schedule needs a [schedule] table and at least one [[stage]] table")
    unknown = sorted(set(doc) - {"schedule", "stage"})
    if unknown:
        raise ReplayError(f"{name}: unknown top-level key(s) {', '.join(unknown)} (expected [schedule], [[stage]])")
    notes: list[str] = []
    stages = []
    for k, table in enumerate(raw, 1):
        where = f"{name}: stage {k}"
        tokens: list[str] = []
        rates = table.get("rates", {})
        for key, value in table.items():
            if key in ("rates", "note"):
                continue
            if key == "f":
                tokens += ["-f", str(value)]
                continue
            if isinstance(value, bool):
                value = int(value)
            if not isinstance(value, (str, int, float)):
                raise ReplayError(f"{where}: option '{key}' must be text or a number")
            tokens.append(f"--{key}={value}")
        stage = _command_options(tokens, where, notes)
        if not isinstance(rates, dict) or any(not isinstance(v, dict) or set(v) - set(RATE_KEYS)
                                              for v in rates.values()):
            raise ReplayError(f"{where}: [stage.rates] maps layer patterns to {{epsW = .., epsB = ..}}")
        stage.rates = {p: {k2: float(v2) for k2, v2 in v.items()} for p, v in rates.items()}
        stage.note = str(table.get("note", ""))
        stages.append(stage)
    notes += [str(n) for n in head.get("notes", [])]
    return Schedule(str(head.get("name", Path(name).stem)), stages, str(head.get("description", "")),
                    str(head.get("source", "")), str(head.get("data", "")), notes, base_dir)


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return json.dumps(value, ensure_ascii=False)
        return value if re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value) else json.dumps(value, ensure_ascii=False)
    return repr(value)


def to_toml(schedule: Schedule) -> str:
    lines = ["# alexnet-replay schedule (driver.md §E); run with: alexnet-replay schedule run FILE --out DIR",
             "[schedule]", f"name = {json.dumps(schedule.name, ensure_ascii=False)}"]
    for key in ("description", "source", "data"):
        if getattr(schedule, key):
            lines.append(f"{key} = {json.dumps(getattr(schedule, key), ensure_ascii=False)}")
    if schedule.notes:
        lines.append("notes = [" + ", ".join(json.dumps(n, ensure_ascii=False) for n in schedule.notes) + "]")
    for stage in schedule.stages:
        lines += ["", "[[stage]]"]
        if stage.note:
            lines.append(f"note = {json.dumps(stage.note, ensure_ascii=False)}")
        if stage.resume is not None:
            lines.append(f"f = {json.dumps(stage.resume, ensure_ascii=False)}")
        for key, value in stage.options.items():
            lines.append(f"{key.replace('_', '-')} = {_toml_value(value)}")
        if stage.rates:
            lines.append("[stage.rates]")
            for pattern, values in stage.rates.items():
                body = ", ".join(f"{k} = {v!r}" for k, v in values.items())
                lines.append(f"{json.dumps(pattern, ensure_ascii=False)} = {{ {body} }}")
    return "\n".join(lines) + "\n"


def to_script(schedule: Schedule) -> str:
    lines = ["#!/bin/sh", f"# alexnet-replay: schedule {schedule.name}",
             "# Commands after the first resume the run's checkpoint folder: set RUN to it (ConvNet__...)."]
    for key in ("description", "source", "data"):
        if getattr(schedule, key):
            lines.append(f"# alexnet-replay: {key} {getattr(schedule, key)}")
    for note in schedule.notes:
        lines.append(f"# alexnet-replay: notes {note}")
    for stage in schedule.stages:
        lines.append("")
        if stage.note:
            lines.append(f"# alexnet-replay: note {stage.note}")
        if stage.rates:
            edits = " ".join(f"{p}.{k}={v!r}" for p, vals in stage.rates.items() for k, v in vals.items())
            lines.append(f"# alexnet-replay: rates {edits}")
        argv = ["python", "convnet.py"]
        new_run = stage.init_from is not None or stage is schedule.stages[0]
        resume = stage.resume if stage.resume is not None or new_run else "$RUN"
        if resume is not None:
            argv += ["-f", resume]
        argv += [f"--{k.replace('_', '-')}={v}" for k, v in stage.options.items()]
        lines.append(" ".join('"$RUN"' if a == "$RUN" else shlex.quote(a) for a in argv))
    return "\n".join(lines) + "\n"


# -- named schedules and files ---------------------------------------------------------------------------

def _named_folder():
    return resources.files("alexnet_replay.harness").joinpath("schedules")


def named_schedules() -> list[str]:
    return sorted(p.name[:-5] for p in _named_folder().iterdir() if p.name.endswith(".toml"))


def load_named(name: str) -> Schedule:
    entry = _named_folder().joinpath(f"{name}.toml")
    if not entry.is_file():
        raise ReplayError(f"no named schedule '{name}' (known: {', '.join(named_schedules())})")
    return parse_toml(entry.read_text(encoding="utf-8"), f"{name}.toml")


def load_schedule(spec: str) -> Schedule:
    """A schedule from a file (``.toml``, anything else is read as a shell script) or by name."""
    path = Path(spec)
    if not path.is_file():
        if "/" not in spec and not spec.endswith((".toml", ".sh")):
            return load_named(spec)
        raise ReplayError(f"{spec}: no such schedule file")
    text = path.read_text(encoding="latin1")
    parse = parse_toml if path.suffix == ".toml" else parse_script
    return parse(text, str(path), path.parent.resolve())


def describe(schedule: Schedule) -> str:
    """The text of ``schedule show``: header, one line per stage, notes."""
    out = [f"{schedule.name}: {schedule.description}".rstrip(": ")]
    if schedule.source:
        out.append(f"  source: {schedule.source}")
    if schedule.data:
        out.append(f"  data:   {schedule.data}")
    for k, stage in enumerate(schedule.stages, 1):
        opts = " ".join(f"--{key.replace('_', '-')}={v}" for key, v in stage.options.items())
        if stage.init_from is not None:
            source = "the stage before's last checkpoint" if stage.init_from == PREVIOUS else stage.init_from
            if stage.init_from == PREVIOUS and k == 1:
                source = "--from CKPT"
            start = f"(new run, initialised from {source}) "
            opts = " ".join(f"--{key.replace('_', '-')}={v}" for key, v in stage.options.items() if key != "init_from")
        else:
            start = f"-f {stage.resume} " if stage.resume else "(fresh) "
        out.append(f"  stage {k}: {start}{opts}")
        if stage.rates:
            out.append("           rates: " + ", ".join(f"{p} " + " ".join(f"{k2}={v2:g}" for k2, v2 in vals.items())
                                                      for p, vals in stage.rates.items()))
        if stage.note:
            out.append(f"           {stage.note}")
    out += [f"  note: {n}" for n in schedule.notes]
    return "\n".join(out)


# -- running -------------------------------------------------------------------------------------------------

def _search_dirs(schedule: Schedule, cfg_dirs: list[Path]) -> list[Path]:
    dirs = list(cfg_dirs)
    if schedule.base_dir:
        dirs.append(schedule.base_dir)
    dirs.append(Path.cwd())
    release = os.environ.get("ALEXNET_RELEASE_DIR")
    if release:
        dirs += [Path(release) / sub for sub in ("", "layers", "layers-cifar", "example-layers")]
    return dirs


def _resolve_cfg(value: str, dirs: list[Path], where: str) -> str:
    path = Path(value)
    if path.is_absolute():
        if not path.is_file():
            raise ReplayError(f"{where}: {value}: no such file")
        return value
    if value in networks.names():  # a bundled network's name
        return value
    for d in dirs:
        if (d / value).is_file():
            return str((d / value).resolve())
    raise ReplayError(f"{where}: {value}: not found (looked in {', '.join(str(d) for d in dirs)}; "
                      "give --cfg-dir, or set ALEXNET_RELEASE_DIR for the release's files)")


def edit_rates(params_text: str, rates: dict[str, dict[str, float]]) -> str:
    """`params_text` with epsW/epsB replaced in the sections matching each pattern (later patterns
    win); a per-input list keeps its length. Other lines are kept as they are."""
    out, section = [], None
    for line in params_text.splitlines():
        m = re.match(r"\[([^\]]*)\]", line)
        if m:
            section = m.group(1)
        kv = re.match(r"([A-Za-z]+)(\s*[=:]\s*)(.*)$", line)
        if section is not None and kv and not line[:1].isspace():
            key = kv.group(1)
            for want in RATE_KEYS:
                if key.lower() != want.lower():
                    continue
                value = None
                for pattern, values in rates.items():
                    if want in values and fnmatch.fnmatchcase(section, pattern):
                        value = values[want]
                if value is not None:
                    count = len(kv.group(3).split(";")[0].split(",")) if want == "epsW" else 1
                    line = f"{key}{kv.group(2)}" + ",".join([f"{value:g}"] * count)
        out.append(line)
    return "\n".join(out) + "\n"


def _read_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReplayError(f"{path}: unreadable schedule state ({exc}); remove the folder to start over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_MAGIC or state.get("version") != 1:
        raise ReplayError(f"{path}: not an alexnet-replay schedule state (version 1)")
    return state


def _write_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(state, indent=1, ensure_ascii=False))


def _run_folder(out: Path) -> Path | None:
    """The run folder the driver made under `out` that holds a checkpoint (a fresh first stage
    killed before its first checkpoint leaves an empty one, which is removed)."""
    found = []
    for folder in sorted(out.glob("ConvNet__*")):
        if any(folder.glob("*.npz")):
            found.append(folder)
        elif folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if len(found) > 1:
        raise ReplayError(f"{out}: several run folders with checkpoints ({', '.join(f.name for f in found)})")
    return found[0] if found else None


class _Tee:
    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def stage_options(items: list[str], schedule: Schedule) -> dict[int, dict[str, str]]:
    """``--stage-option K:NAME=VALUE`` items as {stage number: {driver key: value}}: an option for
    one stage only (a chain's stages read different data sets)."""
    out: dict[int, dict[str, str]] = {}
    for item in items:
        m = re.fullmatch(r"(\d+):(?:--)?([a-z][a-z-]*)=(.*)", item)
        if not m:
            raise ReplayError(f"--stage-option {item}: expected K:NAME=VALUE (for example 2:data-path=/data/2012)")
        k = int(m.group(1))
        if not 1 <= k <= len(schedule.stages):
            raise ReplayError(f"--stage-option {item}: schedule '{schedule.name}' has stages 1..{len(schedule.stages)}")
        notes: list[str] = []
        got = _option(_long_name(m.group(2), f"--stage-option {item}"), m.group(3), f"--stage-option {item}", notes)
        if got:
            out.setdefault(k, {})[got[0]] = got[1]
    return out


def run_schedule(schedule: Schedule, out_dir: str | Path, *, overrides: dict[str, str] | None = None,
                 cfg_dirs: list[Path] | None = None, start_from: str | Path | None = None, quiet: bool = False,
                 stdout=None, on_save: Callable[[Path], None] | None = None,
                 per_stage: dict[int, dict[str, str]] | None = None) -> Path:
    """Run `schedule`'s stages in order through the driver, in `out_dir`; returns the run folder.

    `overrides`: driver options (by key, as text) given to every stage, winning over the
    schedule's (``--data-path``, ``--mini``, ``--seed``, ``--device``...). `start_from`: the
    checkpoint a first stage with ``-f`` resumes from, or a first stage with ``init-from =
    "previous"`` is initialised from. `per_stage`: options for one stage only, by stage number
    (from 1), winning over both. Re-running after a kill continues. `out_dir` is locked while
    the schedule runs: a second schedule on it is refused, naming the first.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReplayError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out, f"alexnet-replay schedule run {schedule.name}"):
        return _run_schedule(schedule, out, overrides=overrides, cfg_dirs=cfg_dirs, start_from=start_from,
                             quiet=quiet, stdout=stdout, on_save=on_save, per_stage=per_stage)


def _run_schedule(schedule: Schedule, out: Path, *, overrides, cfg_dirs, start_from, quiet, stdout, on_save,
                  per_stage) -> Path:
    stdout = stdout or sys.stdout
    overrides = dict(overrides or {})
    for given in (overrides, *(per_stage or {}).values()):
        if "save_path" in given:
            raise ReplayError("--save-path: a schedule keeps its run in --out")
        if "init_from" in given:
            raise ReplayError("--init-from: a schedule's stages name their own source (init-from = \"previous\"); "
                              "give the first stage's with --from CKPT")
    dirs = _search_dirs(schedule, [Path(d) for d in (cfg_dirs or [])])
    stages = []
    for k, stage in enumerate(schedule.stages, 1):  # check every stage before anything runs
        where = stage.where or f"stage {k}"
        opts = {**stage.options, **overrides, **(per_stage or {}).get(k, {})}
        opts.pop("save_path", None)
        for key in _PATH_OPTIONS:
            if key in opts:
                opts[key] = _resolve_cfg(opts[key], dirs, where)
        stages.append(opts)
        if stage.init_from == PREVIOUS and k == 1 and start_from is None:
            raise ReplayError(f"{where}: the first stage starts a run initialised from an earlier one "
                              "(init-from = \"previous\"): give that run's checkpoint with --from CKPT")
    if not stages[0].get("data_path") and not schedule.stages[0].resume and not start_from:
        raise ReplayError(f"schedule '{schedule.name}' needs data: give --data-path"
                          + (f" ({schedule.data})" if schedule.data else ""))

    state_path = out / "schedule.json"
    state = _read_state(state_path) or {"format": STATE_MAGIC, "version": 1, "schedule": schedule.name,
                                         "digest": schedule.digest(), "stages_done": 0, "run_folder": None}
    if state["digest"] != schedule.digest():
        raise ReplayError(f"{out}: this folder holds a run of another schedule (or one since edited); "
                          "use a new --out")
    with open(out / "log.txt", "a", encoding="utf-8") as logfile:
        log = _Tee(stdout, logfile)
        folder = Path(state["run_folder"]) if state["run_folder"] else _run_folder(out)
        if folder is None and schedule.stages[0].resume is not None:
            if start_from is None:
                raise ReplayError(f"{schedule.stages[0].where or 'stage 1'}: the first stage resumes "
                                  f"'{schedule.stages[0].resume}' (-f): give --from CKPT (a checkpoint of this "
                                  "network, the project's .npz or the release's pickle)")
            source = newest_checkpoint(start_from)
            folder = out / "ConvNet__from-checkpoint"
            folder.mkdir(exist_ok=True)
            target = folder / (re.sub(r"\.npz$", "", source.name) + ".npz")
            if checkpoint_format(source) == RELEASE:  # a copy in our format; the source is only read
                convert_checkpoint(source, target, layers=stages[0].get("layer_def"),
                                   params=stages[0].get("layer_params"))
            else:
                shutil.copyfile(source, target)
            state["run_folder"] = str(folder)
            _write_state(state_path, state)
        previous_params = None
        for k in range(state["stages_done"]):
            previous_params = stages[k].get("layer_params", previous_params)
        for k in range(state["stages_done"], len(stages)):
            opts = dict(stages[k])
            stage = schedule.stages[k]
            params = opts.get("layer_params", previous_params)
            if stage.rates:
                if params is None:
                    raise ReplayError(f"{stage.where or f'stage {k + 1}'}: rate edits need the stage's "
                                      "--layer-params (or an earlier stage's)")
                derived = out / "params" / f"stage-{k + 1}.{Path(params).name}"
                derived.parent.mkdir(exist_ok=True)
                text = edit_rates(Path(params).read_text(encoding="latin1"), stage.rates)
                atomic_write_text(derived, text, encoding="latin1")
                opts["layer_params"] = str(derived)
            previous_params = params
            argv = []
            if stage.init_from is not None:  # a new run, in its own folder, initialised from an earlier one
                opts.pop("init_from")
                segment = out / f"stage-{k + 1}"
                segment.mkdir(exist_ok=True)
                started = _run_folder(segment)
                if started is not None:  # killed after its first checkpoint: resume it
                    argv += ["-f", str(started)]
                else:
                    if stage.init_from == PREVIOUS:
                        earlier = start_from if k == 0 else folder
                    else:
                        earlier = stage.init_from
                        if not Path(earlier).exists():
                            raise ReplayError(f"{stage.where or f'stage {k + 1}'}: --init-from={earlier}: "
                                              "no such checkpoint")
                    assert earlier is not None
                    argv += ["--save-path", str(segment), f"--init-from={newest_checkpoint(earlier)}"]
            elif folder is not None:
                argv += ["-f", str(folder)]
            else:
                argv += ["--save-path", str(out)]
            for key, value in opts.items():
                argv.append(f"--{key.replace('_', '-')}={value}")
            if quiet:
                argv.append("--quiet")
            parser = argparse.ArgumentParser(prog=f"stage {k + 1}")
            add_train_arguments(parser)
            args = parser.parse_args(argv)
            print(f"== stage {k + 1}/{len(stages)} ({stage.where or schedule.name}): "
                  + " ".join(a for a in argv if a != "--quiet"), file=log, flush=True)
            run, _ = train(args, out=log, on_save=on_save)
            folder = run.folder
            if not any(folder.glob("*.npz")):
                raise ReplayError(f"stage {k + 1} wrote no checkpoint (--test-freq is larger than the batches it "
                                  "trained); later stages resume from a checkpoint")
            state.update(stages_done=k + 1, run_folder=str(folder))
            _write_state(state_path, state)
    return folder
