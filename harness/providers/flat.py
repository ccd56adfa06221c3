"""The providers of flat vectors (driver.md §D.2, §D.7): ``flatmem`` (batches of D-value
vectors, all held in memory), and ``dummy-lr-<D>`` and ``dummy-ce-<D>`` (random D-value
vectors, no files, for gradient checks). No crops, flips or views.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np

from ..batches import BatchMeta, read_batch
from ..pickles import DataError
from .augment import Rng, uniform_integers
from .base import Provider, batch_list, one_hot, read_only

__all__ = ["DummyCEProvider", "DummyProvider", "FlatMemProvider"]


class FlatMemProvider(Provider):
    """``flatmem`` (driver.md §D.2, §D.7): dicts ``data`` (D × N) and ``labels``, all batches kept in
    memory; returns [data − data_mean (D, N), one-hot (classes, N)]."""

    name = "flatmem"

    def __init__(self, data_dir: str | os.PathLike, batch_range: Sequence[int], *, test: bool = False,
                 meta: BatchMeta | None = None) -> None:
        super().__init__(data_dir, batch_range, test=test, meta=meta)
        mean = self.meta.data_mean.astype(np.float32)
        self._batches = {}
        for b in self.batch_range:
            batch = read_batch(self.data_dir, b, self.meta)
            self._batches[b] = [read_only(np.ascontiguousarray(batch.data.astype(np.float32) - mean)),
                                read_only(one_hot(batch.labels, self.meta.num_classes))]

    def _dims(self) -> list[int]:
        return [self.meta.num_vis, self.meta.num_classes]

    def get_batch(self, batch_num: int, rng: Rng | None = None) -> list[np.ndarray]:
        self._check_num(batch_num)
        return list(self._batches[batch_num])


class DummyProvider:
    """``dummy-lr-<D>`` (driver.md §D.2, §D.7): 512 random cases for gradient checks, no files.

    Returns [data (D, 512) float32 standard normal, labels (1, 512) uniform in 0..9, gates
    (1, 512)]. The spec does not say what the release's "toy tree" gates hold; here they are
    all 1. Training batches draw from the generator handed in; test batches from one seeded
    by the batch number, so they repeat. Order of draws: the data (D × N, row-major), then the
    N labels.
    """

    PREFIX = "dummy-lr"
    CASES = 512
    CLASSES = 10
    num_views = 1

    def __init__(self, name: str, batch_range: Sequence[int], *, test: bool = False, rng: Rng | None = None) -> None:
        m = re.fullmatch(rf"{self.PREFIX}-(\d+)", name)
        if not m or int(m.group(1)) < 1:
            raise DataError(f"data provider '{name}': expected {self.PREFIX}-<D> with D >= 1 data rows")
        self.name = name
        self.dims = int(m.group(1))
        self.batch_range = batch_list(batch_range)
        self.test = bool(test)
        self.rng = rng

    def get_num_classes(self) -> int:
        return self.CLASSES

    def _dims(self) -> list[int]:
        return [self.dims, 1, 1]

    def get_data_dims(self, idx: int = 0) -> int:
        dims = self._dims()
        if not 0 <= idx < len(dims):
            raise DataError(f"dataIdx {idx}: provider '{self.name}' returns {len(dims)} matrices "
                            f"(dataIdx 0..{len(dims) - 1})")
        return dims[idx]

    @property
    def num_matrices(self) -> int:
        return len(self._dims())

    def _draw(self, batch_num: int, rng: Rng | None) -> tuple[np.ndarray, np.ndarray]:
        """(data (D, CASES) float32, labels (CASES,) int64 in 0 … CLASSES−1) of one batch."""
        if self.test or (rng is None and self.rng is None):
            rng = np.random.default_rng([int(batch_num)])
        rng = rng if rng is not None else self.rng
        if isinstance(rng, np.random.Generator):
            data = rng.standard_normal((self.dims, self.CASES), dtype=np.float32)
        else:
            data = rng.standard_normal((self.dims, self.CASES)).astype(np.float32)
        return data, uniform_integers(rng, self.CLASSES, self.CASES)

    def get_batch(self, batch_num: int, rng: Rng | None = None) -> list[np.ndarray]:
        data, labels = self._draw(batch_num, rng)
        return [data, labels.astype(np.float32).reshape(1, -1), np.ones((1, self.CASES), dtype=np.float32)]


class DummyCEProvider(DummyProvider):
    """``dummy-ce-<D>`` (driver.md §D.2, §D.7): 16 random cases of 16 classes, no files, for a
    cross-entropy cost (``cost.crossent``, ``cost.crossent2``; §A.3).

    Returns [data (D, 16) float32 standard normal, one-hot labels (16, 16)]: column n has its 1
    in row labels[n], labels uniform in 0..15. The spec says only "[rand, one-hot]"; the data
    are drawn as ``dummy-lr-<D>``'s (standard normal), from the same generators in the same
    order (data, then labels): the one handed in for training batches, one seeded by the batch
    number for test batches.
    """

    PREFIX = "dummy-ce"
    CASES = 16
    CLASSES = 16

    def _dims(self) -> list[int]:
        return [self.dims, self.CLASSES]

    def get_batch(self, batch_num: int, rng: Rng | None = None) -> list[np.ndarray]:
        data, labels = self._draw(batch_num, rng)
        return [data, one_hot(labels, self.CLASSES)]
