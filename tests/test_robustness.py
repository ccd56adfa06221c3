"""Nothing lost, nothing half-done, one run per folder (issue 13): the classes of failure
the bad-input corpus (test_bad_inputs.py) cannot show by one command each."""

from __future__ import annotations

import errno
import io
import sys
from pathlib import Path

import numpy as np
import pytest

from alexnet_replay.cli import main
from alexnet_replay.errors import ReplayError, quote
from alexnet_replay.files import FolderLock
from alexnet_replay.harness import make_batches

sys.path.insert(0, str(Path(__file__).resolve().parent / "bad_inputs"))
from common import PARAMS, TRAIN_ARGS, valid_files  # noqa: E402

HIDDEN = [".alexnet-replay.lock", ".checkpoints-written"]


@pytest.fixture
def small(tmp_path, monkeypatch):
    """The corpus's small valid net and data, in the working folder."""
    for rel, content in valid_files().items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_folder(save: Path) -> Path:
    (folder,) = save.iterdir()
    return folder


def train_args(*extra: str) -> list[str]:
    return [*TRAIN_ARGS, "--test-freq", "1", "--epochs", "3", *extra]


def test_rotation_deletes_only_the_checkpoints_this_run_wrote(small, capsys):
    assert main(train_args()) == 0
    folder = run_folder(small / "runs")
    assert sorted(p.name for p in folder.iterdir()) == HIDDEN + ["4.1.npz"]  # --max-filesize 0: the newest only
    # a folder holding a user's files, named as checkpoints are or not, and a checkpoint to resume from
    keep = small / "keep"
    keep.mkdir()
    (keep / "x.npz").write_bytes((folder / "4.1.npz").read_bytes())
    for name in ("best.npz", "embeddings.npz", "0.1.npz", "3.9.npz"):
        (keep / name).write_bytes(b"a user's file")
    assert main(["train", "-f", str(keep / "x.npz"), "--epochs", "5"]) == 0
    names = sorted(p.name for p in keep.iterdir())
    assert names == HIDDEN + ["0.1.npz", "3.9.npz", "6.1.npz", "best.npz", "embeddings.npz", "x.npz"]
    assert (keep / ".checkpoints-written").read_text() == "6.1.npz\n"
    capsys.readouterr()


def test_non_finite_training_stops_before_saving_and_leaves_no_folder(small, capsys):
    (small / "hot.cfg").write_text(PARAMS.replace("epsW=0.001", "epsW=1e30"))
    assert main(train_args("--layer-params", "hot.cfg")) == 1
    err = capsys.readouterr().err
    assert err.startswith("alexnet-replay: error: cost 'logprob' is not finite ([nan, ")
    assert err.endswith("training diverged, or the data or the parameters hold NaN or infinite values; nothing was "
                        "saved after it\n")
    assert not (small / "runs").exists()  # the failed run's folder is gone, and the --save-path it made


def test_non_finite_weights_stop_a_run_even_when_the_costs_look_finite(small):
    """Max pooling can turn NaN into numbers: the weights themselves are checked."""
    from alexnet_replay import load
    from alexnet_replay.harness.driver import Run, _stop_if_not_finite

    net = load("layers.cfg", "params.cfg", image_size=(3, 8, 8), minibatch=4)
    run = Run({"_last_saved": "runs/x/2.1.npz"}, None, 3, 1, 9)
    _stop_if_not_finite(net, run)  # finite: nothing happens
    w = net.weights("fc2")
    w[5, 2] = np.nan
    net.set_weights("fc2", w)
    with pytest.raises(ReplayError) as err:
        _stop_if_not_finite(net, run)
    assert str(err.value) == ("batch 3.1: fc2/weights/0 hold NaN or infinite values: training diverged, or the data "
                              "or the parameters hold such values; the last checkpoint, runs/x/2.1.npz, was "
                              "written before")


def test_a_second_run_in_a_folder_is_refused_naming_the_first(small, capsys):
    assert main(train_args()) == 0
    folder = run_folder(small / "runs")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}
    with FolderLock(folder, "a stand-in for a running train"):
        assert main(["train", "-f", str(folder), "--epochs", "4"]) == 1
    err = capsys.readouterr().err
    assert f"{folder}: in use by 'pid " in err and "a stand-in for a running train" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")} == before
    assert main(["train", "-f", str(folder), "--epochs", "4"]) == 0  # released: it runs


def test_a_second_schedule_on_one_out_is_refused(small, capsys):
    (small / "one.sh").write_text("python convnet.py " + " ".join(TRAIN_ARGS[1:]).replace(" runs", " x") + "\n")
    out = small / "out"
    out.mkdir()
    with FolderLock(out, "schedule run tiny (the test's)"):
        assert main(["schedule", "run", "one.sh", "--out", "out"]) == 1
    assert "in use by" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".alexnet-replay.lock"]


def test_a_killed_writes_temporary_is_removed_on_resume(small, capsys):
    assert main(train_args()) == 0
    folder = run_folder(small / "runs")
    stale = folder / ".4.1.npz.k2j3h4.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert main(["train", "-f", str(folder), "--epochs", "4"]) == 0
    assert not stale.exists()
    assert sorted(p.name for p in folder.iterdir()) == HIDDEN + ["5.1.npz"]
    capsys.readouterr()


def test_paths_are_stored_resolved_so_a_run_resumes_from_anywhere(small, capsys, monkeypatch):
    assert main(train_args()) == 0  # relative --layer-def, --data-path, --save-path
    folder = run_folder(small / "runs")
    elsewhere = small / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # the same definition file, named absolutely: the same file, so not a change of a set-once option
    assert main(["train", "-f", str(folder), "--layer-def", str(small / "layers.cfg"), "--epochs", "4"]) == 0
    from alexnet_replay.harness import checkpoint as ckpt

    meta, _ = ckpt.read_checkpoint(folder / "5.1.npz")
    assert meta["state"]["options"]["layer_def"] == str(small / "layers.cfg")
    assert meta["state"]["options"]["data_path"] == str(small / "data")
    (small / "other.cfg").write_text((small / "layers.cfg").read_text())
    with pytest.raises(ReplayError, match="--layer-def is set once"):
        from alexnet_replay.harness.driver import train
        from alexnet_replay.harness.options import add_train_arguments
        import argparse

        parser = argparse.ArgumentParser()
        add_train_arguments(parser)
        train(parser.parse_args(["-f", str(folder), "--layer-def", str(small / "other.cfg")]), out=io.StringIO())
    capsys.readouterr()


def test_make_batches_on_a_full_disk_leaves_no_folder(tmp_path, monkeypatch):
    written = []

    def full(path, *args, **kwargs):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(path)
        Path(path).write_bytes(b"batch")

    monkeypatch.setattr(make_batches, "write_batch", full)
    with pytest.raises(OSError):
        make_batches.write_folder_atomically(tmp_path / "digits", lambda d: make_batches.digits_batches(d, seed=0))
    assert list(tmp_path.iterdir()) == []  # no data folder without batches.meta, no temporary folder
    assert written  # it did fail part-way


def test_the_cli_says_a_full_disk_in_one_line(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "digits" / "data_batch_2"))

    monkeypatch.setattr(make_batches, "write_batch", full)
    assert main(["make-batches", str(tmp_path / "digits"), "--digits"]) == 1
    err = capsys.readouterr().err
    assert err == (f"alexnet-replay: error: '{tmp_path / 'digits' / 'data_batch_2'}': no space left on the device; "
                   "nothing was left half-written\n")
    assert list(tmp_path.iterdir()) == []


def test_untrusted_text_is_quoted_escaped_and_bounded():
    assert quote("conv1") == "'conv1'"
    assert quote("a\x1b[2Jb\nc\u202ed'e") == "'a\\x1b[2Jb\\nc\\u202ed\\'e'"
    assert quote("x" * 100, 10) == "'xxxxxxxxxx'... (100 characters)"
    assert quote("épée") == "'épée'"


def test_option_bounds_are_checked_for_stored_options_too():
    """An edited checkpoint's options meet the same bounds as the command line's."""
    from alexnet_replay.harness import options

    for bad, message in [({"mini": "128"}, "--mini: expected an integer, got text '128'"),
                         ({"seed": -1}, "--seed=-1: must be from 0 to 4294967295"),
                         ({"color_noise": float("nan")}, "--color-noise=nan: must be finite and at least 0.0"),
                         ({"layer_def": None, "data_path": 3}, "--data-path: expected text, got 3"),
                         ({"epochs": [1]}, "--epochs: expected an integer, got a list")]:
        opts = {k: d for k, (_, d) in options.OPTIONS.items()}
        opts.update(bad)
        with pytest.raises(ReplayError) as err:
            options.check_values(opts)
        assert str(err.value) == message


def test_a_new_run_removes_run_folders_killed_before_their_first_checkpoint(small, capsys):
    runs = small / "runs"
    abandoned, alive, kept = (runs / f"ConvNet__2020-01-0{i}_00.00.00" for i in (1, 2, 3))
    for folder in (abandoned, alive, kept):
        folder.mkdir(parents=True)
        (folder / ".alexnet-replay.lock").write_text("pid 1 on a machine that was switched off")
        (folder / ".1.5.npz.x7.tmp").write_bytes(b"half")
    (kept / "1.5.npz").write_bytes(b"a checkpoint")
    with FolderLock(alive, "a run in progress"):
        assert main(train_args()) == 0
    assert not abandoned.exists()
    assert sorted(p.name for p in alive.iterdir()) == [".1.5.npz.x7.tmp", ".alexnet-replay.lock"]
    assert sorted(p.name for p in kept.iterdir()) == [".1.5.npz.x7.tmp", ".alexnet-replay.lock", "1.5.npz"]
    assert len(list(runs.iterdir())) == 3  # alive, kept and the new run
    capsys.readouterr()
