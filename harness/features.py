"""A layer's outputs for a data range, and nearest neighbours among them (driver.md §F:
``shownet.py --write-features`` and ``findsimilar.py``; the paper's Figure 4, right).

Outputs are computed as the driver tests: centre crops (or every view, with the multiview
test, as the release's ``--write-features`` wrote them), test mode (dropout scales), in
minibatches. :func:`write_features` stores them as the release did, one pickle per batch
``DIR/data_batch_<n>`` = {'data': float32 (cases x outputs), 'labels': (1, cases) float32} and
``DIR/batches.meta`` = {'source_model', 'num_vis'}, written as Python 2's numpy can read them,
and in this project's ``features.npz`` (docs/json-formats.md).

:func:`nearest` ranks by Euclidean distance, computed in float64 as
‖q‖² + ‖b‖² − 2 q·b (clipped at 0), ties by the lower index of the base set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ReplayError
from ..files import atomic_write_bytes
from .predict import Trained, build_net, forward_outputs, open_data
from .release_checkpoint import dumps_plain

__all__ = ["FEATURES_MAGIC", "batch_images", "display_images", "layer_outputs", "nearest", "write_features"]

FEATURES_MAGIC = "alexnet-replay features"


def layer_outputs(trained: Trained, layer: str, batches: Sequence[int], *, minibatch: int = 128,
                  device: str = "cpu", images: bool = False, multiview: bool = False):
    """(outputs (N, D) float32, labels (N,), batch numbers (N,), display images (N, s, s, 3) uint8
    or None) of `layer` over the centre crops of `batches`; with `multiview`, over every view
    (V·N rows per batch, view-major, labels repeated), as the release's --write-features did."""
    dp = open_data(trained, batches, multiview=multiview)
    try:
        if layer not in trained.config.layers:
            raise ReplayError(f"{trained.config.path}: no layer '{layer}' (layers: "
                              f"{', '.join(list(trained.config.layers)[:40])})")
        net = build_net(trained, minibatch, device)
        label_idx = _label_index(trained.config)
        outs, labels, nums, pics = [], [], [], []
        for b in batches:
            matrices = dp.get_batch(b)
            outs.append(forward_outputs(net, matrices, [layer], minibatch)[layer].T)
            labels.append(matrices[label_idx][0].astype(np.int64) if label_idx is not None
                          else np.full(matrices[0].shape[1], -1))
            nums.append(np.full(matrices[0].shape[1], b))
            if images:
                pics.append(display_images(dp, matrices[0]))
    finally:
        close = getattr(dp, "close", None)
        if close is not None:
            close()
    return (np.ascontiguousarray(np.concatenate(outs), dtype=np.float32), np.concatenate(labels),
            np.concatenate(nums), np.concatenate(pics) if images else None)


def batch_images(trained: Trained, batches: Sequence[int]) -> np.ndarray:
    """(N, s, s, 3) uint8: the centre crops of `batches` as pictures (no network is run)."""
    dp = open_data(trained, batches, multiview=False)
    try:
        return np.concatenate([display_images(dp, dp.get_batch(b)[0]) for b in batches])
    finally:
        close = getattr(dp, "close", None)
        if close is not None:
            close()


def _label_index(config) -> int | None:
    for l in config.layers.values():
        if l.type == "cost.logreg":
            return int(config.layers[l.inputs[0]].attrs["dataIdx"])
    return None


def display_images(provider, data: np.ndarray) -> np.ndarray:
    """(N, s, s, 3) uint8 pictures of a batch's first matrix (3·s², N), the provider's mean added
    back (the crops' mean window, or the whole images'); without one, each image stretched."""
    d, n = data.shape
    side = int(round((d / 3) ** 0.5))
    mean = getattr(provider, "_mean_window", getattr(provider, "_mean32", None))
    pix = data[:, :n].astype(np.float32)
    if mean is not None and np.asarray(mean).size in (1, d):
        pix = pix + np.asarray(mean, dtype=np.float32).reshape(-1, 1)
    else:
        lo, hi = pix.min(axis=0), pix.max(axis=0)
        pix = (pix - lo) / np.maximum(hi - lo, 1e-12) * 255
    return np.clip(np.rint(pix), 0, 255).astype(np.uint8).T.reshape(n, 3, side, side).transpose(0, 2, 3, 1)


def nearest(query: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices (Q, k), distances (Q, k)) of the k rows of `base` nearest to each row of `query`."""
    q = np.asarray(query, dtype=np.float64)
    b = np.asarray(base, dtype=np.float64)
    if q.ndim != 2 or b.ndim != 2 or q.shape[1] != b.shape[1]:
        raise ReplayError(f"nearest neighbours: features of {q.shape} and {b.shape} do not match")
    d2 = (q * q).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * q @ b.T
    d2 = np.maximum(d2, 0.0)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :min(k, b.shape[0])]
    return idx, np.sqrt(np.take_along_axis(d2, idx, axis=1))


def write_features(out: str | Path, outputs: np.ndarray, labels: np.ndarray, batches: np.ndarray, source: str,
                   layer: str) -> list[Path]:
    """The release's ``data_batch_<n>`` and ``batches.meta`` plus ``features.npz``, into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for b in dict.fromkeys(batches.tolist()):
        sel = batches == b
        written.append(atomic_write_bytes(out / f"data_batch_{b}", dumps_plain(
            {"data": np.ascontiguousarray(outputs[sel], dtype=np.float32),
             "labels": labels[sel].astype(np.float32).reshape(1, -1)})))
    written.append(atomic_write_bytes(out / "batches.meta", dumps_plain(
        {"source_model": source, "num_vis": int(outputs.shape[1])})))
    header = np.frombuffer(json.dumps({"format": FEATURES_MAGIC, "version": 1, "source": source,
                                       "layer": layer}).encode("utf-8"), dtype=np.uint8)
    written.append(atomic_write_bytes(out / "features.npz", lambda f: np.savez(
        f, __meta__=header, features=outputs, labels=labels, batches=batches)))
    return written
