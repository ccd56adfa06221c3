"""treefc, the label-tree classifier (engine.md §3.3): the tree's checks, the effective
weights and the node-wise update computed by hand, finite differences, and engine
against port (forward, backward, three steps) on a small net.

The tree of these tests: 5 classes (leaves 0..4) under inner nodes 5 = {0, 1},
6 = {2, 3, 4} and the root 7 = {5, 6}.
"""

from __future__ import annotations

import numpy as np
import pytest

from alexnet_replay.engine import EngineNet
from alexnet_replay.errors import ReplayError
from alexnet_replay.original.labeltree import LabelTree
from alexnet_replay.original.layers import DataProfile, load_network
from alexnet_replay.original.params import load_params

TREE = LabelTree.from_lists([[], [], [], [], [], [0, 1], [2, 3, 4], [5, 6]], root=7, classes=5)
DIN = 7

LAYERS = """[data]
type=data
dataIdx=0

[labels]
type=data
dataIdx=1

[fc]
type=fc
inputs=data
outputs=7
initW=0.3
neuron=tanh[1,1]
gpu=0

[tree]
type=treefc
inputs=fc
initW=0.5

[probs]
type=softmax
inputs=tree

[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""
PARAMS = """[fc]
epsW=0.05
epsB=0.02
momW=0.9
momB=0.9
wc=0.001

[tree]
epsW={eps}
epsB=0.03
momW=0.5
momB=0.9
wc={wc}

[logprob]
coeff=1
"""


def _config(tmp_path, tree=TREE, eps=0.2, wc=0.01, classes=5):
    (tmp_path / "t.layers.cfg").write_text(LAYERS)
    (tmp_path / "t.params.cfg").write_text(PARAMS.format(eps=eps, wc=wc))
    config = load_network(tmp_path / "t.layers.cfg", DataProfile("t", "2x3x3", (2, 3, 3), 1, classes, tree))
    load_params(config, tmp_path / "t.params.cfg")
    return config


def _batch(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((18, n)).astype(np.float32), np.array([[0, 3, 4, 2, 1][:n]], np.float32)]


def test_the_tree_and_its_derived_walks():
    assert (TREE.nodes, TREE.leaves, TREE.root) == (8, 5, 7)
    assert TREE.paths() == [[7, 5, 0], [7, 5, 1], [7, 6, 2], [7, 6, 3], [7, 6, 4]]
    assert TREE.leaf_counts() == [1, 1, 1, 1, 1, 2, 3, 5]
    stand_in = LabelTree.stand_in(23, 4)
    assert stand_in.leaves == 23 and stand_in.leaf_counts()[stand_in.root] == 23
    assert LabelTree.from_lists(stand_in.children, stand_in.root, 23) == LabelTree(stand_in.children, stand_in.root)


@pytest.mark.parametrize("children,root,classes,why", [
    ([[], [], [0, 1]], 2, 4, "3 nodes for 4 classes"),
    ([[], [], [0, 1], [1]], 3, 2, "node 1 has two parents"),
    ([[], [], [0], [2]], 3, 2, "node 1 is not below the root"),
    ([[], [], [0, 1]], 5, 2, "root 5 is not a node"),
    ([[], [0], [1]], 2, 2, "node 1 is a class but has children"),
    ([[], [], [], [0, 1]], 3, 2, "node 2 has no children but is not a class"),
    ([[], [], [0, 7]], 2, 2, "has child 7, which is not a node"),
])
def test_bad_trees_are_named(children, root, classes, why):
    with pytest.raises(ValueError, match=why):
        LabelTree.from_lists(children, root, classes)


def test_a_bad_tree_in_batches_meta_names_the_file_and_key():
    with pytest.raises(ReplayError, match=r"m\.meta: key 'tree': .*all_wnids\['gproot'\]"):
        LabelTree.from_meta({"tree": [[], [0]]}, 1, "m.meta")
    got = LabelTree.from_meta({"tree": {0: [], 1: [], 2: [0, 1]}, "all_wnids": {"gproot": 2}}, 2)
    assert got.children == ((), (), (0, 1)) and got.root == 2
    assert LabelTree.from_meta({}, 2) is None


def test_the_engine_plan_checks_the_tree_too(tmp_path):
    """The engine does not trust the reader: a spec with a bad tree fails in the plan."""
    net = EngineNet(_config(tmp_path), 3, seed=1)
    from alexnet_replay.engine import _spec

    index = {name: i for i, name in enumerate(net.config.layers)}
    rng = np.random.RandomState(0)
    specs = [_spec(layer, index, rng) for layer in net.config.layers.values()]
    from alexnet_replay import _core

    t = next(s for s in specs if s.type == "treefc")
    t.tree = [[], [], [], [], [], [0, 1], [2, 3, 4], [5, 6, 5]]
    with pytest.raises(ValueError, match=r"layer 'tree': tree: label tree: node 5 has two parents"):
        _core.CpuNet(specs, 3, 0)
    t.tree, t.tree_root = [list(c) for c in TREE.children], 7
    t.weight_cols = [9]
    with pytest.raises(ValueError, match=r"treefc weight matrix must be \(inputs, nodes of the tree\): expected "
                                         r"\(7, 8\), got \(7, 9\)"):
        _core.CpuNet(specs, 3, 0)


def test_a_treefc_without_a_tree_is_refused_with_its_name(tmp_path):
    config = _config(tmp_path, tree=None)
    assert config["tree"].unknown_weights
    with pytest.raises(ReplayError, match=r"layer 'tree': treefc needs the data's label tree"):
        EngineNet(config, 3, seed=0)


def test_leaves_must_be_the_classes(tmp_path):
    from alexnet_replay.errors import ConfigError

    with pytest.raises(ConfigError, match="has 5 leaves, but the data has 6 classes"):
        _config(tmp_path, classes=6)


def test_forward_backward_and_update_by_hand(tmp_path):
    """Effective weights = sum down the path; G of an inner node = sum of its children's;
    update with eps/n_u and wc/n_u (§3.3)."""
    net = EngineNet(_config(tmp_path), 3, seed=2)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((DIN, 8)).astype(np.float32)
    net.set_weights("tree", w)
    assert np.all(net.weights("tree")[:, :0] == 0)
    x = _batch()
    net.forward(x)
    weff = np.stack([w[:, 7] + w[:, 5] + w[:, 0], w[:, 7] + w[:, 5] + w[:, 1], w[:, 7] + w[:, 6] + w[:, 2],
                     w[:, 7] + w[:, 6] + w[:, 3], w[:, 7] + w[:, 6] + w[:, 4]], axis=1)  # (Din, 5)
    xin = net.acts("fc_neuron").astype(np.float64)
    want = weff.astype(np.float64).T @ xin + net.biases("tree").astype(np.float64).reshape(5, 1)
    np.testing.assert_allclose(net.acts("tree"), want, rtol=1e-5, atol=1e-5)
    net.backward()
    dy = net.acts_grad("tree").astype(np.float64)
    g_leaf = xin @ dy.T / 3  # (Din, 5): G = (1/N) X dY^T
    g = np.concatenate([g_leaf, (g_leaf[:, 0] + g_leaf[:, 1])[:, None], g_leaf[:, 2:5].sum(1, keepdims=True),
                        g_leaf.sum(1, keepdims=True)], axis=1)
    np.testing.assert_allclose(net.weight_grad("tree"), g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.acts_grad("fc_neuron"), weff.astype(np.float64) @ dy, rtol=1e-5, atol=1e-6)
    grad = net.weight_grad("tree").copy()
    net.update()
    n_u = np.array([1, 1, 1, 1, 1, 2, 3, 5], np.float32)
    eps_u, wc_u = np.float32(0.2) / n_u, np.float32(0.01) / n_u
    inc = eps_u * (grad - wc_u * w)  # mom * 0 the first time
    np.testing.assert_array_equal(net.weight_inc("tree"), inc.astype(np.float32))
    np.testing.assert_array_equal(net.weights("tree"), (w + inc).astype(np.float32))


def test_inner_nodes_start_at_zero_and_the_draw_is_the_fc_draw(tmp_path):
    net = EngineNet(_config(tmp_path), 3, seed=5)
    w = net.weights("tree")
    assert w.shape == (DIN, 8) and np.all(w[:, 5:] == 0) and np.all(w[:, :5] != 0)


def test_finite_differences(tmp_path):
    """The engine's gradient of the node vectors against central differences of its cost."""
    config = _config(tmp_path)
    net = EngineNet(config, 3, seed=7)
    x = _batch()

    def cost() -> float:
        return net.forward(x, train=False)["logprob"][0]

    base_w = net.weights("tree").copy()
    base_w[:, 5:] = np.random.default_rng(1).standard_normal((DIN, 3)).astype(np.float32) * 0.5
    net.set_weights("tree", base_w)
    net.forward(x)
    net.backward()
    analytic = net.weight_grad("tree").copy()  # -(1/N) dE/dW
    h = 1e-2
    for r, c in [(0, 0), (3, 4), (6, 5), (2, 6), (5, 7), (1, 7)]:
        w = base_w.copy()
        w[r, c] += h
        net.set_weights("tree", w)
        up = cost()
        w[r, c] -= 2 * h
        net.set_weights("tree", w)
        down = cost()
        numeric = -(up - down) / (2 * h) / 3
        assert analytic[r, c] == pytest.approx(numeric, rel=2e-2, abs=1e-4), (r, c)
    net.set_weights("tree", base_w)


def test_engine_and_port_agree(tmp_path):
    from alexnet_replay.modernize import parity

    report = parity.run_parity(_config(tmp_path), minibatch=3, steps=3, seed=4)
    assert report.passed, parity.summary_text(report)
    quantities = {m.quantity for m in report.metrics if m.layer == "tree"}
    assert {"forward", "weight_grad[0]", "bias_grad", "step3:weights[0]"} <= quantities


def test_stand_in_tree_on_a_wide_layer(tmp_path):
    """The release's tree nets have 1000 classes; a stand-in tree of that size builds and steps."""
    (tmp_path / "t.layers.cfg").write_text(LAYERS)
    (tmp_path / "t.params.cfg").write_text(PARAMS.format(eps=0.1, wc=0.0005))
    tree = LabelTree.stand_in(1000)
    config = load_network(tmp_path / "t.layers.cfg", DataProfile("t", "2x3x3", (2, 3, 3), 1, 1000, tree))
    load_params(config, tmp_path / "t.params.cfg")
    assert config["tree"].weights == [(7, 1111)]
    assert any("stand-in label tree" in w for w in config.warnings)
    net = EngineNet(config, 2, seed=0)
    x = [np.ones((18, 2), np.float32), np.array([[3, 999]], np.float32)]
    net.forward(x)
    net.backward()
    net.update()
    assert np.isfinite(net.weights("tree")).all()


# ---------------------------------------------------------------------------
# train: the tree from batches.meta, the class count of the data

TRAIN_LAYERS = """[data]
type=data
dataIdx=0

[labels]
type=data
dataIdx=1

[pool1]
type=pool
pool=avg
inputs=data
channels=3
sizeX=4
stride=4
gpu=0

[fc1]
type=fc
inputs=pool1
outputs={hidden}
initW=0.001
neuron=relu

[tree]
type={top}
inputs=fc1
{outputs}initW=0.001

[probs]
type=softmax
inputs=tree

[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""
TRAIN_PARAMS = """[fc1]
epsW=0.001
epsB=0.02
momW=0.9
momB=0.9
wc=0.0005

[tree]
epsW=0.001
epsB=0.02
momW=0.9
momB=0.9
wc=0.0005

[logprob]
coeff=1
"""


@pytest.fixture(scope="module")
def digits_with_tree(tmp_path_factory):
    pytest.importorskip("sklearn", reason="scikit-learn (a test extra) renders the digits")
    from alexnet_replay.harness.batches import read_meta, write_meta
    from alexnet_replay.harness.make_batches import digits_batches

    folder = tmp_path_factory.mktemp("digits-tree")
    digits_batches(folder, seed=0)
    meta = read_meta(folder)
    tree = LabelTree.stand_in(10, 3)  # 10 digits under 4 + 2 + 1 inner nodes
    write_meta(folder, data_mean=meta.data_mean, label_names=meta.label_names,
               tree=[list(c) for c in tree.children], all_wnids={"gproot": tree.root}, **{
                   k: v for k, v in meta.raw.items() if k not in ("data_mean", "label_names", "num_vis")})
    return folder, tree


def _train_args(folder, tmp_path, top="treefc", outputs=""):
    import argparse

    from alexnet_replay.harness.options import add_train_arguments

    (tmp_path / "l.cfg").write_text(TRAIN_LAYERS.format(top=top, outputs=outputs, hidden=24))
    (tmp_path / "p.cfg").write_text(TRAIN_PARAMS)
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(["--data-path", str(folder), "--save-path", str(tmp_path / "save"), "--train-range", "1-2",
                              "--test-range", "6", "--layer-def", str(tmp_path / "l.cfg"), "--layer-params",
                              str(tmp_path / "p.cfg"), "--test-freq", "2", "--mini", "64", "--epochs", "1"])


def test_train_reads_the_tree_from_batches_meta(digits_with_tree, tmp_path):
    import io

    from alexnet_replay.harness.driver import train

    folder, tree = digits_with_tree
    log = io.StringIO()
    run, net = train(_train_args(folder, tmp_path), out=log)
    assert net.weights("tree").shape == (24, tree.nodes) == (24, 17)
    assert "Test output: logprob:" in log.getvalue()
    saved = np.load(next(run.folder.glob("*.npz")))
    assert any(v.shape == (24, 17) for k, v in saved.items() if "tree" in k)


def test_train_checks_the_softmax_width_against_the_data(digits_with_tree, tmp_path):
    from alexnet_replay.harness.driver import train

    folder, _ = digits_with_tree
    with pytest.raises(ReplayError, match=r"layer 'probs' \(the softmax of cost.logreg 'logprob'\) has 12 outputs, "
                                          r"but the data \(.*\) has 10 classes"):
        train(_train_args(folder, tmp_path, top="fc", outputs="outputs=12\n"))
    assert not (tmp_path / "save").exists() or not any((tmp_path / "save").rglob("*.npz"))
