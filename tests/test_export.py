"""Export of a release network as torch.export / ONNX / TorchScript (alexnet_replay.modernize.export).

The exported files are judged against the C++ engine's test-pass probabilities, on a
batch of another size than the one the export was traced with (the batch dimension
must stay free). The weights are not the fresh initial ones: with initW = 1e-4 the CIFAR
net's probabilities are 0.1 +- 2e-6 whatever the layers in between compute, so a wrong
layer would hide; the tests use weights N(0, 1/fan-in) (saved as a checkpoint, which
also exercises --weights), whose probabilities are far from uniform (asserted).

TorchScript (.pt) is written only where the installed torch runs torch.jit without a
deprecation warning; elsewhere asking for it must be a clear one-line error.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import alexnet_replay  # noqa: E402
from alexnet_replay.errors import ReplayError  # noqa: E402
from alexnet_replay.harness.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from alexnet_replay.modernize import export, port  # noqa: E402
from alexnet_replay.testing import assert_close  # noqa: E402

NET = "cifar-18pct"
SEED = 7
ATOL, RTOL = export.FORWARD_TOL  # probabilities; reason at export.FORWARD_TOL


def rescaled_checkpoint(path, seed: int = SEED):
    """A checkpoint of the CIFAR net with weights N(0, 1/fan-in), biases N(0, 0.1^2)."""
    net = alexnet_replay.load(NET, minibatch=1, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for layer in net.config.layers.values():
        if layer.type in port.WEIGHT_TYPES:
            for i, (rows, cols) in enumerate(layer.weights):
                net.weights(layer.name, i)[...] = (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(
                    np.float32)
            net.biases(layer.name)[...] = (0.1 * rng.standard_normal(layer.biases)).astype(np.float32)
    save_checkpoint(path, net)
    return path


def engine_probs(ckpt, images: np.ndarray) -> np.ndarray:
    """The engine's test-pass softmax output (N, 10), computed here without export.py."""
    n = images.shape[0]
    net = alexnet_replay.load(NET, minibatch=n, seed=SEED)
    load_checkpoint(ckpt, net)
    net.forward([np.ascontiguousarray(images.reshape(n, -1).T), np.zeros((1, n), np.float32)], train=False)
    return np.ascontiguousarray(net.acts("probs").T)


def batch(cases: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((cases, 3, 32, 32)).astype(np.float32)


def check_far_from_uniform(p: np.ndarray) -> None:
    # A probability vector near 1/10 everywhere would hide a wrong layer (module doc).
    assert float((p.max(axis=1) - p.min(axis=1)).min()) > 0.05, p


def test_exported_program_matches_engine(tmp_path):
    ckpt = rescaled_checkpoint(tmp_path / "ckpt.npz")
    result = export.export_model(NET, None, tmp_path / "cifar.pt2", weights=ckpt, seed=SEED)
    assert result.passed and result.format == "exportedprogram" and result.output == "probs"
    assert result.image == (3, 32, 32) and result.classes == 10
    assert 0.0 <= result.max_abs_error <= ATOL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar.pt2", "ckpt.npz"]  # no temporary left
    model = torch.export.load(str(tmp_path / "cifar.pt2")).module()
    for cases in (5, 1):  # the batch dimension is free, down to a single image
        images = batch(cases, 1)
        with torch.no_grad():
            got = model(torch.from_numpy(images)).numpy()
        want = engine_probs(ckpt, images)
        check_far_from_uniform(want)
        assert_close(got, want, ATOL, RTOL, what=f"ExportedProgram probabilities vs engine, {cases} images")


def test_torchscript_only_where_torch_jit_is_quiet(tmp_path):
    if not export.torchscript_supported():  # torch >= 2.13: one line naming the supported suffixes
        with pytest.raises(ReplayError, match=r"^[^\n]*cifar\.pt: TorchScript \(\.pt\) is deprecated in torch "
                                              r"[^\n]*model\.pt2 \(torch\.export\) or model\.onnx \(ONNX\)$"):
            export.export_model(NET, None, tmp_path / "cifar.pt", seed=SEED)
        assert list(tmp_path.iterdir()) == []
        return
    ckpt = rescaled_checkpoint(tmp_path / "ckpt.npz")
    result = export.export_model(NET, None, tmp_path / "cifar.pt", weights=ckpt, seed=SEED)
    assert result.passed and result.format == "torchscript" and result.max_abs_error <= ATOL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar.pt", "ckpt.npz"]
    model = torch.jit.load(str(tmp_path / "cifar.pt"))
    images = batch(5, 1)
    with torch.no_grad():
        got = model(torch.from_numpy(images)).numpy()
    want = engine_probs(ckpt, images)
    check_far_from_uniform(want)
    assert_close(got, want, ATOL, RTOL, what="TorchScript probabilities vs engine")


def test_onnx_export_matches_engine(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export is checked with onnxruntime (pip install onnxruntime)")
    pytest.importorskip("onnxscript", reason="torch.onnx's exporter needs onnxscript (pip install onnxscript)")
    ckpt = rescaled_checkpoint(tmp_path / "ckpt.npz")
    result = export.export_model(NET, None, tmp_path / "cifar.onnx", weights=ckpt, seed=SEED)
    assert result.passed and result.format == "onnx" and result.max_abs_error <= ATOL
    session = ort.InferenceSession(str(tmp_path / "cifar.onnx"), providers=["CPUExecutionProvider"])
    images = batch(5, 2)
    (got,) = session.run(None, {"images": images})
    want = engine_probs(ckpt, images)
    check_far_from_uniform(want)
    assert_close(got, want, ATOL, RTOL, what="ONNX probabilities vs engine")


def test_bad_suffix_is_a_clear_error(tmp_path):
    with pytest.raises(ReplayError, match=r"unknown export format '\.h5'.*model\.pt2 \(torch\.export\).*"
                                          r"model\.onnx \(ONNX\)"):
        export.export_model(NET, None, tmp_path / "cifar.h5")
    with pytest.raises(ReplayError, match="no suffix"):
        export.export_model(NET, None, tmp_path / "cifar")
    assert list(tmp_path.iterdir()) == []


def test_failed_check_writes_nothing(tmp_path, monkeypatch):
    real = export.compare_probs
    monkeypatch.setattr(export, "compare_probs", lambda *args: {**real(*args), "passed": False})
    with pytest.raises(ReplayError, match="does not match the engine.*nothing was written"):
        export.export_model(NET, None, tmp_path / "cifar.pt2", seed=SEED)
    assert list(tmp_path.iterdir()) == []
    # An existing file of that name is left as it was.
    (tmp_path / "cifar.pt2").write_bytes(b"previous")
    with pytest.raises(ReplayError, match="does not match the engine"):
        export.export_model(NET, None, tmp_path / "cifar.pt2", seed=SEED)
    assert [p.name for p in tmp_path.iterdir()] == ["cifar.pt2"]
    assert (tmp_path / "cifar.pt2").read_bytes() == b"previous"


def test_missing_onnxruntime_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(ReplayError, match="pip install onnxruntime"):
        export.export_model(NET, None, tmp_path / "cifar.onnx")
    assert list(tmp_path.iterdir()) == []


def test_cli_export(tmp_path, capsys):
    from alexnet_replay.cli import main

    assert main(["export", NET, "--image-size", "3,24,24", "--seed", "3", "--to", str(tmp_path / "m.pt2")]) == 0
    out = capsys.readouterr().out
    assert "m.pt2: exportedprogram, images (N, 3, 24, 24) -> probs (N, 10)" in out and "ok" in out
    assert (tmp_path / "m.pt2").is_file()


# ---------------------------------------------------------------------------
# The export-friendly forward: the same values as the port's forward, bit for bit


@pytest.mark.parametrize("kind", ["max", "maxabs", "avg"])
@pytest.mark.parametrize("side,size,stride,start,outputs", [(7, 3, 2, 0, 3), (13, 3, 2, -1, 7), (13, 4, 3, 1, 4),
                                                             (7, 5, 1, -2, 7)])
def test_pool_forward_equals_port(kind, side, size, stride, start, outputs):
    g = torch.Generator().manual_seed(side * 100 + size)
    x = torch.randn((3, 5, side, side), generator=g)
    x[0] = torch.round(x[0])  # ties and zeros in the windows
    x[1, 0] = -3.0            # a window of equal negative values
    want = port.pool2d(x, kind, size, stride, start, outputs)
    got = export.pool_forward(x, kind, size, stride, start, outputs)
    assert torch.equal(got, want), (got - want).abs().max()


@pytest.mark.parametrize("kind,a", [("abs", 0.0), ("brelu", 0.7), ("drelu", 1.5), ("relu", 0.0), ("softrelu", 0.0)])
def test_neuron_forward_equals_port(kind, a):
    x = torch.randn(7, 13, generator=torch.Generator().manual_seed(5)) * 3
    x[0, :5] = torch.tensor([0.0, -0.0, a, -a, 4.0])
    assert torch.equal(export.neuron_forward(kind, a, 0.0, x), port._neuron(kind, a, 0.0, x, None))


def test_nrelu_is_refused():
    with pytest.raises(ReplayError, match="nrelu"):
        export.neuron_forward("nrelu", 0.0, 0.0, torch.zeros(3, 2))


def test_eltmax_forward_equals_port():
    g = torch.Generator().manual_seed(9)
    xs = [torch.round(torch.randn(5, 7, generator=g)) for _ in range(3)]
    assert torch.equal(export.eltmax_forward(xs), port._EltMax.apply(*xs))
