"""``alexnet-replay train``: the 2012 driver's training loop (driver.md §C).

Options keep the release's names, meanings and defaults (§C.2) where this
harness implements them; ``--seed`` and ``--device`` are added (the table is in
:mod:`.options`). The loop follows §C.4: batches of ``--train-range`` in order,
wrapping into the next epoch; each batch cut into consecutive minibatches of
``--mini`` cases, each followed by an update at the batch's schedule progress
``p = (batches done - 1) / (epochs x training batches)`` (with ``--wupdate-freq=F`` > 1,
every F-th minibatch applies the gradients summed over the F, across batch boundaries;
a checkpoint between keeps the partial sums, engine.md §4.2); a log line
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

The release's other options (§C.2): ``--num-gpus`` bounds the layers' ``gpu=`` keys and
``--gpu`` names a CUDA device for each index; with ``--device cuda`` they choose the
devices, a CPU run notes that they select nothing. ``--zip-save=1`` compresses the
checkpoints. ``--conserve-mem`` (memory only) is noted. ``--check-grads=1`` runs the
numerical gradient check (engine.md §8) instead of training. A test prints the block of
§C.4 (:mod:`.report`); ``--test-only`` adds a line per batch, and ``--test-out`` with
``--logreg-name`` writes the predictions (§C.5). ``--unshare-weights`` copies shared
matrices apart once (§A.7); since a checkpoint here holds arrays, not the graph, the
copies made are recorded in it and made again on every resume. ``--conv-to-local``, which
was broken in the release (§A.7), is refused.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from ..engine import WEIGHT_LAYER_TYPES, EngineNet
from ..errors import ReplayError
from ..files import FolderLock, atomic_write_text, remove_stale_temporaries
from ..gradcheck import check_gradients, summary
from ..original.layers import Network
from ..original.reconstructions import reconstructions
from ..original.shownet import load as load_config
from .backends import check_device, training_net
from .classes import check_class_count, check_data_layers, data_facts
from .distributed import join as join_group
from .history import History, rates_of
from .init_from import InitSource, require_source
from . import checkpoint as ckpt
from .checkpoint_format import RELEASE, checkpoint_format, natural_key, newest_checkpoint
from .multiview import multiview_costs
from .options import (OPTIONS, PATH_OPTIONS, SET_ONCE, check_values, parse_gpus, parse_names, parse_range,
                      parse_unshare, resolved_path)
from .providers import batch_rng, make_provider, minibatches
from .report import averages, batch_line, format_costs, format_test_block, weight_lines, write_predictions
from .release_checkpoint import load_release_checkpoint, read_release_checkpoint

__all__ = ["Run", "export_gpu_ids", "train"]


@dataclass
class Run:
    options: dict[str, Any]
    folder: Path | None                 # None: --check-grads, which makes no run folder
    epoch: int
    batchnum: int
    batches_done: int
    grad_checks: list | None = None     # --check-grads: one gradcheck.MatrixCheck per matrix
    writer: bool = True                 # False: a data-parallel process other than rank 0 (no tests, no saves)


def _options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | None, Path | None]:
    """Effective options: the checkpoint's, replaced by those given here (§C.3)."""
    given = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    for key in PATH_OPTIONS:  # stored and compared resolved (issue 13, item 5)
        if isinstance(given.get(key), str):
            given[key] = resolved_path(given[key])
    state, source = None, None
    if args.load_file:
        source = newest_checkpoint(args.load_file)
        if checkpoint_format(source) == RELEASE:  # driver.md §C.7: the 2012 driver's pickle
            release = read_release_checkpoint(source)
            state = {"epoch": release.epoch, "batchnum": release.batchnum,
                     "batches_done": release.batches_done, "options": release.options, "release": True,
                     "test_outputs": [t[0] for t in release.test_outputs
                                      if isinstance(t, (tuple, list)) and t and isinstance(t[0], dict)],
                     "history": release.history().to_state()}
        else:
            meta, _ = ckpt.read_checkpoint(source)
            state = meta["state"]
        stored = dict(state.get("options", {}))
        for key in SET_ONCE:
            was = stored.get(key)
            if key in PATH_OPTIONS and isinstance(was, str):
                was = resolved_path(was)
            if key in given and was is not None and given[key] != was:
                raise ReplayError(f"--{key.replace('_', '-')} is set once, when a run starts; this checkpoint "
                                  f"has {stored.get(key)!r}")
        options = {**{k: d for k, (_, d) in OPTIONS.items()}, **stored, **given}
    else:
        options = {**{k: d for k, (_, d) in OPTIONS.items()}, **given}
    for key in ("gpu", "unshare_weights", "conv_to_local"):  # a release checkpoint stores lists
        if isinstance(options.get(key), (list, tuple)):
            options[key] = ",".join(str(v) for v in options[key])
    needed = ["layer_def", "layer_params", "data_path", "train_range", "test_range"]
    if not args.load_file:
        needed.append("save_path")
    if options["check_grads"]:  # §C.1: the gradient check excuses the data path, save path and ranges
        needed = ["layer_def", "layer_params"]
    missing = [k for k in needed if options.get(k) is None]
    if missing:
        raise ReplayError("missing options: " + ", ".join("--" + k.replace("_", "-") for k in missing))
    check_device(options["backend"], options["device"])
    check_values(options)  # types and bounds, whether given here or stored in the checkpoint
    _check_release_options(options, given)
    return options, state, source


def _check_release_options(options: dict[str, Any], given: dict[str, Any]) -> None:
    """The options of §C.2 beyond the loop's, checked before anything is built or written."""
    if given.get("test_out") and not {"logreg_name", "multiview_test"} <= set(given):
        raise ReplayError("--test-out needs --logreg-name and --multiview-test on the same command line "
                          "(as in the release, §C.2), e.g. --test-out=preds --logreg-name=logprob --multiview-test=1")
    if parse_names(options["conv_to_local"] or "", "conv_to_local"):
        raise ReplayError(f"--conv-to-local={options['conv_to_local']}: refused. The release's conversion of conv "
                          "layers into local ones was broken (it walked the layer dict as a list, driver.md §A.7), "
                          "so no 2012 run used it; write the local layers in the definition file instead")
    parse_unshare(options["unshare_weights"] or "")
    if options["num_gpus"] < 0:
        raise ReplayError(f"--num-gpus={options['num_gpus']}: must be >= 1 (or 0: not given)")
    _gpus(options)


def _gpus(options: dict[str, Any]) -> tuple[list[int], int]:
    """(--gpu ids, number of GPUs): entry i of --gpu serves the layers with gpu=i (§C.2), so
    with both given they must agree; the count is --num-gpus, else the number of ids, else 0
    (not given: gpu= is not bounded and CUDA uses every visible device)."""
    ids = parse_gpus(options["gpu"] or "")
    count = options["num_gpus"]
    if ids and count and len(ids) != count:
        raise ReplayError(f"--gpu={options['gpu']} names {len(ids)} device(s) but --num-gpus={count}: "
                          "give one id (or -1) for each GPU")
    return ids, count or len(ids)


def _visible_devices() -> list[str] | None:
    text = os.environ.get("CUDA_VISIBLE_DEVICES")
    return None if text is None else [v.strip() for v in text.split(",") if v.strip()]


def export_gpu_ids(gpu: str | None) -> None:
    """For the command line, before CUDA starts in the process: make the ``--gpu`` ids the
    devices CUDA shows, in order (``CUDA_VISIBLE_DEVICES``), so that the engine's devices
    0..N-1 are those ids. Nothing is changed when CUDA_VISIBLE_DEVICES is set already, or
    when no id is given (-1 everywhere)."""
    ids = parse_gpus(gpu or "")
    if any(i >= 0 for i in ids) and all(i >= 0 for i in ids) and _visible_devices() is None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in ids)


def cuda_positions(ids: list[int], visible: list[str] | None) -> list[int]:
    """Where each --gpu id sits among the devices CUDA shows (CUDA_VISIBLE_DEVICES, or every
    device when None). The engine uses the first N devices CUDA shows, in order, so the
    positions must be 0..N-1; anything else is refused with the setting that fixes it."""
    if not ids or all(i < 0 for i in ids):
        return list(range(len(ids)))
    text = ",".join(str(i) for i in ids)
    if any(i < 0 for i in ids):
        raise ReplayError(f"--gpu={text}: give a device id for every GPU, or -1 for all of them")
    if visible is None:
        positions = ids
    else:
        missing = [i for i in ids if str(i) not in visible]
        if missing:
            raise ReplayError(f"--gpu={text}: device {missing[0]} is not among CUDA_VISIBLE_DEVICES="
                              f"{','.join(visible)}")
        positions = [visible.index(str(i)) for i in ids]
    if positions != list(range(len(ids))):
        raise ReplayError(f"--gpu={text}: the engine uses the first {len(ids)} device(s) CUDA shows, in order; "
                          f"run with CUDA_VISIBLE_DEVICES={text} (alexnet-replay train sets it from --gpu when "
                          "it is not set)")
    return positions


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


def _remove_abandoned_runs(save_path: Path) -> None:
    """Run folders in `save_path` whose run was killed before its first checkpoint: nothing in
    them but the lock, the ledger and half-written temporaries, and no live run holding the
    lock. Starting again would leave them behind for good, so the next new run removes them."""
    for folder in save_path.glob("ConvNet__*"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        names = [f.name for f in folder.iterdir()]
        if FolderLock.NAME not in names or not all(n in (FolderLock.NAME, _LEDGER) or n.endswith(".tmp")
                                                   for n in names):
            continue
        try:
            lock = FolderLock(folder, "alexnet-replay train, removing an abandoned run folder").acquire()
        except ReplayError:  # a run is alive in it
            continue
        try:
            for name in names:
                (folder / name).unlink(missing_ok=True)
            folder.rmdir()
        except OSError:
            pass
        finally:
            lock.release()


def _new_run_folder(save_path: Path) -> Path:
    """§C.7's ``ConvNet__<timestamp>`` folder, created here. A second run started in the
    same second in the same save path gets ``_2``, ``_3``, ... rather than sharing it."""
    save_path.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_runs(save_path)
    stamp = datetime.now().strftime("ConvNet__%Y-%m-%d_%H.%M.%S")
    for k in range(1, 1000):
        folder = save_path / (stamp if k == 1 else f"{stamp}_{k}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise ReplayError(f"{save_path}: could not make a new run folder for {stamp}")


def _run_batch(net: EngineNet, matrices: Sequence[np.ndarray], mini: int, train: bool,
               after: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """A batch as consecutive minibatches; costs summed over all of them. `after` is called
    after each minibatch (to read its outputs)."""
    totals: dict[str, list[float]] = {}
    for part in minibatches(matrices, mini):
        costs = net.train_step(part) if train else net.forward(part, train=False)
        if after is not None:
            after()
        for name, values in costs.items():
            if not all(np.isfinite(values)):
                raise ReplayError(f"cost '{name}' is not finite ({values}): training diverged, or the data or the "
                                  "parameters hold NaN or infinite values; nothing was saved after it")
            totals[name] = [a + b for a, b in zip(totals.get(name, [0.0] * len(values)), values)]
    return totals


def reconstruction_lines(config) -> list[str]:
    """The log's line naming the layers that run a reconstruction (original/reconstructions.py:
    behaviour whose 2012 kernel was never published), or none."""
    names = list(dict.fromkeys(r.layer for r in reconstructions(config)))
    if not names:
        return []
    return [f"Reconstructed (kernels never published, docs/fidelity.md): {', '.join(names)}"]


def train(args: argparse.Namespace, out=None,
          on_save: Callable[[Path], None] | None = None) -> tuple[Run, EngineNet | None]:
    """Run the driver with `args` (see :func:`.options.add_train_arguments`); log lines go to `out`
    (default: the current sys.stdout). `on_save(path)` is called after each checkpoint is written.
    With ``--check-grads=1`` no net is returned (None); ``run.grad_checks`` holds the verdicts."""
    providers: list = []
    guard = _RunGuard()
    try:
        result = _train(args, out, on_save, providers, guard)
        guard.succeeded = True
        return result
    finally:  # stop prefetch threads and decoding processes here, not in a finalizer later
        for dp in providers:
            close = getattr(dp, "close", None)
            if close is not None:
                close()
        guard.close()


class _RunGuard:
    """What a run holds while it writes into its folder: the folder's lock (two runs in one
    folder would replace each other's checkpoints), and the folder itself when this process
    made it, removed again if the run fails before it saved anything."""

    def __init__(self) -> None:
        self.locks: list[FolderLock] = []
        self.made: Path | None = None
        self.made_parents: list[Path] = []  # the folders above it that this run made (--save-path), deepest first
        self.succeeded = False

    def lock(self, folder: Path, what: str) -> None:
        self.locks.append(FolderLock(folder, what).acquire())
        remove_stale_temporaries(folder)  # a killed run's half-written checkpoint; no writer is left

    def close(self) -> None:
        if not self.succeeded and self.made is not None and self.made.is_dir() \
                and not any(_CHECKPOINT_NAME.fullmatch(f.name) for f in self.made.iterdir()):
            for f in self.made.iterdir():
                if f.name in (FolderLock.NAME, _LEDGER) or f.name.endswith(".tmp"):
                    f.unlink()
            try:
                self.made.rmdir()
                for parent in self.made_parents:
                    parent.rmdir()
            except OSError:  # something else was put there: leave it
                pass
        for lock in self.locks:
            lock.release()


def _train(args: argparse.Namespace, out, on_save, providers: list,
           guard: _RunGuard) -> tuple[Run, EngineNet | None]:
    out = out if out is not None else sys.stdout
    options, state, source = _options(args)
    quiet = bool(getattr(args, "quiet", False))
    if options["check_grads"]:
        return _check_grads(options, state, source, out, quiet, providers), None
    group = join_group(options["device"])  # under torchrun: data parallel (harness/distributed.py), else None
    if group is not None:
        providers.append(group)  # left with the providers, whatever happens (train's finally)
        out = out if group.writer else io.StringIO()  # rank 0 alone logs
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
    facts = data_facts(train_dp)  # the class count and label tree of batches.meta
    config, _ = load_config(options["layer_def"], options["layer_params"], image_size=(3, side, side),
                            num_gpus=_gpus(options)[1] or None, **facts)
    check_class_count(config, facts["num_classes"], str(options["data_path"]))
    check_data_layers(config, train_dp, str(options["data_path"]))  # dataIdx in range, sizes the data gives
    unshared = [tuple(pair) for pair in state.get("unshared", [])] if state is not None else []
    config = _unshare(config, unshared)  # the copies earlier starts made (§A.7), so the checkpoint fits
    _unshare(config, parse_unshare(options["unshare_weights"] or ""))  # checked now; made after loading
    devices = _device_count(options)
    # §A.5: layers that copy an earlier run's arrays (initWFunc ...) take them from --init-from, when a
    # run starts; a resumed run has them in its checkpoint, with its connection tables
    init_source = InitSource.read(options["init_from"]) if options["init_from"] and state is None else None
    if state is None:
        require_source(config, init_source)
        conns = init_source.conn_tables(config) if init_source is not None else None
    else:
        conns = ckpt.saved_conns(source) if not state.get("release") else None
    # --backend port: this engine net on the CPU only holds the state the port starts from (harness/backends.py)
    engine_here = options["backend"] == "engine"
    net = EngineNet(config, options["mini"] if engine_here else 1, options["seed"],  # cuda: ReplayError if unusable
                    options["device"] if engine_here else "cpu",
                    num_gpus=devices, conns=conns, skip_init_funcs=state is not None or init_source is not None,
                    update_freq=options["wupdate_freq"])
    notes = (_device_notes(options, net) if engine_here or options["device"] == "cpu" else []) \
        + reconstruction_lines(net.config)
    if init_source is not None:
        notes += [f"Initialised {line}" for line in init_source.fill(net)]
    _prediction_layer(net, options)  # a bad --logreg-name fails before anything is written
    if state is not None:
        assert source is not None
        if state.get("release"):
            load_release_checkpoint(source, net)
        else:
            ckpt.load_checkpoint(source, net)
        run = Run(options, source.parent, state["epoch"], state["batchnum"], state["batches_done"])
        if not options["test_only"] and (group is None or group.writer):  # checked all it reads; before it writes
            guard.lock(source.parent, "alexnet-replay train -f " + str(source))
        if not quiet:
            print(f"Resumed from {source} (epoch {run.epoch}, batch {run.batchnum})", file=out)
    else:
        save_path = Path(options["save_path"])
        guard.made_parents = [p for p in (save_path, *save_path.parents) if not p.exists()]
        folder = _new_run_folder(save_path) if group is None or group.writer else None
        if folder is not None:
            guard.made = folder
            guard.lock(folder, "alexnet-replay train, a new run")
        run = Run(options, folder, 1, train_range[0] - 1, 0)  # "batch before the first"
    if not quiet:
        for note in notes:
            print(note, file=out)
    net = _apply_unshare(net, options, unshared, devices)
    net = training_net(net, options, group)  # the engine, its data-parallel share, or the port
    run.writer = group is None or group.writer
    options["_unshared"] = unshared
    history = (state or {}).get("test_outputs") or ([state["last_test"]] if (state or {}).get("last_test") else [])
    options["_test_history"] = [{k: [float(v) for v in vs] for k, vs in t.items()} for t in history]
    options["_history"] = History.from_state(state, str(source)) if state is not None else History()
    options["_history"].add_rates(run.batches_done, options["layer_params"], rates_of(net.config))
    if options["test_only"]:
        if run.writer:
            _test(net, test_dp, test_range, run, out, all_batches=not options["test_one"], per_batch=True)
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
                  + (format_costs(last, 1) if last else "(no test in this run)")
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
        run.options["_history"].add_train(run.batches_done, epoch, batchnum, cases, costs)
        line = f"{epoch}.{batchnum}... {format_costs(costs, cases)}"
        if run.batches_done % options["test_freq"] == 0 and run.writer:
            _stop_if_not_finite(net, run)  # before the test and the save; not every batch (a copy on a GPU)
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


def _stop_if_not_finite(net: EngineNet, run: Run) -> None:
    """A NaN or an infinity in a weight or a bias stops the run before anything more is saved:
    training diverged (learning rates too high) or the data or parameters hold such values.
    Max pooling can turn a NaN into numbers, so the weights are checked, not the costs alone
    (those, _run_batch checks)."""
    bad = ckpt.nonfinite_arrays(net)  # (the costs: _run_batch)
    if bad:
        where = f"batch {run.epoch}.{run.batchnum}"
        last = run.options.get("_last_saved")
        tail = f"; the last checkpoint, {last}, was written before" if last else "; no checkpoint was written"
        raise ReplayError(f"{where}: {', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''} hold NaN or infinite "
                          f"values: training diverged, or the data or the parameters hold such values{tail}")


def _test(net: EngineNet, test_dp, test_range: list[int], run: Run, out, start: int = 0,
          all_batches: bool = False, per_batch: bool = False) -> int:
    """One test (§C.5) and its block in the log (§C.4); `per_batch`: --test-only's line per batch."""
    emit = out if isinstance(out, _Log) else (lambda text: print(text, file=out))
    batches = test_range[start:] if all_batches else [test_range[start % len(test_range)]]
    logreg = _prediction_layer(net, run.options)
    totals: dict[str, list[float]] = {}
    cases = 0
    for b in batches:
        matrices = test_dp.get_batch(b)
        costs, n, probs = _test_batch(net, matrices, getattr(test_dp, "num_views", 1), run.options["mini"], logreg)
        if per_batch:
            emit(batch_line(b, costs, n))
        if probs is not None:
            write_predictions(run.options["test_out"], b, probs, run.folder)
        cases += n
        for name, values in costs.items():
            totals[name] = [a + c for a, c in zip(totals.get(name, [0.0] * len(values)), values)]
    per_case = {k: [v / cases for v in vs] for k, vs in totals.items()}
    history = run.options.setdefault("_test_history", [])
    history.append(per_case)
    if "_history" in run.options:
        run.options["_history"].add_test(run.batches_done, cases, per_case)
    emit(format_test_block(totals, cases, averages(history, len(test_range)), weight_lines(net)))
    run.options["_last_test"] = per_case
    return (start + 1) % len(test_range)


def _test_batch(net: EngineNet, matrices: Sequence[np.ndarray], views: int, mini: int,
                logreg) -> tuple[dict[str, list[float]], int, np.ndarray | None]:
    """(cost sums, cases, the probabilities of `logreg` (classes, cases), averaged over the views,
    or None when `logreg` is None) of one test batch."""
    if views > 1:
        probs: dict[str, np.ndarray] = {}
        costs = multiview_costs(net, matrices, views, mini, probs_out=probs)
        return costs, matrices[0].shape[1] // views, probs[logreg.name] if logreg is not None else None
    parts: list[np.ndarray] = []

    def keep() -> None:
        parts.append(np.array(net.acts(logreg.inputs[1]), dtype=np.float32, copy=True))

    costs = _run_batch(net, matrices, mini, train=False, after=keep if logreg is not None else None)
    return costs, matrices[0].shape[1], np.concatenate(parts, axis=1) if parts else None


def _prediction_layer(net: EngineNet, options: dict[str, Any]):
    """The ``--logreg-name`` layer when ``--test-out`` writes predictions, else None."""
    if not (options.get("test_out") and options.get("logreg_name")):
        return None
    layer = net.config.layers.get(options["logreg_name"])
    if layer is None or layer.type != "cost.logreg":
        known = [l.name for l in net.config.layers.values() if l.type == "cost.logreg"]
        raise ReplayError(f"--logreg-name={options['logreg_name']}: not a cost.logreg layer of "
                          f"{net.config.path} (its cost.logreg layers: {', '.join(known) or 'none'})")
    try:  # at the start, so that a folder that cannot be made fails before any training
        Path(options["test_out"]).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReplayError(f"--test-out={options['test_out']}: cannot make the folder ({exc.strerror or exc}); "
                          "give another one, or --test-out= (empty) to write none") from None
    return layer


def _device_count(options: dict[str, Any]) -> int | None:
    """The CUDA devices the net is spread over (None: every visible one), after checking that
    the --gpu ids are the devices the engine will use."""
    ids, count = _gpus(options)
    if options["device"] == "cuda":
        cuda_positions(ids, _visible_devices())
    return count or None


def _device_notes(options: dict[str, Any], net: EngineNet) -> list[str]:
    """One line for each option accepted without effect here, or with a changed one."""
    ids, count = _gpus(options)
    notes = []
    given = " ".join(f"--{k.replace('_', '-')}={options[k]}" for k in ("gpu", "num_gpus") if options[k])
    if net.device == "cpu" and given:
        notes.append(f"Note: {given} select CUDA devices; this run is on the CPU (--device cpu), so they only "
                     f"bound the layers' gpu= keys to 0..{count - 1}")
    elif net.device == "cuda" and count:
        shown = int(net.info().get("devices", count))
        if shown < count and any(i >= 0 for i in ids):
            raise ReplayError(f"--gpu={options['gpu']}: CUDA shows {shown} device(s), fewer than the {count} named")
        if shown < count:
            notes.append(f"Note: --num-gpus={count} but CUDA shows {shown} device(s): layers with gpu={shown} or "
                         "more share a device; the numbers are the same (docs/cuda.md)")
    if options["conserve_mem"]:
        notes.append("Note: --conserve-mem accepted: it saved GPU memory in the release; this engine allocates "
                     "every buffer once and computes the same numbers")
    if options["pca_noise"]:
        notes.append(f"Note: --pca-noise={options['pca_noise']} is stored but not used, as in the release")
    return notes


def _unshare(config: Network, pairs: Sequence[tuple[str, int]]) -> Network:
    """A copy of `config` in which matrix i of layer L is L's own, for each (L, i) (§A.7)."""
    if not pairs:
        return config
    config = copy.deepcopy(config)
    for name, i in pairs:
        layer = config.layers.get(name)
        if layer is None or layer.type not in WEIGHT_LAYER_TYPES:
            raise ReplayError(f"--unshare-weights: {config.path} has no weight layer '{name}'")
        if not 0 <= i < len(layer.weight_sources):
            raise ReplayError(f"--unshare-weights: layer '{name}' has weight matrices 0..{len(layer.weights) - 1}, "
                              f"not {i}")
        if layer.weight_sources[i] is None:
            raise ReplayError(f"--unshare-weights: matrix {i} of layer '{name}' is its own already (no weightSource)")
        layer.weight_sources[i] = None
    return config


def _apply_unshare(net: EngineNet, options: dict[str, Any], unshared: list, devices: int | None) -> EngineNet:
    """--unshare-weights given at this start: a net in which those matrices are copies of the
    shared ones (weights and increments), trained apart from now on. As in the release the option
    is then emptied in the saved options; the copies made are kept in `unshared`."""
    pairs = parse_unshare(options["unshare_weights"] or "")
    if not pairs:
        return net
    if net.accumulated:
        raise ReplayError(f"--unshare-weights: this checkpoint holds {net.accumulated} minibatch(es) of gradients "
                          "not yet applied (--wupdate-freq); resume without --unshare-weights until a checkpoint "
                          "falls on an update")
    config = _unshare(net.config, pairs)
    # the same connection tables; the arrays are all copied below
    apart = EngineNet(config, options["mini"], options["seed"], options["device"], num_gpus=devices,
                      init_weights=False, conns=net.conns, update_freq=net.update_freq)
    for layer in config.layers.values():
        if layer.type not in WEIGHT_LAYER_TYPES:
            continue
        for i in range(len(layer.weights)):
            for kind in ("weights", "weight_inc", "weight_gavg", "weight_g2avg"):  # gavg: superEps (§4.4)
                apart.set_array(kind, layer.name, net.array(kind, layer.name, i), i)
        for kind in ("biases", "bias_inc"):
            apart.set_array(kind, layer.name, net.array(kind, layer.name))
    unshared.extend(pairs)
    options["unshare_weights"] = ""
    return apart


def _check_grads(options: dict[str, Any], state: dict[str, Any] | None, source: Path | None, out, quiet: bool,
                 providers: list) -> Run:
    """--check-grads=1 (§C.6, engine.md §8): the numerical gradient check of every weight matrix and
    bias on one minibatch of --mini cases, instead of training. The data come from a dummy-lr-<D>
    provider (the release blanked the data path and ranges in this mode), or else from the first
    training batch of --data-path. With -f the check is made around the checkpoint's weights.
    Central differences, gradcheck's default (the release's one-sided rule is check-grads --one-sided).
    Nothing is written."""
    if options["device"] != "cpu":
        raise ReplayError("--check-grads=1 runs in the CPU engine only (it moves each weight in place through "
                          "the CPU's arrays); give --device cpu")
    dp = options["data_provider"] or None
    if not (dp or "").startswith("dummy-") and not (options["data_path"] and options["train_range"]):
        raise ReplayError("--check-grads=1 needs data: --data-provider=dummy-lr-<D> (random cases, as the release's "
                          "check used), or --data-path and --train-range (the first training batch is used)")
    batch = parse_range(options["train_range"], "train_range")[0] if options["train_range"] else 1
    provider = make_provider(dp, options["data_path"] or "", [batch], crop_border=options["crop_border"],
                             scalar_mean=bool(options["scalar_mean"]))
    providers.append(provider)
    rng = batch_rng(options["seed"], 1, batch)
    matrices = provider.get_batch(batch, rng=rng) if hasattr(provider, "num_views") else provider.get_batch(batch)
    data = [np.ascontiguousarray(m[:, :options["mini"]]) for m in matrices]
    side = int(round((provider.get_data_dims(0) / 3) ** 0.5))
    config, _ = load_config(options["layer_def"], options["layer_params"], image_size=(3, side, side),
                            num_gpus=_gpus(options)[1] or None, **data_facts(provider))
    # with -f the copies the run made; new ones (--unshare-weights) would not fit the checkpoint
    config = _unshare(config, [tuple(pair) for pair in state.get("unshared", [])] if state is not None
                      else parse_unshare(options["unshare_weights"] or ""))

    def load(net: EngineNet) -> None:
        assert source is not None and state is not None
        if state.get("release"):
            load_release_checkpoint(source, net)
        else:
            ckpt.load_checkpoint(source, net)

    checks = check_gradients(config, data, seed=options["seed"], load=load if state is not None else None)
    if not quiet:
        for c in checks:
            print(c.text(), file=out)
    print(f"Gradient check on {data[0].shape[1]} cases: {summary(checks)}", file=out, flush=True)
    return Run(options, None, 0, 0, 0, grad_checks=checks)


_CHECKPOINT_NAME = re.compile(r"\d+\.\d+\.npz")  # what _save writes: <epoch>.<batchnum>.npz
_LEDGER = ".checkpoints-written"  # in a run folder: the checkpoints this run wrote there, one per line


def _save(net: EngineNet, run: Run, log: _Log) -> Path:
    path = run.folder / f"{run.epoch}.{run.batchnum}.npz"
    # The ledger names the checkpoint before it exists, so that a kill between the two writes
    # cannot leave a checkpoint of this run that the rotation would never delete.
    ledger = run.folder / _LEDGER
    written = [n for n in (ledger.read_text().split() if ledger.is_file() else []) if n != path.name] + [path.name]
    atomic_write_text(ledger, "".join(n + "\n" for n in written))
    options = {k: v for k, v in run.options.items() if not k.startswith("_")}
    ckpt.save_checkpoint(path, net, {"epoch": run.epoch, "batchnum": run.batchnum,
                                     "batches_done": run.batches_done, "options": options,
                                     "last_test": run.options.get("_last_test"),
                                     "test_outputs": run.options.get("_test_history", []),
                                     "history": run.options["_history"].to_state(),
                                     "unshared": [list(p) for p in run.options.get("_unshared", [])]},
                         compress=bool(run.options["zip_save"]))  # --zip-save=1: deflated
    # §C.7: delete the oldest checkpoints (natural order) while they exceed --max-filesize MB,
    # never the one just written; 0 keeps only the newest. Only the checkpoints this run wrote
    # into its folder count and go (the folder's ledger lists them): the checkpoint a run was
    # resumed from out of another folder, a user's copy, best.npz or embeddings.npz all stay.
    files = sorted((run.folder / n for n in written if _CHECKPOINT_NAME.fullmatch(n) and (run.folder / n).is_file()),
                   key=natural_key)
    limit = run.options["max_filesize"] * 2**20
    total = sum(f.stat().st_size for f in files)
    kept = set(written)
    for older in files:
        if older == path or total <= limit:
            break
        total -= older.stat().st_size
        kept.discard(older.name)
        older.unlink()
    atomic_write_text(ledger, "".join(n + "\n" for n in written if n in kept))
    run.options["_last_saved"] = str(path)
    log("-" * 24 + f"\nSaved checkpoint to {path}\n" + "=" * 24)
    return path
