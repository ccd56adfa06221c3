"""``alexnet-replay train``: the 2012 driver's training loop (driver.md §C).

Options keep the release's names, meanings and defaults (§C.2) where this
harness implements them; ``--seed`` and ``--device`` are added (the table is in
:mod:`.options`). The loop follows §C.4: batches of ``--train-range`` in order,
wrapping into the next epoch; each batch cut into consecutive minibatches of
``--mini`` cases, each followed by an update at the batch's schedule progress
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
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from ..engine import EngineNet
from ..errors import ReplayError
from ..original.shownet import load as load_config
from . import checkpoint as ckpt
from .checkpoint_format import RELEASE, checkpoint_format, natural_key, newest_checkpoint
from .multiview import multiview_costs
from .options import OPTIONS, SET_ONCE, parse_range
from .providers import batch_rng, make_provider, minibatches
from .release_checkpoint import load_release_checkpoint, read_release_checkpoint

__all__ = ["Run", "train"]


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
        source = newest_checkpoint(args.load_file)
        if checkpoint_format(source) == RELEASE:  # driver.md §C.7: the 2012 driver's pickle
            release = read_release_checkpoint(source)
            state = {"epoch": release.epoch, "batchnum": release.batchnum,
                     "batches_done": release.batches_done, "options": release.options, "release": True}
        else:
            meta, _ = ckpt.read_checkpoint(source)
            state = meta["state"]
        stored = dict(state.get("options", {}))
        for key in SET_ONCE:
            if key in given and stored.get(key) is not None and given[key] != stored.get(key):
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
    if options["device"] not in ("cpu", "cuda"):
        raise ReplayError(f"--device {options['device']}: must be cpu or cuda")
    if options["mini"] < 1 or options["test_freq"] < 1 or options["epochs"] < 1:
        raise ReplayError("--mini, --test-freq and --epochs must be >= 1")
    return options, state, source


class _Log:
    """The release's log lines on `out`; with a terminal on stderr a tqdm bar (batches, images/s,
    ETA) there; `quiet` keeps only what :meth:`final` prints."""

    def __init__(self, out, quiet: bool, total_batches: int) -> None:
        self.out, self.quiet = out, quiet
        self.bar = None
        self.images, self.started = 0, time.perf_counter()
        if not quiet and total_batches > 0 and sys.stderr.isatty():
            self.bar = tqdm(total=total_batches, unit="batch", file=sys.stderr, dynamic_ncols=True, leave=False)

    def __call__(self, text: str, flush: bool = False) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.clear()
        print(text, file=self.out, flush=flush or self.bar is not None)
        if self.bar is not None:
            self.bar.refresh()

    def batch_done(self, cases: int) -> None:
        self.images += cases
        if self.bar is not None:
            rate = self.images / max(time.perf_counter() - self.started, 1e-9)
            self.bar.set_postfix_str(f"{rate:.0f} images/s", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def final(self, text: str) -> None:
        self.close()
        print(text, file=self.out, flush=True)


def _new_run_folder(save_path: Path) -> Path:
    """§C.7's ``ConvNet__<timestamp>`` folder, created here. A second run started in the
    same second in the same save path gets ``_2``, ``_3``, ... rather than sharing it."""
    save_path.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("ConvNet__%Y-%m-%d_%H.%M.%S")
    for k in range(1, 1000):
        folder = save_path / (stamp if k == 1 else f"{stamp}_{k}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise ReplayError(f"{save_path}: could not make a new run folder for {stamp}")


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


def train(args: argparse.Namespace, out=None,
          on_save: Callable[[Path], None] | None = None) -> tuple[Run, EngineNet]:
    """Run the driver with `args` (see :func:`.options.add_train_arguments`); log lines go to `out`
    (default: the current sys.stdout). `on_save(path)` is called after each checkpoint is written."""
    providers: list = []
    try:
        return _train(args, out, on_save, providers)
    finally:  # stop prefetch threads and decoding processes here, not in a finalizer later
        for dp in providers:
            close = getattr(dp, "close", None)
            if close is not None:
                close()


def _train(args: argparse.Namespace, out, on_save, providers: list) -> tuple[Run, EngineNet]:
    out = out if out is not None else sys.stdout
    options, state, source = _options(args)
    quiet = bool(getattr(args, "quiet", False))
    train_range = parse_range(options["train_range"], "train_range")
    test_range = parse_range(options["test_range"], "test_range")
    dp = options["data_provider"] or None
    common = dict(crop_border=options["crop_border"], workers=options["decode_workers"],
                  scalar_mean=bool(options["scalar_mean"]))
    train_dp = make_provider(dp, options["data_path"], train_range, color_noise=options["color_noise"], **common)
    providers.append(train_dp)
    test_dp = make_provider(dp, options["data_path"], test_range, test=True,
                            multiview=bool(options["multiview_test"]), **common)
    providers.append(test_dp)
    side = int(round((train_dp.get_data_dims(0) / 3) ** 0.5))
    config, _ = load_config(options["layer_def"], options["layer_params"], image_size=(3, side, side))
    net = EngineNet(config, options["mini"], options["seed"], options["device"])  # cuda: ReplayError if unusable
    if state is not None:
        assert source is not None
        if state.get("release"):
            load_release_checkpoint(source, net)
        else:
            ckpt.load_checkpoint(source, net)
        run = Run(options, source.parent, state["epoch"], state["batchnum"], state["batches_done"])
        if not quiet:
            print(f"Resumed from {source} (epoch {run.epoch}, batch {run.batchnum})", file=out)
    else:
        folder = _new_run_folder(Path(options["save_path"]))
        run = Run(options, folder, 1, train_range[0] - 1, 0)  # "batch before the first"
    if options["test_only"]:
        _test(net, test_dp, test_range, run, out, all_batches=True)
        return run, net

    total = options["epochs"] * len(train_range)
    log = _Log(out, quiet, total + 1 - run.batches_done)  # §C.4: through epoch N, plus one batch
    try:
        _train_loop(net, run, options, train_range, test_range, train_dp, test_dp, total, log, on_save)
    finally:
        log.close()
    last = run.options.get("_last_test")
    if quiet:
        log.final(f"Stopped after {run.epoch}.{run.batchnum}; last test output: "
                  + (_print_costs(last, 1) if last else "(no test in this run)")
                  + f"; last checkpoint: {run.options.get('_last_saved') or '(none written)'}")
    return run, net


def _train_loop(net: EngineNet, run: Run, options: dict[str, Any], train_range: list[int],
                test_range: list[int], train_dp, test_dp, total: int, log: _Log,
                on_save: Callable[[Path], None] | None) -> None:
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
        if hasattr(train_dp, "prefetch"):  # the next batch is decoded while this one trains (§C.4)
            ne, nb = (epoch, train_range[i + 1]) if i + 1 < len(train_range) else (epoch + 1, train_range[0])
            train_dp.prefetch(nb, batch_rng(options["seed"], ne, nb))
        costs = _run_batch(net, matrices, options["mini"], train=True)
        cases = matrices[0].shape[1]
        line = f"{epoch}.{batchnum}... {_print_costs(costs, cases)}"
        if run.batches_done % options["test_freq"] == 0:
            log(line)
            test_index = _test(net, test_dp, test_range, run, log, start=test_index,
                               all_batches=not options["test_one"])
            path = _save(net, run, log)
            if on_save is not None:
                on_save(path)
            line = ""
        log(f"{line} ({time.perf_counter() - started:.2f} sec)".strip(), flush=True)
        log.batch_done(cases)
        last_epoch = epoch


def _test(net: EngineNet, test_dp, test_range: list[int], run: Run, out, start: int = 0,
          all_batches: bool = False) -> int:
    batches = test_range[start:] if all_batches else [test_range[start % len(test_range)]]
    totals: dict[str, list[float]] = {}
    cases = 0
    for b in batches:
        matrices = test_dp.get_batch(b)
        views = getattr(test_dp, "num_views", 1)
        costs = multiview_costs(net, matrices, views, run.options["mini"]) if views > 1 \
            else _run_batch(net, matrices, run.options["mini"], train=False)
        cases += matrices[0].shape[1] // views
        for name, values in costs.items():
            totals[name] = [a + c for a, c in zip(totals.get(name, [0.0] * len(values)), values)]
    text = "=" * 24 + "\nTest output: " + _print_costs(totals, cases)
    if isinstance(out, _Log):
        out(text)
    else:
        print(text, file=out)
    run.options["_last_test"] = {k: [v / cases for v in vs] for k, vs in totals.items()}
    return (start + 1) % len(test_range)


def _save(net: EngineNet, run: Run, log: _Log) -> Path:
    path = run.folder / f"{run.epoch}.{run.batchnum}.npz"
    options = {k: v for k, v in run.options.items() if not k.startswith("_")}
    ckpt.save_checkpoint(path, net, {"epoch": run.epoch, "batchnum": run.batchnum,
                                     "batches_done": run.batches_done, "options": options,
                                     "last_test": run.options.get("_last_test")})
    # §C.7: delete the oldest files (natural order) while the folder exceeds
    # --max-filesize MB, never the one just written; 0 keeps only the newest.
    files = sorted(run.folder.glob("*.npz"), key=natural_key)
    limit = run.options["max_filesize"] * 2**20
    for older in files:
        if older == path or sum(f.stat().st_size for f in run.folder.glob("*.npz")) <= limit:
            break
        older.unlink()
    run.options["_last_saved"] = str(path)
    log("-" * 24 + f"\nSaved checkpoint to {path}\n" + "=" * 24)
    return path
