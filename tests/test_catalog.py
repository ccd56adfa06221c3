"""`catalog` over the release's cfg files against ../shared/spec/catalog.json.

catalog.json was produced by an independent tool from the same specification;
it is the expected value for every definition file's strict verdict, parameter
count, layer count and GPUs at each input size, and for every pairing of a
parameter file with a definition file.
"""

from __future__ import annotations

import json

import pytest

from alexnet_replay.cli import main
from alexnet_replay.original.catalog import build_catalog

# The catalog tool named its profiles; ours carry the same names.
EXPECTED_PROFILE_SIZES = {"inet224": [3, 224, 224], "flickr224": [3, 224, 224],
                          "cifar32": [3, 32, 32], "cifar24": [3, 24, 24]}


@pytest.fixture(scope="module")
def catalog(release):
    return build_catalog(release)


@pytest.fixture(scope="module")
def by_path(catalog):
    return {f["path"]: f for f in catalog["files"]}


def test_every_cfg_file_is_listed(catalog, catalog_json, release):
    on_disk = sorted(p.relative_to(release).as_posix() for p in release.rglob("*.cfg*"))
    listed = sorted(f["path"] for f in catalog["files"])
    assert listed == on_disk
    assert {f["path"] for f in catalog["files"] if f["kind"] == "layers"} == set(catalog_json["defs"])
    assert {f["path"] for f in catalog["files"] if f["kind"] == "params"} == set(catalog_json["params"])


def test_definition_files_match_spec_catalog(by_path, catalog_json):
    mismatches = []
    for path, spec in catalog_json["defs"].items():
        builds = {b["profile"]: b for b in by_path[path]["builds"]}
        expected = {p["profile"]: p for p in spec["profiles"]}
        if set(builds) != set(expected):
            mismatches.append((path, "profiles", sorted(builds), sorted(expected)))
            continue
        for name, want in expected.items():
            got = builds[name]
            checks = {
                "image_size": (got["image_size"], EXPECTED_PROFILE_SIZES[name]),
                "strict_ok": (got["strict_ok"], want["strict_error"] is None),
                "parameters": (got["parameters"], want["params"]),
                "weights": (got["weights"], want["weights_only"]),
                "biases": (got["biases"], want["biases_only"]),
                "layers": (got["layers"], want["layers_after_neuron_split"]),
                "gpus": (got["gpus"], want["gpus"]),
                "incomplete": (got["parameters_incomplete"], want["params_unknown_part"]),
                "num_classes": (got["num_classes"], want["num_classes"]),
                "lenient_fixes": (sorted(got["lenient_fixes"]), sorted(want["lenient_fixes"])),
            }
            mismatches += [(path, name, key, g, w) for key, (g, w) in checks.items() if g != w]
    assert mismatches == []


def test_strict_rejections_name_the_same_layer_and_key(by_path, catalog_json):
    """Where the release rejects a file, our reason names the layer and key it names."""
    seen = 0
    for path, spec in catalog_json["defs"].items():
        for want in spec["profiles"]:
            if want["strict_error"] is None:
                continue
            got = next(b for b in by_path[path]["builds"] if b["profile"] == want["profile"])
            layer = want["strict_error"].split("'")[1]  # "Layer 'conv1': parameter 'gpu' ..."
            assert f"[{layer}] key 'gpu'" in got["strict_error"], (path, got["strict_error"])
            seen += 1
    assert seen == 12  # six example-layers files at two sizes each


def test_paper_network_counts(by_path):
    build = by_path["layers/layers-145.cfg"]["builds"]
    assert len(build) == 1
    assert build[0]["image_size"] == [3, 224, 224]
    assert build[0]["strict_ok"] and build[0]["strict_error"] is None
    assert build[0]["parameters"] == 60_965_224
    assert build[0]["layers"] == 49
    assert build[0]["gpus"] == [0, 1]


def test_parameter_file_pairings_match_spec_catalog(by_path, catalog_json):
    mismatches = []
    for path, pairs in catalog_json["pairs"].items():
        got = by_path[path]
        if got["pairs_with"] != [d for d, _ in pairs]:
            mismatches.append((path, got["pairs_with"], pairs))
        spec = catalog_json["params"][path]
        for pair in spec["pairs"]:
            for want in pair["results"] or []:
                check = [c for c in got["checks"] if c["definition"] == pair["def"]
                         and c["profile"] == want["profile"]]
                if len(check) != 1:
                    mismatches.append((path, pair["def"], want["profile"], "no check"))
                    continue
                c = check[0]
                if c["strict_ok"] != (want["strict_error"] is None):
                    mismatches.append((path, pair["def"], want["profile"], c["strict_error"], want["strict_error"]))
                if c["lenient_ok"] != (want.get("lenient_error") is None):
                    mismatches.append((path, "lenient", c["lenient_error"]))
                if sorted(c["unused_sections"]) != sorted(want["unused_sections"] or []):
                    mismatches.append((path, "unused", c["unused_sections"], want["unused_sections"]))
                if sorted(c["lenient_fixes"]) != sorted(want.get("lenient_fixes") or []):
                    mismatches.append((path, "fixes", c["lenient_fixes"], want["lenient_fixes"]))
    assert mismatches == []


def test_unreadable_parameter_file_is_reported_not_raised(by_path):
    entry = by_path["layers/layer-params-147.cfg.save"]
    assert entry["parse_error"].startswith("layers/layer-params-147.cfg.save: line 1: text before the first")
    assert [(c["definition"], c["strict_ok"], c["lenient_ok"]) for c in entry["checks"]] == [
        ("layers/layers-147.cfg", False, False)]
    assert entry["checks"][0]["strict_error"] == entry["parse_error"]


def test_recorded_results_of_the_paper_run(by_path):
    recorded = by_path["layers/layer-params-145.cfg"]["recorded_results"]
    results = [(r["kind"], r["nll"], r["top1"], r["topk"]) for r in recorded]
    assert results == [("reported", 1.741473, 0.40664, 0.1821), ("multiview", 1.725738, 0.4025, 0.17994)]


def test_cli_json_is_the_catalog(release, capsys):
    assert main(["catalog", str(release), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["format"] == "alexnet-replay catalog"
    assert len(printed["files"]) == 164
    first = printed["files"][0]
    assert set(first) >= {"path", "kind", "builds"} or set(first) >= {"path", "kind", "pairs_with"}


def test_cli_markdown(release, capsys):
    assert main(["catalog", str(release), "--md"]) == 0
    out = capsys.readouterr().out
    assert "| `layers/layers-145.cfg` | 3x224x224 | ok | ok | 49 | 0,1 | 60,965,224 |" in out


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["catalog", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("alexnet-replay: error: ") and "no such folder" in err
