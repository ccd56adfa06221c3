"""The update rules beyond §4.2's plain step: superEps (engine.md §4.4) and the driver's
--wupdate-freq (§4.2, §1.5), in the engine (CPU), the port's ReleaseSGD, the parity
suite, the checkpoint and the driver. Golden values are worked out here in float32
numpy, one operation at a time, as the kernels round them."""

from __future__ import annotations

import argparse
import io

import numpy as np
import pytest
import torch

import alexnet_replay
from alexnet_replay import networks
from alexnet_replay.errors import ReplayError
from alexnet_replay.gradcheck import _gradient_config
from alexnet_replay.harness import checkpoint as ckpt
from alexnet_replay.harness.driver import train
from alexnet_replay.harness.options import add_train_arguments
from alexnet_replay.modernize import parity
from alexnet_replay.modernize.port.optim import ReleaseSGD
from alexnet_replay.original.shownet import load as load_config

f32 = np.float32

# data (3x3x3 = 27) -> fc1 (13, relu) -> fc2 (7) -> softmax -> logreg: fc2's matrix is 13 x 7.
FC_NET = """[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
[fc1]
type=fc
inputs=data
outputs=13
initW=0.3
neuron=relu
gpu=0
[fc2]
type=fc
inputs=fc1
outputs=7
initW=0.3
[probs]
type=softmax
inputs=fc2
[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""
FC_IMAGE = (3, 3, 3)


def fc_params(super_eps: float) -> str:
    return (f"[fc1]\nepsW=0.05\nepsB=0.02\nmomW=0.9\nmomB=0.9\nwc=0.004\nsuperEps={super_eps}\nsuperMom=0.7\n"
            f"[fc2]\nepsW=0.03\nepsB=0.02\nmomW=0.8\nmomB=0.5\nwc=0.01\nsuperEps={super_eps}\n"
            "[logprob]\ncoeff=1\n")


# data (3x7x7) -> conv1 (16 filters, 3x3, relu) -> fc10 -> softmax -> logreg: conv (useGrad
# path) and fc (increment formed in backward) together, for --wupdate-freq.
CONV_NET = """[data]
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
stride=2
initW=0.2
partialSum=1
neuron=relu
gpu=0
[fc10]
type=fc
inputs=conv1
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
CONV_IMAGE = (3, 7, 7)
CONV_PARAMS = """[conv1]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
wc=0.004
[fc10]
epsW=0.02
epsB=0.03
momW=0.8
momB=0.7
wc=0.01
[logprob]
coeff=1
"""


def write(tmp_path, layers: str, params: str, stem: str = "net"):
    (tmp_path / f"{stem}.layers.cfg").write_text(layers)
    (tmp_path / f"{stem}.params.cfg").write_text(params)
    return tmp_path / f"{stem}.layers.cfg", tmp_path / f"{stem}.params.cfg"


def batch(config, cases: int, seed: int):
    rng = np.random.default_rng(seed)
    dims = config.layers["data"].outputs
    classes = config.layers["fc10" if "fc10" in config.layers else "fc2"].outputs
    return [rng.standard_normal((dims, cases)).astype(np.float32),
            rng.integers(0, classes, (1, cases)).astype(np.float32)]


def super_step(w, inc, gavg, g2avg, g, eps, mom, wc, super_eps):
    """§4.4 then §4.2 steps 2-3, in float32, each operation rounded on its own."""
    eps, mom, wc, super_eps = f32(eps), f32(mom), f32(wc), f32(super_eps)
    keep = f32(f32(1) - mom)
    gavg = mom * gavg + keep * g
    g2avg = mom * g2avg + keep * (g * g)
    with np.errstate(invalid="ignore"):
        inc = f32(0.9) * inc + (eps * g) / np.sqrt(g2avg - gavg + super_eps)
    if wc > 0:
        inc = inc + f32(-wc * eps) * w
    return w + inc, inc, gavg, g2avg


# -- superEps -------------------------------------------------------------------------------


def test_super_eps_engine_matches_the_formula_by_hand_over_three_steps(tmp_path):
    """fc2 (13 x 7) and fc1 with superEps: the engine's gradient G (now in a gradient buffer,
    the forced useGrad path) equals (1/N) X dY^T by hand, and W, inc, Gavg, G2avg after each of
    three steps equal §4.4 computed in float32 here, bit for bit; the biases keep §4.2."""
    layers, params = write(tmp_path, FC_NET, fc_params(0.3))  # > 1/4: no NaN (see the next test)
    net = alexnet_replay.load(layers, params, image_size=FC_IMAGE, minibatch=5, seed=4)
    state = {name: [np.zeros((r, c), np.float32) for _ in range(2)] + [np.zeros((r, c), np.float32)]
             for name, (r, c) in (("fc1", (27, 13)), ("fc2", (13, 7)))}  # inc, gavg, g2avg
    bias_inc = {name: np.zeros_like(net.biases(name)) for name in ("fc1", "fc2")}
    p = {"fc1": (0.05, 0.9, 0.004, 0.02, 0.9), "fc2": (0.03, 0.8, 0.01, 0.02, 0.5)}
    for step in range(3):
        data = batch(net.config, 5, 10 + step)
        net.forward(data)
        net.backward()
        x = net.acts("fc1_neuron").astype(np.float64)
        by_hand = (x @ net.acts_grad("fc2").astype(np.float64).T) / 5
        g2 = net.weight_grad("fc2").copy()
        np.testing.assert_allclose(g2, by_hand, rtol=1e-5, atol=1e-7)
        before = {name: (net.weights(name).copy(), net.weight_grad(name).copy(), net.biases(name).copy(),
                         net.bias_grad(name).copy()) for name in ("fc1", "fc2")}
        net.update()
        for name, (w, g, b, gb) in before.items():
            eps, mom, wc, eps_b, mom_b = p[name]
            inc, gavg, g2avg = state[name]
            w1, inc, gavg, g2avg = super_step(w, inc, gavg, g2avg, g, eps, mom, wc, 0.3)
            state[name] = [inc, gavg, g2avg]
            assert np.isfinite(w1).all()
            assert np.array_equal(net.weights(name), w1), (name, step)
            assert np.array_equal(net.weight_inc(name), inc), (name, step)
            assert np.array_equal(net.weight_gavg(name), gavg), (name, step)
            assert np.array_equal(net.weight_g2avg(name), g2avg), (name, step)
            bias_inc[name] = f32(mom_b) * bias_inc[name] + f32(eps_b) * gb  # §4.2, no superEps on biases
            assert np.array_equal(net.biases(name), b + bias_inc[name]), (name, step)
            assert not np.array_equal(w1, w)
    assert net.weight_gavg("fc2").shape == (13, 7)


def test_super_eps_nan_as_float_math_gives(tmp_path):
    """G2avg - Gavg + superEps < 0 (Gavg, not Gavg squared: any 0 < G < 1 with a tiny superEps)
    gives sqrt of a negative number: NaN in inc and W exactly there, no guard; and the next
    training step's costs are NaN."""
    layers, params = write(tmp_path, FC_NET, fc_params(1e-12))
    net = alexnet_replay.load(layers, params, image_size=FC_IMAGE, minibatch=6, seed=2)
    net.forward(batch(net.config, 6, 3))
    net.backward()
    w, g = net.weights("fc2").copy(), net.weight_grad("fc2").copy()
    net.update()
    zeros = np.zeros_like(w)
    w1, inc, _, _ = super_step(w, zeros, zeros, zeros, g, 0.03, 0.8, 0.01, 1e-12)
    nan = np.isnan(w1)
    assert nan.any() and not nan.all()
    assert np.array_equal(nan, (g > 0) & (g < 1))  # 0.2 (G^2 - G) + 1e-12 < 0 exactly there
    assert np.array_equal(np.isnan(net.weights("fc2")), nan)
    assert np.array_equal(net.weights("fc2"), w1, equal_nan=True)
    costs = net.train_step(batch(net.config, 6, 4))
    assert np.isnan(costs["logprob"][0])


def test_port_super_eps_golden_values_on_a_7x13_matrix():
    """ReleaseSGD alone: a 7 x 13 parameter with given gradients over three steps against
    the formula by hand (float32, op by op): the same numbers, bit for bit."""
    rng = np.random.default_rng(7)
    w0 = (0.1 * rng.standard_normal((7, 13))).astype(np.float32)
    param = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = ReleaseSGD([{"params": [param], "eps": 0.04, "mom": 0.85, "wc": 0.002, "kind": "fc", "super_eps": 0.02}])
    w, inc, gavg, g2avg = w0, *(np.zeros_like(w0) for _ in range(3))
    for step in range(3):
        raw = (3 * rng.standard_normal((7, 13))).astype(np.float32)  # dE/dW of the summed loss
        param.grad = torch.from_numpy(raw.copy())
        opt.step(4)
        g = raw * f32(-1.0 / 4)
        w, inc, gavg, g2avg = super_step(w, inc, gavg, g2avg, g, 0.04, 0.85, 0.002, 0.02)
        assert np.array_equal(param.detach().numpy(), w, equal_nan=True), step
        assert np.array_equal(opt.state[param]["gavg"].numpy(), gavg), step
    assert np.isnan(w).any()  # G in (0, 1) somewhere made the root's argument negative: NaN, as written
    assert not np.isnan(w).all()


# -- wupdate-freq ----------------------------------------------------------------------------


@pytest.mark.parametrize("freq,sizes", [(2, [5, 5, 5, 3]), (3, [5, 5, 3, 5, 5, 5])])
def test_wupdate_freq_engine_matches_the_sums_by_hand(tmp_path, freq, sizes):
    """update_freq F: for each group of F minibatches, conv's and the biases' G is the sum of
    the minibatches' (1/(F*5)) X dY, fc's increment gets (eps/(F*5)) X dY per minibatch with
    momentum on the first only, and the weights move on the F-th only; N = F x 5 even for a
    minibatch of 3 cases. Each minibatch's X dY comes from a reference net with the same
    weights (the gradient configuration: eps 1, momentum 0, so its increment is G)."""
    layers, params = write(tmp_path, CONV_NET, CONV_PARAMS)
    config, _ = load_config(layers, params, image_size=CONV_IMAGE)
    net = alexnet_replay.engine.EngineNet(config, 5, 1, update_freq=freq)
    ref = alexnet_replay.engine.EngineNet(_gradient_config(config), 5, 1)
    lr = {("conv1", "w"): (0.01, 0.9, 0.004), ("conv1", "b"): (0.02, 0.9, 0.0),
          ("fc10", "w"): (0.02, 0.8, 0.01), ("fc10", "b"): (0.03, 0.7, 0.0)}
    kinds = {"w": ("weights", "weight_inc"), "b": ("biases", "bias_inc")}
    expected = {key: (net.array(kinds[key[1]][0], key[0]).astype(np.float64), np.zeros(1)) for key in lr}
    sums = {key: 0.0 for key in lr}
    n_nominal = freq * 5
    for k, n in enumerate(sizes):
        for key in lr:
            ref.set_array(kinds[key[1]][0], key[0], net.array(kinds[key[1]][0], key[0]))
        data = batch(config, n, 30 + k)
        ref.train_step(data)  # eps 1, mom 0, no decay: inc = G = (1/n) X dY (and W moved, reset above)
        for key in lr:
            g = ref.array("weight_inc" if key == ("fc10", "w") else ("weight_grad" if key[1] == "w" else "bias_grad"),
                          key[0])
            sums[key] = sums[key] + g.astype(np.float64) * n  # X dY of this minibatch
        before = {key: net.array(kinds[key[1]][0], key[0]).copy() for key in lr}
        assert net.accumulated == k % freq
        net.train_step(data)
        due = (k + 1) % freq == 0
        assert net.accumulated == (k + 1) % freq
        for key, (eps, mom, wc) in lr.items():
            w_now = net.array(kinds[key[1]][0], key[0])
            if not due:
                assert np.array_equal(w_now, before[key]), (key, k)  # nothing moves before the F-th
                continue
            w, inc = expected[key]
            inc = mom * inc + eps * sums[key] / n_nominal - wc * eps * w
            w = w + inc
            expected[key] = (w, inc)
            sums[key] = 0.0
            np.testing.assert_allclose(w_now, w, rtol=2e-5, atol=2e-7, err_msg=f"{key} minibatch {k}")
            np.testing.assert_allclose(net.array(kinds[key[1]][1], key[0]), inc, rtol=1e-4, atol=1e-8,
                                       err_msg=f"{key} minibatch {k}")


def test_wupdate_freq_one_is_the_plain_step_and_bad_values_are_refused(tmp_path):
    layers, params = write(tmp_path, CONV_NET, CONV_PARAMS)
    config, _ = load_config(layers, params, image_size=CONV_IMAGE)
    a = alexnet_replay.engine.EngineNet(config, 5, 1)
    b = alexnet_replay.engine.EngineNet(config, 5, 1, update_freq=2)
    data = batch(config, 5, 1)
    a.train_step(data)
    b.train_step(data)
    assert not np.array_equal(a.weights("fc10"), b.weights("fc10"))  # b has not updated yet
    assert a.accumulated == 0 and b.accumulated == 1
    with pytest.raises(ReplayError, match="cannot change while 1 minibatch"):
        b.update_freq = 3
    with pytest.raises(ReplayError, match="must be >= 1"):
        alexnet_replay.engine.EngineNet(config, 5, 1, update_freq=0)
    with pytest.raises(ValueError, match=r"accumulated: must be in 0\.\.1"):
        b.accumulated = 2


# -- parity: engine against the port -----------------------------------------------------------


def test_parity_with_super_eps(tmp_path):
    params = CONV_PARAMS.replace("wc=0.004\n", "wc=0.004\nsuperEps=0.3\n").replace("wc=0.01\n",
                                                                                  "wc=0.01\nsuperEps=0.3\n")
    layers, params_path = write(tmp_path, CONV_NET, params)
    report = parity.run_parity(layers, params_path, image_size=CONV_IMAGE, minibatch=3, steps=3, seed=5)
    assert report.passed, parity.summary_text(report)
    steps = {m.quantity for m in report.metrics if m.layer == "fc10"}
    assert {"step1:weights[0]", "step3:weights[0]", "step3:biases"} <= steps


def test_parity_with_super_eps_fails_when_the_port_ignores_it(tmp_path, monkeypatch):
    """Not vacuous: the same run with the port's superEps switched off fails at fc10's weights."""
    from alexnet_replay.modernize.parity import runner

    params = CONV_PARAMS.replace("wc=0.01\n", "wc=0.01\nsuperEps=0.3\n")
    layers, params_path = write(tmp_path, CONV_NET, params)
    real = runner.port.ReleaseSGD.for_module

    def without(module, **kwargs):
        opt = real(module, **kwargs)
        for group in opt.param_groups:
            group["super_eps"] = 0.0
        return opt

    monkeypatch.setattr(runner.port.ReleaseSGD, "for_module", without)
    report = parity.run_parity(layers, params_path, image_size=CONV_IMAGE, minibatch=3, steps=2, seed=5)
    assert not report.passed
    assert {m.layer for m in report.failures()} >= {"fc10"}
    assert "step1:weights[0]" in {m.quantity for m in report.failures() if m.layer == "fc10"}


@pytest.mark.parametrize("freq", [2, 3])
def test_parity_with_wupdate_freq(tmp_path, freq):
    layers, params = write(tmp_path, CONV_NET, CONV_PARAMS)
    report = parity.run_parity(layers, params, image_size=CONV_IMAGE, minibatch=3, steps=2 * freq, seed=6,
                               update_freq=freq)
    assert report.passed, parity.summary_text(report)
    assert any(f"update_freq {freq}" in note for note in report.notes)
    assert {m.quantity for m in report.metrics if m.layer == "conv1"} >= {f"step{2 * freq}:weights[0]",
                                                                        f"step{2 * freq}:biases"}


def test_parity_of_a_local_layer_with_super_eps_and_wupdate_freq(tmp_path):
    """local weights also leave the increment-in-backward path for superEps (a gradient buffer,
    accumulated over the minibatches); engine and port agree over two updates of F=2."""
    layers = CONV_NET.replace("type=conv", "type=local").replace("partialSum=1\n", "").replace("[conv1]", "[local1]") \
        .replace("inputs=conv1", "inputs=local1")
    params = CONV_PARAMS.replace("[conv1]", "[local1]").replace("wc=0.004\n", "wc=0.004\nsuperEps=0.3\n")
    layers_path, params_path = write(tmp_path, layers, params)
    report = parity.run_parity(layers_path, params_path, image_size=CONV_IMAGE, minibatch=3, steps=4, seed=8,
                               update_freq=2)
    assert report.passed, parity.summary_text(report)
    assert {"step2:weights[0]", "step4:weights[0]"} <= {m.quantity for m in report.metrics if m.layer == "local1"}
    config, _ = load_config(layers_path, params_path, image_size=CONV_IMAGE)
    net = alexnet_replay.engine.EngineNet(config, 3, 1, update_freq=2)
    assert net.weight_grad("local1").shape == net.weights("local1").shape  # the forced useGrad path
    assert net.weight_grad("fc10").shape == (0, 0)


def test_port_and_engine_disagree_when_only_one_accumulates(tmp_path, monkeypatch):
    """The parity check of --wupdate-freq is not vacuous: the engine with F=2 against the port
    with F=1 fails at the first step (the engine has not moved, the port has)."""
    from alexnet_replay.modernize.parity import runner

    layers, params = write(tmp_path, CONV_NET, CONV_PARAMS)
    real = runner.port.ReleaseSGD.for_module
    monkeypatch.setattr(runner.port.ReleaseSGD, "for_module", lambda module, **k: real(module))
    report = parity.run_parity(layers, params, image_size=CONV_IMAGE, minibatch=3, steps=2, seed=6, update_freq=2)
    assert not report.passed
    assert any(m.quantity.startswith("step1:") for m in report.failures())


# -- checkpoints and the driver ---------------------------------------------------------------


def test_checkpoint_keeps_super_eps_averages_and_a_partial_accumulation(tmp_path):
    params = CONV_PARAMS.replace("wc=0.01\n", "wc=0.01\nsuperEps=0.3\n")
    layers, params_path = write(tmp_path, CONV_NET, params)
    config, _ = load_config(layers, params_path, image_size=CONV_IMAGE)

    def fresh():
        return alexnet_replay.engine.EngineNet(config, 5, 1, update_freq=3)

    whole, first = fresh(), fresh()
    for k in range(4):
        whole.train_step(batch(config, 5, 50 + k))
        first.train_step(batch(config, 5, 50 + k))
    assert first.accumulated == 1
    ckpt.save_checkpoint(tmp_path / "1.1.npz", first)
    meta, arrays = ckpt.read_checkpoint(tmp_path / "1.1.npz")
    names = set(arrays)
    assert meta["version"] == 2 and meta["update"] == {"freq": 3, "accumulated": 1}
    assert {"fc10/weights_gavg/0", "fc10/weights_g2avg/0", "fc10/weights_grad/0", "conv1/weights_grad/0",
            "conv1/biases_grad"} <= names
    assert "conv1/weights_gavg/0" not in names
    resumed = fresh()
    ckpt.load_checkpoint(tmp_path / "1.1.npz", resumed)
    assert resumed.accumulated == 1
    for k in range(4, 7):  # two more minibatches close the accumulation, one starts the next
        whole.train_step(batch(config, 5, 50 + k))
        resumed.train_step(batch(config, 5, 50 + k))
    for name in ("conv1", "fc10"):
        assert np.array_equal(whole.weights(name), resumed.weights(name)), name
        assert np.array_equal(whole.weight_inc(name), resumed.weight_inc(name)), name
        assert np.array_equal(whole.biases(name), resumed.biases(name)), name
    assert np.array_equal(whole.weight_g2avg("fc10"), resumed.weight_g2avg("fc10"))
    with pytest.raises(ReplayError, match="resume it with --wupdate-freq=3"):
        ckpt.load_checkpoint(tmp_path / "1.1.npz", alexnet_replay.engine.EngineNet(config, 5, 1))


DEMO_PARAMS = networks.bundled("cifar-18pct").params.read_text().replace("epsW=0.001", "epsW=0.01")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("sklearn", reason="scikit-learn (a test extra) renders the digits")
    from alexnet_replay.harness.make_batches import digits_batches

    folder = tmp_path_factory.mktemp("digits")
    digits_batches(folder, seed=0)
    params = folder / "params.cfg"
    text = DEMO_PARAMS
    assert "[fc10]" in text
    params.write_text(text.replace("[fc10]\n", "[fc10]\nsuperEps=0.3\n"))
    return folder, params


def args_for(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(argv)


def common(digits, save, *extra):
    folder, params = digits
    return args_for("--data-path", str(folder), "--save-path", str(save), "--train-range", "1-3",
                    "--test-range", "6", "--layer-def", str(networks.bundled("cifar-18pct").layers),
                    "--layer-params", str(params), "--test-freq", "3", "--mini", "128", "--seed", "3", *extra)


def test_train_with_wupdate_freq_and_super_eps_resumes_bit_for_bit(digits, tmp_path):
    """`train --wupdate-freq=2` with superEps on fc10: the checkpoint after epoch 1 (3 batches of
    about 300 digits, 3 minibatches each) falls in the middle of an accumulation, and a killed
    run resumed from it ends with the uninterrupted run's weights, increments and superEps
    averages, bit for bit."""
    _, whole = train(common(digits, tmp_path / "a", "--epochs=2", "--wupdate-freq=2"), out=io.StringIO())
    first, _ = train(common(digits, tmp_path / "b", "--epochs=1", "--wupdate-freq=2"), out=io.StringIO())
    saved = sorted(first.folder.glob("*.npz"))[-1]
    meta, _ = ckpt.read_checkpoint(saved)
    assert meta["update"]["freq"] == 2 and meta["state"]["options"]["wupdate_freq"] == 2
    assert meta["update"]["accumulated"] == 1  # mid-accumulation: the state must travel
    _, resumed = train(args_for("-f", str(first.folder), "--epochs=2"), out=io.StringIO())
    assert resumed.update_freq == 2
    for name in ("conv1", "conv2", "conv3", "fc10"):
        assert np.array_equal(whole.weights(name), resumed.weights(name)), name
        assert np.array_equal(whole.weight_inc(name), resumed.weight_inc(name)), name
    assert np.array_equal(whole.weight_gavg("fc10"), resumed.weight_gavg("fc10"))
    assert np.abs(whole.weight_gavg("fc10")).max() > 0
    with pytest.raises(ReplayError, match=r"--wupdate-freq=0: must be from 1 to"):
        train(common(digits, tmp_path / "e", "--epochs=1", "--wupdate-freq=0"), out=io.StringIO())
