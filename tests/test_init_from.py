"""Initialisation from an earlier run (driver.md §A.5): ``train --init-from CHECKPOINT``
supplies what the release's ``initw.makew/makeb/makec`` copied.

A small chain on the digits: a network is trained, then a second network whose layers
say ``initWFunc=initw.makew(conv1)`` starts from its checkpoint (this project's format and
the release's pickle). Then every release definition file with init functions builds and
takes a training step at minibatch 2 from a source holding the layers its functions name
(the source runs' own checkpoints are not in the release: random arrays of their shapes).
"""

from __future__ import annotations

import argparse
import io
import re

import numpy as np
import pytest

from alexnet_replay import networks
from alexnet_replay.engine import EngineNet
from alexnet_replay.errors import ReplayError
from alexnet_replay.harness.init_from import InitSource, init_calls
from alexnet_replay.harness.options import add_train_arguments

SOURCE = networks.bundled("cifar-18pct")
PARAMS = SOURCE.params.read_text().replace("epsW=0.001", "epsW=0.01")


def _fine_tune_layers(extra: str = "") -> str:
    """The bundled net with conv1 and conv2 copied from an earlier run of it."""
    text = SOURCE.layers.read_text()
    for layer in ("conv1", "conv2"):
        text = text.replace(f"[{layer}]\n", f"[{layer}]\ninitWFunc=initw.makew({layer})\n"
                                            f"initBFunc=initw.makeb({layer}{extra})\n", 1)
    return text


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("sklearn", reason="scikit-learn (a test extra) renders the digits")
    from alexnet_replay.harness.make_batches import digits_batches

    folder = tmp_path_factory.mktemp("digits")
    digits_batches(folder, seed=0)
    (folder / "params.cfg").write_text(PARAMS)
    return folder


def _args(digits, save, layers, *extra):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(["--data-path", str(digits), "--save-path", str(save), "--train-range", "1-2",
                              "--test-range", "6", "--layer-def", str(layers), "--layer-params",
                              str(digits / "params.cfg"), "--test-freq", "2", "--mini", "128", "--epochs", "1",
                              *extra])


@pytest.fixture(scope="module")
def pretrained(digits, tmp_path_factory):
    from alexnet_replay.harness.driver import train

    save = tmp_path_factory.mktemp("pretrain")
    run, net = train(_args(digits, save, SOURCE.layers), out=io.StringIO())
    return sorted(run.folder.glob("*.npz"))[-1]


def test_the_calls_name_their_source_layers(tmp_path):
    from alexnet_replay.original.shownet import load

    (tmp_path / "l.cfg").write_text(_fine_tune_layers())
    config, _ = load(tmp_path / "l.cfg", SOURCE.params)
    assert [(c.layer, c.key, c.source) for c in init_calls(config)] == [
        ("conv1", "initWFunc", "conv1"), ("conv1", "initBFunc", "conv1"),
        ("conv2", "initWFunc", "conv2"), ("conv2", "initBFunc", "conv2")]
    with pytest.raises(ReplayError, match=r"l\.cfg: layer 'conv1': initWFunc=initw\.makew\(conv1\) copies an "
                                          r"earlier run's arrays; give that run's checkpoint with --init-from"):
        EngineNet(config, 4, seed=0)


def test_without_init_from_train_names_the_file_layer_and_option(digits, tmp_path):
    from alexnet_replay.harness.driver import train

    (tmp_path / "l.cfg").write_text(_fine_tune_layers())
    with pytest.raises(ReplayError) as err:
        train(_args(digits, tmp_path / "save", tmp_path / "l.cfg"))
    message = str(err.value)
    assert "\n" not in message
    assert re.search(r"l\.cfg: layer 'conv1': initWFunc=initw\.makew\(conv1\) copies the weights of layer 'conv1' "
                     r"from an earlier run \(and 3 more init function\(s\)\); give that run's checkpoint with "
                     r"--init-from CHECKPOINT", message), message
    assert not (tmp_path / "save").exists()


@pytest.mark.parametrize("fmt", ["npz", "release-pickle"])
def test_a_two_stage_chain_starts_from_the_pretrained_layers(digits, pretrained, tmp_path, fmt):
    from alexnet_replay.harness.checkpoint import convert_checkpoint, read_checkpoint
    from alexnet_replay.harness.driver import train

    source = pretrained
    if fmt == "release-pickle":
        source = tmp_path / "pretrained.pickle"
        convert_checkpoint(pretrained, source)
    (tmp_path / "l.cfg").write_text(_fine_tune_layers())
    log = io.StringIO()
    _, net = train(_args(digits, tmp_path / "save", tmp_path / "l.cfg", "--init-from", str(source),
                         "--test-only", "1"), out=log)
    _, arrays = read_checkpoint(pretrained)
    for layer in ("conv1", "conv2"):
        np.testing.assert_array_equal(net.weights(layer), arrays[f"{layer}/weights/0"])
        np.testing.assert_array_equal(net.biases(layer), arrays[f"{layer}/biases"])
    assert not np.array_equal(net.weights("conv3"), arrays["conv3/weights/0"])  # drawn as usual
    assert f"Initialised conv1: weights from layer 'conv1' of {source} (initWFunc)" in log.getvalue()
    # ... and the fine-tuning run trains, saves and resumes (the option is set once)
    run, _ = train(_args(digits, tmp_path / "save2", tmp_path / "l.cfg", "--init-from", str(source)),
                   out=io.StringIO())
    last = sorted(run.folder.glob("*.npz"))[-1]
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    with pytest.raises(ReplayError, match="--init-from is set once"):
        train(parser.parse_args(["-f", str(last), "--init-from", str(tmp_path / "other.npz")]))
    resumed, _ = train(parser.parse_args(["-f", str(last), "--epochs", "2", "--test-freq", "2"]), out=io.StringIO())
    assert resumed.epoch == 3


def test_a_source_without_the_layer_or_of_another_shape_is_named(digits, pretrained, tmp_path):
    from alexnet_replay.harness.driver import train

    (tmp_path / "l.cfg").write_text(_fine_tune_layers().replace("initw.makew(conv2)", "initw.makew(nope)"))
    with pytest.raises(ReplayError, match=r"has no weight matrix 0 of layer 'nope', which initWFunc=initw\.makew"
                                          r"\(nope\) of layer 'conv2' copies"):
        train(_args(digits, tmp_path / "save", tmp_path / "l.cfg", "--init-from", str(pretrained)))
    (tmp_path / "l.cfg").write_text(_fine_tune_layers().replace("initw.makew(conv2)", "initw.makew(conv1)"))
    with pytest.raises(ReplayError, match=r"weight matrix 0 of layer 'conv1' is \(75, 32\), but layer 'conv2' "
                                          r"\(initWFunc=initw\.makew\(conv1\)\) needs \(800, 32\)"):
        train(_args(digits, tmp_path / "save", tmp_path / "l.cfg", "--init-from", str(pretrained)))
    assert not (tmp_path / "save").exists()


# ---------------------------------------------------------------------------
# The release's files with init functions


# driver.md §A.5: the ten definition files that use initw.makew/makeb
SPEC_INIT_FILES = [f"layers/layers-{n}.cfg" for n in (
    "98-16kinit", "flickr-102-inet-init", "135-2009-2012", "141-2009", "141-2009-2010", "141-2009-2012",
    "146-2009", "146-2011", "146-2012-2009", "146-2012-2011")]


def _release_dir():  # as conftest.release_dir (tests cannot import each other)
    import os
    from pathlib import Path

    env = os.environ.get("ALEXNET_RELEASE_DIR")
    path = Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "release"
    return path if path.is_dir() else None


def _init_files(release) -> list[str]:
    from alexnet_replay.original.notes import release_files

    return [f for f in release_files(release)[1] if "Func=" in (release / f).read_text()]


def test_the_release_files_with_init_functions_are_the_spec_s(release):
    """Those of the specification's ten that this copy holds (a copy may lack some)."""
    assert _init_files(release) == sorted(f for f in SPEC_INIT_FILES if (release / f).is_file())
    assert len(_init_files(release)) >= 9


@pytest.mark.parametrize("index", range(len(_init_files(_release_dir()))) if _release_dir() else [0])
def test_release_init_files_build_and_step(release, index):
    from alexnet_replay.original.catalog import build_catalog
    from alexnet_replay.original.shownet import load

    definition = _init_files(release)[index]
    check = next(c for f in build_catalog(release)["files"] if f["kind"] == "params" for c in f["checks"]
                 if c["definition"] == definition and (c["strict_ok"] or c["lenient_ok"]))
    params = next(f["path"] for f in build_catalog(release)["files"] if f["kind"] == "params" and check in f["checks"])
    config, _ = load(release / definition, release / params, image_size=tuple(check["image_size"]),
                     lenient=not check["strict_ok"])
    calls = init_calls(config)
    assert calls and all(c.text.startswith("initw.make") for c in calls)
    # A source holding each named layer with the shape of the layer it fills.
    rng = np.random.default_rng(index)
    source = InitSource("(test source)")
    for c in calls:
        layer = config.layers[c.layer]
        if c.key == "initWFunc":
            for i, shape in enumerate(layer.weights):
                source.weights[(c.source, i)] = (0.01 * rng.standard_normal(shape)).astype(np.float32)
        elif c.key == "initBFunc":
            source.biases[c.source] = rng.standard_normal(layer.biases).astype(np.float32)
        else:
            a = layer.attrs
            for i in range(len(layer.inputs)):
                source.conns[(c.source, i)] = [int(v) for _ in range(a["overSample"][i])
                                               for v in rng.permutation(a["channels"][i])]
    net = EngineNet(config, 2, seed=0, conns=source.conn_tables(config), skip_init_funcs=True)
    lines = source.fill(net)
    assert len(lines) == len(calls)
    for c in calls:
        if c.key == "initWFunc":
            np.testing.assert_array_equal(net.weights(c.layer, 0), source.weights[(c.source, 0)])
        elif c.key == "initCFunc":
            tables = net.conns[c.layer]
            assert any(tables) and all(t is None or t == source.conns[(c.source, i)] for i, t in enumerate(tables))
    untouched = [l for l in config.layers.values() if l.type in ("conv", "fc") and "initWFunc" not in l.attrs]
    assert untouched, "some layer draws its own weights"
    sizes = {l.attrs["dataIdx"]: l.outputs for l in config.layers.values() if l.type == "data"}
    data = [np.random.default_rng(1).standard_normal((sizes[0], 2)).astype(np.float32)] + [
        np.array([[1.0, 2.0]], np.float32) if sizes[i] == 1 else np.eye(sizes[i], 2, dtype=np.float32)
        for i in range(1, max(sizes) + 1)]
    costs = net.forward(data)
    net.backward()
    net.update()
    assert all(np.isfinite(v).all() for v in costs.values())
    assert np.isfinite(net.weights(calls[0].layer, 0)).all()
