"""The command line as a user meets it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import alexnet_replay
from alexnet_replay.cli import main


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """The installed console script when present, else ``python -m alexnet_replay``."""
    exe = shutil.which("alexnet-replay")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "alexnet_replay", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, "PYTHONWARNINGS": ""})


def test_version_reports_the_build():
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"alexnet-replay {alexnet_replay.__version__}"
    text = result.stdout
    for label in ("engine", "flags", "BLAS", "CUDA code"):
        assert f"  {label}" in text
    info = alexnet_replay.build_info()
    assert info["cxx_compiler"] in text and info["blas"] in text
    assert ("CUDA code   yes" in text) == info["cuda_compiled"]


def test_build_info_fields():
    info = alexnet_replay.build_info()
    assert info["version"] == alexnet_replay.__version__
    assert info["build_type"] == "Release"
    assert "-ffast-math" not in info["cxx_flags"]
    assert isinstance(info["cuda_compiled"], bool)
    if info["cuda_compiled"]:
        assert info["cuda_compiler"].startswith("nvcc ")
        assert "80-real" in info["cuda_archs"] and "90" in info["cuda_archs"]
    else:
        assert info["cuda_devices"] == 0 and info["cuda_devices_reason"]
    assert isinstance(info["cuda_devices"], int) and info["cuda_devices"] >= 0


def test_readme_first_command_job():
    """The README's main job: show-net on the bundled paper network."""
    result = run_cli("show-net", "paper-2012")
    assert result.returncode == 0, result.stderr
    assert "trainable parameters 60,965,224 (weights 60,954,656, biases 10,568)" in result.stdout
    assert "multiply-adds per image 724,406,816" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("conv1a "))
    assert row.split() == ["conv1a", "conv", "0", "data", "48x55x55", "17,424", "48", "52,707,600"]


def test_show_net_json(capsys):
    assert main(["show-net", "cifar-18pct", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "alexnet-replay show-net"
    assert data["image_size"] == [3, 32, 32]
    assert data["parameters"] == 89_578
    layers = {l["name"]: l for l in data["layers"]}
    # conv1: 3 channels x 5x5 x 32 filters; 32x32 outputs (pad 2, stride 1)
    assert layers["conv1"]["weights"] == 3 * 25 * 32 and layers["conv1"]["shape"] == [32, 32, 32]
    assert layers["conv1"]["multiply_adds"] == 32 * 32 * 32 * 3 * 25
    # pool1 3/2 on 32: ceil((32-3)/2)+1 = 16, then the ReLU split off it
    assert layers["pool1"]["shape"] == [32, 16, 16]
    assert layers["pool1_neuron"]["inputs"] == ["pool1"] and layers["norm1"]["inputs"] == ["pool1_neuron"]
    assert layers["fc10"]["weights"] == 64 * 4 * 4 * 10


def test_show_net_image_size(capsys):
    assert main(["show-net", "cifar-18pct", "--image-size", "3,24,24", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["image_size"] == [3, 24, 24]
    assert data["parameters"] == 85_098  # fc10 sees 64x3x3 instead of 64x4x4


def test_bad_image_size_is_a_usage_error():
    result = run_cli("show-net", "paper-2012", "--image-size", "224")
    assert result.returncode == 2
    assert "expected C,H,W" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("text, where", [
    ("[data]\ntype=data\ndataIdx=0\n[c]\ntype=conv\ninputs=data\ngpu=0\n",
     "[c] key 'channels': required parameter 'channels' missing"),
    ("[data]\ntype=data\ndataIdx=zero\n", "line 3: [data] key 'dataIdx': must be an int (got 'zero')"),
    ("[x]\ntype=magic\n", "line 2: [x] key 'type': unknown layer type 'magic'"),
    ("junk\n[x]\n", "line 1: text before the first [section] header"),
])
def test_malformed_file_gives_one_line_exit_2(tmp_path, text, where):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text)
    result = run_cli("show-net", str(cfg), "--image-size", "3,32,32")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"alexnet-replay: error: {cfg}: ")
    assert where in lines[0]


def test_missing_file_is_a_config_error(tmp_path):
    result = run_cli("show-net", str(tmp_path / "absent.cfg"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"alexnet-replay: error: {tmp_path / 'absent.cfg'}: file not found"


def test_strict_rejection_suggests_lenient(release):
    path = release / "example-layers" / "layers-18pct.cfg"
    strict = run_cli("show-net", str(path))
    assert strict.returncode == 2
    assert "[conv1] key 'gpu'" in strict.stderr and "--lenient reads it with 4 relaxation(s)" in strict.stderr
    lenient = run_cli("show-net", str(path), "--lenient")
    assert lenient.returncode == 0, lenient.stderr
    assert "relaxed: conv1: no usable gpu (first input is a data layer) -> assumed gpu=0" in lenient.stdout
    assert "trainable parameters 89,578" in lenient.stdout


def test_verify_exit_codes(release, tmp_path):
    partial = run_cli("verify", str(release))
    assert partial.returncode == 1
    missing = run_cli("verify", str(tmp_path / "nope"))
    assert missing.returncode == 1 and missing.stderr.startswith("alexnet-replay: error: ")
    assert "Traceback" not in missing.stderr


def test_no_command_prints_help():
    result = run_cli()
    assert result.returncode == 2 and "verify" in result.stdout and "catalog" in result.stdout


def test_make_batches_digits(tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn (a test extra) renders the digits")
    from alexnet_replay.harness.batches import read_batch, read_meta

    out = tmp_path / "digits"
    result = run_cli("make-batches", str(out), "--digits")
    assert result.returncode == 0, result.stderr
    assert "data_batch_1..6" in result.stdout and "10 classes" in result.stdout
    meta = read_meta(out)
    assert meta.num_vis == 3 * 32 * 32 and len(meta.label_names) == 10
    sizes = [read_batch(out, n, meta).data.shape[1] for n in range(1, 7)]
    assert sum(sizes) == 1797  # every image of scikit-learn's set, once
    again = run_cli("make-batches", str(out), "--digits")
    assert again.returncode == 1 and "folder is not empty" in again.stderr


def test_make_batches_missing_archive(tmp_path):
    result = run_cli("make-batches", str(tmp_path / "out"), "--cifar10", str(tmp_path / "none.tar.gz"))
    assert result.returncode == 1 and "no such file" in result.stderr
    assert not (tmp_path / "out").exists()
