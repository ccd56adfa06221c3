"""The 2012 driver's options (driver.md §C.1, §C.2): the table of names, types and
defaults this harness implements, the options set once when a run starts (§C.3), the
batch-range syntax, and the flags of ``alexnet-replay train``.

The table lives apart from the training loop (:mod:`.driver`) because the checkpoint
readers and the schedule parser need it too, and the loop needs them.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Any, Callable

from .. import networks
from ..errors import ReplayError, quote

__all__ = ["BOUNDS", "HELP", "OPTIONS", "PATH_OPTIONS", "SET_ONCE", "add_train_arguments", "check_values",
           "parse_gpus", "parse_names", "parse_range", "parse_unshare", "resolved_path"]

# (option, type, default; None = mandatory unless excused). §C.2.
OPTIONS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "train_range": (str, None), "test_range": (str, None), "data_path": (str, None), "save_path": (str, None),
    "data_provider": (str, ""), "test_freq": (int, 50), "epochs": (int, 50000), "max_filesize": (int, 0),
    "test_one": (int, 1), "mini": (int, 128), "layer_def": (str, None), "layer_params": (str, None),
    "crop_border": (int, 4), "color_noise": (float, 0.0), "test_only": (int, 0), "seed": (int, 0),
    "device": (str, "cpu"), "multiview_test": (int, 0), "scalar_mean": (float, 0.0), "decode_workers": (int, 1),
    # the release's options for devices, checkpoints, tests and graph edits (§C.2, §C.5, §A.7)
    "gpu": (str, ""), "num_gpus": (int, 0), "zip_save": (int, 0), "conserve_mem": (int, 0), "check_grads": (int, 0),
    "test_out": (str, ""), "logreg_name": (str, ""), "unshare_weights": (str, ""), "conv_to_local": (str, ""),
    "pca_noise": (float, 0.0), "wupdate_freq": (int, 1),
    "init_from": (str, ""),  # this harness's stand-in for the release's initw.py (driver.md §A.5)
    "backend": (str, "engine"),  # engine or port (harness/backends.py, docs/scaling.md)
}
SET_ONCE = ("layer_def", "crop_border", "init_from")

_INT_MAX = 2**31 - 1  # the release kept these in C ints
# The values each numeric option may take, inclusive; anything else is refused before a run
# starts, from the command line, a schedule or a checkpoint's stored options alike.
BOUNDS: dict[str, tuple[float, float]] = {
    "test_freq": (1, _INT_MAX), "epochs": (1, _INT_MAX), "max_filesize": (0, _INT_MAX), "test_one": (0, 1),
    "mini": (1, _INT_MAX), "crop_border": (0, 4096), "color_noise": (0.0, float("inf")), "test_only": (0, 1),
    "seed": (0, 2**32 - 1),  # numpy's RandomState seeds
    "multiview_test": (0, 1), "scalar_mean": (float("-inf"), float("inf")), "decode_workers": (0, 1024),
    "num_gpus": (0, 64), "zip_save": (0, 1), "conserve_mem": (0, 1), "check_grads": (0, 1),
    "pca_noise": (0.0, float("inf")), "wupdate_freq": (1, _INT_MAX),
}
# Options that name files or folders: stored resolved (absolute) in checkpoints, and compared
# resolved, so that a run resumes from any working folder with the paths written either way.
PATH_OPTIONS = ("layer_def", "layer_params", "data_path", "save_path", "init_from", "test_out")
MAX_RANGE = 1_000_000  # batches in one --train-range or --test-range (ImageNet has about 1,300)

# --help of each option: (metavar, what it does, with its default in words). "New run" options are
# mandatory when no -f is given.
HELP: dict[str, tuple[str, str]] = {
    "train_range": ("RANGE", "data batches to train on, in this order: a-b (inclusive) or one number, e.g. 1-5 "
                             "(mandatory for a new run)"),
    "test_range": ("RANGE", "data batches to test on, e.g. 6 or 6-7 (mandatory for a new run)"),
    "data_path": ("DIR", "folder holding the data batches (data_batch_N) and batches.meta (mandatory for a new run)"),
    "save_path": ("DIR", "folder in which a new run makes its checkpoint folder ConvNet__<date>_<time> "
                         "(mandatory for a new run)"),
    "data_provider": ("NAME", "how batches are read, e.g. cifar, cifar-cropped, inet-lr-cropped-jpeg, "
                              "inet-lr-cropped, flatmem, dummy-lr-<D> (default: the dp_type that batches.meta names)"),
    "test_freq": ("N", "every N training batches: test, then save a checkpoint (default 50)"),
    "epochs": ("N", "train all of epoch N and the first batch of epoch N+1, then stop; also the length of the "
                    "learning-rate schedules (default 50000)"),
    "max_filesize": ("MB", "after a save, delete the oldest checkpoints while the run folder is larger than this; "
                           "0 keeps only the newest (default 0)"),
    "test_one": ("0|1", "1: each test uses one test batch, the next one of --test-range in turn; 0: every batch of "
                        "the range (default 1)"),
    "mini": ("N", "cases per minibatch: each data batch is cut into consecutive minibatches, each followed by a "
                  "weight update (or every --wupdate-freq of them) (default 128)"),
    "layer_def": ("FILE", "layer-definition file (.cfg), or a bundled network's name; set once, when the run starts "
                          "(mandatory for a new run)"),
    "layer_params": ("FILE", "layer-parameter file (learning rates, momentum, decay); read again at every start, "
                             "resumes included (mandatory for a new run)"),
    "crop_border": ("B", "cropping providers cut squares 2B pixels smaller than the stored images; set once, when "
                         "the run starts (default 4)"),
    "color_noise": ("C", "strength of the random colour shift added to training images along the data's principal "
                         "colour axes; 0 turns it off (default 0.0)"),
    "test_only": ("0|1", "1: no training; test once (one batch, or the whole range with --test-one=0), print each "
                         "batch's cost sums and the test block, and exit (default 0)"),
    "seed": ("N", "seed of the initial weights and of every random draw (crops, flips, noise, dropout); this "
                  "harness's addition (default 0)"),
    "device": ("cpu|cuda|cuda:N", "where the network runs: the engine on cpu or cuda, the port (--backend port) on "
                                  "any torch device; this harness's addition (default cpu)"),
    "backend": ("engine|port", "what trains: the C++ engine, or the PyTorch port with ReleaseSGD (same options, "
                               "draws, log lines and checkpoints; docs/scaling.md); this harness's addition "
                               "(default engine)"),
    "multiview_test": ("0|1", "1: test every image on several crops (10 for ImageNet, 9 for CIFAR) and average "
                              "the predicted probabilities (default 0)"),
    "scalar_mean": ("X", "nonzero: the ImageNet providers subtract one mean value from every pixel instead of "
                         "the mean image (default 0.0)"),
    "decode_workers": ("N", "processes that decode JPEG batches; 0 decodes in this process; this harness's "
                            "addition (default 1)"),
    "gpu": ("IDS", "CUDA device ids, comma-separated: entry i runs the layers with gpu=i, -1 lets the engine "
                   "choose; used with --device cuda, a CPU run accepts it with a note (default -1 for each GPU)"),
    "num_gpus": ("N", "GPUs the network is spread over: every layer's gpu= must be below N; with --device cuda "
                      "the layers run on N devices (default 0: the number of --gpu ids, else gpu= is not checked "
                      "and every visible GPU is used)"),
    "zip_save": ("0|1", "1: checkpoints are written compressed (deflate inside the .npz); same content, smaller "
                        "files (default 0)"),
    "conserve_mem": ("0|1", "the release freed activation buffers early to save GPU memory; accepted with a "
                            "note, since this engine allocates every buffer once and the numbers are the same "
                            "(default 0)"),
    "check_grads": ("0|1", "1: instead of training, compare every weight's gradient with a central finite "
                           "difference on one minibatch (data from dummy-lr-<D>, or the first training batch); "
                           "exit status 1 unless every matrix is within 2 percent (the release's one-sided rule: "
                           "alexnet-replay check-grads --one-sided) (default 0)"),
    "test_out": ("DIR", "after each test, write each test batch's predicted class probabilities to "
                        "DIR/test_preds_<batch>, a pickled dict; needs --logreg-name and --multiview-test on the "
                        "same command line (default: none written)"),
    "logreg_name": ("NAME", "the cost.logreg layer whose probabilities --test-out writes (default: none)"),
    "unshare_weights": ("LIST", "L[i],M[j],...: give layer L's shared weight matrix i (0 if [i] is left out) its "
                                "own copy, which then trains apart; done once, at this start (default: none)"),
    "conv_to_local": ("LAYERS", "refused: the release's conversion of conv layers into local ones was broken and "
                               "never ran (default: none)"),
    "pca_noise": ("X", "accepted and stored; the release never used it (default 0.0)"),
    "wupdate_freq": ("F", "update the weights once every F minibatches: the gradients of F minibatches are added "
                          "up (divided by F times --mini, even when a minibatch is short) and momentum is applied "
                          "once per update; 1 updates after every minibatch (default 1)"),
    "init_from": ("CHECKPOINT", "an earlier run's checkpoint (this project's .npz or the release's pickle) for "
                                "the layers whose initWFunc/initBFunc/initCFunc copy a layer of that run, such as "
                                "initw.makew(conv1a); needed by those definition files, used when a run starts; "
                                "this harness's addition (default: none)"),
}


def parse_range(text: str, option: str) -> list[int]:
    """``a-b`` (inclusive) or ``n`` (§C.1), batch numbers up to 2^31 - 1, at most MAX_RANGE of them."""
    flag = f"--{option.replace('_', '-')}"
    m = re.fullmatch(r"\s*(\d{1,12})\s*(?:-\s*(\d{1,12})\s*)?", str(text))
    if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
        raise ReplayError(f"{flag}: expected a range like 1-5 or a number, got {quote(text)}")
    first, last = int(m.group(1)), int(m.group(2) or m.group(1))
    if last > _INT_MAX:
        raise ReplayError(f"{flag}={quote(text)}: batch numbers go up to {_INT_MAX}")
    if last - first + 1 > MAX_RANGE:
        raise ReplayError(f"{flag}={quote(text)}: {last - first + 1} batches; a range holds at most {MAX_RANGE}")
    return list(range(first, last + 1))


def resolved_path(text: str) -> str:
    """A path option's value made absolute (against the working folder, without following
    symbolic links); a bundled network's name (``cifar-18pct``) where
    no such file exists stays as it is, and so does "" (not given)."""
    if not text or (text in networks.names() and not Path(text).exists()):
        return text
    return os.path.abspath(os.path.expanduser(text))  # links are not followed: messages keep the user's names


def _described(value: Any) -> str:
    """A stored value of the wrong type, said briefly: ``text '128'``, ``a list``, ``true``."""
    if isinstance(value, str):
        return f"text {quote(value)}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return {list: "a list", tuple: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def check_values(options: dict[str, Any]) -> None:
    """Every option's value has its type (an edited checkpoint may hold anything) and lies in
    BOUNDS; the first that does not is refused, naming it."""
    for name, (kind, _) in OPTIONS.items():
        value = options.get(name)
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if kind is str:
            if not isinstance(value, str):
                raise ReplayError(f"{flag}: expected text, got {_described(value)}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and
                                                                             not isinstance(value, int)):
            raise ReplayError(f"{flag}: expected {'an integer' if kind is int else 'a number'}, "
                              f"got {_described(value)}")
        lo, hi = BOUNDS.get(name, (float("-inf"), float("inf")))
        if not math.isfinite(value) or not lo <= value <= hi:
            span = f"from {lo} to {hi}" if math.isfinite(hi) else f"finite and at least {lo}" \
                if math.isfinite(lo) else "finite"
            raise ReplayError(f"{flag}={value!r}: must be {span}")


def parse_gpus(text: str) -> list[int]:
    """``--gpu``: comma-separated device ids, ``-1`` for "the engine's choice" (§C.2); [] for ""."""
    if not text.strip():
        return []
    try:
        ids = [int(v) for v in text.split(",")]
    except ValueError:
        ids = []
    if not ids or min(ids) < -1 or max(ids) > 1023:
        raise ReplayError(f"--gpu: expected device ids separated by commas, such as 0 or 0,1 (-1: any), got {text!r}")
    explicit = [i for i in ids if i >= 0]
    if len(set(explicit)) != len(explicit):
        raise ReplayError(f"--gpu={text}: a device appears twice; each entry serves its own gpu= index")
    return ids


def parse_names(text: str, option: str) -> list[str]:
    """A comma-separated list of layer names ("" is the empty list)."""
    names = [n.strip() for n in text.split(",")] if text.strip() else []
    if any(not n for n in names):
        raise ReplayError(f"--{option.replace('_', '-')}: expected layer names separated by commas, got {text!r}")
    return names


def parse_unshare(text: str) -> list[tuple[str, int]]:
    """``--unshare-weights=L[i],M``: (layer, matrix index) pairs; ``L`` alone is matrix 0 (§A.7)."""
    out = []
    for item in parse_names(text, "unshare_weights"):
        m = re.fullmatch(r"([^\[\]]+?)(?:\[(\d+)\])?", item)
        if not m:
            raise ReplayError(f"--unshare-weights: expected LAYER or LAYER[index], got {item!r}")
        out.append((m.group(1), int(m.group(2) or 0)))
    return out


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``train`` (and of ``schedule run``, which passes them to every stage)."""
    p.add_argument("-f", dest="load_file", metavar="PATH",
                   help="resume from a checkpoint file or folder (this project's .npz, or the release's pickle); "
                        "the options stored in it apply unless given again (default: start a new run)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no per-batch or per-test lines; only the final result (default: off)")
    for name, (kind, default) in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        metavar, text = HELP.get(name, (None, ""))
        if not text:  # an option without a HELP entry still says its default
            text = "(" + ("mandatory for a new run" if default is None else f"default {default!r}") + ")"
        # argparse %-formats help texts
        p.add_argument(flag, dest=name, type=kind, default=None, metavar=metavar, help=text.replace("%", "%%"))
