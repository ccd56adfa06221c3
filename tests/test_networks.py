"""The project's own example networks: shapes and counts computed by hand."""

from __future__ import annotations

from alexnet_replay import networks
from alexnet_replay.original.layers import PROFILES, load_network
from alexnet_replay.original.params import load_params


def _load(name, profile):
    files = networks.bundled(name)
    net = load_network(files.layers, PROFILES[profile])
    unused = load_params(net, files.params)
    return net, unused


def test_paper_network_matches_the_published_architecture():
    net, unused = _load("paper-2012", "inet224")
    assert unused == []
    assert net.gpus == [0, 1]
    # (tower layer, filters per tower, output side) from the paper's Figure 2
    for layer, filters, side in [("conv1", 48, 55), ("pool1", 48, 27), ("conv2", 128, 27), ("pool2", 128, 13),
                                 ("conv3", 192, 13), ("conv4", 192, 13), ("conv5", 128, 13), ("pool5", 128, 6)]:
        for tower in "ab":
            assert net[layer + tower].shape == (filters, side, side), layer + tower
    # weights per tower: filter channels x k x k x filters
    assert net["conv1a"].weights == [(3 * 11 * 11, 48)]
    assert net["conv2a"].weights == [(48 * 5 * 5, 128)]
    assert net["conv3a"].weights == [(128 * 3 * 3, 192), (128 * 3 * 3, 192)]
    assert net["conv4a"].weights == [(192 * 3 * 3, 192)]
    assert net["conv5a"].weights == [(192 * 3 * 3, 128)]
    assert net["fc6a"].weights == [(128 * 6 * 6, 2048)] * 2
    assert net["fc7a"].weights == [(2048, 2048)] * 2
    assert net["fc8"].weights == [(2048, 1000)] * 2
    conv = 2 * (3 * 121 * 48 + 48 * 25 * 128 + 2 * 128 * 9 * 192 + 192 * 9 * 192 + 192 * 9 * 128)
    fc = 2 * (2 * 4608 * 2048 + 2 * 2048 * 2048) + 2 * 2048 * 1000
    biases = 2 * (48 + 128 + 192 + 192 + 128 + 2048 + 2048) + 1000
    assert net.weights == conv + fc == 60_954_656
    assert net.parameters == conv + fc + biases == 60_965_224
    # the paper's LRN: k=2, n=5, alpha=1e-4 per the file, divided by n by the reader
    assert net["norm1a"].params["scale"] == 0.0001 / 5 and net["norm1a"].params["minDiv"] == 2.0
    assert net["drop6a"].attrs["keep"] == 0.5 and net["drop6a"].params["enable"] is True
    assert net["logprob"].params == {"quantF": "default", "quantB": "default", "coeff": 1.0, "topk": 5}


def test_paper_network_equals_the_release_network_in_size(release):
    """Same weight shapes as the release's layers-145.cfg (whose extra norm has no weights)."""
    ours, _ = _load("paper-2012", "inet224")
    theirs = load_network(release / "layers" / "layers-145.cfg", PROFILES["inet224"])
    rename = {"fc6": "fc2048", "fc7": "fc2048b", "fc8": "fc1000"}
    for layer in ours.layers.values():
        if not layer.weights:
            continue
        base = layer.name.rstrip("ab") if layer.name != "fc8" else "fc8"
        other = rename.get(base, base) + layer.name[len(base):] if base in rename else layer.name
        assert theirs[other].weights == layer.weights, (layer.name, other)
    assert ours.parameters == theirs.parameters


def test_cifar_network_at_both_sizes():
    for profile, side, params in [("cifar32", 32, 89_578), ("cifar24", 24, 85_098)]:
        net, unused = _load("cifar-18pct", profile)
        assert unused == []
        p1 = -(-(side - 3) // 2) + 1          # pool 3/2: ceil((side-3)/2)+1
        p2 = -(-(p1 - 3) // 2) + 1
        p3 = -(-(p2 - 3) // 2) + 1
        assert net["pool1"].shape == (32, p1, p1)
        assert net["pool3"].shape == (64, p3, p3)
        assert net.parameters == 3 * 25 * 32 + 32 + 32 * 25 * 32 + 32 + 32 * 25 * 64 + 64 + 64 * p3 * p3 * 10 + 10
        assert net.parameters == params
        assert net["norm1"].params["scale"] == 0.00005 / 9  # rnorm: scale / size^2
