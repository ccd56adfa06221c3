"""The bad-input corpus: what a case is (tests/test_bad_inputs.py runs them).

A case is one `alexnet-replay` command on files a careless or hostile user made.
It must end with one clear message (``alexnet-replay: error: ...`` or argparse's
``error:``) that contains every string of `expect` (the file and the problem), a
non-zero exit, no traceback, no file in its folder created, changed or removed,
in under 5 s and 1 GB. The case modules beside this one (``cases_*.py``) each
define ``CASES: list[Case]``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class Case:
    name: str  # unique, "group/what", e.g. "cfg/interpolation-depth"
    argv: list[str]  # the command's arguments, run in the case's folder; "{dir}" is that folder
    expect: list[str]  # each must appear in the message (the file's name, the key, the problem)
    files: dict[str, str | bytes] = field(default_factory=dict)  # written into the folder first
    setup: Callable[[Path], None] | None = None  # more making (links, FIFOs, modes), after `files`
    exit_codes: tuple[int, ...] = (1, 2)  # what counts as the right non-zero exit


# -- small valid inputs that cases break one thing of -------------------------------------------
# A network the size of a test: 3x8x8 colour images, one conv, one fc, softmax, logreg.
LAYERS = """\
[data]
type=data
dataIdx=0

[labels]
type=data
dataIdx=1

[conv1]
type=conv
inputs=data
channels=3
filters=16
padding=1
stride=1
filterSize=3
initW=0.01
partialSum=1
sharedBiases=1
neuron=relu
gpu=0

[fc2]
type=fc
inputs=conv1
outputs=4
initW=0.01

[probs]
type=softmax
inputs=fc2

[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""

PARAMS = """\
[conv1]
epsW=0.001
epsB=0.002
momW=0.9
momB=0.9
wc=0.0005

[fc2]
epsW=0.001
epsB=0.002
momW=0.9
momB=0.9
wc=0.0005

[logprob]
coeff=1
"""


def batch_dict(cases: int = 12, size: int = 8, classes: int = 4, seed: int = 0) -> dict:
    """One CIFAR-format batch (driver.md §D): uint8 data (3*size*size, cases), labels."""
    rng = np.random.default_rng(seed)
    return {"data": rng.integers(0, 256, (3 * size * size, cases), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, classes, cases)],
            "batch_label": "bad-input corpus", "filenames": [f"img{i}.png" for i in range(cases)]}


def meta_dict(size: int = 8, classes: int = 4) -> dict:
    return {"data_mean": np.full((3 * size * size, 1), 127.5, np.float32), "num_vis": 3 * size * size,
            "label_names": [f"class{i}" for i in range(classes)], "num_cases_per_batch": 12}


def pickled(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=2)


def data_files(folder: str = "data", batches: tuple[int, ...] = (1, 2)) -> dict[str, bytes]:
    """A CIFAR-format data folder: batches.meta and data_batch_N for N in `batches`."""
    out = {f"{folder}/batches.meta": pickled(meta_dict())}
    for n in batches:
        out[f"{folder}/data_batch_{n}"] = pickled(batch_dict(seed=n))
    return out


def valid_files() -> dict[str, str | bytes]:
    """The net and its data: `train` on these with TRAIN_ARGS runs and succeeds."""
    return {"layers.cfg": LAYERS, "params.cfg": PARAMS, **data_files()}


TRAIN_ARGS = ["train", "--layer-def", "layers.cfg", "--layer-params", "params.cfg", "--data-path", "data",
              "--data-provider", "cifar", "--train-range", "1", "--test-range", "2", "--save-path", "runs",
              "--epochs", "1"]
