"""A catalog of every cfg file under a folder (``alexnet-replay catalog``).

For a layer-definition file: at each input size the release used for its
family (:mod:`.profiles`), the strict verdict (exactly what the release
accepted) with its reason, the lenient verdict with what it relaxed, the layer
count after ``neuron=`` splitting, the GPUs referenced and the trainable
parameters.

For a layer-parameter file: the definition files it pairs with (by name or by
what its notes say), the strict and lenient verdict of each pairing, and what
its closing notes record (:mod:`.notes`): runs, test results, dated events.

With ``assess`` (the CLI passes ``harness.runnable.assess``), every build and
pairing also says whether this project's engine builds and trains it, and if
not, why (``engine``). This module only reads: the verdict comes from outside.

The JSON shape is documented in ``docs/json-formats.md``; it is plain data
that :func:`build_catalog` returns and the CLI prints.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, ReplayError
from ..readfile import FileProblem, read_regular_file
from .cfgfile import MAX_CFG_BYTES, CfgFile, parse_cfg_text
from .layers import LENIENT, STRICT, DataProfile, Network, build_network
from .notes import Notes, decode_notes, pair_params, release_files
from .params import apply_params
from .profiles import guess_profiles
from .reconstructions import reconstructions

FORMAT = "alexnet-replay catalog"
VERSION = 1


def _build(cfg: CfgFile, profile: DataProfile, mode: str, params: CfgFile | None = None
           ) -> tuple[Network | None, str | None, list[str]]:
    """(network, error, unused parameter sections) for one reading."""
    try:
        net = build_network(cfg, profile, mode)
        unused = apply_params(net, params) if params is not None else []
        return net, None, unused
    except ConfigError as exc:
        return None, str(exc), []


def _reconstruction_texts(net: Network | None) -> list[str]:
    """The `reconstructions` field: what the engine runs as a reconstruction (kernels never published,
    :mod:`.reconstructions`), one text per note; empty when the file is unreadable."""
    return [r.text() for r in reconstructions(net)] if net is not None else []


def _summarise_engine(files: list[dict[str, Any]]) -> None:
    """A definition file's ``engine`` at each size, from its pairings' (the engine needs the
    learning rates of a parameter file): the parameter files it trains with, or why none."""
    pairings: dict[tuple[str, tuple[int, ...]], list[tuple[str, dict[str, Any]]]] = {}
    for f in files:
        for c in f.get("checks", []):
            if c.get("engine"):
                pairings.setdefault((c["definition"], tuple(c["image_size"])), []).append((f["path"], c["engine"]))
    for f in files:
        for b in f.get("builds", []):
            found = pairings.get((f["path"], tuple(b["image_size"])), [])
            trains = [(path, e) for path, e in found if e["trains"]]
            if trains:
                needs = trains[0][1]["needs"]
                names = [Path(path).name + (" (--lenient)" if e["lenient"] else "") for path, e in trains]
                verdict = f"trains with {', '.join(names)}" + (f" (needs {'; '.join(needs)})" if needs else "")
                b["engine"] = {"builds": True, "trains": True, "verdict": verdict, "why": None, "needs": needs,
                               "with": [path for path, _ in trains]}
            elif found:
                path, e = found[0]
                b["engine"] = {"builds": any(e2["builds"] for _, e2 in found), "trains": False,
                               "verdict": f"with {Path(path).name}: {e['verdict']}", "why": e["why"],
                               "needs": e["needs"], "with": []}
            else:
                b["engine"] = {"builds": False, "trains": False, "why": "no parameter file pairs with it",
                               "verdict": "not checked: no layer-parameter file pairs with it (the engine needs "
                                          "its learning rates)", "needs": [], "with": []}


def _profile_fields(profile: DataProfile) -> dict[str, Any]:
    return {"profile": profile.name, "image_size": list(profile.image), "profile_description": profile.description}


Assess = Callable[[Network, Callable[[DataProfile], Network]], dict[str, Any]]


def _engine(assess: Assess | None, net: Network | None, cfg: CfgFile, params: CfgFile | None) -> dict[str, Any]:
    """The `engine` field: the verdict of `assess` on the network read (none when unreadable)."""
    if assess is None:
        return {}
    if net is None:
        return {"engine": None}

    def rebuild(profile: DataProfile) -> Network:
        built, error, _ = _build(cfg, profile, net.mode, params)
        if built is None:
            raise ReplayError(error or "")
        return built

    verdict = {**assess(net, rebuild), "lenient": net.mode == LENIENT}
    if verdict["lenient"]:  # the release rejected the strict reading: say how it is read
        verdict["verdict"] += " (read with --lenient)"
    return {"engine": verdict}


def _definition_builds(cfg: CfgFile, rel: str) -> list[dict[str, Any]]:
    builds = []
    for profile in guess_profiles(cfg, rel):
        strict, strict_error, _ = _build(cfg, profile, STRICT)
        lenient, lenient_error, _ = _build(cfg, profile, LENIENT)
        net = strict or lenient
        builds.append({
            **_profile_fields(profile),
            "strict_ok": strict is not None,
            "strict_error": strict_error,
            "lenient_ok": lenient is not None,
            "lenient_error": lenient_error,
            "lenient_fixes": lenient.fixes if lenient is not None else [],
            "parameters": net.parameters if net else None,
            "parameters_incomplete": net.parameters_incomplete if net else None,
            "weights": net.weights if net else None,
            "biases": net.biases if net else None,
            "layers": len(net.layers) if net else None,
            "neuron_layers_added": net.neuron_layers_added if net else None,
            "gpus": net.gpus if net else None,
            "num_classes": net.profile.num_classes if net else None,
            "warnings": net.warnings if net else [],
            "reconstructions": _reconstruction_texts(net),
        })
    return builds


def _pair_checks(params: CfgFile | ConfigError, pairs: list[tuple[str, str]],
                 definitions: dict[str, CfgFile | None], assess: Assess | None = None) -> list[dict[str, Any]]:
    """Each pairing at each size; an unreadable parameter file fails every pairing."""
    checks = []
    for def_rel, basis in pairs:
        cfg = definitions.get(def_rel)
        if cfg is None:
            continue
        for profile in guess_profiles(cfg, def_rel):
            if isinstance(params, ConfigError):
                strict = lenient = None
                strict_error = lenient_error = str(params)
                unused = lenient_unused = []
            else:
                strict, strict_error, unused = _build(cfg, profile, STRICT, params)
                lenient, lenient_error, lenient_unused = _build(cfg, profile, LENIENT, params)
            checks.append({
                "definition": def_rel, "basis": basis, **_profile_fields(profile),
                "strict_ok": strict is not None, "strict_error": strict_error,
                "lenient_ok": lenient is not None, "lenient_error": lenient_error,
                "lenient_fixes": lenient.fixes if lenient is not None else [],
                "unused_sections": unused if strict is not None else lenient_unused,
                **_engine(assess, strict or lenient, cfg, None if isinstance(params, ConfigError) else params),
                "reconstructions": _reconstruction_texts(strict or lenient),
            })
    return checks


def _notes_fields(notes: Notes) -> dict[str, Any]:
    data = notes.to_dict()
    return {
        "runs": data.get("runs", []),
        "recorded_results": data.get("results", []),
        "events": data.get("events", []),
    }


def _file_facts(data: bytes) -> dict[str, Any]:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _read_all(root: Path, rels: list[str]) -> dict[str, bytes]:
    """Every file's bytes, read once, regular files only and within the cfg reader's limit: a
    FIFO, a device, a dangling link or a folder named like a cfg file is one error naming it."""
    out = {}
    for rel in rels:
        try:
            out[rel] = read_regular_file(root / rel, MAX_CFG_BYTES, "a cfg file")
        except FileProblem as exc:
            raise ReplayError(f"{root / rel}: {exc.reason} (catalog reads every *.cfg file under {root})") from None
    return out


def build_catalog(root: Path, assess: Assess | None = None) -> dict[str, Any]:
    """Catalog every cfg file under `root` (paths in the result are relative to it).
    `assess(network, rebuild)`, when given, fills each build's and pairing's ``engine`` field."""
    if not root.is_dir():
        raise ReplayError(f"{root}: no such folder (give a folder holding .cfg files, "
                          "such as a copy of the release)")
    params_files, def_files = release_files(root)
    raw = _read_all(root, def_files + params_files)
    definitions: dict[str, CfgFile | None] = {}
    files: list[dict[str, Any]] = []
    for rel in def_files:
        entry: dict[str, Any] = {"path": rel, "kind": "layers", **_file_facts(raw[rel])}
        try:
            cfg = parse_cfg_text(raw[rel].decode("latin-1"), rel)
        except ConfigError as exc:
            definitions[rel] = None
            entry.update(parse_error=str(exc), sections=None, builds=[])
        else:
            definitions[rel] = cfg
            entry.update(parse_error=None, sections=len(cfg.section_names()),
                         builds=_definition_builds(cfg, rel))
        files.append(entry)

    notes = {rel: decode_notes(raw[rel].decode("latin-1")) for rel in params_files}
    for rel in params_files:
        pairs = pair_params(rel, notes[rel], def_files, notes)
        entry = {"path": rel, "kind": "params", **_file_facts(raw[rel]),
                 "pairs_with": [d for d, _ in pairs], "pair_basis": {d: b for d, b in pairs}}
        try:
            cfg: CfgFile | ConfigError = parse_cfg_text(raw[rel].decode("latin-1"), rel)
        except ConfigError as exc:
            cfg = exc
        entry.update(parse_error=str(cfg) if isinstance(cfg, ConfigError) else None,
                     sections=None if isinstance(cfg, ConfigError) else len(cfg.section_names()),
                     checks=_pair_checks(cfg, pairs, definitions, assess))
        entry.update(_notes_fields(notes[rel]))
        files.append(entry)

    if assess is not None:
        _summarise_engine(files)
    # Folder by folder, definition files first, as the spec's catalog lists them.
    files.sort(key=lambda f: (str(Path(f["path"]).parent), f["kind"] != "layers", f["path"]))
    return {"format": FORMAT, "version": VERSION, "root": str(root), "files": files}


# -- text and Markdown views --------------------------------------------------
def _verdict(ok: bool, error: str | None) -> str:
    return "ok" if ok else f"REJECTED: {error}"


def _engine_verdict(entry: dict[str, Any]) -> str:
    """This engine's verdict ('trains', 'does not build: ...'), or '' when the catalog has none."""
    engine = entry.get("engine")
    return engine["verdict"] if engine else ""


def _count(n: int | None, incomplete: bool | None = False) -> str:
    if n is None:
        return "-"
    return f"{n:,}" + (" +tree" if incomplete else "")


def _size(build: dict[str, Any]) -> str:
    return "x".join(str(v) for v in build["image_size"])


def _result_text(result: dict[str, Any]) -> str:
    return (f"{result.get('kind', 'reported')}: nll {result['nll']:.4f}, top-1 {result['top1']:.4f}, "
            f"top-k {result['topk']:.4f}")


def catalog_text(catalog: dict[str, Any]) -> str:
    """A plain-text listing, one block per file."""
    out: list[str] = []
    files = catalog["files"]
    n_defs = sum(1 for f in files if f["kind"] == "layers")
    out.append(f"{catalog['root']}: {n_defs} definition files, {len(files) - n_defs} parameter files\n")
    for f in files:
        out.append(f"\n{f['path']}  ({f['kind']}, {f['bytes']} bytes)\n")
        if f["parse_error"]:
            out.append(f"  unreadable: {f['parse_error']}\n")
        for b in f.get("builds", []):
            out.append(f"  {_size(b):>9}  strict {_verdict(b['strict_ok'], b['strict_error'])}\n")
            if not b["strict_ok"]:
                lenient = "ok" if b["lenient_ok"] else f"fails: {b['lenient_error']}"
                out.append(f"  {'':>9}  lenient {lenient} ({len(b['lenient_fixes'])} fixes)\n")
            if b["parameters"] is not None:
                out.append(f"  {'':>9}  {b['layers']} layers, GPUs {','.join(map(str, b['gpus'])) or '-'}, "
                           f"{_count(b['parameters'], b['parameters_incomplete'])} parameters\n")
            if _engine_verdict(b):
                out.append(f"  {'':>9}  engine: {_engine_verdict(b)}\n")
            out += [f"  {'':>9}  reconstruction: {t}\n" for t in b["reconstructions"]]
        if f["kind"] == "params":
            out.append(f"  pairs with: {', '.join(f['pairs_with']) or '(none found)'}\n")
            for c in f.get("checks", []):
                lenient = "" if c["strict_ok"] else (
                    "; lenient ok" if c["lenient_ok"] else f"; lenient fails: {c['lenient_error']}")
                out.append(f"    {c['definition']} at {_size(c)}: strict "
                           f"{_verdict(c['strict_ok'], c['strict_error'])}{lenient}\n")
                if _engine_verdict(c):
                    out.append(f"      engine: {_engine_verdict(c)}\n")
                else:
                    out += [f"      reconstruction: {t}\n" for t in c["reconstructions"]]
            for r in f["recorded_results"]:
                out.append(f"  result  {_result_text(r)}\n")
            for e in f["events"]:
                out.append(f"  epoch {e['epoch']}: {e['description']}\n")
    return "".join(out)


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def catalog_markdown(catalog: dict[str, Any]) -> str:
    """Two Markdown tables: definition files, then parameter files."""
    out = [f"# Catalog of {catalog['root']}\n\n## Layer-definition files\n\n",
           "| file | input | strict | lenient | layers | GPUs | parameters | this engine |\n",
           "|---|---|---|---|---|---|---|---|\n"]
    for f in catalog["files"]:
        if f["kind"] != "layers":
            continue
        if f["parse_error"]:
            out.append(f"| `{f['path']}` | - | {_md_cell(f['parse_error'])} | - | - | - | - | - |\n")
        for b in f["builds"]:
            out.append("| " + " | ".join([
                f"`{f['path']}`", _size(b), _md_cell(_verdict(b["strict_ok"], b["strict_error"])),
                "ok" if b["lenient_ok"] else _md_cell(b["lenient_error"]),
                str(b["layers"] or "-"), ",".join(map(str, b["gpus"] or [])) or "-",
                _count(b["parameters"], b["parameters_incomplete"]), _md_cell(_engine_verdict(b) or "-")]) + " |\n")
    out += ["\n## Layer-parameter files\n\n",
            "| file | pairs with | strict | this engine | recorded results | events |\n", "|---|---|---|---|---|---|\n"]
    for f in catalog["files"]:
        if f["kind"] != "params":
            continue
        verdicts = "; ".join(sorted({_verdict(c["strict_ok"], c["strict_error"]) for c in f["checks"]})) \
            or _md_cell(f["parse_error"] or "-")
        engine = "<br>".join(f"{c['definition']} at {_size(c)}: {_engine_verdict(c)}" for c in f["checks"]
                             if _engine_verdict(c)) or "-"
        results = "<br>".join(_result_text(r) for r in f["recorded_results"]) or "-"
        events = "<br>".join(f"ep {e['epoch']}: {e['description']}" for e in f["events"]) or "-"
        out.append(f"| `{f['path']}` | {', '.join(f'`{d}`' for d in f['pairs_with']) or '-'} | "
                   f"{_md_cell(verdicts)} | {_md_cell(engine)} | {_md_cell(results)} | {_md_cell(events)} |\n")
    recon = []  # per file (and pairing), what the engine would run as a reconstruction
    for f in catalog["files"]:
        for entry in f.get("builds", []) + f.get("checks", []):
            where = f"`{f['path']}`" + (f" with `{entry['definition']}`" if "definition" in entry else "")
            recon += [f"| {where} | {_size(entry)} | {_md_cell(t)} |\n" for t in entry.get("reconstructions", [])]
    if recon:
        out += ["\n## Reconstructions (kernels never published; docs/fidelity.md)\n\n",
                "| file | input | layer: what (why) |\n", "|---|---|---|\n", *recon]
    return "".join(out)
