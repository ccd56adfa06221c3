"""The parity report: its verdict, where the port first diverges, and its files.

:class:`ParityReport` holds a run's metrics; :func:`write_report` writes it as
``report.json`` (FORMAT and VERSION below; docs/parity.md, "report.json"),
``report.md`` and a self-contained ``report.html`` (inline CSS, plots of the error per
layer as base64 PNG), each written atomically. :func:`summary_text` is what the CLI
prints.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...files import atomic_write_text
from .metrics import Metric
from .tolerances import REL_FLOOR, tolerances

FORMAT = "alexnet-replay parity"
VERSION = 1

QUANTITY_ORDER = ("forward", "forward_e2e", "backward", "backward_e2e", "weight_grad", "bias_grad")


@dataclass
class ParityReport:
    network: str
    params: str | None
    image_size: tuple[int, ...]
    minibatch: int
    steps: int
    seed: int
    device: str
    fault: str | None
    layers: list[str]                       # execution order
    metrics: list[Metric] = field(default_factory=list)
    flips: dict[str, int] = field(default_factory=dict)  # layer -> gradient positions moved by a gate flip
    notes: list[str] = field(default_factory=list)       # what was changed to make the run comparable
    # layer -> what it reconstructs (behaviour whose 2012 kernel was never published, compared like
    # any other layer: original/reconstructions.py)
    reconstructions: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.metrics)

    def failures(self) -> list[Metric]:
        return [m for m in self.metrics if not m.passed]

    @property
    def first_divergence(self) -> Metric | None:
        """Where the port first departs from the engine. Stages in order: isolated forward
        (execution order), isolated backward and G (reverse execution order, the order the
        gradient travels), end-to-end forward, end-to-end backward, then the steps. The
        isolated stages come first because they localise an error: a faulty layer fails
        there alone, while end to end every layer after it fails too."""
        bad = self.failures()
        if not bad:
            return None
        pos = {name: i for i, name in enumerate(self.layers)}
        return min(bad, key=lambda m: _stage_key(m, pos))

    def quantities(self) -> list[str]:
        """Plot groups: forward, backward, step1..stepK."""
        groups = ["forward", "backward"]
        groups += [f"step{k}" for k in range(1, self.steps + 1)]
        return groups

    def to_dict(self) -> dict[str, Any]:
        first = self.first_divergence
        return {
            "format": FORMAT, "version": VERSION,
            "network": self.network, "params": self.params, "image_size": list(self.image_size),
            "minibatch": self.minibatch, "steps": self.steps, "seed": self.seed, "device": self.device,
            "fault": self.fault, "passed": self.passed,
            "first_divergence": None if first is None else {"layer": first.layer, "quantity": first.quantity},
            "rel_floor": REL_FLOOR,
            "tolerances": {k: {"scale": v[0], "rtol": v[1]} for k, v in self._tol().items()},
            "layers": self.layers,
            "gate_flips": self.flips,
            "notes": self.notes,
            "reconstructions": self.reconstructions,
            "metrics": [_jsonable(asdict(m)) for m in self.metrics],
        }

    def _tol(self) -> dict[str, tuple[float, float]]:
        return tolerances(self.device)


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not np.isfinite(v):
            v = str(v)  # JSON has no inf/nan
        out[k] = v
    return out


def _quantity_rank(q: str) -> tuple[int, str]:
    base = q.split("[")[0]
    if base.startswith("step"):
        return (100 + int(base[4:].split(":")[0]), q)
    return (QUANTITY_ORDER.index(base) if base in QUANTITY_ORDER else 50, q)


def _stage_key(m: Metric, pos: dict[str, int]) -> tuple:
    q = m.quantity
    p = pos.get(m.layer, len(pos))
    if q.startswith("step"):
        return (4 + int(q[4:].split(":")[0]), p, q)
    if q == "forward":
        return (0, p, q)
    if q == "forward_e2e":
        return (2, p, q)
    if q.endswith("_e2e") or "_e2e[" in q:
        return (3, -p, q)
    return (1, -p, q)  # backward, weight_grad[i], bias_grad (isolated)


def _group(q: str) -> str:
    if q.startswith("step"):
        return q.split(":")[0]
    return "forward" if q.startswith("forward") or q == "cost" else "backward"


# ---------------------------------------------------------------------------
# Writers


def _fmt(v: float) -> str:
    return f"{v:.3g}" if np.isfinite(v) else str(v)


def report_markdown(report: ParityReport) -> str:
    first = report.first_divergence
    lines = [f"# Parity: {Path(report.network).name}", "",
             f"Image {'x'.join(map(str, report.image_size))}, minibatch {report.minibatch}, {report.steps} steps, "
             f"seed {report.seed}, device {report.device}" + (f", fault {report.fault}" if report.fault else "") + ".",
             "", f"**{'PASS' if report.passed else 'FAIL'}**" +
             (f": first divergence at layer `{first.layer}` ({first.quantity})" if first else ""), "",
             "| layer | quantity | class | max abs | max rel | cosine | tol used | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for m in _ordered(report):
        lines.append(f"| {m.layer} | {m.quantity} | {m.kind} | {_fmt(m.max_abs)} | {_fmt(m.max_rel)} | "
                     f"{m.cosine:.9f} | {_fmt(m.tolerance_used)} | {'pass' if m.passed else 'FAIL'} |")
    if report.flips:
        lines += ["", "Gate flips (gradient positions moved by a near-tie decided differently): " +
                  ", ".join(f"{k}: {v}" for k, v in report.flips.items())]
    if report.reconstructions:
        lines += ["", "Reconstructions (the 2012 kernel was never published; compared like any other layer):", ""]
        lines += [f"- `{name}`: {text}" for name, text in report.reconstructions.items()]
    return "\n".join(lines) + "\n"


def _ordered(report: ParityReport) -> list[Metric]:
    """Forward, backward, then steps; layers in execution order within each."""
    pos = {name: i for i, name in enumerate(report.layers)}
    return sorted(report.metrics, key=lambda m: (_group_rank(m.quantity), pos.get(m.layer, 0),
                                                 _quantity_rank(m.quantity)))


def _group_rank(q: str) -> int:
    g = _group(q)
    return 0 if g == "forward" else 1 if g == "backward" else 1 + int(g[4:])


def _plot(report: ParityReport, group: str) -> str | None:
    """Max rel error per layer (execution order) of one group, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    metrics = [m for m in report.metrics if _group(m.quantity) == group]
    if not metrics:
        return None
    layers = [l for l in report.layers if any(m.layer == l for m in metrics)]
    x = {l: i for i, l in enumerate(layers)}
    floor = 1e-10  # exact (0) drawn here
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(layers) + 2), 3.6), dpi=80)
    series: dict[str, list[tuple[int, float, bool]]] = {}
    for m in metrics:
        name = m.quantity.split(":")[-1].split("[")[0]
        v = m.max_rel if np.isfinite(m.max_rel) else 1e3
        series.setdefault(name, []).append((x[m.layer], max(v, floor), m.passed))
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, lw=1, label=name)
        bad = [p for p in pts if not p[2]]
        if bad:
            ax.plot([p[0] for p in bad], [p[1] for p in bad], "x", color="red", ms=9, mew=2)
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"max rel error (|ref| >= {REL_FLOOR:g} max|ref|)")
    ax.set_title(f"{group} (exact = {floor:g}; red x = fail)")
    ax.legend(fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}td.l{text-align:left}
tr.pass td{background:#e6f6e6}tr.fail td{background:#f9d6d6}h1{font-size:1.3em}
.verdict-pass{color:#176117}.verdict-fail{color:#a01010}img{display:block;margin:0.5em 0}"""


def report_html(report: ParityReport) -> str:
    e = html.escape
    first = report.first_divergence
    head = (f"<h1>Parity: {e(Path(report.network).name)}</h1><p>Image {'x'.join(map(str, report.image_size))}, "
            f"minibatch {report.minibatch}, {report.steps} steps, seed {report.seed}, device {e(report.device)}"
            + (f", fault {e(report.fault)}" if report.fault else "") + ".</p>")
    verdict = "PASS" if report.passed else "FAIL"
    head += f"<p class='verdict-{verdict.lower()}'><b>{verdict}</b>"
    if first:
        head += f": first divergence at layer <code>{e(first.layer)}</code> ({e(first.quantity)})"
    head += "</p>"
    plots = ""
    for group in report.quantities():
        png = _plot(report, group)
        if png:
            plots += f"<h2>{e(group)}</h2><img alt='{e(group)} error per layer' src='data:image/png;base64,{png}'>"
    rows = "".join(
        f"<tr class='{'pass' if m.passed else 'fail'}'><td class='l'>{e(m.layer)}</td><td class='l'>{e(m.quantity)}"
        f"</td><td class='l'>{e(m.kind)}</td><td>{_fmt(m.max_abs)}</td><td>{_fmt(m.max_rel)}</td>"
        f"<td>{m.cosine:.9f}</td><td>{_fmt(m.atol)}</td><td>{_fmt(m.rtol)}</td><td>{_fmt(m.tolerance_used)}</td>"
        f"<td class='l'>{'pass' if m.passed else 'FAIL'}</td></tr>" for m in _ordered(report))
    table = ("<table id='metrics'><tr><th>layer</th><th>quantity</th><th>class</th><th>max abs</th><th>max rel</th>"
             "<th>cosine</th><th>atol</th><th>rtol</th><th>tol used</th><th>verdict</th></tr>" + rows + "</table>")
    if report.reconstructions:
        head += ("<p>Reconstructions (the 2012 kernel was never published; compared like any other layer):</p><ul>"
                 + "".join(f"<li><code>{e(name)}</code>: {e(text)}</li>"
                           for name, text in report.reconstructions.items())
                 + "</ul>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>parity {e(Path(report.network).name)}"
            f"</title><style>{_CSS}</style></head><body>{head}{plots}<h2>All comparisons</h2>{table}</body></html>\n")


def write_report(report: ParityReport, folder) -> dict[str, Path]:
    """report.json, report.md and report.html in `folder` (created), each written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "md": folder / "report.md", "html": folder / "report.html"}
    atomic_write_text(paths["json"], json.dumps(report.to_dict(), indent=1) + "\n")
    atomic_write_text(paths["md"], report_markdown(report))
    atomic_write_text(paths["html"], report_html(report))
    return paths


def summary_text(report: ParityReport) -> str:
    """One line per layer: the worst tolerance use over its comparisons."""
    worst: dict[str, Metric] = {}
    for m in report.metrics:
        if m.layer not in worst or (not m.passed, m.tolerance_used) > (not worst[m.layer].passed,
                                                                       worst[m.layer].tolerance_used):
            worst[m.layer] = m
    lines = [f"parity {Path(report.network).name} {'x'.join(map(str, report.image_size))}, minibatch "
             f"{report.minibatch}, {report.steps} steps, {report.device}" + (f", fault {report.fault}"
                                                                               if report.fault else "")]
    for name in report.layers:
        m = worst.get(name)
        if m is None:
            continue
        lines.append(f"  {'ok  ' if m.passed else 'FAIL'} {name:24s} worst {m.quantity:22s} [{m.kind}] "
                     f"max rel {_fmt(m.max_rel)}, {_fmt(m.tolerance_used)}x tolerance"
                     + (" (reconstruction)" if name in report.reconstructions else ""))
    first = report.first_divergence
    lines.append("all within tolerance" if first is None else
                 f"first diverging layer: {first.layer} ({first.quantity}, max rel {_fmt(first.max_rel)})")
    return "\n".join(lines)
