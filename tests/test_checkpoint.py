"""The project's checkpoint format: round trips are bit-exact, bad files are refused."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

import alexnet_replay
from alexnet_replay.errors import ReplayError
from alexnet_replay.harness import checkpoint as ckpt


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
