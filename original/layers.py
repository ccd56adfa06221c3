"""The release's rules for layer-definition files: validation, derivation, shapes.

This re-states ``../shared/spec/driver.md`` §A.2-§A.9 in code:

1. sections are visited in file order and each layer sees only the layers above
   it (§A.2 step 1), so file order is a topological order;
2. per-type keys are read and checked, shapes derived (§A.3, §A.5, §A.6);
3. ``neuron=`` creates ``<layer>_neuron`` layers and rewires consumers (§A.2 step 4);
4. every non-cost layer must feed another layer (§A.2 step 5).

Two modes. ``strict`` accepts exactly what the release accepted. ``lenient``
relaxes the quirks of older files that ``../shared/spec/catalog.md`` lists -- a
layer fed by a data layer without ``gpu=`` (assumed GPU 0), and the old
``sizeX``/``scale``/``pow`` keys inside norm definitions -- and records each
relaxation in :attr:`Network.fixes`, so shapes and counts can still be computed.

Input sizes are not in the files: a :class:`DataProfile` supplies what the data
provider would have (§A.9).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, quote
from .cfgfile import _WS, CfgFile, read_cfg
from .labeltree import LabelTree
from .values import Reader, py2_float

STRICT = "strict"
LENIENT = "lenient"

WEIGHT_TYPES = ("conv", "local", "fc", "treefc")
COST_TYPES = (
    "cost.logreg", "cost.crossent", "cost.crossent2", "cost.rflickr", "cost.msm",
    "cost.sum2", "cost.gsum2", "cost.tica",
)
LAYER_TYPES = (
    "data", "fc", "treefc", "conv", "local", "pool", "rnorm", "cmrnorm", "cnorm", "neuron",
    "softmax", "eltsum", "eltmax", "concat", "hs", "nailbed", "blur", "href", "resize",
    "rgb2yuv", "rgb2lab", "rscale", *COST_TYPES,
)
# Layers that need a section in the parameter file (§B.1); pool only with pool=rand.
NEEDS_PARAMS = frozenset(("conv", "local", "fc", "treefc", "rnorm", "cnorm", "cmrnorm", "hs", *COST_TYPES))

# neuron= spellings (§A.4): plain names, and name[a,b] with this many numbers.
PLAIN_NEURONS = ("ident", "relu", "nrelu", "logistic", "abs", "softrelu", "square", "sqrt")
PARAM_NEURONS = {"tanh": 2, "brelu": 1, "linear": 2, "drelu": 1}
_NEURON_PARAM_RE = re.compile(r"([a-z]+)\[([0-9., \-]*)\]")


@dataclass(frozen=True)
class DataProfile:
    """What a data provider would report: the image, the label vector, the classes."""

    name: str
    description: str
    image: tuple[int, int, int]  # (C, H, W); the release only knew square images
    label_size: int = 1          # size of data layers with dataIdx >= 1
    num_classes: int | None = None
    tree: LabelTree | None = None  # batches.meta's label tree (treefc layers, labeltree.py)

    def data_size(self, idx: int) -> int:
        c, h, w = self.image
        return c * h * w if idx == 0 else self.label_size


PROFILES = {
    "inet224": DataProfile("inet224", "inet-lr-cropped-jpeg (224x224 crop, border 16)", (3, 224, 224), 1, 1000),
    "flickr224": DataProfile("flickr224", "flickr (224x224 crop, border 16; 10003 tags)", (3, 224, 224), 10003, 10003),
    "cifar32": DataProfile("cifar32", "cifar (32x32, no crop)", (3, 32, 32), 1, 10),
    "cifar24": DataProfile("cifar24", "cifar-cropped (24x24, --crop-border=4)", (3, 24, 24), 1, 10),
}


def custom_profile(image: tuple[int, int, int], like: DataProfile | None = None) -> DataProfile:
    """A profile with a user-given image size (``--image-size``), labels (and tree) as `like`."""
    c, h, w = image
    label_size = like.label_size if like else 1
    classes = like.num_classes if like else None
    return DataProfile(f"{c}x{h}x{w}", f"--image-size {c},{h},{w}", (c, h, w), label_size, classes,
                       like.tree if like else None)


@dataclass
class Layer:
    """One layer after parsing: what the release's layer record holds, plus shapes.

    ``image`` is (channels, side) for layers whose output is a square image, None
    for flat vectors. ``weights`` lists one (rows, cols) per input for weight
    layers; ``weight_sources[i]`` is (layer, idx) when matrix i is shared.
    """

    name: str
    type: str
    line: int
    gpu: int
    inputs: list[str] = field(default_factory=list)
    outputs: int = 0
    image: tuple[int, int] | None = None
    weights: list[tuple[int, int]] = field(default_factory=list)
    weight_sources: list[tuple[str, int] | None] = field(default_factory=list)
    biases: tuple[int, int] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    neuron: str | None = None          # neuron= text as written (kept, ignored by the engine)
    neuron_of: str | None = None       # for <L>_neuron layers: L
    macs: int = 0                      # multiply-adds per image (weight layers)
    unknown_weights: bool = False      # treefc: the tree size is in batches.meta, not the file

    @property
    def is_cost(self) -> bool:
        return self.type.startswith("cost.")

    @property
    def weight_count(self) -> int:
        return sum(r * c for (r, c), src in zip(self.weights, self.weight_sources) if src is None)

    @property
    def bias_count(self) -> int:
        return self.biases[0] * self.biases[1] if self.biases else 0

    @property
    def needs_params(self) -> bool:
        return self.type in NEEDS_PARAMS or (self.type == "pool" and self.attrs.get("pool") == "rand")

    @property
    def shape(self) -> tuple[int, ...]:
        """Output shape per case: (C, H, W) for images, (D,) otherwise, () for costs."""
        if self.image is not None:
            c, s = self.image
            return (c, s, s)
        return (self.outputs,) if self.outputs else ()


@dataclass
class Network:
    """A parsed definition file: layers in an execution order, and what was relaxed."""

    path: str
    profile: DataProfile
    mode: str
    layers: dict[str, Layer]
    sections: int
    fixes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    params_path: str | None = None

    @property
    def gpus(self) -> list[int]:
        return sorted({layer.gpu for layer in self.layers.values() if layer.gpu >= 0})

    @property
    def weights(self) -> int:
        return sum(layer.weight_count for layer in self.layers.values())

    @property
    def biases(self) -> int:
        return sum(layer.bias_count for layer in self.layers.values())

    @property
    def parameters(self) -> int:
        """Trainable parameters: weights and biases, shared matrices counted once."""
        return self.weights + self.biases

    @property
    def parameters_incomplete(self) -> bool:
        """True when a matrix's size depends on data not in the file (treefc's tree)."""
        return any(layer.unknown_weights for layer in self.layers.values())

    @property
    def neuron_layers_added(self) -> int:
        return sum(1 for layer in self.layers.values() if layer.neuron_of is not None)

    def __getitem__(self, name: str) -> Layer:
        return self.layers[name]


# ---------------------------------------------------------------------------
class _Builder:
    """State of one pass over a definition file."""

    def __init__(self, cfg: CfgFile, profile: DataProfile, mode: str, num_gpus: int | None) -> None:
        if mode not in (STRICT, LENIENT):
            raise ValueError(f"mode must be {STRICT!r} or {LENIENT!r}")
        self.cfg = cfg
        self.read = Reader(cfg)
        self.profile = profile
        self.mode = mode
        self.num_gpus = num_gpus
        self.layers: dict[str, Layer] = {}
        self.fixes: list[str] = []
        self.warnings: list[str] = []

    @property
    def lenient(self) -> bool:
        return self.mode == LENIENT

    def error(self, name: str, key: str | None, reason: str) -> ConfigError:
        return self.read.error(name, key, reason)

    # -- shared pieces -------------------------------------------------------
    def inputs(self, name: str, count: int | None = None, at_least: int = 1) -> list[Layer]:
        names = [piece.strip(_WS) for piece in self.read.text(name, "inputs").split(",")]
        found = []
        for inp in names:
            if inp not in self.layers:
                later = " (it is defined further down; a layer sees only the layers above it)" \
                    if self.cfg.has_section(inp) else ""
                raise self.error(name, "inputs", f"input layer '{inp}' not defined{later}")
            layer = self.layers[inp]
            if layer.outputs == 0:
                raise self.error(name, "inputs", f"input layer '{inp}' has no output (a {layer.type} layer)")
            found.append(layer)
        if count is not None and len(found) != count:
            raise self.error(name, "inputs", f"a {self.read.text(name, 'type')} layer takes exactly "
                             f"{count} input{'s' if count > 1 else ''}, got {len(found)}")
        if len(found) < at_least:
            raise self.error(name, "inputs", f"needs at least {at_least} inputs, got {len(found)}")
        return found

    def gpu(self, name: str, inputs: list[Layer]) -> int:
        """§A.2 step 3: explicit gpu=, else the first input's; data layers have -1."""
        inherited = inputs[0].gpu if inputs else -1
        gpu = self.read.int(name, "gpu", inherited)
        explicit = self.read.has(name, "gpu")
        bound = f"0..{self.num_gpus - 1}" if self.num_gpus else "0..num_gpus-1"
        if gpu < 0 or (self.num_gpus is not None and gpu >= self.num_gpus):
            if not explicit and self.lenient and gpu == -1:
                self.fixes.append(f"{name}: no usable gpu (first input is a data layer) -> assumed gpu=0")
                return 0
            why = (f"value {gpu}" if explicit else
                   f"value -1: no gpu key, inherited from first input '{inputs[0].name}'")
            raise self.error(name, "gpu", f"parameter 'gpu' must be one of {bound} ({why})")
        return gpu

    def image_of(self, name: str, key_owner: str, inp: Layer, channels: int) -> int:
        """Side of the square image `inp` carries with `channels` channels (§A.3 derived)."""
        pixels = inp.outputs // channels
        side = math.isqrt(pixels)
        if side * side * channels != inp.outputs:
            raise self.error(
                name, key_owner,
                f"input '{inp.name}' has {inp.outputs} values per case, which is not a square "
                f"image with {channels} channels")
        return side

    def check_neuron(self, name: str, text: str) -> str:
        parse_neuron(text, lambda reason: self.error(name, "neuron", reason))
        return text

    # -- parameter-free types -----------------------------------------------
    def data(self, name: str) -> Layer:
        idx = self.read.int(name, "dataIdx")
        if idx < 0:
            raise self.error(name, "dataIdx", f"must be >= 0 (got {idx})")
        size = self.profile.data_size(idx)
        if size < 0:  # a profile guessed from a negative classifier width; sizes below would crash
            raise self.error(name, "dataIdx", f"data profile '{self.profile.name}' gives {size} values "
                             f"per case for dataIdx {idx}")
        image = None
        if idx == 0:
            c, h, w = self.profile.image
            image = (c, h) if h == w else None
        return Layer(name, "data", self.cfg.line_of(name), -1, [], size, image, attrs={"dataIdx": idx})


# ---------------------------------------------------------------------------
def parse_neuron(text: str, fail: Callable[[str], Exception]) -> tuple[str, tuple[float, ...]]:
    """Parse a neuron= spelling (§A.4) into (name, numbers)."""
    spec = text.strip(_WS)
    if spec in PLAIN_NEURONS:
        return spec, ()
    match = _NEURON_PARAM_RE.fullmatch(spec)
    if match and match.group(1) in PARAM_NEURONS:
        kind, body = match.group(1), match.group(2)
        pieces = body.split(",")
        want = PARAM_NEURONS[kind]
        if len(pieces) != want:
            raise fail(f"neuron '{spec}' needs {want} number{'s' if want > 1 else ''} in brackets")
        try:
            numbers = tuple(py2_float(p) for p in pieces)
        except ValueError:
            raise fail(f"neuron '{spec}': malformed number in brackets") from None
        return kind, numbers
    known = ", ".join([*PLAIN_NEURONS, *(f"{k}[{','.join('x' * n)}]" for k, n in PARAM_NEURONS.items())])
    raise fail(f"unknown neuron '{spec}' (known: {known}; numbers must be plain decimals)")


# ---------------------------------------------------------------------------
# Weight layers (§A.3 conv/local/fc/treefc, §A.5, §A.6)
_SOURCE_RE = re.compile(r"([^\[\]]+?)\s*(?:\[\s*([0-9]+)\s*\])?")
_INIT_FUNC_RE = re.compile(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*\(.*\)", re.DOTALL)


def _init_w(b: _Builder, name: str, n: int) -> list[float]:
    if not b.read.has(name, "initW"):
        # §A.1: the default 0.01 is a scalar that the list reader cannot split.
        raise b.error(name, "initW", "required in practice: the release's default (0.01) is a scalar "
                      "that its list reader cannot split, so a weight layer without initW fails "
                      "(\"must be ','-delimited list of floats\")")
    return b.read.float_list(name, "initW", length=n)


def _init_funcs(b: _Builder, name: str, layer: Layer, keys: tuple[str, ...]) -> None:
    """Record initWFunc/initBFunc/initCFunc text; check its shape, never import it."""
    for key in keys:
        text = b.read.text(name, key, "")
        if text:
            if not _INIT_FUNC_RE.fullmatch(text):
                raise b.error(name, key, f"init function must look like module.function(args), got {text!r}")
            layer.attrs[key] = text


def _weight_sources(b: _Builder, name: str, layer: Layer, n: int) -> None:
    """§A.5 weightSource: input i reuses matrix idx of an earlier layer (or of itself, idx < i)."""
    texts = b.read.text_list(name, "weightSource", [""] * n, length=n)
    layer.weight_sources = [None] * n
    for i, text in enumerate(texts):
        if not text:
            continue
        match = _SOURCE_RE.fullmatch(text)
        if not match:
            raise b.error(name, "weightSource", f"entry {i} {text!r} is not 'layer' or 'layer[idx]'")
        src_name, idx = match.group(1), int(match.group(2) or 0)
        if src_name == name:
            if idx >= i:
                raise b.error(name, "weightSource", f"entry {i} shares this layer's own matrix {idx}, "
                              f"which is not defined before input {i}")
            src_shape = layer.weights[idx]
        else:
            src = b.layers.get(src_name)
            if src is None:
                raise b.error(name, "weightSource", f"weight source layer '{src_name}' is not defined above")
            if src.type != layer.type:
                raise b.error(name, "weightSource", f"weight source '{src_name}' is a {src.type} layer, "
                              f"not {layer.type}")
            if src.gpu != layer.gpu:
                raise b.error(name, "weightSource", f"weight source '{src_name}' is on gpu {src.gpu}, "
                              f"this layer on gpu {layer.gpu}")
            if idx >= len(src.weights):
                raise b.error(name, "weightSource", f"'{src_name}' has no weight matrix {idx}")
            src_shape = src.weights[idx]
        if src_shape != layer.weights[i]:
            raise b.error(name, "weightSource", f"matrix {idx} of '{src_name}' is {src_shape[0]}x"
                          f"{src_shape[1]}, input {i} needs {layer.weights[i][0]}x{layer.weights[i][1]}")
        layer.weight_sources[i] = (src_name, idx)


def _has_weights_upstream(b: _Builder, inputs: list[Layer]) -> bool:
    seen: set[str] = set()
    stack = list(inputs)
    while stack:
        layer = stack.pop()
        if layer.name in seen:
            continue
        seen.add(layer.name)
        if layer.type in WEIGHT_TYPES:
            return True
        stack.extend(b.layers[i] for i in layer.inputs)
    return False


def _conv(b: _Builder, name: str, kind: str) -> Layer:
    r = b.read
    inputs = b.inputs(name)
    n = len(inputs)
    layer = Layer(name, kind, b.cfg.line_of(name), b.gpu(name, inputs), [i.name for i in inputs])
    channels = r.int_list(name, "channels", length=n)
    sizes = r.int_list(name, "filterSize", length=n)
    filters = r.int_list(name, "filters", length=n)
    padding = r.int_list(name, "padding", [0] * n, length=n)
    stride = r.int_list(name, "stride", [1] * n, length=n)
    groups = r.int_list(name, "groups", [1] * n, length=n)
    rand_sparse = r.bool_list(name, "randSparse", [False] * n, length=n)
    init_w = _init_w(b, name, n)
    init_b = r.float(name, "initB", 0.0)
    filter_channels = [c // g if g > 0 else 0 for c, g in zip(channels, groups)]
    if any(rand_sparse):
        filter_channels = r.int_list(name, "filterChannels", filter_channels, length=n)

    modules_x: int | None = None
    total: int | None = None
    for i, inp in enumerate(inputs):
        where = f"input {i} ('{inp.name}')" if n > 1 else f"input '{inp.name}'"
        c, k, f, p, s, g, fc = channels[i], sizes[i], filters[i], padding[i], stride[i], groups[i], filter_channels[i]
        if not (1 <= c <= 3 or (c > 0 and c % 4 == 0)):
            raise b.error(name, "channels", f"{where}: channels must be 1, 2, 3 or a multiple of 4 (got {c})")
        if g < 1:
            raise b.error(name, "groups", f"{where}: groups must be >= 1 (got {g})")
        if f < 1:
            raise b.error(name, "filters", f"{where}: filters must be >= 1 (got {f})")
        if g > 1 and c % (4 * g):
            raise b.error(name, "channels", f"{where}: with {g} groups, channels must be divisible by "
                          f"{4 * g} (got {c})")
        if rand_sparse[i]:
            if g == 1:
                raise b.error(name, "randSparse", f"{where}: random sparse connectivity needs groups > 1")
            if fc <= 0 or c % fc or fc % 4 or (g * fc) % c:
                raise b.error(name, "filterChannels", f"{where}: filterChannels {fc} must divide channels "
                              f"{c}, be divisible by 4, and groups*filterChannels must be divisible by channels")
        if p < 0:
            raise b.error(name, "padding", f"{where}: padding must be >= 0 (got {p})")
        if s < 1:
            raise b.error(name, "stride", f"{where}: stride must be >= 1 (got {s})")
        if k < 1:
            raise b.error(name, "filterSize", f"{where}: filterSize must be >= 1 (got {k})")
        side = b.image_of(name, "channels", inp, c)
        if k > side + 2 * p:
            raise b.error(name, "filterSize", f"{where}: filter {k} is larger than the padded image "
                          f"{side} + 2*{p}")
        mx = 1 + -(-(2 * p + side - k) // s)  # §A.3: 1 + ceil((2p + imgSize - filterSize) / stride)
        count = f * g
        if count % (16 * g):
            raise b.error(name, "filters", f"{where}: filters x groups = {count} must be divisible by "
                          f"16 x groups = {16 * g}")
        if modules_x is None:
            modules_x, total = mx, count
        elif (mx, count) != (modules_x, total):
            raise b.error(name, "inputs", f"all inputs must produce equally-dimensioned output: input 0 "
                          f"gives {total} filters of {modules_x}x{modules_x}, {where} gives {count} of {mx}x{mx}")
    assert modules_x is not None and total is not None
    modules = modules_x * modules_x

    layer.outputs = modules * total
    layer.image = (total, modules_x)
    per_module = [fc * k * k for fc, k in zip(filter_channels, sizes)]
    rows = [m * modules for m in per_module] if kind == "local" else per_module
    layer.weights = [(rws, total) for rws in rows]
    layer.macs = sum(modules * total * m for m in per_module)
    layer.attrs.update(
        channels=channels, filterSize=sizes, filters=filters, groups=groups, stride=stride,
        # §A.3: the release's layer record stores padding negated; a checkpoint reader flips it back.
        padding=[-p for p in padding],
        randSparse=rand_sparse, filterChannels=filter_channels, modulesX=modules_x, modules=modules,
        imgSize=[b.image_of(name, "channels", inp, c) for inp, c in zip(inputs, channels)],
        overSample=[g * fc // c for g, fc, c in zip(groups, filter_channels, channels)],
        weightsPerFilter=per_module, initW=init_w, initB=init_b,
    )
    if kind == "conv":
        partial = r.int(name, "partialSum")
        if partial != 0 and (partial < 0 or modules % partial):
            raise b.error(name, "partialSum", f"partialSum {partial} must be 0 or divide the number of "
                          f"output modules {modules_x}x{modules_x} = {modules} (this ties the file to one input size)")
        shared = r.bool(name, "sharedBiases", True)
        layer.attrs.update(partialSum=partial, sharedBiases=shared)
        layer.biases = (total, 1) if shared else (modules * total, 1)
    else:
        layer.biases = (modules * total, 1)
    _init_funcs(b, name, layer, ("initWFunc", "initBFunc", "initCFunc"))
    _weight_sources(b, name, layer, n)
    return layer


def _fc(b: _Builder, name: str) -> Layer:
    inputs = b.inputs(name)
    n = len(inputs)
    layer = Layer(name, "fc", b.cfg.line_of(name), b.gpu(name, inputs), [i.name for i in inputs])
    outputs = b.read.int(name, "outputs")
    if outputs < 1:
        raise b.error(name, "outputs", f"must be >= 1 (got {outputs})")
    layer.outputs = outputs
    layer.weights = [(inp.outputs, outputs) for inp in inputs]
    layer.biases = (1, outputs)
    layer.macs = sum(inp.outputs for inp in inputs) * outputs
    layer.attrs.update(outputs=outputs, initW=_init_w(b, name, n), initB=b.read.float(name, "initB", 0.0),
                       weightsPerFilter=[inp.outputs for inp in inputs])
    _init_funcs(b, name, layer, ("initWFunc", "initBFunc"))
    _weight_sources(b, name, layer, n)
    return layer


def _treefc(b: _Builder, name: str) -> Layer:
    inputs = b.inputs(name, count=1)
    layer = Layer(name, "treefc", b.cfg.line_of(name), b.gpu(name, inputs), [inputs[0].name])
    classes = b.profile.num_classes
    if classes is None:
        raise b.error(name, None, "a treefc layer has one output per class, and the class count comes "
                      "from batches.meta; this data profile does not give it")
    if b.read.has(name, "weightSource"):
        raise b.error(name, "weightSource", "weight sharing is not allowed for treefc layers")
    layer.outputs = classes
    layer.weight_sources = [None]
    layer.biases = (1, classes)
    layer.attrs.update(initW=_init_w(b, name, 1), initB=b.read.float(name, "initB", 0.0), outputs=classes)
    tree = b.profile.tree
    if tree is not None:  # §3.3: one weight vector per node of the label tree
        if tree.leaves != classes:
            raise b.error(name, None, f"the label tree ({tree.source}) has {tree.leaves} leaves, but the data "
                          f"has {classes} classes: its leaves must be the classes")
        layer.weights = [(inputs[0].outputs, tree.nodes)]
        layer.attrs["tree"] = tree
        if tree.source.startswith("stand-in"):
            b.warnings.append(f"{name}: treefc uses a stand-in label tree ({tree.source}, {tree.nodes} nodes); "
                              "the release's tree came with its data in batches.meta['tree']")
    else:  # §A.3: the matrix has one column per node of batches.meta['tree'], not in the release
        layer.weights = [(inputs[0].outputs, 0)]
        layer.unknown_weights = True
        b.warnings.append(f"{name}: treefc weight matrix has one column per node of the label tree in "
                          "batches.meta['tree'] (size not in the release); outputs = number of classes")
    return layer


# ---------------------------------------------------------------------------
# Layers without weights (§A.3)
def _single(b: _Builder, name: str, kind: str) -> tuple[Layer, Layer]:
    inputs = b.inputs(name, count=1)
    inp = inputs[0]
    layer = Layer(name, kind, b.cfg.line_of(name), b.gpu(name, inputs), [inp.name])
    return layer, inp


def _channels_image(b: _Builder, name: str, inp: Layer) -> tuple[int, int]:
    channels = b.read.int(name, "channels")
    if channels < 1:
        raise b.error(name, "channels", f"must be >= 1 (got {channels})")
    return channels, b.image_of(name, "channels", inp, channels)


def _pool(b: _Builder, name: str) -> Layer:
    r = b.read
    layer, inp = _single(b, name, "pool")
    mode = r.text(name, "pool")
    if mode not in ("max", "maxabs", "avg", "rand"):
        raise b.error(name, "pool", f"pool must be max, maxabs, avg or rand (got {mode!r})")
    channels, side = _channels_image(b, name, inp)
    if channels % 16 and _has_weights_upstream(b, [inp]):
        raise b.error(name, "channels", f"channels must be a multiple of 16 when a layer with weights is "
                      f"below this one (got {channels})")
    size = r.int(name, "sizeX")
    if not 1 <= size <= side:
        raise b.error(name, "sizeX", f"must be in 1..{side} (the image side), got {size}")
    stride = r.int(name, "stride")
    if not 1 <= stride <= size:
        raise b.error(name, "stride", f"must be in 1..sizeX={size}, got {stride}")
    start = r.int(name, "start", 0)
    out_x = r.int(name, "outputsX", 0)
    if out_x < 0:
        raise b.error(name, "outputsX", f"must be >= 0 (got {out_x})")
    if out_x == 0:
        out_x = -(-(side - start - size) // stride) + 1  # §A.3: ceil((img - start - sizeX)/stride) + 1
    layer.outputs = out_x * out_x * channels
    layer.image = (channels, out_x)
    layer.attrs.update(pool=mode, channels=channels, sizeX=size, stride=stride, start=start,
                       outputsX=out_x, imgSize=side)
    return layer


def _norm(b: _Builder, name: str, kind: str) -> Layer:
    r = b.read
    layer, inp = _single(b, name, kind)
    channels, side = _channels_image(b, name, inp)
    key = "size"
    if not r.has(name, "size") and r.has(name, "sizeX") and b.lenient:
        key = "sizeX"
        b.fixes.append(f"{name}: uses old key sizeX (and scale/pow in the definition file) -> read as size")
        for old in ("scale", "pow"):
            if r.has(name, old):
                layer.attrs[f"definition_{old}"] = r.float(name, old)
    size = r.int(name, key)
    if kind == "cmrnorm":
        if not 2 <= size <= channels:
            raise b.error(name, "size", f"must be in 2..channels={channels}, got {size}")
        if channels % 16:
            raise b.error(name, "channels", f"must be a multiple of 16 for cmrnorm (got {channels})")
        layer.attrs["blocked"] = r.bool(name, "blocked", False)
    else:
        if not 1 <= size <= side:
            raise b.error(name, "size", f"must be in 1..{side} (the image side), got {size}")
        if not (channels <= 3 or channels % 4 == 0):
            raise b.error(name, "channels", f"must be 1, 2, 3 or a multiple of 4 (got {channels})")
    layer.outputs, layer.image = inp.outputs, (channels, side)
    layer.attrs.update(channels=channels, size=size, imgSize=side)
    return layer


def _neuron(b: _Builder, name: str) -> Layer:
    layer, inp = _single(b, name, "neuron")
    layer.neuron = b.check_neuron(name, b.read.text(name, "neuron"))
    layer.outputs, layer.image = inp.outputs, inp.image
    return layer


def _softmax(b: _Builder, name: str) -> Layer:
    layer, inp = _single(b, name, "softmax")
    layer.outputs = inp.outputs
    return layer


def _hs(b: _Builder, name: str) -> Layer:
    layer, inp = _single(b, name, "hs")
    keep = b.read.float(name, "keep")
    if not 0.0 < keep <= 1.0:
        raise b.error(name, "keep", f"keep probability must be in (0, 1], got {keep}")
    layer.outputs, layer.image = inp.outputs, inp.image
    layer.attrs["keep"] = keep
    return layer


def _elementwise(b: _Builder, name: str, kind: str) -> Layer:
    inputs = b.inputs(name, at_least=2 if kind == "eltmax" else 1)
    layer = Layer(name, kind, b.cfg.line_of(name), b.gpu(name, inputs), [i.name for i in inputs])
    for inp in inputs[1:]:
        if inp.outputs != inputs[0].outputs:
            raise b.error(name, "inputs", f"inputs must have equal sizes: '{inputs[0].name}' has "
                          f"{inputs[0].outputs}, '{inp.name}' has {inp.outputs}")
    if kind == "eltsum":
        # §A.3: coeffs defaults to all 1; the release does not check its length.
        layer.attrs["coeffs"] = b.read.float_list(name, "coeffs", [1.0] * len(inputs))
    layer.outputs = inputs[0].outputs
    layer.image = inputs[0].image if all(i.image == inputs[0].image for i in inputs) else None
    return layer


def _concat(b: _Builder, name: str) -> Layer:
    inputs = b.inputs(name)
    layer = Layer(name, "concat", b.cfg.line_of(name), b.gpu(name, inputs), [i.name for i in inputs])
    offsets = [0]
    for inp in inputs:
        offsets.append(offsets[-1] + inp.outputs)
    layer.outputs = offsets[-1]
    layer.attrs["copyOffsets"] = offsets
    return layer


def _nailbed(b: _Builder, name: str) -> Layer:
    layer, inp = _single(b, name, "nailbed")
    channels, side = _channels_image(b, name, inp)
    stride = b.read.int(name, "stride")
    if stride < 1:
        raise b.error(name, "stride", f"must be >= 1 (got {stride})")
    out_x = -(-side // stride)
    layer.outputs, layer.image = channels * out_x * out_x, (channels, out_x)
    layer.attrs.update(channels=channels, stride=stride, outputsX=out_x,
                       start=(side - stride * (out_x - 1)) // 2, imgSize=side)
    return layer


def _blur(b: _Builder, name: str) -> Layer:
    layer, inp = _single(b, name, "blur")
    channels, side = _channels_image(b, name, inp)
    size = b.read.int(name, "filterSize")
    if size not in (3, 5, 7, 9) or size > side:
        raise b.error(name, "filterSize", f"must be 3, 5, 7 or 9 and at most the image side {side}, got {size}")
    stdev = b.read.float(name, "stdev")
    if stdev <= 0 or 2 * stdev * stdev == 0:  # a square that underflows to 0 would divide by 0
        raise b.error(name, "stdev", f"must be > 0, and large enough that 2*stdev^2 > 0 (got {stdev})")
    taps = [math.exp(-((size // 2 - i) ** 2) / (2 * stdev * stdev)) for i in range(size)]
    layer.outputs, layer.image = inp.outputs, (channels, side)
    layer.attrs.update(channels=channels, filterSize=size, stdev=stdev,
                       filter=[t / sum(taps) for t in taps], imgSize=side)
    return layer


def _image_op(b: _Builder, name: str, kind: str) -> Layer:
    """href, rgb2yuv, rgb2lab, resize, rscale: present in the parser, used by no released file."""
    r = b.read
    layer, inp = _single(b, name, kind)
    if kind in ("rgb2yuv", "rgb2lab"):  # engine.md §3.21: three channels (R, G, B), no channels key
        channels, side = 3, b.image_of(name, "inputs", inp, 3)
    else:
        channels, side = _channels_image(b, name, inp)
    out = side
    if kind == "href" and not 1 <= channels <= 3:
        raise b.error(name, "channels", f"must be 1..3 (got {channels})")
    if kind == "rgb2lab":
        layer.attrs["center"] = r.bool(name, "center", False)
    if kind in ("resize", "rscale"):
        if _has_weights_upstream(b, [inp]):
            raise b.error(name, "inputs", f"a {kind} layer has no backward pass, so it may not sit "
                          "above layers with weights")
        if kind == "resize":
            scale = r.float(name, "scale")
            if not 0.5 <= scale <= 2.0:
                raise b.error(name, "scale", f"must be in 0.5..2 (got {scale})")
            out = int(side / scale)  # engine.md §3.20: T = floor(S/scale) (scale is source pixels per target pixel)
            if out < 1:
                raise b.error(name, "scale", f"the target side floor({side}/{scale}) is 0")
            layer.attrs["scale"] = scale
        else:
            max_scale = r.float(name, "maxScale")
            if not 1.0 <= max_scale <= 2.0:
                raise b.error(name, "maxScale", f"must be in 1..2 (got {max_scale})")
            out = r.int(name, "tgtSize")
            if out < 1:
                raise b.error(name, "tgtSize", f"must be >= 1 (got {out})")
            layer.attrs.update(maxScale=max_scale, tgtSize=out)
    layer.outputs, layer.image = channels * out * out, (channels, out)
    layer.attrs.update(channels=channels, imgSize=side)
    return layer


def _cost(b: _Builder, name: str, kind: str) -> Layer:
    counts = {"cost.sum2": 1, "cost.tica": 1}
    inputs = b.inputs(name, count=counts.get(kind, 2))
    layer = Layer(name, kind, b.cfg.line_of(name), b.gpu(name, inputs), [i.name for i in inputs])
    first = inputs[0]
    if kind in ("cost.logreg", "cost.msm"):
        if first.outputs != 1:
            raise b.error(name, "inputs", f"first input '{first.name}' must be the label index (size 1), "
                          f"it has size {first.outputs}")
        # §3.23: logreg reads probabilities from a softmax; §3.30: msm reads energies from any layer.
        if kind == "cost.logreg" and inputs[1].type != "softmax":
            raise b.error(name, "inputs", f"second input '{inputs[1].name}' must be a softmax layer, "
                          f"it is a {inputs[1].type} layer")
        layer.attrs["num_classes"] = inputs[1].outputs
    elif kind in ("cost.crossent", "cost.crossent2", "cost.rflickr"):
        if first.outputs != inputs[1].outputs:
            raise b.error(name, "inputs", f"both inputs must have the class-count size: '{first.name}' has "
                          f"{first.outputs}, '{inputs[1].name}' has {inputs[1].outputs}")
        if kind == "cost.crossent" and inputs[1].type != "softmax":  # §3.24: target distributions and a softmax
            raise b.error(name, "inputs", f"second input '{inputs[1].name}' must be a softmax layer, "
                          f"it is a {inputs[1].type} layer")
        if kind != "cost.crossent" and inputs[1].neuron != "logistic" and \
                b.layers[inputs[1].name].type != "neuron":
            b.warnings.append(f"{name}: second input '{inputs[1].name}' is not a logistic neuron layer")
        layer.attrs["num_classes"] = inputs[1].outputs
    elif kind == "cost.gsum2" and first.outputs != 1:
        raise b.error(name, "inputs", f"the gate input '{first.name}' must have size 1, it has {first.outputs}")
    elif kind == "cost.tica":
        channels, side = _channels_image(b, name, first)
        layer.attrs.update(channels=channels, sizeX=b.read.int(name, "sizeX"), imgSize=side)
    return layer


_PARSERS: dict[str, Callable[[_Builder, str], Layer]] = {
    "data": lambda b, n: b.data(n),
    "conv": lambda b, n: _conv(b, n, "conv"),
    "local": lambda b, n: _conv(b, n, "local"),
    "fc": _fc,
    "treefc": _treefc,
    "pool": _pool,
    "rnorm": lambda b, n: _norm(b, n, "rnorm"),
    "cnorm": lambda b, n: _norm(b, n, "cnorm"),
    "cmrnorm": lambda b, n: _norm(b, n, "cmrnorm"),
    "neuron": _neuron,
    "softmax": _softmax,
    "hs": _hs,
    "eltsum": lambda b, n: _elementwise(b, n, "eltsum"),
    "eltmax": lambda b, n: _elementwise(b, n, "eltmax"),
    "concat": _concat,
    "nailbed": _nailbed,
    "blur": _blur,
    **{t: (lambda kind: lambda b, n: _image_op(b, n, kind))(t)
       for t in ("href", "resize", "rscale", "rgb2yuv", "rgb2lab")},
    **{t: (lambda kind: lambda b, n: _cost(b, n, kind))(t) for t in COST_TYPES},
}
assert set(_PARSERS) == set(LAYER_TYPES)


# ---------------------------------------------------------------------------
def _split_neurons(b: _Builder) -> dict[str, Layer]:
    """§A.2 step 4: each non-neuron layer with neuron= gets a <name>_neuron layer after it."""
    ordered: dict[str, Layer] = {}
    renamed: dict[str, str] = {}
    taken = set(b.layers)
    for layer in b.layers.values():
        layer.inputs = [renamed.get(i, i) for i in layer.inputs]
        ordered[layer.name] = layer
        text = b.read.text(layer.name, "neuron", "") if layer.type != "neuron" else ""
        if layer.is_cost or not text:
            continue  # cost layers drop their neuron key
        layer.neuron = b.check_neuron(layer.name, text)
        new = f"{layer.name}_neuron"
        suffix = 1
        while new in taken:
            new = f"{layer.name}_neuron.{suffix}"
            suffix += 1
        taken.add(new)
        ordered[new] = Layer(new, "neuron", layer.line, layer.gpu, [layer.name], layer.outputs, layer.image,
                             neuron=text, neuron_of=layer.name)
        renamed[layer.name] = new
    return ordered


def _check_unused(b: _Builder, layers: dict[str, Layer]) -> None:
    """§A.2 step 5: every non-cost layer must be the input of another layer."""
    used = {i for layer in layers.values() for i in layer.inputs}
    for layer in layers.values():
        if not layer.is_cost and layer.name not in used:
            owner = layer.neuron_of or layer.name
            raise b.error(owner, None, f"layer '{layer.name}' of type '{layer.type}' is unused "
                          "(no other layer takes it as input)")


def build_network(cfg: CfgFile, profile: DataProfile, mode: str = STRICT,
                  num_gpus: int | None = None) -> Network:
    """Apply the release's definition-file rules to a parsed cfg file.

    `num_gpus` bounds the ``gpu`` keys as ``--num-gpus`` did; None accepts any
    non-negative index (the catalog's reading). Raises ConfigError on the first
    problem, in file order, as the release did.
    """
    b = _Builder(cfg, profile, mode, num_gpus)
    if not cfg.section_names():
        raise ConfigError("defines no layers: no [section] in the file (an empty layer-definition file)",
                          file=cfg.path)
    for name in cfg.section_names():
        if not b.read.has(name, "type"):
            raise b.error(name, "type", "no type given")
        kind = b.read.text(name, "type")
        parser = _PARSERS.get(kind)
        if parser is None:
            raise b.error(name, "type", f"unknown layer type {quote(kind)} (known: {', '.join(sorted(LAYER_TYPES))})")
        b.layers[name] = parser(b, name)
    layers = _split_neurons(b)
    _check_unused(b, layers)
    return Network(cfg.path, profile, mode, layers, len(cfg.section_names()), b.fixes, b.warnings)


def load_network(path: str | Path, profile: DataProfile, mode: str = STRICT, num_gpus: int | None = None,
                 display_name: str | None = None) -> Network:
    """Read a layer-definition file and build it; errors name `display_name` (default: path)."""
    return build_network(read_cfg(path, display_name), profile, mode, num_gpus)
