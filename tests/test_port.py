"""The PyTorch port (alexnet_replay.modernize.port) against the C++ engine (port issue).

Three networks: the bundled CIFAR net (at 3x32x32 and at the 3x24x24 crop), the
paper's two-tower ImageNet net at minibatch 2, and a small custom net written here
that reaches every layer type the engine supports (groups, random sparse
connectivity, local layers, all pool kinds with clipped windows, the three norms with
even and blocked windows, the twelve neurons, eltsum/eltmax/concat, nailbed, blur,
href, dropout, logreg and sum2). Engine and port get the same weights (copied from the
engine), the same data and the same dropout masks and nrelu noise (drawn by the port,
injected into the engine).

Per network, three levels:

* isolated layers: each port layer is fed the ENGINE's inputs (and, backward, the
  engine's incoming gradient), so its tolerance measures that layer's arithmetic only;
  this is where bit-exact parity is shown for the layers whose float ops are the same;
* end to end: the port runs from the data alone; every layer output, every received
  gradient -dE/dy, every weight and bias gradient G = -(1/N) dE/dW, the costs;
* training: three steps of ReleaseSGD against the engine's train_step (not for the
  paper net, which would take too long on 2 cores).

Tolerances are ``atol + rtol*|expected|`` with ``atol = scale * max|expected|`` (the
array's own magnitude, so one table serves layers of any size); see TOL.

Connection tables of random sparse inputs: the engine draws them in engine.py from
RandomState(seed) in layer order before the weights; ``port.draw_conns`` replays that
order, and the tests build both sides from the same seed. A wrong table would fail the
conv4 parity below (and the bit-exact comparison of initial weights, which come from
the same stream right after the tables).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from alexnet_replay import _core  # noqa: E402
from alexnet_replay.engine import EngineNet  # noqa: E402
from alexnet_replay.errors import ReplayError  # noqa: E402
from alexnet_replay.gradcheck import _gradient_config  # noqa: E402
from alexnet_replay.modernize import parity, port  # noqa: E402
from alexnet_replay.modernize.parity import (TOL, engine_image, forward_kind,  # noqa: E402
                                             isolated_backward, make_batch, rescale_weights,
                                             takes_fused_gradient)
from alexnet_replay.modernize.parity.runner import layers_below  # noqa: E402
from alexnet_replay.original.shownet import load as load_config  # noqa: E402
from alexnet_replay.testing import assert_close  # noqa: E402

# ---------------------------------------------------------------------------
# Tolerances, per layer class: one table, alexnet_replay.modernize.parity.tolerances.TOL, with reasons.


def check(actual, expected, kind: str, what: str, scale_of=None) -> None:
    """assert_close with the table's tolerance; atol is relative to max|scale_of| (default:
    the expected array itself)."""
    a = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    e = np.asarray(expected, dtype=np.float64)
    ref = np.abs(np.asarray(e if scale_of is None else scale_of, dtype=np.float64))
    scale, rtol = TOL[kind]
    top = float(ref.max()) if ref.size else 0.0
    atol = scale * top
    assert_close(a, e, atol=atol, rtol=rtol, what=f"{what} [{kind}]")


@pytest.fixture(autouse=True, scope="module")
def deterministic_torch():
    """float32 everywhere, deterministic algorithms, no TF32 (irrelevant on CPU, set anyway)."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32, torch.get_default_dtype())
    torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_default_dtype(torch.float32)
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1], saved[2]
    torch.set_default_dtype(saved[3])


# ---------------------------------------------------------------------------
# The custom network: one line per section, "name: key=value key=value ..."
CUSTOM_LAYERS = """
data: type=data dataIdx=0
labels: type=data dataIdx=1
blur0: type=blur inputs=data channels=3 filterSize=5 stdev=1.5 gpu=0
flip0: type=href inputs=data channels=3 gpu=0
conv1: type=conv inputs=blur0,flip0 channels=3,3 filters=16,16 filterSize=4,4 stride=3,3 padding=1,1
    initW=0.3,0.3 partialSum=5 sharedBiases=0 neuron=relu gpu=0
conv2: type=conv inputs=data channels=3 filters=16 filterSize=3 padding=1 initW=0.3 partialSum=13
    neuron=tanh[1.5,0.7] gpu=0
cmr4: type=cmrnorm inputs=conv2 channels=16 size=4
cmrb: type=cmrnorm inputs=cmr4 channels=16 size=3 blocked=1
poolmax: type=pool pool=max inputs=cmrb channels=16 sizeX=4 stride=2
poolavg: type=pool pool=avg inputs=conv2 channels=16 sizeX=3 stride=2 start=-1
blur1: type=blur inputs=poolavg channels=16 filterSize=3 stdev=1
rn: type=rnorm inputs=blur1 channels=16 size=4
cn: type=cnorm inputs=poolmax channels=16 size=3
pmaxabs: type=pool pool=maxabs inputs=cn channels=16 sizeX=3 stride=2
prand: type=pool pool=rand inputs=conv1 channels=16 sizeX=3 stride=2
conv3: type=conv inputs=cn channels=16 filters=16 groups=2 filterSize=3 padding=1 initW=0.2 partialSum=4
    neuron=relu
conv4: type=conv inputs=rn channels=16 filters=16 groups=4 randSparse=1 filterChannels=8 filterSize=3 stride=2
    initW=0.2 partialSum=3
local1: type=local inputs=conv3 channels=32 filters=16 groups=2 filterSize=3 stride=2 initW=0.2 neuron=abs
nail: type=nailbed inputs=conv2 channels=16 stride=3
fcA: type=fc inputs=pmaxabs,conv4 outputs=16 initW=0.05,0.05
fcB: type=fc inputs=local1,prand,nail outputs=16 initW=0.05,0.05,0.05
fcImg: type=fc inputs=fcA outputs=75 initW=0.3
flipI: type=href inputs=fcImg channels=3
es: type=eltsum inputs=flipI,fcImg coeffs=1,-0.5
nA_relu: type=neuron inputs=fcA neuron=relu
nB_relu: type=neuron inputs=fcB neuron=relu
emax: type=eltmax inputs=nA_relu,nB_relu,fcB
esum: type=eltsum inputs=fcA,fcB coeffs=0.5,-1.5
n_softrelu: type=neuron inputs=fcA neuron=softrelu
n_drelu: type=neuron inputs=fcA neuron=drelu[0.7]
n_logistic: type=neuron inputs=fcA neuron=logistic
n_square: type=neuron inputs=fcA neuron=square
n_abs: type=neuron inputs=fcA neuron=abs
n_sqrt: type=neuron inputs=n_logistic neuron=sqrt
n_linear: type=neuron inputs=fcA neuron=linear[-0.5,0.25]
n_brelu: type=neuron inputs=nA_relu neuron=brelu[0.5]
n_absz: type=neuron inputs=nA_relu neuron=abs
n_nrelu: type=neuron inputs=fcB neuron=nrelu
n_ident: type=neuron inputs=fcB neuron=ident
n_tanh: type=neuron inputs=fcB neuron=tanh[1.2,0.8]
cat: type=concat
    inputs=n_softrelu,n_drelu,n_logistic,n_square,n_abs,n_sqrt,n_linear,n_brelu,n_absz,n_nrelu,n_ident,n_tanh,emax,esum,es
drop: type=hs inputs=cat keep=0.6
fc10: type=fc inputs=drop outputs=10 initW=0.1
probs: type=softmax inputs=fc10
logprob: type=cost.logreg inputs=labels,probs gpu=0
sq: type=cost.sum2 inputs=n_square
"""
_W = "epsW={e} epsB=0.02 momW={m} momB=0.9 wc={w}"
CUSTOM_PARAMS = f"""
conv1: epsW=0.01,0.02 epsB=0.02 momW=0.9,0.8 momB=0.9 wc=0.001,0.002
conv2: {_W.format(e=0.01, m=0.9, w=0.004)} schedW=exp[tgtFactor=10,noiseStdev=0]
conv3: {_W.format(e=0.01, m=0.9, w=0.004)} wball=0.005
conv4: epsW=0.01 epsB=0.02 momW=0.9 momB=0.5 wc=0.004 wcNormMin=0.001 wcNormMax=0.004
local1: {_W.format(e=0.01, m=0.9, w=0.004)} wball=0.005
fcA: {_W.format(e="0.01,0.01", m="0.9,0.9", w="0.001,0.001")}
fcB: {_W.format(e="0.01,0.01,0.01", m="0.9,0.9,0.9", w="0.001,0.001,0.001")} schedB=linear[tgtFactor=4,noiseStdev=0]
fcImg: {_W.format(e=0.01, m=0.9, w=0.001)} wball=0.01
fc10: {_W.format(e=0.01, m=0.9, w=0.01)} schedW=dexp[tgtFactor=100,noiseStdev=0,numSteps=3]
cmr4: scale=0.5 pow=0.75 minDiv=2
cmrb: scale=0.3 pow=0.75
rn: scale=0.2 pow=0.75
cn: scale=0.2 pow=0.75
prand: doMax=1
drop: enable=true
logprob: coeff=1 topk=3
sq: coeff=0.01
"""


def cfg_text(compact: str) -> str:
    """One section per line, "name: key=value ...", indented lines continuing the one above."""
    sections: list[list[str]] = []
    for line in compact.strip().splitlines():
        if line[:1].isspace():
            sections[-1] += line.split()
        else:
            name, body = line.split(":", 1)
            sections.append([f"[{name.strip()}]", *body.split()])
    return "\n".join("\n".join(sec) + "\n" for sec in sections)


def custom_config(tmp_path):
    (tmp_path / "custom.layers.cfg").write_text(cfg_text(CUSTOM_LAYERS))
    (tmp_path / "custom.params.cfg").write_text(cfg_text(CUSTOM_PARAMS))
    config, _ = load_config(tmp_path / "custom.layers.cfg", tmp_path / "custom.params.cfg", image_size=(3, 13, 13))
    return config


# ---------------------------------------------------------------------------
# Helpers


class Run:
    """Engine (gradient configuration: eps 1, momentum 0, no decay, so increments are G)
    and port with the same weights, data, masks and noise; one forward and backward each."""

    def __init__(self, config, cases: int, seed: int, rescale: bool) -> None:
        self.config = config
        self.cases = cases
        self.engine = EngineNet(_gradient_config(config), cases, seed)
        if rescale:
            rescale_weights(self.engine, seed + 100)
        self.module = port.build_module(config, seed=seed, init=False)
        port.load_engine_weights(self.module, self.engine)
        self.data, engine_data = make_batch(config, cases, seed + 200)
        self.module.generator = torch.Generator().manual_seed(seed + 300)
        self.out = self.module(self.data, train=True)
        self.masks, self.noise = dict(self.module.last_masks), dict(self.module.last_noise)
        port.masks_to_engine(self.module, self.engine)
        self.engine.forward(engine_data, train=True)
        self.engine.backward()
        self.grads = port.engine_gradients(self.module, self.out)

    def layers(self, *types: str):
        return [l for l in self.config.layers.values() if not types or l.type in types]

    def needs_grad(self, name: str) -> bool:
        """The engine computes a received gradient for layers at or above a learning layer."""
        return self.out[name].requires_grad and self.config.layers[name].type != "data"

    def engine_weight_grad(self, layer, i: int) -> np.ndarray:
        # conv keeps G in its gradient buffer; fc and local fold it into the increment (eps 1, mom 0)
        if layer.type == "conv":
            return self.engine.weight_grad(layer.name, i)
        return self.engine.weight_inc(layer.name, i)


# ---------------------------------------------------------------------------
# The three parity levels


def check_isolated(run: Run) -> dict[str, int]:
    """Each port layer on the engine's inputs; backward with the engine's incoming gradients."""
    cfg, eng, mod = run.config, run.engine, run.module
    kinds_seen: dict[str, int] = {}

    def inputs_of(layer):
        return [engine_image(eng, i, cfg).requires_grad_(True) for i in layer.inputs]

    # Forward.
    for layer in run.layers():
        if layer.type == "data" or layer.is_cost:
            continue
        with torch.no_grad():
            y = mod.layer_forward(layer.name, inputs_of(layer), train=True, masks=run.masks, noise=run.noise)
        kind = forward_kind(layer)
        kinds_seen[kind] = kinds_seen.get(kind, 0) + 1
        check(port.to_engine_acts(y), eng.acts(layer.name), kind, f"{layer.name} forward (isolated)")
    for layer in run.layers("cost.logreg", "cost.sum2"):
        with torch.no_grad():
            c = mod.layer_forward(layer.name, inputs_of(layer))
        check(c[:1], eng.costs()[layer.name][:1], "cost", f"{layer.name} cost")
        assert c[1:].tolist() == eng.costs()[layer.name][1:]  # error counts: exact

    # Backward: the library's loop (parity.isolated_backward), checked here with this file's TOL.
    received, kind_of, weight_grads = isolated_backward(cfg, eng, mod, run.out, run.masks, run.noise, run.cases, TOL)
    for name, g in received.items():
        check(port.to_engine_acts(g), eng.acts_grad(name), kind_of[name], f"{name} received gradient (isolated)")
    for layer, i, g in weight_grads:
        if i is None:
            check(port.bias_to_engine(layer, g), eng.bias_grad(layer.name), "grad-gemm", f"{layer.name} bias G")
        else:
            check(port.weight_to_engine(layer, i, g), run.engine_weight_grad(layer, i), "grad-gemm",
                  f"{layer.name} weight {i} G")
    return kinds_seen


def gate_flips(run: Run) -> dict[str, np.ndarray]:
    """Where the two forwards took a different branch of a discontinuous backward (parity.gate_flips)."""
    return parity.gate_flips(run.config, run.engine, run.out, run.cases)


def check_end_to_end(run: Run) -> dict[str, int]:
    """Every output, cost, received gradient and G, the port running from the data.

    Elementwise, except where a gate flipped (gate_flips): the flipped positions are left
    out of their layer's comparison, and every layer below a flipped one (whose gradient
    the flip spreads into) is compared by relative Frobenius error ("e2e-rerouted"). The
    isolated checks above hold every layer to its own tolerance regardless.
    """
    cfg, eng = run.config, run.engine
    flips = gate_flips(run)
    below = layers_below(cfg, flips)

    def grad_check(actual, expected, diffuse: bool, what: str, mask=None) -> None:
        a = np.asarray(actual.detach().numpy() if isinstance(actual, torch.Tensor) else actual, dtype=np.float64)
        e = np.asarray(expected, dtype=np.float64)
        if diffuse:
            rel = float(np.linalg.norm(a - e) / np.linalg.norm(e))
            assert rel <= TOL["e2e-rerouted"][0], f"{what}: relative error {rel:.3g} below a flipped gate"
            return
        if mask is not None:
            a = np.where(mask, e, a)
        check(a, e, "e2e-grad", what)

    for layer in run.layers():
        if layer.is_cost:
            check(run.out[layer.name][:1], eng.costs()[layer.name][:1], "e2e-cost", f"{layer.name} cost")
            continue
        check(port.to_engine_acts(run.out[layer.name]), eng.acts(layer.name), "e2e-forward", f"{layer.name} output")
        if run.needs_grad(layer.name) and not takes_fused_gradient(cfg, layer.name):
            grad_check(run.grads.acts_grad[layer.name], eng.acts_grad(layer.name), layer.name in below,
                       f"{layer.name} received gradient", flips.get(layer.name))
    for layer in run.layers(*port.WEIGHT_TYPES):
        diffuse = layer.name in below or layer.name in flips  # G sums dY over the flipped positions too
        for i in range(len(layer.inputs)):
            grad_check(run.grads.weight_grad[(layer.name, i)], run.engine_weight_grad(layer, i), diffuse,
                       f"{layer.name} weight {i} G")
        grad_check(run.grads.bias_grad[layer.name], eng.bias_grad(layer.name), diffuse, f"{layer.name} bias G")
    return {name: int(m.sum()) for name, m in flips.items()}


def check_training(config, cases: int, seed: int, progress: list[float], rescale: bool) -> None:
    """Three steps: ReleaseSGD on the port's summed loss vs the engine's train_step."""
    engine = EngineNet(config, cases, seed)
    module = port.build_module(config, seed=seed)
    for name, value in module.state_dict().items():  # same seed, same draw (engine.py's order)
        assert torch.equal(value, port.state_dict_from_engine(engine)[name]), name
    if rescale:
        rescale_weights(engine, seed + 100)
        port.load_engine_weights(module, engine)
    start = {k: v.clone() for k, v in module.state_dict().items()}
    opt = port.ReleaseSGD.for_module(module)
    module.generator = torch.Generator().manual_seed(seed + 400)
    for step, p in enumerate(progress):
        data, engine_data = make_batch(config, cases, seed + 500 + step)
        out = module(data, train=True)
        port.masks_to_engine(module, engine)
        costs = engine.train_step(engine_data, progress=p)
        for layer in config.layers.values():
            if layer.is_cost:
                check(out[layer.name][:1], costs[layer.name][:1], "e2e-cost", f"step {step}: {layer.name} cost")
        opt.zero_grad()
        module.objective(out).backward()
        opt.set_progress(p)
        opt.step(cases)
    state = module.state_dict()
    for layer in config.layers.values():
        if layer.type not in port.WEIGHT_TYPES:
            continue
        mod = module.weight_layer(layer.name)
        for i in range(len(layer.inputs)):
            key = f"{layer.name}.weight.{i}"
            w0 = port.weight_to_engine(layer, i, start[key])
            check(port.weight_to_engine(layer, i, state[key]), engine.weights(layer.name, i), "steps",
                  f"{key} after {len(progress)} steps", scale_of=engine.weights(layer.name, i) - w0)
            inc = opt.state[mod.weight[i]]["inc"]
            check(port.weight_to_engine(layer, i, inc), engine.weight_inc(layer.name, i), "steps", f"{key} increment")
        b0 = port.bias_to_engine(layer, start[f"{layer.name}.bias"])
        check(port.bias_to_engine(layer, state[f"{layer.name}.bias"]), engine.biases(layer.name), "steps",
              f"{layer.name}.bias after {len(progress)} steps", scale_of=engine.biases(layer.name) - b0)


# ---------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("image", [(3, 32, 32), (3, 24, 24)], ids=["32", "24"])
def test_cifar_net_parity(image):
    config, _ = load_config("cifar-18pct", image_size=image)
    run = Run(config, cases=5, seed=7, rescale=True)
    kinds = check_isolated(run)
    assert kinds == {"gemm": 4, "pool": 3, "neuron": 3, "norm": 2, "softmax": 1}
    assert check_end_to_end(run) == {}  # no gate flipped: every gradient compared elementwise
    check_training(config, cases=5, seed=7, progress=[0.0, 0.4, 0.8], rescale=True)


def test_paper_net_parity_at_minibatch_2():
    """224x224 (conv1's 3-pixel implicit overhang, §3.4), two towers, cmrnorm with minDiv 2,
    two dropout layers with injected masks, fc layers with two inputs."""
    config, _ = load_config("paper-2012")
    run = Run(config, cases=2, seed=3, rescale=False)
    check_isolated(run)
    flips = check_end_to_end(run)
    assert sum(flips.values()) < 200, flips  # positions in a handful of near-tied windows, of ~10^6
    assert set(run.masks) == {"drop6a", "drop6b", "drop7a", "drop7b"}
    assert all(0 < float(m.mean()) < 1 for m in run.masks.values())


def test_custom_net_parity(tmp_path):
    config = custom_config(tmp_path)
    run = Run(config, cases=5, seed=11, rescale=True)
    # The quirks are exercised: exact zeros reach abs, brelu, eltmax and max pooling.
    assert (run.out["nA_relu"] == 0).any() and (run.out["nB_relu"] == 0).any()
    assert ((run.out["nA_relu"] == 0) & (run.out["nB_relu"] == 0)).any()  # eltmax ties
    assert (run.out["conv1_neuron"] == 0).sum() > 20  # max-pool windows with tied zeros
    assert (run.noise["n_nrelu"] != 0).all()
    kinds = check_isolated(run)
    assert set(kinds) == {"copy", "pool", "blur", "eltsum", "neuron", "neuron-exp", "norm", "gemm", "softmax"}
    assert check_end_to_end(run) == {}
    check_training(config, cases=5, seed=11, progress=[0.0, 0.5, 1.0], rescale=True)


def test_href_overwrite_is_kept_and_matters(tmp_path):
    """§13 item 8: es = flipI - 0.5*fcImg, with flipI = href(fcImg) earlier in execution
    order: the engine's fcImg gradient holds only href's contribution. The port's gradient
    equals that, and differs from the true derivative (which adds -0.5 * dE/d(es))."""
    config = custom_config(tmp_path)
    run = Run(config, cases=3, seed=5, rescale=True)
    d_es = run.grads.acts_grad["es"]
    d_flip = run.grads.acts_grad["flipI"]
    layer = config.layers["flipI"]
    via_href = port.to_engine_acts(port.from_engine_acts(d_flip, layer).flip(-1))
    assert torch.equal(run.grads.acts_grad["fcImg"], via_href)
    assert float((via_href - 0.5 * d_es).abs().max()) > 1e-3  # the true derivative differs


def test_initial_weights_and_layout_round_trips(tmp_path):
    config = custom_config(tmp_path)
    engine = EngineNet(config, 3, seed=21)
    module = port.build_module(config, seed=21)
    state = module.state_dict()
    assert state["conv1.weight.1"].shape == (16, 3, 4, 4)
    assert state["conv3.weight.0"].shape == (32, 8, 3, 3)          # groups: Cg = 16/2
    assert state["conv4.weight.0"].shape == (64, 8, 3, 3)          # randSparse: filterChannels
    assert state["local1.weight.0"].shape == (3, 3, 32, 16, 3, 3)  # (MY, MX, F, Cg, K, K)
    assert state["fcB.weight.1"].shape == (16, 16 * 2 * 2)         # (Dout, Din)
    assert state["conv1.bias"].shape == (16, 5, 5) and state["conv2.bias"].shape == (16,)
    assert state["local1.bias"].shape == (32, 3, 3) and state["fc10.bias"].shape == (10,)
    from_engine = port.state_dict_from_engine(engine)
    assert set(from_engine) == set(state)
    for name in state:  # the same draw, bit for bit
        assert torch.equal(state[name], from_engine[name]), name
    # Element addresses of §1.3, spot-checked by hand.
    conv, fc, local = config.layers["conv3"], config.layers["fcB"], config.layers["local1"]
    w = engine.weights("conv3")  # (Cg*K*K, F): row (c'*K + ky)*K + kx
    assert state["conv3.weight.0"][5, 2, 1, 0] == w[(2 * 3 + 1) * 3 + 0, 5]
    assert state["fcB.weight.1"][7, 9] == engine.weights("fcB", 1)[9, 7]
    m, cg, k = 4, 16, 3  # local: row ((m*Cg + c')*K + ky)*K + kx, m = my*MX + mx
    assert state["local1.weight.0"][1, 1, 30, 6, 2, 1] == engine.weights("local1")[((m * cg + 6) * k + 2) * k + 1, 30]
    assert state["local1.bias"][3, 1, 2] == engine.biases("local1")[3 * 9 + 5, 0]
    # Round trips, and writing a module into the engine.
    for layer in (conv, fc, local):
        for i in range(len(layer.inputs)):
            e = engine.weights(layer.name, i)
            assert np.array_equal(port.weight_to_engine(layer, i, port.weight_from_engine(layer, i, e)), e)
    changed = {k: v + 1.0 for k, v in state.items()}
    port.copy_to_engine(changed, engine)
    for name, value in port.state_dict_from_engine(engine).items():
        assert torch.equal(value, changed[name]), name


def test_unsupported_layers_are_named(tmp_path, monkeypatch):
    # Every type of the reader now has a port function; a type without one (left out of the
    # registry the module builds from, here) is refused at build, naming the layer.
    from alexnet_replay.modernize.port import network

    monkeypatch.setattr(network, "LAYERS", {k: v for k, v in port.LAYERS.items() if k != "rgb2yuv"})
    layers = tmp_path / "bad.layers.cfg"
    params = tmp_path / "bad.params.cfg"
    layers.write_text(cfg_text("""
data: type=data dataIdx=0
labels: type=data dataIdx=1
yuv: type=rgb2yuv inputs=data channels=3 gpu=0
fc: type=fc inputs=yuv outputs=10 initW=0.01
probs: type=softmax inputs=fc
cost: type=cost.logreg inputs=labels,probs gpu=0
"""))
    params.write_text(cfg_text("fc: epsW=0.01 epsB=0.01 momW=0 momB=0\ncost: coeff=1"))
    config, _ = load_config(layers, params, image_size=(3, 8, 8))
    with pytest.raises(ReplayError, match=r"layer 'yuv': the port has no 'rgb2yuv' layer"):
        port.build_module(config)
    layers.write_text(cfg_text("""
data: type=data dataIdx=0
labels: type=data dataIdx=1
conv: type=conv inputs=data channels=3 filters=16 filterSize=3 initW=0.01 partialSum=0 gpu=0
pool: type=pool pool=rand inputs=conv channels=16 sizeX=2 stride=2
fc: type=fc inputs=pool outputs=10 initW=0.01
probs: type=softmax inputs=fc
cost: type=cost.logreg inputs=labels,probs gpu=0
"""))
    params.write_text(cfg_text("conv: epsW=0.01 epsB=0.01 momW=0 momB=0\nfc: epsW=0.01 epsB=0.01 momW=0 momB=0\n"
                               "pool: doMax=0\ncost: coeff=1"))
    config, _ = load_config(layers, params, image_size=(3, 8, 8))
    # pool=rand without doMax is a reconstruction the port runs (tests/test_reconstructions.py), but
    # an exported graph cannot hold its draw: the plain-operation forward refuses it, naming the layer
    with pytest.raises(ReplayError, match=r"layer 'pool': pool=rand without doMax draws"):
        port.LAYERS["pool"].inference(config.layers["pool"], [torch.zeros(1, 16 * 8 * 8)])


def test_test_pass_scales_by_keep_and_masks_are_not_rescaled(tmp_path):
    config = custom_config(tmp_path)
    module = port.build_module(config, seed=2)
    data, _ = make_batch(config, 3, seed=2)
    with torch.no_grad():
        test = module(data, train=False)
        mask = (torch.arange(3 * 299).reshape(3, 299) % 3 == 0).float()
        train = module(data, train=True, masks={"drop": mask}, noise={"n_nrelu": torch.zeros(3, 16)})
    keep = float(np.float32(0.6))
    assert torch.equal(test["drop"], test["cat"] * keep)
    assert torch.equal(train["drop"], train["cat"] * mask)  # no 1/keep at train time (§3.16)
    assert module.last_masks["drop"] is not mask and torch.equal(module.last_masks["drop"], mask)


NEURONS = [("ident", ()), ("relu", ()), ("nrelu", ()), ("brelu", (0.5,)), ("softrelu", ()), ("drelu", (0.7,)),
           ("abs", ()), ("logistic", ()), ("tanh", (1.7159, 0.6667)), ("square", ()), ("sqrt", ()),
           ("linear", (-0.5, 0.25))]


@pytest.mark.parametrize("kind,params", NEURONS, ids=[k for k, _ in NEURONS])
def test_neurons_on_awkward_values_match_the_engine_kernels(kind, params):
    """All twelve neurons (§3.11), forward and backward, against the engine's kernels on the
    values where the release's choices show: 0 and -0 (relu, abs: factor -1, brelu: 0 at
    both ends), softrelu's threshold 4 and its neighbours, brelu's a, large |x|."""
    f32 = np.float32
    four = f32(4.0)
    special = [0.0, -0.0, 1e-30, -1e-30, 0.5, 1.0, -1.0, np.nextafter(four, f32(0)), 4.0, np.nextafter(four, f32(9)),
               20.0, -20.0, 100.0, -100.0]
    rng = np.random.default_rng(3)
    x = np.concatenate([np.array(special, dtype=f32), (3 * rng.standard_normal(50)).astype(f32)])
    if kind == "sqrt":
        x = np.abs(x[x != 0])  # sqrt's factor 1/(2y) is infinite at 0, on both sides
    x = x.reshape(-1, 1)
    dy = rng.standard_normal(x.shape).astype(f32)
    noise = rng.standard_normal(x.shape).astype(f32)
    y_engine = np.empty_like(x)
    _core.neuron_fprop(x, y_engine, kind, params, noise if kind == "nrelu" else None)
    dx_engine = np.empty_like(x)
    _core.neuron_bprop(x, y_engine, dy, dx_engine, kind, params)
    a, b = (list(params) + [0.0, 0.0])[:2]
    xt = torch.from_numpy(x).requires_grad_(True)
    y = port._neuron(kind, a, b, xt, torch.from_numpy(noise) if kind == "nrelu" else None)
    (dx,) = torch.autograd.grad(y, xt, grad_outputs=torch.from_numpy(dy))
    exact = kind in ("ident", "relu", "nrelu", "brelu", "abs", "square", "linear")
    check(y, y_engine, "neuron" if exact else "neuron-exp", f"{kind} forward")
    check(dx, dx_engine, "grad-copy" if exact else "grad-exp", f"{kind} backward")


POOL_CASES = [(3, 2, 0, 0), (3, 2, -1, 0), (3, 2, -2, 0), (3, 2, 1, 0), (4, 3, 0, 0), (3, 3, -1, 2), (2, 1, 0, 0)]


@pytest.mark.parametrize("mode", ["max", "maxabs", "avg"])
def test_pool_on_ties_and_clipped_windows_matches_the_engine_kernels(mode):
    """Integer inputs in -2..2, so that ties (equal values, and |x| ties of opposite sign
    for maxabs) are everywhere; negative and positive starts, windows clipped at the
    bottom/right, a given outputsX. Integer dY keeps max-undo's sums exact in any order."""
    rng = np.random.default_rng(4)
    c, s, n = 2, 7, 3
    for size, stride, start, given in POOL_CASES:
        ox = given or -(-(s - start - size) // stride) + 1
        x = rng.integers(-2, 3, (n, c, s, s)).astype(np.float32)
        dy = rng.integers(-3, 4, (n, c, ox, ox)).astype(np.float32)
        xe = port.to_engine_acts(torch.from_numpy(x)).numpy()
        ye = np.empty((c * ox * ox, n), np.float32)
        _core.pool_fprop(xe, ye, mode, c, s, size, start, stride, ox)
        dxe = np.empty_like(xe)
        _core.pool_bprop(xe, ye, port.to_engine_acts(torch.from_numpy(dy)).numpy(), dxe, mode, c, s, size, start,
                         stride, ox)
        xt = torch.from_numpy(x).requires_grad_(True)
        y = port.pool2d(xt, mode, size, stride, start, ox)
        (dx,) = torch.autograd.grad(y, xt, grad_outputs=torch.from_numpy(dy))
        where = f"{mode} size {size} stride {stride} start {start} outputsX {ox}"
        check(port.to_engine_acts(y), ye, "pool", where)
        # avg: autograd divides dY by the count where the engine multiplies by 1/count
        check(port.to_engine_acts(dx), dxe, "grad-sum" if mode == "avg" else "grad-copy", where + " backward")


def test_logreg_costs_with_ties_match_the_engine():
    """§3.23's fractional credit: top-1 1/#max, top-k slots/#equal, on probabilities with ties."""
    probs = np.array([[0.25, 0.25, 0.25, 0.25], [0.4, 0.2, 0.2, 0.2], [0.1, 0.3, 0.3, 0.3],
                      [0.5, 0.5, 0.0, 0.0], [0.7, 0.1, 0.1, 0.1], [0.2, 0.2, 0.3, 0.3]], dtype=np.float32)
    labels = np.array([2, 3, 0, 1, 1, 1], dtype=np.float32)
    for k in (1, 2, 3, 4):
        theirs = _core.logreg_cost(labels.reshape(1, -1), np.ascontiguousarray(probs.T), k)
        ours = port._logreg_costs(torch.from_numpy(labels), torch.from_numpy(probs), k).tolist()
        assert ours[1:] == list(theirs[1:]), k
        assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    assert 0 < theirs[1] % 1 < 1  # fractional credit was exercised


# ---------------------------------------------------------------------------
# The optimizer


@pytest.mark.parametrize("kind,args", [("default", {}), ("linear", {"tgt_factor": 8.0}),
                                       ("exp", {"tgt_factor": 250.0}),
                                       ("dexp", {"tgt_factor": 250.0, "num_steps": 4}),
                                       ("jdexp", {"tgt_factor": 50.0, "num_steps": 5}),
                                       ("exp", {"tgt_factor": 10.0, "noise_stdev": 0.3, "z": -1.7})])
def test_schedule_rate_matches_the_engine(kind, args):
    for p in np.linspace(0, 1, 41).tolist() + [-0.5, 1.5, 0.25 + 1e-12]:
        ours = port.schedule_rate(kind, 0.01, p, **args)
        theirs = _core.schedule_rate(kind, 0.01, p, **args)
        assert ours == pytest.approx(theirs, rel=1e-14, abs=0), (kind, p)


def _sgd_problem():
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(6, 5, generator=g)
    a = torch.randn(7, 6, generator=g)
    b = torch.randn(7, 5, generator=g)

    def loss(w):  # a summed loss over N = 7 cases, as E
        return ((a @ w - b) ** 2).sum()

    return w0, loss, 7


def _run_release(w0, loss, n, rates, mom, wc):
    w = torch.nn.Parameter(w0.clone())
    opt = port.ReleaseSGD([{"params": [w], "eps": rates[0], "mom": mom, "wc": wc}])
    out = []
    for rate in rates:
        opt.param_groups[0]["lr"] = rate
        opt.zero_grad()
        loss(w).backward()
        opt.step(n)
        out.append(w.detach().clone())
    return out


def _run_torch(w0, loss, n, rates, mom, wc):
    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD([w], lr=rates[0], momentum=mom, weight_decay=wc)
    out = []
    for rate in rates:
        opt.param_groups[0]["lr"] = rate
        opt.zero_grad()
        (loss(w) / n).backward()  # SGD on the mean loss L = E/N
        opt.step()
        out.append(w.detach().clone())
    return out


@pytest.mark.parametrize("wc", [0.0, 0.05])
def test_release_sgd_against_torch_sgd(wc):
    """§4.2 puts the rate inside the momentum term (inc <- mu inc + eps G - eps wc W) where
    torch's SGD puts it outside (v <- mu v + g + wc w; w <- w - lr v). Equal while the rate
    is constant (inc = -lr v by induction), different after a rate change."""
    w0, loss, n = _sgd_problem()
    same = (1e-6, 1e-5)  # float32 rounding of the two orders of the same arithmetic
    rel, tch = _run_release(w0, loss, n, [0.01] * 3, 0.9, wc), _run_torch(w0, loss, n, [0.01] * 3, 0.9, wc)
    for a, b in zip(rel, tch):
        assert_close(a.numpy(), b.numpy(), atol=same[0], rtol=same[1], what="constant rate")
    rates = [0.01, 0.002, 0.002]  # a rate change after step 1
    rel, tch = _run_release(w0, loss, n, rates, 0.9, wc), _run_torch(w0, loss, n, rates, 0.9, wc)
    assert_close(rel[0].numpy(), tch[0].numpy(), atol=same[0], rtol=same[1], what="step 1")
    # Step 2 differs by -mu*(eps1 - eps2)*v1 = mu*(eps1 - eps2)/eps1 * inc1, i.e. 0.72 * (w1 - w0).
    expected_gap = 0.9 * (0.01 - 0.002) / 0.01 * (rel[0] - w0)
    assert_close((rel[1] - tch[1]).numpy(), expected_gap.numpy(), atol=1e-6, rtol=1e-4, what="step-2 gap")
    for a, b in zip(rel[1:], tch[1:]):
        assert float((a - b).abs().max()) > 100 * same[0]
    # With no momentum the two coincide even across the rate change (nothing is carried).
    rel, tch = _run_release(w0, loss, n, rates, 0.0, wc), _run_torch(w0, loss, n, rates, 0.0, wc)
    for a, b in zip(rel, tch):
        assert_close(a.numpy(), b.numpy(), atol=same[0], rtol=same[1], what="no momentum")


def test_release_sgd_step_arithmetic():
    """One step by hand: G = -grad/N, inc = mom*inc + eps*G + (-wc*eps)*W, W += inc, in float32."""
    w = torch.nn.Parameter(torch.tensor([[1.0, -2.0, 0.5]]))
    opt = port.ReleaseSGD([{"params": [w], "eps": 0.1, "mom": 0.5, "wc": 0.2}])
    opt.state[w]["inc"] = torch.tensor([[0.25, 0.0, -1.0]])
    w.grad = torch.tensor([[4.0, -8.0, 2.0]])
    opt.step(4)
    f = np.float32
    g = np.array([-1.0, 2.0, -0.5], dtype=f)
    inc = np.array([0.25, 0.0, -1.0], dtype=f) * f(0.5) + g * f(0.1)
    inc = inc + np.array([1.0, -2.0, 0.5], dtype=f) * (f(-0.2) * f(0.1))
    assert_close(opt.state[w]["inc"].numpy()[0], inc, what="inc")  # bit-exact
    assert_close(w.detach().numpy()[0], np.array([1.0, -2.0, 0.5], dtype=f) + inc, what="w")
    w.grad = None
    before = w.detach().clone()
    opt.step(4)  # no gradient: untouched, as the engine skips matrices that got none
    assert torch.equal(w.detach(), before)


# ---------------------------------------------------------------------------
# Where standard operations are and are not the release's


def test_local_response_norm_is_the_same_formula_up_to_rounding():
    """F.local_response_norm(x, n, alpha=scale, beta, k=minDiv) has cmrnorm's window (also for
    even n: [c - n//2, c - n//2 + n)) and its alpha/n, but rounds differently (the mean by a
    division, then x / D^beta) and has no blocked mode, so the port uses its own op, whose
    parity with the engine's kernel the net tests show."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 16, 5, 5, generator=g) * 3
    for size in (2, 4, 5):
        ref = torch.nn.functional.local_response_norm(x, size, alpha=0.5, beta=0.75, k=2.0)
        ours = port.cross_map_norm(x, size, 0.5 / size, 0.75, min_div=2.0)
        assert_close(ours.numpy(), ref.numpy(), atol=0, rtol=2e-6, what=f"size {size}")
        shifted = port.cross_map_norm(x.roll(1, dims=1), size, 0.5 / size, 0.75, min_div=2.0).roll(-1, dims=1)
        assert float((shifted - ref).abs().max()) > 1e-3  # a window one channel off would not pass


def test_avg_pool_standard_op_covers_start_0_only():
    """count_include_pad=False divides by the clipped count like the release and, with
    ceil_mode, gives the release's outputsX when start = 0; a negative start needs symmetric
    padding <= sizeX/2 and an output count computed with padding on both sides, so the port
    pads explicitly (one formulation for every start). Autograd of max_pool2d gives a tie's
    gradient to one element; the release gives it to every tied element."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 16, 7, 7, generator=g)
    ref = torch.nn.functional.avg_pool2d(x, 3, 2, ceil_mode=True, count_include_pad=False)
    assert_close(port.pool2d(x, "avg", 3, 2, 0, 3).numpy(), ref.numpy(), atol=0, rtol=1e-6, what="start 0")
    with pytest.raises(RuntimeError):
        torch.nn.functional.avg_pool2d(x, 3, 2, padding=2, ceil_mode=True, count_include_pad=False)
    ours = port.pool2d(x, "avg", 3, 2, -2, 5)  # windows [-2, 1), [0, 3), ..., [6, 9) clipped
    assert_close(ours[0, 0, 0, 0].item(), x[0, 0, :1, :1].mean().item(), rtol=1e-6, what="corner")
    assert_close(ours[0, 0, 4, 2].item(), x[0, 0, 6:, 2:5].mean().item(), rtol=1e-6, what="bottom edge")
    z = torch.zeros(1, 1, 3, 3, requires_grad=True)
    torch.nn.functional.max_pool2d(z, 3).sum().backward()
    assert int((z.grad != 0).sum()) == 1
    z.grad = None
    port.pool2d(z, "max", 3, 3, 0, 1).sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # max-undo, §3.6


def test_fused_softmax_logreg_gradient_stays_finite_when_p_underflows():
    """§3.12: the fused gradient coeff*(onehot - p) is finite even where p_label == 0 in
    float32, where autograd of -log p through F.softmax gives NaN."""
    x = torch.tensor([[0.0, 0.0, -200.0], [5.0, 1.0, 0.0]], requires_grad=True)  # exp(-200) -> 0 in float32
    lab = torch.tensor([[2], [0]])
    p = port._FusedSoftmax.apply(x)
    assert p[0, 2].item() == 0.0
    nll = port._FusedNLL.apply(p, lab)
    assert nll.item() == float("inf")  # the cost is inf, as the engine reports it
    (g,) = torch.autograd.grad(3.0 * nll, [x])  # coeff 3
    onehot = torch.zeros(2, 3)
    onehot[0, 2] = onehot[1, 0] = 1.0
    expected = 3.0 * (p.detach() - onehot)  # dE/dx = coeff (p - onehot), by hand: row 0 is (1.5, 1.5, -3)
    assert torch.isfinite(g).all()
    # -3 + 3p against 3(p - 1): the roundings differ by an ulp of coeff (2.4e-7 at 3), absolute
    assert_close(g.numpy(), expected.numpy(), atol=4.8e-7, rtol=0)
    assert_close(g[0].numpy(), np.array([1.5, 1.5, -3.0], np.float32), atol=0, rtol=0)
    # Plain autograd through F.softmax and -log p gives NaN there: the defect the fusion removes.
    x2 = x.detach().clone().requires_grad_(True)
    plain = -torch.log(torch.softmax(x2, dim=1).gather(1, lab)).sum()
    (g2,) = torch.autograd.grad(plain, [x2])
    assert torch.isnan(g2[0]).any()


def test_the_port_has_one_function_for_every_engine_layer_type():
    """port/layers.py registers one function per layer type: exactly the engine's table."""
    from alexnet_replay import _core

    assert sorted(port.LAYERS) == sorted(_core.LAYER_TYPES)
    assert port.SUPPORTED == tuple(port.LAYERS)
