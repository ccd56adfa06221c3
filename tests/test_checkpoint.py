"""Checkpoints, the project's format and the release's pickles (driver.md §C.7): round trips are
bit-exact, conversions both ways keep every array, bad files are refused."""

from __future__ import annotations

import os
import pickle
import pickletools
import sys
import types
import warnings
import zipfile

import numpy as np
import pytest

import alexnet_replay
from alexnet_replay.cli import main
from alexnet_replay.errors import ReplayError
from alexnet_replay.harness import checkpoint as ckpt
from alexnet_replay.harness import release_checkpoint as rel
from alexnet_replay.harness.pickles import DataError


def data(seed: int, cases: int = 6):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((3 * 32 * 32, cases)).astype(np.float32),
            rng.integers(0, 10, (1, cases)).astype(np.float32)]


def test_save_load_and_train_on_is_bit_identical(tmp_path):
    """Save after two steps, load into a net with other initial weights, and both
    nets must then compute the same step, bit for bit (STYLE.md habit 8)."""
    a = alexnet_replay.load("cifar-18pct", minibatch=6, seed=1)
    for step in range(2):
        a.train_step(data(step))
    ckpt.save_checkpoint(tmp_path / "c.npz", a, {"epoch": 1, "batchnum": 3})
    b = alexnet_replay.load("cifar-18pct", minibatch=6, seed=99)
    assert not np.array_equal(a.weights("conv1"), b.weights("conv1"))
    assert ckpt.load_checkpoint(tmp_path / "c.npz", b) == {"epoch": 1, "batchnum": 3}
    for name in ("conv1", "conv2", "conv3", "fc10"):
        assert np.array_equal(a.weights(name), b.weights(name))
        assert np.array_equal(a.weight_inc(name), b.weight_inc(name))
        assert np.array_equal(a.biases(name), b.biases(name)) and np.array_equal(a.bias_inc(name), b.bias_inc(name))
    costs_a, costs_b = a.train_step(data(7)), b.train_step(data(7))
    assert costs_a == costs_b
    assert np.array_equal(a.acts("probs"), b.acts("probs"))
    assert np.array_equal(a.weights("fc10"), b.weights("fc10"))


def test_checkpoint_of_another_network_is_refused(tmp_path):
    small = alexnet_replay.load("cifar-18pct", minibatch=2, seed=0)
    ckpt.save_checkpoint(tmp_path / "c.npz", small)
    other = alexnet_replay.load("cifar-18pct", image_size=(3, 24, 24), minibatch=2, seed=0)
    before = other.weights("fc10").copy()
    with pytest.raises(ReplayError, match=r"checkpoint of another network .*layers with other shapes: fc10"):
        ckpt.load_checkpoint(tmp_path / "c.npz", other)
    assert np.array_equal(other.weights("fc10"), before)


def test_truncated_and_foreign_files_are_refused(tmp_path):
    net = alexnet_replay.load("cifar-18pct", minibatch=2, seed=0)
    ckpt.save_checkpoint(tmp_path / "c.npz", net)
    raw = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReplayError, match="cut.npz: not a readable alexnet-replay checkpoint"):
        ckpt.load_checkpoint(tmp_path / "cut.npz", net)
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(ReplayError, match="plain.npz: not an alexnet-replay checkpoint"):
        ckpt.load_checkpoint(tmp_path / "plain.npz", net)
    with pytest.raises(ReplayError, match="no such checkpoint"):
        ckpt.load_checkpoint(tmp_path / "absent.npz", net)
    with zipfile.ZipFile(tmp_path / "c.npz") as z:  # no pickled member anywhere
        assert all(name.endswith(".npy") for name in z.namelist())


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    net = alexnet_replay.load("cifar-18pct", minibatch=2, seed=0)
    ckpt.save_checkpoint(tmp_path / "c.npz", net, {"epoch": 1})
    before = (tmp_path / "c.npz").read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the run is killed while writing

    monkeypatch.setattr(ckpt.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path / "c.npz", net, {"epoch": 2})
    assert (tmp_path / "c.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]


# -- the release's pickled checkpoints (driver.md §C.7) ------------------------------------------------

NAMES = ("conv1", "conv2", "conv3", "fc10")


def digits_minibatches(cases: int = 8, steps: int = 3):
    """A few minibatches of the real digits, as the demo renders them (data minus a mean)."""
    sklearn = pytest.importorskip("sklearn.datasets", reason="scikit-learn (a test extra) has the digits")
    from alexnet_replay.harness.make_batches import render_digits

    digits = sklearn.load_digits()
    images = render_digits(digits.images[: cases * steps]).reshape(cases * steps, -1).T.astype(np.float32)
    images -= images.mean(axis=1, keepdims=True)
    labels = digits.target[: cases * steps].astype(np.float32)[None, :]
    return [[np.ascontiguousarray(images[:, k * cases:(k + 1) * cases]), labels[:, k * cases:(k + 1) * cases]]
            for k in range(steps)]


def trained_net():
    net = alexnet_replay.load("cifar-18pct", minibatch=8, seed=2)
    for part in digits_minibatches():
        net.train_step(part, progress=0.1)
    return net


def test_round_trip_in_both_formats_gives_identical_outputs(tmp_path):
    """Checkpoint round trip: train on digits, save in each format, load into a fresh net: the
    arrays and the forward outputs are identical, bit for bit; own -> release -> own as well."""
    a = trained_net()
    state = {"epoch": 2, "batchnum": 3, "batches_done": 8, "options": {"train_range": "1-5", "mini": 8}}
    ckpt.save_checkpoint(tmp_path / "own.npz", a, state)
    rel.save_release_checkpoint(tmp_path / "2.3", a, state)
    test_batch = digits_minibatches(steps=4)[3]
    want = (a.forward(test_batch, train=False), a.acts("probs").copy())
    for load in (lambda n: ckpt.load_checkpoint(tmp_path / "own.npz", n),
                 lambda n: rel.load_release_checkpoint(tmp_path / "2.3", n)):
        b = alexnet_replay.load("cifar-18pct", minibatch=8, seed=77)
        load(b)
        for name in NAMES:
            for get in (b.weights, b.weight_inc, b.biases, b.bias_inc):
                assert np.array_equal(get(name), getattr(a, get.__name__)(name)), (name, get.__name__)
        assert b.forward(test_batch, train=False) == want[0]
        assert np.array_equal(b.acts("probs"), want[1])
    back = rel.read_release_checkpoint(tmp_path / "2.3")
    assert (back.epoch, back.batchnum, back.batches_done) == (2, 3, 8)   # 5·(2−1) + 3 (§C.4)
    assert back.options == {"train_range": "1-5", "mini": 8, "layer_def": a.config.path,
                            "layer_params": a.config.params_path}
    assert back.release_options["train_batch_range"] == [1, 2, 3, 4, 5] and back.release_options["minibatch_size"] == 8
    rec = back.layers["fc10"]
    assert rec["weights"][0].flags.f_contiguous and rec["weights"][0].dtype == np.float32   # §A.6: Fortran
    assert rec["type"] == "fc" and rec["inputs"] == ["pool3"] and rec["schedW"] == {"type": "default", "params": {}}
    # own -> release -> own through the command: identical arrays
    assert main(["checkpoint", "convert", str(tmp_path / "own.npz"), str(tmp_path / "r.pkl")]) == 0
    assert main(["checkpoint", "convert", str(tmp_path / "r.pkl"), str(tmp_path / "again.npz")]) == 0
    (_, a1), (m2, a2) = ckpt.read_checkpoint(tmp_path / "own.npz"), ckpt.read_checkpoint(tmp_path / "again.npz")
    assert a1.keys() == a2.keys() and all(np.array_equal(a1[k], a2[k]) for k in a1)
    assert m2["state"]["epoch"] == 2 and m2["state"]["batches_done"] == 8


def test_written_pickle_is_plain_protocol_2(tmp_path):
    """Only protocol-2 opcodes, only numpy's own globals under the names Python 2's numpy used;
    the stock unpickler reads the same values."""
    net = alexnet_replay.load("cifar-18pct", minibatch=2, seed=0)
    raw = rel.dumps_plain({"model_state": {"layers": rel.layer_records(net), "epoch": 1, "batchnum": 2},
                           "op": {"layer_def": "x.cfg"}})
    ops = list(pickletools.genops(raw))
    assert max(op.proto for op, _, _ in ops) <= 2 and raw[:2] == b"\x80\x02"
    assert {arg for op, arg, _ in ops if op.name == "GLOBAL"} == \
        {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    with warnings.catch_warnings():  # numpy 2 warns when the numpy.core name is imported
        warnings.simplefilter("ignore", DeprecationWarning)
        stock = pickle.loads(raw, encoding="latin1")
    ours = rel.loads_pickle(raw)
    assert np.array_equal(stock["model_state"]["layers"]["conv1"]["weights"][0], net.weights("conv1"))
    assert np.array_equal(ours["model_state"]["layers"]["fc10"]["biases"], net.biases("fc10"))


def test_release_file_with_option_objects_is_read_with_stand_ins(tmp_path):
    """A checkpoint as the 2012 driver wrote it: ``op`` is an object of the release's ``options``
    module (not importable here): it is rebuilt as an inert stand-in and its values are read."""
    fake = types.ModuleType("options")

    class OptionsParser:
        pass

    class Option:
        pass

    for cls in (OptionsParser, Option):
        cls.__module__ = "options"
        cls.__qualname__ = cls.__name__
        setattr(fake, cls.__name__, cls)
    op = OptionsParser()
    op.options = {}
    for name, value in (("layer_def", "cifar-18pct"), ("num_epochs", 9), ("test_batch_range", [6])):
        o = Option()
        o.value = value
        op.options[name] = o
    net = trained_net()
    records = rel.layer_records(net)
    sys.modules["options"] = fake
    try:
        raw = pickle.dumps({"op": op, "model_state": {"layers": records, "epoch": 3, "batchnum": 1,
                                                      "train_outputs": [({}, 8)] * 11, "test_outputs": []}},
                           protocol=2)
    finally:
        del sys.modules["options"]
    (tmp_path / "3.1").write_bytes(raw)
    back = rel.read_release_checkpoint(tmp_path / "3.1")
    assert back.options == {"layer_def": "cifar-18pct", "epochs": 9, "test_range": "6"}
    assert back.batches_done == 11                    # no train range: one stored output per batch
    fresh = alexnet_replay.load("cifar-18pct", minibatch=8, seed=5)
    rel.load_release_checkpoint(back, fresh)
    assert all(np.array_equal(fresh.weights(n), net.weights(n)) for n in NAMES)


def test_release_checkpoint_of_another_network_truncated_or_malicious_is_refused(tmp_path, capsys):
    net = alexnet_replay.load("cifar-18pct", minibatch=2, seed=0)
    rel.save_release_checkpoint(tmp_path / "1.5", net, {"epoch": 1, "batchnum": 5})
    other = alexnet_replay.load("cifar-18pct", image_size=(3, 24, 24), minibatch=2, seed=1)
    before = other.weights("conv1").copy()
    with pytest.raises(ReplayError, match=r"1\.5: checkpoint of another network.*fc10 \(checkpoint \(1024, 10\), "
                                          r"net \(576, 10\)\)"):
        rel.load_release_checkpoint(tmp_path / "1.5", other)
    assert np.array_equal(other.weights("conv1"), before)            # untouched, conv1 included
    raw = (tmp_path / "1.5").read_bytes()
    (tmp_path / "cut").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut: truncated pickle"):
        rel.read_release_checkpoint(tmp_path / "cut")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil").write_bytes(pickle.dumps({"model_state": {"layers": {}}, "op": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"evil: refused global '(posix|os)\.system'"):
        rel.read_release_checkpoint(tmp_path / "evil")
    assert not marker.exists()
    # through the command: one line, exit 1, nothing written
    assert main(["checkpoint", "convert", str(tmp_path / "evil"), str(tmp_path / "out.npz"),
                 "--layer-def", "cifar-18pct"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("alexnet-replay: error: ") and err.count("\n") == 1 and "refused global" in err
    assert not (tmp_path / "out.npz").exists() and not marker.exists()
    assert main(["checkpoint", "convert", str(tmp_path / "1.5"), str(tmp_path / "x.npz"), "--image-size", "3,24,24",
                 "--layer-def", "cifar-18pct", "--layer-params", str(networks_params())]) == 1
    assert "checkpoint of another network" in capsys.readouterr().err and not (tmp_path / "x.npz").exists()


def networks_params():
    return alexnet_replay.networks.bundled("cifar-18pct").params
