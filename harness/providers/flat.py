"""The providers of flat vectors (driver.md §D.2, §D.7): ``flatmem`` (batches of D-value
vectors, all held in memory) and ``dummy-lr-<D>`` (random D-value vectors, no files, for
gradient checks). No crops, flips or views.
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

__all__ = ["DummyProvider", "FlatMemProvider"]


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
    by the batch number, so they repeat.
    """

    CASES = 512
    CLASSES = 10
    num_views = 1

    def __init__(self, name: str, batch_range: Sequence[int], *, test: bool = False, rng: Rng | None = None) -> None:
        m = re.fullmatch(r"dummy-lr-(\d+)", name)
        if not m or int(m.group(1)) < 1:
            raise DataError(f"data provider '{name}': expected dummy-lr-<D> with D >= 1 data rows")
        self.name = name
        self.dims = int(m.group(1))
        self.batch_range = batch_list(batch_range)
        self.test = bool(test)
        self.rng = rng

    def get_num_classes(self) -> int:
        return self.CLASSES

    def get_data_dims(self, idx: int = 0) -> int:
        dims = [self.dims, 1, 1]
        if not 0 <= idx < 3:
            raise DataError(f"dataIdx {idx}: provider '{self.name}' returns 3 matrices (dataIdx 0..2)")
        return dims[idx]

    num_matrices = 3

    def get_batch(self, batch_num: int, rng: Rng | None = None) -> list[np.ndarray]:
        if self.test or (rng is None and self.rng is None):
            rng = np.random.default_rng([int(batch_num)])
        rng = rng if rng is not None else self.rng
        if isinstance(rng, np.random.Generator):
            data = rng.standard_normal((self.dims, self.CASES), dtype=np.float32)
        else:
            data = rng.standard_normal((self.dims, self.CASES)).astype(np.float32)
        labels = uniform_integers(rng, self.CLASSES, self.CASES).astype(np.float32).reshape(1, -1)
        return [data, labels, np.ones((1, self.CASES), dtype=np.float32)]
