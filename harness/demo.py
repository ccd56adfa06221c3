"""``alexnet-replay demo``: the whole replay on a small real data set, in a few minutes on a CPU.

1. scikit-learn's handwritten digits (1797 images of 8x8, shipped inside scikit-learn)
   are rendered into the release's CIFAR batch format: ``data_batch_1`` … ``_5`` for
   training, ``data_batch_6`` (299 images) for testing, ``batches.meta`` with the mean.
2. The project's own CIFAR-size network (``cifar-18pct``) is trained on them through
   the same driver as ``alexnet-replay train`` (``--data-provider cifar``: whole 32x32
   images, no crops or flips, which would turn a 6 into a 9's neighbour), with the demo's
   parameter file ``cifar-18pct-demo.params.cfg``: its log lines, tests and checkpoints.
3. The last checkpoint is tested on the whole test range (``--test-only 1 --test-one 0``).
4. A parity check runs the engine and the PyTorch port on the same network, layer by
   layer, at a small minibatch for a few steps (:func:`..modernize.parity.run_parity`).

5. The run's training and test curves and its first layer's filters are drawn
   (``show --cost --filters conv1``, :mod:`.views`).

Everything goes into one folder (default ``./alexnet-replay-demo``): ``data/``, ``runs/``
(the checkpoint folder), ``log.txt``, ``parity/`` (report.json, .md, .html), ``show/``
(cost.png, filters.png, their numbers, show.html) and ``summary.json`` (docs/json-formats.md).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .. import networks
from ..errors import ReplayError
from ..files import atomic_write_text
from .driver import train
from .make_batches import digits_batches, write_folder_atomically
from .options import add_train_arguments
from .predict import load_trained

DEMO_EPOCHS = 15
QUICK_EPOCHS = 1
SUMMARY_MAGIC = "alexnet-replay demo summary"


def demo_params() -> Path:
    return networks.bundled("cifar-18pct").layers.parent / "cifar-18pct-demo.params.cfg"


class _Tee(io.TextIOBase):
    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def _driver(argv: list[str], out, **kwargs):
    parser = argparse.ArgumentParser(prog="demo")
    add_train_arguments(parser)
    return train(parser.parse_args(argv), out=out, **kwargs)


def _figures(checkpoint: Path, folder: Path) -> dict[str, Any]:
    """The run's curves and its first layer's filters (``show --cost --filters conv1``), or why not."""
    try:
        from .views import show_views  # matplotlib: an optional extra, like the parity check's torch
    except ImportError as exc:
        return {"ran": False, "reason": f"matplotlib is not installed ({exc})"}
    shown = show_views(load_trained(checkpoint), folder, cost="", filters="conv1")
    return {"ran": True, "cost": shown["cost"]["files"][0], "filters": shown["filters"]["files"][0],
            "html": shown["html"], "seconds": round(shown["cost"]["seconds"] + shown["filters"]["seconds"], 2)}


def run_demo(out_dir: str | Path = "alexnet-replay-demo", *, quick: bool = False, seed: int = 0,
             epochs: int | None = None, parity: bool = True, quiet: bool = False, stdout=None,
             backend: str = "engine", device: str = "cpu") -> dict[str, Any]:
    """Run the demo into `out_dir` and return its summary (also written as summary.json).
    `backend`, `device`: what trains and tests (``train --backend``, ``--device``)."""
    stdout = stdout or sys.stdout
    started = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReplayError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "summary.json").exists() and not (out / "data").is_dir():
        raise ReplayError(f"{out}: folder is not empty and holds no earlier demo; give another --out")
    out.mkdir(parents=True, exist_ok=True)
    epochs = epochs or (QUICK_EPOCHS if quick else DEMO_EPOCHS)

    data = out / "data"
    made = write_folder_atomically(data, lambda folder: digits_batches(folder, seed=seed, dp_type="cifar"),
                                   force=True)
    say = (lambda text: None) if quiet else (lambda text: print(text, file=stdout, flush=True))
    say(f"demo: {sum(1 for _ in made.batch_nums)} batches of handwritten digits in {data} "
        f"(train {made.train_batches[0]}-{made.train_batches[-1]}, test {made.test_batches[0]})")

    runs = out / "runs"
    for old in runs.glob("ConvNet__*") if runs.is_dir() else []:  # an earlier demo's run: start clean
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    train_range = f"{made.train_batches[0]}-{made.train_batches[-1]}"
    test_range = f"{made.test_batches[0]}-{made.test_batches[-1]}"
    with open(out / "log.txt", "w", encoding="utf-8") as logfile:
        log = logfile if quiet else _Tee(stdout, logfile)
        t0 = time.perf_counter()
        run, _ = _driver(["--data-path", str(data), "--save-path", str(runs), "--train-range", train_range,
                          "--test-range", test_range, "--layer-def", "cifar-18pct",
                          "--layer-params", str(demo_params()), "--data-provider", "cifar",
                          "--test-freq", str(len(made.train_batches)), "--epochs", str(epochs), "--mini", "32",
                          "--seed", str(seed), "--backend", backend, "--device", device], log)
        train_seconds = time.perf_counter() - t0
        checkpoint = sorted(run.folder.glob("*.npz"))[-1]
        tested, _ = _driver(["-f", str(checkpoint), "--test-only", "1", "--test-one", "0"], log)  # its backend
    test = tested.options["_last_test"]["logprob"]
    accuracy = 1.0 - test[1]
    say(f"demo: test accuracy {accuracy:.2%} on {test_range} ({epochs} epochs, {train_seconds:.0f} s of training)")
    figures = _figures(checkpoint, out / "show")
    if figures.get("ran"):
        say(f"demo: training curves in {figures['cost']}, first-layer filters in {figures['filters']} "
            f"(both in {figures['html']})")

    report_info: dict[str, Any] = {"ran": False}
    if parity:
        t0 = time.perf_counter()
        try:
            from ..modernize.parity import run_parity, write_report
        except ImportError as exc:  # torch is an optional extra
            report_info = {"ran": False, "reason": f"the PyTorch port is not installed ({exc})"}
        else:
            report = run_parity("cifar-18pct", str(demo_params()), minibatch=3, steps=2, seed=seed)
            paths = write_report(report, out / "parity")
            report_info = {"ran": True, "passed": bool(report.passed), "report": str(paths["md"]),
                           "seconds": round(time.perf_counter() - t0, 2)}
            say(f"demo: parity of engine and PyTorch port: {'passed' if report.passed else 'FAILED'} "
                f"({paths['md']})")
    summary = {
        "format": SUMMARY_MAGIC, "version": 1, "seed": seed, "epochs": epochs, "quick": quick, "backend": backend,
        "device": device,
        "test_accuracy": accuracy, "test_logprob": test[0], "test_error": test[1],
        "train_seconds": round(train_seconds, 2), "seconds": round(time.perf_counter() - started, 2),
        "data": str(data), "checkpoint": str(checkpoint), "log": str(out / "log.txt"), "parity": report_info,
        "figures": figures,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    say(f"demo: outputs in {out}: data/ (batches), {os.path.relpath(checkpoint, out)} (checkpoint), log.txt, "
        + ("parity/ (report.md, .html, .json), " if report_info.get("ran") else "")
        + ("show/ (cost.png, filters.png, show.html), " if figures.get("ran") else "")
        + f"summary.json; {summary['seconds']:.0f} s in all")
    return summary
