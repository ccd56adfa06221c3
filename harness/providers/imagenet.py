"""The ImageNet providers (driver.md §D.2): ``inet-lr-cropped-jpeg`` (JPEG batches, §D.4, as
the 2012 runs used), ``inet-lr-cropped`` (raw-pixel batches, §D.5) and ``inet-lr`` (raw-pixel
batches with word presence, whole images, :class:`ImageNetLogRegProvider`).

The two cropping ones (and Flickr's, :mod:`.flickr`, which reuses their machinery) take
random crops and flips per chunk of images for training (32 by default, §D.4 step 2, §G.8)
and the centre crop or 10 views for testing, subtract the mean window and add colour noise
(§D.6), with :mod:`.augment`. What only they do is here: decoding the JPEGs with Pillow
(:func:`decode_image`) in a pool of worker processes; dropping the images that cannot be
decoded, with their labels (§D.4); and assembling the next training batch in a background
thread while the current one trains (§C.4).
"""

from __future__ import annotations

import io
import logging
import multiprocessing as mp
import os
import threading
import weakref
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from ..batches import WORDPRES_ROWS, BatchMeta, batch_path, read_batch, read_jpeg_batch, wordpres_matrix
from ..pickles import DataError
from .augment import BatchDraws, Rng, apply_color_noise, apply_crops, centre_window, inet_multiview
from .base import CroppingProvider, Provider

__all__ = ["INET_CHUNK", "ImageNetLogRegProvider", "JPEGCroppedProvider", "RAW_NOISE_COLUMNS", "RawCroppedProvider",
           "decode_image"]

#: Consecutive images that share one crop offset and flip in the ImageNet providers (§D.4 step 2, §G.8).
INET_CHUNK = 32
#: The raw provider's colour-noise buffer holds this many columns (§D.5).
RAW_NOISE_COLUMNS = 1024

_log = logging.getLogger("alexnet_replay.harness")


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
    from PIL import Image  # heavy: imported on the first decode, never by runs on CIFAR batches

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


class _InetProvider(CroppingProvider):
    """What ``inet-lr-cropped-jpeg`` and ``inet-lr-cropped`` share (driver.md §D.4, §D.5).

    Returns [crops − mean window (3·s², N·views), labels (1, N·views)], s = S − 2b.

    * training: one offset (y, x) uniform in 0 … 2b and one left-right flip (p = ½) per chunk
      of `chunk` consecutive images (32, §D.4 step 2 and §G.8; the CIFAR provider's default
      is §D.3's one draw per image); then the centre s×s window of the mean image is
      subtracted from every crop (the overall scalar mean with ``scalar_mean`` or
      ``meta['no_crop']``); then colour noise (§D.6) when `color_noise` > 0.
    * test: the centre crop; with `multiview` the 10 views of :func:`.augment.inet_multiview`, each a
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
        super().__init__(data_dir, batch_range, test=test, multiview=multiview, crop_border=crop_border,
                         chunk=chunk, rng=rng, color_noise=color_noise, meta=meta)
        self.no_crop = bool(self.meta.raw.get("no_crop", False))
        self.scalar_mean = bool(scalar_mean) or self.no_crop
        mean = self.meta.data_mean.astype(np.float64)
        if self.scalar_mean:
            self._mean_window = np.full((1, 1), np.float32(mean.mean()), dtype=np.float32)
        else:
            self._mean_window = centre_window(mean, self.image_size, self.border).astype(np.float32)
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

    # -- views ---------------------------------------------------------------------------------------
    @property
    def num_views(self) -> int:
        return 10 if self.multiview else 1

    # -- subclasses ----------------------------------------------------------------------------------
    def _load(self, batch_num: int):
        """(source, labels) of one batch; labels have the case axis last: (N,) class indices, or
        (R, N) label columns (Flickr's multi-hot rows). Either is returned for the kept images,
        repeated for every view: (1, N·views) or (R, N·views)."""
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
        n = labels.shape[-1]
        if n == 0:
            raise DataError("holds no images", file=path)
        if not self.test:
            draws = self._training_draws(n, draws, rng)
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
        lab = np.tile(labels[..., keep].astype(np.float32).reshape(-1, keep.size), (1, views))
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

    def _check_batch_size(self, num_cases: int, path: Path) -> None:
        limit = self.meta.raw.get("batch_size")
        if isinstance(limit, (int, np.integer)) and not isinstance(limit, bool) and num_cases > limit:
            raise DataError(f"holds {num_cases} images, more than batches.meta's batch_size = {int(limit)} "
                            "(the release sizes its decode buffers with it, §D.4)", file=path, key="jpegs")

    def _load(self, batch_num: int):
        b = read_jpeg_batch(self.data_dir, batch_num, self.meta)
        self._check_batch_size(b.num_cases, b.path)
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


class ImageNetLogRegProvider(Provider):
    """``inet-lr`` (driver.md §D.2): dicts ``data`` (3·S² × N pixels, a column per image), ``labels``
    and ``wordpres``; returns [data − data_mean (3·S², N), labels (1, N), wordpres (100, N)],
    float32, C-ordered. Whole images: no crops, flips, views or colour noise.

    The spec gives ``wordpres`` only by its key and its ``dataIdx`` size, 100. Read here as a
    (100, N) matrix stored like ``data`` (one column per image) and passed on as stored, converted
    to float32 (:func:`..batches.wordpres_matrix`); nothing is subtracted from it. Batches are read
    when asked for and not kept (ImageNet batches are large), and the mean is subtracted in float32
    (one rounding per value, as for ``cifar``).
    """

    name = "inet-lr"
    num_views = 1

    def __init__(self, data_dir: str | os.PathLike, batch_range: Sequence[int], *, test: bool = False,
                 meta: BatchMeta | None = None) -> None:
        super().__init__(data_dir, batch_range, test=test, meta=meta)
        if self.meta.image_size is None:
            raise DataError(f"num_vis = {self.meta.num_vis} is not 3·S² for a square RGB image",
                            file=self.meta.path, key="num_vis")
        self._mean32 = self.meta.data_mean.astype(np.float32)

    def _dims(self) -> list[int]:
        return [self.meta.num_vis, 1, WORDPRES_ROWS]

    def get_batch(self, batch_num: int, rng: Rng | None = None) -> list[np.ndarray]:
        """The matrices of batch `batch_num`; `rng` is accepted for the driver's sake and not used
        (nothing is drawn)."""
        self._check_num(batch_num)
        b = read_batch(self.data_dir, batch_num, self.meta)
        words = wordpres_matrix(b)
        data = np.subtract(b.data, self._mean32, dtype=np.float32)
        labels = b.labels.astype(np.float32).reshape(1, -1)
        return [np.ascontiguousarray(data), np.ascontiguousarray(labels), words]
