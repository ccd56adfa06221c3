"""Every layer type of the engine's table (engine/core/layer_types.cpp), in one place.

* A valid LayerSpec of each type builds and runs a step on the CPU net, and both
  backends implement every row of the table.
* The net plan (engine/core/net_plan.cpp) checks every LayerSpec once, for both nets: a
  malformed spec, for every layer type (zero and negative sizes and strides, groups,
  mismatched outputs, wrong input counts, ...), fed through _core to the CPU net and to
  the CUDA net, raises ValueError naming the layer and the field, with the same message
  on both (the CUDA net builds the same Plan before it touches a device, so this runs
  without a GPU). The per-op bindings call the same checks, and give the same message
  without the layer's name.
* Small networks for the types no release file trains (the cost layers beyond logreg):
  the engine against the PyTorch port, layer by layer (modernize/parity).

Adding a layer type adds its cases here (docs/architecture.md, "Adding a layer type").
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from alexnet_replay import _core
from alexnet_replay.modernize import parity
from alexnet_replay.original.layers import DataProfile, load_network
from alexnet_replay.original.params import load_params

# ---------------------------------------------------------------------------
# Small valid specs, one per layer type: input images are 3x8x8 (D = 192).

C, S = 3, 8
D = C * S * S


def _spec(name: str, type_: str, inputs: list[int], outputs: int, **fields) -> _core.LayerSpec:
    s = _core.LayerSpec()
    s.name, s.type, s.inputs, s.outputs = name, type_, inputs, outputs
    for key, value in fields.items():
        setattr(s, key, value)
    return s


def _learning(s: _core.LayerSpec, n: int, rows: list[int], cols: list[int], bias: tuple[int, int]) -> None:
    s.weight_rows, s.weight_cols = rows, cols
    s.share_layer, s.share_index = [-1] * n, [-1] * n
    s.eps_w, s.mom_w, s.wc = [0.01] * n, [0.9] * n, [0.0] * n
    s.sched_w = [_core.Schedule() for _ in range(n)]
    s.bias_rows, s.bias_cols = bias
    s.eps_b, s.mom_b = 0.02, 0.9


def _conv_input(**over) -> _core.ConvInputSpec:
    c = _core.ConvInputSpec()
    c.channels, c.img_size, c.filter_size, c.padding, c.stride, c.groups, c.filter_channels = C, S, 3, 1, 1, 1, C
    for key, value in over.items():
        setattr(c, key, value)
    return c


def data(name="data", outputs=D, idx=0):
    return _spec(name, "data", [], outputs, data_idx=idx)


def conv(kind="conv"):
    s = _spec("conv", kind, [0], 4 * S * S, conv=[_conv_input()], filters=4, modules_x=S, partial_sum=0)
    rows = 27 if kind == "conv" else S * S * 27
    _learning(s, 1, [rows], [4], (4, 1) if kind == "conv" else (4 * S * S, 1))
    return s


def fc():
    s = _spec("fc", "fc", [0], 5)
    _learning(s, 1, [D], [5], (1, 5))
    return s


def treefc():
    """5 classes under inner nodes 5 = {0, 1}, 6 = {2, 3, 4} and the root 7 = {5, 6}."""
    s = _spec("tree", "treefc", [0], 5, tree=[[], [], [], [], [], [0, 1], [2, 3, 4], [5, 6]], tree_root=7)
    _learning(s, 1, [D], [8], (1, 5))
    return s


def image(type_, name, outputs=D, **fields):
    return _spec(name, type_, [0], outputs, channels=C, img_size=S, **fields)


def pool():
    return image("pool", "pool", C * 4 * 4, pool="max", size_x=2, start=0, stride=2, outputs_x=4)


VALID = {
    "conv": lambda: [data(), conv()],
    "local": lambda: [data(), conv("local")],
    "fc": lambda: [data(), fc()],
    "treefc": lambda: [data(), treefc()],
    "pool": lambda: [data(), pool()],
    "rnorm": lambda: [data(), image("rnorm", "rnorm", size=3, alpha=1e-4, beta=0.75)],
    "cnorm": lambda: [data(), image("cnorm", "cnorm", size=3, alpha=1e-4, beta=0.75)],
    "cmrnorm": lambda: [data(), _spec("cmrnorm", "cmrnorm", [0], D, channels=C, size=3, alpha=1e-4, beta=0.75)],
    "neuron": lambda: [data(), _spec("neuron", "neuron", [0], D, neuron="relu")],
    "softmax": lambda: [data(), _spec("softmax", "softmax", [0], D)],
    "hs": lambda: [data(), _spec("hs", "hs", [0], D, keep=0.5)],
    "eltsum": lambda: [data(), data("data2", idx=1), _spec("eltsum", "eltsum", [0, 1], D, coeffs=[1.0, -1.0])],
    "eltmax": lambda: [data(), data("data2", idx=1), _spec("eltmax", "eltmax", [0, 1], D)],
    "concat": lambda: [data(), data("data2", idx=1), _spec("concat", "concat", [0, 1], 2 * D)],
    "nailbed": lambda: [data(), image("nailbed", "nailbed", C * 4 * 4, stride=2)],
    "blur": lambda: [data(), image("blur", "blur", filter=[0.25, 0.5, 0.25])],
    "href": lambda: [data(), image("href", "href")],
    "resize": lambda: [data(), image("resize", "resize", C * 5 * 5, scale=1.5)],  # T = floor(8/1.5) = 5
    "rgb2yuv": lambda: [data(), image("rgb2yuv", "yuv")],
    "rgb2lab": lambda: [data(), image("rgb2lab", "lab", center=True)],
    "rscale": lambda: [data(), image("rscale", "rscale", C * 6 * 6, tgt_size=6, max_scale=1.25)],
    # §6's half-precision transfer (a reconstruction; original/reconstructions.py inserts it)
    "quant": lambda: [data(), _spec("quant", "quant", [0], D, gpu=1, half_forward=True, half_backward=True)],
    "cost.logreg": lambda: [data(), data("labels", 1, 1), _spec("probs", "softmax", [0], D),
                            _spec("logprob", "cost.logreg", [1, 2], 0, topk=1)],
    "cost.sum2": lambda: [data(), _spec("sum2", "cost.sum2", [0], 0, coeff=1.0)],
    "cost.crossent": lambda: [data(), data("targets", D, 1), _spec("probs", "softmax", [0], D),
                              _spec("crossent", "cost.crossent", [1, 2], 0)],
    "cost.crossent2": lambda: [data(), data("targets", D, 1), _spec("y", "neuron", [0], D, neuron="logistic"),
                               _spec("crossent2", "cost.crossent2", [1, 2], 0)],
    "cost.rflickr": lambda: [data(), data("targets", D, 1), _spec("rflickr", "cost.rflickr", [1, 0], 0)],
    "cost.gsum2": lambda: [data(), data("gates", 1, 1), _spec("gsum2", "cost.gsum2", [1, 0], 0)],
    "cost.tica": lambda: [data(), _spec("tica", "cost.tica", [0], 0, channels=C, img_size=S, size_x=3)],
    "cost.msm": lambda: [data(), data("labels", 1, 1), _spec("msm", "cost.msm", [1, 0], 0, set_size=5)],
}


def test_every_engine_layer_type_has_a_valid_spec_here():
    assert set(VALID) | {"data"} == set(_core.LAYER_TYPES)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_the_valid_specs_build_and_run_a_step(kind):
    specs = VALID[kind]()
    net = _core.CpuNet(specs, 3, 0)
    rng = np.random.default_rng(0)
    for s in specs:
        if s.type == "data":
            rows = s.outputs
            values = rng.integers(0, 10, (1, 3)) if rows == 1 else rng.standard_normal((rows, 3))
            net.set_data(s.data_idx, np.ascontiguousarray(values, dtype=np.float32))
    net.forward("train")
    net.backward()
    net.update()
    for s in specs:
        assert np.isfinite(net.array("acts", s.name)).all()


# ---------------------------------------------------------------------------
# Malformed specs: (id, the valid net it starts from, the edit, the layer, the field
# the message must start with after "layer '<name>': ").


def _sched(type_: str, **fields) -> _core.Schedule:
    s = _core.Schedule()
    s.type = type_
    for key, value in fields.items():
        setattr(s, key, value)
    return s


def _set(layer: int, **fields):
    def edit(specs):
        for key, value in fields.items():
            setattr(specs[layer], key, value)
    return edit


def _set_conv(**fields):
    def edit(specs):
        specs[1].conv = [_conv_input(**fields)]
    return edit


def _above_fc(eps: float = 0.01):
    """Puts the layer at specs[1] (one image input) above an fc of D outputs that learns
    with rate `eps`: for the layers without a backward (§3.20–§3.22)."""
    def edit(specs):
        below = fc()
        below.outputs, below.weight_cols, below.bias_cols = D, [D], D
        below.eps_w, below.eps_b = [eps], eps
        top = specs[1]
        top.inputs = [1]
        specs[1:] = [below, top]
    return edit


def _tiny_image(specs):  # a 3x1x1 image: resize needs two columns to blend
    specs[0].outputs = C
    specs[1].img_size, specs[1].scale, specs[1].outputs = 1, 0.5, C * 2 * 2


MALFORMED = [
    # conv and local: zero and negative sizes, strides, groups, geometry, tables, weights
    ("conv-stride-0", "conv", _set_conv(stride=0), "conv", "stride: must be >= 1"),
    ("conv-stride-negative", "conv", _set_conv(stride=-2), "conv", "stride: must be >= 1"),
    ("conv-filters-0", "conv", _set(1, filters=0), "conv", "filters: must be >= 1"),
    ("conv-filters-negative", "conv", _set(1, filters=-4, outputs=-256), "conv", "has no outputs"),
    ("conv-groups-0", "conv", _set_conv(groups=0), "conv", "groups: must be >= 1"),
    ("conv-groups-not-dividing-filters", "conv", _set_conv(groups=3, channels=3, filter_channels=1), "conv",
     "filters: 4 filters are not divisible by groups=3"),
    ("conv-dense-groups-wrong-channels", "conv", _set_conv(filter_channels=2), "conv", "filter_channels: dense"),
    ("conv-padding-negative", "conv", _set_conv(padding=-1), "conv", "padding: must be >= 0"),
    ("conv-filter-too-large", "conv", _set_conv(filter_size=11, padding=0), "conv", "filter_size: K=11 exceeds"),
    ("conv-modules-wrong", "conv", _set(1, modules_x=7, outputs=4 * 49), "conv", "modules_x: expected"),
    ("conv-outputs-mismatch", "conv", _set(1, outputs=4 * 64 + 1), "conv", "outputs != filters \\* modules"),
    ("conv-conns-out-of-range", "conv", _set_conv(conns=[0, 1, 7]), "conv", "conns: entry 2 = 7"),
    ("conv-conns-wrong-length", "conv", _set_conv(conns=[0, 1]), "conv", "connection table must have"),
    ("conv-partial-sum", "conv", _set(1, partial_sum=7), "conv", "partial_sum: must be 0 or divide the 64"),
    ("conv-weight-shape", "conv", _set(1, weight_rows=[26]), "conv", "conv weight matrix must be"),
    ("conv-geometry-per-input", "conv", _set(1, conv=[]), "conv", "needs one conv geometry per input"),
    ("conv-image-too-large", "conv", _set_conv(img_size=2**40), "conv", "img_size: must be <= 46340"),
    ("local-stride-0", "local", _set_conv(stride=0), "conv", "stride: must be >= 1"),
    ("local-weight-shape", "local", _set(1, weight_rows=[27]), "conv", "local weight matrix must be"),
    ("fc-weight-rows", "fc", _set(1, weight_rows=[191]), "fc", "fc weight matrix must be"),
    ("fc-bias-shape", "fc", _set(1, bias_rows=2), "fc", "bias shape does not match"),
    ("fc-learning-lists", "fc", _set(1, eps_w=[]), "fc", "needs one weight shape"),
    ("fc-weight-source-later", "fc", _set(1, share_layer=[5], share_index=[0]), "fc",
     "weightSource must name an earlier matrix"),
    ("fc-schedule-steps", "fc",
     lambda specs: setattr(specs[1], "sched_w", [_sched("dexp", tgt_factor=10.0, num_steps=1)]), "fc",
     "num_steps: must be >= 2"),
    ("fc-schedule-target", "fc",
     lambda specs: setattr(specs[1], "sched_b", _sched("exp", tgt_factor=0.0)), "fc", "tgt_factor: must be > 0"),
    # pool
    ("pool-stride-0", "pool", _set(1, stride=0), "pool", "stride: must be >= 1"),
    ("pool-size-0", "pool", _set(1, size_x=0), "pool", "size_x: must be >= 1"),
    ("pool-size-negative", "pool", _set(1, size_x=-3), "pool", "size_x: must be >= 1"),
    ("pool-outputs-x-0", "pool", _set(1, outputs_x=0, outputs=0), "pool", "has no outputs"),
    ("pool-outputs-mismatch", "pool", _set(1, outputs=C * 5 * 5), "pool", "outputs: expected channels"),
    ("pool-last-window-outside", "pool", _set(1, outputs_x=5, outputs=C * 25), "pool", "outputs_x: the last window"),
    ("pool-first-window-outside", "pool", _set(1, start=-2), "pool", "start: the first window"),
    ("pool-unknown-kind", "pool", _set(1, pool="median"), "pool", "pool 'median' is not supported"),
    ("pool-channels-0", "pool", _set(1, channels=0), "pool", "channels: must be >= 1"),
    ("pool-geometry-vs-input", "pool", _set(1, img_size=9, outputs_x=4), "pool", "input size does not match"),
    # norms
    ("rnorm-size-0", "rnorm", _set(1, size=0), "rnorm", "size: expected 1 <= size <= img_size"),
    ("rnorm-size-too-large", "rnorm", _set(1, size=9), "rnorm", "size: expected 1 <= size <= img_size"),
    ("cnorm-channels-0", "cnorm", _set(1, channels=0), "cnorm", "channels: expected 1 <= channels"),
    ("cnorm-alpha-nan", "cnorm", _set(1, alpha=float("nan")), "cnorm", "alpha: must be a finite number"),
    ("cmrnorm-size-too-large", "cmrnorm", _set(1, size=4), "cmrnorm", "size: expected 1 <= size <= channels"),
    ("cmrnorm-channels-not-dividing", "cmrnorm", _set(1, channels=5), "cmrnorm", "cmrnorm channels must divide"),
    ("cmrnorm-outputs-mismatch", "cmrnorm", _set(1, outputs=D - 3), "cmrnorm", "outputs: must equal the input"),
    # neuron, softmax, hs
    ("neuron-unknown", "neuron", _set(1, neuron="abstanh"), "neuron", "unknown neuron 'abstanh'"),
    ("neuron-drelu-zero", "neuron", _set(1, neuron="drelu", neuron_a=0.0), "neuron",
     "params: neuron 'drelu' needs a != 0"),
    ("neuron-outputs-mismatch", "neuron", _set(1, outputs=D + 1), "neuron", "outputs: must equal the input"),
    ("softmax-no-inputs", "softmax", _set(1, inputs=[]), "softmax", "has no inputs"),
    ("hs-keep-0", "hs", _set(1, keep=0.0), "hs", "keep: must be in \\(0, 1\\]"),
    ("hs-keep-above-1", "hs", _set(1, keep=1.5), "hs", "keep: must be in \\(0, 1\\]"),
    # eltsum, eltmax, concat
    ("eltsum-sizes-differ", "eltsum", _set(1, outputs=D - 1), "eltsum", "input 1 has 191 values per case"),
    ("eltsum-coeffs-count", "eltsum", _set(2, coeffs=[1.0]), "eltsum", "coeffs: needs one coefficient per input"),
    ("eltmax-one-input", "eltmax", _set(2, inputs=[0]), "eltmax", "eltmax takes 2 or more input"),
    ("concat-outputs-mismatch", "concat", _set(2, outputs=D), "concat", "outputs: must be the sum"),
    # nailbed, blur, href
    ("nailbed-stride-0", "nailbed", _set(1, stride=0), "nailbed", "stride: must be >= 1"),
    ("nailbed-stride-negative", "nailbed", _set(1, stride=-1), "nailbed", "stride: must be >= 1"),
    ("nailbed-outputs-mismatch", "nailbed", _set(1, outputs=C * 16 + 3), "nailbed", "outputs: expected channels"),
    ("blur-even-taps", "blur", _set(1, filter=[0.5, 0.5]), "blur", "filter: must have an odd number of taps"),
    ("blur-no-taps", "blur", _set(1, filter=[]), "blur", "filter: must have an odd number of taps"),
    ("blur-asymmetric", "blur", _set(1, filter=[0.2, 0.5, 0.3]), "blur", "filter: must be symmetric"),
    ("href-img-0", "href", _set(1, img_size=0), "href", "img_size: must be >= 1"),
    ("href-two-inputs", "href", _set(1, inputs=[0, 0]), "href", "href takes 1 input"),
    # resize, rgb2yuv, rgb2lab, rscale: geometry, ranges, and no learning layer below (no backward)
    ("resize-scale-above-2", "resize", _set(1, scale=2.5), "resize", "scale: must be in \\[0.5, 2\\]"),
    ("resize-outputs-scaled-up", "resize", _set(1, outputs=C * 12 * 12), "resize",
     "outputs: expected channels\\*floor\\(img_size/scale\\)\\^2 = 75"),
    ("resize-one-pixel", "resize", _tiny_image, "resize", "img_size: must be in 2..46340"),
    ("resize-learning-below", "resize", _above_fc(), "resize",
     "inputs: a resize layer has no backward \\(engine.md §3.20\\), but layer 'fc' below it learns"),
    ("rgb2yuv-four-channels", "rgb2yuv", _set(1, channels=4, img_size=4, outputs=64), "yuv",
     "channels: rgb2yuv converts three channels"),
    ("rgb2yuv-learning-below", "rgb2yuv", _above_fc(), "yuv", "inputs: a rgb2yuv layer has no backward"),
    ("rgb2lab-geometry", "rgb2lab", _set(1, img_size=7), "lab", "input size does not match its geometry"),
    ("rgb2lab-outputs-mismatch", "rgb2lab", _set(1, outputs=D + 3), "lab", "outputs: must equal the input"),
    ("rscale-crop-larger-than-image", "rscale", _set(1, tgt_size=9, outputs=C * 81), "rscale",
     "tgt_size: the crop of 9 must fit in the input image of side 8"),
    ("rscale-max-scale-above-2", "rscale", _set(1, max_scale=2.5), "rscale", "max_scale: must be in \\[1, 2\\]"),
    ("rscale-outputs-mismatch", "rscale", _set(1, outputs=C * 5 * 5), "rscale",
     "outputs: expected channels\\*tgt_size\\^2 = 108"),
    ("rscale-learning-below", "rscale", _above_fc(), "rscale", "inputs: a rscale layer has no backward"),
    # quant (§6, a reconstruction)
    ("quant-outputs-mismatch", "quant", _set(1, outputs=D - 1), "quant", "outputs: must equal the input"),
    ("quant-two-inputs", "quant", _set(1, inputs=[0, 0]), "quant", "quant takes 1 input"),
    # cost layers
    ("logreg-one-input", "cost.logreg", _set(3, inputs=[2]), "logprob", "cost.logreg takes 2 input"),
    ("logreg-labels-rows", "cost.logreg", _set(3, inputs=[0, 2]), "logprob", "cost.logreg takes labels"),
    ("logreg-topk-0", "cost.logreg", _set(3, topk=0), "logprob", "topk: must be >= 1"),
    ("logreg-has-outputs", "cost.logreg", _set(3, outputs=10), "logprob", "outputs: a cost layer has none"),
    ("sum2-two-inputs", "cost.sum2", _set(1, inputs=[0, 0]), "sum2", "cost.sum2 takes 1 input"),
    ("crossent-sizes-differ", "cost.crossent", _set(1, outputs=D - 1), "crossent",
     "cost.crossent takes targets and predictions of one size"),
    ("crossent2-one-input", "cost.crossent2", _set(3, inputs=[2]), "crossent2", "cost.crossent2 takes 2 input"),
    ("rflickr-coeff-inf", "cost.rflickr", _set(2, coeff=float("inf")), "rflickr", "coeff: must be a finite"),
    ("gsum2-gates-rows", "cost.gsum2", _set(2, inputs=[0, 0]), "gsum2", "cost.gsum2 takes gates and x"),
    ("tica-size-0", "cost.tica", _set(1, size_x=0), "tica", "size_x: expected 1 <= size_x <= img_size \\(8\\)"),
    ("tica-size-above-image", "cost.tica", _set(1, size_x=9), "tica", "size_x: expected 1 <= size_x"),
    ("tica-geometry", "cost.tica", _set(1, channels=2), "tica", "input size does not match its geometry"),
    ("tica-has-outputs", "cost.tica", _set(1, outputs=D), "tica", "outputs: a cost layer has none"),
    ("msm-set-size-0", "cost.msm", _set(2, set_size=0), "msm",
     "set_size: expected 1 <= set_size <= classes - 1 \\(191\\), got 0"),
    ("msm-set-size-every-class", "cost.msm", _set(2, set_size=D), "msm", "set_size: expected 1 <= set_size"),
    ("msm-labels-rows", "cost.msm", _set(2, inputs=[0, 0]), "msm", "cost.msm takes labels and energies"),
    ("msm-one-class", "cost.msm", _set(2, inputs=[1, 1]), "msm", "classes: the energies need 2"),
    ("msm-coeff-nan", "cost.msm", _set(2, coeff=float("nan")), "msm", "coeff: must be a finite"),
    # the graph
    ("treefc-two-parents", "treefc", _set(1, tree=[[], [], [], [], [], [0, 1], [2, 3, 4, 1], [5, 6]]), "tree",
     "tree: label tree: node 1 has two parents \\(5 and 6\\)"),
    ("treefc-leaves-not-classes", "treefc", _set(1, outputs=4), "tree",
     "tree: label tree: node 4 has no children but is not one of the 4 classes"),
    ("treefc-root-not-a-node", "treefc", _set(1, tree_root=9), "tree", "tree: label tree: root 9 is not a node"),
    ("treefc-cut-off", "treefc", _set(1, tree=[[], [], [], [], [], [0, 1], [2, 3, 4], [5]]), "tree",
     "tree: label tree: node 2 is not below the root 7"),
    ("treefc-columns", "treefc", _set(1, weight_cols=[7]), "tree",
     "treefc weight matrix must be \\(inputs, nodes of the tree\\): expected \\(192, 8\\)"),
    ("treefc-schedule", "treefc", _set(1, sched_w=[_sched("exp", tgt_factor=10.0)]), "tree",
     "schedW: the tree update \\(§3.3\\) has no learning-rate schedule"),
    ("unknown-type", "fc", _set(1, type="abstanh"), "fc", "the engine has no 'abstanh' layer"),
    ("name-twice", "eltsum", _set(1, name="data"), "data", "name used twice"),
    ("input-not-earlier", "fc", _set(1, inputs=[1]), "fc", "inputs must be earlier layers"),
    ("data-index-negative", "fc", _set(0, data_idx=-1), "data", "data_idx: must be >= 0"),
    ("data-no-outputs", "fc", _set(0, outputs=0), "data", "has no outputs"),
]


def test_at_least_25_malformed_specs_cover_every_layer_type():
    assert len(MALFORMED) >= 25
    assert {base for _, base, *_ in MALFORMED} == set(VALID)


def _malformed(case):
    _, base, edit, _, _ = case
    specs = VALID[base]()
    edit(specs)
    return specs


def _error(make) -> str:
    with pytest.raises(ValueError) as info:
        make()
    return str(info.value)


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_a_malformed_spec_raises_value_error_naming_the_layer_and_field(case):
    _, _, _, layer, field = case
    message = _error(lambda: _core.CpuNet(_malformed(case), 4, 0))
    assert re.match(rf"layer '{re.escape(layer)}': {field}", message), message


CUDA_COMPILED = bool(_core.build_info()["cuda_compiled"])


@pytest.mark.skipif(not CUDA_COMPILED, reason="this build has no CUDA code (ALEXNET_CUDA=OFF or no nvcc), "
                    "so there is no _core.CudaNet to compare")
@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_the_cuda_net_refuses_the_same_spec_with_the_same_message(case):
    """No GPU needed: the CUDA net builds the Plan before it looks for a device."""
    cpu = _error(lambda: _core.CpuNet(_malformed(case), 4, 0))
    cuda = _error(lambda: _core.CudaNet(_malformed(case), 4, 0, 0, "builtin"))
    assert cuda == cpu


@pytest.mark.skipif(not CUDA_COMPILED, reason="this build has no CUDA code (ALEXNET_CUDA=OFF or no nvcc)")
def test_the_cuda_net_checks_specs_before_it_looks_for_a_device():
    count, _ = _core.cuda_device_count()
    if count > 0:
        net = _core.CudaNet(VALID["fc"](), 4, 0, 0, "builtin")
        assert net.device == "cuda"
    else:  # valid specs pass the Plan, then the missing device is reported
        with pytest.raises(RuntimeError, match="no usable CUDA device"):
            _core.CudaNet(VALID["fc"](), 4, 0, 0, "builtin")


def test_max_cases_and_minibatches_are_checked():
    with pytest.raises(ValueError, match=r"max_cases: must be >= 1"):
        _core.CpuNet(VALID["fc"](), 0, 0)
    net = _core.CpuNet(VALID["fc"](), 4, 0)
    with pytest.raises(ValueError, match=r"minibatch of 5 cases; this net holds 1..4"):
        net.set_data(0, np.zeros((D, 5), np.float32))
    with pytest.raises(ValueError, match=r"data matrix 0 has 191 rows; layer 'data' expects 192"):
        net.set_data(0, np.zeros((D - 1, 2), np.float32))
    with pytest.raises(ValueError, match=r"no data layer reads matrix 3"):
        net.set_data(3, np.zeros((D, 2), np.float32))


# ---------------------------------------------------------------------------
# The per-op bindings run the same checks: the same message, without the layer.

def _x(rows: int) -> np.ndarray:
    return np.zeros((rows, 2), np.float32)


PER_OP = [
    ("pool-stride-0", lambda: _core.pool_fprop(_x(D), _x(C * 16), "max", C, S, 2, 0, 0, 4)),
    ("pool-size-0", lambda: _core.pool_fprop(_x(D), _x(C * 16), "max", C, S, 0, 0, 2, 4)),
    ("nailbed-stride-0", lambda: _core.nailbed_fprop(_x(D), _x(C * 16), C, S, 0)),
    ("blur-asymmetric", lambda: _core.blur_fprop(_x(D), _x(D), _x(D), np.array([0.2, 0.5, 0.3], np.float32), C, S)),
    ("rnorm-size-too-large", lambda: _core.rnorm_fprop(_x(D), _x(D), _x(D), C, S, 9, 1e-4, 0.75)),
    ("cmrnorm-size-too-large", lambda: _core.cmrnorm_fprop(_x(D), _x(D), _x(D), C, 4, 1e-4, 0.75)),
    ("conv-stride-0", lambda: _core.conv_fprop(_x(D), np.zeros((27, 4), np.float32), _x(4 * 64), C, S, 3, 1, 0, 1,
                                               S)),
    ("conv-partial-sum", lambda: _core.conv_bprop_weights(_x(D), _x(4 * 64), np.zeros((27, 4), np.float32), C, S, 3,
                                                          1, 1, 1, S, 7, 0.5)),
    ("hs-keep-0", lambda: _core.dropout_fprop(_x(D), _x(D), None, 0.0, False)),
]


@pytest.mark.parametrize("case", PER_OP, ids=[c[0] for c in PER_OP])
def test_per_op_bindings_give_the_plans_message_without_the_layer(case):
    name, call = case
    plan_case = next(c for c in MALFORMED if c[0] == name)
    layer = plan_case[3]
    plan_message = _error(lambda: _core.CpuNet(_malformed(plan_case), 4, 0))
    op_message = _error(call)
    assert plan_message.startswith(f"layer '{layer}': ")
    assert op_message.split(",")[0] == plan_message[len(f"layer '{layer}': "):].split(",")[0]


def test_layer_type_table_is_exposed_once():
    assert _core.WEIGHT_LAYER_TYPES == ("conv", "local", "fc", "treefc")
    assert _core.COST_LAYER_TYPES == ("cost.logreg", "cost.sum2", "cost.crossent", "cost.crossent2", "cost.rflickr",
                                      "cost.gsum2", "cost.tica", "cost.msm")
    assert _core.layer_type_info("eltmax") == {"weights": False, "cost": False, "min_inputs": 2, "max_inputs": None,
                                                "spec": "§3.14"}
    with pytest.raises(KeyError):
        _core.layer_type_info("abstanh")


def test_both_backends_implement_every_row_of_the_table():
    """Each backend finds a layer's implementation by its type's name: every row of the
    core's table has one on the CPU, and one in the CUDA backend of a CUDA build."""
    assert sorted(_core.cpu_layer_types()) == sorted(_core.LAYER_TYPES)
    if CUDA_COMPILED:
        assert sorted(_core.cuda_layer_types()) == sorted(_core.LAYER_TYPES)


# ---------------------------------------------------------------------------
# Small nets for the cost layers beyond logreg (engine.md §3.24–§3.28): an fc layer
# under each, with targets (dataIdx=1, 0/1 values) or gates (one value per case).
COST_BASE = """[data]
type=data
dataIdx=0

[targets]
type=data
dataIdx=1

[fc10]
type=fc
inputs=data
outputs=10
initW=0.05
{neuron}
"""
COST_PARAMS = """[fc10]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
wc=0.004

[{cost}]
coeff={coeff}
"""
COST_NETS = {
    # crossent2 on a logistic (fused, §3.11) and on the fc itself (the "+" of §13 item 2)
    "crossent2-fused": ("neuron=logistic", "[cost]\ntype=cost.crossent2\ninputs=targets,fc10\ngpu=0\n", 1.0),
    "crossent2-unfused": ("", "[cost]\ntype=cost.crossent2\ninputs=targets,fc10\ngpu=0\n", 0.01),
    "rflickr": ("", "[cost]\ntype=cost.rflickr\ninputs=targets,fc10\ngpu=0\n", 0.5),
    # crossent on a softmax that has another consumer (the gradient flows, §3.24) ...
    "crossent": ("", "[probs]\ntype=softmax\ninputs=fc10\n\n[cost]\ntype=cost.crossent\ninputs=targets,probs\n"
                 "gpu=0\n\n[sq]\ntype=cost.sum2\ninputs=probs\ngpu=0\n", 0.5),
    # ... and on one that has none: as written, no gradient flows below it
    "crossent-alone": ("", "[probs]\ntype=softmax\ninputs=fc10\n\n[cost]\ntype=cost.crossent\n"
                       "inputs=targets,probs\ngpu=0\n\n[sq]\ntype=cost.sum2\ninputs=fc10\ngpu=0\n", 0.5),
    "gsum2": ("", "[cost]\ntype=cost.gsum2\ninputs=targets,fc10\ngpu=0\n", 0.05),  # targets: one gate per case
}


@pytest.mark.parametrize("name", sorted(COST_NETS))
def test_cost_layers_engine_and_port_agree(tmp_path, name):
    neuron, cost, coeff = COST_NETS[name]
    layers = tmp_path / "cost.layers.cfg"
    params = tmp_path / "cost.params.cfg"
    layers.write_text(COST_BASE.format(neuron=neuron) + "gpu=0\n\n" + cost)
    extra = "\n[sq]\ncoeff=0.5\n" if "[sq]" in cost else ""
    params.write_text(COST_PARAMS.format(cost="cost", coeff=coeff) + extra)
    # 3x5x5 images; the further data matrices: 10-wide 0/1 targets, or gsum2's one gate per case
    width = 1 if name == "gsum2" else 10
    config = load_network(layers, DataProfile("cost-test", "3x5x5 images", (3, 5, 5), width, 10))
    load_params(config, params)
    report = parity.run_parity(config, minibatch=3, steps=2, seed=4)
    assert report.passed, parity.summary_text(report)
    costs = {m.layer for m in report.metrics if m.quantity == "forward" and m.kind == "cost"}
    assert "cost" in costs
    grads = {m.layer for m in report.metrics if m.quantity == "backward"}
    if name == "crossent-alone":  # the fc's gradient comes from the sum2 only
        assert "probs" not in grads
    else:
        assert "fc10" in grads


# ---------------------------------------------------------------------------
# resize, rgb2yuv, rgb2lab, rscale (§3.20–§3.22, no backward), cost.tica and cost.msm
# (§3.29, §3.30): one net on 3x13x13 images, 5 cases, the engine against the port. The
# port draws rscale's draw (scale index, factor, crop offsets) and the engine replays it.
# tica sits on a conv that a later sum2 also reads (so the engine reaches tica second:
# the accumulate path, sqrt(sum A)) and tica2 alone on another, with an even window
# (the overwrite path, sum A); msm reads energies from an fc, not a softmax.
IMAGE_NET = """[data]
type=data
dataIdx=0

[labels]
type=data
dataIdx=1

[yuv]
type=rgb2yuv
inputs=data
gpu=0

[lab]
type=rgb2lab
inputs=data
center=1
gpu=0

[rs]
type=resize
inputs=yuv
channels=3
scale=1.7

[rsc]
type=rscale
inputs=yuv
channels=3
maxScale=1.5
tgtSize=9

[conv]
type=conv
inputs=rsc
channels=3
filters=16
filterSize=3
padding=1
initW=0.1
partialSum=0

[conv2]
type=conv
inputs=rsc
channels=3
filters=16
filterSize=2
initW=0.1
partialSum=0

[fc10]
type=fc
inputs=rs,rsc
outputs=10
initW=0.05,0.05

[probs]
type=softmax
inputs=fc10

[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0

[energies]
type=fc
inputs=rs
outputs=10
initW=0.1

[msm]
type=cost.msm
inputs=labels,energies
gpu=0

[tica]
type=cost.tica
inputs=conv
channels=16
sizeX=3

[tica2]
type=cost.tica
inputs=conv2
channels=16
sizeX=2

[sq]
type=cost.sum2
inputs=conv

[sqlab]
type=cost.sum2
inputs=lab
"""
LEARN = "epsW={w}\nepsB=0.02\nmomW={m}\nmomB=0.9\nwc={d}\n"
IMAGE_PARAMS = "".join(f"[{n}]\n" + LEARN.format(w=w, m=m, d=d) for n, (w, m, d) in {
    "conv": ("0.01", "0.9", "0.004"), "conv2": ("0.01", "0.9", "0.004"),
    "fc10": ("0.01,0.01", "0.9,0.9", "0.004,0.004"), "energies": ("0.01", "0.9", "0.004")}.items()) + """
[logprob]
coeff=1
[msm]
coeff=0.5
setSize=3
threads=4
[tica]
coeff=0.25
[tica2]
coeff=0.5
[sq]
coeff=0.01
[sqlab]
coeff=0.01
"""


def test_image_layers_tica_and_msm_engine_and_port_agree(tmp_path):
    layers, params = tmp_path / "image.layers.cfg", tmp_path / "image.params.cfg"
    layers.write_text(IMAGE_NET)
    params.write_text(IMAGE_PARAMS)
    config = load_network(layers, DataProfile("image-test", "3x13x13 images", (3, 13, 13), 1, 10))
    load_params(config, params)
    assert config["rs"].image == (3, 7)  # floor(13/1.7)
    report = parity.run_parity(config, minibatch=5, steps=2, seed=3)
    assert report.passed, parity.summary_text(report)
    kinds = {(m.layer, m.quantity): m.kind for m in report.metrics}
    # bit-exact classes where the float operations are the engine's
    assert kinds[("rs", "forward")] == kinds[("rsc", "forward")] == "resize"
    assert kinds[("yuv", "forward")] == "color" and kinds[("lab", "forward")] == "color-pow"
    assert kinds[("conv2", "backward")] == "grad-tica"  # tica2 is conv2's only consumer
    assert kinds[("energies", "backward")] == "grad-msm"
    assert kinds[("tica", "forward")] == kinds[("msm", "forward")] == "cost"
    # no gradient reaches the layers without a backward, nor anything below them
    grads = {m.layer for m in report.metrics if m.quantity.startswith("backward")}
    assert grads.isdisjoint({"data", "yuv", "lab", "rs", "rsc"}) and {"conv", "conv2", "energies"} <= grads
