"""`alexnet-replay train` with the rest of the release's options (driver.md §C.2, §C.4, §C.5,
§A.7): the 2012 command lines run as written, the test block (Averages, weight lines),
--test-only's per-batch lines, --test-out's prediction files, --gpu/--num-gpus, --zip-save,
--conserve-mem, --check-grads, --unshare-weights and the refusal of --conv-to-local.

The network is the project's own small one (DEF below: two fc layers and a third that shares
the second's matrix), trained on the digits data set, so each run takes seconds.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import shlex
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from alexnet_replay.cli import main
from alexnet_replay.engine import EngineNet
from alexnet_replay.errors import ReplayError
from alexnet_replay.harness.batches import read_batch
from alexnet_replay.harness.checkpoint_format import natural_key
from alexnet_replay.harness.checkpoint import load_checkpoint, read_checkpoint
from alexnet_replay.harness.driver import cuda_positions, export_gpu_ids, train
from alexnet_replay.harness.options import HELP, OPTIONS, add_train_arguments
from alexnet_replay.harness.pickles import load_pickle
from alexnet_replay.harness.providers import make_provider, minibatches
from alexnet_replay.original.notes import comment_lines
from alexnet_replay.original.shownet import load as load_config

F32 = np.float32

DEF = """
[data]
type=data
dataIdx=0

[labels]
type=data
dataIdx=1

[fc1]
type=fc
inputs=data
outputs=16
initW=0.01
neuron=relu
gpu=0

[fc1b]
type=fc
inputs=fc1
outputs=16
initW=0.1
neuron=relu

[fc2]
type=fc
inputs=fc1b
outputs=16
initW=0.1
weightSource=fc1b
neuron=relu

[fc10]
type=fc
inputs=fc2
outputs=10
initW=0.1

[probs]
type=softmax
inputs=fc10

[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""
PARAMS = "".join(f"[{n}]\nepsW=0.01\nepsB=0.02\nmomW=0.9\nmomB=0.9\nwc=0.0005\n\n"
                 for n in ("fc1", "fc1b", "fc2", "fc10")) + "[logprob]\ncoeff=1\ntopk=2\n"
# for --check-grads: no kinks (relu) and no shared matrix, so the release's one-sided check passes
GC_DEF = """
[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
[fc10]
type=fc
inputs=data
outputs=10
initW=0.3
gpu=0
[probs]
type=softmax
inputs=fc10
[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""
RUN = ("--train-range=1-4", "--test-range=5-6", "--test-freq=2", "--mini=64", "--seed=5")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits data set (batches 1-5 train, 6 test, 3x32x32, cifar-cropped) and the small network."""
    pytest.importorskip("sklearn", reason="scikit-learn (a test extra) renders the digits")
    from alexnet_replay.harness.make_batches import digits_batches

    folder = tmp_path_factory.mktemp("digits")
    digits_batches(folder / "data", seed=0)
    (folder / "net.cfg").write_text(DEF)
    (folder / "params.cfg").write_text(PARAMS)
    (folder / "gc.cfg").write_text(GC_DEF)
    return folder


def visible(folder: Path) -> list[str]:
    """The files of a run folder but its lock and its ledger of checkpoints (harness/driver.py)."""
    names = sorted(p.name for p in folder.iterdir())
    assert {n for n in names if n.startswith(".")} <= {".alexnet-replay.lock", ".checkpoints-written"}, names
    return [n for n in names if not n.startswith(".")]


def fresh(digits, save, *extra: str) -> list[str]:
    return [f"--data-path={digits / 'data'}", f"--save-path={save}", f"--layer-def={digits / 'net.cfg'}",
            f"--layer-params={digits / 'params.cfg'}", *RUN, *extra]


def args_for(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(argv)


def costs_of(line: str, label: str) -> list[float]:
    m = re.fullmatch(rf"{label}: logprob:  ([0-9.]+), ([0-9.]+), ([0-9.]+)", line)
    assert m, line
    return [float(v) for v in m.groups()]


def expected_weight_lines(checkpoint) -> list[str]:
    """The block's weight lines from the checkpoint's arrays, layers in sorted name order."""
    _, arrays = read_checkpoint(checkpoint)

    def mean(key: str) -> float:
        return np.mean(np.abs(arrays[key]), dtype=np.float64)

    out = []
    for name in sorted(["fc1", "fc1b", "fc2", "fc10"]):
        owner = "fc1b" if name == "fc2" else name  # fc2's matrix is fc1b's (weightSource), stored once
        out += [f"Layer '{name}' weights[0]: {mean(f'{owner}/weights/0'):e} [{mean(f'{owner}/weights_inc/0'):e}]",
                f"Layer '{name}' biases: {mean(f'{name}/biases'):e} [{mean(f'{name}/biases_inc'):e}]"]
    return out


def multiview_by_hand(digits, checkpoint, batch: int, views: bool) -> tuple[float, float, float, int]:
    """(nll sum, top-1 errors, top-2 errors, cases) of one test batch, from the checkpoint's net:
    each view in minibatches of 64, softmax outputs averaged in view order in float32 (§C.5)."""
    config, _ = load_config(str(digits / "net.cfg"), str(digits / "params.cfg"), image_size=(3, 24, 24))
    net = EngineNet(config, 64, 0)
    load_checkpoint(checkpoint, net)
    dp = make_provider(None, digits / "data", [5, 6], test=True, multiview=views, crop_border=4)
    x, lab = dp.get_batch(batch)[:2]
    v = getattr(dp, "num_views", 1)
    n = x.shape[1] // v
    assert v == (9 if views else 1)  # CIFAR: 9 unflipped positions (§G.9)
    probs = []
    for k in range(v):
        for part in minibatches([x[:, k * n:(k + 1) * n], lab[:, :n]], 64):
            net.forward(part, train=False)
            probs.append(np.array(net.acts("probs")))
    p = np.concatenate(probs, axis=1).reshape(10, v, n)
    avg = p[:, 0].copy()
    for k in range(1, v):
        avg += p[:, k]
    if v > 1:
        avg *= F32(1.0 / v)
    labels = lab[0, :n].astype(int)
    assert np.array_equal(labels, read_batch(digits / "data", batch).labels)
    pl = avg[labels, np.arange(n)]
    nll = -float(np.sum(np.log(pl).astype(np.float64)))
    top1 = float(np.sum(pl < avg.max(axis=0)))
    top2 = float(np.sum((avg > pl).sum(axis=0) >= 2))
    return nll, top1, top2, n


def test_release_command_lines_from_the_notes_run_as_written(release, digits, tmp_path, capsys):
    """The two test commands in the closing notes of layer-params-141-2009.cfg, as written:
    ``python convnet.py -f <run> --test-only=1 --test-one=0 --multiview-test=1`` (and =0). Only
    the -f folder (the author's /nobackup/... run) is replaced, by a run of the small network on
    the digits, since the 141 net and its ImageNet data are far too big for a test. No command
    line in the notes of the release's files gives --gpu or --num-gpus; the next test runs them
    in the release's spelling."""
    notes = (release / "layers" / "layer-params-141-2009.cfg").read_text(encoding="latin1")
    commands = [shlex.split(text) for _, text in comment_lines(notes) if "convnet.py" in text]
    assert [c[-1] for c in commands] == ["--multiview-test=1", "--multiview-test=0"]

    run, _ = train(args_for(fresh(digits, tmp_path, "--epochs=1")), out=io.StringIO())
    checkpoint = run.folder / "1.4.npz"
    tests_so_far = read_checkpoint(checkpoint)[0]["state"]["test_outputs"]
    assert len(tests_so_far) == 2                                      # after batches 1.2 and 1.4
    for command in commands:
        assert command[:3] == ["python", "convnet.py", "-f"] and command[3].startswith("/nobackup/kriz/tmp/ConvNet__")
        argv = ["train", "-f", str(run.folder), *command[4:]]          # the rest as written
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert err == ""
        resumed, *lines = out.splitlines()
        assert resumed == f"Resumed from {checkpoint} (epoch 1, batch 4)"
        multiview = command[-1] == "--multiview-test=1"
        # --test-one=0: every test batch, one line each (§C.5), then the test block
        assert [l.split(":")[0] for l in lines[:2]] == ["batch 5", "batch 6"]
        sums, cases = [], []
        for b, line in zip((5, 6), lines[:2]):
            got, n = ast.literal_eval(line.split(": ", 1)[1])
            assert list(got) == ["logprob"]
            nll, top1, top2, want_n = multiview_by_hand(digits, checkpoint, b, multiview)
            assert n == want_n == len(read_batch(digits / "data", b).labels)
            assert got["logprob"][0] == pytest.approx(nll, rel=1e-6)
            assert got["logprob"][1:] == [top1, top2]
            sums.append(got["logprob"])
            cases.append(n)
        assert lines[2] == "=" * 24 and lines[4] == "-" * 24
        total = [sum(s[k] for s in sums) / sum(cases) for k in range(3)]
        assert lines[3] == "Test output: logprob:  " + ", ".join(f"{v:.6f}" for v in total)
        # Averages: the last len(test range) = 2 tests, the checkpoint's last one and this one
        want = [(tests_so_far[-1]["logprob"][k] + total[k]) / 2 for k in range(3)]
        assert costs_of(lines[5], "Averages") == pytest.approx(want, abs=6e-7)
        assert lines[6:] == expected_weight_lines(checkpoint)
        assert visible(run.folder) == ["1.4.npz"]  # a test writes no checkpoint


def test_gpu_and_num_gpus_on_a_cpu_run(digits, tmp_path, capsys):
    """--gpu=0 --num-gpus=1, as the release's command lines gave them: a CPU run trains as without
    them, with one line saying so; --num-gpus bounds the layers' gpu= keys (§A.7) on every device."""
    assert main(["train", *fresh(digits, tmp_path / "a", "--epochs=1"), "--gpu=0", "--num-gpus=1"]) == 0
    with_gpus = capsys.readouterr().out.splitlines()
    assert with_gpus[0] == ("Note: --gpu=0 --num-gpus=1 select CUDA devices; this run is on the CPU (--device cpu), "
                            "so they only bound the layers' gpu= keys to 0..0")
    assert main(["train", *fresh(digits, tmp_path / "b", "--epochs=1")]) == 0
    without = capsys.readouterr().out.splitlines()

    def strip(lines: list[str]) -> list[str]:  # times and run folders differ
        return [re.sub(r" ?\(\d+\.\d\d sec\)|Saved checkpoint to .*", "", l) for l in lines]

    assert strip(with_gpus[1:]) == strip(without) and len(without) == 37
    (folder,) = (tmp_path / "a").iterdir()
    options = read_checkpoint(folder / "1.4.npz")[0]["state"]["options"]
    assert (options["gpu"], options["num_gpus"]) == ("0", 1)            # stored, as the release kept them

    two_towers = tmp_path / "two.cfg"
    two_towers.write_text(DEF.replace("[fc10]\ntype=fc\ninputs=fc2", "[fc10]\ntype=fc\ngpu=1\ninputs=fc2"))
    argv = ["train", *fresh(digits, tmp_path / "c", "--epochs=1"), f"--layer-def={two_towers}"]
    for extra, code, message in [
        (["--num-gpus=1"], 2, "[fc10] key 'gpu': parameter 'gpu' must be one of 0..0"),
        (["--gpu=0,1", "--num-gpus=1"], 1, "--gpu=0,1 names 2 device(s) but --num-gpus=1: give one id (or -1) "
                                           "for each GPU"),
        (["--gpu=0,x"], 1, "--gpu: expected device ids separated by commas, such as 0 or 0,1 (-1: any), got '0,x'"),
        (["--gpu=1,1"], 1, "--gpu=1,1: a device appears twice"),
    ]:
        assert main(argv + extra) == code
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("alexnet-replay: error: ") and message in err, err
    assert not (tmp_path / "c").exists()                                # refused before anything is written
    assert main(argv + ["--gpu=0,1", "--epochs=1"]) == 0                # two ids: two GPUs, gpu=1 allowed
    assert capsys.readouterr().out.startswith("Note: --gpu=0,1 select CUDA devices")


def test_cuda_device_ids(monkeypatch):
    """The engine uses the first N devices CUDA shows; --gpu ids are those, or refused with the fix."""
    assert cuda_positions([], None) == [] and cuda_positions([-1, -1], None) == [0, 1]
    assert cuda_positions([0, 1], None) == [0, 1]
    assert cuda_positions([2, 3], ["2", "3"]) == [0, 1]
    assert cuda_positions([3], ["3", "1"]) == [0]
    with pytest.raises(ReplayError, match=r"--gpu=2,3: the engine uses the first 2 device\(s\) CUDA shows, in order; "
                                          r"run with CUDA_VISIBLE_DEVICES=2,3"):
        cuda_positions([2, 3], None)
    with pytest.raises(ReplayError, match="device 2 is not among CUDA_VISIBLE_DEVICES=0,1"):
        cuda_positions([2], ["0", "1"])
    with pytest.raises(ReplayError, match="give a device id for every GPU, or -1 for all"):
        cuda_positions([0, -1], None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    export_gpu_ids("-1")
    assert "CUDA_VISIBLE_DEVICES" not in __import__("os").environ
    export_gpu_ids("3,2")
    assert __import__("os").environ["CUDA_VISIBLE_DEVICES"] == "3,2"
    export_gpu_ids("0")                                                 # set already: left alone
    assert __import__("os").environ["CUDA_VISIBLE_DEVICES"] == "3,2"
    assert cuda_positions([3, 2], ["3", "2"]) == [0, 1]


def test_test_out_writes_the_release_prediction_files(digits, tmp_path, capsys):
    """--test-out with --logreg-name and --multiview-test (§C.5): after every test, each test batch's
    averaged probabilities in DIR/test_preds_<batch>, {'data': float32 cases x classes, 'note'}."""
    preds = tmp_path / "preds"
    argv = fresh(digits, tmp_path / "save", "--epochs=1", f"--test-out={preds}", "--logreg-name=logprob",
                 "--multiview-test=1")
    run, _ = train(args_for(argv), out=io.StringIO())
    assert sorted(p.name for p in preds.iterdir()) == ["test_preds_5", "test_preds_6"]   # no temporary files
    # the files of the last test (batch 6, after 1.4): checked against the per-batch line of a test-only run
    assert main(["train", "-f", str(run.folder), "--test-only=1"]) == 0   # --test-one=1: batch 5, written again
    (line,) = [l for l in capsys.readouterr().out.splitlines() if l.startswith("batch ")]
    sums, n = ast.literal_eval(line.split(": ", 1)[1])
    for b in (5, 6):
        got = load_pickle(preds / f"test_preds_{b}")
        assert sorted(got) == ["data", "note"] and got["note"] == f"generated from {run.folder}"
        data, labels = got["data"], read_batch(digits / "data", b).labels
        assert data.dtype == np.float32 and data.shape == (len(labels), 10) and data.flags.c_contiguous
        assert np.allclose(data.sum(axis=1), 1.0, atol=1e-5) and (data > 0).all()
        nll, top1, top2, cases = multiview_by_hand(digits, run.folder / "1.4.npz", b, views=True)
        pl = data[np.arange(len(labels)), labels]
        assert -float(np.sum(np.log(pl).astype(np.float64))) == pytest.approx(nll, rel=1e-6)
        assert float(np.sum(pl < data.max(axis=1))) == top1
        if b == 5:
            assert n == cases and sums["logprob"] == [-float(np.sum(np.log(pl).astype(np.float64))), top1, top2]

    for extra, message in [
        (["--test-out=x"], "--test-out needs --logreg-name and --multiview-test on the same command line"),
        (["--test-out=x", "--logreg-name=probs", "--multiview-test=0"],
         "--logreg-name=probs: not a cost.logreg layer of "),
        ([f"--test-out={digits / 'net.cfg'}", "--logreg-name=logprob", "--multiview-test=1"],
         f"--test-out={digits / 'net.cfg'}: cannot make the folder"),
    ]:
        assert main(["train", "-f", str(run.folder), *extra]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_zip_save_compresses_checkpoints_with_the_same_content(digits, tmp_path):
    plain, _ = train(args_for(fresh(digits, tmp_path / "a", "--epochs=1")), out=io.StringIO())
    zipped, _ = train(args_for(fresh(digits, tmp_path / "b", "--epochs=1", "--zip-save=1")), out=io.StringIO())
    a, b = plain.folder / "1.4.npz", zipped.folder / "1.4.npz"
    assert {i.compress_type for i in zipfile.ZipFile(a).infolist()} == {zipfile.ZIP_STORED}
    assert {i.compress_type for i in zipfile.ZipFile(b).infolist()} == {zipfile.ZIP_DEFLATED}
    assert b.stat().st_size < a.stat().st_size
    (meta_a, arrays_a), (meta_b, arrays_b) = read_checkpoint(a), read_checkpoint(b)
    assert arrays_a.keys() == arrays_b.keys() and all(np.array_equal(arrays_a[k], arrays_b[k]) for k in arrays_a)
    assert meta_b["state"]["options"]["zip_save"] == 1 and meta_a["state"]["test_outputs"] == \
        meta_b["state"]["test_outputs"]
    # the option persists (§C.3): the resumed run's checkpoints are compressed too
    resumed, _ = train(args_for(["-f", str(zipped.folder), "--epochs=2"]), out=io.StringIO())
    assert {i.compress_type for i in zipfile.ZipFile(resumed.folder / "2.4.npz").infolist()} == \
        {zipfile.ZIP_DEFLATED}


def test_unshare_weights_copies_a_shared_matrix_apart_once(digits, tmp_path, capsys):
    """--unshare-weights=fc2 (§A.7): fc2's matrix, shared with fc1b, becomes a copy that trains apart.
    It is applied once: the saved options hold it empty, and the checkpoint records the copy so
    that resuming rebuilds the network with it."""
    first, _ = train(args_for(fresh(digits, tmp_path, "--epochs=1")), out=io.StringIO())
    assert "fc2/weights/0" not in read_checkpoint(first.folder / "1.4.npz")[1]
    _, net = train(args_for(["-f", str(first.folder), "--unshare-weights=fc2", "--test-only=1"]), out=io.StringIO())
    assert net.config.layers["fc2"].weight_sources == [None]
    assert np.array_equal(net.weights("fc2"), net.weights("fc1b"))
    assert np.array_equal(net.weight_inc("fc2"), net.weight_inc("fc1b"))
    assert net.weights("fc2").ctypes.data != net.weights("fc1b").ctypes.data

    run, net = train(args_for(["-f", str(first.folder), "--unshare-weights=fc2[0]", "--epochs=2"]),
                     out=io.StringIO())
    assert not np.array_equal(net.weights("fc2"), net.weights("fc1b"))
    meta, arrays = read_checkpoint(run.folder / "2.4.npz")
    assert meta["state"]["unshared"] == [["fc2", 0]] and meta["state"]["options"]["unshare_weights"] == ""
    assert not np.array_equal(arrays["fc2/weights/0"], arrays["fc1b/weights/0"])
    again, net3 = train(args_for(["-f", str(run.folder), "--epochs=3"]), out=io.StringIO())  # rebuilt with the copy
    assert net3.config.layers["fc2"].weight_sources == [None]
    assert read_checkpoint(again.folder / "3.4.npz")[0]["state"]["unshared"] == [["fc2", 0]]

    for spec, message in [("fc1", "matrix 0 of layer 'fc1' is its own already"),
                          ("nolayer", "has no weight layer 'nolayer'"),
                          ("fc2[1]", "layer 'fc2' has weight matrices 0..0, not 1"),
                          ("fc2[", "expected LAYER or LAYER[index]")]:
        assert main(["train", "-f", str(first.folder), f"--unshare-weights={spec}"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert visible(first.folder) == ["3.4.npz"]  # one folder; the refusals wrote nothing


def test_check_grads_runs_the_gradient_check_instead_of_training(digits, tmp_path, capsys, monkeypatch):
    """--check-grads=1 (§C.6) with the dummy provider: no data path, save path or ranges (§C.1);
    the lines are those of the engine's check on the provider's first 5 cases; nothing is written."""
    from alexnet_replay.gradcheck import check_gradients
    from alexnet_replay.harness.providers import batch_rng

    monkeypatch.chdir(tmp_path)
    argv = ["train", "--check-grads=1", "--data-provider=dummy-lr-12", f"--layer-def={digits / 'gc.cfg'}",
            f"--layer-params={digits / 'params.cfg'}", "--mini=5", "--seed=2"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    dp = make_provider("dummy-lr-12", "", [1])
    data = [np.ascontiguousarray(m[:, :5]) for m in dp.get_batch(1, rng=batch_rng(2, 1, 1))]
    config, _ = load_config(str(digits / "gc.cfg"), str(digits / "params.cfg"), image_size=(3, 2, 2))
    checks = check_gradients(config, data, seed=2)
    assert [c.what for c in checks] == ["weights[0]", "biases"] and all(c.passed for c in checks)
    assert lines == [c.text() for c in checks] + [
        "Gradient check on 5 cases: 2 of 2 matrices within 2% (central differences)"]
    assert list(tmp_path.iterdir()) == []

    assert main(argv[:2] + argv[3:]) == 1                               # no data at all
    assert "--check-grads=1 needs data: --data-provider=dummy-lr-<D>" in capsys.readouterr().err
    assert main(argv + ["--device=cuda"]) == 1
    assert "--check-grads=1 runs in the CPU engine only" in capsys.readouterr().err


def test_conserve_mem_pca_noise_and_conv_to_local(digits, tmp_path, capsys):
    assert main(["train", *fresh(digits, tmp_path, "--epochs=1"), "--conserve-mem=1", "--pca-noise=0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["Note: --conserve-mem accepted: it saved GPU memory in the release; this engine allocates "
                         "every buffer once and computes the same numbers",
                         "Note: --pca-noise=0.5 is stored but not used, as in the release"]
    assert main(["train", *fresh(digits, tmp_path / "x", "--epochs=1"), "--conv-to-local=fc1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("alexnet-replay: error: --conv-to-local=fc1: refused. The release's conversion of conv "
                          "layers into local ones was broken") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_every_train_option_says_what_it_does_and_its_default():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    missing = sorted(set(OPTIONS) - set(HELP))
    assert not missing, f"options without a --help text in harness/options.py HELP: {missing}"
    for action in parser._actions:
        if action.dest == "help":
            continue
        text = action.help or ""
        assert len(text) > 40 and re.search(r"\(default|mandatory for a new run\)", text), (action.dest, text)
        assert "driver.md" not in text, (action.dest, text)             # words a user can follow without it


def test_checkpoint_rotation_deletes_only_this_drivers_checkpoints(digits, tmp_path):
    """§C.7's rotation (--max-filesize, 0: keep the newest) removes the driver's own E.B.npz files
    only: a run resumed from a user's copy (0-best.npz) in the folder leaves it, and any other .npz."""
    run, _ = train(args_for(fresh(digits, tmp_path, "--epochs=1")), out=io.StringIO())
    assert visible(run.folder) == ["1.4.npz"]
    mine = ["0-best.npz", "1-embeddings.npz", "2.npz"]  # all sort before the next checkpoint, 2.4.npz
    assert sorted(map(Path, [*mine, "2.4.npz"]), key=natural_key)[-1] == Path("2.4.npz")
    shutil.copyfile(run.folder / "1.4.npz", run.folder / mine[0])
    np.savez(run.folder / mine[1], x=np.arange(3))
    np.savez(run.folder / mine[2], x=np.arange(3))
    resumed, _ = train(args_for(["-f", str(run.folder / mine[0]), "--epochs=2"]), out=io.StringIO())
    assert resumed.folder == run.folder
    assert visible(run.folder) == sorted([*mine, "2.4.npz"])
    # a limit the checkpoints fit in keeps them all
    train(args_for(["-f", str(run.folder), "--epochs=3", "--max-filesize=100"]), out=io.StringIO())
    assert sorted(p.name for p in run.folder.glob("*.*.npz")) == ["2.4.npz", "3.2.npz", "3.4.npz"]
