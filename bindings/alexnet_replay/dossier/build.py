"""``alexnet-replay dossier COPY --out DIR``: build the folder, all of it or nothing.

DIR is assembled in a hidden folder beside it and renamed into place at the end, so a
failure (a bad copy, an interrupted replay) leaves no half-written dossier; an earlier
dossier in DIR is replaced only once the new one is complete. DIR holds:

* ``dossier.json``: the facts (docs/json-formats.md, "dossier.json");
* ``dossier.html``: the page drawn from them (:mod:`.page`);
* ``replay/``: the demo's data, checkpoint, log and parity report (or, with ``--run``, the
  parity report when none lay beside the run);
* ``SHA256SUMS``: every file above, for ``sha256sum -c``;
* ``ro-crate-metadata.json``: the RO-Crate (written by the ``rocrate`` library) naming every
  file with its SHA-256, the copy's files by their checksums, and the replay and the dossier
  as runs of the Process Run Crate profile.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rocrate.model.contextentity import ContextEntity
from rocrate.model.softwareapplication import SoftwareApplication
from rocrate.rocrate import ROCrate

from .. import __version__
from ..errors import ReplayError
from ..files import atomic_write_text
from ..original.manifest import RELEASE_COMMIT, RELEASE_URL, SWH_DIR, load_manifest
from . import facts
from .contents import contents
from .page import render

FORMAT = "alexnet-replay dossier"
VERSION = 1
PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"
RO_CRATE = "https://w3id.org/ro/crate/1.1"
_TYPES = {".html": "text/html", ".json": "application/json", ".md": "text/markdown", ".txt": "text/plain",
          ".npz": "application/zip"}


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ReplayError(f"{out}: exists and is not a folder (give a new folder for --out)")
    if out.is_dir() and any(out.iterdir()) and not (out / "dossier.json").is_file():
        raise ReplayError(f"{out}: folder is not empty and holds no earlier dossier; give another --out")
    if not out.parent.is_dir():
        raise ReplayError(f"{out.parent}: no such folder (the folder above --out must exist)")


def build_dossier(copy: str | Path, out: str | Path, *, run: str | Path | None = None, quick: bool = False,
                  command: str | None = None) -> dict[str, Any]:
    """Write the dossier of the release copy `copy` into the folder `out` and return its facts.

    `run`: a training run folder to describe; without it the demo runs (`quick`: one epoch)."""
    started = time.perf_counter()
    copy, out = Path(copy), Path(out)
    if not copy.is_dir():
        raise ReplayError(f"{copy}: no such folder (give the folder of your copy of the release)")
    _check_out(out)
    run_path = Path(run) if run is not None else None
    if run_path is not None and not run_path.is_dir():
        raise ReplayError(f"{run_path}: no such run folder (give the folder of a training run, which holds its "
                          "E.B.npz checkpoints)")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise ReplayError(f"{out.parent}: cannot write here ({exc.strerror or exc}); give another --out") from None
    try:
        dossier, assets = _assemble(copy, out, staging, run_path, quick, command)
        atomic_write_text(staging / "dossier.json", json.dumps(dossier, indent=1) + "\n")
        atomic_write_text(staging / "dossier.html", render(dossier, assets))
        _write_sums(staging)
        write_crate(staging, dossier)
        dossier["build_seconds"] = round(time.perf_counter() - started, 2)
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dossier


def _assemble(copy: Path, out: Path, staging: Path, run: Path | None, quick: bool,
              command: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    identity = facts.identity(copy)
    experiments = facts.experiments(copy)
    counts = {k: experiments["counts"][k] for k in ("definition_files", "parameter_files")}
    if run is None:
        replay, assets = facts.replay_demo(staging, quick)
    else:
        replay, assets = facts.replay_run(staging, run)
    argv = command or (f"alexnet-replay dossier {copy} --out {out}" + (f" --run {run}" if run else "")
                       + (" --quick" if quick else ""))
    dossier = {
        "format": FORMAT, "version": VERSION,
        "title": "The 2012 AlexNet release: a curator's dossier",
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "built_by": {"name": "alexnet-replay", "version": __version__, "command": argv},
        "copy": str(copy.resolve()),
        "identity": identity, "contents": contents(counts), "experiments": experiments, "replay": replay,
        "commands": facts.commands(copy, out, run, quick),
    }
    return dossier, assets


def _write_sums(folder: Path) -> None:
    lines = [f"{facts.sha256_file(p)}  {p.relative_to(folder).as_posix()}\n" for p in _files(folder)
             if p.name not in ("SHA256SUMS", "ro-crate-metadata.json") or p.parent != folder]
    atomic_write_text(folder / "SHA256SUMS", "".join(lines))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def write_crate(folder: Path, dossier: dict[str, Any]) -> Path:
    """``folder/ro-crate-metadata.json``: every file in `folder` with its SHA-256, the copy's files by their
    checksums, the replay and the building of the dossier as runs (Process Run Crate)."""
    crate = ROCrate()
    crate.name = dossier["title"]
    crate.description = ("A dossier of a copy of the 2012 AlexNet release: its identity against the release's "
                         "manifest, its contents, the experiments its configuration files record, and a replay "
                         "of the code today.")
    crate.datePublished = dossier["created"]
    crate.license = "https://opensource.org/licenses/MIT"
    crate.root_dataset["conformsTo"] = [{"@id": PROCESS_RUN_CRATE}]
    crate.add(ContextEntity(crate, PROCESS_RUN_CRATE, {"@type": "CreativeWork", "name": "Process Run Crate",
                                                       "version": "0.5"}))
    by_path = {}
    for path in _files(folder):
        rel = path.relative_to(folder).as_posix()
        if rel == "ro-crate-metadata.json":
            continue
        props = {"sha256": facts.sha256_file(path), "contentSize": str(path.stat().st_size),
                 "name": path.name}
        kind = _TYPES.get(path.suffix)
        if kind:
            props["encodingFormat"] = kind
        by_path[rel] = crate.add_file(path, dest_path=rel, properties=props)

    build = dossier["built_by"]
    env = dossier["replay"]["environment"]
    requirements = []
    for name, version in env["packages"].items():
        if version and name != "alexnet-replay":
            requirements.append(crate.add(SoftwareApplication(crate, f"#software/{name}", {
                "name": name, "softwareVersion": version})))
    python = crate.add(SoftwareApplication(crate, "#software/python", {"name": "Python",
                                                                        "softwareVersion": env["python"]}))
    tool = crate.add(SoftwareApplication(crate, "#software/alexnet-replay", {
        "name": "alexnet-replay", "softwareVersion": build["version"],
        "description": f"engine built with {env['compiler']} ({env['flags']}); BLAS {env['blas']}; {env['threads']}",
        "softwareRequirements": [python, *requirements]}))

    release = crate.add(ContextEntity(crate, "#release", {
        "@type": "Dataset", "name": "The 2012 AlexNet release (Computer History Museum)",
        "url": RELEASE_URL, "identifier": [SWH_DIR, f"git commit {RELEASE_COMMIT}"]}))
    identity = dossier["identity"]
    statuses = {f["path"]: f["status"] for f in identity["files"]}
    found = {d["path"]: d.get("found_sha256") for d in identity["differences"]}
    copy_files = []
    for entry in load_manifest():
        status = statuses.get(entry.path, "missing")
        props = {"@type": "File", "name": entry.path, "contentSize": str(entry.size),
                 "sha256": found.get(entry.path) or entry.sha256 if status != "missing" else entry.sha256,
                 "description": f"{status} in this copy" + ("" if status == "ok" else
                                                             f"; the release's sha256 is {entry.sha256}")}
        if status == "missing":
            props["description"] = f"missing from this copy; the release's sha256 is {entry.sha256}"
        copy_files.append(crate.add(ContextEntity(crate, f"#copy/{entry.path}", props)))
    copy = crate.add(ContextEntity(crate, "#copy", {
        "@type": "Dataset", "name": f"The copy examined ({dossier['copy']})", "isBasedOn": release,
        "identifier": identity["tree_id"] or "tree id not computable",
        "description": identity["summary"], "hasPart": copy_files}))

    replay = dossier["replay"]

    def entity(item: dict[str, Any]):
        if item["path"] in by_path:
            return by_path[item["path"]]
        return crate.add(ContextEntity(crate, f"#external/{item['path']}", {
            "@type": "File", "name": item["path"], "sha256": item["sha256"], "contentSize": str(item["bytes"]),
            "description": "outside this folder, on the machine that built the dossier"}))

    crate.add(ContextEntity(crate, "#replay", {
        "@type": "CreateAction", "name": "Replay today: " + replay["description"],
        "instrument": tool, "object": [entity(i) for i in replay["inputs"]],
        "result": [entity(o) for o in replay["outputs"]],
        "description": replay["parity"]["verdict"]}))
    results = [by_path[p] for p in ("dossier.html", "dossier.json", "SHA256SUMS") if p in by_path]
    crate.add(ContextEntity(crate, "#build-dossier", {
        "@type": "CreateAction", "name": build["command"], "endTime": dossier["created"],
        "instrument": tool, "object": [copy], "result": results,
        "description": "alexnet-replay dossier: verify, catalog and replay, written as this folder"}))
    text = json.dumps(crate.metadata.generate(), indent=1) + "\n"
    return atomic_write_text(folder / "ro-crate-metadata.json", text)


def _swap_in(staging: Path, out: Path) -> None:
    """Rename the finished folder to `out`; an earlier dossier there goes only after that."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        old.rmdir()
        out.rename(old)
        try:
            staging.rename(out)
        except BaseException:
            old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
