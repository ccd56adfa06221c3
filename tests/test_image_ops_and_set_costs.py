"""resize, rgb2yuv, rgb2lab, rscale (engine.md §3.20–§3.22) and cost.tica, cost.msm
(§3.29, §3.30) in the CPU net, against values worked out by hand or by brute force.

* resize: a linear image (bilinear interpolation reproduces it, so every value is known
  by hand), the clamp to S − 1.01 at the far edge, and a downscale of an awkward size
  against an independent float64 transcription of §3.20.
* rgb2yuv / rgb2lab: known colours (white, black, the primaries, grey), LAB's exponent
  0.3333 (not 1/3) and its linear branch below 0.0088564517.
* rscale: injected draws (a crop, a rescale), the law of the engine's own draws, the
  seed that replays them, the test pass that copies as written (§13 item 5).
* The four refuse a layer that learns below them (no backward).
* cost.tica: a 3x3 image by hand, the gradient against finite differences of the
  function it is the exact gradient of (odd windows only), and the accumulate path's
  sqrt (§13 item 3).
* cost.msm: marginals and costs against an enumeration of all subsets (k = 2 of 5
  classes), the approximate logadd on wide energies, tie rules, finite differences.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from alexnet_replay import _core
from alexnet_replay.errors import ReplayError
from alexnet_replay.modernize.port import ops as port_ops
from alexnet_replay.testing import assert_close

F32 = np.float32


def spec(name: str, type_: str, inputs: list[int], outputs: int, **fields) -> _core.LayerSpec:
    s = _core.LayerSpec()
    s.name, s.type, s.inputs, s.outputs = name, type_, inputs, outputs
    for key, value in fields.items():
        setattr(s, key, value)
    return s


def identity_fc(name: str, inputs: list[int], d: int, eps: float = 0.01) -> _core.LayerSpec:
    """An fc of d outputs that learns (so the cost above it sends a gradient down), to be
    given identity weights and zero biases (set_identity): its output is its input, exactly."""
    s = spec(name, "fc", inputs, d)
    s.weight_rows, s.weight_cols = [d], [d]
    s.share_layer, s.share_index = [-1], [-1]
    s.eps_w, s.mom_w, s.wc = [eps], [0.0], [0.0]
    s.sched_w = [_core.Schedule()]
    s.bias_rows, s.bias_cols = 1, d
    s.eps_b = eps
    return s


def set_identity(net, name: str, d: int) -> None:
    net.upload("weights", name, np.asfortranarray(np.eye(d, dtype=np.float32)), 0)
    net.upload("biases", name, np.zeros((1, d), np.float32), 0)


def images(x: np.ndarray) -> np.ndarray:
    """(N, C, S, S) -> the engine's (C*S*S, N), case fastest."""
    return np.ascontiguousarray(x.reshape(x.shape[0], -1).T, dtype=np.float32)


def unimages(a: np.ndarray, c: int, s: int) -> np.ndarray:
    return np.asarray(a).T.reshape(-1, c, s, s)


# ---------------------------------------------------------------------------
# resize (§3.20)


def resize_reference(x: np.ndarray, tgt: int, scale: float, rows=None, cols=None) -> np.ndarray:
    """§3.20 transcribed in float64 from the formulas (not from the engine's code): NCHW in."""
    side = x.shape[-1]
    sc = float(F32(scale))
    c = side / 2 - tgt / 2 * sc
    hi = side - 1.01
    rows = range(tgt) if rows is None else rows
    cols = range(tgt) if cols is None else cols
    out = np.zeros(x.shape[:2] + (len(rows), len(cols)))
    for i, ty in enumerate(rows):
        sy = min(max(ty * sc + c, 0.0), hi)
        y0, w = int(math.floor(sy)), sy - math.floor(sy)
        for j, tx in enumerate(cols):
            sx = min(max(tx * sc + c, 0.0), hi)
            x0, u = int(math.floor(sx)), math.floor(sx + 1) - sx
            top = u * x[..., y0, x0] + (1 - u) * x[..., y0, x0 + 1]
            bottom = u * x[..., y0 + 1, x0] + (1 - u) * x[..., y0 + 1, x0 + 1]
            out[..., i, j] = (1 - w) * top + w * bottom
    return out


def run_resize(x: np.ndarray, scale: float, tgt: int) -> np.ndarray:
    n, c, s, _ = x.shape
    net = _core.CpuNet([spec("data", "data", [], c * s * s, data_idx=0),
                        spec("rs", "resize", [0], c * tgt * tgt, channels=c, img_size=s, scale=scale)], n, 0)
    net.set_data(0, images(x))
    net.forward("train")
    return unimages(net.array("acts", "rs"), c, tgt)


def test_resize_of_a_linear_image_by_hand():
    # A 2x2 image v(y, x) = 2y + x enlarged with scale 0.5 to T = floor(2/0.5) = 4. Bilinear
    # interpolation reproduces a linear function, so out = 2*sy + sx with s = clamp(t*0.5 + c,
    # 0, S - 1.01), c = S/2 - (T/2)*0.5 = 0: positions 0, 0.5, 1.0 -> 0.99, 1.5 -> 0.99.
    x = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32).reshape(1, 1, 2, 2)
    x = np.concatenate([x, 10 * x - 1], axis=0)  # a second case, another linear image
    out = run_resize(x, 0.5, 4)
    hand = np.array([[0.00, 0.50, 0.99, 0.99],
                     [1.00, 1.50, 1.99, 1.99],
                     [1.98, 2.48, 2.97, 2.97],
                     [1.98, 2.48, 2.97, 2.97]])
    assert_close(out[0, 0], hand, atol=2e-6, what="resize 2x2 -> 4x4, case 0")
    assert_close(out[1, 0], 10 * hand - 1, atol=2e-5, what="resize 2x2 -> 4x4, case 1")


def test_resize_downscale_of_an_awkward_size_against_the_formulas():
    # 13 -> floor(13/1.7) = 7, two channels, five cases
    x = np.random.default_rng(1).standard_normal((5, 2, 13, 13)).astype(np.float32)
    out = run_resize(x, 1.7, 7)
    assert_close(out, resize_reference(x.astype(np.float64), 7, 1.7), atol=2e-6, rtol=1e-6, what="resize 13 -> 7")
    # the port's resize performs the engine's float32 operations: bit for bit
    port = port_ops.resize(torch.from_numpy(x), 7, 1.7).numpy()
    assert_close(port, out, what="port resize vs engine")


def test_resize_side_and_the_plan():
    # S = 24, scale = 1.2: T = floor(24/1.2) = 20 (the cfg reader's double arithmetic), not 28
    assert run_resize(np.zeros((1, 3, 24, 24), np.float32), 1.2, 20).shape == (1, 3, 20, 20)
    with pytest.raises(ValueError, match=r"layer 'rs': outputs: expected channels\*floor\(img_size/scale\)\^2 = 1200"):
        run_resize(np.zeros((1, 3, 24, 24), np.float32), 1.2, 28)


# ---------------------------------------------------------------------------
# rgb2yuv, rgb2lab (§3.21)

COLOURS = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [0.2, 0.4, 0.6],
                     [0.005, 0.005, 0.005]], np.float32)


def convert(kind: str, rgb: np.ndarray, center: bool = False) -> np.ndarray:
    """The colours as 1x1 images (one case each): (cases, 3) in and out."""
    n = len(rgb)
    fields = {"center": center} if kind == "rgb2lab" else {}
    net = _core.CpuNet([spec("data", "data", [], 3, data_idx=0),
                        spec("c", kind, [0], 3, channels=3, img_size=1, **fields)], n, 0)
    net.set_data(0, np.ascontiguousarray(rgb.T))
    net.forward("test")
    return net.array("acts", "c").T.copy()


def test_rgb2yuv_of_known_colours():
    hand = np.array([
        [0, 0, 0],
        [1, 0, 0],                                       # white: the rows of Y, U, V sum to 1, 0, 0
        [0.2126, -0.09991, 0.615],                       # red: the first column
        [0.7152, -0.33609, -0.55861],                    # green
        [0.0722, 0.436, -0.05639],                       # blue
        [0.5, 0, 0],                                     # grey
        [0.2126 * 0.2 + 0.7152 * 0.4 + 0.0722 * 0.6,    # 0.04252 + 0.28608 + 0.04332 = 0.37192
         -0.09991 * 0.2 - 0.33609 * 0.4 + 0.436 * 0.6,  # -0.019982 - 0.134436 + 0.2616 = 0.107182
         0.615 * 0.2 - 0.55861 * 0.4 - 0.05639 * 0.6],  # 0.123 - 0.223444 - 0.033834 = -0.134278
        [0.005, 0, 0]])
    assert_close(convert("rgb2yuv", COLOURS), hand, atol=3e-7, what="rgb2yuv")


def lab_hand(r: float, g: float, b: float, center: bool) -> list[float]:
    def h(t: float) -> float:
        return t ** 0.3333 if t > 0.0088564517 else 7.787037 * t + 0.13793103
    x, y, z = 0.49 * r + 0.31 * g + 0.2 * b, 0.17697 * r + 0.8124 * g + 0.01063 * b, 0.01 * g + 0.99 * b
    return [116 * h(y) - 16 - (50 if center else 0), 500 * (h(x) - h(y)), 200 * (h(y) - h(z))]


@pytest.mark.parametrize("center", [False, True])
def test_rgb2lab_of_known_colours(center):
    out = convert("rgb2lab", COLOURS, center)
    shift = 50 if center else 0
    # white: X = Y = Z = 1 (each row of the matrix sums to 1), h = 1: L = 100, a = b = 0
    assert_close(out[1], [100 - shift, 0, 0], atol=2e-5, what="white")
    # black: h(0) = 0.13793103 everywhere, L = 116 * 0.13793103 - 16 = -5.2e-7, a = b = 0
    assert_close(out[0], [116 * 0.13793103 - 16 - shift, 0, 0], atol=5e-6, what="black")
    # grey 0.5: L = 116 * 0.5^0.3333 - 16 = 76.0714..., the exponent 0.3333 as written:
    # with a true cube root it would be 76.0693
    grey = 116 * 0.5 ** 0.3333 - 16 - shift
    assert abs(grey - (116 * 0.5 ** (1 / 3) - 16 - shift)) > 2e-3
    assert_close(out[5, 0], grey, atol=2e-5, what="grey L")
    # the rest, and the linear branch of the dark grey (t = 0.005 < 0.0088564517)
    hand = np.array([lab_hand(*map(float, c), center) for c in COLOURS])
    assert_close(out, hand, atol=6e-5, rtol=1e-6, what="rgb2lab")


# ---------------------------------------------------------------------------
# rscale (§3.22)

S7, TGT = 7, 5  # maxScale 1.4: rescaled sides 5, 6, 7 (min(floor(5*1.4), 7) = 7): s in 0..2


def rscale_net(n: int, seed: int = 0, side: int = S7, tgt: int = TGT, max_scale: float = 1.4, c: int = 2):
    return _core.CpuNet([spec("data", "data", [], c * side * side, data_idx=0),
                         spec("rsc", "rscale", [0], c * tgt * tgt, channels=c, img_size=side, tgt_size=tgt,
                              max_scale=max_scale),
                         spec("rs", "resize", [0], c * TGT * TGT, channels=c, img_size=side, scale=1.4)], n, seed)


def test_rscale_with_injected_draws_crops_and_rescales():
    x = np.random.default_rng(2).standard_normal((3, 2, S7, S7)).astype(np.float32)
    net = rscale_net(3)
    net.set_data(0, images(x))
    net.inject_masks = True

    def run(draw):
        net.upload("draws", "rsc", np.array([draw], np.float32), 0)
        net.forward("train")
        return unimages(net.array("acts", "rsc"), 2, TGT)

    # s = 2: R = 7 = S, no resize, the crop at (1, 2)
    assert_close(run([2, 1.0, 1, 2]), x[..., 1:6, 2:7], what="crop")
    # s = 0, factor 1.4: R = 5, the resize with scale 1.4 itself (resize layer 'rs'), bit for bit
    assert_close(run([0, F32(1.4), 0, 0]), unimages(net.array("acts", "rs"), 2, TGT), what="rescale to 5")
    # s = 1, factor 7/6.5: R = 6, cropped at (1, 0)
    factor = F32(7 / 6.5)
    assert_close(run([1, factor, 1, 0]), resize_reference(x.astype(np.float64), 6, factor, range(1, 6), range(0, 5)),
                 atol=2e-6, rtol=1e-6, what="rescale to 6, crop (1, 0)")
    port = port_ops.rscale(torch.from_numpy(x), TGT, [1, float(factor), 1, 0]).numpy()
    assert_close(port, run([1, factor, 1, 0]), what="port rscale vs engine")
    # injected draws are checked before they are used
    for bad, why in [([3, 1.0, 0, 0], r"the scale index must be a whole number in 0..2"),
                     ([1, 0.0, 0, 0], r"the scale factor must be a positive finite number"),
                     ([1, 1.1, 2, 0], r"the crop offsets must be whole numbers in 0..1")]:
        net.upload("draws", "rsc", np.array([bad], np.float32), 0)
        with pytest.raises(ValueError, match=rf"layer 'rsc': draws: {why}"):
            net.forward("train")


def test_rscale_draws_follow_their_law_and_replay_from_the_seed():
    x = np.zeros((2 * S7 * S7, 1), np.float32)

    def draws(seed: int, count: int) -> np.ndarray:
        net = rscale_net(1, seed)
        net.set_data(0, x)
        out = []
        for _ in range(count):
            net.forward("train")
            out.append(net.array("draws", "rsc").reshape(-1).copy())
        return np.array(out)

    d = draws(7, 3000)
    assert np.array_equal(d[:50], draws(7, 50)) and not np.array_equal(d[:50], draws(8, 50))
    s = d[:, 0].astype(int)
    # P(s) = (s+1)^2 / 14: 1/14, 4/14, 9/14; each count within 4 standard deviations
    for k, p in enumerate([1 / 14, 4 / 14, 9 / 14]):
        count, mean = (s == k).sum(), 3000 * p
        assert abs(count - mean) < 4 * math.sqrt(3000 * p * (1 - p)), (k, count, mean)
    for k in range(3):
        rows = d[s == k]
        rescaled = TGT + k
        lo, hi = max(1.0, S7 / (rescaled + 1)), S7 / rescaled
        assert (rows[:, 1] >= F32(lo)).all() and (rows[:, 1] <= F32(hi)).all()
        for col in (2, 3):  # offsets uniform on 0..s: all appear, none outside
            assert set(rows[:, col].astype(int)) == set(range(k + 1))
    # the port maps four uniforms the same way (its own draws follow the same law)
    assert port_ops.rscale_draw(S7, TGT, 1.4, [0.0, 0.0, 0.0, 0.0]) == (0, float(F32(7 / 6)), 0, 0)
    assert port_ops.rscale_draw(S7, TGT, 1.4, [0.999, 0.5, 0.999, 0.4])[::2] == (2, 2)


def test_rscale_test_pass_copies_its_input_as_written():
    # §13 item 5: a test pass copies the input unchanged; the output has the input's shape
    # only when imgSize == tgtSize (here maxScale 1.5 but S = tgt = 6: one scale, R = S)
    x = np.random.default_rng(3).standard_normal((2 * 36, 3)).astype(np.float32)
    net = _core.CpuNet([spec("data", "data", [], 72, data_idx=0),
                        spec("rsc", "rscale", [0], 72, channels=2, img_size=6, tgt_size=6, max_scale=1.5)], 3, 0)
    net.set_data(0, x)
    net.forward("test")
    assert np.array_equal(net.array("acts", "rsc"), x)
    # with S != tgt the release handed a C*S^2 matrix to a layer expecting C*tgt^2: refused by name
    net = rscale_net(3)
    net.set_data(0, np.zeros((2 * 49, 3), np.float32))
    with pytest.raises(ValueError, match=r"layer 'rsc': an rscale test pass copies its input unchanged"):
        net.forward("test")
    net.forward("gradient-check")  # PASS_GC does not match the bit mask: it draws, as training


def test_the_port_rscale_copies_at_test_time_and_replays_draws(tmp_path):
    from alexnet_replay.modernize import port
    from alexnet_replay.original.layers import DataProfile, load_network

    layers = tmp_path / "rs.cfg"
    layers.write_text("[data]\ntype=data\ndataIdx=0\n\n[rsc]\ntype=rscale\ninputs=data\nchannels=3\nmaxScale=1.4\n"
                      "tgtSize=5\ngpu=0\n\n[sq]\ntype=cost.sum2\ninputs=rsc\n")
    config = load_network(layers, DataProfile("t", "3x7x7", (3, 7, 7)))
    module = port.build_module(config, init=False)
    x = torch.randn(2, 3, 7, 7)
    with pytest.raises(ReplayError, match=r"layer 'rsc': an rscale test pass copies its input unchanged"):
        module([x], train=False)
    module.generator = torch.Generator().manual_seed(11)
    out = module([x], train=True)
    draw = module.last_masks["rsc"]
    again = module([x], train=True, masks={"rsc": draw})
    assert torch.equal(out["rsc"], again["rsc"]) and torch.equal(module.last_masks["rsc"], draw)
    # the engine replays the port's draw (port.masks_to_engine -> EngineNet.set_draws): the same output
    from alexnet_replay.engine import EngineNet

    engine = EngineNet(config, 2, seed=0)
    port.masks_to_engine(module, engine, masks={"rsc": draw})
    engine.forward([images(x.numpy())], train=True)
    assert np.array_equal(engine.draws("rsc"), draw.numpy())
    assert np.array_equal(engine.acts("rsc"), images(out["rsc"].numpy()))
    with pytest.raises(ReplayError, match=r"rscale draws .* are not a draw of this layer"):
        module([x], train=True, masks={"rsc": torch.tensor([5.0, 1.0, 0.0, 0.0])})


# ---------------------------------------------------------------------------
# No backward: nothing that learns below (§3.20–§3.22)

@pytest.mark.parametrize("kind,fields,outputs", [
    ("resize", {"scale": 2.0}, 3 * 4 * 4), ("rgb2yuv", {}, 3 * 64), ("rgb2lab", {}, 3 * 64),
    ("rscale", {"tgt_size": 5, "max_scale": 1.2}, 3 * 25)])
def test_layers_without_a_backward_refuse_a_learning_layer_below(kind, fields, outputs):
    def specs(eps: float):
        return [spec("data", "data", [], 192, data_idx=0), identity_fc("fc", [0], 192, eps),
                spec("t", kind, [1], outputs, channels=3, img_size=8, **fields),
                spec("sq", "cost.sum2", [2], 0)]

    with pytest.raises(ValueError, match=rf"layer 't': inputs: a {kind} layer has no backward \(engine.md "
                                         r"§3.2[012]\), but layer 'fc' below it learns"):
        _core.CpuNet(specs(0.01), 2, 0)
    net = _core.CpuNet(specs(0.0), 2, 0)  # frozen below: nothing would need the gradient
    net.set_data(0, np.ones((192, 2), np.float32))
    net.forward("train")
    net.backward()


# ---------------------------------------------------------------------------
# cost.tica (§3.29)

def tica_net(x: np.ndarray, size: int, coeff: float, sum2: str | None = None):
    """data -> identity fc -> cost.tica (and a sum2 on the fc, after or before the tica).
    Returns (costs, the gradient the fc received)."""
    n, c, s, _ = x.shape
    d = c * s * s
    tica = spec("tica", "cost.tica", [1], 0, channels=c, img_size=s, size_x=size, coeff=coeff)
    sq = spec("sq", "cost.sum2", [1], 0, coeff=0.125)
    layers = [spec("data", "data", [], d, data_idx=0), identity_fc("fc", [0], d)]
    layers += {None: [tica], "after": [tica, sq], "before": [sq, tica]}[sum2]
    net = _core.CpuNet(layers, n, 0)
    set_identity(net, "fc", d)
    net.set_data(0, images(x))
    net.forward("train")
    net.backward()
    return net.costs(), unimages(net.array("acts_grad", "fc"), c, s)


def window_sums(v: np.ndarray, size: int) -> np.ndarray:
    """Sum over rnorm's clipped window [p - size//2, p - size//2 + size) per axis; NCHW, float64."""
    s = v.shape[-1]
    out = np.zeros_like(v)
    for y in range(s):
        for x in range(s):
            y0, x0 = max(y - size // 2, 0), max(x - size // 2, 0)
            out[..., y, x] = v[..., y0:y - size // 2 + size, x0:x - size // 2 + size].sum(axis=(-1, -2))
    return out


def test_tica_on_a_3x3_image_by_hand():
    # Channel 0 all ones, 3x3 windows: a corner's window holds 4 pixels, an edge's 6, the
    # centre's 9, so A = 1/(0.001 + sqrt(n)): A_c = 1/2.001, A_e = 1/(0.001 + sqrt 6), A_m = 1/3.001.
    a_c, a_e, a_m = 1 / 2.001, 1 / (0.001 + math.sqrt(6)), 1 / 3.001
    x = np.zeros((1, 2, 3, 3), np.float32)
    x[0, 0] = 1.0
    x[0, 1] = np.arange(9).reshape(3, 3) - 4  # channel 1: -4 .. 4, A worked out in float64 below
    costs, grad = tica_net(x, 3, coeff=0.5)
    sums = window_sums(x.astype(np.float64) ** 2, 3)
    a1 = 1 / (0.001 + np.sqrt(sums[0, 1]))
    assert_close(costs["tica"], [4 * a_c + 4 * a_e + a_m + a1.sum()], rtol=1e-6, what="tica cost = sum A")
    # Overwrite path: dX[p] = -coeff * X[p] * sum_{q in W(p)} A[q]. For the ones: the corner's
    # window holds a corner, two edges and the centre; an edge's two corners, three edges and
    # the centre; the centre's everything.
    corner, edge, centre = a_c + 2 * a_e + a_m, 2 * a_c + 3 * a_e + a_m, 4 * a_c + 4 * a_e + a_m
    hand = -0.5 * np.array([[corner, edge, corner], [edge, centre, edge], [corner, edge, corner]])
    assert_close(grad[0, 0], hand, rtol=1e-6, what="tica gradient, channel of ones")
    assert_close(grad[0, 1], -0.5 * x[0, 1] * window_sums(a1[None], 3)[0], atol=1e-7, rtol=1e-6,
                 what="tica gradient, channel 1")


def tica_objective(x: np.ndarray, size: int) -> float:
    """The function whose gradient the overwrite path is, for odd sizes:
    sum_q [sqrt(S_q) - 0.001 log(0.001 + sqrt(S_q))], S_q the window sum of squares
    (d/dS of it is 1/(2 (0.001 + sqrt S)) = A/2)."""
    r = np.sqrt(window_sums(x ** 2, size))
    return float((r - 0.001 * np.log(0.001 + r)).sum())


@pytest.mark.parametrize("size", [1, 3, 5, 2, 4])
def test_tica_gradient_against_finite_differences(size):
    rng = np.random.default_rng(size)
    x = (rng.standard_normal((3, 2, 7, 7)) + 0.5).astype(np.float32)
    coeff = 0.5
    _, grad = tica_net(x, size, coeff)
    x64 = x.astype(np.float64)
    num = np.zeros_like(x64)
    h = 1e-5
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x64)
        e[idx] = h
        num[idx] = (tica_objective(x64 + e, size) - tica_objective(x64 - e, size)) / (2 * h)
    expected = -coeff * num  # the engine holds -dE/dx, E = coeff * objective
    if size % 2:
        assert_close(grad, expected, atol=1e-5 * np.abs(expected).max(), rtol=1e-4, what=f"tica size {size}")
    else:  # as written: W(p) is not its own adjoint for even sizes, so this is no gradient
        rel = np.abs(grad - expected).max() / np.abs(expected).max()
        assert rel > 0.05, rel


@pytest.mark.parametrize("order", ["after", "before"])
def test_tica_accumulate_path_uses_the_square_root(order):
    # §13 item 3, as written: the backward reaches the layers in reverse order. With the sum2
    # after the tica, the sum2 writes the gradient first and the tica adds
    # -coeff*X*sqrt(sum A); with the sum2 before, the tica writes -coeff*X*sum A first.
    x = np.random.default_rng(4).standard_normal((3, 2, 5, 5)).astype(np.float32)
    _, grad = tica_net(x, 3, coeff=0.5, sum2=order)
    x64 = x.astype(np.float64)
    a = 1 / (0.001 + np.sqrt(window_sums(x64 ** 2, 3)))
    s = window_sums(a, 3)
    tica = -0.5 * x64 * (np.sqrt(s) if order == "after" else s)
    assert_close(grad, tica - 2 * 0.125 * x64, atol=1e-6, rtol=1e-5, what=f"tica with a sum2 {order}")


# ---------------------------------------------------------------------------
# cost.msm (§3.30)

def brute_force(e: np.ndarray, k: int, label: int) -> tuple[np.ndarray, np.ndarray]:
    """Over every subset S of size k: P(S) ~ exp(sum_{j in S} e_j) (float64). Returns the
    marginals p_i = P(i in S) and q_i = P(i in S | label in S)."""
    d = len(e)
    subsets = list(itertools.combinations(range(d), k))
    w = np.array([math.exp(sum(e[j] for j in s) - k * e.max()) for s in subsets])
    p = np.array([sum(w[t] for t, s in enumerate(subsets) if i in s) for i in range(d)]) / w.sum()
    with_label = [t for t, s in enumerate(subsets) if label in s]
    q = np.array([sum(w[t] for t in with_label if i in subsets[t]) for i in range(d)]) / w[with_label].sum()
    return p, q


def msm_net(e: np.ndarray, labels: np.ndarray, k: int, coeff: float):
    """data -> identity fc (the energies) -> cost.msm; e (D, N). Returns (costs, fc's gradient)."""
    d, n = e.shape
    net = _core.CpuNet([spec("data", "data", [], d, data_idx=0), spec("labels", "data", [], 1, data_idx=1),
                        identity_fc("fc", [0], d),
                        spec("msm", "cost.msm", [1, 2], 0, set_size=k, coeff=coeff)], n, 0)
    set_identity(net, "fc", d)
    net.set_data(0, np.ascontiguousarray(e, dtype=np.float32))
    net.set_data(1, np.ascontiguousarray(labels.reshape(1, -1), dtype=np.float32))
    net.forward("train")
    net.backward()
    return net.costs()["msm"], net.array("acts_grad", "fc").copy()


def test_msm_against_every_subset_for_2_of_5():
    rng = np.random.default_rng(5)
    e = (0.5 * rng.standard_normal((5, 7))).astype(np.float32)  # gaps below 5: the exact logadd
    labels = rng.integers(0, 5, 7)
    costs, grad = msm_net(e, labels, 2, coeff=0.75)
    brute = [brute_force(e[:, n].astype(np.float64), 2, labels[n]) for n in range(7)]
    nll = -sum(math.log(p[labels[n]]) for n, (p, _) in enumerate(brute))
    assert_close(costs[0], nll, rtol=1e-6, what="msm -sum log p_label")
    expected = np.stack([0.75 * (q - p) for p, q in brute], axis=1)
    assert_close(grad, expected, atol=1e-7, rtol=1e-6, what="msm gradient coeff*(q - p)")
    # the port's lattice gives every marginal
    p_port = port_ops.msm_marginals(e.T, 2)
    assert_close(p_port, np.stack([p for p, _ in brute]), rtol=1e-12, what="port marginals")
    assert_close(p_port.sum(axis=1), np.full(7, 2.0), rtol=1e-12, what="marginals sum to k")


def test_msm_approximate_logadd_on_wide_energies():
    # Energies 8 apart put the lattice's gaps between 5 and 15 and beyond: the release's
    # approximation (max + exp(-gap), then max) moves p by up to ~1e-5 from the exact
    # value; the engine and the port's lattice agree with each other to rounding.
    e = np.array([[0.0, 8.0, -7.5, 16.0, 3.0], [1.0, -9.0, 12.0, 0.5, -4.0]], np.float32).T  # (5 classes, 2 cases)
    labels = np.array([2, 0])
    costs, grad = msm_net(e, labels, 2, coeff=1.0)
    p = port_ops.msm_marginals(e.T, 2)
    q = port_ops.msm_marginals(e.T, 2, labels)
    assert_close(costs[0], -sum(math.log(float(F32(p[n, labels[n]]))) for n in range(2)), rtol=1e-6,
                 what="engine vs port lattice, cost")
    assert_close(grad, (q - p).T, atol=1e-7, rtol=1e-6, what="engine vs port lattice, gradient")
    brute = [brute_force(e[:, n].astype(np.float64), 2, labels[n]) for n in range(2)]
    exact = np.stack([b[0] for b in brute])
    assert_close(p, exact, atol=5e-5, rtol=5e-5, what="approximate vs exact marginals")
    assert np.abs(p - exact).max() > 1e-9  # the approximation is there to see


def test_msm_errors_use_the_energies_with_logregs_tie_rules():
    # k = 2, five classes, one case per column:
    #   0: the label (class 1) is the unique max            -> top-1 credit 1,   top-2 credit 1
    #   1: the label ties with class 3 for the max          -> top-1 credit 1/2, top-2 credit 1
    #   2: two classes above the label                      -> top-1 0,          top-2 0 (no slot left)
    #   3: one above, the label tied with two others        -> top-1 0,          top-2 1/3 (1 slot, 3 equal)
    e = np.array([[0, 0, 5, 9],
                  [3, 4, 1, 2],
                  [1, 1, 4, 2],
                  [2, 4, 0, 2],
                  [-1, 0, 0, 1]], np.float32)
    labels = np.array([1, 1, 1, 1])
    costs, _ = msm_net(e, labels, 2, coeff=1.0)
    assert costs[1] == pytest.approx(4 - (1 + 0.5)) and costs[2] == pytest.approx(4 - (1 + 1 + 1 / 3))


def test_msm_gradient_against_finite_differences():
    rng = np.random.default_rng(6)
    e = rng.standard_normal((6, 5)).astype(np.float32)
    labels = np.array([0, 5, 2, 2, 3])
    coeff = 0.5
    _, grad = msm_net(e, labels, 3, coeff)

    def objective(v: np.ndarray) -> float:  # -sum log P(label in S), exact (every subset)
        return -sum(math.log(brute_force(v[:, n], 3, labels[n])[0][labels[n]]) for n in range(v.shape[1]))

    e64, h = e.astype(np.float64), 1e-5
    num = np.zeros_like(e64)
    for idx in np.ndindex(e.shape):
        d = np.zeros_like(e64)
        d[idx] = h
        num[idx] = (objective(e64 + d) - objective(e64 - d)) / (2 * h)
    assert_close(grad, -coeff * num, atol=1e-6, rtol=1e-4, what="msm gradient vs finite differences")
    # and the release's own check (§8) on the engine's reported cost: |num - ana| / |ana| < 0.02
    step = 0.01
    own = np.zeros_like(e64)
    for idx in np.ndindex(e.shape):
        d = np.zeros(e.shape, np.float32)
        d[idx] = step
        up, down = msm_net(e + d, labels, 3, coeff)[0][0], msm_net(e - d, labels, 3, coeff)[0][0]
        own[idx] = coeff * (up - down) / (2 * step)
    assert np.linalg.norm(-own - grad) / np.linalg.norm(grad) < 0.02
