"""The data providers of the release (driver.md §D.2): CIFAR (§D.3), ImageNet JPEG and raw-pixel
batches (§D.4, §D.5), Flickr, flatmem and dummy (§D.7), and PCA colour noise (§D.6). Of the
release's table only ``inet-rs-lr-cropped`` is missing: it crashes in the release (§D.2).

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

This package holds what the training loop calls (:func:`make_provider`,
:func:`batch_rng`, :func:`minibatches`) and re-exports the rest:

* :mod:`.augment`: crops, flips, test views, the mean window and colour noise, in numpy;
* :mod:`.base`: what the providers reading a data folder share;
* :mod:`.cifar`: ``cifar`` and ``cifar-cropped``;
* :mod:`.imagenet`: ``inet-lr-cropped-jpeg`` and ``inet-lr-cropped`` (JPEG decoding,
  worker processes, prefetching), and ``inet-lr`` (whole images with word presence);
* :mod:`.flickr`: ``flickr-ce-cropped`` (multi-hot tags, on the JPEG provider's machinery);
* :mod:`.flat`: ``flatmem``, ``dummy-lr-<D>`` and ``dummy-ce-<D>``.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np

from ..batches import read_meta
from ..pickles import DataError
from .augment import (BatchDraws, Rng, apply_color_noise, apply_crops, color_noise, draw_color_noise, draw_crops,
                      inet_multiview, multiview_offsets)
from .cifar import CIFARCroppedProvider, CIFARProvider
from .flat import DummyCEProvider, DummyProvider, FlatMemProvider
from .flickr import FlickrProvider, tag_rows
from .imagenet import INET_CHUNK, ImageNetLogRegProvider, JPEGCroppedProvider, RawCroppedProvider, decode_image

__all__ = [
    "BatchDraws",
    "CIFARProvider",
    "CIFARCroppedProvider",
    "DummyCEProvider",
    "DummyProvider",
    "FlatMemProvider",
    "FlickrProvider",
    "INET_CHUNK",
    "ImageNetLogRegProvider",
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
    "tag_rows",
]


def batch_rng(seed: int, epoch: int, batch_num: int) -> np.random.Generator:
    """A generator for the draws of one training batch, fixed by (seed, epoch, batch_num).

    Using one per batch makes the draws independent of how many batches ran before in
    this process, so a run resumed from a checkpoint draws what the uninterrupted run drew.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch), int(batch_num)])))


PROVIDERS = {"cifar": CIFARProvider, "cifar-cropped": CIFARCroppedProvider,
             "inet-lr-cropped-jpeg": JPEGCroppedProvider, "inet-lr-cropped": RawCroppedProvider,
             "inet-lr": ImageNetLogRegProvider, "flickr-ce-cropped": FlickrProvider,
             "flatmem": FlatMemProvider, "dummy-lr-<D>": DummyProvider, "dummy-ce-<D>": DummyCEProvider}

#: The file-less providers, by the prefix of their name (``dummy-lr-3072``).
_DUMMIES = {"dummy-lr-": DummyProvider, "dummy-ce-": DummyCEProvider}
#: In the release's table (§D.2) but not here: the release's own class crashes.
_NOT_HERE = ("inet-rs-lr-cropped",)


def make_provider(dp_type: str | None, data_dir: str | os.PathLike, batch_range: Sequence[int], *,
                  test: bool = False, multiview: bool = False, crop_border: int = 4, rng: Rng | None = None,
                  chunk: int | None = None, color_noise: float = 0.0, workers: int = 0, scalar_mean: bool = False):
    """The provider named `dp_type` (``--data-provider``), or by ``batches.meta['dp_type']`` when
    `dp_type` is None (driver.md §D.1). Options as in driver.md §C.2; `chunk` (images sharing a
    crop draw) defaults to 1 for ``cifar-cropped`` (§D.3) and 32 for the ImageNet providers
    (§D.4); `workers` is the number of JPEG decoding processes."""
    dummy = _dummy_class(dp_type)
    if dummy is not None:
        if multiview:
            raise DataError(f"--multiview-test needs a cropping provider; '{dp_type}' has no views")
        _no_color_noise(dp_type, color_noise)
        return dummy(dp_type, batch_range, test=test, rng=rng)
    meta = read_meta(data_dir)
    name = dp_type if dp_type is not None else meta.dp_type
    if name is None:
        raise DataError("no --data-provider given and batches.meta has no 'dp_type' "
                        f"(known: {', '.join(PROVIDERS)})", file=meta.path, key="dp_type")
    if _dummy_class(name) is not None:
        return make_provider(name, data_dir, batch_range, test=test, multiview=multiview, rng=rng,
                             color_noise=color_noise)
    if name not in PROVIDERS:
        why = "is not implemented by this harness (it crashes in the release, driver.md §D.2)" \
            if name.startswith(_NOT_HERE) else "is not a provider of the release"
        raise DataError(f"data provider '{name}' {why} (known: {', '.join(PROVIDERS)})")
    if name in ("cifar", "flatmem", "inet-lr"):
        if multiview:
            raise DataError(f"--multiview-test needs a cropping provider; '{name}' has no views")
        if name == "inet-lr":
            _no_color_noise(name, color_noise)
        return PROVIDERS[name](data_dir, batch_range, test=test, meta=meta)
    if name == "cifar-cropped":
        return CIFARCroppedProvider(data_dir, batch_range, test=test, multiview=multiview, crop_border=crop_border,
                                    chunk=1 if chunk is None else chunk, rng=rng, color_noise=color_noise,
                                    meta=meta)
    kwargs = dict(test=test, multiview=multiview, crop_border=crop_border, rng=rng, color_noise=color_noise,
                  chunk=INET_CHUNK if chunk is None else chunk, scalar_mean=scalar_mean, meta=meta)
    if name in ("inet-lr-cropped-jpeg", "flickr-ce-cropped"):
        return PROVIDERS[name](data_dir, batch_range, workers=workers, **kwargs)
    return RawCroppedProvider(data_dir, batch_range, **kwargs)


def _dummy_class(name: str | None):
    for prefix, cls in _DUMMIES.items():
        if name is not None and name.startswith(prefix):
            return cls
    return None


def _no_color_noise(name: str, color_noise: float) -> None:
    # inet-lr and the dummies draw no colour noise; refusing the option beats ignoring it silently.
    # (cifar and flatmem still ignore it, as they did before this check existed.)
    if color_noise:
        raise DataError(f"--color-noise={color_noise}: '{name}' has no colour noise (driver.md §D.6 is for the "
                        "cropping providers)")


def minibatches(matrices: Sequence[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Cut a batch into consecutive minibatches of `size` columns, the last one shorter
    (driver.md §C.4, ``--mini``). Each piece is a C-contiguous copy."""
    if size < 1:
        raise ValueError(f"minibatch size must be >= 1 (got {size})")
    n = matrices[0].shape[1]
    for start in range(0, n, size):
        yield [np.ascontiguousarray(m[:, start:start + size]) for m in matrices]
