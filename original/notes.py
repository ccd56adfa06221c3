"""What the closing ``#`` notes of a layer-parameter file record.

The release's parameter files (``layer-params*.cfg``) end with notes the author
wrote while training: checkpoint folders, the epochs at which rates were changed
by hand, when a run was stopped, and the test results it reached
(``../shared/spec/driver.md`` §B.5 and §E; ``catalog.md`` §3). The notes are free
text. They are decoded here heuristically, line by line, into plain data; a note
that fits none of the patterns below is skipped, never guessed at.

Recognised (only lines whose first non-blank character is ``#``):

* **Checkpoint folders**, ``…/ConvNet__2012-09-13_03.43.56`` with any suffix kept
  (``.2``, ``.layer-170.fade``). The first mention of a folder is either a *run*
  (training went on in it; later events and results belong to it) or a *ref*
  (a backup, ``….bak``, or the source of initial weights). Later mentions of the
  same folder (moves between machines) add nothing.
* **Events**, on lines ``# epoch N: …`` (``N`` kept as written: ``25``, ``4.5``,
  ``4x``) and their indented continuation lines. Each clause becomes a
  :class:`Change`: learning-rate changes ("set epsw to A from B on L"),
  colour and brightness noise, ``wc``, minibatch size, ``--epochs``, the schedule
  factor, a layer option (``domax=``), dropout switched on, a backup copy,
  stopped ("killed"), paused ("on hold"), moved to another machine. An epoch line
  with none of these is kept as a ``(free-text remark)``.
* **Results**: ``logprob: nll, top-1, top-k`` lines, and a bare Python list or
  tuple of three numbers (the driver's printed test output). The text before
  ``logprob``, or else the header line just above (one ending in ``:``, or a quoted
  ``--multiview-test=`` command), gives the split ("validation", "test") and the
  view ("multiview", "centre patch"); with neither stated the kind is ``reported``.
* **Definition-file references**: "def file N", "config file #N",
  "def file layers-X.cfg", "like #N (so/hence uses same file)"; and, as weaker
  hints, plain "like #N" and training-log names ``logs/layers-N.log``.

Not recognised: numbers without ``logprob`` or brackets, plans and intentions,
initial rates ("init epsw A"), machine names, and anything else in prose.

:func:`pair_params` pairs a parameter file with the definition files it was used
with, by name or by what its notes say (``catalog.md`` §3, "goes with").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Collection, Mapping

# --------------------------------------------------------------------------- vocabularies

#: Kinds of :class:`Change`, in the order the clauses of one note line are listed.
CHANGE_KINDS = (
    "checkpoint-copied",  # made backup to <folder>
    "minibatch",          # set mini to A from B
    "epochs",             # set epochs to N
    "lr-change",          # set epsw to A from B [on L]
    "color-noise",        # set color noise to A from B
    "brightness-noise",   # set color (brightness) noise to A from B
    "weight-decay",       # set wc to A from B
    "schedule",           # changed schedw factor to A from B
    "layer-option",       # set L key=value
    "dropout",            # enabled dropout [on L]
    "stopped",            # killed
    "paused",             # paused, on hold
    "moved",              # moved / move back to <machine>
)
#: Event kind of an epoch line in which no clause was recognised.
REMARK = "remark"
REMARK_TEXT = "(free-text remark)"

#: Result kinds: split ("validation", "test") and view ("multiview", "centre patch")
#: as the notes state them; "reported" when they state neither.
REPORTED = "reported"

# --------------------------------------------------------------------------- patterns

# A number as the author wrote it (kept as text in events).
_NUM = r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# A checkpoint folder: the driver names them ConvNet__<date>_<time>; the author
# sometimes appended a suffix (.bak, .2, .layer-170.fade, .restart-31).
_FOLDER_RE = re.compile(r"ConvNet__(?P<id>\d{4}-\d\d-\d\d_\d\d\.\d\d\.\d\d[^\s/()]*)")
# A folder mentioned as a source rather than as the place training went on.
_REF_CONTEXT_RE = re.compile(r"\binitiali[sz]ed\s+from\b|\bbackup\b", re.I)

# "epoch N: …" at the start of a note (one misspelling, "epcoh", occurs).
_EPOCH_RE = re.compile(r"^\s*ep(?:och|coh)\s+(?P<epoch>\d[\w.]*)\s*:\s*(?P<rest>.*)$", re.I)
# An indented note line continues the epoch line above it.
_CONTINUATION_RE = re.compile(r"^\s{2,}\S")
# Clauses of one line are separated by ", " before a new verb or rate
# ("…, set …", "…, epsw to …", "…, A elsewhere"); a comma inside a layer list
# ("on L1, L2") or inside a schedule's brackets is not a break.
_CLAUSE_SPLIT_RE = re.compile(rf",\s*(?=(?:set|also|eps?t?w)\b|{_NUM}\s+elsewhere\b)", re.I)

# Learning rate: "set epsw to A [from B] [on L | everywhere | elsewhere]", with the
# layer also written before or after epsw ("set L epsw to", "set epsw L to"),
# "set" left out after a comma ("set X to …, epsw to A from B") and the author's
# typos "epstw" and "ot".
_LR_RE = re.compile(
    rf"(?:\bset\s+(?:(?P<pre>conv\w*)\s+)?)?\beps?t?w\b(?:\s+(?P<mid>conv\w*))?\s+(?:to|ot)\s+"
    rf"(?P<new>{_NUM})(?:\s+from\s+(?P<old>{_NUM}))?(?P<tail>.*)$",
    re.I,
)
# A bare rate for the remaining layers, after a clause that set some: "A elsewhere".
_LR_ELSEWHERE_RE = re.compile(rf"^\s*(?P<new>{_NUM})\s+elsewhere\b", re.I)
# The layer list after a rate, kept as written: "on L1,L2", "on L1, L2", "on L1/2".
_ON_LAYERS_RE = re.compile(r"^\s*on\s+(?P<layers>.+?)\s*$", re.I)
_BRIGHTNESS_RE = re.compile(
    rf"\bset\s+colou?r\s+\(brightness\)\s+noise\s+(?:to\s+)?(?P<new>{_NUM})\s+from\s+(?P<old>{_NUM})", re.I)
_COLOR_RE = re.compile(rf"\bset\s+colou?r\s+noise\s+(?:to\s+)?(?P<new>{_NUM})\s+from\s+(?P<old>{_NUM})", re.I)
_WC_RE = re.compile(rf"\bset\s+wc\s+to\s+(?P<new>{_NUM})\s+from\s+(?P<old>{_NUM})", re.I)
_MINIBATCH_RE = re.compile(r"\bset\s+mini(?:batch)?\s+to\s+(?P<new>\d+)\s+from\s+(?P<old>\d+)", re.I)
_EPOCHS_RE = re.compile(r"\bset\s+epochs\s+to\s+(?P<new>\d+)", re.I)
_SCHEDULE_RE = re.compile(rf"\bchanged\s+schedw\s+factor\s+to\s+(?P<new>{_NUM})\s+from\s+(?P<old>{_NUM})", re.I)
# "set L1,L2 key=value [from old]": a layer key given as key=value.
_LAYER_OPTION_RE = re.compile(r"\bset\s+(?P<layers>[\w,]+)\s+(?P<key>\w+)\s*=\s*(?P<new>\w+)", re.I)
_DROPOUT_RE = re.compile(r"\benabled\s+dropout(?:\s+on\s+(?P<layers>\S+))?", re.I)
_BACKUP_RE = re.compile(r"\bmade\s+backup\b", re.I)
_STOPPED_RE = re.compile(r"\bkill(?:ed|ing)\b", re.I)
_PAUSED_RE = re.compile(r"\bpaused\b|\bon\s+hold\b", re.I)
_MOVED_RE = re.compile(r"\bmov(?:e|ed|ing)\s+(?:back\s+)?to\b", re.I)
# Spelling of layer keys as the spec writes them (the notes write them lower-case).
_KEY_SPELLING = {"domax": "doMax"}

# A result as the driver prints it: "logprob:  nll, top-1, top-k".
_LOGPROB_RE = re.compile(rf"logprob:\s*(?P<a>{_NUM})\s*,\s*(?P<b>{_NUM})\s*,\s*(?P<c>{_NUM})", re.I)
# The same three values printed as a Python list or tuple: "[a, b, c]", "(a, b, c)".
_TRIPLE_RE = re.compile(rf"^\s*[\[(]\s*(?P<a>{_NUM})\s*,\s*(?P<b>{_NUM})\s*,\s*(?P<c>{_NUM})\s*[\])]\s*$")
# "multiview", also the typo "multliview".
_MULTIVIEW_WORD_RE = re.compile(r"mult\w*view")
# A test command quoted above its result: "… --multiview-test=0|1".
_MULTIVIEW_FLAG_RE = re.compile(r"--multiview-test=(?P<on>\d)")

# "def file layers-X.cfg": a definition file by name.
_DEF_FILE_NAME_RE = re.compile(r"\bdef\s+file\s+(?P<target>layers[\w.-]*?\.cfg)\b", re.I)
# "def file #N", "def file N", "def file: N", "config file #N-variant".
_DEF_FILE_NUMBER_RE = re.compile(r"\b(?:def|config)\s+file\b[:\s]*#?(?P<target>\d[\w-]*)", re.I)
# "like #N (so|hence uses same file)": the definition file of another parameter file.
_SAME_AS_RE = re.compile(
    r"\blike\s+#?(?P<target>\d[\w-]*)\s*\((?:so|hence)\s+uses\s+(?:the\s+)?same\s+file\)", re.I)
# "like #N", "like N": a sibling net, no claim about the definition file.
_LIKE_RE = re.compile(r"\blike\s+#?(?P<target>\d[\w-]*)", re.I)
# "logs/layers-X.log": the training log, named after the net.
_LOG_RE = re.compile(r"\blogs/(?P<target>layers[\w.-]*?)\.log\b", re.I)

# A four-digit year as a file-name part means "the same net on another data set".
_YEAR_RE = re.compile(r"(?:19|20)\d\d")

# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Change:
    """One clause of an event: what was changed, from what, to what, on which layers.

    ``old``/``new`` are the numbers as written (``None`` when the note does not say);
    ``layers`` is the layer list as written, ``"all"`` when none is named and
    ``"other layers"`` for "elsewhere" (set only for ``lr-change``).
    """

    kind: str
    text: str
    old: str | None = None
    new: str | None = None
    layers: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "old": self.old, "new": self.new,
                "layers": self.layers}


@dataclass(frozen=True)
class Event:
    """A dated note: ``# epoch N: …`` and its continuation lines."""

    epoch: str                  # as written: "25", "4.5", "4x"
    kind: str                   # kind of the first change, or "remark"
    description: str            # the changes' texts joined by "; "
    line: int                   # 1-based line of the "epoch" note
    run: str | None             # the run folder in force, if any was named yet
    changes: tuple[Change, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "kind": self.kind, "description": self.description,
                "line": self.line, "run": self.run,
                "changes": [change.to_dict() for change in self.changes]}


@dataclass(frozen=True)
class RecordedResult:
    """A test result the notes record: negative log-likelihood, top-1 and top-k error."""

    kind: str                   # "reported", "multiview", "validation, multiview", …
    nll: float
    top1: float
    topk: float
    line: int
    run: str | None

    @property
    def values(self) -> tuple[float, float, float]:
        return (self.nll, self.top1, self.topk)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "nll": self.nll, "top1": self.top1, "topk": self.topk,
                "line": self.line, "run": self.run}


@dataclass(frozen=True)
class Checkpoint:
    """The first mention of a checkpoint folder (``ConvNet__`` stripped)."""

    folder: str
    role: str                   # "run" or "ref"
    line: int


@dataclass(frozen=True)
class DefRef:
    """What a note says about the definition file.

    kind ``file`` (a file name), ``number`` (``layers-<target>.cfg``), ``same-as``
    (the definition file of ``layer-params-<target>.cfg``) are claims; ``like`` (a
    sibling net) and ``log`` (a training log's name) are hints only.
    """

    kind: str
    target: str
    line: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "line": self.line}


#: DefRef kinds that claim a definition file.
DEF_CLAIMS = ("file", "number", "same-as")


@dataclass(frozen=True)
class Notes:
    """Everything :func:`decode_notes` found, each item with its line number."""

    checkpoints: tuple[Checkpoint, ...]
    events: tuple[Event, ...]
    results: tuple[RecordedResult, ...]
    def_refs: tuple[DefRef, ...]

    @property
    def runs(self) -> tuple[str, ...]:
        """Run folders in order of first mention."""
        return tuple(c.folder for c in self.checkpoints if c.role == "run")

    @property
    def refs(self) -> tuple[str, ...]:
        """Folders mentioned as backups or weight sources, in order of first mention."""
        return tuple(c.folder for c in self.checkpoints if c.role == "ref")

    def history(self) -> list[list[Any]]:
        """Runs, refs, events and results in note order, as ``catalog.json`` lists them:
        ``["run", id]``, ``["ref", id]``, ``["ev", epoch, description]``,
        ``["res", kind, [nll, top1, topk]]``. Items on one line: folders first."""
        items: list[tuple[int, int, list[Any]]] = []
        items += [(c.line, 0, [c.role, c.folder]) for c in self.checkpoints]
        items += [(e.line, 1, ["ev", e.epoch, e.description]) for e in self.events]
        items += [(r.line, 2, ["res", r.kind, list(r.values)]) for r in self.results]
        items.sort(key=lambda item: (item[0], item[1]))
        return [entry for _, _, entry in items]

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": list(self.runs),
            "refs": list(self.refs),
            "events": [event.to_dict() for event in self.events],
            "results": [result.to_dict() for result in self.results],
            "def_refs": [ref.to_dict() for ref in self.def_refs],
            "history": self.history(),
        }


# --------------------------------------------------------------------------- decoding


def comment_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, text after the '#')`` for every line whose first non-blank is '#'."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith("#"):
            found.append((number, stripped[1:]))
    return found


def _lr_change(match: re.Match[str]) -> Change:
    tail = match["tail"]
    on = _ON_LAYERS_RE.match(tail)
    if match["pre"] or match["mid"]:
        layers = match["pre"] or match["mid"]
    elif on:
        layers = on["layers"]
    elif re.search(r"\belsewhere\b", tail, re.I):
        layers = "other layers"
    else:  # "everywhere", or nothing said
        layers = "all"
    old, new = match["old"], match["new"]
    return Change("lr-change", f"epsW {old or '?'}->{new} [{layers}]", old, new, layers)


def _from_to(kind: str, label: str, match: re.Match[str]) -> Change:
    old, new = match["old"], match["new"]
    return Change(kind, f"{label} {old}->{new}", old, new)


def _parse_clause(clause: str) -> Change | None:
    """The first pattern that matches one clause, or None."""
    if match := _LR_RE.search(clause):
        return _lr_change(match)
    if match := _LR_ELSEWHERE_RE.match(clause):
        new = match["new"]
        return Change("lr-change", f"epsW ?->{new} [other layers]", None, new, "other layers")
    if match := _BRIGHTNESS_RE.search(clause):
        return _from_to("brightness-noise", "brightness-noise", match)
    if match := _COLOR_RE.search(clause):
        return _from_to("color-noise", "color-noise", match)
    if match := _WC_RE.search(clause):
        return _from_to("weight-decay", "wc", match)
    if match := _MINIBATCH_RE.search(clause):
        return _from_to("minibatch", "minibatch", match)
    if match := _EPOCHS_RE.search(clause):
        return Change("epochs", f"--epochs raised to {match['new']}", None, match["new"])
    if match := _SCHEDULE_RE.search(clause):
        return _from_to("schedule", "schedW tgtFactor", match)
    if match := _LAYER_OPTION_RE.search(clause):
        key = _KEY_SPELLING.get(match["key"].lower(), match["key"])
        return Change("layer-option", f"{match['layers']} {key}->{match['new']}", None, match["new"],
                      match["layers"])
    if match := _DROPOUT_RE.search(clause):
        on = f" on {match['layers']}" if match["layers"] else ""
        return Change("dropout", f"dropout enabled{on}", layers=match["layers"])
    if _BACKUP_RE.search(clause):
        return Change("checkpoint-copied", "checkpoint copied")
    if _STOPPED_RE.search(clause):
        return Change("stopped", "stopped")
    if _PAUSED_RE.search(clause):
        return Change("paused", "paused")
    if _MOVED_RE.search(clause):
        return Change("moved", "moved to another machine")
    return None


def parse_changes(text: str) -> list[Change]:
    """The changes one note line states, listed in the order of :data:`CHANGE_KINDS`
    (written order within a kind)."""
    changes = [c for c in map(_parse_clause, _CLAUSE_SPLIT_RE.split(text)) if c is not None]
    return sorted(changes, key=lambda c: CHANGE_KINDS.index(c.kind))


def _result_kind(label: str) -> str:
    """Split and view named by a result's label: "validation", "test" (only when the label
    starts with it), "multiview", "centre patch"; "reported" when it names none."""
    low = label.lower()
    if flag := _MULTIVIEW_FLAG_RE.search(low):
        # A quoted test command: --multiview-test=0 is the centre patch of the test range.
        return "multiview" if flag["on"] != "0" else "test, centre patch"
    split = "validation" if "valid" in low else "test" if low.lstrip().startswith("test") else None
    view = ("multiview" if _MULTIVIEW_WORD_RE.search(low)
            else "centre patch" if "center" in low or "centre" in low else None)
    named = [part for part in (split, view) if part]
    return ", ".join(named) if named else REPORTED


def _is_result_header(text: str) -> bool:
    """A note that labels the result below it: "validation multiview:" or a test command."""
    return text.rstrip().endswith(":") or _MULTIVIEW_FLAG_RE.search(text) is not None


def _parse_result(text: str, header: str | None, line: int, run: str | None) -> RecordedResult | None:
    if match := _LOGPROB_RE.search(text):
        prefix = text[: match.start()]
    elif match := _TRIPLE_RE.match(text):
        prefix = ""
    else:
        return None
    if _result_kind(prefix) != REPORTED or header is None:
        kind = _result_kind(prefix)
    else:
        kind = _result_kind(header)
    return RecordedResult(kind, float(match["a"]), float(match["b"]), float(match["c"]), line, run)


def _parse_def_refs(text: str, line: int) -> list[DefRef]:
    refs = [DefRef("file", m["target"], line) for m in _DEF_FILE_NAME_RE.finditer(text)]
    refs += [DefRef("number", m["target"], line) for m in _DEF_FILE_NUMBER_RE.finditer(text)]
    same = [DefRef("same-as", m["target"], line) for m in _SAME_AS_RE.finditer(text)]
    refs += same
    claimed = {ref.target for ref in same}
    refs += [DefRef("like", m["target"], line) for m in _LIKE_RE.finditer(text)
             if m["target"] not in claimed]
    refs += [DefRef("log", m["target"], line) for m in _LOG_RE.finditer(text)]
    return refs


class _EventBuilder:
    """An epoch note being read, until a line that does not continue it."""

    def __init__(self, epoch: str, line: int, run: str | None) -> None:
        self.epoch, self.line, self.run = epoch, line, run
        self.changes: list[Change] = []

    def finish(self) -> Event:
        if not self.changes:
            return Event(self.epoch, REMARK, REMARK_TEXT, self.line, self.run, ())
        description = "; ".join(change.text for change in self.changes)
        return Event(self.epoch, self.changes[0].kind, description, self.line, self.run,
                     tuple(self.changes))


def _new_checkpoints(text: str, line: int, seen: set[str]) -> list[Checkpoint]:
    """Folders first mentioned on this line; ``seen`` is updated. A folder is a ref when
    it is a backup (``.bak``) or the line speaks of a backup or of initial weights."""
    found = []
    for match in _FOLDER_RE.finditer(text):
        folder = match["id"]
        if folder in seen:
            continue  # moved between machines, resumed, or quoted in a command
        seen.add(folder)
        is_ref = folder.endswith(".bak") or _REF_CONTEXT_RE.search(text) is not None
        found.append(Checkpoint(folder, "ref" if is_ref else "run", line))
    return found


def decode_notes(text: str) -> Notes:
    """Decode the ``#`` notes of a parameter file's text (see the module docstring)."""
    checkpoints: list[Checkpoint] = []
    events: list[Event] = []
    results: list[RecordedResult] = []
    def_refs: list[DefRef] = []
    seen: set[str] = set()
    run: str | None = None                    # the run folder notes now refer to
    open_event: _EventBuilder | None = None
    previous: tuple[int, str] | None = None   # the last comment line read

    for line, body in comment_lines(text):
        above = previous[1] if previous and previous[0] == line - 1 else None
        for checkpoint in _new_checkpoints(body, line, seen):
            checkpoints.append(checkpoint)
            if checkpoint.role == "run":
                run = checkpoint.folder

        header = above if above is not None and _is_result_header(above) else None
        if result := _parse_result(body, header, line, run):
            results.append(result)
        def_refs += _parse_def_refs(body, line)

        epoch = _EPOCH_RE.match(body)
        continues = above is not None and _CONTINUATION_RE.match(body) is not None
        if open_event and (epoch or not continues):
            events.append(open_event.finish())
            open_event = None
        if epoch:
            open_event = _EventBuilder(epoch["epoch"], line, run)
            open_event.changes += parse_changes(epoch["rest"])
        elif open_event:
            open_event.changes += parse_changes(body)
        previous = (line, body)

    if open_event:
        events.append(open_event.finish())
    return Notes(tuple(checkpoints), tuple(events), tuple(results), tuple(def_refs))


def read_notes(path: str | Path) -> Notes:
    """Decode the notes of a parameter file on disk (read as Latin-1, like the cfg reader)."""
    return decode_notes(Path(path).read_bytes().decode("latin-1"))


# --------------------------------------------------------------------------- pairing

PARAMS_PREFIX = "layer-params"
DEFS_PREFIX = "layers"


def is_params_file(name: str) -> bool:
    """``layer-params*.cfg``, also a saved copy such as ``layer-params-147.cfg.save``."""
    return name.startswith(PARAMS_PREFIX) and ".cfg" in name


def is_def_file(name: str) -> bool:
    return name.startswith(DEFS_PREFIX) and name.endswith(".cfg")


def _name_candidates(params_name: str) -> list[tuple[str, list[str]]]:
    """Definition file names a parameter file's name points at, most specific first,
    each with the trailing name parts dropped to reach it:
    ``layer-params-120-4gpu-auto2.cfg`` → ``layers-120-4gpu-auto2.cfg``, ``layers-120-4gpu.cfg``
    (dropped ``auto2``), ``layers-120.cfg`` (dropped ``auto2``, ``4gpu``)."""
    stem = params_name[len(PARAMS_PREFIX): params_name.index(".cfg")]
    candidates, dropped = [], []
    while True:
        candidates.append((f"{DEFS_PREFIX}{stem}.cfg", list(dropped)))
        if "-" not in stem:
            return candidates
        stem, part = stem.rsplit("-", 1)
        dropped.append(part)


def _hinted_nets(notes: Notes) -> set[str]:
    """Nets the notes mention without claiming their definition file: "like #N", logs."""
    nets = set()
    for ref in notes.def_refs:
        if ref.kind == "like":
            nets.add(f"{DEFS_PREFIX}-{ref.target}.cfg")
        elif ref.kind == "log":
            nets.add(f"{ref.target}.cfg")
    return nets


def _claimed_defs(folder: PurePosixPath, notes: Notes, defs_here: set[str],
                  params_notes: Mapping[str, Notes], visited: frozenset[str]) -> list[str] | None:
    """Definition file names the notes claim (existing or not), or None if they claim none.

    "same-as #N" is the pairing of ``layer-params-N.cfg`` when its notes are known,
    else ``layers-N.cfg``.
    """
    claims = [ref for ref in notes.def_refs if ref.kind in DEF_CLAIMS]
    if not claims:
        return None
    names: list[str] = []
    for ref in claims:
        if ref.kind == "file":
            targets = [ref.target]
        elif ref.kind == "number":
            targets = [f"{DEFS_PREFIX}-{ref.target}.cfg"]
        else:
            other = (folder / f"{PARAMS_PREFIX}-{ref.target}.cfg").as_posix()
            if other in params_notes and other not in visited:
                pairs = _pair(other, params_notes[other], defs_here, params_notes, visited | {other})
                targets = [PurePosixPath(path).name for path, _ in pairs]
            else:
                targets = [f"{DEFS_PREFIX}-{ref.target}.cfg"]
        names += [name for name in targets if name not in names]
    return names


def _pair(params_path: str, notes: Notes, defs_here: set[str], params_notes: Mapping[str, Notes],
          visited: frozenset[str]) -> list[tuple[str, str]]:
    path = PurePosixPath(params_path)
    candidates = _name_candidates(path.name)
    exact = candidates[0][0]

    def rel(name: str) -> str:
        return (path.parent / name).as_posix()

    claimed = _claimed_defs(path.parent, notes, defs_here, params_notes, visited)
    if claimed is not None:
        # The notes are the authority: an existing same-name file is listed first, then
        # what they name; a named file that is absent is not replaced by a guess.
        names = ([exact] if exact in defs_here and exact not in claimed else []) + claimed
        return [(rel(name), "notes") for name in names if name in defs_here]
    for name, dropped in candidates:
        if name not in defs_here:
            continue
        if not any(_YEAR_RE.fullmatch(part) for part in dropped):
            return [(rel(name), "name")]
        # "-2010" names a data set, not a variant of the net: the base net's file is
        # taken only when the notes mention that net (a log, a "like #N").
        return [(rel(name), "notes")] if name in _hinted_nets(notes) else []
    return []


def pair_params(params_path: str, notes: Notes, def_files: Collection[str],
                params_notes: Mapping[str, Notes] | None = None) -> list[tuple[str, str]]:
    """The definition files a parameter file goes with: ``[(def path, basis)]``.

    Paths are ``/``-separated and relative to the release root; ``def_files`` lists the
    definition files present, ``params_notes`` the notes of the other parameter files
    (needed only to follow "like #N (so uses same file)"). Rules, in order:

    1. If the notes claim definition files ("def file N", "def file layers-X.cfg",
       "like #N (so uses same file)"), those present are the pairing, basis ``notes``;
       a present same-name file is listed first.
    2. Else the same folder's ``layers<rest>.cfg`` for the parameter file's
       ``layer-params<rest>.cfg``, dropping trailing ``-part``s until one exists
       (``…-18pct-noisylr`` → ``layers-18pct.cfg``), basis ``name``.
    3. If a dropped part is a year (a data set: ``…-145-2010``), the base file is
       paired only when the notes mention that net, basis ``notes``.
    4. Else nothing.
    """
    folder = PurePosixPath(params_path).parent
    defs_here = {PurePosixPath(d).name for d in def_files if PurePosixPath(d).parent == folder}
    return _pair(params_path, notes, defs_here, params_notes or {}, frozenset({params_path}))


def release_files(release_root: str | Path) -> tuple[list[str], list[str]]:
    """``(parameter files, definition files)`` under a release folder, relative and sorted."""
    root = Path(release_root)
    params, defs = [], []
    for path in sorted(root.rglob("*.cfg*")):
        rel = path.relative_to(root).as_posix()
        if is_params_file(path.name):
            params.append(rel)
        elif is_def_file(path.name):
            defs.append(rel)
    return params, defs


def pair_release(release_root: str | Path) -> dict[str, list[tuple[str, str]]]:
    """:func:`pair_params` for every parameter file under a release folder."""
    params, defs = release_files(release_root)
    notes = {rel: read_notes(Path(release_root) / rel) for rel in params}
    return {rel: pair_params(rel, notes[rel], defs, notes) for rel in params}
