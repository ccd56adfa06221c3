"""The Flickr provider (driver.md §D.2, §D.7): ``flickr-ce-cropped``, multi-label JPEG batches.

Batches are tuples (jpegs, sizes, per-image raw tag lists). Everything about the images is
as for ``inet-lr-cropped-jpeg`` (§D.4), and done by its machinery (:mod:`.imagenet`):
decoding in worker processes, crops and flips per chunk, the mean window, colour noise, the
10 test views, dropped undecodable images, prefetching. What differs is the label matrix: a
multi-hot (C, N·views) float32 block, one column per view of an image, with a 1 in the row of
every tag of the image, for a ``cost.crossent2`` or ``cost.rflickr`` layer (driver.md §A.3).
"""

from __future__ import annotations

import os
from typing import Sequence

from ..batches import normalise_tag, read_flickr_batch, tag_ids
from .base import multi_hot
from .imagenet import JPEGCroppedProvider

__all__ = ["FlickrProvider", "tag_rows"]


def tag_rows(tags: Sequence[Sequence[str]], ids: dict[str, int]) -> list[list[int]]:
    """The multi-hot rows of every image: each raw tag normalised (:func:`..batches.normalise_tag`)
    and looked up in `ids` (``freq_to_id``). Tags that are not in `ids` are skipped: the spec
    does not say what the release did with them, and a tag vocabulary cut by frequency (as the
    key's name suggests) leaves most raw tags out."""
    out = []
    for image_tags in tags:
        out.append([ids[t] for t in map(normalise_tag, image_tags) if t in ids])
    return out


class FlickrProvider(JPEGCroppedProvider):
    """``flickr-ce-cropped`` (driver.md §D.2, §D.7): returns [crops − mean window (3·s², N·views),
    multi-hot tags (C, N·views)], C = ``len(batches.meta['label_names'])`` (§D.1; the released
    nets had 10003 tags), rows chosen by ``batches.meta['freq_to_id']`` (:func:`tag_rows`).

    Options, draws and views are those of :class:`.imagenet.JPEGCroppedProvider`; an image that
    cannot be decoded is dropped with its tags. An image without known tags gets a zero column.
    """

    name = "flickr-ce-cropped"

    def __init__(self, data_dir: str | os.PathLike, batch_range: Sequence[int], **kwargs) -> None:
        super().__init__(data_dir, batch_range, **kwargs)
        self.tag_ids = tag_ids(self.meta)

    def _dims(self) -> list[int]:
        return [3 * self.crop_size ** 2, self.meta.num_classes]

    def _load(self, batch_num: int):
        b = read_flickr_batch(self.data_dir, batch_num)
        self._check_batch_size(b.num_cases, b.path)
        return b.jpegs, multi_hot(tag_rows(b.tags, self.tag_ids), self.meta.num_classes)
