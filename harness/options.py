"""The 2012 driver's options (driver.md §C.1, §C.2): the table of names, types and
defaults this harness implements, the options set once when a run starts (§C.3), the
batch-range syntax, and the flags of ``alexnet-replay train``.

The table lives apart from the training loop (:mod:`.driver`) because the checkpoint
readers and the schedule parser need it too, and the loop needs them.
"""

from __future__ import annotations

import argparse
import re
from typing import Any, Callable

from ..errors import ReplayError

__all__ = ["OPTIONS", "SET_ONCE", "add_train_arguments", "parse_range"]

# (option, type, default; None = mandatory unless excused). §C.2.
OPTIONS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "train_range": (str, None), "test_range": (str, None), "data_path": (str, None), "save_path": (str, None),
    "data_provider": (str, ""), "test_freq": (int, 50), "epochs": (int, 50000), "max_filesize": (int, 0),
    "test_one": (int, 1), "mini": (int, 128), "layer_def": (str, None), "layer_params": (str, None),
    "crop_border": (int, 4), "color_noise": (float, 0.0), "test_only": (int, 0), "seed": (int, 0),
    "device": (str, "cpu"), "multiview_test": (int, 0), "scalar_mean": (float, 0.0), "decode_workers": (int, 1),
}
SET_ONCE = ("layer_def", "crop_border")


def parse_range(text: str, option: str) -> list[int]:
    """``a-b`` (inclusive) or ``n`` (§C.1)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
        raise ReplayError(f"--{option.replace('_', '-')}: expected a range like 1-5 or a number, got {text!r}")
    first = int(m.group(1))
    return list(range(first, int(m.group(2) or first) + 1))


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", dest="load_file", metavar="PATH",
                   help="resume from a checkpoint file or folder (this project's .npz, or the release's pickle)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no per-batch or per-test lines; only the final result")
    for name, (kind, default) in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        shown = "mandatory" if default is None else repr(default)
        p.add_argument(flag, dest=name, type=kind, default=None, help=f"(default: {shown}; driver.md §C.2)")
