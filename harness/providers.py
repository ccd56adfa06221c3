"""The data providers of the release (driver.md §D.2): CIFAR (§D.3), ImageNet JPEG and raw-pixel
batches (§D.4, §D.5), flatmem and dummy (§D.7), and PCA colour noise (§D.6).

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

import io
import logging
import multiprocessing as mp
import os
import re
import threading
import weakref
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np

from .batches import BatchMeta, batch_path, read_batch, read_jpeg_batch, read_meta
from .pickles import DataError

__all__ = [
    "BatchDraws",
    "CIFARProvider",
    "CIFARCroppedProvider",
    "DummyProvider",
    "FlatMemProvider",
    "INET_CHUNK",
    "JPEGCroppedProvider",
    "PROVIDERS",
    "RawCroppedProvider",
    "apply_color_noise",
    "apply_crops",
    "batch_rng",
    "color_noise",
    "decode_image",
    "draw_color_noise",
    "draw_crops",
    "inet_multiview",
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


    def _crop_options(self, crop_border: int, multiview: bool, test: bool, chunk: int, color_noise: float,
                      rng) -> int:
        """Check and keep the options of a cropping provider (--crop-border, --multiview-test,
        chunk, --color-noise); returns the stored image side S."""
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
        return size


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
        size = self._crop_options(crop_border, multiview, test, chunk, color_noise, rng)
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


# -- ImageNet providers (driver.md §D.4, §D.5) -----------------------------------------------------

#: Consecutive images that share one crop offset and flip in the ImageNet providers (§D.4 step 2, §G.8).
INET_CHUNK = 32
#: The raw provider's colour-noise buffer holds this many columns (§D.5).
RAW_NOISE_COLUMNS = 1024

_log = logging.getLogger("alexnet_replay.harness")


def inet_multiview(border: int) -> list[tuple[int, int, bool]]:
    """The 10 ImageNet test views of driver.md §D.4 as (y, x, flip): crops at (0, 0), (0, 2b),
    (b, b), (2b, 0), (2b, 2b) (top-left, top-right, centre, bottom-left, bottom-right), unflipped,
    then the same five flipped left-right."""
    b2 = 2 * border
    corners = [(0, 0), (0, b2), (border, border), (b2, 0), (b2, b2)]
    return [(y, x, False) for y, x in corners] + [(y, x, True) for y, x in corners]


class _Undecodable(Exception):
    """Pillow could not decode an image (the release drops it with its label, §D.4)."""


def decode_image(data: bytes, size: int, fill: int | None = None) -> np.ndarray:
    """One JPEG of a batch as the provider sees it (driver.md §D.4): decoded with Pillow,
    converted to RGB (greyscale and CMYK files too), as a (3, S, S) uint8 array (channel-major).

    The image must be S×S. With ``fill`` (``batches.meta['no_crop']``) a smaller image is pasted
    in the middle (top-left corner at ((S−h)//2, (S−w)//2)) of an S×S canvas of value `fill`.
    Raises :class:`ValueError` with the size for any other shape, and ``_Undecodable`` when
    Pillow cannot decode the bytes.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = im.convert("RGB")  # decodes: a damaged file fails here
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise _Undecodable(f"{type(exc).__name__}: {exc}") from None
    arr = np.asarray(rgb)
    h, w = arr.shape[:2]
    if (h, w) != (size, size):
        if fill is None or h > size or w > size:
            allowed = f"at most {size}x{size} (no_crop)" if fill is not None else f"exactly {size}x{size}"
            raise ValueError(f"is {w}x{h} pixels (width x height); this data set's images must be {allowed}")
        canvas = np.full((size, size, 3), fill, dtype=np.uint8)
        y0, x0 = (size - h) // 2, (size - w) // 2
        canvas[y0:y0 + h, x0:x0 + w] = arr
        arr = canvas
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _jpeg_unit(jpegs: Sequence[bytes], size: int, fill: int | None, crop: int, offsets: np.ndarray,
               flips: np.ndarray):
    """Worker task: decode `jpegs` and cut their views. offsets (n, V, 2) = (y, x), flips (n, V).
    Returns (crops (V, n_ok, 3·crop²) uint8, [(i, reason) undecodable], [(i, reason) wrong size]),
    i local to this unit. Pure function of its arguments, so results do not depend on which
    process runs it."""
    n, views = offsets.shape[:2]
    out = np.empty((views, n, 3 * crop * crop), dtype=np.uint8)
    failed, wrong, j = [], [], 0
    for i, data in enumerate(jpegs):
        try:
            img = decode_image(data, size, fill)
        except _Undecodable as exc:
            failed.append((i, str(exc)))
            continue
        except ValueError as exc:
            wrong.append((i, str(exc)))
            continue
        for v in range(views):
            y, x = int(offsets[i, v, 0]), int(offsets[i, v, 1])
            window = img[:, y:y + crop, x:x + crop]
            out[v, j] = (window[:, :, ::-1] if flips[i, v] else window).reshape(-1)
        j += 1
    return out[:, :j], failed, wrong


class _Pending:
    """A batch being assembled in the background, with the generator state it was drawn from."""

    def __init__(self, state, future) -> None:
        self.state = state
        self.future = future


def _rng_state(rng: Rng | None):
    if isinstance(rng, np.random.Generator):
        return rng.bit_generator.state
    return None  # RandomState and None: no prefetch reuse


_PREFETCH_PREFIX = "alexnet-prefetch"


def _shutdown(threads: ThreadPoolExecutor, pools: list) -> None:
    # The finalizer may run on the prefetch thread itself (when a provider's last reference
    # goes away there); a thread cannot wait for itself, so it only stops the pool then.
    inside = threading.current_thread().name.startswith(_PREFETCH_PREFIX)
    threads.shutdown(wait=not inside, cancel_futures=True)
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)
    pools.clear()


class _InetProvider(_Provider):
    """What ``inet-lr-cropped-jpeg`` and ``inet-lr-cropped`` share (driver.md §D.4, §D.5).

    Returns [crops − mean window (3·s², N·views), labels (1, N·views)], s = S − 2b.

    * training: one offset (y, x) uniform in 0 … 2b and one left-right flip (p = ½) per chunk
      of `chunk` consecutive images (32, §D.4 step 2 and §G.8; the CIFAR provider's default
      is §D.3's one draw per image); then the centre s×s window of the mean image is
      subtracted from every crop (the overall scalar mean with ``scalar_mean`` or
      ``meta['no_crop']``); then colour noise (§D.6) when `color_noise` > 0.
    * test: the centre crop; with `multiview` the 10 views of :func:`inet_multiview`, each a
      block of N columns, labels repeated 10 times. No colour noise.

    Draws are made in this process from the generator handed in (or taken ready-made as
    :class:`BatchDraws`), before any decoding, for all images of the batch: K = ⌈N/chunk⌉
    offsets, K flips, then N colour-noise rows. When images are dropped, the i-th kept image
    takes chunk ⌊i/chunk⌋ and noise row i, as in the release's buffer.

    :meth:`prefetch` starts assembling a training batch in a background thread (the release
    loads the next batch while the current one trains, §C.4); :meth:`get_batch` uses that
    result when it is called with a generator in the same state, else it assembles the batch
    itself. At most `prefetch_depth` batches are pending. Call :meth:`close` (or use the
    provider as a context manager) to stop the background thread and the worker processes.
    """

    def __init__(self, data_dir: str | os.PathLike, batch_range: Sequence[int], *, test: bool = False,
                 multiview: bool = False, crop_border: int = 16, chunk: int = INET_CHUNK, rng: Rng | None = None,
                 color_noise: float = 0.0, scalar_mean: bool = False, prefetch_depth: int = 1,
                 meta: BatchMeta | None = None) -> None:
        super().__init__(data_dir, batch_range, test=test, meta=meta)
        size = self._crop_options(crop_border, multiview, test, chunk, color_noise, rng)
        self.no_crop = bool(self.meta.raw.get("no_crop", False))
        self.scalar_mean = bool(scalar_mean) or self.no_crop
        mean = self.meta.data_mean.astype(np.float64)
        if self.scalar_mean:
            self._mean_window = np.full((1, 1), np.float32(mean.mean()), dtype=np.float32)
        else:
            self._mean_window = centre_window(mean, size, self.border).astype(np.float32)
        self.last_draws: BatchDraws | None = None
        #: (batch file, image index, reason) of every image dropped because it could not be decoded.
        self.dropped: list[tuple[str, int, str]] = []
        self._depth = max(int(prefetch_depth), 0)
        self._pending: dict[int, _Pending] = {}
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix=_PREFETCH_PREFIX)
        self._pools: list = []
        self._finalizer = weakref.finalize(self, _shutdown, self._threads, self._pools)
        self._closed = False

    # -- life cycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the prefetch thread and the decoding processes (waits for them; idempotent)."""
        self._pending.clear()
        self._closed = True
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- shapes ------------------------------------------------------------------------------------
    @property
    def num_views(self) -> int:
        return 10 if self.multiview else 1

    def _dims(self) -> list[int]:
        return [3 * self.crop_size ** 2, 1]

    def draw(self, num_images: int, rng: Rng) -> BatchDraws:
        """The draws of one training batch: crops per chunk (:func:`draw_crops`), then colour noise."""
        d = draw_crops(rng, num_images, self.border, self.chunk)
        if self.color_noise > 0:
            d.noise = draw_color_noise(rng, num_images)
        return d

    # -- subclasses ----------------------------------------------------------------------------------
    def _load(self, batch_num: int):
        """(source, labels (N,) int64) of one batch."""
        raise NotImplementedError

    def _cut(self, source, offsets: np.ndarray, flips: np.ndarray, path: Path):
        """Views of every image: offsets (n, V, 2), flips (n, V) → (crops (V, n_ok, 3·s²) uint8,
        list of (index, reason) of images that could not be decoded)."""
        raise NotImplementedError

    def _fill(self) -> int | None:
        return int(np.clip(np.rint(self.meta.data_mean.mean()), 0, 255)) if self.no_crop else None

    # -- assembly ------------------------------------------------------------------------------------
    def _views(self, n: int, draws: BatchDraws | None):
        if draws is None:
            views = inet_multiview(self.border) if self.multiview else [(self.border, self.border, False)]
            offs = np.array([[y, x] for y, x, _ in views], dtype=np.int64)
            flp = np.array([f for _, _, f in views], dtype=bool)
            return np.broadcast_to(offs, (n,) + offs.shape), np.broadcast_to(flp, (n,) + flp.shape)
        off, flp = draws.per_image(n)
        return off[:, None, :], flp[:, None]

    def _assemble(self, batch_num: int, draws: BatchDraws | None, rng: Rng | None):
        """(matrices, draws used, images in the batch file)."""
        source, labels = self._load(batch_num)
        path = batch_path(self.data_dir, batch_num)
        n = labels.size
        if n == 0:
            raise DataError("holds no images", file=path)
        if not self.test:
            if draws is None:
                if rng is None:
                    raise DataError(f"a training batch of {self.name} needs a random generator (rng=) or "
                                    "ready-made draws (draws=)")
                draws = self.draw(n, rng)
            if self.color_noise > 0 and draws.noise is None:
                raise DataError("the draws hold no colour noise, but color_noise > 0")
            if draws.noise is not None and len(draws.noise) < n:
                raise DataError(f"the draws hold {len(draws.noise)} noise rows for {n} images")
        keep = np.arange(n)
        offsets, flips = self._views(n, draws)
        crops, failed = self._cut(source, offsets, flips, path)
        if failed:
            # §D.4: an undecodable image is dropped with its label; the kept images take the
            # draws of their new positions, so cut again without the failed ones.
            bad = {i for i, _ in failed}
            for i, reason in failed:
                self.dropped.append((str(path), int(i), reason))
                _log.warning("%s: image %d dropped: cannot decode (%s)", path, i, reason)
            keep = np.array([i for i in range(n) if i not in bad], dtype=np.int64)
            if keep.size == 0:
                raise DataError(f"none of its {n} images can be decoded (first: image {failed[0][0]}: "
                                f"{failed[0][1]})", file=path)
            offsets, flips = self._views(keep.size, draws)
            crops, failed = self._cut(self._subset(source, keep), offsets, flips, path)
            if failed:  # cannot happen for a deterministic decoder
                raise DataError(f"image {int(keep[failed[0][0]])} decoded once and failed the second time",
                                file=path)
        views, kept = crops.shape[0], crops.shape[1]
        out = np.empty((crops.shape[2], views * kept), dtype=np.float32)
        np.subtract(crops.reshape(views * kept, -1).T, self._mean_window, out=out, dtype=np.float32)
        if not self.test and self.color_noise > 0:
            s, v = self.meta.color_pca
            out = apply_color_noise(out, s, v, self.color_noise, draws.noise[:kept])
        lab = np.tile(labels[keep].astype(np.float32), views).reshape(1, -1)
        return [np.ascontiguousarray(out, dtype=np.float32), np.ascontiguousarray(lab)], draws, n

    def _subset(self, source, keep: np.ndarray):
        raise NotImplementedError

    # -- public ------------------------------------------------------------------------------------
    def prefetch(self, batch_num: int, rng: Rng | None = None) -> bool:
        """Start assembling training batch `batch_num` in the background with draws from `rng`
        (a numpy Generator the caller does not use afterwards). Returns whether it was queued
        (not for test providers, other generators, or when `prefetch_depth` batches are pending)."""
        state = _rng_state(rng)
        full = len(self._pending) >= self._depth
        if self._closed or self.test or state is None or batch_num not in self.batch_range or full \
                or batch_num in self._pending:
            return False
        self._pending[batch_num] = _Pending(state, self._threads.submit(self._assemble, batch_num, None, rng))
        return True

    def get_batch(self, batch_num: int, rng: Rng | None = None,
                  draws: BatchDraws | None = None) -> list[np.ndarray]:
        """The matrices of batch `batch_num`. Training batches use `draws` if given, else draw
        from `rng` (else from the provider's own generator); the draws used are kept in
        :attr:`last_draws`. Test batches draw nothing."""
        self._check_num(batch_num)
        if self._closed:
            raise DataError(f"this {self.name} provider was closed")
        pending = self._pending.pop(batch_num, None)
        if self.test:
            return self._assemble(batch_num, None, None)[0]
        if draws is None:
            rng = rng if rng is not None else self.rng
            state = _rng_state(rng)
            if pending is not None and state is not None and state == pending.state:
                matrices, used, n = pending.future.result()
                self.draw(n, rng)  # leave `rng` where drawing here would have left it
                self.last_draws = used
                return matrices
        if pending is not None:
            pending.future.cancel()
        matrices, used, _ = self._assemble(batch_num, draws, rng)
        self.last_draws = used
        return matrices


class JPEGCroppedProvider(_InetProvider):
    """``inet-lr-cropped-jpeg`` (driver.md §D.2, §D.4): JPEG batches ``(jpegs, sizes, labels)``.

    Images are decoded with Pillow in `workers` background processes (0: in this process), in
    units of `unit` images. Every random draw is made in this process, and a unit's result
    depends only on its arguments, so the matrices do not depend on the number of workers.
    See :class:`_InetProvider` for the augmentation.
    """

    name = "inet-lr-cropped-jpeg"

    def __init__(self, data_dir: str | os.PathLike, batch_range: Sequence[int], *, workers: int = 0,
                 unit: int = INET_CHUNK, **kwargs) -> None:
        super().__init__(data_dir, batch_range, **kwargs)
        if workers < 0 or unit < 1:
            raise DataError(f"workers must be >= 0 and unit >= 1 (got {workers}, {unit})")
        self.workers = int(workers)
        self.unit = int(unit)
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()  # the prefetch thread and the caller may both start it

    def _executor(self) -> ProcessPoolExecutor | None:
        if self.workers == 0:
            return None
        with self._pool_lock:
            return self._start_pool()

    def _start_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: forking a process that runs threads (prefetch, BLAS) can deadlock, and
            # Python 3.12 warns about it
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"))
            self._pools.append(self._pool)
        return self._pool

    def _load(self, batch_num: int):
        b = read_jpeg_batch(self.data_dir, batch_num, self.meta)
        limit = self.meta.raw.get("batch_size")
        if isinstance(limit, (int, np.integer)) and not isinstance(limit, bool) and b.num_cases > limit:
            raise DataError(f"holds {b.num_cases} images, more than batches.meta's batch_size = {int(limit)} "
                            "(the release sizes its decode buffers with it, §D.4)", file=b.path, key="jpegs")
        return b.jpegs, b.labels

    def _subset(self, source, keep: np.ndarray):
        return [source[int(i)] for i in keep]

    def _cut(self, source, offsets, flips, path):
        n = len(source)
        fill, crop, size = self._fill(), self.crop_size, self.image_size
        starts = range(0, n, self.unit)
        args = [(source[a:a + self.unit], size, fill, crop, np.ascontiguousarray(offsets[a:a + self.unit]),
                 np.ascontiguousarray(flips[a:a + self.unit])) for a in starts]
        pool = self._executor()
        if pool is None:
            results = [_jpeg_unit(*a) for a in args]
        else:
            results = [f.result() for f in [pool.submit(_jpeg_unit, *a) for a in args]]
        failed = []
        for a, (_, fail, wrong) in zip(starts, results):
            if wrong:
                i, reason = wrong[0]
                raise DataError(f"image {a + i} {reason}", file=path, key="jpegs")
            failed += [(a + i, r) for i, r in fail]
        return np.concatenate([r[0] for r in results], axis=1), failed


class RawCroppedProvider(_InetProvider):
    """``inet-lr-cropped`` (driver.md §D.2, §D.5): dicts ``data`` (3·S² × N pixels, a column per image)
    and ``labels``; cropped, flipped, mean-subtracted and noised as :class:`_InetProvider` says.
    With colour noise, batches may not exceed 1024 images (the release's noise buffer, §D.5)."""

    name = "inet-lr-cropped"

    def _load(self, batch_num: int):
        b = read_batch(self.data_dir, batch_num, self.meta)
        if self.color_noise > 0 and not self.test and b.num_cases > RAW_NOISE_COLUMNS:
            raise DataError(f"{b.num_cases} images: with --color-noise the raw provider's batches may not exceed "
                            f"{RAW_NOISE_COLUMNS} images (driver.md §D.5)", file=b.path, key="data")
        if self.no_crop:
            raise DataError("no_crop is a JPEG-batch option (driver.md §D.4); raw pixel batches are S×S",
                            file=self.meta.path, key="no_crop")
        return b.data, b.labels

    def _subset(self, source, keep):
        return source[:, keep]

    def _cut(self, source, offsets, flips, path):
        views = offsets.shape[1]
        crops = [apply_crops(source, self.image_size, self.border, offsets[:, v], flips[:, v]) for v in range(views)]
        data = np.stack(crops)                                      # (V, 3·s², n)
        if data.dtype != np.uint8:
            raise DataError(f"must hold uint8 pixels (dtype {source.dtype})", file=path, key="data")
        return np.ascontiguousarray(data.transpose(0, 2, 1)), []


class FlatMemProvider(_Provider):
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
            onehot = np.zeros((self.meta.num_classes, batch.num_cases), dtype=np.float32)
            onehot[batch.labels, np.arange(batch.num_cases)] = 1.0
            self._batches[b] = [_read_only(np.ascontiguousarray(batch.data.astype(np.float32) - mean)),
                                _read_only(onehot)]

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
        self.batch_range = _batch_list(batch_range)
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
        labels = _integers(rng, self.CLASSES, self.CASES).astype(np.float32).reshape(1, -1)
        return [data, labels, np.ones((1, self.CASES), dtype=np.float32)]


PROVIDERS = {"cifar": CIFARProvider, "cifar-cropped": CIFARCroppedProvider,
             "inet-lr-cropped-jpeg": JPEGCroppedProvider, "inet-lr-cropped": RawCroppedProvider,
             "flatmem": FlatMemProvider, "dummy-lr-<D>": DummyProvider}

_NOT_HERE = ("inet-lr", "inet-rs-lr-cropped", "flickr-ce-cropped", "dummy-ce-")


def make_provider(dp_type: str | None, data_dir: str | os.PathLike, batch_range: Sequence[int], *,
                  test: bool = False, multiview: bool = False, crop_border: int = 4, rng: Rng | None = None,
                  chunk: int | None = None, color_noise: float = 0.0, workers: int = 0, scalar_mean: bool = False):
    """The provider named `dp_type` (``--data-provider``), or by ``batches.meta['dp_type']`` when
    `dp_type` is None (driver.md §D.1). Options as in driver.md §C.2; `chunk` (images sharing a
    crop draw) defaults to 1 for ``cifar-cropped`` (§D.3) and 32 for the ImageNet providers
    (§D.4); `workers` is the number of JPEG decoding processes."""
    if dp_type is not None and dp_type.startswith("dummy-lr-"):
        if multiview:
            raise DataError(f"--multiview-test needs a cropping provider; '{dp_type}' has no views")
        return DummyProvider(dp_type, batch_range, test=test, rng=rng)
    meta = read_meta(data_dir)
    name = dp_type if dp_type is not None else meta.dp_type
    if name is None:
        raise DataError("no --data-provider given and batches.meta has no 'dp_type' "
                        f"(known: {', '.join(PROVIDERS)})", file=meta.path, key="dp_type")
    if name.startswith("dummy-lr-"):
        return make_provider(name, data_dir, batch_range, test=test, multiview=multiview, rng=rng)
    if name not in PROVIDERS:
        why = "is not implemented by this harness" if name.startswith(_NOT_HERE) \
            else "is not a provider of the release"
        raise DataError(f"data provider '{name}' {why} (known: {', '.join(PROVIDERS)})")
    if name in ("cifar", "flatmem"):
        if multiview:
            raise DataError(f"--multiview-test needs a cropping provider; '{name}' has no views")
        return PROVIDERS[name](data_dir, batch_range, test=test, meta=meta)
    if name == "cifar-cropped":
        return CIFARCroppedProvider(data_dir, batch_range, test=test, multiview=multiview, crop_border=crop_border,
                                    chunk=1 if chunk is None else chunk, rng=rng, color_noise=color_noise,
                                    meta=meta)
    kwargs = dict(test=test, multiview=multiview, crop_border=crop_border, rng=rng, color_noise=color_noise,
                  chunk=INET_CHUNK if chunk is None else chunk, scalar_mean=scalar_mean, meta=meta)
    if name == "inet-lr-cropped-jpeg":
        return JPEGCroppedProvider(data_dir, batch_range, workers=workers, **kwargs)
    return RawCroppedProvider(data_dir, batch_range, **kwargs)


def minibatches(matrices: Sequence[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Cut a batch into consecutive minibatches of `size` columns, the last one shorter
    (driver.md §C.4, ``--mini``). Each piece is a C-contiguous copy."""
    if size < 1:
        raise ValueError(f"minibatch size must be >= 1 (got {size})")
    n = matrices[0].shape[1]
    for start in range(0, n, size):
        yield [np.ascontiguousarray(m[:, start:start + size]) for m in matrices]
