"""Reconstructions of release behaviour whose kernels were never published (docs/fidelity.md):
pool=rand without doMax (engine.md §3.6) and the half-precision transfers of quantF/quantB (§6).

* the kernels against references written from the choices fidelity.md states: the pick of
  a pool=rand window by hand on an awkward clipped geometry, and a numpy loop; the half
  rounding bit for bit against numpy's float16 (IEEE round to nearest even), edges included;
* the backward of pool=rand (max-undo) against float64 finite differences with fixed picks,
  and the tie rule of §3.6 (every equal pixel gets the full gradient);
* the nets: picks drawn from the seeded generator in every pass type, injected and checked;
  quant layers inserted between a producer and its consumers on another gpu only, rounding
  forward and backward; engine against port with the parity suite on small project nets;
* the marks: show-net, the catalog, the parity report and the training log name the layers,
  on project nets and on the release's layers-178 and layer-params-170-quant.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from alexnet_replay import _core
from alexnet_replay.engine import EngineNet, cuda_unavailable_reason
from alexnet_replay.harness.driver import reconstruction_lines
from alexnet_replay.original.reconstructions import reconstructions, transfer_name, with_transfers
from alexnet_replay.original.shownet import load as load_config
from alexnet_replay.original.shownet import network_dict, network_table
from alexnet_replay.testing import assert_close

F32 = np.float32
BIT_EXACT = dict(atol=0.0, rtol=0.0)
FD_TOL = dict(atol=1e-5, rtol=1e-5)


def write_cfg(path, sections: str) -> None:
    """'name: key=value key=value' lines as cfg sections."""
    out = []
    for line in textwrap.dedent(sections).strip().splitlines():
        name, _, keys = line.partition(":")
        out.append(f"[{name.strip()}]\n" + "\n".join(keys.split()) + "\n")
    path.write_text("\n".join(out))


# ---------------------------------------------------------------------------
# Half rounding (§6): the quant kernel against numpy's float16


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, F32).view(np.uint32)


def _half_ref(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return x.astype(np.float16).astype(F32)


def test_half_rounding_matches_ieee_round_to_nearest_even_bit_for_bit():
    tiny = 2.0 ** -24  # the smallest subnormal half
    edges = [0.0, -0.0, 1.0, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -11 + 2.0 ** -23,  # ties to even
             65504.0, 65519.996, 65520.0, -65520.0, 1e6, 2.0 ** -14, 2.0 ** -14 - 2.0 ** -26,  # range, normal edge
             tiny, tiny / 2, 3 * tiny / 2, 5 * tiny / 2, tiny / 2 + 2.0 ** -40, 1e-30, -3 * tiny / 2,
             np.inf, -np.inf, 0.1, -2.5e-5, 3.14159265]
    r = np.random.default_rng(7)
    x = np.concatenate([np.array(edges, F32), r.standard_normal(9985).astype(F32) * F32(10.0) ** r.integers(
        -9, 6, 9985).astype(F32)]).reshape(13, -1)  # 13 x 770
    y = np.full_like(x, np.nan)
    _core.quant_copy(x, y, True)
    assert np.array_equal(_bits(y), _bits(_half_ref(x)))
    # by hand: ties go to the even neighbour, the range ends at 65504, subnormals are kept
    assert y.reshape(-1)[[3, 4, 5]].tolist() == [1.0, 1.0 + 2.0 ** -9, 1.0 + 2.0 ** -10]
    assert y.reshape(-1)[[6, 7, 8]].tolist() == [65504.0, 65504.0, np.inf]
    assert y.reshape(-1)[[13, 14, 15, 16, 17]].tolist() == [tiny, 0.0, 2 * tiny, 2 * tiny, tiny]
    nan = np.array([[np.nan, 1.0]], F32)
    out = np.zeros_like(nan)
    _core.quant_copy(nan, out, True)
    assert np.isnan(out[0, 0]) and out[0, 1] == 1.0


def test_quant_copy_without_half_copies_and_accumulates():
    x = np.random.default_rng(1).standard_normal((7, 13)).astype(F32)
    y = np.full_like(x, 2.0)
    _core.quant_copy(x, y, False, 1.0)  # scale_targets 1: added to what is there (§1.4)
    assert_close(y, x + F32(2.0), **BIT_EXACT, what="copy added to 2")
    _core.quant_copy(x, y, True)
    assert np.array_equal(_bits(y), _bits(_half_ref(x)))


# ---------------------------------------------------------------------------
# pool=rand without doMax (§3.6): the kernel


def _spans(S, size, start, stride, OX):
    return [(max(start + o * stride, 0), min(start + o * stride + size, S)) for o in range(OX)]


def ref_rand_pool(x, picks, C, S, size, start, stride, OX, dtype=F32):
    """The pixel at position k of each clipped window, raster order (docs/fidelity.md)."""
    N = x.shape[1]
    img = x.reshape(C, S, S, N)
    k = picks.reshape(C, OX, OX, N).astype(int)
    y = np.empty((C, OX, OX, N), dtype)
    sp = _spans(S, size, start, stride, OX)
    for c in range(C):
        for oy, (y0, _) in enumerate(sp):
            for ox, (x0, x1) in enumerate(sp):
                for n in range(N):
                    w = x1 - x0
                    y[c, oy, ox, n] = img[c, y0 + k[c, oy, ox, n] // w, x0 + k[c, oy, ox, n] % w, n]
    return y.reshape(C * OX * OX, N)


def _areas(C, S, size, start, stride, OX, N):
    sp = _spans(S, size, start, stride, OX)
    a = np.array([[(y1 - y0) * (x1 - x0) for x0, x1 in sp] for y0, y1 in sp])
    return np.broadcast_to(a[None, :, :, None], (C, OX, OX, N)).reshape(C * OX * OX, N)


def rand_f(x, picks, C, S, size, start, stride, OX):
    y = np.full((C * OX * OX, x.shape[1]), np.nan, F32)
    _core.pool_rand_fprop(x, picks, y, C, S, size, start, stride, OX)
    return y


def test_rand_pool_by_hand_on_clipped_windows():
    # 3x3 image, windows of 2 at stride 2: rows/cols [0, 2) and [2, 3) (clipped), areas 4, 2, 2, 1
    x = np.arange(9, dtype=F32).reshape(9, 1)
    picks = np.array([[3.0], [1.0], [1.0], [0.0]], F32)
    y = rand_f(x, picks, 1, 3, 2, 0, 2, 2)
    # (0,0): k=3 -> pixel (1,1) = 4; (0,1): width 1, k=1 -> (1,2) = 5; (1,0): k=1 -> (2,1) = 7; (1,1): (2,2) = 8
    assert y[:, 0].tolist() == [4.0, 5.0, 7.0, 8.0]
    y0 = rand_f(x, np.zeros_like(picks), 1, 3, 2, 0, 2, 2)
    assert y0[:, 0].tolist() == [0.0, 2.0, 6.0, 8.0]  # k = 0: each window's top-left in-image pixel


def test_rand_pool_matches_the_reference_on_an_awkward_geometry():
    C, S, size, start, stride, N = 2, 7, 3, -1, 2, 5
    OX = 4  # windows start at -1, 1, 3, 5: the first and last are clipped
    r = np.random.default_rng(11)
    x = r.standard_normal((C * S * S, N)).astype(F32)
    areas = _areas(C, S, size, start, stride, OX, N)
    picks = np.floor(r.random(areas.shape) * areas).astype(F32)
    assert_close(rand_f(x, picks, C, S, size, start, stride, OX), ref_rand_pool(x, picks, C, S, size, start, stride,
                                                                                   OX), **BIT_EXACT, what="rand pool")
    # the engine maps a uniform draw as floor(u * area), at most area - 1
    assert [_core.pool_rand_pick(u, 6) for u in (0.0, 0.1666, 0.1667, 0.5, 0.9999999)] == [0, 0, 1, 3, 5]


@pytest.mark.parametrize("bad", [4.0, -1.0, 0.5])
def test_rand_pool_refuses_picks_outside_their_window(bad):
    x = np.arange(9, dtype=F32).reshape(9, 1)
    picks = np.array([[bad], [0.0], [0.0], [0.0]], F32)  # window (0,0) has 4 pixels: 0..3
    with pytest.raises(ValueError, match=r"picks: output 0, case 0 picks .* not a position 0..3 of its window"):
        rand_f(x, picks, 1, 3, 2, 0, 2, 2)


def _rand_backward(x, picks, dy, C, S, size, start, stride, OX):
    y = rand_f(x, picks, C, S, size, start, stride, OX)
    dx = np.full_like(x, np.nan)
    _core.pool_bprop(x, y, dy, dx, "rand", C, S, size, start, stride, OX)
    return dx


def test_rand_pool_backward_is_the_gradient_of_the_picked_pixels():
    """Finite differences of E = sum dY * Y(x) with the picks held fixed, in float64: distinct
    inputs, so max-undo's [x == y] holds at the picked pixel only; overlapping windows add."""
    C, S, size, start, stride, N = 2, 6, 3, 0, 2, 3
    OX = 3  # windows at 0, 2, 4 (the last clipped to 2), overlapping by one
    r = np.random.default_rng(5)
    x = r.standard_normal((C * S * S, N)).astype(F32)
    areas = _areas(C, S, size, start, stride, OX, N)
    picks = np.floor(r.random(areas.shape) * areas).astype(F32)
    dy = r.standard_normal(areas.shape).astype(F32)
    dx = _rand_backward(x, picks, dy, C, S, size, start, stride, OX)

    def energy(xv):
        return float(np.sum(dy.astype(np.float64) * ref_rand_pool(xv, picks, C, S, size, start, stride, OX,
                                                                    np.float64)))

    fd = np.zeros(x.size)
    h = 1e-3  # the forward is a selection: exact for any step that changes no value's order
    flat = x.reshape(-1).astype(np.float64)
    for i in range(flat.size):
        plus, minus = flat.copy(), flat.copy()
        plus[i] += h
        minus[i] -= h
        fd[i] = (energy(plus.reshape(x.shape)) - energy(minus.reshape(x.shape))) / (2 * h)
    assert_close(dx, fd.reshape(x.shape).astype(F32), **FD_TOL, what="rand pool backward vs finite differences")
    assert np.count_nonzero(dx) > 0.8 * picks.size  # a real check: the 54 picked pixels (a few twice) get one


def test_rand_pool_backward_duplicates_the_gradient_to_ties():
    """§3.6 max-undo: every pixel of the window equal to the chosen value gets the full dY (as
    the release's convLocalMaxUndo), which is not the gradient of the pick when values tie."""
    x = np.array([[1.0], [2.0], [2.0], [0.5]], F32)  # one 2x2 window; pick k = 1 (value 2.0)
    dx = _rand_backward(x, np.array([[1.0]], F32), np.array([[3.0]], F32), 1, 2, 2, 0, 2, 1)
    assert dx[:, 0].tolist() == [0.0, 3.0, 3.0, 0.0]


# ---------------------------------------------------------------------------
# Project-written nets (not release files)

RAND_NET = """
data: type=data dataIdx=0
labels: type=data dataIdx=1
conv: type=conv inputs=data channels=3 filters=16 filterSize=3 padding=1 initW=0.1 partialSum=0 gpu=0
pool: type=pool pool=rand inputs=conv channels=16 sizeX=3 stride=2 neuron=relu
fc: type=fc inputs=pool outputs=10 initW=0.05
probs: type=softmax inputs=fc
logprob: type=cost.logreg inputs=labels,probs gpu=0
"""
RAND_PARAMS = """
conv: epsW=0.01 epsB=0.02 momW=0.9 momB=0.9 wc=0.0005
pool: doMax=0
fc: epsW=0.01 epsB=0.02 momW=0.9 momB=0.9 wc=0.0005
logprob: coeff=1
"""

# Two towers: pool1a (gpu 0) feeds fca (gpu 0) and fcb (gpu 1); pool1b (gpu 1) feeds fcb only.
QUANT_NET = """
data: type=data dataIdx=0
labels: type=data dataIdx=1
conva: type=conv inputs=data channels=3 filters=16 filterSize=3 padding=1 initW=0.1 partialSum=0 gpu=0
convb: type=conv inputs=data channels=3 filters=16 filterSize=3 padding=1 initW=0.1 partialSum=0 gpu=1
pool1a: type=pool pool=max inputs=conva channels=16 sizeX=3 stride=2
pool1b: type=pool pool=max inputs=convb channels=16 sizeX=3 stride=2
fca: type=fc inputs=pool1a outputs=10 initW=0.05 gpu=0
fcb: type=fc inputs=pool1a,pool1b outputs=10 initW=0.05,0.05 gpu=1
sum: type=eltsum inputs=fca,fcb coeffs=1,1 gpu=0
probs: type=softmax inputs=sum
logprob: type=cost.logreg inputs=labels,probs gpu=0
"""
QUANT_PARAMS = """
conva: epsW=0.01 epsB=0.02 momW=0.9 momB=0.9 wc=0.0005
convb: epsW=0.01 epsB=0.02 momW=0.9 momB=0.9 wc=0.0005
pool1a: quantF=half quantB=half
pool1b: quantF=half quantB=half
fca: epsW=0.01 epsB=0.02 momW=0.9 momB=0.9 wc=0.0005
fcb: epsW=0.01,0.01 epsB=0.02 momW=0.9,0.9 momB=0.9 wc=0.0005,0.0005
logprob: coeff=1
"""


def _net_files(tmp_path, layers: str, params: str, name: str):
    lp, pp = tmp_path / f"layers-{name}.cfg", tmp_path / f"layer-params-{name}.cfg"
    write_cfg(lp, layers)
    write_cfg(pp, params)
    return lp, pp


@pytest.fixture
def rand_config(tmp_path):
    lp, pp = _net_files(tmp_path, RAND_NET, RAND_PARAMS, "rand")
    return load_config(lp, pp, image_size=(3, 9, 9))[0]


@pytest.fixture
def quant_config(tmp_path):
    lp, pp = _net_files(tmp_path, QUANT_NET, QUANT_PARAMS, "quant")
    return load_config(lp, pp, image_size=(3, 9, 9))[0]


def _batch(config, n: int, seed: int):
    r = np.random.default_rng(seed)
    x = r.standard_normal((int(np.prod(config.profile.image)), n)).astype(F32)
    return [x, r.integers(0, 10, (1, n)).astype(F32)]


def test_rand_pool_draws_in_every_pass_from_the_seeded_generator(rand_config):
    net = EngineNet(rand_config, 5, seed=4)
    data = _batch(rand_config, 5, 1)
    areas = _areas(16, 9, 3, 0, 2, 4, 5)  # 9x9 at 3/2: windows at 0, 2, 4, 6, all of 3x3 pixels
    drawn = []
    for pass_type in ("train", "test", "gradient-check"):
        net.forward(data, pass_type=pass_type)
        picks = net.mask("pool").copy()
        assert picks.shape == (16 * 16, 5)
        assert np.all((picks >= 0) & (picks < areas) & (picks == np.floor(picks)))
        conv = net.acts("conv")
        assert_close(net.acts("pool"), ref_rand_pool(conv, picks, 16, 9, 3, 0, 2, 4), **BIT_EXACT,
                     what=f"pool=rand in a {pass_type} pass")
        drawn.append(picks)
    assert not np.array_equal(drawn[0], drawn[1]) and not np.array_equal(drawn[1], drawn[2])  # a draw each pass
    again = EngineNet(rand_config, 5, seed=4)  # one seed, the same draws
    again.forward(data, pass_type="train")
    assert np.array_equal(again.mask("pool"), drawn[0])


def test_rand_pool_picks_are_uniform_over_the_window(rand_config):
    net = EngineNet(rand_config, 128, seed=9)
    counts = np.zeros(9)
    for k in range(4):
        net.forward(_batch(rand_config, 128, k), train=False)
        picks = net.mask("pool")  # every window holds 3x3 pixels
        counts += np.bincount(picks.astype(int).reshape(-1), minlength=9)
    expected = counts.sum() / 9  # 32768 draws
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 26.1  # chi-square, 8 degrees of freedom: p = 0.001


def test_rand_pool_injected_picks_are_used_and_checked(rand_config):
    net = EngineNet(rand_config, 3, seed=1)
    data = _batch(rand_config, 3, 2)
    zero = np.zeros((16 * 16, 3), F32)
    net.inject_masks = True
    net.set_mask("pool", zero)
    net.forward(data, train=False)
    assert_close(net.acts("pool"), ref_rand_pool(net.acts("conv"), zero, 16, 9, 3, 0, 2, 4), **BIT_EXACT,
                 what="injected picks")
    bad = zero.copy()
    bad[16 * 4 - 1, 0] = 9.0  # output (c=3, oy=3, ox=3): a window of 3x3 pixels, 0..8
    net.set_mask("pool", bad)
    with pytest.raises(ValueError, match=r"layer 'pool': picks: output 63, case 0 picks 9.0+, not a position 0..8"):
        net.forward(data, train=False)


def test_quant_layers_sit_between_a_producer_and_its_consumers_on_another_gpu(quant_config):
    net = with_transfers(quant_config)
    q = transfer_name("pool1a", 1)
    assert q == "pool1a@gpu1"
    assert list(net.layers) == ["data", "labels", "conva", "convb", "pool1a", q, "pool1b", "fca", "fcb", "sum",
                                "probs", "logprob"]
    assert net.layers[q].type == "quant" and net.layers[q].gpu == 1 and net.layers[q].inputs == ["pool1a"]
    assert net.layers["fca"].inputs == ["pool1a"]  # same gpu: exact values
    assert net.layers["fcb"].inputs == [q, "pool1b"]
    assert quant_config.layers["fcb"].inputs == ["pool1a", "pool1b"]  # the parsed network is unchanged
    assert with_transfers(net) is net
    notes = {r.layer: r.what for r in reconstructions(net)}
    assert notes == {
        "pool1a": "quantF=half and quantB=half: output rounded to half for gpu 1; gradient from there rounded to half",
        q: "the half-precision transfer of pool1a to gpu 1 (quantF and quantB=half)",
        "pool1b": "quantF=half and quantB=half: no effect, every consumer is on its gpu 1 (only transfers between "
                  "gpus are rounded)"}


def test_the_engine_rounds_the_transfer_both_ways(quant_config):
    net = EngineNet(quant_config, 4, seed=2)
    q = transfer_name("pool1a", 1)
    assert q in net.layer_names
    net.forward(_batch(quant_config, 4, 3))
    net.backward()
    p = net.acts("pool1a")
    assert np.array_equal(_bits(net.acts(q)), _bits(_half_ref(p)))
    assert np.count_nonzero(net.acts(q) != p) > 0.9 * p.size  # the rounding is real: most values moved
    # pool1a's gradient: fca's contribution exactly, plus fcb's (through the quant layer) rounded to half
    wa, wb = net.weights("fca", 0), net.weights("fcb", 0)
    from_a = wa @ net.acts_grad("fca")
    from_b = wb @ net.acts_grad("fcb")
    assert np.array_equal(_bits(net.acts_grad(q)), _bits(from_b.astype(F32)))
    expected = _half_ref(net.acts_grad(q))
    assert_close(net.acts_grad("pool1a"), from_a + expected, atol=1e-6, rtol=1e-5, what="pool1a's gradient")


def test_parity_compares_the_reconstructions_like_any_layer(rand_config, quant_config, tmp_path):
    from alexnet_replay.modernize import parity

    for config, layers in ((rand_config, {"pool"}), (quant_config, {"pool1a", "pool1a@gpu1", "pool1b"})):
        report = parity.run_parity(config, minibatch=3, steps=2, seed=1)
        assert report.passed, parity.summary_text(report)
        assert set(report.reconstructions) == layers
        compared = {m.layer for m in report.metrics if m.quantity == "forward"}
        assert layers <= compared
        kinds = {m.layer: m.kind for m in report.metrics if m.quantity == "forward"}
        assert all(kinds[name] in ("pool", "copy") for name in layers)
        paths = parity.write_report(report, tmp_path / config.layers["data"].name / str(len(layers)))
        data = json.loads(paths["json"].read_text())
        assert set(data["reconstructions"]) == layers
        assert "Reconstructions" in paths["md"].read_text() and "(reconstruction)" in parity.summary_text(report)


def test_show_net_and_the_log_mark_the_layers(rand_config, quant_config):
    table = network_table(rand_config, [])
    assert "reconstruction: pool: pool=rand without doMax: one uniformly random pixel per window, max-undo " \
           "backward (engine.md §3.6" in table
    assert [r["layer"] for r in network_dict(quant_config, [])["reconstructions"]] == ["pool1a", "pool1b"]
    assert reconstruction_lines(with_transfers(quant_config)) == [
        "Reconstructed (kernels never published, docs/fidelity.md): pool1a, pool1a@gpu1, pool1b"]
    assert reconstruction_lines(load_config("cifar-18pct")[0]) == []


CUDA_REASON = cuda_unavailable_reason()


@pytest.mark.skipif(CUDA_REASON is not None, reason=f"needs a CUDA GPU: {CUDA_REASON}")
def test_the_cuda_net_draws_the_same_picks_and_rounds_the_same_bits(rand_config, quant_config):
    """Picks are drawn on the host from the base's generator (both nets draw the same); the
    pick and the half rounding are copies and integer operations: identical on both."""
    for config, names in ((rand_config, ["pool"]), (quant_config, ["pool1a", "pool1a@gpu1"])):
        nets = [EngineNet(config, 5, seed=6, device=d, gemm="builtin" if d == "cuda" else "auto")
                for d in ("cpu", "cuda")]
        data = _batch(config, 5, 4)
        for net in nets:
            net.forward(data, pass_type="train")
            net.backward()
        cpu, cuda = nets
        for name in names:  # the layer's input is the conv's output: compare the layer given it
            if config.layers.get(name) is not None and config.layers[name].type == "pool":
                assert np.array_equal(cpu.mask(name), cuda.mask(name))
        if "pool1a@gpu1" in names:
            for net in nets:
                assert np.array_equal(_bits(net.acts("pool1a@gpu1")), _bits(_half_ref(net.acts("pool1a"))))
        else:
            assert_close(cuda.acts("pool"), ref_rand_pool(cuda.acts("conv"), cuda.mask("pool"), 16, 9, 3, 0, 2, 4),
                         **BIT_EXACT, what="CUDA pool=rand")


# ---------------------------------------------------------------------------
# The release's files (read in place)


def test_release_178_and_170_quant_show_their_reconstructions(release):
    from alexnet_replay.original.catalog import _definition_builds, _pair_checks, catalog_text
    from alexnet_replay.original.cfgfile import read_cfg

    layers = release / "layers" / "layers-178.cfg"
    alone, _ = load_config(layers)  # doMax is in the parameter file: a reconstruction unless it is set
    notes = reconstructions(alone)
    assert [r.layer for r in notes] == ["pool2a", "pool2b"]
    assert notes[0].what == ("pool=rand without doMax: one uniformly random pixel per window unless the parameter "
                             "file sets doMax, max-undo backward")
    assert "reconstruction: pool2b: pool=rand without doMax" in network_table(alone, [])
    # its parameter file sets doMax=true (max pooling, exact; its schedules need the lenient reader)
    final, _ = load_config(layers, release / "layers" / "layer-params-178.cfg", lenient=True)
    assert reconstructions(final) == []

    quant, _ = load_config(release / "layers" / "layers-153.cfg", release / "layers" / "layer-params-170-quant.cfg")
    by = {r.layer: r.what for r in reconstructions(quant)}
    # pool2 and the hs layers feed the other tower; pool3 only its own neuron layer, whose
    # section (pool3's) also asks for half transfers: pool3's output reaches the other gpu there
    assert sorted(by) == ["hs1a", "hs1b", "hs2a", "hs2b", "pool2a", "pool2b", "pool3a", "pool3a_neuron",
                          "pool3b", "pool3b_neuron"]
    assert by["pool2a"] == by["pool3a_neuron"] == by["hs1a"]
    assert by["pool2a"].endswith("output rounded to half for gpu 1; gradient from there rounded to half")
    assert by["hs2b"].endswith("output rounded to half for gpu 0; gradient from there rounded to half")
    assert by["hs2a"].startswith("quantF=half and quantB=half: no effect, every consumer is on its gpu 0")
    assert by["pool3a"].startswith("quantF=half and quantB=half: no effect")
    assert len([line for line in network_table(quant, []).splitlines() if line.startswith("reconstruction:")]) == 10
    transfers = [n for n, l in with_transfers(quant).layers.items() if l.type == "quant"]
    assert transfers == ["pool2a@gpu1", "pool2b@gpu0", "pool3a_neuron@gpu1", "pool3b_neuron@gpu0", "hs1a@gpu1",
                         "hs1b@gpu0", "hs2b@gpu0"]

    # the catalog: a field per build and pairing, and lines in its text view
    builds = _definition_builds(read_cfg(layers, "layers/layers-178.cfg"), "layers/layers-178.cfg")
    assert [t.split(":")[0] for t in builds[0]["reconstructions"]] == ["pool2a", "pool2b"]
    defs = {"layers/layers-153.cfg": read_cfg(release / "layers" / "layers-153.cfg", "layers/layers-153.cfg")}
    params = read_cfg(release / "layers" / "layer-params-170-quant.cfg", "layers/layer-params-170-quant.cfg")
    checks = _pair_checks(params, [("layers/layers-153.cfg", "notes")], defs)
    assert len(checks[0]["reconstructions"]) == 10
    text = catalog_text({"root": str(release), "files": [
        {"path": "layers/layers-178.cfg", "kind": "layers", "bytes": 0, "parse_error": None, "builds": builds}]})
    assert "reconstruction: pool2a: pool=rand without doMax" in text


def test_parity_of_release_definition_153_with_170_quant(release):
    """layers-153 with layer-params-170-quant (ImageNet size, about 3 minutes on 2 cores): seven
    half transfers between the towers. Isolated, every layer matches within its class; end to end
    the half roundings of the two sides differ somewhere (an ulp below a rounding boundary), and
    the report says where and judges what lies above them as for a rerouted gate."""
    from alexnet_replay.modernize import parity

    config, _ = load_config(release / "layers" / "layers-153.cfg", release / "layers" / "layer-params-170-quant.cfg")
    report = parity.run_parity(config, minibatch=2, steps=3, seed=3)
    assert report.passed, parity.summary_text(report)
    quants = ["pool2a@gpu1", "pool2b@gpu0", "pool3a_neuron@gpu1", "pool3b_neuron@gpu0", "hs1a@gpu1", "hs1b@gpu0",
              "hs2b@gpu0"]
    assert [name for name in report.layers if "@" in name] == quants
    isolated = {(m.layer, m.quantity): m for m in report.metrics if m.quantity in ("forward", "backward")}
    for name in quants:
        assert isolated[(name, "forward")].kind == "copy" and isolated[(name, "forward")].max_abs == 0.0
    assert set(report.reconstructions) >= set(quants) | {"pool2a", "hs2b"}
