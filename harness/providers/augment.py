"""The pure numpy augmentation of the cropping providers: how the random choices of a
training batch are drawn, and how they and the test views are applied.

* crops and flips (driver.md §D.3; §D.4 step 2): one offset (y, x) in 0 … 2b and one
  left-right flip per chunk of consecutive images (:func:`draw_crops`, :class:`BatchDraws`),
  cut out of a batch's columns (:func:`apply_crops`);
* the test views: CIFAR's 9 (§D.3, :func:`multiview_offsets`) and ImageNet's 10 (§D.4,
  :func:`inet_multiview`);
* the centre window of the mean image, subtracted from every crop (:func:`centre_window`);
* PCA colour noise (§D.6): the draws (:func:`draw_color_noise`) and their application
  (:func:`apply_color_noise`, :func:`color_noise`).

Draws come from a numpy ``Generator`` or legacy ``RandomState`` handed in; nothing here
reads files or keeps state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

__all__ = [
    "BatchDraws",
    "Rng",
    "apply_color_noise",
    "apply_crops",
    "centre_window",
    "color_noise",
    "draw_color_noise",
    "draw_crops",
    "inet_multiview",
    "multiview_offsets",
    "uniform_integers",
]

Rng = Union[np.random.Generator, np.random.RandomState]


def uniform_integers(rng: Rng, high_exclusive: int, size) -> np.ndarray:
    """Integers uniform in 0 … `high_exclusive` − 1, int64, from either kind of generator."""
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
    offsets = uniform_integers(rng, 2 * border + 1, (k, 2))
    flips = uniform_integers(rng, 2, k).astype(bool)
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


def inet_multiview(border: int) -> list[tuple[int, int, bool]]:
    """The 10 ImageNet test views of driver.md §D.4 as (y, x, flip): crops at (0, 0), (0, 2b),
    (b, b), (2b, 0), (2b, 2b) (top-left, top-right, centre, bottom-left, bottom-right), unflipped,
    then the same five flipped left-right."""
    b2 = 2 * border
    corners = [(0, 0), (0, b2), (border, border), (b2, 0), (b2, b2)]
    return [(y, x, False) for y, x in corners] + [(y, x, True) for y, x in corners]


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

