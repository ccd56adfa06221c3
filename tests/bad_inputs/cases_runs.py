"""Bad-input cases of runs: options out of range, output and resume paths
(issue 13, items 4 and 5). The format: common.py."""

from __future__ import annotations

import os
from pathlib import Path

from common import TRAIN_ARGS, Case, valid_files


def _with(option: str, value: str) -> list[str]:
    """TRAIN_ARGS with `option` set to `value` (replaced where TRAIN_ARGS has it)."""
    argv = list(TRAIN_ARGS)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return argv


CASES: list[Case] = []

# -- train's options, out of range: one message naming the option ------------------------------
_BAD_VALUES = {
    "--mini": ["0", "-1", "100000000", "2147483648", "1.5", "ten", ""],
    "--seed": ["-1", "18446744073709551616", "x"],
    "--epochs": ["0", "-3", "99999999999", "1e3"],
    "--test-freq": ["0", "-1", "3000000000", "many"],
    "--max-filesize": ["-1", "99999999999999999999", "big"],
    "--test-one": ["2", "-1", "yes"],
    "--crop-border": ["-1", "100000", "b"],
    "--color-noise": ["-0.1", "nan", "inf", "loud"],
    "--scalar-mean": ["nan", "-inf", "grey"],
    "--multiview-test": ["2", "-1"],
    "--decode-workers": ["-1", "-2", "100000"],
    "--num-gpus": ["-1", "100000"],
    "--wupdate-freq": ["0", "-1", "3000000000"],
    "--pca-noise": ["nan", "-1", "inf"],
    "--train-range": ["1-3000000000", "3-1", "-1", "a-b", "1-", "", "4294967297", "1,2", "1-1000002"],
    "--test-range": ["2-99999999999", "x", "2-1"],
    "--gpu": ["-2", "0,x", "99999999999", ",", "0,0"],
}
CASES += [Case("option--train-range/missing-batch", _with("--train-range", "0"), ["data_batch_0", "missing"],
                files=valid_files()),
          Case("option--test-range/missing-batch", _with("--test-range", "7"), ["data_batch_7", "missing"],
               files=valid_files())]
for option, values in _BAD_VALUES.items():
    for i, value in enumerate(values):
        CASES.append(Case(f"option{option}/{i}", _with(option, value), [option], files=valid_files()))

# -- the files a run reads and writes -----------------------------------------------------------
CASES += [
    Case("paths/save-path-is-a-file", _with("--save-path", "runs"), ["runs"],
         files={**valid_files(), "runs": "a file where a folder should be\n"}),
    Case("paths/save-path-inside-a-file", _with("--save-path", "notes.txt/runs"), ["notes.txt"],
         files={**valid_files(), "notes.txt": "x\n"}),
    Case("paths/data-path-missing", _with("--data-path", "nowhere"), ["nowhere"], files=valid_files()),
    Case("paths/data-path-is-a-file", _with("--data-path", "layers.cfg"), ["layers.cfg"], files=valid_files()),
    Case("paths/layer-def-missing", _with("--layer-def", "none.cfg"), ["none.cfg"], files=valid_files()),
    Case("paths/layer-def-is-a-folder", _with("--layer-def", "data"), ["data"], files=valid_files()),
    Case("paths/layer-params-missing", _with("--layer-params", "none.cfg"), ["none.cfg"], files=valid_files()),
    Case("paths/layer-params-is-a-folder", _with("--layer-params", "data"), ["data"], files=valid_files()),
    Case("paths/resume-missing", ["train", "-f", "gone/1.5.npz"], ["gone"], files=valid_files()),
    Case("paths/resume-empty-folder", ["train", "-f", "empty"], ["empty"], files=valid_files(),
         setup=lambda d: (d / "empty").mkdir()),
    Case("paths/resume-not-a-checkpoint", ["train", "-f", "layers.cfg"], ["layers.cfg"], files=valid_files()),
    Case("paths/resume-text-as-npz", ["train", "-f", "x.npz"], ["x.npz"],
         files={**valid_files(), "x.npz": "not a zip\n"}),
    Case("paths/resume-empty-npz", ["train", "-f", "x.npz"], ["x.npz"], files={**valid_files(), "x.npz": b""}),
    Case("paths/convert-source-missing", ["checkpoint", "convert", "none.npz", "out.pickle"], ["none.npz"],
         files=valid_files()),
    Case("paths/convert-into-a-folder", ["checkpoint", "convert", "x.npz", "data"], ["data"],
         files={**valid_files(), "x.npz": b"PK\x05\x06" + bytes(18)}),
    Case("paths/make-batches-onto-a-file", ["make-batches", "layers.cfg", "--digits"], ["layers.cfg"],
         files=valid_files()),
    Case("paths/make-batches-into-a-full-folder", ["make-batches", "data", "--digits"], ["data"],
         files=valid_files()),
    Case("paths/make-batches-images-missing", ["make-batches", "out", "--images", "photos"], ["photos"],
         files=valid_files()),
    Case("paths/show-net-missing", ["show-net", "none.cfg"], ["none.cfg"]),
    Case("paths/show-net-folder", ["show-net", "sub"], ["sub"], setup=lambda d: (d / "sub").mkdir()),
    Case("paths/verify-missing", ["verify", "nowhere"], ["nowhere"]),
    Case("paths/verify-a-file", ["verify", "layers.cfg"], ["layers.cfg"], files=valid_files()),
    Case("paths/demo-out-is-a-file", ["demo", "--out", "layers.cfg", "--quick", "--no-parity"], ["layers.cfg"],
         files=valid_files()),
    Case("paths/schedule-missing", ["schedule", "run", "none.toml", "--out", "o"], ["none.toml"]),
    Case("paths/schedule-show-missing", ["schedule", "show", "none.toml"], ["none.toml"]),
]


def _dangling(d: Path) -> None:
    os.symlink(d / "gone.cfg", d / "layers2.cfg")


CASES += [
    Case("paths/layer-def-dangling-link", _with("--layer-def", "layers2.cfg"), ["layers2.cfg"], files=valid_files(),
         setup=_dangling),
    Case("paths/layer-def-is-dev-null", _with("--layer-def", "/dev/null"), ["/dev/null"], files=valid_files()),
]
