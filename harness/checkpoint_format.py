"""Which checkpoint a path names, and in which format (driver.md §C.7): the one place that
tells them apart.

Two formats are read: this project's (``E.B.npz``, a zip of ``.npy`` members, see
:mod:`.checkpoint`) and the 2012 driver's (a file ``E.B`` holding a protocol-2 pickle,
possibly gzipped or inside a zip archive whose one member is ``data``, see
:mod:`.release_checkpoint`). A folder stands for its newest checkpoint: the last file in
natural order, as the release's ``-f`` loads it.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Literal

from ..errors import ReplayError

__all__ = ["NPZ", "RELEASE", "checkpoint_format", "natural_key", "newest_checkpoint"]

NPZ, RELEASE = "npz", "release"
Format = Literal["npz", "release"]


def natural_key(path: Path) -> list[int]:
    """The numbers in a file name, for §C.7's natural order (``2.10`` after ``2.9``)."""
    return [int(t) for t in re.findall(r"\d+", path.name)]


def newest_checkpoint(path: str | Path) -> Path:
    """`path` itself, or for a folder the last checkpoint in it in natural order: this
    project's ``E.B.npz`` files, else the release's ``E.B`` pickles."""
    path = Path(path)
    if not path.is_dir():
        return path
    files = sorted(path.glob("*.npz"), key=natural_key) or \
        sorted((p for p in path.iterdir() if re.fullmatch(r"\d+\.\d+", p.name)), key=natural_key)
    if not files:
        raise ReplayError(f"{path}: no checkpoint in this folder")
    return files[-1]


def checkpoint_format(path: str | Path) -> Format:
    """:data:`RELEASE` for a file that is not this project's ``.npz`` (a pickle, a gzip file,
    or a zip archive with a member ``data``), else :data:`NPZ`.

    A path that is not a file, or a damaged zip, counts as :data:`NPZ`: the reader of this
    project's format then says what is wrong with it ("no such checkpoint", "truncated").
    """
    path = Path(path)
    if not path.is_file():
        return NPZ
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        return RELEASE
    try:
        with zipfile.ZipFile(path) as zf:
            return RELEASE if "data" in zf.namelist() else NPZ
    except zipfile.BadZipFile:
        return NPZ
