"""What the providers that read a data folder share (driver.md §D.1, §D.2).

:class:`Provider` holds a folder's ``batches.meta`` and batch range, checks at start-up
that every batch file is there, and answers the driver's questions (number of classes,
rows of each matrix). :class:`CroppingProvider` adds what ``cifar-cropped`` and the
ImageNet providers share: the options of cropping (``--crop-border``,
``--multiview-test``, ``--color-noise``, the chunk of images sharing a draw), checked
once, and the drawing of a training batch's random choices (:mod:`.augment`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..batches import BatchMeta, batch_path, read_batch, read_meta
from ..pickles import DataError
from .augment import BatchDraws, Rng, draw_color_noise, draw_crops

__all__ = ["CroppingProvider", "Provider", "batch_list", "multi_hot", "one_hot", "read_only"]


def read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def batch_list(batch_range: Sequence[int] | range) -> list[int]:
    nums = [int(b) for b in batch_range]
    if not nums:
        raise DataError("the batch range is empty")
    return nums


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, N) float32 with a 1 in row labels[n] of column n."""
    out = np.zeros((num_classes, labels.size), dtype=np.float32)
    out[labels, np.arange(labels.size)] = 1.0
    return out


def multi_hot(rows: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """(classes, N) float32 with a 1 in every row of rows[n] in column n (a row named twice is
    still 1), 0 elsewhere; N = len(rows)."""
    out = np.zeros((num_classes, len(rows)), dtype=np.float32)
    for n, r in enumerate(rows):
        out[np.asarray(r, dtype=np.int64), n] = 1.0
    return out


class Provider:
    name = ""

    def __init__(self, data_dir: str | os.PathLike, batch_range: Sequence[int], *, test: bool,
                 meta: BatchMeta | None) -> None:
        self.data_dir = Path(data_dir)
        self.batch_range = batch_list(batch_range)
        self.test = bool(test)
        self.meta = meta if meta is not None else read_meta(self.data_dir)
        for b in self.batch_range:  # fail at start-up, not hours into a run
            if not batch_path(self.data_dir, b).is_file():
                read_batch(self.data_dir, b, self.meta)  # raises the DataError naming the file

    def get_num_classes(self) -> int:
        """``len(batches.meta['label_names'])`` (driver.md §D.1)."""
        return self.meta.num_classes

    def _dims(self) -> list[int]:
        raise NotImplementedError

    def get_data_dims(self, idx: int = 0) -> int:
        """Rows of matrix `idx` (the ``dataIdx`` of a data layer), driver.md §D.2."""
        dims = self._dims()
        if not 0 <= idx < len(dims):
            raise DataError(f"dataIdx {idx}: provider '{self.name}' returns {len(dims)} matrices "
                            f"(dataIdx 0..{len(dims) - 1})")
        return dims[idx]

    @property
    def num_matrices(self) -> int:
        return len(self._dims())

    def _check_num(self, batch_num: int) -> None:
        if batch_num not in self.batch_range:
            raise DataError(f"batch {batch_num} is not in this provider's range "
                            f"{self.batch_range[0]}..{self.batch_range[-1]}", file=self.data_dir)


class CroppingProvider(Provider):
    """A provider returning [crops − mean (3·s², N·views), labels (1, N·views)], s = S − 2b.

    Keeps the checked options as ``image_size`` (S), ``border`` (b), ``crop_size`` (s),
    ``multiview``, ``chunk``, ``rng`` (the generator used when none is handed in) and
    ``color_noise``; :attr:`last_draws` is the draws of the last training batch.
    """

    def __init__(self, data_dir: str | os.PathLike, batch_range: Sequence[int], *, test: bool, multiview: bool,
                 crop_border: int, chunk: int, rng: Rng | None, color_noise: float, meta: BatchMeta | None) -> None:
        super().__init__(data_dir, batch_range, test=test, meta=meta)
        size = self.meta.image_size
        if size is None:
            raise DataError(f"num_vis = {self.meta.num_vis} is not 3·S² for a square RGB image",
                            file=self.meta.path, key="num_vis")
        if crop_border < 0 or 2 * crop_border >= size:
            raise DataError(f"--crop-border={crop_border}: must be in 0..{(size - 1) // 2} for "
                            f"{size}x{size} images")
        if multiview and not test:
            raise DataError("multiview applies to the test provider only (--multiview-test)")
        if chunk < 1:
            raise DataError(f"chunk must be >= 1 (got {chunk})")
        if color_noise < 0:
            raise DataError(f"--color-noise={color_noise}: must be >= 0")
        if color_noise > 0 and self.meta.color_pca is None:
            raise DataError("missing, but --color-noise > 0 needs it (driver.md §D.6)",
                            file=self.meta.path, key="color_pca")
        self.image_size = size
        self.border = int(crop_border)
        self.crop_size = size - 2 * self.border
        self.multiview = bool(multiview)
        self.chunk = int(chunk)
        self.rng = rng
        self.color_noise = float(color_noise)
        self.last_draws: BatchDraws | None = None

    def _dims(self) -> list[int]:
        return [3 * self.crop_size ** 2, 1]

    def draw(self, num_images: int, rng: Rng) -> BatchDraws:
        """The draws of one training batch: crops per chunk (:func:`.augment.draw_crops`), then
        colour noise if on."""
        d = draw_crops(rng, num_images, self.border, self.chunk)
        if self.color_noise > 0:
            d.noise = draw_color_noise(rng, num_images)
        return d

    def _training_draws(self, num_images: int, draws: BatchDraws | None, rng: Rng | None) -> BatchDraws:
        """`draws` when given, else drawn from `rng`; either way they must fit the options."""
        if draws is None:
            if rng is None:
                raise DataError(f"a training batch of {self.name} needs a random generator (rng=) or "
                                "ready-made draws (draws=)")
            draws = self.draw(num_images, rng)
        if self.color_noise > 0 and draws.noise is None:
            raise DataError("the draws hold no colour noise, but color_noise > 0")
        return draws
