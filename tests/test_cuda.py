"""The CUDA engine (engine/cuda, alexnet_replay.load(..., device="cuda")) against the CPU
engine (CUDA issue).

Most of this file needs a GPU and skips, with the reason, without one (CI has nvcc but
no GPU). What runs everywhere: the build facts (CUDA compiled, which GEMM), the clear
error for device="cuda" without CUDA or a GPU, the set_* writers that work on both
devices, cuBLAS loading from the nvidia-cublas wheel, and the validity of the small
test networks on the CPU.

CPU against CUDA, per layer type: a small net "data -> pre (conv) -> the layer under
test -> cost.sum2" (or softmax -> logreg), built twice from one seed (so both nets draw
the same dropout masks and nrelu noise: the CUDA net draws them on the host with the
CPU net's generator). Data, weights and biases are *dyadic* (small integers times a
power of two): every product and every partial sum of the matrix products is then
exactly representable, so conv/local/fc give the same bits in any summation order
(OpenBLAS or cuBLAS), the layer under test sees identical inputs on both devices, and
is judged by its own class (TOLERANCES below, with reasons; docs/parity.md, "CPU engine
against CUDA engine").
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import alexnet_replay
from alexnet_replay import _core
from alexnet_replay.engine import EngineNet, cublas_candidates, cuda_unavailable_reason
from alexnet_replay.errors import ReplayError
from alexnet_replay.original.shownet import load as load_config
from alexnet_replay.testing import assert_close

REASON = cuda_unavailable_reason()
needs_gpu = pytest.mark.skipif(REASON is not None, reason=f"needs a CUDA GPU: {REASON}")
SLOW = os.environ.get("ALEXNET_SLOW") == "1"
INFO = alexnet_replay.build_info()

# (scale, rtol): atol = scale * max|expected|, per element |err| <= atol + rtol*|expected|.
TOLERANCES = {
    # +, *, /, comparisons, sqrtf: IEEE on both sides, the same order, no FMA on either
    # (--fmad=false, -ffp-contract=off); exact products and sums (dyadic data) cannot
    # depend on the summation order. Bit-exact.
    "cuda-exact": (0.0, 0.0),
    # expf/logf/powf: CUDA's are within 2 (exp, log) and 4 (pow) ulp, glibc's within 1;
    # one such difference, carried through the product below it.
    "cuda-libm": (1e-6, 4e-6),
    # G and increments: the 1/N (conv) or eps/N (fc, local) scale and the momentum are
    # the GEMM's alpha and beta on both sides; cuBLAS's epilogue rounds alpha*acc + beta*C
    # its own way (FMA), OpenBLAS its own.
    "cuda-grad": (1e-6, 1e-6),
    # weights after 3 steps; atol relative to max|W - W0| (as the port's "steps" class):
    # G's error times eps, plus the last rounding of W + inc (~1 ulp of W).
    "cuda-steps": (2e-5, 3e-7),
}

# -- the small nets -------------------------------------------------------------------
# "name: key=value ..." one section per line (indented lines continue it).
HEAD = """
data: type=data dataIdx=0
pre: type=conv inputs=data channels=3 filters=16 filterSize=3 padding=1 initW=0.1 partialSum=13 gpu=0
"""
W = "epsW=0.01 epsB=0.02 momW=0.9 momB=0.9 wc=0.001"
SUM2 = "sq: type=cost.sum2 inputs=t\n"
# case: (layers after HEAD, extra parameter lines, class of the layer under test)
CASES = {
    "conv-groups": ("t: type=conv inputs=pre channels=16 filters=16 groups=2 filterSize=3 padding=1 initW=0.2 "
                    "partialSum=13\n" + SUM2, f"t: {W} wball=0.05\n", "cuda-exact"),
    "conv-sparse": ("t: type=conv inputs=pre channels=16 filters=16 groups=4 randSparse=1 filterChannels=8 "
                    "filterSize=3 stride=2 initW=0.2 partialSum=3\n" + SUM2,
                    f"t: {W} wcNormMin=0.001 wcNormMax=0.004\n", "cuda-exact"),
    "conv-two-inputs": ("t: type=conv inputs=data,data channels=3,3 filters=16,16 filterSize=4,4 stride=3,3 "
                        "padding=1,1 initW=0.3,0.3 partialSum=5 sharedBiases=0 gpu=0\n"
                        "sp: type=cost.sum2 inputs=pre\n" + SUM2,
                        "t: epsW=0.01,0.02 epsB=0.02 momW=0.9,0.8 momB=0.9 wc=0.001,0.002\n", "cuda-exact"),
    "local": ("t: type=local inputs=pre channels=16 filters=16 groups=2 filterSize=3 stride=2 initW=0.2\n" + SUM2,
              f"t: {W} wball=0.05\n", "cuda-exact"),
    "fc": ("nb: type=nailbed inputs=pre channels=16 stride=3\n"
           "t: type=fc inputs=pre,nb outputs=16 initW=0.05,0.05\n" + SUM2,
           "t: epsW=0.01,0.01 epsB=0.02 momW=0.9,0.9 momB=0.9 wc=0.001,0.001 wball=0.1,0.1\n", "cuda-exact"),
    "pool-max": ("t: type=pool pool=max inputs=pre channels=16 sizeX=4 stride=2\n" + SUM2, "", "cuda-exact"),
    "pool-maxabs": ("t: type=pool pool=maxabs inputs=pre channels=16 sizeX=3 stride=2\n" + SUM2, "", "cuda-exact"),
    "pool-avg": ("t: type=pool pool=avg inputs=pre channels=16 sizeX=3 stride=2 start=-1\n" + SUM2, "",
                 "cuda-exact"),
    "rnorm": ("t: type=rnorm inputs=pre channels=16 size=4\n" + SUM2, "t: scale=0.2 pow=0.75\n", "cuda-libm"),
    "cnorm": ("t: type=cnorm inputs=pre channels=16 size=3\n" + SUM2, "t: scale=0.2 pow=0.75\n", "cuda-libm"),
    "cmrnorm": ("a: type=cmrnorm inputs=pre channels=16 size=4\n"
                "t: type=cmrnorm inputs=a channels=16 size=3 blocked=1\n" + SUM2,
                "a: scale=0.5 pow=0.75 minDiv=2\nt: scale=0.3 pow=0.75\n", "cuda-libm"),
    "nailbed": ("t: type=nailbed inputs=pre channels=16 stride=3\n" + SUM2, "", "cuda-exact"),
    "blur": ("t: type=blur inputs=pre channels=16 filterSize=5 stdev=1.5\n" + SUM2, "", "cuda-exact"),
    "href": ("f: type=fc inputs=pre outputs=75 initW=0.05\nt: type=href inputs=f channels=3\n" + SUM2,
             f"f: {W}\n", "cuda-exact"),
    "dropout": ("t: type=hs inputs=pre keep=0.6\n" + SUM2, "t: enable=true\n", "cuda-exact"),
    "eltsum": ("a: type=neuron inputs=pre neuron=abs\nt: type=eltsum inputs=pre,a coeffs=0.5,-1.5\n" + SUM2, "",
               "cuda-exact"),
    "eltmax": ("a: type=neuron inputs=pre neuron=relu\nb: type=neuron inputs=pre neuron=abs\n"
               "t: type=eltmax inputs=a,b,pre\n" + SUM2, "", "cuda-exact"),
    "concat": ("a: type=neuron inputs=pre neuron=abs\nt: type=concat inputs=pre,a\n" + SUM2, "", "cuda-exact"),
    "softmax-logreg": ("labels: type=data dataIdx=1\n"
                       "f: type=fc inputs=pre outputs=10 initW=0.05\nprobs: type=softmax inputs=f\n"
                       "logprob: type=cost.logreg inputs=labels,probs gpu=0\n", f"f: {W}\nlogprob: coeff=1 topk=3\n",
                       "cuda-libm"),
    "softmax-unfused": ("labels: type=data dataIdx=1\n"
                        "f: type=fc inputs=pre outputs=10 initW=0.05\nprobs: type=softmax inputs=f\n"
                        "logprob: type=cost.logreg inputs=labels,probs gpu=0\nsq: type=cost.sum2 inputs=probs\n",
                        f"f: {W}\nlogprob: coeff=1\n", "cuda-libm"),
    # The cost layers beyond logreg and sum2 (§3.24–§3.28), on one-wide targets (the labels
    # data matrix) so that they share this file's data: the values only have to agree.
    # crossent reads a softmax (§3.24; one-wide, so p = 1), which a sum2 also reads: the gradient flows
    "crossent": ("labels: type=data dataIdx=1\n"
                 "f: type=fc inputs=pre outputs=1 initW=0.05\np: type=softmax inputs=f\n"
                 "c: type=cost.crossent inputs=labels,p gpu=0\nsq: type=cost.sum2 inputs=p\n",
                 f"f: {W}\nc: coeff=0.5\n", "cuda-libm"),
    "crossent2-fused": ("labels: type=data dataIdx=1\n"
                        "f: type=fc inputs=pre outputs=1 initW=0.05\np: type=neuron inputs=f neuron=logistic\n"
                        "c: type=cost.crossent2 inputs=labels,p gpu=0\n", f"f: {W}\nc: coeff=1\n", "cuda-libm"),
    "crossent2-unfused": ("labels: type=data dataIdx=1\n"
                          "f: type=fc inputs=pre outputs=1 initW=0.05\np: type=neuron inputs=f neuron=logistic\n"
                          "c: type=cost.crossent2 inputs=labels,p gpu=0\nsq: type=cost.sum2 inputs=p\n",
                          f"f: {W}\nc: coeff=0.01\n", "cuda-libm"),
    "rflickr": ("labels: type=data dataIdx=1\nf: type=fc inputs=pre outputs=1 initW=0.05\n"
                "c: type=cost.rflickr inputs=labels,f gpu=0\n", f"f: {W}\nc: coeff=0.5\n", "cuda-libm"),
    "gsum2": ("labels: type=data dataIdx=1\nt: type=neuron inputs=pre neuron=abs\n"
              "c: type=cost.gsum2 inputs=labels,t gpu=0\n", "c: coeff=0.01\n", "cuda-libm"),
    # §3.20–§3.22 (no backward, on the data beside pre) and §3.29, §3.30
    "resize": ("t: type=resize inputs=data channels=3 scale=1.7 gpu=0\nsp: type=cost.sum2 inputs=pre\n" + SUM2, "",
               "cuda-exact"),
    "rgb2yuv": ("t: type=rgb2yuv inputs=data gpu=0\nsp: type=cost.sum2 inputs=pre\n" + SUM2, "", "cuda-exact"),
    "rgb2lab": ("t: type=rgb2lab inputs=data center=1 gpu=0\nsp: type=cost.sum2 inputs=pre\n" + SUM2, "",
                "cuda-libm"),
    "rscale": ("t: type=rscale inputs=data channels=3 maxScale=1.5 tgtSize=9 gpu=0\nsp: type=cost.sum2 inputs=pre\n"
               + SUM2, "", "cuda-exact"),
    "tica": ("t: type=cost.tica inputs=pre channels=16 sizeX=3 gpu=0\nsq: type=cost.sum2 inputs=pre\n",
             "t: coeff=0.5\n", "cuda-exact"),
    "msm": ("labels: type=data dataIdx=1\nf: type=fc inputs=pre outputs=10 initW=0.05\n"
            "c: type=cost.msm inputs=labels,f gpu=0\n", f"f: {W}\nc: coeff=0.5 setSize=3 threads=2\n", "cuda-libm"),
}
for _n, _cls in [("relu", "cuda-exact"), ("nrelu", "cuda-exact"), ("brelu[0.5]", "cuda-exact"),
                 ("abs", "cuda-exact"), ("square", "cuda-exact"), ("linear[-0.5,0.25]", "cuda-exact"),
                 ("ident", "cuda-exact"), ("softrelu", "cuda-libm"), ("drelu[0.7]", "cuda-libm"),
                 ("logistic", "cuda-libm"), ("tanh[1.2,0.8]", "cuda-libm")]:
    CASES[f"neuron-{_n.split('[')[0]}"] = (f"t: type=neuron inputs=pre neuron={_n}\n" + SUM2, "", _cls)
CASES["neuron-sqrt"] = ("a: type=neuron inputs=pre neuron=logistic\nt: type=neuron inputs=a neuron=sqrt\n" + SUM2,
                        "", "cuda-libm")

IMAGE = (3, 13, 13)
CASES_N = 7  # cases per minibatch: no multiple of anything


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


def case_config(tmp_path, case: str):
    layers, params, _ = CASES[case]
    (tmp_path / f"{case}.layers.cfg").write_text(cfg_text(HEAD + layers))
    costs = "".join(f"{name}: coeff=0.5\n" for name in re.findall(r"^(\w+): type=cost.sum2", layers, re.M))
    (tmp_path / f"{case}.params.cfg").write_text(cfg_text(f"pre: {W}\n{params}{costs}"))
    config, _ = load_config(tmp_path / f"{case}.layers.cfg", tmp_path / f"{case}.params.cfg", image_size=IMAGE)
    return config


def dyadic(rng: np.random.Generator, shape, bound: int, power: int) -> np.ndarray:
    """Integers in [-bound, bound] times 2^-power: products and sums of a few thousand of
    them are exact in float32."""
    return (rng.integers(-bound, bound + 1, shape) / 2.0 ** power).astype(np.float32)


def make_net(config, device: str, seed: int = 3) -> EngineNet:
    """The net with dyadic weights (1/16 steps) and biases (1/8 steps) drawn from `seed`."""
    net = EngineNet(config, CASES_N, seed, device)
    rng = np.random.default_rng(seed)
    for layer in config.layers.values():
        if layer.type not in _core.WEIGHT_LAYER_TYPES:
            continue
        for i, (rows, cols) in enumerate(layer.weights):
            if layer.weight_sources[i] is None:
                net.set_weights(layer.name, dyadic(rng, (rows, cols), 4, 4), i)
        net.set_biases(layer.name, dyadic(rng, layer.biases, 2, 3))
    return net


def batch(config, seed: int = 5):
    rng = np.random.default_rng(seed)
    x = dyadic(rng, (int(np.prod(config.profile.image)), CASES_N), 8, 3)
    y = rng.integers(0, 10, (1, CASES_N)).astype(np.float32)
    return [x, y]


def check(actual, expected, kind: str, what: str, scale_of=None) -> None:
    scale, rtol = TOLERANCES[kind]
    ref = np.abs(np.asarray(expected if scale_of is None else scale_of, dtype=np.float64))
    atol = scale * (float(ref.max()) if ref.size else 0.0)
    assert_close(actual, expected, atol=atol, rtol=rtol, what=f"{what} [{kind}]")


PER_LAYER = ("acts", "acts_grad")
GRADS = ("weight_grad", "weight_inc", "bias_grad", "bias_inc")


# -- without a GPU --------------------------------------------------------------------

def test_build_info_says_whether_cuda_was_compiled_and_which_gemm():
    if INFO["cuda_compiled"]:
        assert INFO["cuda_compiler"].startswith("nvcc ") and "80-real" in INFO["cuda_archs"]
        assert INFO["cuda_gemm"].startswith(("cuBLAS", "built-in tiled SGEMM")), INFO["cuda_gemm"]
        assert hasattr(_core, "CudaNet")
    else:
        assert INFO["cuda_gemm"] == "" and not hasattr(_core, "CudaNet")


def test_version_text_names_the_gemm(capsys):
    from alexnet_replay.cli import main

    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert ("GEMM: " in out) == bool(INFO["cuda_compiled"]), out


def test_cuda_without_a_usable_gpu_is_a_clear_error():
    if REASON is None:
        pytest.skip("a GPU is present: the error path cannot be reached")
    with pytest.raises(ReplayError, match=r"device='cuda': (this build has no CUDA code|no usable GPU \(.+\))"):
        alexnet_replay.load("cifar-18pct", minibatch=4, device="cuda")


def test_cuda_net_without_a_device_fails_in_the_constructor_not_later():
    if not hasattr(_core, "CudaNet") or REASON is None:
        pytest.skip("needs a CUDA build on a machine without a usable GPU")
    config, _ = load_config("cifar-18pct")
    from alexnet_replay.engine import _spec

    index = {name: i for i, name in enumerate(config.layers)}
    specs = [_spec(layer, index, np.random.RandomState(0)) for layer in config.layers.values()]
    with pytest.raises(RuntimeError, match="no usable CUDA device"):
        _core.CudaNet(specs, 4, 0, 0, "builtin")


def test_unknown_device_is_refused():
    with pytest.raises(ReplayError, match=r"device must be 'cpu' or 'cuda' \(got 'tpu'\)"):
        alexnet_replay.load("cifar-18pct", minibatch=2, device="tpu")


def test_set_writers_on_the_cpu_write_through_the_views():
    """set_weights / set_biases broadcast and cast like a view assignment; set_mask writes
    only the first columns; they are what parity, the port and checkpoints use on both devices."""
    net = alexnet_replay.load("cifar-18pct", minibatch=5, seed=0)
    w = np.arange(64 * 4 * 4 * 10, dtype=np.float64).reshape(1024, 10) / 7.0
    net.set_weights("fc10", w)
    assert net.weights("fc10").flags.f_contiguous and np.array_equal(net.weights("fc10"), w.astype(np.float32))
    net.set_biases("conv1", 0.25)
    assert np.array_equal(net.biases("conv1"), np.full((32, 1), 0.25, np.float32))
    with pytest.raises(ReplayError, match="array kind must be one of"):
        net.array("gradient", "conv1")


def test_set_mask_writes_the_mask_of_a_shorter_minibatch(tmp_path):
    """A forward on n < max_cases cases reads its (D, n) mask from the first D*n values."""
    config = case_config(tmp_path, "dropout")
    net = EngineNet(config, CASES_N, 0)
    before = net.mask("t", cases=CASES_N).copy().reshape(-1)
    part = (np.arange(16 * 13 * 13 * 3).reshape(-1, 3) % 2).astype(np.float32)
    net.set_mask("t", part)
    assert np.array_equal(net.mask("t", cases=3), part)
    assert np.array_equal(net.mask("t", cases=CASES_N).reshape(-1)[part.size:], before[part.size:])


def test_cublas_is_found_in_the_wheel_and_loads_without_a_gpu():
    if not INFO.get("cuda_gemm", "").startswith("cuBLAS"):
        pytest.skip(f"this build has no cuBLAS ({INFO.get('cuda_gemm') or 'no CUDA'})")
    candidates = cublas_candidates()
    if not candidates:
        pytest.skip("the nvidia-cublas wheel is not installed in this Python")
    assert all(os.path.basename(c).startswith("libcublas.so.") and os.path.isfile(c) for c in candidates)
    ok, message = _core.cuda_load_cublas(candidates)
    assert ok and message in candidates, message


@pytest.mark.parametrize("case", sorted(CASES))
def test_small_nets_hold_their_premise_on_the_cpu(tmp_path, case):
    """The GPU comparisons below rely on these nets: they build, train a step with finite
    costs, and the output of `pre` (conv of dyadic data and weights) is a multiple of 2^-7
    well inside float32's exact range, i.e. every partial sum was exact."""
    config = case_config(tmp_path, case)
    net = make_net(config, "cpu")
    costs = net.forward(batch(config), train=True)
    pre = net.acts("pre").astype(np.float64)
    assert np.array_equal(pre * 128, np.round(pre * 128)) and np.abs(pre).max() < 2 ** 14
    net.backward()
    net.update()
    costs = net.train_step(batch(config))
    assert costs and all(np.isfinite(v).all() for v in costs.values()), costs


# -- CPU against CUDA -----------------------------------------------------------------

def compare_nets(cpu: EngineNet, gpu: EngineNet, kind: str, what: str) -> int:
    """Every buffer of every layer; returns the number of arrays compared."""
    compared = 0
    for layer in cpu.config.layers.values():
        for array in PER_LAYER + ("mask", "noise", "draws"):
            a, e = gpu.array(array, layer.name), cpu.array(array, layer.name)
            check(a, e, "cuda-exact" if array in ("mask", "noise", "draws") else kind, f"{what} {layer.name}.{array}")
            compared += 1
        if layer.type in _core.WEIGHT_LAYER_TYPES:
            for i in range(len(layer.inputs)):
                for array in ("weights", "weight_grad", "weight_inc"):
                    check(gpu.array(array, layer.name, i), cpu.array(array, layer.name, i),
                          "cuda-exact" if array == "weights" else "cuda-grad", f"{what} {layer.name}.{array}[{i}]")
                    compared += 1
            for array in ("biases", "bias_grad", "bias_inc"):
                check(gpu.array(array, layer.name), cpu.array(array, layer.name),
                      "cuda-exact" if array == "biases" else "cuda-grad", f"{what} {layer.name}.{array}")
                compared += 1
    return compared


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_layer_type_matches_the_cpu_engine(tmp_path, case):
    """Forward and backward of one minibatch, every buffer; then 3 training steps, every
    weight matrix and bias (docs/parity.md, "CPU engine against CUDA engine")."""
    config = case_config(tmp_path, case)
    kind = CASES[case][2]
    cpu, gpu = make_net(config, "cpu"), make_net(config, "cuda")
    data = batch(config)
    ce, cg = cpu.forward(data, train=True), gpu.forward(data, train=True)
    for name in ce:
        check(np.array(cg[name]), np.array(ce[name]), "cuda-libm" if kind == "cuda-libm" else "cuda-grad",
              f"cost {name}")
    cpu.backward()
    gpu.backward()
    assert compare_nets(cpu, gpu, kind, "step 1:") > 0
    w0 = {(l.name, i): cpu.weights(l.name, i).copy() for l in config.layers.values()
          if l.type in _core.WEIGHT_LAYER_TYPES for i in range(len(l.inputs))}
    cpu.update()
    gpu.update()
    for step in range(2):
        cpu.train_step(data, progress=step / 3)
        gpu.train_step(data, progress=step / 3)
    for (name, i), start in w0.items():
        e = cpu.weights(name, i)
        check(gpu.weights(name, i), e, "cuda-steps", f"3 steps: {name}.weights[{i}]", scale_of=e - start)


@needs_gpu
@pytest.mark.gpu
def test_cuda_runs_repeat_bit_for_bit(tmp_path):
    """No float atomics, fixed reduction orders, one stream per device: the same seed gives
    the same bits (costs and weights) run after run."""
    config = case_config(tmp_path, "conv-sparse")

    def run():
        net = make_net(config, "cuda")
        costs = [net.train_step(batch(config))["sq"] for _ in range(3)]
        return costs, net.weights("t").copy(), net.weight_grad("pre").copy(), net.acts_grad("pre").copy()

    a, b = run(), run()
    assert a[0] == b[0]
    for x, y in zip(a[1:], b[1:]):
        assert np.array_equal(x, y)


@needs_gpu
@pytest.mark.gpu
def test_forward_from_is_a_whole_forward_on_cuda(tmp_path):
    """CudaNet.forward_from (the gradient check's partial forward): after a weight moves,
    every output and cost equals a whole forward's, bit for bit."""
    config = case_config(tmp_path, "conv-sparse")
    net = make_net(config, "cuda")
    net.forward(batch(config), train=False)
    for name in ("pre", "t", "pre"):
        w = net.weights(name)
        w.reshape(-1)[3] += np.float32(0.25)
        net.set_weights(name, w)
        partial = net.forward_from(name)
        acts = {n: net.acts(n) for n in net.layer_names if not config.layers[n].is_cost}
        assert partial == net.forward(train=False)
        for n, a in acts.items():
            assert np.array_equal(a, net.acts(n)), n


@needs_gpu
@pytest.mark.gpu
def test_one_gpu_or_several_give_the_same_numbers():
    """gpu= placement (engine.md §6): towers on their own devices with copies between them,
    or all on one device: bit-identical."""
    count, _ = _core.cuda_device_count()
    if count < 2:
        pytest.skip(f"needs two GPUs (found {count})")
    config, _ = load_config("paper-2012")

    def run(num_gpus: int):
        net = EngineNet(config, 5, 1, "cuda", num_gpus=num_gpus)
        rng = np.random.default_rng(0)
        data = [rng.standard_normal((3 * 224 * 224, 5)).astype(np.float32),
                rng.integers(0, 1000, (1, 5)).astype(np.float32)]
        costs = net.train_step(data)
        return costs, {n: net.acts_grad(n) for n in ("conv1a", "conv1b", "pool2a", "fc6a")}, net.weights("conv3a", 1)

    one, many = run(1), run(2)
    assert one[0] == many[0]
    for name in one[1]:
        assert np.array_equal(one[1][name], many[1][name]), name
    assert np.array_equal(one[2], many[2])


@needs_gpu
@pytest.mark.gpu
@pytest.mark.skipif(not SLOW, reason="layers-145 at minibatch 128 on both engines: set ALEXNET_SLOW=1")
def test_paper_network_full_step_at_minibatch_128_matches_the_cpu(release):
    """layers-145 + layer-params-145, 3x224x224, minibatch 128, one training step (dropout
    masks drawn, the same on both): the costs and every weight matrix after the step.
    Real data and random weights: products round differently (cuBLAS vs OpenBLAS), so
    costs are held to 1e-5 relative, and the step W - W0 to 1e-3 relative Frobenius error
    (rare gate flips in max pooling or relu move whole gradient elements)."""
    layers, params = release / "layers" / "layers-145.cfg", release / "layers" / "layer-params-145.cfg"
    cpu = alexnet_replay.load(layers, params, minibatch=128, seed=7)
    gpu = alexnet_replay.load(layers, params, minibatch=128, seed=7, device="cuda")
    rng = np.random.default_rng(1)
    data = [rng.standard_normal((3 * 224 * 224, 128)).astype(np.float32),
            rng.integers(0, 1000, (1, 128)).astype(np.float32)]
    names = [l.name for l in cpu.config.layers.values() if l.type in ("conv", "fc")]
    w0 = {n: cpu.weights(n).copy() for n in names}
    ce, cg = cpu.train_step(data), gpu.train_step(data)
    for name in ce:
        np.testing.assert_allclose(cg[name], ce[name], rtol=1e-5)
    for n in names:
        de, dg = cpu.weights(n).astype(np.float64) - w0[n], gpu.weights(n).astype(np.float64) - w0[n]
        rel = np.linalg.norm(dg - de) / max(np.linalg.norm(de), 1e-30)
        assert rel < 1e-3, f"{n}: relative error of the step {rel:.3g}"
