"""`alexnet-replay demo`: digits in the CIFAR format, training through the driver, a test, a parity
check, and where everything went. The full demo (15 epochs, >= 95% test accuracy) runs under
ALEXNET_SLOW=1; the default test runs it for one epoch and checks the plumbing."""

from __future__ import annotations

import json
import os

import pytest

from alexnet_replay.cli import main
from alexnet_replay.harness import checkpoint as ckpt
from alexnet_replay.harness.batches import read_meta

pytest.importorskip("sklearn", reason="scikit-learn (a test extra) ships the digits")


def test_quick_demo_writes_every_output(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch", reason="the parity check needs the PyTorch port")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == "alexnet-replay demo summary" and summary["epochs"] == 1 and summary["quick"]
    # the data folder in the release's CIFAR format: 5 training batches and a test batch (§D.3)
    meta = read_meta(out / "data")
    assert meta.num_vis == 3 * 32 * 32 and meta.num_classes == 10 and meta.dp_type == "cifar"
    assert sorted(p.name for p in (out / "data").glob("data_batch_*")) == [f"data_batch_{k}" for k in range(1, 7)]
    # one checkpoint (the last test's, §C.7), of the demo's network, after epoch 1's 5 batches
    checkpoint = out / summary["checkpoint"] if not os.path.isabs(summary["checkpoint"]) else summary["checkpoint"]
    meta_ck, _ = ckpt.read_checkpoint(checkpoint)
    assert str(checkpoint).endswith("1.5.npz") and meta_ck["state"]["batches_done"] == 5
    assert meta_ck["params_file"].endswith("cifar-18pct-demo.params.cfg")
    log = (out / "log.txt").read_text()
    assert "1.1... logprob:" in log and "2.1... logprob:" in log and "Test output: logprob:" in log
    # the test pass is the release's --test-only over the whole test range
    assert 0.0 <= summary["test_error"] <= 1.0 and summary["test_accuracy"] == pytest.approx(1 - summary["test_error"])
    assert summary["parity"]["ran"] and summary["parity"]["passed"]
    assert {p.name for p in (out / "parity").iterdir()} >= {"report.json", "report.md", "report.html"}
    assert f"outputs in {out}" in text and "parity of engine and PyTorch port: passed" in text
    # the run's curves and first-layer filters (show --cost --filters conv1), and where they are
    figures = summary["figures"]
    assert figures["ran"] and f"training curves in {out / 'show' / 'cost.png'}" in text
    cost = json.loads((out / "show" / "cost.json").read_text())
    assert [t[0] for t in cost["test"]] == [5] and len(cost["train"]) == 5   # one test, after batch 5 of 5
    assert (out / "show" / "filters.png").read_bytes()[:4] == b"\x89PNG" and "base64," in \
        (out / "show" / "show.html").read_text()
    # running it again into the same folder, named relative to the working folder as a new user's
    # default is, starts clean: still one run folder, one checkpoint
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", "demo", "--quick", "--seed", "1", "--no-parity", "--quiet"]) == 0
    assert len(list((out / "runs").glob("ConvNet__*/*.npz"))) == 1
    assert capsys.readouterr().out.startswith("test accuracy ")


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path), "--quick", "--no-parity"]) == 1
    assert "folder is not empty and holds no earlier demo" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


@pytest.mark.skipif(os.environ.get("ALEXNET_SLOW") != "1", reason="the full demo takes minutes: ALEXNET_SLOW=1")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_demo_reaches_95_percent(tmp_path, seed):
    from alexnet_replay.harness.demo import run_demo

    summary = run_demo(tmp_path / "demo", seed=seed, parity=False, quiet=True)
    assert summary["test_accuracy"] >= 0.95, summary
