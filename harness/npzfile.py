"""Reading this project's ``.npz`` files (checkpoints) within bounds, without pickle.

``numpy.load`` of an ``.npz`` trusts each member's ``.npy`` header: a member of a few
bytes that declares a shape of 10¹² floats makes it allocate the array before reading
the data, and a deflated member can hold far more than its file. Here every member's
declared sizes are checked first: the zip entry's uncompressed size against the limit,
and the ``.npy`` header's shape and dtype against the entry's size (they must agree
exactly); only then is it read, and zipfile stops at the declared size and checks the
CRC. Object dtypes (pickles) are refused, as ``allow_pickle=False`` refuses them.

Problems raise :class:`NpzProblem` with the reason; the checkpoint reader names the file.
"""

from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format

from ..readfile import FileProblem, open_regular_file

__all__ = ["MAX_NPZ_ARRAY_BYTES", "MAX_NPZ_BYTES", "MAX_NPZ_MEMBERS", "NpzProblem", "read_npz"]

# -- limits (docs/fidelity.md, "Limits of the readers") --------------------------------------
# The paper's network has about 60 million weights: 0.5 GB with increments, twice that with
# superEps averages; its largest matrix (fc6, 9216 x 4096 per tower pair) is 151 MB.
MAX_NPZ_BYTES = 8 * 1024**3         # the whole file, and all members decompressed together
MAX_NPZ_ARRAY_BYTES = 2 * 1024**3   # one member
MAX_NPZ_MEMBERS = 10_000            # members of one file


class NpzProblem(Exception):
    """Why an ``.npz`` file cannot be read (the reason, without the file's name)."""


def _member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    name = info.filename
    if info.file_size > MAX_NPZ_ARRAY_BYTES:
        raise NpzProblem(f"member '{name}' declares {info.file_size:,} bytes, more than the "
                         f"{MAX_NPZ_ARRAY_BYTES:,} allowed for one array (limit of the reader)")
    with zf.open(info) as f:
        try:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npy_format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unknown .npy version {version}")
        except ValueError as exc:
            raise NpzProblem(f"member '{name}' is not a .npy array ({str(exc)[:120]})") from None
        if dtype.hasobject:
            raise NpzProblem(f"member '{name}' holds Python objects (dtype {dtype}), which are never read")
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        header = f.tell()
        if header + nbytes != info.file_size:
            raise NpzProblem(f"member '{name}' declares shape {tuple(shape)} of {dtype} ({nbytes:,} bytes) but "
                             f"holds {max(info.file_size - header, 0):,} bytes of data")
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise NpzProblem(f"member '{name}' is truncated")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C").copy(order="K")


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file by name (``.npy`` dropped), read within the limits.
    Raises FileProblem (not a regular file, too large, missing) or NpzProblem."""
    with open_regular_file(path, MAX_NPZ_BYTES, "an .npz file") as f:
        try:
            with zipfile.ZipFile(f) as zf:
                infos = zf.infolist()
                if len(infos) > MAX_NPZ_MEMBERS:
                    raise NpzProblem(f"{len(infos):,} members, more than the {MAX_NPZ_MEMBERS:,} the reader accepts "
                                     "(limit of the reader)")
                total = sum(i.file_size for i in infos)
                if total > MAX_NPZ_BYTES:
                    raise NpzProblem(f"members declare {total:,} bytes together, more than the {MAX_NPZ_BYTES:,} "
                                     "the reader accepts (limit of the reader)")
                out = {}
                for info in infos:
                    if info.is_dir():
                        continue
                    key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                    out[key] = _member(zf, info)
                return out
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
            raise NpzProblem(f"truncated or not a zip archive ({str(exc)[:160]})") from None
        except OSError as exc:
            raise NpzProblem(f"cannot read ({exc.strerror or exc})") from None


FileProblem = FileProblem  # re-exported for callers that catch both
