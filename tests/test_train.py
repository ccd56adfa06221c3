"""`alexnet-replay train`: the driver's loop, log lines, stop rule, checkpoints, exact resume."""

from __future__ import annotations

import argparse
import io
import re
import sys

import numpy as np
import pytest

from alexnet_replay import networks
from alexnet_replay.errors import ReplayError
from alexnet_replay.harness.driver import train
from alexnet_replay.harness.options import add_train_arguments, parse_range

DEMO_PARAMS = networks.bundled("cifar-18pct").params.read_text().replace("epsW=0.001", "epsW=0.01")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("sklearn", reason="scikit-learn (a test extra) renders the digits")
    from alexnet_replay.harness.make_batches import digits_batches

    folder = tmp_path_factory.mktemp("digits")
    digits_batches(folder, seed=0)
    params = folder / "params.cfg"
    params.write_text(DEMO_PARAMS)
    return folder, params


def args_for(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(argv)


def common(digits, save, *extra):
    folder, params = digits
    return args_for("--data-path", str(folder), "--save-path", str(save), "--train-range", "1-5",
                    "--test-range", "6", "--layer-def", str(networks.bundled("cifar-18pct").layers),
                    "--layer-params", str(params), "--test-freq", "5", "--mini", "128", "--seed", "3", *extra)


def test_stop_rule_log_and_checkpoint(digits, tmp_path):
    log = io.StringIO()
    run, _ = train(common(digits, tmp_path, "--epochs=1"), out=log)
    lines = log.getvalue().splitlines()
    # all of epoch 1 and the first batch of epoch 2 (driver.md §C.4), then no save
    trained = [l.split("...")[0] for l in lines if "..." in l]
    assert trained == ["1.1", "1.2", "1.3", "1.4", "1.5", "2.1"]
    assert (run.epoch, run.batchnum) == (2, 1)
    assert any(l.startswith("Test output: logprob:") for l in lines)
    saved = list(run.folder.glob("*.npz"))
    assert [p.name for p in saved] == ["1.5.npz"]  # the test's checkpoint; the last batch is not saved
    assert run.folder.name.startswith("ConvNet__")


def test_killed_run_resumes_to_bit_identical_weights(digits, tmp_path):
    _, whole = train(common(digits, tmp_path / "a", "--epochs=2"), out=io.StringIO())
    first, _ = train(common(digits, tmp_path / "b", "--epochs=1"), out=io.StringIO())
    # the first run stopped one batch into epoch 2; resume from its last checkpoint
    _, resumed = train(args_for("-f", str(first.folder), "--epochs=2"), out=io.StringIO())
    for name in ("conv1", "conv2", "conv3", "fc10"):
        assert np.array_equal(whole.weights(name), resumed.weights(name)), name
        assert np.array_equal(whole.weight_inc(name), resumed.weight_inc(name)), name


def test_set_once_options_and_missing_options(digits, tmp_path):
    first, _ = train(common(digits, tmp_path, "--epochs=1"), out=io.StringIO())
    with pytest.raises(ReplayError, match="--crop-border is set once"):
        train(args_for("-f", str(first.folder), "--crop-border=2"), out=io.StringIO())
    with pytest.raises(ReplayError, match="missing options: --layer-def"):
        train(args_for("--data-path", "x"), out=io.StringIO())


def test_ranges():
    assert parse_range("1-5", "train_range") == [1, 2, 3, 4, 5]
    assert parse_range("6", "test_range") == [6]
    with pytest.raises(ReplayError, match="--train-range: expected a range"):
        parse_range("5-1", "train_range")


def cli_argv(digits, save, *extra):
    folder, params = digits
    return ["train", "--data-path", str(folder), "--save-path", str(save), "--train-range", "1-5", "--test-range",
            "6", "--layer-def", "cifar-18pct", "--layer-params", str(params), "--test-freq", "5", "--mini", "128",
            "--seed", "3", *extra]


def test_output_without_a_terminal_quiet_and_with_one(digits, tmp_path, capsys, monkeypatch):
    from alexnet_replay.cli import main

    assert main(cli_argv(digits, tmp_path / "a", "--epochs=1")) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    # not a terminal: the release's lines on stdout (§C.4), no progress bar anywhere
    assert [l.split("...")[0] for l in lines if "..." in l] == ["1.1", "1.2", "1.3", "1.4", "1.5", "2.1"]
    assert all(re.fullmatch(r"\d\.\d\.\.\. logprob:  [0-9.]+, [0-9.]+, [0-9.]+ \(\d+\.\d\d sec\)", l)
               for l in lines if "..." in l and not l.startswith("1.5"))
    assert err == ""
    assert main(cli_argv(digits, tmp_path / "b", "--epochs=1", "--quiet")) == 0
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 1          # only the final result
    assert re.fullmatch(r"Stopped after 2\.1; last test output: logprob:  [0-9.]+, [0-9.]+, [0-9.]+; "
                        r"last checkpoint: .*1\.5\.npz\n", out)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)   # a terminal: tqdm's bar on stderr
    assert main(cli_argv(digits, tmp_path / "c", "--epochs=1")) == 0
    out, err = capsys.readouterr()
    assert "images/s" in err and "6/6" in err and "batch" in err
    assert "images/s" not in out and out.count("...") == 6


def test_parameter_file_that_does_not_match_is_refused_and_nothing_written(digits, tmp_path, capsys):
    from alexnet_replay.cli import main

    folder, params = digits
    text = params.read_text()
    missing = tmp_path / "missing.cfg"
    missing.write_text(re.sub(r"\[conv2\][^\[]*", "", text))
    too_long = tmp_path / "long.cfg"
    too_long.write_text(text.replace("epsW=0.01", "epsW=0.01,0.01", 1))
    argv = cli_argv((folder, missing), tmp_path / "save", "--epochs=1")
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"alexnet-replay: error: {missing}: [conv2]: a conv layer needs a section "
                                       "[conv2] in the parameter file\n")
    assert not (tmp_path / "save").exists()
    first, _ = train(common(digits, tmp_path / "run", "--epochs=1"), out=io.StringIO())
    saved = first.folder / "1.5.npz"
    before = saved.read_bytes()
    assert main(["train", "-f", str(first.folder), "--layer-params", str(too_long)]) == 2   # §B.5: re-read on resume
    err = capsys.readouterr().err
    assert err.startswith(f"alexnet-replay: error: {too_long}: line ") and "[conv1] key 'epsW'" in err
    # the checkpoint, the run's lock and its ledger of checkpoints written (harness/driver.py)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in first.folder.iterdir()) == [".alexnet-replay.lock", ".checkpoints-written", "1.5.npz"]


def test_resume_from_a_release_checkpoint(digits, tmp_path):
    """-f takes the release's pickle too (§C.7): converted from our checkpoint, resuming from
    it ends where resuming from ours does, bit for bit."""
    from alexnet_replay.harness.checkpoint import convert_checkpoint

    first, _ = train(common(digits, tmp_path / "a", "--epochs=1"), out=io.StringIO())
    release = tmp_path / "rel" / "1.5"
    release.parent.mkdir()
    convert_checkpoint(first.folder / "1.5.npz", release)
    _, ours = train(args_for("-f", str(first.folder), "--epochs=2"), out=io.StringIO())
    run, theirs = train(args_for("-f", str(release.parent), "--epochs=2"), out=io.StringIO())
    assert run.folder == release.parent and (run.epoch, run.batchnum) == (3, 1)
    for name in ("conv1", "conv2", "conv3", "fc10"):
        assert np.array_equal(ours.weights(name), theirs.weights(name)), name
