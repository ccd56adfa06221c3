"""The data providers of the release's CIFAR networks (driver.md §D.2, §D.3) and PCA colour noise (§D.6).

A provider turns one data batch into the list of float32 matrices the net's data
layers read (``dataIdx`` picks an entry), each (D, N) with one column per case and
C-ordered, so the case index is fastest in memory (driver.md §0; the engine's
layout). ``get_batch(batch_num)`` does not depend on the epoch; the training loop
owns the order of batches and epochs (driver.md §C.4).

Randomness is data (STYLE habit 5): crop offsets, flips and colour-noise draws come
from a numpy ``Generator`` (or legacy ``RandomState``) handed in, or are passed in
ready-made as :class:`BatchDraws`, and every batch records the draws it used
(:attr:`CIFARCroppedProvider.last_draws`). :func:`batch_rng` derives one generator
per (seed, epoch, batch) so a resumed run replays the same draws bit for bit.

Arithmetic (the release does not state it): pixels and the mean are converted to
float32 and subtracted in float32, one rounding per value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np

from .batches import BatchMeta, batch_path, read_batch, read_meta
from .pickles import DataError

__all__ = [
    "BatchDraws",
    "CIFARProvider",
    "CIFARCroppedProvider",
    "PROVIDERS",
    "apply_color_noise",
    "apply_crops",
    "batch_rng",
    "color_noise",
    "draw_color_noise",
    "draw_crops",
    "make_provider",
    "minibatches",
    "multiview_offsets",
]

Rng = Union[np.random.Generator, np.random.RandomState]


def batch_rng(seed: int, epoch: int, batch_num: int) -> np.random.Generator:
    """A generator for the draws of one training batch, fixed by (seed, epoch, batch_num).

    Using one per batch makes the draws independent of how many batches ran before in
    this process, so a run resumed from a checkpoint draws what the uninterrupted run drew.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch), int(batch_num)])))


def _integers(rng: Rng, high_exclusive: int, size) -> np.ndarray:
    if isinstance(rng, np.random.Generator):
        return rng.integers(0, high_exclusive, size=size, dtype=np.int64)
    if isinstance(rng, np.random.RandomState):
        return rng.randint(0, high_exclusive, size=size).astype(np.int64)
    raise TypeError(f"rng must be a numpy Generator or RandomState, not {type(rng).__name__}")


# -- crops and flips (driver.md §D.3, §D.4 step 2) ------------------------------------------------

@dataclass
class BatchDraws:
    """The random choices of one training batch.

    ``offsets[k] = (y, x)`` in 0 … 2b and ``flips[k]`` (mirror left-right) apply to the
    images ``k*chunk … (k+1)*chunk − 1``; ``noise`` is the (N, 3) float32 colour-noise draw
    r_i of every image, or None without colour noise.
    """

    offsets: np.ndarray           # (K, 2) int64, (y, x)
    flips: np.ndarray             # (K,) bool
    chunk: int = 1
    noise: np.ndarray | None = None  # (N, 3) float32

    def per_image(self, num_images: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) offsets and (N,) flips, each chunk's choice repeated for its images."""
        k = -(-num_images // self.chunk)
        if len(self.offsets) < k or len(self.flips) < k:
            raise ValueError(f"draws cover {len(self.offsets)} chunk(s) of {self.chunk}; "
                             f"{num_images} images need {k}")
        off = np.repeat(np.asarray(self.offsets, dtype=np.int64)[:k], self.chunk, axis=0)[:num_images]
        flp = np.repeat(np.asarray(self.flips, dtype=bool)[:k], self.chunk)[:num_images]
        return off, flp


def draw_crops(rng: Rng, num_images: int, border: int, chunk: int = 1) -> BatchDraws:
    """Draw one offset (y, x), uniform in {0 … 2·border}², and one flip (p = ½) per chunk of
    `chunk` consecutive images. Order of draws: all offsets (K × 2, y then x), then all flips."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 (got {chunk})")
    k = -(-num_images // chunk)
    offsets = _integers(rng, 2 * border + 1, (k, 2))
    flips = _integers(rng, 2, k).astype(bool)
    return BatchDraws(offsets=offsets, flips=flips, chunk=chunk)


def _crop_gather(images: np.ndarray, size: int, offsets: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """(C, S, S, N) images → (C, s, s, N) crops: crop n is the s×s window at offsets[n] = (y, x),
    mirrored left-right when flips[n]."""
    c, _, _, n = images.shape
    ar = np.arange(size)
    yy = offsets[:, 0][None, :] + ar[:, None]                       # (s, N) source rows
    cols = np.where(flips[None, :], size - 1 - ar[:, None], ar[:, None])
    xx = offsets[:, 1][None, :] + cols                               # (s, N) source columns
    ci = np.arange(c)[:, None, None, None]
    ni = np.arange(n)[None, None, None, :]
    return images[ci, yy[None, :, None, :], xx[None, None, :, :], ni]


def apply_crops(data: np.ndarray, image_size: int, border: int, offsets: np.ndarray,
                flips: np.ndarray) -> np.ndarray:
    """Crop every column of `data` ((3·S², N), channel-major pixels) at its own offset.

    `offsets` (N, 2) = (y, x) in 0 … 2b per image, `flips` (N,) bool: the crop is taken from
    the unflipped image, then mirrored left-right. Returns (3·s², N) in `data`'s dtype,
    s = S − 2b, C-ordered.
    """
    s = image_size - 2 * border
    n = data.shape[1]
    offsets = np.asarray(offsets, dtype=np.int64).reshape(n, 2)
    flips = np.asarray(flips, dtype=bool).reshape(n)
    if offsets.size and (offsets.min() < 0 or offsets.max() > 2 * border):
        raise ValueError(f"crop offsets must lie in 0..{2 * border}")
    images = data.reshape(-1, image_size, image_size, n)
    return np.ascontiguousarray(_crop_gather(images, s, offsets, flips).reshape(-1, n))


def multiview_offsets(border: int) -> list[tuple[int, int]]:
    """The 9 CIFAR test views (driver.md §D.3): offsets {0, b, 2b}², row-major (y outer), unflipped."""
    steps = (0, border, 2 * border)
    return [(y, x) for y in steps for x in steps]


def centre_window(mean: np.ndarray, image_size: int, border: int) -> np.ndarray:
    """The (S−2b)² centre window of the (3·S², 1) mean image, as a (3·s², 1) column."""
    s = image_size - 2 * border
    m = np.asarray(mean).reshape(-1, image_size, image_size)
    return np.ascontiguousarray(m[:, border:border + s, border:border + s].reshape(-1, 1))


# -- PCA colour noise (driver.md §D.6) -------------------------------------------------------------

def draw_color_noise(rng: Rng, num_images: int) -> np.ndarray:
    """r_i ~ N(0, I₃) in float32 for every image: an (N, 3) array."""
    if isinstance(rng, np.random.Generator):
        return rng.standard_normal((num_images, 3), dtype=np.float32)
    if isinstance(rng, np.random.RandomState):
        return rng.standard_normal((num_images, 3)).astype(np.float32)
    raise TypeError(f"rng must be a numpy Generator or RandomState, not {type(rng).__name__}")


def apply_color_noise(batch: np.ndarray, s, v, c: float, draws: np.ndarray) -> np.ndarray:
    """driver.md §D.6 with given draws: n_i = V·(s∘r_i); add c·n_i[ch] to every pixel of
    channel ch of image i; divide the whole batch by (1 + c). Returns a new float32 array.

    `batch` is (3·P, N) float32, channel-major rows (P pixels per channel), one column per
    image, already mean-subtracted. Float32 throughout, in this order:
    t = s∘r; n[ch] = (V[ch,0]·t0 + V[ch,1]·t1) + V[ch,2]·t2; x' = (x + c·n[ch]) / float32(1 + c).
    """
    batch = np.asarray(batch, dtype=np.float32)
    rows, n = batch.shape
    if rows % 3:
        raise ValueError(f"batch has {rows} rows; colour noise needs 3 channels")
    r = np.asarray(draws, dtype=np.float32).reshape(n, 3)
    s32 = np.asarray(s, dtype=np.float32).reshape(3)
    v32 = np.asarray(v, dtype=np.float32).reshape(3, 3)
    c32 = np.float32(c)
    t = s32[None, :] * r                                                       # (N, 3)
    noise = (v32[:, 0:1] * t[:, 0] + v32[:, 1:2] * t[:, 1]) + v32[:, 2:3] * t[:, 2]  # (3, N): n_i[ch]
    shift = c32 * noise
    out = batch.reshape(3, rows // 3, n) + shift[:, None, :]
    out /= np.float32(1.0 + c)
    return out.reshape(rows, n)


def color_noise(batch: np.ndarray, s, v, c: float, rng: Rng | None = None, *,
                draws: np.ndarray | None = None) -> np.ndarray:
    """PCA colour noise of driver.md §D.6 on a (3·P, N) float32 batch; the draws r come from
    `draws` when given, else from `rng` (:func:`draw_color_noise`). c = 0 returns the batch
    unchanged (as float32) and draws nothing."""
    if c == 0:
        return np.asarray(batch, dtype=np.float32)
    if draws is None:
        if rng is None:
            raise ValueError("color_noise needs rng or draws")
        draws = draw_color_noise(rng, np.shape(batch)[1])
    return apply_color_noise(batch, s, v, c, draws)


# -- providers -------------------------------------------------------------------------------------

def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _batch_list(batch_range: Sequence[int] | range) -> list[int]:
    nums = [int(b) for b in batch_range]
    if not nums:
        raise DataError("the batch range is empty")
    return nums


class _Provider:
    name = ""

    def __init__(self, data_dir: str | os.PathLike, batch_range: Sequence[int], *, test: bool,
                 meta: BatchMeta | None) -> None:
        self.data_dir = Path(data_dir)
        self.batch_range = _batch_list(batch_range)
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


class CIFARProvider(_Provider):
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
            onehot = np.zeros((self.meta.num_classes, b.num_cases), dtype=np.float32)
            onehot[b.labels, np.arange(b.num_cases)] = 1.0
            self._cache[batch_num] = [_read_only(np.ascontiguousarray(m)) for m in (data, labels, onehot)]
        return list(self._cache[batch_num])


class CIFARCroppedProvider(_Provider):
    """``cifar-cropped`` (driver.md §D.2, §D.3): [crops − centre mean (3·s², N·views), labels (1, N·views)].

    s = S − 2b with b = `crop_border`. All batches are read at start-up and kept.

    * training (``test=False``): a random offset (y, x) uniform in 0 … 2b and a left-right
      flip with p = ½, drawn once per chunk of `chunk` consecutive images. §D.3 draws them
      for each image separately, so ``chunk=1`` is the default; ``chunk=32`` gives the
      ImageNet providers' rule (§D.4).
    * test: the centre crop; with ``multiview=True`` the 9 unflipped views of
      :func:`multiview_offsets`, each a block of N columns, labels repeated 9 times.
    * then the centre (s×s) window of the mean image is subtracted from every crop.
    * ``color_noise`` > 0 (not in the release for CIFAR: §D.3 has no colour noise; an
      extension for experiments) applies §D.6 to training batches with
      ``batches.meta['color_pca']``.
    """

    name = "cifar-cropped"

    def __init__(self, data_dir: str | os.PathLike, batch_range: Sequence[int], *, test: bool = False,
                 multiview: bool = False, crop_border: int = 4, chunk: int = 1, rng: Rng | None = None,
                 color_noise: float = 0.0, meta: BatchMeta | None = None) -> None:
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
        self._mean_window = centre_window(self.meta.data_mean, size, self.border).astype(np.float32)
        self._batches = {b: read_batch(self.data_dir, b, self.meta) for b in self.batch_range}

    @property
    def num_views(self) -> int:
        return 9 if self.multiview else 1

    def _dims(self) -> list[int]:
        return [3 * self.crop_size ** 2, 1]

    def draw(self, num_images: int, rng: Rng) -> BatchDraws:
        """The draws of one training batch: crops (:func:`draw_crops`), then colour noise if on."""
        d = draw_crops(rng, num_images, self.border, self.chunk)
        if self.color_noise > 0:
            d.noise = draw_color_noise(rng, num_images)
        return d

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
            if draws is None:
                rng = rng if rng is not None else self.rng
                if rng is None:
                    raise DataError("a training batch of cifar-cropped needs a random generator "
                                    "(rng=) or ready-made draws (draws=)")
                draws = self.draw(n, rng)
            if self.color_noise > 0 and draws.noise is None:
                raise DataError("the draws hold no colour noise, but color_noise > 0")
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


PROVIDERS = {"cifar": CIFARProvider, "cifar-cropped": CIFARCroppedProvider}

_NOT_HERE = ("inet-lr-cropped-jpeg", "inet-lr-cropped", "inet-lr", "inet-rs-lr-cropped", "flickr-ce-cropped",
             "flatmem")


def make_provider(dp_type: str | None, data_dir: str | os.PathLike, batch_range: Sequence[int], *,
                  test: bool = False, multiview: bool = False, crop_border: int = 4, rng: Rng | None = None,
                  chunk: int = 1, color_noise: float = 0.0):
    """The provider named `dp_type` (``--data-provider``), or by ``batches.meta['dp_type']`` when
    `dp_type` is None (driver.md §D.1). Options as in driver.md §C.2."""
    meta = read_meta(data_dir)
    name = dp_type if dp_type is not None else meta.dp_type
    if name is None:
        raise DataError("no --data-provider given and batches.meta has no 'dp_type' "
                        f"(known: {', '.join(PROVIDERS)})", file=meta.path, key="dp_type")
    if name not in PROVIDERS:
        why = "is not implemented by this harness" if name in _NOT_HERE or name.startswith("dummy-") \
            else "is not a provider of the release"
        raise DataError(f"data provider '{name}' {why} (known: {', '.join(PROVIDERS)})")
    if name == "cifar":
        if multiview:
            raise DataError("--multiview-test needs a cropping provider; 'cifar' has no views")
        return CIFARProvider(data_dir, batch_range, test=test, meta=meta)
    return CIFARCroppedProvider(data_dir, batch_range, test=test, multiview=multiview, crop_border=crop_border,
                                chunk=chunk, rng=rng, color_noise=color_noise, meta=meta)


def minibatches(matrices: Sequence[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Cut a batch into consecutive minibatches of `size` columns, the last one shorter
    (driver.md §C.4, ``--mini``). Each piece is a C-contiguous copy."""
    if size < 1:
        raise ValueError(f"minibatch size must be >= 1 (got {size})")
    n = matrices[0].shape[1]
    for start in range(0, n, size):
        yield [np.ascontiguousarray(m[:, start:start + size]) for m in matrices]
