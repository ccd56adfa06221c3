"""Definition-file and parameter-file rules (driver.md §A.2-§A.9, §B) on small invented nets.

Each net is written here, and each expected shape or count is worked out by hand
in a comment beside it. Every error test checks that the CLI-facing exception is
exactly ConfigError and that it names the file, the section and (where there is
one) the key.
"""

from __future__ import annotations

import math
import re

import pytest

from alexnet_replay.errors import ConfigError
from alexnet_replay.original.cfgfile import parse_cfg_text
from alexnet_replay.original.layers import LENIENT, STRICT, DataProfile, Network, build_network
from alexnet_replay.original.params import Schedule, apply_params, parse_schedule

DEF = "net.cfg"
PAR = "net-params.cfg"


def profile(c: int, side: int, classes: int = 10) -> DataProfile:
    return DataProfile(f"{c}x{side}x{side}", "test images", (c, side, side), 1, classes)


P13 = profile(3, 13)

DATA = """
[data]
type=data
dataIdx=0

[labels]
type=data
dataIdx=1
"""


def tail(src: str, outputs: int = 10) -> str:
    """A classifier over `src`, so that every layer above is used."""
    return f"""
[fc10]
type=fc
inputs={src}
outputs={outputs}
initW=0.01

[probs]
type=softmax
inputs=fc10

[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""


def net(body: str, prof: DataProfile = P13, mode: str = STRICT, num_gpus: int | None = None,
        src: str | None = None) -> Network:
    """DATA + body + a classifier over `src` (default: the last section of body)."""
    if src is None:
        src = re.findall(r"^\[([^]]+)\]", body, re.M)[-1]
    text = DATA + body + tail(src)
    return build_network(parse_cfg_text(text, DEF), prof, mode, num_gpus)


def raw_net(text: str, prof: DataProfile = P13, mode: str = STRICT, num_gpus: int | None = None) -> Network:
    return build_network(parse_cfg_text(text, DEF), prof, mode, num_gpus)


def with_params(network: Network, text: str) -> list[str]:
    return apply_params(network, parse_cfg_text(text, PAR))


def config_error(fn, *, file: str = DEF, section: str, key: str | None, reason: str | None = None) -> ConfigError:
    """`fn` must raise exactly ConfigError naming file, section and key (as the file
    spells it, or in the spec's spelling when absent). `reason` is a regex for the reason."""
    with pytest.raises(ConfigError) as info:
        fn()
    exc = info.value
    assert type(exc) is ConfigError
    text = str(exc)
    assert exc.file == file and text.startswith(f"{file}: ")
    assert exc.section == section and f"[{section}]" in text
    if key is None:
        assert exc.key is None and "key '" not in text
    else:
        assert exc.key == key and f"key '{key}'" in text
    if reason is not None:
        assert re.search(reason, exc.reason), exc.reason
    return exc


def conv(name: str = "conv1", inputs: str = "data", channels: int = 3, filters: int = 16,
         size: int = 5, extra: str = "", partial: int | None = 0, gpu: str = "gpu=0") -> str:
    ps = "" if partial is None else f"partialSum={partial}\n"
    return (f"\n[{name}]\ntype=conv\ninputs={inputs}\nchannels={channels}\nfilters={filters}\n"
            f"filterSize={size}\ninitW=0.01\n{ps}{gpu}\n{extra}\n")


# -- a complete small net, and where each section sits ---------------------------
def test_small_net_shapes_counts_and_order():
    n = net(conv(extra="padding=2\nstride=4", partial=4))
    # conv1: 1 + ceil((2*2 + 13 - 5) / 4) = 1 + ceil(12/4) = 4 -> modules 16
    c1 = n["conv1"]
    assert c1.attrs["modulesX"] == 4 and c1.attrs["modules"] == 16
    assert c1.image == (16, 4) and c1.outputs == 16 * 16 == 256
    assert c1.weights == [(3 * 5 * 5, 16)]          # (filterChannels*k^2) x filters
    assert c1.biases == (16, 1)                     # sharedBiases defaults to true
    assert c1.attrs["padding"] == [-2]              # stored negated, as the release did
    assert c1.attrs["partialSum"] == 4
    assert c1.gpu == 0
    assert c1.line == 10                            # DATA is 8 lines after a leading newline
    # fc10: 256 x 10; probs and logprob carry no weights
    assert n["fc10"].weights == [(256, 10)] and n["fc10"].biases == (1, 10)
    assert n.weights == 75 * 16 + 256 * 10 == 3760
    assert n.biases == 16 + 10
    assert n.parameters == 3786
    assert list(n.layers) == ["data", "labels", "conv1", "fc10", "probs", "logprob"]
    assert n["logprob"].attrs["num_classes"] == 10
    assert n.fixes == [] and n.mode == STRICT


# -- conv geometry ------------------------------------------------------------
@pytest.mark.parametrize("img, k, stride, pad, mx", [
    (13, 5, 4, 2, 4),     # 1 + ceil((4 + 13 - 5)/4) = 1 + 3 = 4
    (13, 5, 3, 1, 5),     # 1 + ceil((2 + 13 - 5)/3) = 1 + ceil(3.33) = 5  (overhang)
    (7, 3, 3, 0, 3),      # 1 + ceil((7 - 3)/3) = 1 + ceil(1.33) = 3       (overhang)
    (7, 3, 2, 0, 3),      # 1 + ceil(4/2) = 3
    (97, 7, 5, 3, 21),    # 1 + ceil((6 + 97 - 7)/5) = 1 + ceil(19.2) = 21
    (224, 11, 4, 0, 55),  # 1 + ceil(213/4) = 1 + 54 = 55 (the paper's conv1)
    (13, 13, 1, 0, 1),    # the filter covers the image: one module
    (5, 7, 1, 1, 1),      # 7 <= 5 + 2*1: allowed, 1 + ceil(0/1) = 1
])
def test_conv_modules_x_with_padding_stride_and_ceiling(img, k, stride, pad, mx):
    n = net(conv(size=k, extra=f"padding={pad}\nstride={stride}"), prof=profile(3, img))
    c1 = n["conv1"]
    assert c1.attrs["modulesX"] == mx
    assert c1.image == (16, mx)
    assert c1.outputs == 16 * mx * mx
    assert c1.attrs["imgSize"] == [img]


def test_conv_filter_larger_than_padded_image():
    # 8 > 5 + 2*1
    config_error(lambda: net(conv(size=8, extra="padding=1"), prof=profile(3, 5)),
                 section="conv1", key="filterSize", reason="larger than the padded image")


def test_conv_input_not_a_square_image_with_those_channels():
    # 3*13*13 = 507 values; as 4 channels: 507 // 4 = 126 pixels, not a square
    config_error(lambda: net(conv(channels=4)), section="conv1", key="channels",
                 reason="not a square image with 4 channels")


def test_conv_groups_and_filter_channels():
    # 8 channels in 2 groups: filterChannels = 8/2 = 4; 16 filters per group -> 32 in all.
    # 9x9 image, k=3, padding 1: modulesX = 1 + ceil((2 + 9 - 3)/1) = 9, modules 81.
    n = net(conv(channels=8, size=3, extra="groups=2\npadding=1"), prof=profile(8, 9))
    c1 = n["conv1"]
    assert c1.attrs["filterChannels"] == [4]
    assert c1.attrs["overSample"] == [1]            # 2*4/8
    assert c1.attrs["weightsPerFilter"] == [36]     # 4 * 3^2
    assert c1.weights == [(36, 32)]
    assert c1.image == (32, 9) and c1.outputs == 81 * 32 == 2592
    assert c1.macs == 81 * 32 * 36


def test_conv_groups_need_channels_divisible_by_4_groups():
    # 8 channels, 4 groups: 8 % (4*4) != 0
    config_error(lambda: net(conv(channels=8, size=3, extra="groups=4"), prof=profile(8, 9)),
                 section="conv1", key="channels", reason="divisible by 16")


def test_conv_rand_sparse_over_sample():
    # 16 channels, 4 groups, filterChannels 8: 16 % 8 = 0, 8 % 4 = 0, 4*8 % 16 = 0.
    # overSample = 4*8/16 = 2; rows = 8 * 3^2 = 72; filters 16 per group -> 64.
    # 7x7 image, k=3: modulesX = 1 + ceil(4/1) = 5.
    extra = "groups=4\nrandSparse=1\nfilterChannels=8"
    n = net(conv(channels=16, size=3, extra=extra), prof=profile(16, 7))
    c1 = n["conv1"]
    assert c1.attrs["randSparse"] == [True]
    assert c1.attrs["filterChannels"] == [8]
    assert c1.attrs["overSample"] == [2]
    assert c1.weights == [(72, 64)]
    assert c1.image == (64, 5)


def test_conv_filter_channels_is_read_only_with_rand_sparse():
    # randSparse=yes is a lenient bool-list item: not 'true'/'1', so false; filterChannels
    # is then ignored and stays 16/4 = 4.
    extra = "groups=4\nrandSparse=yes\nfilterChannels=8"
    c1 = net(conv(channels=16, size=3, extra=extra), prof=profile(16, 7))["conv1"]
    assert c1.attrs["randSparse"] == [False]
    assert c1.attrs["filterChannels"] == [4]
    assert c1.attrs["overSample"] == [1]
    assert c1.weights == [(36, 64)]


def test_conv_rand_sparse_needs_groups():
    config_error(lambda: net(conv(channels=16, size=3, extra="randSparse=true"), prof=profile(16, 7)),
                 section="conv1", key="randSparse", reason="needs groups > 1")


@pytest.mark.parametrize("fc", [6, 12, 2, 0])
def test_conv_rand_sparse_bad_filter_channels(fc):
    # 6, 12: do not divide 16; 2: not divisible by 4; 0: nothing
    extra = f"groups=4\nrandSparse=1\nfilterChannels={fc}"
    config_error(lambda: net(conv(channels=16, size=3, extra=extra), prof=profile(16, 7)),
                 section="conv1", key="filterChannels")


def test_local_layer_weight_shapes():
    # 13x13, k=5, stride 4, padding 2 -> modulesX 4, modules 16 (as conv1 above), but one
    # filter bank per module: rows = 16 * 3 * 5^2 = 1200; biases one per filter per module.
    body = "\n[loc]\ntype=local\ninputs=data\nchannels=3\nfilters=16\nfilterSize=5\n" \
           "padding=2\nstride=4\ninitW=0.01\ngpu=0\n"
    loc = net(body)["loc"]
    assert loc.type == "local"
    assert loc.weights == [(1200, 16)]
    assert loc.biases == (256, 1)
    assert loc.outputs == 256
    assert "partialSum" not in loc.attrs


def test_conv_unshared_biases():
    c1 = net(conv(extra="padding=2\nstride=4\nsharedBiases=0"))["conv1"]
    assert c1.biases == (16 * 16, 1)    # modules * filters


@pytest.mark.parametrize("partial", [5, 32, -1, 3])
def test_partial_sum_must_divide_modules(partial):
    # modules = 4*4 = 16: 5, 32, 3 do not divide it; -1 is negative
    exc = config_error(lambda: net(conv(extra="padding=2\nstride=4", partial=partial)),
                       section="conv1", key="partialSum", reason="divide the number of output modules")
    assert "4x4 = 16" in exc.reason
    assert exc.line == 17   # the partialSum line of conv1: DATA ends on line 8, conv() adds a blank line


@pytest.mark.parametrize("partial", [0, 1, 2, 4, 8, 16])
def test_partial_sum_zero_or_divisor_is_accepted(partial):
    assert net(conv(extra="padding=2\nstride=4", partial=partial))["conv1"].attrs["partialSum"] == partial


def test_partial_sum_is_required_for_conv():
    config_error(lambda: net(conv(partial=None)), section="conv1", key="partialSum",
                 reason="required parameter 'partialSum' missing")


@pytest.mark.parametrize("filters, groups, channels", [(8, 1, 3), (24, 2, 8), (40, 1, 3)])
def test_filters_times_groups_divisible_by_16_groups(filters, groups, channels):
    # 8 % 16, 48 % 32, 40 % 16 are all non-zero
    config_error(lambda: net(conv(channels=channels, filters=filters, size=3, extra=f"groups={groups}"),
                             prof=profile(channels, 9)),
                 section="conv1", key="filters", reason=f"16 x groups = {16 * groups}")


def test_conv_two_inputs_must_give_equal_output():
    # a: 13x13 k=5 s=4 p=2 -> 4x4; data k=3 s=1 -> 11x11: unequal
    body = conv("a", extra="padding=2\nstride=4") + conv("b", inputs="data,a", channels="3,16",
                                                         size="3,1", filters="16,16",
                                                         extra="initW=0.01,0.01")
    config_error(lambda: net(body), section="b", key="inputs", reason="equally-dimensioned")


def test_conv_per_input_list_length():
    body = conv("a", extra="padding=2\nstride=4") + conv("b", inputs="a", channels=16, size=1,
                                                         extra="stride=1,1")
    config_error(lambda: net(body), section="b", key="stride", reason="list length does not match")


# -- fc -------------------------------------------------------------------------
def test_fc_with_two_inputs():
    # a: 16 x 4x4 = 256 values; b: 32 filters, same geometry -> 512 values
    body = conv("a", extra="padding=2\nstride=4") + conv("b", filters=32, extra="padding=2\nstride=4") + """
[both]
type=fc
inputs=a,b
outputs=10
initW=0.01,0.02
initB=0.5
"""
    both = net(body)["both"]
    assert both.inputs == ["a", "b"]
    assert both.weights == [(256, 10), (512, 10)]
    assert both.biases == (1, 10)
    assert both.weight_count == 2560 + 5120
    assert both.attrs["initW"] == [0.01, 0.02] and both.attrs["initB"] == 0.5
    assert both.attrs["weightsPerFilter"] == [256, 512]
    assert both.macs == (256 + 512) * 10


def test_fc_init_w_list_must_match_inputs():
    body = conv("a", extra="padding=2\nstride=4") + "\n[both]\ntype=fc\ninputs=a,a\noutputs=10\ninitW=0.01\n"
    config_error(lambda: net(body), section="both", key="initW", reason="list length does not match")


def test_init_w_missing_is_an_error():
    body = conv("a", extra="padding=2\nstride=4") + "\n[f]\ntype=fc\ninputs=a\noutputs=10\n"
    config_error(lambda: net(body), section="f", key="initW", reason="required in practice")


def test_fc_outputs_must_be_positive():
    body = conv("a", extra="padding=2\nstride=4") + "\n[f]\ntype=fc\ninputs=a\noutputs=0\ninitW=0.1\n"
    config_error(lambda: net(body), section="f", key="outputs", reason=">= 1")


# -- pool -------------------------------------------------------------------------
POOL = "\n[pool1]\ntype=pool\npool=max\ninputs=data\nchannels=3\nsizeX=3\nstride=2\ngpu=0\n"


@pytest.mark.parametrize("side, extra, out", [
    (55, "", 27),             # ceil((55 - 0 - 3)/2) + 1 = 26 + 1 = 27
    (27, "", 13),             # ceil(24/2) + 1 = 13
    (13, "", 6),              # ceil(10/2) + 1 = 6
    (32, "", 16),             # ceil(29/2) + 1 = ceil(14.5) + 1 = 16 (overhang)
    (32, "start=1", 15),      # ceil((32 - 1 - 3)/2) + 1 = 14 + 1 = 15
    (32, "outputsX=5", 5),    # given outputsX is taken as it is
])
def test_pool_outputs_x(side, extra, out):
    p = net(POOL + extra, prof=profile(3, side))["pool1"]
    assert p.attrs["outputsX"] == out
    assert p.image == (3, out)
    assert p.outputs == 3 * out * out


def test_pool_channels_multiple_of_16_only_above_weights():
    # data -> pool(3 channels) -> pool(3 channels): no weights below, 3 is fine
    second = POOL.replace("pool1", "pool2").replace("inputs=data", "inputs=pool1")
    n = net(POOL + second, prof=profile(3, 32))
    assert n["pool2"].image == (3, 8)    # 16 -> ceil(13/2) + 1 = 8
    # conv (16 x 4x4 = 256 values) -> pool read as 4 channels of 8x8: a conv is below
    bad = conv(extra="padding=2\nstride=4") + \
        "\n[p]\ntype=pool\npool=avg\ninputs=conv1\nchannels=4\nsizeX=2\nstride=2\n"
    config_error(lambda: net(bad), section="p", key="channels", reason="multiple of 16")
    # ... and through a weightless layer in between
    deeper = conv(extra="padding=2\nstride=4") + \
        "\n[p0]\ntype=pool\npool=max\ninputs=conv1\nchannels=16\nsizeX=1\nstride=1\n" + \
        "\n[p]\ntype=pool\npool=avg\ninputs=p0\nchannels=4\nsizeX=2\nstride=2\n"
    config_error(lambda: net(deeper), section="p", key="channels", reason="multiple of 16")


def test_pool_bad_mode_size_and_stride():
    config_error(lambda: net(POOL.replace("pool=max", "pool=min")), section="pool1", key="pool")
    config_error(lambda: net(POOL.replace("sizeX=3", "sizeX=14")), section="pool1", key="sizeX",
                 reason="1..13")
    config_error(lambda: net(POOL.replace("stride=2", "stride=4")), section="pool1", key="stride",
                 reason="1..sizeX=3")


# -- normalisation layers -------------------------------------------------------
CONV_4X4 = conv(extra="padding=2\nstride=4")   # 16 channels of 4x4


def norm(kind: str, channels: int, size: int, inputs: str = "conv1") -> str:
    return f"\n[n1]\ntype={kind}\ninputs={inputs}\nchannels={channels}\nsize={size}\n"


def test_cmrnorm_size_and_channels_rules():
    assert net(CONV_4X4 + norm("cmrnorm", 16, 5))["n1"].image == (16, 4)
    for size in (1, 17):     # 2 <= size <= channels = 16
        config_error(lambda: net(CONV_4X4 + norm("cmrnorm", 16, size)), section="n1", key="size",
                     reason="2..channels=16")
    # 256 values as 4 channels of 8x8 passes the image check, but 4 % 16 != 0
    config_error(lambda: net(CONV_4X4 + norm("cmrnorm", 4, 2)), section="n1", key="channels",
                 reason="multiple of 16")


def test_rnorm_size_and_channels_rules():
    gpu = "gpu=0\n"
    assert net(norm("rnorm", 3, 13, "data") + gpu)["n1"].attrs["size"] == 13
    for size in (0, 14):     # 1 <= size <= imgSize = 13
        config_error(lambda: net(norm("rnorm", 3, size, "data") + gpu), section="n1", key="size",
                     reason="1..13")
    # 5 channels: neither <= 3 nor a multiple of 4
    config_error(lambda: net(norm("cnorm", 5, 3, "data") + gpu, prof=profile(5, 7)), section="n1",
                 key="channels", reason="1, 2, 3 or a multiple of 4")


NORM_PARAMS = """
[conv1]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9

[n1]
scale={scale}
pow=0.75
{extra}

[fc10]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9

[logprob]
coeff=1
"""


def test_norm_scale_rewriting():
    # cmrnorm: scale / size = 0.0001 / 5 = 2e-5; minDiv given as 2
    n = net(CONV_4X4 + norm("cmrnorm", 16, 5))
    with_params(n, NORM_PARAMS.format(scale="0.0001", extra="minDiv=2"))
    p = n["n1"].params
    assert p["scale"] == pytest.approx(2e-5, rel=1e-12)
    assert p["scale_file"] == 0.0001
    assert p["pow"] == 0.75 and p["minDiv"] == 2.0
    # rnorm: scale / size^2 = 0.009 / 9 = 0.001; no minDiv for same-map norms
    n = net(CONV_4X4 + norm("rnorm", 16, 3))
    with_params(n, NORM_PARAMS.format(scale="0.009", extra=""))
    assert n["n1"].params["scale"] == pytest.approx(0.001, rel=1e-12)
    assert "minDiv" not in n["n1"].params
    # cmrnorm without minDiv: 1.0
    n = net(CONV_4X4 + norm("cmrnorm", 16, 4))
    with_params(n, NORM_PARAMS.format(scale="1", extra=""))
    assert n["n1"].params["minDiv"] == 1.0 and n["n1"].params["scale"] == 0.25


def test_norm_needs_scale_and_pow():
    n = net(CONV_4X4 + norm("cmrnorm", 16, 5))
    text = NORM_PARAMS.format(scale="0.0001", extra="").replace("pow=0.75\n", "")
    config_error(lambda: with_params(n, text), file=PAR, section="n1", key="pow",
                 reason="required parameter 'pow' missing")


def test_old_norm_keys_in_definition_strict_error_lenient_fix():
    old = "\n[n1]\ntype=rnorm\ninputs=conv1\nchannels=16\nsizeX=3\nscale=0.009\npow=0.75\n"
    config_error(lambda: net(CONV_4X4 + old), section="n1", key="size",
                 reason="required parameter 'size' missing")
    n = net(CONV_4X4 + old, mode=LENIENT)
    assert n["n1"].attrs["size"] == 3
    assert any("n1" in f and "sizeX" in f for f in n.fixes)
    # with no [n1] section, scale and pow come from the definition: 0.009 / 3^2 = 0.001
    with_params(n, NORM_PARAMS.format(scale="1", extra="").replace("[n1]", "[unrelated]"))
    assert n["n1"].params["scale"] == pytest.approx(0.001, rel=1e-12)
    assert n["n1"].params["pow"] == 0.75
    assert any("taken from the definition file" in f for f in n.fixes)


# -- blur and data sizes -----------------------------------------------------------
BLUR = "\n[b]\ntype=blur\ninputs=data\nchannels=3\nfilterSize=3\nstdev={stdev}\ngpu=0\n"


def test_blur_filter_and_stdev_rules():
    b = net(BLUR.format(stdev="1"))["b"]
    # taps exp(-(1 - i)^2 / (2*1^2)) for i = 0, 1, 2: e^-0.5, 1, e^-0.5, normalised to sum 1
    w = math.exp(-0.5)
    assert b.attrs["filter"] == pytest.approx([w / (1 + 2 * w), 1 / (1 + 2 * w), w / (1 + 2 * w)], rel=1e-12)
    assert b.image == (3, 13)
    config_error(lambda: net(BLUR.format(stdev="0")), section="b", key="stdev", reason="must be > 0")
    # 1e-170 is > 0, but its square underflows to 0: a ConfigError, not a ZeroDivisionError
    config_error(lambda: net(BLUR.format(stdev="1e-170")), section="b", key="stdev", reason=r"2\*stdev\^2 > 0")


def test_data_profile_with_a_negative_size_is_a_config_error():
    # (a profile guessed from a negative classifier width would give this; the layers
    # fed by it would otherwise take the square root of a negative pixel count)
    prof = DataProfile("neg", "bad guess", (3, 13, 13), -4, 10)
    config_error(lambda: net(CONV_4X4, prof=prof), section="labels", key="dataIdx", reason="gives -4 values")


# -- neuron= splitting -----------------------------------------------------------
def test_neuron_splitting_and_rewiring():
    body = conv(extra="padding=2\nstride=4\nneuron=relu") + \
        "\n[p]\ntype=pool\npool=max\ninputs=conv1\nchannels=16\nsizeX=2\nstride=2\nneuron=abs\n"
    n = net(body)
    assert list(n.layers) == ["data", "labels", "conv1", "conv1_neuron", "p", "p_neuron", "fc10", "probs",
                              "logprob"]
    act = n["conv1_neuron"]
    assert act.type == "neuron" and act.inputs == ["conv1"] and act.neuron == "relu"
    assert act.neuron_of == "conv1" and act.gpu == 0
    assert act.outputs == 256 and act.image == (16, 4)
    assert n["conv1"].neuron == "relu"           # the original keeps its text
    assert n["p"].inputs == ["conv1_neuron"]     # consumers now read the activation
    assert n["fc10"].inputs == ["p_neuron"]
    # p: 4x4 -> ceil((4 - 2)/2) + 1 = 2; after the activation 16 x 2x2 = 64
    assert n["p_neuron"].image == (16, 2)
    assert n["fc10"].weights == [(64, 10)]
    assert n.neuron_layers_added == 2


def test_neuron_name_taken_gets_a_numbered_suffix():
    # A section already called conv1_neuron (here a pool reading conv1): the new layer is
    # conv1_neuron.1, and the pool, a consumer of conv1, is rewired to it.
    body = conv(extra="padding=2\nstride=4\nneuron=relu") + \
        "\n[conv1_neuron]\ntype=pool\npool=max\ninputs=conv1\nchannels=16\nsizeX=2\nstride=2\n"
    n = net(body)
    assert list(n.layers)[2:5] == ["conv1", "conv1_neuron.1", "conv1_neuron"]
    assert n["conv1_neuron.1"].type == "neuron" and n["conv1_neuron.1"].inputs == ["conv1"]
    assert n["conv1_neuron"].type == "pool" and n["conv1_neuron"].inputs == ["conv1_neuron.1"]


def test_neuron_on_a_cost_layer_is_dropped():
    text = DATA + CONV_4X4 + tail("conv1").replace("gpu=0", "gpu=0\nneuron=relu")
    n = raw_net(text)
    assert "logprob_neuron" not in n.layers
    assert n.neuron_layers_added == 0
    assert n["logprob"].neuron is None


def test_unused_layer_is_an_error():
    body = CONV_4X4 + conv("spare", extra="padding=2\nstride=4")
    config_error(lambda: net(body, src="conv1"), section="spare", key=None,
                 reason="layer 'spare' of type 'conv' is unused")


def test_unused_activation_names_its_source_section():
    body = CONV_4X4 + conv("spare", extra="padding=2\nstride=4\nneuron=relu")
    config_error(lambda: net(body, src="conv1"), section="spare", key=None,
                 reason="layer 'spare_neuron' of type 'neuron' is unused")


# -- graph order, types, neurons -------------------------------------------------
def test_input_defined_later_is_an_error_that_says_so():
    text = DATA + "\n[p]\ntype=pool\npool=max\ninputs=late\nchannels=3\nsizeX=3\nstride=2\n" + \
        POOL.replace("pool1", "late") + tail("p")
    exc = config_error(lambda: raw_net(text), section="p", key="inputs",
                       reason="input layer 'late' not defined")
    assert "defined further down" in exc.reason
    text = DATA + "\n[p]\ntype=pool\npool=max\ninputs=nowhere\nchannels=3\nsizeX=3\nstride=2\n" + tail("p")
    exc = config_error(lambda: raw_net(text), section="p", key="inputs",
                       reason="input layer 'nowhere' not defined")
    assert "further down" not in exc.reason


def test_input_names_are_stripped_of_ascii_whitespace_only():
    # ' conv1\t' names conv1; 'conv1\xa0' (no-break space, not whitespace to Python 2) does not
    n = net(CONV_4X4 + "\n[p]\ntype=pool\npool=max\ninputs= conv1\t\nchannels=16\nsizeX=2\nstride=2\n")
    assert n["p"].inputs == ["conv1"]
    bad = CONV_4X4 + "\n[p]\ntype=pool\npool=max\ninputs=conv1\xa0\nchannels=16\nsizeX=2\nstride=2\n"
    config_error(lambda: net(bad), section="p", key="inputs", reason="input layer 'conv1\xa0' not defined")


def test_unknown_or_missing_layer_type():
    config_error(lambda: net(conv().replace("type=conv", "type=convolution")), section="conv1",
                 key="type", reason="unknown layer type 'convolution'")
    config_error(lambda: net(conv().replace("type=conv\n", "")), section="conv1", key="type",
                 reason="no type given")


@pytest.mark.parametrize("spelling", [
    "sigmoid", "Relu", "relu\xa0", "tanh[1e-3,1]", "tanh[1]", "brelu[1,2]", "abstanh[1,1]",
    "tanh[1.2.3,1]", "linear[,]",
])
def test_bad_neuron_spellings(spelling):
    body = conv(extra=f"padding=2\nstride=4\nneuron={spelling}")
    config_error(lambda: net(body), section="conv1", key="neuron", reason="neuron")


@pytest.mark.parametrize("spelling", ["relu", "tanh[1.7159,0.6666]", "brelu[ 6 ]", "linear[-1,.5]",
                                      "drelu[2]", "logistic"])
def test_good_neuron_spellings(spelling):
    n = net(conv(extra=f"padding=2\nstride=4\nneuron={spelling}"))
    assert n["conv1_neuron"].neuron == spelling


# -- gpu ----------------------------------------------------------------------
def test_gpu_strict_error_lenient_fix():
    body = conv(extra="padding=2\nstride=4", gpu="")
    exc = config_error(lambda: net(body), section="conv1", key="gpu", reason="must be one of")
    assert "inherited from first input 'data'" in exc.reason
    n = net(body, mode=LENIENT)
    assert n["conv1"].gpu == 0
    assert n["fc10"].gpu == 0                      # inherited from conv1
    assert n.fixes == ["conv1: no usable gpu (first input is a data layer) -> assumed gpu=0"]


def test_explicit_negative_gpu_is_an_error_even_lenient():
    body = conv(extra="padding=2\nstride=4", gpu="gpu=-1")
    config_error(lambda: net(body, mode=LENIENT), section="conv1", key="gpu", reason="value -1")


def test_gpu_is_bounded_by_num_gpus():
    body = conv(extra="padding=2\nstride=4", gpu="gpu=1")
    assert net(body, num_gpus=2)["conv1"].gpu == 1
    assert net(body, num_gpus=2).gpus == [0, 1]     # the cost layer sits on gpu 0
    config_error(lambda: net(body, num_gpus=1), section="conv1", key="gpu", reason=r"0\.\.0 \(value 1\)")
    assert net(body)["conv1"].gpu == 1              # no bound given: any index >= 0


# -- weight sharing ------------------------------------------------------------
SHARE = CONV_4X4 + """
[fc1]
type=fc
inputs=conv1
outputs=16
initW=0.01

[fc2]
type=fc
inputs=conv1
outputs=16
initW=0.01
weightSource=fc1

[sum]
type=eltsum
inputs=fc1,fc2
"""


def test_weight_source_is_counted_once():
    n = net(SHARE)
    assert n["fc2"].weight_sources == [("fc1", 0)]
    assert n["fc2"].weights == [(256, 16)] and n["fc2"].weight_count == 0
    assert n["fc2"].bias_count == 16
    # conv1 75*16 = 1200, fc1 256*16 = 4096, fc2 shared, fc10 16*10 = 160
    assert n.weights == 1200 + 4096 + 160 == 5456
    assert n.biases == 16 + 16 + 16 + 10 == 58
    assert n.parameters == 5514


def test_weight_source_own_earlier_matrix():
    body = CONV_4X4 + "\n[twin]\ntype=fc\ninputs=conv1,conv1\noutputs=16\ninitW=0.01,0.01\nweightSource=,twin\n"
    twin = net(body)["twin"]
    assert twin.weight_sources == [None, ("twin", 0)]
    assert twin.weight_count == 256 * 16
    bad = body.replace("weightSource=,twin", "weightSource=twin[0],")
    config_error(lambda: net(bad), section="twin", key="weightSource", reason="not defined before input 0")


@pytest.mark.parametrize("change, reason", [
    ("weightSource=fc1", None),                                       # (control: accepted)
    ("weightSource=nothere", "not defined above"),
    ("weightSource=conv1", "is a conv layer, not fc"),
    ("weightSource=fc1[1]", "has no weight matrix 1"),
])
def test_weight_source_errors(change, reason):
    text = SHARE.replace("weightSource=fc1", change)
    if reason is None:
        assert net(text)["fc2"].weight_sources == [("fc1", 0)]
    else:
        config_error(lambda: net(text), section="fc2", key="weightSource", reason=reason)


def test_weight_source_other_gpu_and_other_shape():
    other_gpu = SHARE.replace("weightSource=fc1", "weightSource=fc1\ngpu=1")
    config_error(lambda: net(other_gpu), section="fc2", key="weightSource", reason="on gpu 0")
    other_shape = SHARE.replace("outputs=16\ninitW=0.01\nweightSource", "outputs=32\ninitW=0.01\nweightSource")
    config_error(lambda: net(other_shape.replace("type=eltsum", "type=concat")), section="fc2",
                 key="weightSource", reason="256x16, input 0 needs 256x32")


# -- parameter files -------------------------------------------------------------
BASE_PARAMS = """
[conv1]
epsW=0.001
epsB=0.002
momW=0.9
momB=0.8
wc=0.0005
wball=2
{conv_extra}

[fc10]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
{fc_extra}

[logprob]
coeff=1
{cost_extra}
"""


def params_text(conv_extra: str = "", fc_extra: str = "", cost_extra: str = "") -> str:
    return BASE_PARAMS.format(conv_extra=conv_extra, fc_extra=fc_extra, cost_extra=cost_extra)


def test_params_are_read_and_derived():
    n = net(CONV_4X4)
    unused = with_params(n, params_text(fc_extra="schedW=dexp[tgtFactor=250,noiseStdev=0,numSteps=4]\n"
                                                 "schedB=exp[tgtFactor=10,noiseStdev=0.5]\nquantF=HALF",
                                        cost_extra="topk=5"))
    assert unused == []
    c = n["conv1"].params
    assert c["epsW"] == [0.001] and c["epsB"] == 0.002 and c["momW"] == [0.9] and c["momB"] == 0.8
    assert c["wc"] == [0.0005]
    assert c["wballNormed"] == [2 * 75]          # wball x weights per filter (3*5*5)
    assert c["schedW"] == Schedule("default") and c["wcNormMax"] == [0.0]
    f = n["fc10"].params
    assert f["schedW"] == Schedule("dexp", (("tgtFactor", 250.0), ("noiseStdev", 0.0), ("numSteps", 4)))
    assert f["schedB"] == Schedule("exp", (("tgtFactor", 10.0), ("noiseStdev", 0.5)))
    assert f["wc"] == [0.0] and f["wballNormed"] == [0.0]
    assert f["quantF"] == "half" and f["quantB"] == "default"
    assert n["logprob"].params == {"quantF": "default", "quantB": "default", "coeff": 1.0, "topk": 5}
    assert n.params_path == PAR


def test_neuron_layers_take_quant_from_their_source_section():
    n = net(conv(extra="padding=2\nstride=4\nneuron=relu"))
    with_params(n, params_text(conv_extra="quantB=half"))
    assert n["conv1_neuron"].params == {"quantF": "default", "quantB": "half"}


@pytest.mark.parametrize("sched, reason", [
    ("exp[noiseStdev=0,tgtFactor=10]", "in this order"),
    ("dexp[tgtFactor=250,noiseStdev=0]", "in this order"),
    ("dexp[tgtFactor=250,noiseStdev=0,numSteps=4.5]", "not a number"),
    ("cosine[tgtFactor=1]", "unknown schedule"),
    ("dexp[250,0,4]", "positional spelling was rejected"),
    ("linear[1,1]", "positional spelling was rejected"),
])
def test_bad_schedules_strict(sched, reason):
    n = net(CONV_4X4)
    config_error(lambda: with_params(n, params_text(fc_extra=f"schedW={sched}")), file=PAR, section="fc10",
                 key="schedW", reason=reason)


@pytest.mark.parametrize("sched, expected", [
    # (tgtFactor, noiseStdev, numSteps) in that order
    ("dexp[250,0,4]", ("dexp", (("tgtFactor", 250.0), ("noiseStdev", 0.0), ("numSteps", 4)))),
    # two numbers for dexp/jdexp: (tgtFactor, numSteps), noise 0
    ("dexp[500,4]", ("dexp", (("tgtFactor", 500.0), ("noiseStdev", 0.0), ("numSteps", 4)))),
    ("jdexp[1000,4]", ("jdexp", (("tgtFactor", 1000.0), ("noiseStdev", 0.0), ("numSteps", 4)))),
    # one number: tgtFactor
    ("exp[1000]", ("exp", (("tgtFactor", 1000.0), ("noiseStdev", 0.0)))),
    # two numbers for linear/exp: (tgtFactor, noiseStdev) -- constant rate with noise
    ("linear[1,1]", ("linear", (("tgtFactor", 1.0), ("noiseStdev", 1.0)))),
])
def test_positional_schedules_lenient(sched, expected):
    n = net(CONV_4X4, mode=LENIENT)
    with_params(n, params_text(fc_extra=f"schedB={sched}"))
    assert n["fc10"].params["schedB"] == Schedule(*expected)
    assert any(f.startswith(f"fc10: positional schedule schedB={sched} read as") for f in n.fixes)
    sched_obj, fix = parse_schedule(sched, lenient=True)
    assert sched_obj == Schedule(*expected) and fix is not None
    with pytest.raises(ValueError):
        parse_schedule(sched, lenient=False)


@pytest.mark.parametrize("sched", ["dexp[1,2,3,4]", "dexp[1,0,inf]", "dexp[1,0,x]", "exp[]"])
def test_unreadable_positional_schedules_lenient_are_config_errors(sched):
    n = net(CONV_4X4, mode=LENIENT)
    config_error(lambda: with_params(n, params_text(fc_extra=f"schedW={sched}")), file=PAR, section="fc10",
                 key="schedW", reason="unable to parse learning rate schedule")


def test_missing_parameter_section_for_a_layer_that_needs_one():
    n = net(CONV_4X4)
    text = params_text().replace("[fc10]", "[fc9]")
    exc = config_error(lambda: with_params(n, text), file=PAR, section="fc10", key=None,
                       reason="needs a section")
    assert exc.line is None            # the section is absent: no line to point at


def test_missing_required_parameter_key():
    n = net(CONV_4X4)
    text = params_text().replace("momB=0.8\n", "")
    exc = config_error(lambda: with_params(n, text), file=PAR, section="conv1", key="momB",
                       reason="required parameter 'momB' missing")
    assert exc.line == 2               # the [conv1] header


def test_parameter_list_length_and_wcnorm_order():
    n = net(CONV_4X4)
    config_error(lambda: with_params(n, params_text().replace("epsW=0.001", "epsW=0.001,0.002")), file=PAR,
                 section="conv1", key="epsW", reason="list length does not match")
    config_error(lambda: with_params(n, params_text(conv_extra="wcNormMin=2\nwcNormMax=1")), file=PAR,
                 section="conv1", key="wcNormMin", reason="larger than wcNormMax")


def test_parameter_sections_for_unknown_layers_are_returned_unused():
    n = net(conv(extra="padding=2\nstride=4\nneuron=relu"))
    text = params_text() + "\n[ghost]\nepsW=1\n\n[conv1_neuron]\nquantF=half\n\n[Conv1]\nepsW=9\n"
    # conv1_neuron is a layer (made by the split), so its section is not unused; names
    # are case-sensitive, so [Conv1] matches nothing.
    assert with_params(n, text) == ["ghost", "Conv1"]
    assert n["conv1"].params["epsW"] == [0.001]


# -- resize, rgb2yuv/rgb2lab, the costs' inputs (issue 11 item 2) -----------------------

def test_resize_target_side_is_the_floor_of_side_over_scale():
    # engine.md §3.20: T = floor(S/scale); scale counts source pixels per target pixel, so
    # 1.2 shrinks 24 to floor(20.000000000000004) = 20 (not 24*1.2 = 28), and 0.5 doubles 13 to 26.
    prof = profile(3, 24)
    n = net("\n[rs]\ntype=resize\ninputs=data\nchannels=3\nscale=1.2\ngpu=0\n", prof)
    assert n["rs"].image == (3, 20) and n["rs"].outputs == 3 * 20 * 20
    n = net("\n[rs]\ntype=resize\ninputs=data\nchannels=3\nscale=0.5\ngpu=0\n")
    assert n["rs"].image == (3, 26)
    config_error(lambda: net("\n[rs]\ntype=resize\ninputs=data\nchannels=3\nscale=2.5\ngpu=0\n"),
                 section="rs", key="scale", reason="must be in 0.5..2")


def test_colour_conversions_take_three_channels_without_a_channels_key():
    # engine.md §3.21: R, G, B in, three channels out; a channels key is not read (an odd one is ignored).
    n = net("\n[yuv]\ntype=rgb2yuv\ninputs=data\ngpu=0\n\n[lab]\ntype=rgb2lab\ninputs=yuv\ncenter=1\nchannels=7\n")
    assert n["yuv"].image == (3, 13) and n["yuv"].attrs["channels"] == 3
    assert n["lab"].image == (3, 13) and n["lab"].attrs["center"] is True
    # a 4-channel input is not a 3-channel square image
    config_error(lambda: net("\n[yuv]\ntype=rgb2yuv\ninputs=data\ngpu=0\n", profile(4, 13)),
                 section="yuv", key="inputs", reason="not a square image with 3 channels")


def test_msm_takes_energies_from_any_layer_and_logreg_needs_a_softmax():
    # §3.30: cost.msm's second input is a layer of energies (here an fc); §3.23: logreg's is a softmax.
    body = "\n[energies]\ntype=fc\ninputs=data\noutputs=10\ninitW=0.01\ngpu=0\n\n[msm]\ntype=cost.msm\n" \
           "inputs=labels,energies\ngpu=0\n"
    n = raw_net(DATA + body)
    assert n["msm"].attrs["num_classes"] == 10
    with_params(n, "[energies]\nepsW=0.01\nepsB=0.01\nmomW=0\nmomB=0\n\n[msm]\ncoeff=1\nsetSize=3\nthreads=2\n")
    assert n["msm"].params["setSize"] == 3
    bad = DATA + "\n[energies]\ntype=fc\ninputs=data\noutputs=10\ninitW=0.01\ngpu=0\n\n[logprob]\ntype=cost.logreg\n" \
                 "inputs=labels,energies\ngpu=0\n"
    config_error(lambda: raw_net(bad), section="logprob", key="inputs", reason="must be a softmax layer")


def test_crossent_needs_a_softmax():
    # §3.24 and driver.md §A.3: cost.crossent takes target distributions and a softmax.
    head = DATA + "\n[fc10]\ntype=fc\ninputs=data\noutputs=1\ninitW=0.01\ngpu=0\n"
    good = head + "\n[probs]\ntype=softmax\ninputs=fc10\n\n[ce]\ntype=cost.crossent\ninputs=labels,probs\ngpu=0\n"
    assert raw_net(good)["ce"].attrs["num_classes"] == 1
    bad = head + "\n[ce]\ntype=cost.crossent\ninputs=labels,fc10\ngpu=0\n"
    config_error(lambda: raw_net(bad), section="ce", key="inputs", reason="'fc10' must be a softmax layer")
