"""The parity suite (alexnet_replay.modernize.parity): engine vs port, layer by layer.

Checks that the report passes where it should (the bundled CIFAR net, and every
definition file of the release: about 10 minutes on 2 cores, most of it the 56
ImageNet-size files; `-k "not release_definition"` leaves them out of a quick local
run), that a deliberate error in one layer of the port fails and is named as the first
divergence, and that the report files and the CLI say so. The release files that the
engine does not run are listed, with the reason, in EXPECTED_NOT_RUNNING; the list is
strict both ways, and what it excused is printed at the end of the run (conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from alexnet_replay.errors import ReplayError  # noqa: E402
from alexnet_replay.modernize import parity  # noqa: E402
from alexnet_replay.original.labeltree import LabelTree  # noqa: E402
from alexnet_replay.original.shownet import load as load_config  # noqa: E402


# A small net with a cmrnorm whose minDiv (2) matters, between a conv and a pool.
SMALL_LAYERS = """[data]
type=data
dataIdx=0

[labels]
type=data
dataIdx=1

[conv1]
type=conv
inputs=data
channels=3
filters=16
filterSize=3
padding=1
stride=1
initW=0.1
partialSum=1
neuron=relu
gpu=0

[rnorm1]
type=cmrnorm
inputs=conv1
channels=16
size=5

[pool1]
type=pool
pool=max
inputs=rnorm1
channels=16
sizeX=3
stride=2

[fc10]
type=fc
inputs=pool1
outputs=10
initW=0.05

[probs]
type=softmax
inputs=fc10

[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""
SMALL_PARAMS = """[conv1]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
wc=0.004

[fc10]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
wc=0.01

[rnorm1]
scale=0.5
pow=0.75
minDiv=2

[logprob]
coeff=1
"""


SMALL_IMAGE = (3, 13, 13)


@pytest.fixture
def small_net(tmp_path):
    (tmp_path / "small.layers.cfg").write_text(SMALL_LAYERS)
    (tmp_path / "small.params.cfg").write_text(SMALL_PARAMS)
    return tmp_path / "small.layers.cfg", tmp_path / "small.params.cfg"


def test_cifar_net_passes_and_writes_the_three_reports(tmp_path):
    report = parity.run_parity("cifar-18pct", None, minibatch=3, steps=3, seed=1)
    assert report.passed, parity.summary_text(report)
    assert report.first_divergence is None
    # Every layer compared forward; bit-exact classes really were checked with 0 tolerance.
    forward = {m.layer for m in report.metrics if m.quantity == "forward"}
    assert forward == set(report.layers) - {"data", "labels"}
    pools = [m for m in report.metrics if m.quantity == "forward" and m.kind == "pool"]
    assert pools and all(m.atol == 0 and m.rtol == 0 and m.max_abs == 0 for m in pools)
    assert {m.quantity for m in report.metrics if m.layer == "conv1"} >= {
        "forward", "backward", "weight_grad[0]", "bias_grad", "forward_e2e", "step3:weights[0]", "step3:biases"}
    paths = parity.write_report(report, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json", "report.md"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert {stat.S_IMODE(p.stat().st_mode) for p in paths.values()} == {0o666 & ~umask}  # not mkstemp's 0600
    data = json.loads(paths["json"].read_text())
    assert data["format"] == parity.FORMAT and data["passed"] is True and data["first_divergence"] is None
    assert len(data["metrics"]) == len(report.metrics)
    assert data == json.loads(json.dumps(report.to_dict()))
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 2 + 3  # forward, backward, step1..3
    # The first screen is the verdict in one sentence: comparisons made and the closest one's share.
    worst = parity.report.worst_metric(report.metrics)
    assert 0 < worst.tolerance_used <= 1
    sentence = (f"PASS: all {len(report.metrics)} comparisons of the PyTorch port against the engine are within "
                f"tolerance; the closest, {worst.layer} {worst.quantity}, used {worst.tolerance_used:.0%} of")
    assert data["verdict"].startswith(sentence) and data["verdict"] == parity.report.verdict_sentence(report)
    assert page.index(sentence) < page.index("<img") and paths["md"].read_text().split("\n")[2].startswith(
        "**" + sentence)
    # The plots draw the share of tolerance used (pass line at 1), exact results as 0.
    layers, series = parity.report.plot_points(report, "forward")
    assert layers[0] == "conv1" and set(series) == {"forward", "forward_e2e"}
    shares = {layers[i]: used for i, used, _ in series["forward"]}
    assert shares["pool1"] == 0 and 0 < shares["conv1"] <= 1 and all(ok for _, _, ok in series["forward"])
    assert parity.report.report_from_dict(data).to_dict() == data  # report.json reads back whole
    assert "<table id='metrics'>" in page and "class='pass'" in page and "class='fail'" not in page
    assert "<link" not in page and "<script" not in page  # self-contained
    assert "| conv1 | forward | gemm |" in paths["md"].read_text()


@pytest.mark.parametrize("fault,layer", [("minDiv:rnorm1", "rnorm1"), ("scale:conv1", "conv1"),
                                         ("scale:fc10", "fc10")])
def test_a_fault_in_one_layer_is_caught_and_named(small_net, tmp_path, fault, layer):
    layers, params = small_net
    clean = parity.run_parity(layers, params, image_size=SMALL_IMAGE, minibatch=3, steps=2, seed=2)
    assert clean.passed, parity.summary_text(clean)
    report = parity.run_parity(layers, params, image_size=SMALL_IMAGE, minibatch=3, steps=2, seed=2, fault=fault)
    assert not report.passed
    first = report.first_divergence
    assert (first.layer, first.quantity) == (layer, "forward")
    # Isolated forward comparisons fail at the faulty layer only.
    assert [m.layer for m in report.failures() if m.quantity == "forward"] == [layer]
    paths = parity.write_report(report, tmp_path)
    assert json.loads(paths["json"].read_text())["first_divergence"] == {"layer": layer, "quantity": "forward"}
    assert "class='fail'" in paths["html"].read_text()
    assert f"first diverging layer: {layer} (forward" in parity.summary_text(report)
    bad = report.failures()
    worst = parity.report.worst_metric(report.metrics)
    assert not worst.passed and worst.tolerance_used > 1
    assert parity.report.verdict_sentence(report).startswith(
        f"FAIL: {len(bad)} of {len(report.metrics)} comparisons of the PyTorch port against the engine are outside "
        f"tolerance; the worst, {worst.layer} {worst.quantity}, used ")
    assert parity.report.verdict_sentence(report).endswith(f"the first divergence is at {layer} (forward).")
    layers_drawn, series = parity.report.plot_points(report, "forward")
    assert [layers_drawn[i] for i, used, ok in series["forward"] if used > 1] == [layer]  # above the pass line


def test_fault_errors_are_named(small_net):
    layers, params = small_net
    with pytest.raises(ReplayError, match="KIND:LAYER"):
        parity.run_parity(layers, params, image_size=SMALL_IMAGE, fault="bogus:conv1", steps=0)
    with pytest.raises(ReplayError, match="no layer 'nope'"):
        parity.run_parity(layers, params, image_size=SMALL_IMAGE, fault="minDiv:nope", steps=0)
    with pytest.raises(ReplayError, match="not a norm layer"):
        parity.run_parity(layers, params, image_size=SMALL_IMAGE, fault="minDiv:conv1", steps=0)


def test_cuda_is_never_a_silent_cpu_fallback(small_net):
    layers, params = small_net
    if torch.cuda.is_available():
        report = parity.run_parity(layers, params, image_size=SMALL_IMAGE, minibatch=3, steps=1, device="cuda")
        assert report.device.startswith("cuda")
        assert report.passed, parity.summary_text(report)
    else:
        with pytest.raises(ReplayError, match="CUDA requested but not available: "):
            parity.run_parity(layers, params, image_size=SMALL_IMAGE, device="cuda")


def _cli(argv):
    from alexnet_replay.cli import _parser

    return _parser().parse_args(["parity", *argv])


def test_cli(small_net, tmp_path, capsys):
    layers, params = small_net
    args = _cli([str(layers), str(params), "--image-size", "3,13,13", "--minibatch", "3", "--steps", "1",
                 "--report", str(tmp_path / "r")])
    assert args.image_size == SMALL_IMAGE and args.device == "cpu" and args.json is False and args.seed == 0
    assert parity.cli_parity(args) == 0
    out = capsys.readouterr().out
    assert "all within tolerance" in out and "rnorm1" in out
    assert (tmp_path / "r" / "report.html").is_file()
    args = _cli([str(layers), str(params), "--minibatch", "2", "--steps", "0", "--json", "--image-size", "3,9,9"])
    assert args.image_size == (3, 9, 9)
    assert parity.cli_parity(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is True and data["image_size"] == [3, 9, 9] and data["steps"] == 0
    with pytest.raises(SystemExit):
        _cli([str(layers), "--image-size", "3,9"])


def test_cli_exit_code_is_1_on_divergence(small_net, monkeypatch, capsys):
    layers, params = small_net
    real = parity.run_parity
    monkeypatch.setattr(parity, "run_parity", lambda *a, **k: real(*a, **{**k, "fault": "minDiv:rnorm1"}))
    args = _cli([str(layers), str(params), "--image-size", "3,13,13", "--minibatch", "2", "--steps", "0"])
    assert parity.cli_parity(args) == 1
    assert "first diverging layer: rnorm1" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Every definition file of the release


def _release_dir() -> Path | None:  # as conftest.release_dir (tests cannot import each other)
    env = os.environ.get("ALEXNET_RELEASE_DIR")
    path = Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "release"
    return path if path.is_dir() else None


def _definition_files() -> list[str]:
    root = _release_dir()
    if root is None:
        return ["(no release)"]
    from alexnet_replay.original.notes import release_files

    return release_files(root)[1]


# Release definition files the engine does not run, each with the start of the
# ReplayError it raises. Strict both ways: a listed file must raise exactly that (one
# that starts running fails with "DID NOT RAISE" until its entry goes), and any other
# file that raises ReplayError fails; nothing turns into a skip.
EXPECTED_NOT_RUNNING: dict[str, str] = {}


@pytest.fixture(scope="module")
def pairing(release):
    """{definition file: (params file, lenient, image)} from the catalog: the first pairing
    the reader accepts (strictly if it can), at the first input size of its family."""
    from alexnet_replay.original.catalog import build_catalog

    found: dict[str, tuple[str, bool, tuple[int, ...]]] = {}
    for f in build_catalog(release)["files"]:
        if f["kind"] != "params":
            continue
        for check in f["checks"]:
            if check["definition"] in found or not (check["strict_ok"] or check["lenient_ok"]):
                continue
            found[check["definition"]] = (f["path"], not check["strict_ok"], tuple(check["image_size"]))
    return found


# Divergences the suite found in the port (modernize/port/), kept visible: strict xfail,
# so the test fails again once the port is fixed and the entry must go.
KNOWN: dict[str, str] = {}


def test_the_lists_name_release_definition_files(release):
    """An entry for a file the release does not have would excuse nothing, silently."""
    files = set(_definition_files())
    assert sorted(set(EXPECTED_NOT_RUNNING) - files) == []
    assert sorted(set(KNOWN) - files) == []


@pytest.mark.parametrize("definition", _definition_files())
def test_release_definition_file(release, pairing, definition, request, not_running):
    if definition in KNOWN:
        request.applymarker(pytest.mark.xfail(reason=KNOWN[definition], strict=True))
    # Every definition file has a parameter file the reader accepts (none lacks one today).
    assert definition in pairing, f"{definition}: no parameter file of the release pairs with it and is accepted"
    params, lenient, image = pairing[definition]
    config, _ = load_config(release / definition, release / params, image_size=image, lenient=lenient)
    if config.parameters_incomplete:  # treefc: the release's label tree came with its data; a stand-in
        tree = LabelTree.stand_in(config.profile.num_classes)
        config, _ = load_config(release / definition, release / params, image_size=image, lenient=lenient,
                                tree=tree)
    if definition in EXPECTED_NOT_RUNNING:
        why = EXPECTED_NOT_RUNNING[definition]
        with pytest.raises(ReplayError, match=re.escape(why)):
            parity.run_parity(config, minibatch=2, steps=3, seed=3)
        not_running[f"parity of release file {definition}"] = why
        return
    report = parity.run_parity(config, minibatch=2, steps=3, seed=3)
    assert report.passed, parity.summary_text(report)


# ---------------------------------------------------------------------------
# The one-pass metric (_core.compare_arrays) against the numpy reference


def _metric_pairs():
    rng = np.random.default_rng(5)
    e = rng.standard_normal((37, 11)).astype(np.float32)
    a = (e + 1e-6 * rng.standard_normal(e.shape)).astype(np.float32)
    tiny = e.copy()
    tiny[np.abs(tiny) < 1.0] = 0.0  # many zeros: relative floor and 0/0 paths
    yield "close", a, e, None, None
    yield "equal", e.copy(), e, None, None
    yield "zeros", np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32), None, None
    yield "zero-vs-nonzero", np.full((4, 3), 1e-3, np.float32), np.zeros((4, 3), np.float32), None, None
    yield "fortran", np.asfortranarray(a), np.asfortranarray(e), None, None
    yield "mixed-order", np.ascontiguousarray(a), np.asfortranarray(e), None, None
    yield "scale_of", a, e, (e - tiny), None
    yield "mask", a + np.float32(1.0) * (rng.random(e.shape) < 0.1), e, None, rng.random(e.shape) < 0.1
    yield "zeros-in-ref", (tiny + 1e-7).astype(np.float32), tiny, None, None
    yield "big", rng.standard_normal(200_003).astype(np.float32), rng.standard_normal(200_003).astype(np.float32), \
        None, None


@pytest.mark.parametrize("case", list(_metric_pairs()), ids=lambda c: c[0])
@pytest.mark.parametrize("tol", [(0.0, 0.0), (1e-6, 0.0), (1e-6, 1e-5), (0.0, 1e-5)], ids=str)
def test_one_pass_metric_equals_the_numpy_reference(case, tol):
    _, a, e, scale_of, mask = case
    table = {"k": tol}
    fast = parity.measure(a, e, "k", "l", "q", table, scale_of=scale_of, mask=mask)
    ref = parity.measure_numpy(a, e, "k", "l", "q", table, scale_of=scale_of, mask=mask)
    # Differences are exact in float64 on both paths, so maxima agree bit for bit; the
    # cosine's sums run in another order (fixed blocks vs numpy's pairwise sum).
    for field in ("max_abs", "max_rel", "max_ref", "atol", "tolerance_used", "passed", "elements"):
        assert getattr(fast, field) == getattr(ref, field), field
    assert fast.cosine == pytest.approx(ref.cosine, rel=1e-12, abs=1e-12)


def test_one_pass_metric_reports_non_finite_values():
    e = np.ones((3, 4), np.float32)
    a = e.copy()
    a[1, 2] = np.nan
    e2 = e.copy()
    e2[0, 0] = np.inf
    for fast in (parity.measure(a, e2, "k", "l", "q", {"k": (1.0, 1.0)}),
                 parity.measure_numpy(a, e2, "k", "l", "q", {"k": (1.0, 1.0)})):
        assert not fast.passed and fast.note == "non-finite values: port 1, engine 1"
    assert not parity.measure_rerouted(a, e, "l", "q", {"e2e-rerouted": (1.0, 0.0)}).passed
