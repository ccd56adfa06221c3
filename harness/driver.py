"""``alexnet-replay train``: the 2012 driver's training loop (driver.md §C).

Options keep the release's names, meanings and defaults (§C.2) where this
harness implements them; ``--seed`` and ``--device`` are added. The loop
follows §C.4: batches of ``--train-range`` in order, wrapping into the next
epoch; each batch cut into consecutive minibatches of ``--mini`` cases, each
followed by an update at the batch's schedule progress
``p = (batches done - 1) / (epochs x training batches)``; a log line
``E.B... logprob: nll, top-1, top-k (T sec)`` with per-case means; every
``--test-freq`` batches a test on the next test batch (``--test-one``) and a
checkpoint. The stop rule is the release's: with ``--epochs=N`` the loop trains
all of epoch N and the first batch of epoch N+1, then exits without saving.

Checkpoints are the project's format (:mod:`.checkpoint`), named
``<epoch>.<batchnum>.npz`` in ``<save-path>/ConvNet__<timestamp>/``; only the
newest is kept (``--max-filesize`` 0, the release's default). ``-f`` resumes
from a checkpoint file or folder: the stored options are the base, options
given on this command line replace them (``--layer-def`` and ``--crop-border``
are set once), and the parameter file is re-read (§B.5). Random draws of a
batch come from (seed, epoch, batch), so a resumed run draws what the
uninterrupted run drew, and ends with the same weights, bit for bit.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..engine import EngineNet
from ..errors import ReplayError
from ..original.shownet import load as load_config
from . import checkpoint as ckpt
from .providers import batch_rng, make_provider, minibatches

# (option, type, default; None = mandatory unless excused). §C.2.
OPTIONS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "train_range": (str, None), "test_range": (str, None), "data_path": (str, None), "save_path": (str, None),
    "data_provider": (str, ""), "test_freq": (int, 50), "epochs": (int, 50000), "max_filesize": (int, 0),
    "test_one": (int, 1), "mini": (int, 128), "layer_def": (str, None), "layer_params": (str, None),
    "crop_border": (int, 4), "color_noise": (float, 0.0), "test_only": (int, 0), "seed": (int, 0),
    "device": (str, "cpu"),
}
SET_ONCE = ("layer_def", "crop_border")


def parse_range(text: str, option: str) -> list[int]:
    """``a-b`` (inclusive) or ``n`` (§C.1)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
        raise ReplayError(f"--{option.replace('_', '-')}: expected a range like 1-5 or a number, got {text!r}")
    first = int(m.group(1))
    return list(range(first, int(m.group(2) or first) + 1))


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", dest="load_file", metavar="PATH", help="resume from a checkpoint file or folder")
    for name, (kind, default) in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        shown = "mandatory" if default is None else repr(default)
        p.add_argument(flag, dest=name, type=kind, default=None, help=f"(default: {shown}; driver.md §C.2)")


@dataclass
class Run:
    options: dict[str, Any]
    folder: Path
    epoch: int
    batchnum: int
    batches_done: int


def _options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | None, Path | None]:
    """Effective options: the checkpoint's, replaced by those given here (§C.3)."""
    given = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    state, source = None, None
    if args.load_file:
        source = Path(args.load_file)
        if source.is_dir():
            files = sorted(source.glob("*.npz"), key=lambda p: [int(t) for t in re.findall(r"\d+", p.name)])
            if not files:
                raise ReplayError(f"{source}: no checkpoint in this folder")
            source = files[-1]
        meta, _ = ckpt.read_checkpoint(source)
        state = meta["state"]
        stored = dict(state.get("options", {}))
        for key in SET_ONCE:
            if key in given and given[key] != stored.get(key):
                raise ReplayError(f"--{key.replace('_', '-')} is set once, when a run starts; this checkpoint "
                                  f"has {stored.get(key)!r}")
        options = {**{k: d for k, (_, d) in OPTIONS.items()}, **stored, **given}
    else:
        options = {**{k: d for k, (_, d) in OPTIONS.items()}, **given}
    needed = ["layer_def", "layer_params", "data_path", "train_range", "test_range"]
    if not args.load_file:
        needed.append("save_path")
    missing = [k for k in needed if options.get(k) is None]
    if missing:
        raise ReplayError("missing options: " + ", ".join("--" + k.replace("_", "-") for k in missing))
    if options["device"] != "cpu":
        raise ReplayError(f"--device {options['device']}: this build trains on the CPU only (the CUDA backend "
                          "is not there yet)")
    if options["mini"] < 1 or options["test_freq"] < 1 or options["epochs"] < 1:
        raise ReplayError("--mini, --test-freq and --epochs must be >= 1")
    return options, state, source


def _print_costs(costs: dict[str, list[float]], cases: int) -> str:
    return " ".join(f"{name}:  " + ", ".join(f"{v / cases:.6f}" for v in values) for name, values in costs.items())


def _run_batch(net: EngineNet, matrices: Sequence[np.ndarray], mini: int, train: bool) -> dict[str, list[float]]:
    """A batch as consecutive minibatches; costs summed over all of them."""
    totals: dict[str, list[float]] = {}
    for part in minibatches(matrices, mini):
        costs = net.train_step(part) if train else net.forward(part, train=False)
        for name, values in costs.items():
            if not all(np.isfinite(values)):
                raise ReplayError(f"cost '{name}' is not finite ({values}): training diverged")
            totals[name] = [a + b for a, b in zip(totals.get(name, [0.0] * len(values)), values)]
    return totals


def train(args: argparse.Namespace, out=sys.stdout) -> tuple[Run, EngineNet]:
    options, state, source = _options(args)
    train_range = parse_range(options["train_range"], "train_range")
    test_range = parse_range(options["test_range"], "test_range")
    dp = options["data_provider"] or None
    train_dp = make_provider(dp, options["data_path"], train_range, crop_border=options["crop_border"],
                             color_noise=options["color_noise"])
    test_dp = make_provider(dp, options["data_path"], test_range, test=True, crop_border=options["crop_border"])
    side = int(round((train_dp.get_data_dims(0) / 3) ** 0.5))
    config, _ = load_config(options["layer_def"], options["layer_params"], image_size=(3, side, side))
    net = EngineNet(config, options["mini"], options["seed"])
    if state is not None:
        assert source is not None
        ckpt.load_checkpoint(source, net)
        run = Run(options, source.parent, state["epoch"], state["batchnum"], state["batches_done"])
        print(f"Resumed from {source} (epoch {run.epoch}, batch {run.batchnum})", file=out)
    else:
        folder = Path(options["save_path"]) / datetime.now().strftime("ConvNet__%Y-%m-%d_%H.%M.%S")
        folder.mkdir(parents=True, exist_ok=False)
        run = Run(options, folder, 1, train_range[0] - 1, 0)  # "batch before the first"
    if options["test_only"]:
        _test(net, test_dp, test_range, run, out, all_batches=True)
        return run, net

    total = options["epochs"] * len(train_range)
    last_epoch = run.epoch
    test_index = 0
    while last_epoch <= options["epochs"]:  # §C.4 stop rule: one batch into epoch N+1
        epoch, batchnum = run.epoch, run.batchnum
        i = train_range.index(batchnum) + 1 if batchnum in train_range else 0
        if i >= len(train_range):
            epoch, i = epoch + 1, 0
        batchnum = train_range[i]
        run.epoch, run.batchnum = epoch, batchnum
        run.batches_done += 1
        started = time.perf_counter()
        net.reseed(int(batch_rng(options["seed"], epoch, batchnum).integers(0, 2**63)))
        net.set_progress(min(max((run.batches_done - 1) / total, 0.0), 1.0))
        matrices = train_dp.get_batch(batchnum, rng=batch_rng(options["seed"], epoch, batchnum)) \
            if hasattr(train_dp, "num_views") else train_dp.get_batch(batchnum)
        costs = _run_batch(net, matrices, options["mini"], train=True)
        cases = matrices[0].shape[1]
        line = f"{epoch}.{batchnum}... {_print_costs(costs, cases)}"
        if run.batches_done % options["test_freq"] == 0:
            print(line, file=out)
            test_index = _test(net, test_dp, test_range, run, out, start=test_index,
                               all_batches=not options["test_one"])
            _save(net, run, out)
            line = ""
        print(f"{line} ({time.perf_counter() - started:.2f} sec)".strip(), file=out, flush=True)
        last_epoch = epoch
    return run, net


def _test(net: EngineNet, test_dp, test_range: list[int], run: Run, out, start: int = 0,
          all_batches: bool = False) -> int:
    batches = test_range[start:] if all_batches else [test_range[start % len(test_range)]]
    totals: dict[str, list[float]] = {}
    cases = 0
    for b in batches:
        matrices = test_dp.get_batch(b)
        costs = _run_batch(net, matrices, run.options["mini"], train=False)
        cases += matrices[0].shape[1]
        for name, values in costs.items():
            totals[name] = [a + c for a, c in zip(totals.get(name, [0.0] * len(values)), values)]
    print("=" * 24 + "\nTest output: " + _print_costs(totals, cases), file=out)
    run.options["_last_test"] = {k: [v / cases for v in vs] for k, vs in totals.items()}
    return (start + 1) % len(test_range)


def _save(net: EngineNet, run: Run, out) -> None:
    path = run.folder / f"{run.epoch}.{run.batchnum}.npz"
    options = {k: v for k, v in run.options.items() if not k.startswith("_")}
    ckpt.save_checkpoint(path, net, {"epoch": run.epoch, "batchnum": run.batchnum,
                                     "batches_done": run.batches_done, "options": options,
                                     "last_test": run.options.get("_last_test")})
    # §C.7: delete the oldest files (natural order) while the folder exceeds
    # --max-filesize MB, never the one just written; 0 keeps only the newest.
    files = sorted(run.folder.glob("*.npz"), key=lambda p: [int(t) for t in re.findall(r"\d+", p.name)])
    limit = run.options["max_filesize"] * 2**20
    for older in files:
        if older == path or sum(f.stat().st_size for f in run.folder.glob("*.npz")) <= limit:
            break
        older.unlink()
    print("-" * 24 + f"\nSaved checkpoint to {path}\n" + "=" * 24, file=out)
