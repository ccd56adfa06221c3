"""The parity report: its verdict, where the port first diverges, and its files.

:class:`ParityReport` holds a run's metrics; :func:`write_report` writes it as
``report.json`` (FORMAT and VERSION below; docs/parity.md, "report.json"),
``report.md`` and a self-contained ``report.html`` (inline CSS, plots of the share of its
tolerance each comparison used, per layer, as base64 PNG), each written atomically.
:func:`verdict_sentence` is the verdict in one sentence, the first thing every view says;
:func:`summary_text` is what the CLI prints; :func:`report_from_dict` reads report.json back
(the curator's dossier embeds a report it did not run).
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
            "fault": self.fault, "passed": self.passed, "verdict": verdict_sentence(self),
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


def worst_metric(metrics: list[Metric]) -> Metric | None:
    """The comparison that used the most of its tolerance (a failure before any pass)."""
    return max(metrics, key=lambda m: (not m.passed, m.tolerance_used if np.isfinite(m.tolerance_used) else np.inf),
               default=None)


def _share(used: float) -> str:
    """A share of tolerance for people: '38% of', '2.5 times', 'infinitely more than'."""
    if not np.isfinite(used):
        return "beyond (a non-finite value or an error where none is allowed)"
    if used <= 1:
        return f"{used:.0%} of" if used >= 0.01 else ("none of" if used == 0 else f"{used:.2g} of")
    return f"{used:.3g} times"


def verdict_sentence(report: "ParityReport") -> str:
    """The verdict in one sentence: comparisons made, failures, the worst and its share of tolerance."""
    metrics = report.metrics
    if not metrics:
        return "No comparison was made."
    worst = worst_metric(metrics)
    bad = report.failures()
    where = f"{worst.layer} {worst.quantity}"
    if not bad:
        return (f"PASS: all {len(metrics)} comparisons of the PyTorch port against the engine are within "
                f"tolerance; the closest, {where}, used {_share(worst.tolerance_used)} its tolerance.")
    first = report.first_divergence
    return (f"FAIL: {len(bad)} of {len(metrics)} comparisons of the PyTorch port against the engine are outside "
            f"tolerance; the worst, {where}, used {_share(worst.tolerance_used)} its tolerance; the first "
            f"divergence is at {first.layer} ({first.quantity}).")


def report_from_dict(data: dict[str, Any]) -> "ParityReport":
    """A report read back from report.json (what ``to_dict`` wrote)."""
    if data.get("format") != FORMAT:
        raise ValueError(f"not a parity report (format {data.get('format')!r}, expected {FORMAT!r})")
    floats = {"max_abs", "max_rel", "cosine", "max_ref", "atol", "rtol", "tolerance_used"}
    metrics = [Metric(**{k: float(v) if k in floats else v for k, v in m.items()}) for m in data["metrics"]]
    return ParityReport(data["network"], data["params"], tuple(data["image_size"]), data["minibatch"],
                        data["steps"], data["seed"], data["device"], data["fault"], list(data["layers"]), metrics,
                        dict(data.get("gate_flips", {})), list(data.get("notes", [])),
                        dict(data.get("reconstructions", {})))


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
    lines = [f"# Parity: {Path(report.network).name}", "", f"**{verdict_sentence(report)}**", "",
             f"Image {'x'.join(map(str, report.image_size))}, minibatch {report.minibatch}, {report.steps} steps, "
             f"seed {report.seed}, device {report.device}" + (f", fault {report.fault}" if report.fault else "") + ".",
             "",
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


# Shares of tolerance below this are drawn on the plot's floor: exact results (0) and the
# comparisons whose error is a negligible share of what the table allows.
SHARE_FLOOR = 1e-4
SHARE_CEILING = 1e3  # failures beyond 1000x (and non-finite ones) are drawn here


def plot_points(report: ParityReport, group: str) -> tuple[list[str], dict[str, list[tuple[int, float, bool]]]]:
    """What one plot draws: the group's layers (execution order) and, per series, the points
    (layer index, share of tolerance used, passed). A bit-exact result is 0 (drawn on the floor)."""
    metrics = [m for m in report.metrics if _group(m.quantity) == group]
    layers = [l for l in report.layers if any(m.layer == l for m in metrics)]
    x = {l: i for i, l in enumerate(layers)}
    series: dict[str, list[tuple[int, float, bool]]] = {}
    for m in metrics:
        name = m.quantity.split(":")[-1].split("[")[0]
        used = m.tolerance_used if np.isfinite(m.tolerance_used) else SHARE_CEILING
        series.setdefault(name, []).append((x[m.layer], float(used), bool(m.passed)))
    for pts in series.values():
        pts.sort()
    return layers, series


def plot_png(report: ParityReport, group: str) -> str | None:
    """The share of its tolerance each comparison of one group used, per layer (execution order),
    on a log scale with the pass line at 1, as a base64 PNG. Below the line a comparison passes;
    its distance below is its margin."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    layers, series = plot_points(report, group)
    if not layers:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(layers) + 2), 3.6), dpi=80)
    top = max([2.0] + [p[1] for pts in series.values() for p in pts])
    for name, pts in series.items():
        ys = [min(max(p[1], SHARE_FLOOR), SHARE_CEILING) for p in pts]
        ax.plot([p[0] for p in pts], ys, marker="o", ms=4, lw=1, label=name)
        bad = [(p[0], y) for p, y in zip(pts, ys) if not p[2]]
        if bad:
            ax.plot([b[0] for b in bad], [b[1] for b in bad], "x", color="red", ms=9, mew=2)
    ax.axhline(1.0, color="#a01010", lw=1.5, ls="--")
    ax.text(len(layers) - 0.5, 1.0, "pass line: whole tolerance", color="#a01010", fontsize=7, ha="right",
            va="bottom")
    ax.set_yscale("log")
    ax.set_ylim(SHARE_FLOOR / 2, min(top, SHARE_CEILING) * 3)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("share of tolerance used")
    ax.set_title(f"{group}: below 1 passes (exact or < {SHARE_FLOOR:g} drawn at {SHARE_FLOOR:g}; red x = fail)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the plot, never over a point
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
    verdict = "PASS" if report.passed else "FAIL"
    head = (f"<h1>Parity: {e(Path(report.network).name)}</h1>"
            f"<p id='verdict' class='verdict-{verdict.lower()}'><b>{e(verdict_sentence(report))}</b></p>"
            f"<p>Image {'x'.join(map(str, report.image_size))}, "
            f"minibatch {report.minibatch}, {report.steps} steps, seed {report.seed}, device {e(report.device)}"
            + (f", fault {e(report.fault)}" if report.fault else "") + ". The plots show, per layer, the share of "
            "its tolerance each comparison used: 1 is the pass line, and the distance below it is the margin.</p>")
    plots = ""
    for group in report.quantities():
        png = plot_png(report, group)
        if png:
            plots += (f"<h2>{e(group)}</h2><img alt='{e(group)}: share of tolerance used per layer' "
                      f"src='data:image/png;base64,{png}'>")
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
                                                                               if report.fault else ""),
             verdict_sentence(report)]
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
