"""Runnability is visible: `catalog` and `show-net` say whether this engine builds and trains a
network, at each size, and if not, why (harness/runnable.py)."""

from __future__ import annotations

import json

import pytest

from alexnet_replay import networks
from alexnet_replay.cli import main
from alexnet_replay.errors import ReplayError
from alexnet_replay.harness.runnable import assess
from alexnet_replay.engine import check_plan
from alexnet_replay.original.catalog import build_catalog
from alexnet_replay.original.shownet import load

BUNDLED = networks.bundled("cifar-18pct")


def _with_init_functions(tmp_path, argument: str = "{name}") -> tuple:
    text = BUNDLED.layers.read_text()
    for name in ("conv1", "conv2"):
        text = text.replace(f"[{name}]\n", f"[{name}]\ninitWFunc=initw.makew({argument.format(name=name)})\n", 1)
    (tmp_path / "l.cfg").write_text(text)
    return tmp_path / "l.cfg", BUNDLED.params


def test_bundled_network_trains_and_a_definition_alone_does_not(tmp_path):
    net, _ = load(BUNDLED.layers, BUNDLED.params)
    got = assess(net)
    assert (got.builds, got.trains, got.why, got.needs) == (True, True, None, [])
    assert got.verdict() == "trains"
    alone = assess(load(BUNDLED.layers)[0])
    assert (alone.builds, alone.trains) == (False, False)
    assert alone.verdict() == ("does not build: a definition file alone has no learning rates: give it a "
                               "layer-parameter file")


def test_init_functions_are_a_need_and_a_bad_one_a_reason(tmp_path):
    got = assess(load(*_with_init_functions(tmp_path))[0])
    assert got.trains and got.needs == [
        "--init-from a checkpoint with layer(s) conv1, conv2 (2 init function(s), driver.md §A.5)"]
    assert got.verdict() == f"trains (needs {got.needs[0]})"
    bad = assess(load(*_with_init_functions(tmp_path, ""))[0])            # initw.makew(): no source layer
    assert (bad.builds, bad.trains) == (False, False)
    assert "layer 'conv1': initWFunc=initw.makew(): the function's first argument must name the source layer" \
        in bad.why


def test_the_engines_plan_refusal_is_the_reason(tmp_path):
    """A spec the reader let through but the plan refuses (here made by editing the read network:
    a pooling stride of 0) is reported with the plan's message, naming the file and the layer."""
    net, _ = load(BUNDLED.layers, BUNDLED.params)
    pool = next(l for l in net.layers.values() if l.type == "pool")
    pool.attrs["stride"] = 0
    with pytest.raises(ReplayError, match=f"cifar-18pct.layers.cfg: layer '{pool.name}': stride: must be >= 1"):
        check_plan(net)
    got = assess(net)
    assert (got.builds, got.trains) == (False, False) and f"layer '{pool.name}'" in got.why
    assert got.verdict().startswith("does not build: ")


def test_show_net_says_it(capsys):
    assert main(["show-net", "cifar-18pct"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "this engine at 3x32x32: trains"
    assert main(["show-net", "cifar-18pct", "--json"]) == 0
    engine = json.loads(capsys.readouterr().out)["engine"]
    assert engine == {"builds": True, "trains": True, "verdict": "trains", "why": None, "needs": []}


# -- the release ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def catalog(release):
    return build_catalog(release, lambda net, rebuild: assess(net, rebuild).to_dict())


INIT_FILES = {"layers/layers-135-2009-2012.cfg", "layers/layers-141-2009-2010.cfg", "layers/layers-141-2009-2012.cfg",
              "layers/layers-141-2009.cfg", "layers/layers-146-2009.cfg", "layers/layers-146-2011.cfg",
              "layers/layers-146-2012-2009.cfg", "layers/layers-98-16kinit.cfg",
              "layers/layers-flickr-102-inet-init.cfg"}
TREE_FILES = {"layers/layers-137-tree.cfg", "layers/layers-146-2009-tree.cfg"}


def test_every_release_definition_file_trains_at_every_size(catalog):
    """Strict: a file that stops training here, or a new need, fails until these lists change."""
    builds = [(f["path"], b) for f in catalog["files"] for b in f.get("builds", [])]
    assert len(builds) == 74
    not_training = [(p, b["engine"]["verdict"]) for p, b in builds if not b["engine"]["trains"]]
    assert not_training == []
    needing_init = {p for p, b in builds if any(n.startswith("--init-from") for n in b["engine"]["needs"])}
    needing_tree = {p for p, b in builds if any("label tree" in n for n in b["engine"]["needs"])}
    assert needing_init == INIT_FILES and needing_tree == TREE_FILES
    for path in INIT_FILES:
        net_builds = [b for p, b in builds if p == path]
        assert all(b["engine"]["with"] for b in net_builds), path


def test_every_release_pairing_has_a_verdict(catalog):
    checks = [(f["path"], c) for f in catalog["files"] if f["kind"] == "params" for c in f["checks"]]
    unreadable = [p for p, c in checks if c["engine"] is None]
    assert unreadable == ["layers/layer-params-147.cfg.save"]            # its first line is not a section
    assert all(c["engine"]["trains"] for p, c in checks if c["engine"] is not None)
    lenient = {p for p, c in checks if c["engine"] is not None and c["engine"]["lenient"]}
    assert all(c["engine"]["verdict"].endswith("(read with --lenient)") for p, c in checks
               if p in lenient and c["engine"] is not None)
    assert "layers/layer-params-178.cfg" in lenient and "layers/layer-params-145.cfg" not in lenient


def test_catalog_views_show_the_engine(release, capsys):
    assert main(["catalog", str(release), "--md"]) == 0
    out = capsys.readouterr().out
    assert "| `layers/layers-145.cfg` | 3x224x224 | ok | ok | 49 | 0,1 | 60,965,224 | trains with " \
           "layer-params-145-2010.cfg, layer-params-145.cfg |" in out
    assert main(["catalog", str(release)]) == 0
    text = capsys.readouterr().out
    assert "engine: trains with layer-params-146-2012-2009.cfg (needs --init-from a checkpoint with layer(s) " \
           "conv1a," in text
