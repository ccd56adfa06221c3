"""The facts of the dossier, as plain data: what ``dossier.json`` holds and the page shows.

One function per section: :func:`identity` (``verify``), :func:`experiments` (``catalog``,
notes, lineage and the paper's network), :func:`replay` (a training run: the demo's, or a
folder the user names) and :func:`commands`. The page (:mod:`.page`) is drawn from this data
alone, so the two cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .. import build_info, networks
from ..errors import ConfigError, ReplayError
from ..harness.checkpoint import read_checkpoint
from ..harness.checkpoint_format import newest_checkpoint
from ..harness.demo import run_demo
from ..harness.runnable import assess
from ..modernize.parity import run_parity, write_report
from ..modernize.parity.report import ParityReport, report_from_dict, verdict_sentence, worst_metric
from ..original.catalog import build_catalog
from ..original.manifest import RELEASE_COMMIT, RELEASE_TREE, SWH_DIR, SWH_REV, load_manifest
from ..original.notes import decode_notes
from ..original.shownet import load
from ..original.verify import verify_copy

PAPER_DEFINITION = "layers/layers-145.cfg"
PAPER_PARAMS = "layers/layer-params-145.cfg"
# The paper's Table 1 and 2 (Krizhevsky, Sutskever and Hinton, NIPS 2012), as catalog.md §1.1 restates
# them, beside the parameter file whose notes record the same experiment and which result to read.
PAPER_TABLE = [
    {"params": "layers/layer-params-145.cfg", "result_kind": "reported",
     "experiment": "ILSVRC-2012 validation set, one network (paper, Table 2: 1 CNN)",
     "paper": {"top1": 0.407, "top5": 0.182}},
    {"params": "layers/layer-params-145-2010.cfg", "result_kind": "test, multiview",
     "experiment": "ILSVRC-2010 test set, ten views averaged (paper, Table 1: CNN)",
     "paper": {"top1": 0.375, "top5": 0.170}},
]
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path, shown: str, role: str) -> dict[str, Any]:
    """One input or output: the path as the dossier shows it, its size and SHA-256."""
    return {"path": shown, "role": role, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


# -- 1. identity ----------------------------------------------------------------------------------
def identity(copy: Path) -> dict[str, Any]:
    """``verify``'s result, with what differs in each file that is not the release's."""
    report = verify_copy(copy)
    data = report.to_dict()
    manifest = {e.path: e for e in load_manifest()}
    differences = []
    for result in report.results:
        if result.status == "ok":
            continue
        entry: dict[str, Any] = {"path": result.path, "status": result.status, "reason": result.reason}
        expected = manifest.get(result.path)
        if expected is not None:
            entry.update(expected_bytes=expected.size, expected_sha256=expected.sha256)
        found = copy / result.path
        if result.status in ("modified", "extra") and found.is_file() and not found.is_symlink():
            entry.update(found_bytes=found.stat().st_size, found_sha256=sha256_file(found))
        differences.append(entry)
    counts = report.counts
    if report.ok:
        sentence = (f"This copy is the 2012 release: all {report.manifest_files} files match the manifest and its "
                    f"git tree id is the release's, {RELEASE_TREE}, archived by Software Heritage as {SWH_DIR}.")
    else:
        parts = [f"{counts[s]} {s}" for s in ("modified", "missing", "unreadable", "extra") if counts[s]]
        sentence = (f"This copy differs from the 2012 release: {counts['ok']} of {report.manifest_files} files "
                    f"match, {', '.join(parts)}; its git tree id is {report.tree_id or 'not computable'}, "
                    f"not the release's {RELEASE_TREE}.")
    data.update(summary=sentence, differences=differences,
                release_url=f"https://github.com/computerhistory/AlexNet-Source-Code/tree/{RELEASE_COMMIT}",
                swh_dir=SWH_DIR, swh_rev=SWH_REV)
    return data


# -- 3. experiments ---------------------------------------------------------------------------------
def _size(values: list[int]) -> str:
    return "x".join(str(v) for v in values)


def _definition(f: dict[str, Any]) -> dict[str, Any]:
    builds = []
    for b in f["builds"]:
        engine = b.get("engine") or {}
        builds.append({
            "input": _size(b["image_size"]), "family": b["profile_description"],
            "towers": len(b["gpus"]) if b["gpus"] is not None else None, "gpus": b["gpus"],
            "layers": b["layers"], "parameters": b["parameters"],
            "parameters_incomplete": bool(b["parameters_incomplete"]),
            "release_reader": "accepted" if b["strict_ok"] else f"rejected: {b['strict_error']}",
            "lenient": None if b["strict_ok"] else ("reads" if b["lenient_ok"] else f"fails: {b['lenient_error']}"),
            "runs_here": bool(engine.get("trains")), "engine": engine.get("verdict", "not assessed"),
        })
    return {"path": f["path"], "kind": "layers", "bytes": f["bytes"], "sha256": f["sha256"],
            "parse_error": f["parse_error"], "builds": builds}


def _parameters(f: dict[str, Any]) -> dict[str, Any]:
    checks = []
    for c in f["checks"]:
        engine = c.get("engine") or {}
        checks.append({"definition": c["definition"], "input": _size(c["image_size"]),
                       "release_reader": "accepted" if c["strict_ok"] else f"rejected: {c['strict_error']}",
                       "runs_here": bool(engine.get("trains")),
                       "engine": engine.get("verdict", "not assessed") if engine else "not assessed"})
    return {"path": f["path"], "kind": "params", "bytes": f["bytes"], "sha256": f["sha256"],
            "parse_error": f["parse_error"], "pairs_with": f["pairs_with"], "checks": checks,
            "runs": f["runs"],
            "results": [{"kind": r["kind"], "run": r.get("run"), "nll": r["nll"], "top1": r["top1"],
                         "topk": r["topk"]} for r in f["recorded_results"]],
            "events": [{"epoch": e["epoch"], "kind": e["kind"], "description": e["description"],
                        "run": e.get("run")} for e in f["events"]],
            "lr_changes": [{"epoch": e["epoch"], "run": e.get("run"), "change": c["text"]}
                           for e in f["events"] for c in e["changes"] if c["kind"] == "lr-change"]}


_RUN_DATE = re.compile(r"^(\d{4}-\d\d-\d\d)_(\d\d)\.(\d\d)\.(\d\d)")


def run_date(run: str) -> str | None:
    """'2012-09-13 03:43:56' from a checkpoint folder's name, as the driver stamped it."""
    m = _RUN_DATE.match(run)
    return f"{m.group(1)} {m.group(2)}:{m.group(3)}:{m.group(4)}" if m else None


def lineage(copy: Path, params_files: list[str]) -> list[dict[str, Any]]:
    """Which run went on from which. A parameter file's notes name its own run first, then other runs;
    those dated before its own (a backup's ``.bak`` is its run) are where it started from or what it
    continued. Each is traced to the parameter file whose own run it was, where this copy holds one."""
    notes = {rel: decode_notes((copy / rel).read_bytes().decode("latin-1")) for rel in params_files}
    owner: dict[str, str] = {}
    for rel, n in notes.items():
        if n.runs:
            owner.setdefault(n.runs[0], rel)
    links = []
    for rel, n in notes.items():
        if not n.runs or run_date(n.runs[0]) is None:
            continue
        run = n.runs[0]
        earlier: list[str] = []
        for other in list(n.runs[1:]) + [r.removesuffix(".bak") for r in n.refs]:
            date = run_date(other)
            if other != run and other not in earlier and date is not None and date < run_date(run):
                earlier.append(other)
        for other in earlier:
            links.append({"run": run, "run_date": run_date(run), "params": rel, "from_run": other,
                          "from_run_date": run_date(other),
                          "from_params": owner.get(other) if owner.get(other) != rel else None})
    links.sort(key=lambda link: (link["run_date"], link["from_run_date"]))
    return links


def _paper(copy: Path, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The paper's network: its layers (for the diagram) and its recorded results beside the paper's."""
    definition, params = copy / PAPER_DEFINITION, copy / PAPER_PARAMS
    net = None
    why = f"this copy lacks {PAPER_DEFINITION} or {PAPER_PARAMS}"
    if definition.is_file() and params.is_file():
        try:
            net, _ = load(str(definition), str(params))
            source = f"this copy's {PAPER_DEFINITION}"
        except ConfigError as exc:
            why = f"this copy's {PAPER_DEFINITION} cannot be read ({exc})"
    if net is None:
        source = f"the project's own rewrite of the paper's network (paper-2012), because {why}"
        bundled = networks.bundled("paper-2012")
        net, _ = load(str(bundled.layers), str(bundled.params))
    layers = [{"name": l.name, "type": l.type, "gpu": l.gpu, "shape": list(l.shape) if l.shape else None,
               "outputs": l.outputs, "inputs": list(l.inputs), "weights": int(l.weight_count),
               "neuron": l.neuron} for l in net.layers.values() if not l.neuron_of]
    table = []
    for row in PAPER_TABLE:
        f = files.get(row["params"])
        found = [r for r in (f or {}).get("results", []) if r["kind"] == row["result_kind"]]
        recorded = {"top1": found[0]["top1"], "top5": found[0]["topk"], "run": found[0]["run"]} if found else None
        table.append({**row, "recorded": recorded,
                      "note": None if f else f"{row['params']} is not in this copy"})
    return {"definition": PAPER_DEFINITION, "drawn_from": source, "parameters": int(net.parameters),
            "layers": layers, "results": table}


def experiments(copy: Path) -> dict[str, Any]:
    """Every definition and parameter file of ``catalog``, the lineage of the runs, the paper's network."""
    catalog = build_catalog(copy, lambda net, rebuild: assess(net, rebuild).to_dict())
    entries = [_definition(f) if f["kind"] == "layers" else _parameters(f) for f in catalog["files"]]
    by_path = {e["path"]: e for e in entries}
    params = [e["path"] for e in entries if e["kind"] == "params"]
    counts = {"definition_files": len(entries) - len(params), "parameter_files": len(params),
              "run_here": sum(1 for e in entries if e["kind"] == "layers" and any(b["runs_here"] for b in e["builds"]))}
    return {"counts": counts, "files": entries, "lineage": lineage(copy, params), "paper": _paper(copy, by_path)}


# -- 4. replay ---------------------------------------------------------------------------------------
_BATCH_LINE = re.compile(r"^(\d+)\.(\d+)\.\.\. (\S+):\s+([-\d.eE+]+), ([-\d.eE+]+)")
_TEST_LINE = re.compile(r"^Test output: (\S+):\s+([-\d.eE+]+), ([-\d.eE+]+)")


def learning_curves(log_text: str) -> dict[str, list[list[float]]]:
    """From the driver's log (driver.md §C.4): per training batch [batches done, cost, error], and per
    test [batches done, cost, error]. A test counts where a training batch precedes it: the test of
    ``--test-only`` after "Resumed from" is the final result, not a point of the curve."""
    train: list[list[float]] = []
    test: list[list[float]] = []
    last_batch: int | None = None
    for line in log_text.splitlines():
        if line.startswith("Resumed from"):
            last_batch = None
        m = _BATCH_LINE.match(line)
        if m:
            train.append([len(train) + 1, float(m.group(4)), float(m.group(5))])
            last_batch = len(train)
            continue
        m = _TEST_LINE.match(line)
        if m and last_batch is not None:
            test.append([last_batch, float(m.group(2)), float(m.group(3))])
            last_batch = None
    return {"train": train, "test": test}


def first_layer_filters(arrays: dict[str, np.ndarray], net) -> tuple[str, np.ndarray] | None:
    """(layer, filters as (F, K, K, 3) in [0, 1]) of the first conv layer reading the 3-channel image."""
    for layer in net.layers.values():
        key = f"{layer.name}/weights/0"
        if layer.type != "conv" or key not in arrays:
            continue
        weights = np.asarray(arrays[key], dtype=np.float64)  # (Cg*K*K, F), channel-major rows
        rows, count = weights.shape
        if rows % 3:
            continue
        size = int(round((rows // 3) ** 0.5))
        if 3 * size * size != rows:
            continue
        tiles = weights.T.reshape(count, 3, size, size).transpose(0, 2, 3, 1)
        low = tiles.min(axis=(1, 2, 3), keepdims=True)
        span = np.maximum(tiles.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
        return layer.name, (tiles - low) / span
    return None


def environment() -> dict[str, Any]:
    """The machine, compiler, BLAS and package versions of this process."""
    info = build_info()
    packages = {}
    for name in ("alexnet-replay", "numpy", "torch", "matplotlib", "scikit-learn", "Pillow", "rocrate"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"machine": platform.machine(), "system": f"{platform.system()} {platform.release()}",
            "processor": platform.processor() or None, "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "compiler": info["cxx_compiler"], "flags": info["cxx_flags"],
            "build_type": info["build_type"], "blas": info["blas"], "threads": info["threads"],
            "cuda": (f"{info['cuda_compiler']}, {info['cuda_devices']} device(s)" if info["cuda_compiled"]
                     else "not compiled"),
            "packages": packages}


def parity_summary(report: ParityReport, shown: str) -> dict[str, Any]:
    worst = worst_metric(report.metrics)
    per_layer = []
    for name in report.layers:
        mine = [m for m in report.metrics if m.layer == name]
        if mine:
            w = worst_metric(mine)
            per_layer.append({"layer": name, "comparisons": len(mine), "passed": all(m.passed for m in mine),
                              "worst": w.quantity, "tolerance_used": _finite(w.tolerance_used)})
    return {"verdict": verdict_sentence(report), "passed": bool(report.passed), "comparisons": len(report.metrics),
            "failures": len(report.failures()), "network": Path(report.network).name,
            "minibatch": report.minibatch, "steps": report.steps, "device": report.device,
            "worst": None if worst is None else {"layer": worst.layer, "quantity": worst.quantity,
                                                  "tolerance_used": _finite(worst.tolerance_used)},
            "per_layer": per_layer, "report": shown}


def _finite(v: float) -> float | str:
    return float(v) if np.isfinite(v) else str(v)


def _near(folder: Path, *names: str) -> Path | None:
    """`names` under the run folder or one of the two folders above it (where demo and schedule write)."""
    for base in (folder, folder.parent, folder.parent.parent):
        candidate = base.joinpath(*names)
        if candidate.is_file():
            return candidate
    return None


def _files_under(folder: Path, shown_base: Path | None, role: str, root: Path) -> list[dict[str, Any]]:
    """Every file under `folder`, shown relative to `root` (the dossier) or else by absolute path."""
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        shown = path.relative_to(root).as_posix() if shown_base is not None else str(path.resolve())
        out.append(file_entry(path, shown, role))
    return out


def replay_demo(staging: Path, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the demo into ``staging/replay``; (facts, assets) where assets hold arrays for the page."""
    folder = staging / "replay"
    summary = run_demo(folder, quick=quick, quiet=True)
    checkpoint = Path(summary["checkpoint"])
    checkpoint = checkpoint if checkpoint.is_absolute() else folder / checkpoint
    facts, assets = _replay_common(checkpoint, (folder / "log.txt").read_text(encoding="utf-8"))
    report = report_from_dict(json.loads((folder / "parity" / "report.json").read_text(encoding="utf-8")))
    facts.update(
        mode="demo", quick=quick, epochs=summary["epochs"], seconds=summary["seconds"],
        description=("The demo: the project's CIFAR-size network trained on scikit-learn's handwritten digits "
                     f"for {summary['epochs']} epoch(s), tested, and compared with the PyTorch port."),
        test={"cases_tested": "data_batch_6", "cost": summary["test_logprob"], "error": summary["test_error"],
              "accuracy": summary["test_accuracy"]},
        parity=parity_summary(report, "replay/parity/report.html"),
        inputs=_files_under(folder / "data", folder, "input", staging),
        outputs=[e for e in _files_under(folder, folder, "output", staging)
                 if not e["path"].startswith("replay/data/")])
    assets["parity_report"] = report
    return facts, assets


def replay_run(staging: Path, run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Describe an existing training run folder (its newest checkpoint, its log and parity report where
    they lie beside it; else the parity check runs now, into ``staging/replay/parity``)."""
    if not run.is_dir():
        raise ReplayError(f"{run}: no such run folder (give the folder of a training run, which holds its "
                          "E.B.npz checkpoints)")
    checkpoint = newest_checkpoint(run)
    log = _near(run, "log.txt")
    facts, assets = _replay_common(checkpoint, log.read_text(encoding="utf-8") if log else "")
    meta = assets["meta"]
    state = meta.get("state", {})
    last = (state.get("last_test") or {})
    cost = next(iter(last.values()), None)
    found = _near(run, "parity", "report.json")
    if found is not None:
        report = report_from_dict(json.loads(found.read_text(encoding="utf-8")))
        shown = str(found.resolve())
    else:
        report = run_parity(meta["layers_file"], meta.get("params_file"), minibatch=3, steps=2, seed=0)
        write_report(report, staging / "replay" / "parity")
        shown = "replay/parity/report.html"
    inputs = [file_entry(Path(p), str(Path(p).resolve()), "input")
              for p in (meta.get("layers_file"), meta.get("params_file")) if p and Path(p).is_file()]
    data_path = (state.get("options") or {}).get("data_path")
    if data_path and Path(data_path).is_dir():
        inputs += _files_under(Path(data_path), None, "input", staging)
    outputs = _files_under(run, None, "output", staging)
    if log is not None:
        outputs.append(file_entry(log, str(log.resolve()), "output"))
    if found is None:
        outputs += _files_under(staging / "replay" / "parity", staging, "output", staging)
    else:
        outputs += [file_entry(p, str(p.resolve()), "output") for p in sorted(found.parent.iterdir()) if p.is_file()]
    facts.update(
        mode="run", quick=False, epochs=state.get("epoch"), seconds=None,
        description=f"The training run in {run.resolve()}, described from its newest checkpoint "
                    f"{checkpoint.name}" + (f" and its log {log.resolve()}" if log
                                            else " (no log.txt found beside it)"),
        test=None if cost is None else {"cases_tested": (state.get("options") or {}).get("test_range"),
                                        "cost": cost[0], "error": cost[1], "accuracy": 1.0 - cost[1]},
        parity=parity_summary(report, shown), inputs=inputs, outputs=outputs)
    facts["environment"]["note"] = ("The machine that trained the run is not recorded in its checkpoints; these "
                                     "are the versions of the machine that built this dossier"
                                     + (" and ran the parity check." if found is None else "."))
    assets["parity_report"] = report
    return facts, assets


def _replay_common(checkpoint: Path, log_text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    meta, arrays = read_checkpoint(checkpoint)
    net, _ = load(meta["layers_file"], meta.get("params_file"), image_size=tuple(meta["image_size"]))
    filters = first_layer_filters(arrays, net)
    curves = learning_curves(log_text)
    facts = {
        "network": Path(meta["layers_file"]).name,
        "params": Path(meta["params_file"]).name if meta.get("params_file") else None,
        "image_size": _size(meta["image_size"]), "parameters": int(net.parameters),
        "checkpoint": checkpoint.name, "curves": curves,
        "filters": None if filters is None else {"layer": filters[0], "count": int(filters[1].shape[0]),
                                                 "size": int(filters[1].shape[1])},
        "environment": environment(),
    }
    return facts, {"meta": meta, "filters": filters}


# -- 5. commands ------------------------------------------------------------------------------------
def commands(copy: Path, out: Path, run: Path | None, quick: bool) -> list[dict[str, str]]:
    """The commands that reproduce each section."""
    replay = (f"alexnet-replay dossier {copy} --out OTHER --run {run}" if run is not None
              else "alexnet-replay demo" + (" --quick" if quick else "") + " --out OTHER")
    return [
        {"section": "Identity", "command": f"alexnet-replay verify {copy} --verbose",
         "shows": "every file against the manifest, the git tree id and the Software Heritage ids"},
        {"section": "Identity", "command": f"cp -r {copy} /tmp/copy-check && cd /tmp/copy-check && git init -q "
                                           "&& git add -A && git write-tree",
         "shows": f"the copy's git tree id, without this project and without touching the copy (the release's is "
                  f"{RELEASE_TREE})"},
        {"section": "Experiments", "command": f"alexnet-replay catalog {copy} --json",
         "shows": "every configuration file: family, input, parameters, verdicts, recorded results"},
        {"section": "Experiments",
         "command": f"alexnet-replay show-net {copy}/{PAPER_DEFINITION} {copy}/{PAPER_PARAMS}",
         "shows": "the paper's network layer by layer"},
        {"section": "Replay today", "command": replay,
         "shows": "a new run of the same replay (the numbers of a new run may differ in the last digits "
                  "where threads sum in another order)"},
        {"section": "Replay today", "command": "alexnet-replay parity cifar-18pct --minibatch 3 --steps 2 "
                                               "--report OTHER/parity",
         "shows": "the engine against the PyTorch port, layer by layer"},
        {"section": "This folder", "command": f"cd {out} && sha256sum -c SHA256SUMS",
         "shows": "every file of this dossier against the checksum recorded for it (also in ro-crate-metadata.json)"},
    ]
