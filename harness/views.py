"""``alexnet-replay show``: the views of the release's ``shownet.py`` (driver.md §F), as files.

Each view writes a PNG and its numbers beside it (JSON or npz); :func:`write_html` gathers the
PNGs of one call into a self-contained page (images inline as base64). matplotlib draws
headless (the Agg backend; no display is needed or used).

* :func:`show_cost`: training and test values of a cost over the run (:mod:`.history`), with
  the learning-rate changes of a schedule (a resume with other rates) marked.
* :func:`show_filters`: a layer's filters in a grid, one panel per tower (``conv1`` of a
  two-tower network is ``conv1a`` and ``conv1b``, as in the paper's Figure 3), each filter
  stretched to the full grey or colour range on its own (per-filter contrast normalisation).
* :func:`show_preds`: test images with their 5 most probable classes as bars, the true
  class in another colour (the paper's Figure 4, left).
* :func:`show_similar`: test images and the training images nearest to them in a layer's
  output (the paper's Figure 4, right; ``findsimilar.py``).
* :func:`show_features`: a layer's outputs for the images of a range, as a picture.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend
import numpy as np  # noqa: E402

from ..engine import WEIGHT_LAYER_TYPES  # noqa: E402
from ..errors import ReplayError  # noqa: E402
from ..files import atomic_write_bytes, atomic_write_text  # noqa: E402
from .features import batch_images, layer_outputs, nearest, write_features  # noqa: E402
from .history import History  # noqa: E402
from .options import parse_range  # noqa: E402
from .predict import Predictions, predict, ranked  # noqa: E402

__all__ = ["filter_grid", "filter_layers", "show_cost", "show_features", "show_filters", "show_preds",
           "show_similar", "show_views", "write_html"]

DPI = 100
MAX_FILTERS = 16 * 24  # shownet's largest grid


def _save(fig, path: Path) -> Path:
    def write(f) -> None:
        fig.savefig(f, format="png", dpi=DPI)
    try:
        return atomic_write_bytes(path, write)
    finally:
        plt.close(fig)


def _json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1))


# -- cost --------------------------------------------------------------------------------------------

def show_cost(history: History, out: Path, cost: str | None = None, topk: int | None = None) -> dict[str, Path]:
    """cost.png and cost.json: every value of `cost` (default: the first), per training batch
    and per test, against the batches trained; rate changes as vertical lines. `topk`: the
    logreg layer's top-k, for the third value's label."""
    names = history.cost_names()
    if not names:
        raise ReplayError("--cost: this checkpoint holds no cost history (it was written before histories were "
                          "kept, or before its first test)")
    cost = cost or names[0]
    if cost not in names:
        raise ReplayError(f"--cost {cost}: no such cost in the history (costs: {', '.join(names)})")
    width = max(len(e[4][cost]) for e in history.train if cost in e[4]) if history.train else \
        max(len(e[2][cost]) for e in history.test if cost in e[2])
    labels = ["-log p", "top-1 error", f"top-{topk or 'k'} error"] if width == 3 else \
        [f"value {i}" for i in range(width)]
    fig, axes = plt.subplots(width, 1, figsize=(8, 2.4 * width), sharex=True, squeeze=False)
    numbers: dict[str, Any] = {"cost": cost, "values": labels, "train": [], "test": [],
                               "rate_changes": history.rate_changes()}
    for i, ax in enumerate(axes[:, 0]):
        tx, ty, sx, sy = history.series(cost, i)
        ax.plot(tx, ty, lw=0.8, color="tab:blue", label="training batches")
        ax.plot(sx, sy, "o-", ms=3, lw=1.2, color="tab:red", label="tests")
        for ch in numbers["rate_changes"]:
            ax.axvline(ch["batches_done"] + 0.5, color="tab:green", ls="--", lw=1)
            if i == 0:
                text = f"rates x{ch['factor']:g}" if ch["factor"] else "rates changed"
                ax.annotate(text, (ch["batches_done"] + 0.5, 1), xycoords=("data", "axes fraction"),
                            fontsize=7, color="tab:green", ha="left", va="top")
        ax.set_ylabel(labels[i])
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("training batches done")
    fig.suptitle(f"cost '{cost}'")
    fig.tight_layout()
    numbers["train"] = [[e[0], e[1], e[2], e[3], e[4][cost]] for e in history.train if cost in e[4]]
    numbers["test"] = [[e[0], e[1], e[2][cost]] for e in history.test if cost in e[2]]
    return {"png": _save(fig, out / "cost.png"), "json": _json(out / "cost.json", numbers)}


# -- filters -----------------------------------------------------------------------------------------

def filter_layers(config, name: str) -> list[str]:
    """`name`'s weight layers: a comma list, the layer itself, or its towers (``conv1`` →
    ``conv1a``, ``conv1b``, … when no layer is called ``conv1``)."""
    names = [n.strip() for n in name.split(",") if n.strip()]
    out = []
    for n in names:
        layer = config.layers.get(n)
        if layer is not None and layer.type in WEIGHT_LAYER_TYPES:
            out.append(n)
            continue
        towers = [l.name for l in config.layers.values() if l.type in WEIGHT_LAYER_TYPES
                  and l.name[:-1] == n and l.name[-1].isalpha()]
        if not towers:
            have = [l.name for l in config.layers.values() if l.type in ("conv", "local", "fc")]
            raise ReplayError(f"--filters {n}: {config.path} has no weight layer '{n}' nor towers '{n}a', "
                              f"'{n}b' (its conv, local and fc layers: {', '.join(have)})")
        out += towers
    return out


def filter_grid(weights: np.ndarray, channels: int, size: int, limit: int = MAX_FILTERS) -> np.ndarray:
    """(F, size, size, 3) float in [0, 1]: each filter's first `channels` (3: RGB, else channel 0
    in grey) stretched to [0, 1] on its own. `weights` is (C·size², F), channel-major rows."""
    w = np.asarray(weights, dtype=np.float64)
    f = min(w.shape[1], limit)
    filt = w[:, :f].T.reshape(f, channels, size, size)
    img = filt.transpose(0, 2, 3, 1) if channels == 3 else np.repeat(filt[:, 0, :, :, None], 3, axis=3)
    lo = img.min(axis=(1, 2, 3), keepdims=True)
    hi = img.max(axis=(1, 2, 3), keepdims=True)
    return (img - lo) / np.where(hi > lo, hi - lo, 1.0)


def _filter_shape(layer) -> tuple[int, int]:
    a = layer.attrs
    if layer.type in ("conv", "local"):
        return int(a["filterChannels"][0] if isinstance(a["filterChannels"], list) else a["filterChannels"]), \
            int(a["filterSize"][0] if isinstance(a["filterSize"], list) else a["filterSize"])
    rows = layer.weights[0][0]
    side = int(round((rows / 3) ** 0.5))
    if 3 * side * side != rows:
        raise ReplayError(f"--filters {layer.name}: an fc layer's filters are shown when its input is an RGB image "
                          f"(3·S² rows); it has {rows}")
    return 3, side


def show_filters(trained, name: str, out: Path) -> dict[str, Path]:
    """filters.png and filters.npz (the normalised grids, per layer)."""
    layers = filter_layers(trained.config, name)
    grids = {}
    for lname in layers:
        layer = trained.config.layers[lname]
        channels, size = _filter_shape(layer)
        if layer.type == "local":
            raise ReplayError(f"--filters {lname}: a local layer has filters per position; show a conv layer")
        w = trained.weights(lname, 0)
        grids[lname] = filter_grid(w, 3 if channels == 3 else channels, size)
    cols = 8 if max(g.shape[0] for g in grids.values()) <= 64 else 16
    rows_most = -(-max(g.shape[0] for g in grids.values()) // cols)
    fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids), 4.2 * rows_most / cols + 0.5), squeeze=False)
    for ax, (lname, g) in zip(axes[0], grids.items()):
        f, s = g.shape[0], g.shape[1]
        rows = -(-f // cols)
        canvas = np.ones((rows * (s + 1) + 1, cols * (s + 1) + 1, 3))
        for k in range(f):
            r, c = divmod(k, cols)
            canvas[1 + r * (s + 1):1 + r * (s + 1) + s, 1 + c * (s + 1):1 + c * (s + 1) + s] = g[k]
        ax.imshow(canvas, interpolation="nearest")
        gpu = trained.config.layers[lname].gpu
        ax.set_title(f"{lname} (gpu {gpu}): {f} filters {s}x{s}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    paths = {"png": _save(fig, out / "filters.png")}
    paths["npz"] = atomic_write_bytes(out / "filters.npz", lambda fh: np.savez(fh, **grids))
    return paths


# -- predictions -----------------------------------------------------------------------------------

def pick_images(preds: Predictions, count: int, seed: int, only_errors: bool) -> np.ndarray:
    """`count` image indices drawn without replacement (`seed`), in increasing order; with
    `only_errors`, among the top-1 errors (shownet's --only-errors)."""
    pool = np.arange(preds.labels.size)
    if only_errors:
        pool = pool[ranked(preds.probs, 1)[:, 0] != preds.labels]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=min(count, pool.size), replace=False))


def show_preds(preds: Predictions, images: np.ndarray, picks: Sequence[int], out: Path) -> dict[str, Path]:
    """preds.png and preds.json: each picked image with its 5 best classes as bars."""
    picks = list(picks)
    if not picks:
        raise ReplayError("--preds: no image to show (no top-1 error with --only-errors?)")
    cols = min(4, len(picks))
    rows = -(-len(picks) // cols)
    fig, axes = plt.subplots(rows * 2, cols, figsize=(2.5 * cols, 3.5 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [1.2, 1] * rows})
    top = ranked(preds.probs, 5)
    numbers = []
    for k, i in enumerate(picks):
        r, c = divmod(k, cols)
        ax_img, ax_bar = axes[2 * r, c], axes[2 * r + 1, c]
        ax_img.imshow(images[i], interpolation="nearest")
        ax_img.axis("off")
        label = int(preds.labels[i])
        ax_img.set_title(f"true: {_name(preds, label)}", fontsize=8)
        classes = [int(x) for x in top[i]]
        probs = [float(preds.probs[i, x]) for x in classes]
        colours = ["tab:red" if x == label else "tab:blue" for x in classes]
        ax_bar.barh(range(len(classes))[::-1], probs, color=colours)
        ax_bar.set_yticks(range(len(classes))[::-1], [_name(preds, x)[:18] for x in classes], fontsize=7)
        ax_bar.set_xlim(0, 1)
        ax_bar.tick_params(axis="x", labelsize=6)
        numbers.append({"image": int(i), "batch": int(preds.batches[i]), "label": label,
                        "top5": classes, "probs": probs})
    for k in range(len(picks), rows * cols):
        r, c = divmod(k, cols)
        axes[2 * r, c].axis("off")
        axes[2 * r + 1, c].axis("off")
    fig.suptitle("the 5 most probable classes; red: the true class", fontsize=9)
    fig.tight_layout()
    return {"png": _save(fig, out / "preds.png"),
            "json": _json(out / "preds.json", {"source": preds.info.get("source"), "images": numbers})}


def _name(preds: Predictions, c: int) -> str:
    return preds.label_names[c] if 0 <= c < len(preds.label_names) else f"class {c}"


# -- nearest neighbours ---------------------------------------------------------------------------

def show_similar(query: np.ndarray, query_labels: np.ndarray, base: np.ndarray, base_labels: np.ndarray,
                 picks: Sequence[int], k: int, layer: str, out: Path,
                 pictures: Callable[[str, Sequence[int]], np.ndarray], names: Sequence[str] = ()) -> dict[str, Path]:
    """similar.png and similar.json: per picked test image, its `k` nearest training images.
    `pictures("test" or "train", rows)` returns the images of those rows, so that only the
    shown ones are decoded (a training set does not fit in memory as pictures)."""
    picks = list(picks)
    idx, dist = nearest(query[picks], base, k)
    kk = idx.shape[1]
    query_images = pictures("test", picks)
    base_images = pictures("train", idx.ravel().tolist()).reshape(idx.shape + query_images.shape[1:])
    fig, axes = plt.subplots(len(picks), kk + 1, figsize=(1.05 * (kk + 1), 1.15 * len(picks) + 0.3),
                             squeeze=False)

    def label(c: int) -> str:
        return names[c] if 0 <= c < len(names) else str(c)

    for r, q in enumerate(picks):
        axes[r, 0].imshow(query_images[r])
        axes[r, 0].set_title(f"test: {label(int(query_labels[q]))}"[:20], fontsize=6, color="tab:red")
        for j in range(kk):
            axes[r, j + 1].imshow(base_images[r, j])
            axes[r, j + 1].set_title(f"{label(int(base_labels[idx[r, j]]))} {dist[r, j]:.3g}"[:20], fontsize=6)
        for ax in axes[r]:
            ax.axis("off")
    fig.suptitle(f"nearest training images in the output of '{layer}'", fontsize=9)
    fig.tight_layout()
    numbers = {"layer": layer, "queries": [{"test_image": int(q), "label": int(query_labels[q]),
                                            "nearest": [int(x) for x in idx[r]],
                                            "labels": [int(base_labels[x]) for x in idx[r]],
                                            "distances": [float(x) for x in dist[r]]} for r, q in enumerate(picks)]}
    return {"png": _save(fig, out / "similar.png"), "json": _json(out / "similar.json", numbers)}


def _pictures_at(trained, batch_of_row: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """The images of `rows` of a range's outputs (rows in batch order), decoding only their batches."""
    rows = [int(r) for r in rows]
    out: list[np.ndarray | None] = [None] * len(rows)
    for b in dict.fromkeys(int(batch_of_row[r]) for r in rows):
        first = int(np.argmax(batch_of_row == b))
        pics = batch_images(trained, [b])
        for k, r in enumerate(rows):
            if batch_of_row[r] == b:
                out[k] = pics[r - first]
    return np.stack(out)


# -- features ----------------------------------------------------------------------------------------

def show_features(outputs: np.ndarray, labels: np.ndarray, layer: str, out: Path, limit: int = 64) -> dict[str, Path]:
    """features.png: the outputs of the first `limit` images (sorted by label) as rows."""
    order = np.argsort(labels, kind="stable")[:limit]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    shown = outputs[order][:, :min(outputs.shape[1], 1024)]
    im = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap="viridis")
    ax.set_xlabel(f"output unit of '{layer}' (first {shown.shape[1]} of {outputs.shape[1]})")
    ax.set_ylabel("image (by label)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return {"png": _save(fig, out / "features.png")}


# -- the page ------------------------------------------------------------------------------------------

def write_html(out: Path, sections: Sequence[tuple[str, Path, str]], title: str) -> Path:
    """show.html: each (heading, PNG, note) as a section, the PNG inline; no other file is needed."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}</style>",
             f"</head><body><h1>{html.escape(title)}</h1>"]
    for heading, png, note in sections:
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(note)}</p>"
                     f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return atomic_write_text(out / "show.html", "\n".join(parts))


# -- all views of one call ----------------------------------------------------------------------------

def show_views(trained, out: str | Path, *, cost: str | None = None, filters: str | None = None,
               preds: bool = False, similar: str | None = None, features: str | None = None,
               test_range: Sequence[int] | None = None, train_range: Sequence[int] | None = None,
               multiview: bool = False, logreg_name: str | None = None, count: int = 8, neighbours: int = 8,
               only_errors: bool = False, seed: int = 0, minibatch: int = 128, device: str = "cpu",
               say=lambda text: None) -> dict[str, Any]:
    """The views asked for (`cost` is "" for the first cost, None for no cost view), into `out`,
    then show.html; returns {view: {"files": [...], "seconds": s}}."""
    if count < 1 or neighbours < 1:
        raise ReplayError(f"--count {count}, --neighbours {neighbours}: both must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Any] = {}
    sections: list[tuple[str, Path, str]] = []

    def ranges(which: str) -> list[int]:
        given = test_range if which == "test_range" else train_range
        if given:
            return list(given)
        text = trained.options.get(which)
        if not text:
            raise ReplayError(f"{trained.source}: the checkpoint names no --{which.replace('_', '-')}; give one")
        return parse_range(str(text), which)

    def record(view: str, paths: dict[str, Path], started: float, note: str) -> None:
        seconds = time.perf_counter() - started
        done[view] = {"files": [str(p) for p in paths.values()], "seconds": round(seconds, 2)}
        if "png" in paths:
            sections.append((view, paths["png"], note))
        say(f"show --{view}: {', '.join(str(p) for p in paths.values())} ({seconds:.1f} s)")

    if cost is not None:
        t0 = time.perf_counter()
        layer = trained.config.layers.get(cost) if cost else None
        topk = layer.params.get("topk") if layer is not None and layer.type == "cost.logreg" else None
        if not cost:
            logregs = [l for l in trained.config.layers.values() if l.type == "cost.logreg"]
            topk = logregs[0].params.get("topk") if logregs else None
        record("cost", show_cost(trained.history, out, cost or None, topk), t0, f"from {trained.source}")
    if filters:
        t0 = time.perf_counter()
        record("filters", show_filters(trained, filters, out), t0, f"layer {filters} of {trained.source}")
    if preds:
        t0 = time.perf_counter()
        batches = ranges("test_range")
        p = predict(trained, batches, multiview=multiview, logreg_name=logreg_name, minibatch=minibatch,
                    device=device)
        pics = batch_images(trained, batches)
        picks = pick_images(p, count, seed, only_errors)
        record("preds", show_preds(p, pics, picks, out), t0,
               f"{len(picks)} test images of batches {batches[0]}-{batches[-1]}, {p.info['views']} view(s)")
    if similar:
        t0 = time.perf_counter()
        q, ql, qb, _ = layer_outputs(trained, similar, ranges("test_range"), minibatch=minibatch, device=device)
        b, bl, bb, _ = layer_outputs(trained, similar, ranges("train_range"), minibatch=minibatch, device=device)
        picks = np.sort(np.random.default_rng(seed).choice(q.shape[0], size=min(count, q.shape[0]), replace=False))
        names = list(trained.provider.meta.label_names) if trained.provider is not None else []

        def pictures(which: str, rows: Sequence[int]) -> np.ndarray:
            return _pictures_at(trained, qb if which == "test" else bb, rows)

        record("similar", show_similar(q, ql, b, bl, picks, neighbours, similar, out, pictures, names), t0,
               f"Euclidean distance in the output of {similar}")
    if features:
        t0 = time.perf_counter()
        batches = ranges("test_range")
        f, fl, fb, _ = layer_outputs(trained, features, batches, minibatch=minibatch, device=device,
                                     multiview=multiview)
        files = write_features(out / "features", f, fl, fb, str(trained.source), features)
        paths = {"png": show_features(f, fl, features, out)["png"], "npz": files[-1], "meta": files[-2]}
        record("features", paths, t0, f"outputs of {features} for batches {batches[0]}-{batches[-1]}")
    if sections:
        page = write_html(out, sections, f"alexnet-replay show: {trained.source}")
        say(f"show: {page}")
        done["html"] = str(page)
    return done
