"""``dossier.html``: one self-contained page drawn from the dossier's facts.

Everything the page says comes from the dict that is also written as dossier.json
(:mod:`.facts`); the page only adds pictures drawn from it (SVG, by hand) and from the
replay's arrays (the first layer's filters as a PNG, the parity plots). No script, font,
style sheet or image is fetched: CSS is inline, images are ``data:`` URIs, so the page
reads the same from ``file://``, from an archive and on paper.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
from PIL import Image

from ..modernize.parity.report import ParityReport, plot_png

e = html.escape

_CSS = """
body{font-family:Georgia,'Times New Roman',serif;max-width:62em;margin:1.5em auto;padding:0 1em;color:#111;
line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #333;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #aaa;padding:2px 6px;
vertical-align:top;text-align:left}th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,.h{font-family:'DejaVu Sans Mono',monospace;font-size:.85em;word-break:break-all}
.ok{background:#e6f4e6}.bad{background:#f8d7d7}.missing{background:#fdf0d5}
.verdict{font-size:1.1em;padding:.5em .8em;border-left:6px solid #176117;background:#eef7ee}
.verdict.no{border-color:#a01010;background:#fbeaea}
details{margin:.4em 0}summary{cursor:pointer}figure{margin:1em 0}figcaption{font-size:.85em;color:#444}
.toc a{margin-right:1em}svg{max-width:100%;height:auto}
@media print{body{max-width:none;margin:0}details{display:block}details>summary{display:none}
h2{page-break-before:always}h2#identity{page-break-before:avoid}a{color:inherit;text-decoration:none}}
"""


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return e(str(v))


def _table(head: list[str], rows: list[list[str]], cls: list[str] | None = None, ident: str = "") -> str:
    out = [f"<table{f' id={ident!r}' if ident else ''}><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for i, row in enumerate(rows):
        c = f" class='{cls[i]}'" if cls and cls[i] else ""
        out.append(f"<tr{c}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return "".join(out) + "</table>"


# -- pictures ------------------------------------------------------------------------------------------
def line_chart(series: dict[str, list[tuple[float, float]]], title: str, ylabel: str, xlabel: str,
               width: int = 560, height: int = 260) -> str:
    """A small SVG line chart; each series is [(x, y)]. Points alone where a series has one."""
    left, right, top, bottom = 60, 130, 28, 42
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    if not xs:
        return f"<p>{e(title)}: no points recorded.</p>"
    x0, x1 = min(xs), max(xs)
    y0, y1 = 0.0, max(ys) * 1.05 or 1.0
    x1 = x1 if x1 > x0 else x0 + 1
    w, h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * w

    def py(y: float) -> float:
        return top + h - (y - y0) / (y1 - y0) * h

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' role='img' aria-label='{e(title)}'>",
             f"<text x='{left}' y='16' font-size='13' font-family='sans-serif'>{e(title)}</text>",
             f"<rect x='{left}' y='{top}' width='{w}' height='{h}' fill='none' stroke='#444'/>"]
    for k in range(5):
        y = y0 + (y1 - y0) * k / 4
        parts.append(f"<line x1='{left}' x2='{left + w}' y1='{py(y):.1f}' y2='{py(y):.1f}' stroke='#ddd'/>"
                     f"<text x='{left - 4}' y='{py(y) + 4:.1f}' font-size='10' text-anchor='end' "
                     f"font-family='sans-serif'>{y:.3g}</text>")
    integers = all(float(x).is_integer() for x in xs)
    ticks = sorted({round(x0 + (x1 - x0) * k / 4) for k in range(5)}) if integers else \
        [x0 + (x1 - x0) * k / 4 for k in range(5)]
    for x in ticks:
        parts.append(f"<text x='{px(x):.1f}' y='{top + h + 14}' font-size='10' text-anchor='middle' "
                     f"font-family='sans-serif'>{x:.3g}</text>")
    parts.append(f"<text x='{left + w / 2}' y='{height - 6}' font-size='11' text-anchor='middle' "
                 f"font-family='sans-serif'>{e(xlabel)}</text><text x='14' y='{top + h / 2}' font-size='11' "
                 f"font-family='sans-serif' transform='rotate(-90 14 {top + h / 2})' text-anchor='middle'>"
                 f"{e(ylabel)}</text>")
    colours = ["#1f5fa8", "#c05a00", "#2c8a2c", "#8a2c8a"]
    for i, (name, pts) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        if len(pts) > 1:
            parts.append(f"<polyline points='{coords}' fill='none' stroke='{colour}' stroke-width='1.6'/>")
        parts += [f"<circle cx='{px(x):.1f}' cy='{py(y):.1f}' r='3' fill='{colour}'/>" for x, y in pts
                  if len(pts) <= 40]
        ly = top + 14 + 16 * i
        parts.append(f"<line x1='{left + w + 10}' x2='{left + w + 28}' y1='{ly}' y2='{ly}' stroke='{colour}' "
                     f"stroke-width='2'/><text x='{left + w + 32}' y='{ly + 4}' font-size='11' "
                     f"font-family='sans-serif'>{e(name)}</text>")
    return "".join(parts) + "</svg>"


def _rows_of(layers: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows of the diagram: a layer and its twin on the other tower share a row."""
    names = {l["name"] for l in layers}
    rows: list[list[dict[str, Any]]] = []
    where: dict[str, int] = {}
    for l in layers:
        stem = l["name"][:-1]
        twin = stem + ("a" if l["name"].endswith("b") else "")
        if l["name"].endswith("b") and twin in names and twin in where:
            rows[where[twin]].append(l)
            where[l["name"]] = where[twin]
        else:
            where[l["name"]] = len(rows)
            rows.append([l])
    return rows


def architecture_svg(layers: list[dict[str, Any]], title: str) -> str:
    """The two towers of a network, per layer its type, output size and weights; lines follow inputs."""
    rows = _rows_of(layers)
    box_w, box_h, gap, width = 230, 34, 14, 640
    height = 40 + len(rows) * (box_h + gap)
    centre = {0: width * 0.27, 1: width * 0.73}
    pos: dict[str, tuple[float, float]] = {}
    boxes = []
    for r, row in enumerate(rows):
        y = 36 + r * (box_h + gap)
        for l in row:
            cx = centre.get(l["gpu"], width / 2) if len(row) > 1 or l["gpu"] in (0, 1) and len(
                [x for x in layers if x["name"][:-1] == l["name"][:-1]]) > 1 else width / 2
            pos[l["name"]] = (cx, y)
            shape = "x".join(map(str, l["shape"])) if l["shape"] else str(l["outputs"])
            weights = f", {l['weights']:,} weights" if l["weights"] else ""
            neuron = f" +{l['neuron']}" if l.get("neuron") else ""
            fill = {"conv": "#dbe8f7", "fc": "#f7e7d0", "pool": "#e8e8e8", "data": "#f2f2f2"}.get(l["type"], "#f4f4f4")
            boxes.append(f"<rect x='{cx - box_w / 2:.1f}' y='{y}' width='{box_w}' height='{box_h}' rx='4' "
                         f"fill='{fill}' stroke='#555'/><text x='{cx:.1f}' y='{y + 14}' font-size='11' "
                         f"text-anchor='middle' font-family='sans-serif' font-weight='bold'>{e(l['name'])} "
                         f"({e(l['type'])}{e(neuron)})</text><text x='{cx:.1f}' y='{y + 28}' font-size='10' "
                         f"text-anchor='middle' font-family='sans-serif'>{e(shape)}{e(weights)}</text>")
    base = {l["name"]: l["name"] for l in layers}
    lines = []
    for l in layers:
        for source in l["inputs"]:
            source = source[:-len("_neuron")] if source.endswith("_neuron") else source
            if base.get(source) in pos and l["name"] in pos:
                (x1, y1), (x2, y2) = pos[source], pos[l["name"]]
                lines.append(f"<line x1='{x1:.1f}' y1='{y1 + box_h}' x2='{x2:.1f}' y2='{y2}' stroke='#777' "
                             "stroke-width='1'/>")
    head = (f"<text x='{width / 2}' y='18' font-size='13' text-anchor='middle' font-family='sans-serif'>{e(title)}"
            f"</text><text x='{centre[0]}' y='32' font-size='11' text-anchor='middle' font-family='sans-serif'>"
            f"tower a (GPU 0)</text><text x='{centre[1]}' y='32' font-size='11' text-anchor='middle' "
            f"font-family='sans-serif'>tower b (GPU 1)</text>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} "
            f"{height}' role='img' aria-label='{e(title)}'>{head}{''.join(lines)}{''.join(boxes)}</svg>")


def filters_png(tiles: np.ndarray, scale: int = 8, columns: int = 8) -> str:
    """The filters (F, K, K, 3) in [0, 1] as one PNG grid, base64."""
    count, size = tiles.shape[0], tiles.shape[1]
    rows = -(-count // columns)
    cell = size * scale + 2
    canvas = np.full((rows * cell + 2, columns * cell + 2, 3), 255, np.uint8)
    for i in range(count):
        r, c = divmod(i, columns)
        tile = np.repeat(np.repeat((tiles[i] * 255).round().astype(np.uint8), scale, 0), scale, 1)
        canvas[2 + r * cell: 2 + r * cell + size * scale, 2 + c * cell: 2 + c * cell + size * scale] = tile
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# -- sections --------------------------------------------------------------------------------------------
def _identity(d: dict[str, Any]) -> str:
    ok = d["ok"]
    out = [f"<h2 id='identity'>1. Identity</h2><p class='verdict{'' if ok else ' no'}' id='identity-summary'>"
           f"{e(d['summary'])}</p>"]
    counts = d["counts"]
    out.append(_table(["release commit", "release tree", "this copy's tree", "Software Heritage"], [[
        f"<code>{e(d['release']['commit'])}</code>", f"<code>{e(d['expected_tree_id'])}</code>",
        f"<code>{e(d['tree_id'] or 'not computed')}</code> ({'matches' if d['tree_matches'] else 'differs'})",
        f"<code>{e(d['swh_dir'])}</code> (tree)<br><code>{e(d['swh_rev'])}</code> (commit)"]]))
    out.append("<p>Files: " + ", ".join(f"{counts[k]} {k}" for k in counts) + f" (the manifest lists "
               f"{d['manifest_files']}). Copy examined: <code>{e(d['folder'])}</code>.</p>")
    if d["differences"]:
        rows, cls = [], []
        for x in d["differences"]:
            detail = []
            if "expected_sha256" in x:
                detail.append(f"release: {x['expected_bytes']:,} bytes, sha256 <code>{x['expected_sha256']}</code>")
            if "found_sha256" in x:
                detail.append(f"this copy: {x['found_bytes']:,} bytes, sha256 <code>{x['found_sha256']}</code>")
            rows.append([f"<code>{e(x['path'])}</code>", e(x["status"]), e(x["reason"] or ""), "<br>".join(detail)])
            cls.append("missing" if x["status"] == "missing" else "bad")
        out.append("<h3>What differs from the release</h3>" + _table(["file", "status", "what", "checksums"], rows,
                                                                    cls, "differences"))
    rows = [[f"<code>{e(f['path'])}</code>", e(f["status"])] for f in d["files"]]
    cls = ["ok" if f["status"] == "ok" else "missing" if f["status"] == "missing" else "bad" for f in d["files"]]
    out.append(f"<details><summary>Every file of the manifest ({len(rows)})</summary>"
               + _table(["file", "status"], rows, cls, "manifest-files") + "</details>")
    return "".join(out)


def _contents(d: dict[str, Any]) -> str:
    out = ["<h2 id='contents'>2. Contents</h2>", f"<p>{e(d['summary'])}</p>"]
    out += [f"<h3>{e(p['part'])}</h3><p>{e(p['what'])}</p>" for p in d["parts"]]
    c = d["in_this_copy"]
    out.append(f"<p>This copy holds {c['definition_files']} layer-definition files and {c['parameter_files']} "
               "layer-parameter files.</p>")
    out.append("<h3>What is missing from it</h3><ul>"
               + "".join(f"<li><b>{e(m['item'])}.</b> {e(m['why'])}</li>" for m in d["missing"]) + "</ul>")
    out.append("<h3>Why it cannot run as shipped</h3><ul>" + "".join(f"<li>{e(t)}</li>" for t in d["cannot_run"])
               + "</ul>")
    out.append(f"<p>{e(d['how_this_project_runs_it'])} (Sources: the project's specification, "
               f"{e('; '.join(d['sources']))}.)</p>")
    return "".join(out)


def _experiments(d: dict[str, Any]) -> str:
    c = d["counts"]
    out = [f"<h2 id='experiments'>3. The experiments</h2><p>{c['definition_files']} layer-definition files and "
           f"{c['parameter_files']} layer-parameter files; this project trains {c['run_here']} of the definition "
           "files as they are.</p>"]
    paper = d["paper"]
    out.append(f"<h3 id='paper'>The paper's network: <code>{e(paper['definition'])}</code></h3>"
               f"<p>{paper['parameters']:,} trainable parameters; drawn from {e(paper['drawn_from'])}.</p>")
    out.append(f"<figure>{architecture_svg(paper['layers'], 'The network of the 2012 paper, two towers')}"
               "<figcaption>Each box: layer name (type, +neuron applied after it), output size "
               "(channels x rows x columns, or values), weights. Lines follow the inputs.</figcaption></figure>")
    rows = []
    for r in paper["results"]:
        rec = r["recorded"]
        rows.append([e(r["experiment"]), f"<code>{e(r['params'])}</code>",
                     _num(rec["top1"]) if rec else e(r["note"] or "-"), _num(rec["top5"]) if rec else "-",
                     _num(r["paper"]["top1"], 3), _num(r["paper"]["top5"], 3)])
    out.append(_table(["experiment", "notes in", "recorded top-1 error", "recorded top-5 error",
                       "paper top-1", "paper top-5"], rows, ident="paper-results"))
    rows, cls = [], []
    for f in d["files"]:
        if f["kind"] != "layers":
            continue
        for b in f["builds"] or [{}]:
            if not b:
                rows.append([f"<code>{e(f['path'])}</code>", "-", "-", "-", "-", e(f["parse_error"] or ""), "-"])
                cls.append("bad")
                continue
            rows.append([f"<code>{e(f['path'])}</code>", e(b["family"]), e(b["input"]),
                         _num(b["towers"]), _num(b["parameters"]) + (" +tree" if b["parameters_incomplete"] else ""),
                         e(b["release_reader"]) + (f"; lenient: {e(b['lenient'])}" if b["lenient"] else ""),
                         ("yes: " if b["runs_here"] else "no: ") + e(b["engine"])])
            cls.append("ok" if b["runs_here"] else "")
    out.append("<h3>Layer-definition files</h3>" + _table(
        ["file", "family", "input", "towers", "parameters", "2012 reader", "runs in this project"], rows, cls,
        "definitions"))
    rows = []
    for f in d["files"]:
        if f["kind"] != "params":
            continue
        results = "<br>".join(f"{e(r['kind'])}: top-1 {_num(r['top1'])}, top-5 {_num(r['topk'])}"
                              + (f" (run {e(r['run'])})" if r["run"] else "") for r in f["results"]) or "-"
        changes = "<br>".join(f"epoch {e(x['epoch'])}: {e(x['change'])}" for x in f["lr_changes"]) or "-"
        runs = "<br>".join(e(r) for r in f["runs"]) or "-"
        verdicts = "<br>".join(f"{e(x['definition'])} {e(x['input'])}: {'runs' if x['runs_here'] else e(x['engine'])}"
                               for x in f["checks"]) or "-"
        rows.append([f"<code>{e(f['path'])}</code>", runs, verdicts, results, changes])
    out.append("<h3>Layer-parameter files: runs, results and learning-rate changes their notes record</h3>"
               + _table(["file", "runs (started)", "with, in this project", "recorded results",
                         "learning-rate changes"], rows, ident="parameters"))
    rows = [[e(x["run"]) + (f" ({e(x['run_date'])})" if x["run_date"] else ""),
             f"<code>{e(x['params'])}</code>", e(x["from_run"]),
             f"<code>{e(x['from_params'])}</code>" if x["from_params"] else "(not the run of a file in this copy)"]
            for x in d["lineage"]]
    out.append("<h3>Lineage: which run went on from which</h3>"
               "<p>A parameter file's notes name its own run first, then earlier runs it started from or "
               "continued.</p>" + _table(["run", "notes in", "from run", "whose notes are in"], rows,
                                         ident="lineage"))
    return "".join(out)


def _replay(d: dict[str, Any], assets: dict[str, Any]) -> str:
    out = [f"<h2 id='replay'>4. Replay today</h2><p>{e(d['description'])}</p>"]
    test = d["test"]
    facts = [["network", f"<code>{e(d['network'])}</code> with <code>{e(d['params'] or '-')}</code>, input "
              f"{e(d['image_size'])}, {d['parameters']:,} parameters"],
             ["checkpoint", f"<code>{e(d['checkpoint'])}</code>"]]
    if test:
        facts.append(["test result", f"error {test['error']:.4f} (accuracy {test['accuracy']:.2%}), cost "
                      f"{test['cost']:.4f} on {e(str(test['cases_tested']))}"])
    if d.get("seconds") is not None:
        facts.append(["time", f"{d['seconds']:.1f} s for the whole replay"])
    out.append(_table(["what", "value"], facts, ident="replay-facts"))
    curves = d["curves"]
    if curves["train"]:
        out.append("<figure>" + line_chart({"training batches": [(p[0], p[2]) for p in curves["train"]],
                                            "tests": [(p[0], p[2]) for p in curves["test"]]},
                                           "Error rate while training", "top-1 error", "batches trained")
                   + line_chart({"training batches": [(p[0], p[1]) for p in curves["train"]],
                                 "tests": [(p[0], p[1]) for p in curves["test"]]},
                                "Cost while training", "-log p per case", "batches trained")
                   + "<figcaption>Learning curves, from the run's log.</figcaption></figure>")
    else:
        out.append("<p>No learning curves: no log of the run was found beside it.</p>")
    if assets.get("filters") is not None and d["filters"]:
        f = d["filters"]
        out.append(f"<figure><img alt='first-layer filters' src='data:image/png;base64,"
                   f"{filters_png(assets['filters'][1])}'><figcaption>The {f['count']} filters of the first layer "
                   f"(<code>{e(f['layer'])}</code>, {f['size']}x{f['size']} pixels, RGB), each stretched to its "
                   "own range.</figcaption></figure>")
    p = d["parity"]
    out.append(f"<h3 id='parity'>Parity: the engine against the PyTorch port</h3><p class='verdict"
               f"{'' if p['passed'] else ' no'}' id='parity-verdict'>{e(p['verdict'])}</p>")
    report: ParityReport | None = assets.get("parity_report")
    if report is not None:
        for group in ("forward", "backward"):
            png = plot_png(report, group)
            if png:
                out.append(f"<figure><img alt='{group}: share of tolerance used per layer' "
                           f"src='data:image/png;base64,{png}'><figcaption>{group}: the share of its tolerance each "
                           "comparison used; 1 is the pass line.</figcaption></figure>")
    rows = [[e(x["layer"]), _num(x["comparisons"]), e(x["worst"]), _share_cell(x["tolerance_used"]),
             "pass" if x["passed"] else "FAIL"] for x in p["per_layer"]]
    out.append(_table(["layer", "comparisons", "closest to its tolerance", "share used", "verdict"], rows,
                      ["ok" if x["passed"] else "bad" for x in p["per_layer"]], "parity-layers"))
    out.append(f"<p>The full report: <code>{e(p['report'])}</code>.</p>")
    env = d["environment"]
    rows = [[k, e(str(env[k]))] for k in ("machine", "system", "processor", "cpus", "python", "compiler", "flags",
                                           "build_type", "blas", "threads", "cuda")]
    rows += [[f"package {e(k)}", e(str(v))] for k, v in env["packages"].items()]
    out.append("<h3>What it ran with</h3>" + (f"<p>{e(env['note'])}</p>" if env.get("note") else "")
               + _table(["what", "version"], rows, ident="environment"))
    for title, key in (("Inputs", "inputs"), ("Outputs", "outputs")):
        rows = [[f"<code>{e(x['path'])}</code>", _num(x["bytes"]), f"<span class='h'>{x['sha256']}</span>"]
                for x in d[key]]
        out.append(f"<h3>{title} ({len(rows)})</h3>" + _table(["file", "bytes", "sha256"], rows, ident=key))
    return "".join(out)


def _share_cell(v: Any) -> str:
    return e(v) if isinstance(v, str) else f"{v:.3g}"


def _commands(rows: list[dict[str, str]]) -> str:
    return ("<h2 id='check'>5. How to check this page</h2><p>Each section can be reproduced with these commands "
            "(alexnet-replay installs with pip from its repository; the checksums need only coreutils).</p>"
            + _table(["section", "command", "shows"], [[e(r["section"]), f"<code>{e(r['command'])}</code>",
                                                          e(r["shows"])] for r in rows], ident="commands"))


def render(dossier: dict[str, Any], assets: dict[str, Any]) -> str:
    """The page, from the facts (`dossier`, as written to dossier.json) and the replay's `assets`."""
    toc = ("<p class='toc'><a href='#identity'>Identity</a><a href='#contents'>Contents</a>"
           "<a href='#experiments'>Experiments</a><a href='#replay'>Replay today</a><a href='#check'>How to check"
           "</a></p>")
    body = (f"<h1>{e(dossier['title'])}</h1><p>Built {e(dossier['created'])} by alexnet-replay "
            f"{e(dossier['built_by']['version'])} with <code>{e(dossier['built_by']['command'])}</code>.</p>{toc}"
            + _identity(dossier["identity"]) + _contents(dossier["contents"]) + _experiments(dossier["experiments"])
            + _replay(dossier["replay"], assets) + _commands(dossier["commands"]))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(dossier['title'])}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_CSS}</style></head>"
            f"<body>{body}</body></html>\n")
