"""The CIFAR providers (driver.md §D.2, §D.3): ``cifar`` (whole images) and ``cifar-cropped``
(random crops and flips for training; the centre crop or 9 views for testing).

Both read batches of uint8 pixel columns (``data``, 3·S² × N) with their ``labels``, and
keep every batch in memory.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..batches import BatchMeta, read_batch
from .augment import BatchDraws, Rng, apply_color_noise, apply_crops, centre_window, multiview_offsets
from .base import CroppingProvider, Provider, one_hot, read_only

__all__ = ["CIFARCroppedProvider", "CIFARProvider"]


class CIFARProvider(Provider):
    """``cifar`` (driver.md §D.2, §D.3): [data − mean (num_vis, N), labels (1, N), one-hot (classes, N)].

    The mean is subtracted once, when a batch is first used; the result is kept and
    returned read-only on later calls.
    """

    name = "cifar"

    def __init__(self, data_dir: str | os.PathLike, batch_range: Sequence[int], *, test: bool = False,
                 meta: BatchMeta | None = None) -> None:
        super().__init__(data_dir, batch_range, test=test, meta=meta)
        self._mean32 = self.meta.data_mean.astype(np.float32)
        self._cache: dict[int, list[np.ndarray]] = {}

    def _dims(self) -> list[int]:
        return [self.meta.num_vis, 1, self.meta.num_classes]

    def get_batch(self, batch_num: int) -> list[np.ndarray]:
        self._check_num(batch_num)
        if batch_num not in self._cache:
            b = read_batch(self.data_dir, batch_num, self.meta)
            data = b.data.astype(np.float32) - self._mean32
            labels = b.labels.astype(np.float32).reshape(1, -1)
            onehot = one_hot(b.labels, self.meta.num_classes)
            self._cache[batch_num] = [read_only(np.ascontiguousarray(m)) for m in (data, labels, onehot)]
        return list(self._cache[batch_num])


class CIFARCroppedProvider(CroppingProvider):
    """``cifar-cropped`` (driver.md §D.2, §D.3): [crops − centre mean (3·s², N·views), labels (1, N·views)].

    s = S − 2b with b = `crop_border`. All batches are read at start-up and kept.

    * training (``test=False``): a random offset (y, x) uniform in 0 … 2b and a left-right
      flip with p = ½, drawn once per chunk of `chunk` consecutive images. §D.3 draws them
      for each image separately, so ``chunk=1`` is the default; ``chunk=32`` gives the
      ImageNet providers' rule (§D.4).
    * test: the centre crop; with ``multiview=True`` the 9 unflipped views of
      :func:`.augment.multiview_offsets`, each a block of N columns, labels repeated 9 times.
    * then the centre (s×s) window of the mean image is subtracted from every crop.
    * ``color_noise`` > 0 (not in the release for CIFAR: §D.3 has no colour noise; an
      extension for experiments) applies §D.6 to training batches with
      ``batches.meta['color_pca']``.
    """

    name = "cifar-cropped"

    def __init__(self, data_dir: str | os.PathLike, batch_range: Sequence[int], *, test: bool = False,
                 multiview: bool = False, crop_border: int = 4, chunk: int = 1, rng: Rng | None = None,
                 color_noise: float = 0.0, meta: BatchMeta | None = None) -> None:
        super().__init__(data_dir, batch_range, test=test, multiview=multiview, crop_border=crop_border,
                         chunk=chunk, rng=rng, color_noise=color_noise, meta=meta)
        self._mean_window = centre_window(self.meta.data_mean, self.image_size, self.border).astype(np.float32)
        self._batches = {b: read_batch(self.data_dir, b, self.meta) for b in self.batch_range}

    @property
    def num_views(self) -> int:
        return 9 if self.multiview else 1

    def get_batch(self, batch_num: int, rng: Rng | None = None,
                  draws: BatchDraws | None = None) -> list[np.ndarray]:
        """The matrices of batch `batch_num`. Training batches use `draws` if given, else draw
        from `rng` (else from the provider's own generator); the draws used are kept in
        :attr:`last_draws`. Test batches draw nothing."""
        self._check_num(batch_num)
        b = self._batches[batch_num]
        n = b.num_cases
        if self.test:
            offs = multiview_offsets(self.border) if self.multiview else [(self.border, self.border)]
            k = self.crop_size
            images = b.data.reshape(3, self.image_size, self.image_size, n)
            views = [images[:, y:y + k, x:x + k, :].reshape(-1, n) for y, x in offs]
            crops = np.concatenate(views, axis=1) if len(views) > 1 else views[0]
            labels = np.tile(b.labels, len(offs))
            out = crops.astype(np.float32) - self._mean_window
        else:
            draws = self._training_draws(n, draws, rng if rng is not None else self.rng)
            off, flp = draws.per_image(n)
            crops = apply_crops(b.data, self.image_size, self.border, off, flp)
            out = crops.astype(np.float32) - self._mean_window
            if self.color_noise > 0:
                s, v = self.meta.color_pca
                out = apply_color_noise(out, s, v, self.color_noise, draws.noise)
            labels = b.labels
            self.last_draws = draws
        return [np.ascontiguousarray(out, dtype=np.float32),
                np.ascontiguousarray(labels.astype(np.float32).reshape(1, -1))]
