"""The net object end to end: gradients of whole networks, determinism, the
paper network's training step, and load-time errors (engine issue)."""

from __future__ import annotations

import numpy as np
import pytest

import alexnet_replay
from alexnet_replay.errors import ReplayError
from alexnet_replay.gradcheck import THRESHOLD, check_gradients, summary
from alexnet_replay.original.shownet import load as load_config


def batch(config, cases: int, seed: int = 0, scale: float = 1.0):
    """Random images and labels shaped for `config`'s data layers."""
    rng = np.random.default_rng(seed)
    c, h, w = config.profile.image
    classes = next(l.outputs for l in config.layers.values() if l.type == "softmax")
    x = (scale * rng.standard_normal((c * h * w, cases))).astype(np.float32)
    y = rng.integers(0, classes, (1, cases)).astype(np.float32)
    return [x, y]


def test_whole_cifar_network_gradients_match_central_differences():
    """Every weight matrix and bias of the bundled CIFAR net (conv with padding, pool,
    rnorm, neurons, fc, softmax + logreg) against central differences of the engine's
    own float32 objective: the wiring of §1.4 (accumulation order, fused softmax+logreg,
    1/N) is right.

    Differences step across kinks: with relu and max pooling a 1e-2 step moves some
    units across zero or changes a window's maximum, which alone gives errors of a few
    percent. So this check swaps in tanh and average pooling (smooth everywhere); relu
    and max pooling are checked exactly, element by element, in the op tests. Weights
    are 1/sqrt(fan-in) instead of the file's tiny ones, so that float32 differences of
    the objective rise above rounding."""
    config, _ = load_config("cifar-18pct", image_size=(3, 16, 16))
    for layer in config.layers.values():
        if "initW" in layer.attrs:
            layer.attrs["initW"] = [1 / np.sqrt(rows) for rows, _ in layer.weights]
        if layer.type == "pool":
            layer.attrs["pool"] = "avg"
        if layer.type == "neuron":
            layer.neuron = "tanh[1,1]"
    checks = check_gradients(config, batch(config, 5), max_elements=48, central=True, steps=(1e-2, 1e-2))
    assert len(checks) == 8
    errors = {f"{c.layer} {c.what}": round(c.relative_error, 5) for c in checks}
    assert all(c.relative_error < 3e-3 for c in checks), errors  # measured: at most 1.3e-3


def test_same_seed_replays_bit_for_bit():
    def run():
        net = alexnet_replay.load("cifar-18pct", minibatch=7, seed=11)
        data = batch(net.config, 7, seed=3)
        costs = [net.train_step(data)["logprob"] for _ in range(2)]
        return costs, net.weights("conv2").copy(), net.weights("fc10").copy(), net.bias_inc("conv1").copy()

    a, b = run(), run()
    assert a[0] == b[0]
    for x, y in zip(a[1:], b[1:]):
        assert np.array_equal(x, y)


def test_training_lowers_the_cost_on_a_fixed_batch():
    net = alexnet_replay.load("cifar-18pct", minibatch=16, seed=5)
    data = batch(net.config, 16, seed=2)
    first = net.train_step(data)["logprob"][0]
    for _ in range(15):
        last = net.train_step(data)["logprob"][0]
    assert np.isfinite(last) and last < first


def test_views_are_the_release_layouts_and_write_through():
    net = alexnet_replay.load("cifar-18pct", minibatch=4, seed=0)
    assert net.weights("conv1").shape == (3 * 5 * 5, 32) and net.weights("conv1").flags.c_contiguous
    fc = net.weights("fc10")
    assert fc.shape == (64 * 4 * 4, 10) and fc.flags.f_contiguous  # (Din, Dout) Fortran order, §1.3
    assert net.biases("conv1").shape == (32, 1) and net.biases("fc10").shape == (1, 10)
    fc[...] = 0.0
    net.biases("fc10")[...] = np.arange(10, dtype=np.float32)
    net.forward(batch(net.config, 4), train=False)
    probs = net.acts("probs")
    expected = np.exp(np.arange(10) - 9.0) / np.exp(np.arange(10) - 9.0).sum()
    np.testing.assert_allclose(probs, np.repeat(expected[:, None], 4, axis=1), rtol=1e-6)
    # initial weights are initW * N(0, 1): conv2's initW is 0.01
    assert 0.008 < float(net.weights("conv2").std()) < 0.012


def test_costs_are_the_releases_sums():
    net = alexnet_replay.load("cifar-18pct", minibatch=6, seed=0)
    data = batch(net.config, 6)
    costs = net.forward(data, train=False)["logprob"]
    p = net.acts("probs").astype(np.float64)
    labels = data[1][0].astype(int)
    assert costs[0] == pytest.approx(-np.log(p[labels, np.arange(6)]).sum(), rel=1e-6)
    top1 = (p.argmax(axis=0) != labels).sum()
    assert costs[1] == top1 and costs[2] == top1  # topk defaults to 1


SMALL_NET = """
[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
[fc1]
type=fc
inputs=data
outputs=7
initW=0.1
initB=1
neuron=relu
gpu=0
[drop]
type=hs
inputs=fc1
keep=0.5
[fc2]
type=fc
inputs=drop
outputs=3
initW=0.1
[probs]
type=softmax
inputs=fc2
[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""
SMALL_PARAMS = "".join(f"[{n}]\nepsW=0.01\nepsB=0.02\nmomW=0.9\nmomB=0.9\nwc=0.0005\n" for n in ("fc1", "fc2")) + \
    "[drop]\nenable=true\n[logprob]\ncoeff=1\n"


def test_release_gradient_check_on_a_small_net(tmp_path):
    """The release's check as it was (one-sided differences, its steps, the 2% rule)
    on a small fc net: every matrix passes, and the report names each matrix. The
    inputs are small (0.1 N(0,1)) and fc1's biases 1, so that no ReLU sits near its kink:
    a step that crosses a kink changes the slope and alone breaks a 2% rule."""
    (tmp_path / "net.cfg").write_text(SMALL_NET)
    (tmp_path / "params.cfg").write_text(SMALL_PARAMS)
    config, _ = load_config(tmp_path / "net.cfg", tmp_path / "params.cfg", image_size=(3, 4, 4))
    checks = check_gradients(config, batch(config, 6, scale=0.1), central=False)
    assert {c.rule for c in checks} == {"one-sided"}
    assert [(c.layer, c.what, c.elements, c.step) for c in checks] == [
        ("fc1", "weights[0]", 48 * 7, 0.01), ("fc1", "biases", 7, 0.01),
        ("fc2", "weights[0]", 7 * 3, 0.01), ("fc2", "biases", 3, 0.01)]
    assert all(c.passed for c in checks), [c.to_dict() for c in checks]
    assert max(c.relative_error for c in checks) < THRESHOLD


# SMALL_NET with a second cost that fc2 does not reach
TWO_COSTS_NET = SMALL_NET + "[sq]\ntype=cost.sum2\ninputs=fc1\n"
TWO_COSTS_PARAMS = SMALL_PARAMS + "[sq]\ncoeff=0.01\n"


def test_forward_from_is_bit_for_bit_a_whole_forward(tmp_path):
    """Net.forward_from (the gradient check's partial forward) reruns a layer and what
    depends on it: every output and cost equals a whole forward's bit for bit, a cost
    it does not reach stays, and it never draws (dropout's mask is held, the generator
    untouched)."""
    (tmp_path / "net.cfg").write_text(TWO_COSTS_NET)
    (tmp_path / "params.cfg").write_text(TWO_COSTS_PARAMS)
    nets = [alexnet_replay.load(tmp_path / "net.cfg", tmp_path / "params.cfg", image_size=(3, 4, 4),
                                minibatch=5, seed=3) for _ in range(2)]
    net, twin = nets
    data = batch(net.config, 5)
    with pytest.raises(ReplayError, match="forward_from before forward"):
        net.set_data(data)
        net.forward_from("fc1")
    for n in nets:
        n.forward(data, train=True)  # draws drop's mask
    net.backward()  # as in the gradient check: a backward changes no layer's output
    net.inject_masks = True
    for layer, bump in [("fc1", 0.25), ("fc2", -0.5), ("fc1", 0.125)]:
        net.weights(layer)[1, 2] += np.float32(bump)
        net.biases(layer)[0, -1] -= np.float32(bump)
        before = net.costs()
        partial = net.forward_from(layer)
        acts = {name: net.acts(name).copy() for name in net.layer_names if not net.config.layers[name].is_cost}
        if layer == "fc2":
            assert partial["sq"] == before["sq"]  # not below fc2: left as it was
        whole = net.forward(train=True)  # the same injected mask
        assert partial == whole and partial["logprob"] != before["logprob"]
        for name, a in acts.items():
            assert np.array_equal(a, net.acts(name)), name
    # without injection, a rerun that would draw a new mask is refused before it runs
    net.inject_masks = False
    mask = net.mask("drop").copy()
    with pytest.raises(ReplayError, match="'drop' would draw new numbers"):
        net.forward_from("fc1")
    assert np.array_equal(net.mask("drop"), mask)
    net.forward_from("fc2")  # nothing below fc2 draws
    net.forward(train=True)
    twin.forward(train=True)  # the generator is where the twin's is: the same next mask
    assert np.array_equal(net.mask("drop"), twin.mask("drop"))


def test_a_wrong_gradient_fails_the_check(tmp_path, monkeypatch):
    """The check can fail: a bias gradient off by 10% is a FAIL, under both rules."""
    from alexnet_replay.engine import EngineNet

    (tmp_path / "net.cfg").write_text(SMALL_NET)
    (tmp_path / "params.cfg").write_text(SMALL_PARAMS)
    config, _ = load_config(tmp_path / "net.cfg", tmp_path / "params.cfg", image_size=(3, 4, 4))
    true_grad = EngineNet.bias_grad
    monkeypatch.setattr(EngineNet, "bias_grad", lambda self, name: true_grad(self, name) * np.float32(1.1))
    for central in (True, False):
        checks = {(c.layer, c.what): c for c in check_gradients(config, batch(config, 6, scale=0.1), central=central)}
        assert checks["fc2", "biases"].verdict == "FAIL" and 0.05 < checks["fc2", "biases"].relative_error < 0.15
        assert checks["fc2", "weights[0]"].verdict == "ok"
        assert checks["fc2", "biases"].text().endswith("FAIL")


SATURATED_NET = """
[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
[fc]
type=fc
inputs=data
outputs=4
initW=100
gpu=0
[probs]
type=softmax
inputs=fc
[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""


def test_a_saturated_softmax_is_reported_as_not_checkable(tmp_path):
    """When every case's largest probability rounds to 1 and is the label's, E is 0 and
    stays 0 under a step while the analytic gradient is tiny: the verdict says so, with
    the softmax and its largest input, instead of FAIL (and it is not a pass)."""
    (tmp_path / "net.cfg").write_text(SATURATED_NET)
    (tmp_path / "params.cfg").write_text("[fc]\nepsW=0.01\nepsB=0.02\nmomW=0\nmomB=0\nwc=0\n[logprob]\ncoeff=1\n")
    config, _ = load_config(tmp_path / "net.cfg", tmp_path / "params.cfg", image_size=(3, 4, 4))
    x = batch(config, 6)[0]
    net = alexnet_replay.load(tmp_path / "net.cfg", tmp_path / "params.cfg", image_size=(3, 4, 4),
                              minibatch=6, seed=0)
    net.forward([x, np.zeros((1, 6), np.float32)], train=False)
    assert (net.acts("probs").max(axis=0) == 1).all()
    labels = net.acts("probs").argmax(axis=0).astype(np.float32)[None]  # right and certain: E = 0
    checks = check_gradients(config, [x, labels], seed=0)
    assert [c.verdict for c in checks] == ["saturated", "saturated"], [c.to_dict() for c in checks]
    assert not any(c.passed for c in checks) and "2 not checkable" in summary(checks)
    assert checks[0].text().split("  ")[-1].startswith("saturated: not checkable at this point (E moves less")
    assert "softmax 'probs': max |input|" in checks[0].text() and "6 of 6 cases with max p = 1" in checks[0].text()


def test_gradient_check_of_the_release_gc_file(release):
    """layers.gc.cfg with its parameter file, on check-grads' default data (0.1 N(0,1),
    8 cases): every matrix passes by default (central differences) at seeds 0 and 1.
    The one-sided rule fails three conv bias vectors at seed 0 by its O(h) error alone
    (measured 2-6% against 0.06-0.3% central). For CI time, 12 elements of each matrix,
    spread over it; the whole check is measured in docs/fidelity.md."""
    gc = release / "example-layers"
    config, _ = load_config(gc / "layers.gc.cfg", gc / "layer-params.gc.cfg")
    for seed in (0, 1):
        rng = np.random.default_rng(seed)  # what `check-grads` draws
        data = [(0.1 * rng.standard_normal((3072, 8))).astype(np.float32),
                rng.integers(0, 10, (1, 8)).astype(np.float32)]
        checks = check_gradients(config, data, seed=seed, max_elements=12)
        assert len(checks) == 20 and all(c.passed for c in checks), [c.to_dict() for c in checks if not c.passed]


def test_dropout_masks_can_be_injected(tmp_path):
    """engine.md §3.16: training multiplies by the mask (no rescaling), testing by keep."""
    (tmp_path / "net.cfg").write_text(SMALL_NET)
    (tmp_path / "params.cfg").write_text(SMALL_PARAMS)
    net = alexnet_replay.load(tmp_path / "net.cfg", tmp_path / "params.cfg", image_size=(3, 4, 4),
                              minibatch=5, seed=0)
    data = batch(net.config, 5)
    net.inject_masks = True
    mask = (np.arange(7 * 5).reshape(7, 5) % 3 == 0).astype(np.float32)
    net.set_mask("drop", mask)
    net.forward(data, train=True)
    assert np.array_equal(net.acts("drop"), net.acts("fc1_neuron") * mask)
    net.backward()
    assert np.array_equal(net.acts_grad("fc1_neuron"), net.acts_grad("drop") * mask)
    net.forward(data, train=False)
    assert np.array_equal(net.acts("drop"), net.acts("fc1_neuron") * np.float32(0.5))
    net.forward(data, pass_type="gradient-check")  # PASS_GC: dropout as in testing
    assert np.array_equal(net.acts("drop"), net.acts("fc1_neuron") * np.float32(0.5))
    net.backward()
    assert np.array_equal(net.acts_grad("fc1_neuron"), net.acts_grad("drop") * np.float32(0.5))
    # drawn masks: about half the units kept, different draws for different steps
    net.inject_masks = False
    net.forward(data, train=True)
    first = net.mask("drop")[:, :5].copy()
    net.forward(data, train=True)
    assert not np.array_equal(first, net.mask("drop")[:, :5]) and set(np.unique(first)) <= {0.0, 1.0}


def test_a_tree_net_without_its_label_tree_fails_at_load_naming_the_layer(release):
    """The release's tree came with its data (batches.meta['tree']); load() has none."""
    with pytest.raises(ReplayError, match=r"layer 'fc1000': treefc needs the data's label tree"):
        alexnet_replay.load(release / "layers" / "layers-137-tree.cfg",
                            release / "layers" / "layer-params-137-tree.cfg", minibatch=2)


def test_engine_needs_a_parameter_file(tmp_path):
    from alexnet_replay import networks

    with pytest.raises(ReplayError, match="needs a layer-parameter file"):
        alexnet_replay.load(str(networks.bundled("cifar-18pct").layers), minibatch=2)


def test_paper_network_training_step(release):
    """layers-145 + layer-params-145 at 3x224x224, minibatch 16: one step runs, costs are
    finite, and the net holds 60,965,224 trainable parameters."""
    net = alexnet_replay.load(release / "layers" / "layers-145.cfg", release / "layers" / "layer-params-145.cfg",
                              minibatch=16, seed=0)
    total = 0
    for layer in net.config.layers.values():
        if layer.type in ("conv", "fc"):
            total += sum(net.weights(layer.name, i).size for i in range(len(layer.weights)))
            total += net.biases(layer.name).size
    assert total == 60_965_224
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((3 * 224 * 224, 16)).astype(np.float32),
            rng.integers(0, 1000, (1, 16)).astype(np.float32)]
    w_before = net.weights("fc2048a").copy()
    costs = net.train_step(data)["logprob"]
    assert all(np.isfinite(costs)) and costs[0] / 16 == pytest.approx(np.log(1000), rel=0.05)
    assert not np.array_equal(net.weights("fc2048a"), w_before)  # the step moved the weights
    mask = net.mask("hs1a")[:, :16]
    assert set(np.unique(mask)) == {0.0, 1.0} and 0.45 < mask.mean() < 0.55  # keep 0.5


def test_injected_mask_of_a_short_last_minibatch_is_the_one_used(tmp_path):
    """A minibatch of 3 cases in a net built for 5: the (D, 3) mask given is applied case by
    case (the engine reads it from the start of its buffer, case fastest)."""
    (tmp_path / "net.cfg").write_text(SMALL_NET)
    (tmp_path / "params.cfg").write_text(SMALL_PARAMS)
    net = alexnet_replay.load(tmp_path / "net.cfg", tmp_path / "params.cfg", image_size=(3, 4, 4),
                              minibatch=5, seed=0)
    data = batch(net.config, 3)
    net.inject_masks = True
    mask = (np.arange(7 * 3).reshape(7, 3) % 4 != 1).astype(np.float32)
    net.set_mask("drop", mask)
    net.forward(data, train=True)
    assert net.acts("drop").shape == (7, 3)
    assert np.array_equal(net.acts("drop"), net.acts("fc1_neuron") * mask)
    assert np.array_equal(net.mask("drop"), mask)
    net.backward()
    assert np.array_equal(net.acts_grad("fc1_neuron"), net.acts_grad("drop") * mask)
    net.inject_masks = False  # the engine's own draws land where mask() shows them
    net.forward(data, train=True)
    drawn = net.mask("drop")
    assert drawn.shape == (7, 3) and np.array_equal(net.acts("drop"), net.acts("fc1_neuron") * drawn)


def test_the_fc_row_step_is_the_weights_step(tmp_path, monkeypatch):
    """check-grads moves an fc weight by adding h x (its input row) to its output row instead
    of rerunning the product (gradcheck._fc_row_step): E after that equals E after moving the
    weight and rerunning the layer, to float32 rounding of the row; and a wrong fc weight
    gradient still fails the check."""
    from alexnet_replay import gradcheck
    from alexnet_replay.engine import EngineNet

    (tmp_path / "net.cfg").write_text(SMALL_NET)
    (tmp_path / "params.cfg").write_text(SMALL_PARAMS)
    config, _ = load_config(tmp_path / "net.cfg", tmp_path / "params.cfg", image_size=(3, 4, 4))
    net = EngineNet(gradcheck._gradient_config(config), 6, 0)
    net.set_data(batch(config, 6, scale=0.1))
    net._net.forward("gradient-check")
    net.inject_masks = True
    coeffs = {"logprob": 1.0}
    base = gradcheck._costs(net, coeffs)
    step = gradcheck._fc_row_step(net, config, "fc1", "weights[0]")
    assert step is not None and gradcheck._fc_row_step(net, config, "fc1", "biases") is None
    w = net.weights("fc1").ravel(order="K")
    h = np.float32(0.01)
    for k in (0, 47, 48, 200, w.size - 1):                      # row ends, column ends
        step(k, h)
        short = gradcheck._costs(net, coeffs)
        step(k, np.float32(0))
        keep = w[k]
        w[k] = keep + h
        full = gradcheck._objective(net, coeffs, "fc1")
        w[k] = keep
        net._net.forward_from("fc1")
        assert short != base and abs(short - full) <= 1e-6 * abs(full), (k, short, full)
    assert gradcheck._costs(net, coeffs) == base                  # put back

    true_inc = EngineNet.weight_inc
    monkeypatch.setattr(EngineNet, "weight_inc", lambda self, name, i=0: true_inc(self, name, i) * np.float32(1.1))
    checks = {(c.layer, c.what): c for c in check_gradients(config, batch(config, 6, scale=0.1))}
    assert checks["fc1", "weights[0]"].verdict == "FAIL" and 0.05 < checks["fc1", "weights[0]"].relative_error < 0.15
