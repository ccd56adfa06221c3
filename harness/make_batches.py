"""Write data folders in the release's format (driver.md §D.1, §D.3, §D.4, §D.5, §D.7): from
arrays, from scikit-learn's handwritten digits (a small demo set in CIFAR's shape), from the
CIFAR-10 python archive, from a folder of images with one subfolder per class (ImageNet's
JPEG batches or raw-pixel batches), and from a folder of images with a tags file listing
several tags per image (Flickr's multi-label JPEG batches, :func:`tagged_image_batches`).

``batches.meta`` gets ``data_mean`` (float64 column, the per-pixel mean of the
statistics images), ``label_names``, ``num_vis`` and ``color_pca`` = (s, V) from the
RGB covariance of the mean-subtracted pixels (:func:`pixel_pca`).

On ``color_pca``: the release does not say whether s holds eigenvalues or their
square roots (driver.md §D.6); its code calls them standard deviations, so s here is
the square root of the eigenvalues (the standard deviation of the pixels along each
principal axis, in pixel units 0…255).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import ReplayError
from .batches import (META_NAME, BatchMeta, _dict_keys_as_str, batch_path, normalise_tag, read_batch, read_meta,
                      write_batch, write_flickr_batch, write_jpeg_batch, write_meta)
from .pickles import DataError, load_pickle, loads_pickle
from .providers.imagenet import decode_image

__all__ = [
    "MadeBatches",
    "cifar10_python_archive",
    "digits_batches",
    "image_folder_batches",
    "list_image_folder",
    "load_image_resized",
    "make_batches_from_arrays",
    "pca_from_covariance",
    "pixel_covariance",
    "pixel_pca",
    "read_tags_file",
    "render_digits",
    "tag_vocabulary",
    "tagged_image_batches",
]


@dataclass
class MadeBatches:
    """What a writer produced: the folder, its meta, and the batch numbers written."""

    out_dir: Path
    meta: BatchMeta
    batch_nums: list[int]
    train_batches: list[int]
    test_batches: list[int]


def pixel_covariance(images: np.ndarray, data_mean: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, int]:
    """The RGB scatter of `images` (N, 3, H, W) about the per-pixel `data_mean` (3·H·W): every
    pixel of every image, minus the mean image, is one RGB sample. Returns (the 3×3 sum of
    outer products in float64, the number of samples), so that batches can be added up."""
    n, c = images.shape[:2]
    if c != 3:
        raise ValueError(f"pixel_pca needs RGB images (N, 3, H, W), got shape {images.shape}")
    mean = np.asarray(data_mean, dtype=np.float64).reshape(1, 3, -1)
    cov = np.zeros((3, 3))
    count = 0
    for start in range(0, n, chunk):
        x = images[start:start + chunk].reshape(-1, 3, mean.shape[2]).astype(np.float64) - mean
        cov += np.einsum("ncp,ndp->cd", x, x)
        count += x.shape[0] * x.shape[2]
    return cov, count


def pca_from_covariance(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s (3,) float32 = sqrt(eigenvalues of `cov`), largest first, and V (3, 3) float32 with the
    unit eigenvectors in columns, each signed so that its components sum to >= 0."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    for j in range(3):
        col = vecs[:, j]
        total = col.sum()
        if total < -1e-12 or (abs(total) <= 1e-12 and col[np.argmax(np.abs(col))] < 0):
            vecs[:, j] = -col
    return np.sqrt(np.clip(vals, 0.0, None)).astype(np.float32), vecs.astype(np.float32)


def pixel_pca(images: np.ndarray, data_mean: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """PCA of RGB pixel values for colour noise (driver.md §D.4 ``color_pca``, §D.6).

    `images` (N, 3, H, W); `data_mean` (3·H·W) the per-pixel mean. The 3×3 covariance of
    :func:`pixel_covariance` (divided by the number of samples) is eigen-decomposed
    (:func:`pca_from_covariance`): s = sqrt(eigenvalues), V = eigenvectors in columns.
    """
    cov, count = pixel_covariance(images, data_mean, chunk)
    return pca_from_covariance(cov / max(count, 1))


def _batch_sizes(n: int, batch_size: int | Sequence[int]) -> list[int]:
    if isinstance(batch_size, (int, np.integer)):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        return [min(int(batch_size), n - s) for s in range(0, n, int(batch_size))]
    sizes = [int(x) for x in batch_size]
    if any(x < 1 for x in sizes) or sum(sizes) != n:
        raise ValueError(f"batch sizes {sizes} must be >= 1 and add up to the {n} images")
    return sizes


def write_folder_atomically(out_dir: str | os.PathLike, make: Callable[[Path], MadeBatches], *,
                            force: bool = False) -> MadeBatches:
    """Run ``make(folder)`` on a new temporary folder beside `out_dir`, then put what it wrote in
    place: the folder renamed to `out_dir` when that is absent or empty; with `force`, into an
    existing folder file by file, ``batches.meta`` last. On any failure (a full disk included)
    the temporary folder is removed and `out_dir` is as it was: never a data folder without
    its ``batches.meta``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReplayError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ReplayError(f"{out}: folder is not empty (give --force to write into it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        made = make(tmp)
        if out.is_dir() and any(out.iterdir()):
            names = sorted(p.name for p in tmp.iterdir())
            for name in [n for n in names if n != META_NAME] + [n for n in names if n == META_NAME]:
                os.replace(tmp / name, out / name)
            tmp.rmdir()
        else:
            if out.is_dir():
                out.rmdir()
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MadeBatches(out_dir=out, meta=read_meta(out), batch_nums=made.batch_nums,
                       train_batches=made.train_batches, test_batches=made.test_batches)


def make_batches_from_arrays(images: np.ndarray, labels: Sequence[int], label_names: Sequence[str],
                             out_dir: str | os.PathLike, batch_size: int | Sequence[int], *,
                             first_batch: int = 1, stats_images: int | None = None, color_pca: bool = True,
                             num_test_batches: int = 0, **extra_meta) -> MadeBatches:
    """Write `images` (N, 3, H, W) uint8 with their `labels` as ``data_batch_<first_batch>`` …
    (consecutive images; `batch_size` is one size, the last batch taking the rest, or a list of
    sizes) and ``batches.meta``.

    The mean (and the colour PCA) come from the first `stats_images` images (default all; pass
    the number of training images so test images do not leak into them). The last
    `num_test_batches` batches are reported as test batches. Extra keyword arguments are
    stored in ``batches.meta`` (e.g. ``dp_type='cifar-cropped'``).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be (N, 3, S, S), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    n = images.shape[0]
    if labels.size != n:
        raise ValueError(f"{labels.size} labels for {n} images")
    if n and (labels.min() < 0 or labels.max() >= len(label_names)):
        raise ValueError(f"labels must be in 0..{len(label_names) - 1}")
    stats = n if stats_images is None else int(stats_images)
    if not 1 <= stats <= n:
        raise ValueError(f"stats_images must be in 1..{n} (got {stats_images})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    num_vis = int(np.prod(images.shape[1:]))
    mean = images[:stats].reshape(stats, num_vis).mean(axis=0, dtype=np.float64)
    pca = pixel_pca(images[:stats], mean) if color_pca else None

    nums, start = [], 0
    for i, size in enumerate(_batch_sizes(n, batch_size)):
        num = first_batch + i
        cols = np.ascontiguousarray(images[start:start + size].reshape(size, num_vis).T)  # (num_vis, N)
        write_batch(batch_path(out, num), cols, labels[start:start + size], num_classes=len(label_names))
        nums.append(num)
        start += size
    meta = write_meta(out, data_mean=mean, label_names=label_names, num_vis=num_vis, color_pca=pca, **extra_meta)
    k = len(nums) - int(num_test_batches)
    return MadeBatches(out_dir=out, meta=meta, batch_nums=nums, train_batches=nums[:k], test_batches=nums[k:])


# -- scikit-learn digits ---------------------------------------------------------------------------

def render_digits(images8: np.ndarray) -> np.ndarray:
    """(N, 8, 8) grey values 0…16 → (N, 3, 32, 32) uint8: each pixel becomes a 4×4 block,
    values scaled to 0…255 (v·255/16, rounded half up), the grey copied to R, G and B."""
    v = np.asarray(images8, dtype=np.float64)
    if v.ndim != 3 or v.shape[1:] != (8, 8):
        raise ValueError(f"digits must be (N, 8, 8), got {v.shape}")
    grey = np.floor(v * (255.0 / 16.0) + 0.5).clip(0, 255).astype(np.uint8)
    big = np.kron(grey, np.ones((1, 4, 4), dtype=np.uint8))          # (N, 32, 32)
    return np.ascontiguousarray(np.repeat(big[:, None], 3, axis=1))


def _stratified_batches(labels: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Deal the indices into k batches with class counts within one of each other; each batch
    is shuffled so that its classes are mixed (SGD takes consecutive minibatches, §C.4)."""
    perm = rng.permutation(labels.size)
    dealt = perm[np.argsort(labels[perm], kind="stable")]
    return [rng.permutation(dealt[j::k]) for j in range(k)]


def digits_batches(out_dir: str | os.PathLike, *, num_train_batches: int = 5, num_test_batches: int = 1,
                   seed: int = 0, dp_type: str | None = "cifar-cropped") -> MadeBatches:
    """scikit-learn's handwritten digits (1797 images of 8×8, values 0…16) as a CIFAR-shaped data
    folder: 3×32×32 uint8 images, labels '0'…'9'. The images are dealt (seeded, stratified by
    class) into ``num_train_batches + num_test_batches`` batches numbered from 1; the training
    batches come first, the test batches last (by default 1–5 and 6, as CIFAR-10's usual split).
    The mean and colour PCA come from the training batches only."""
    try:  # scikit-learn is an optional extra (the demo's); imported only when the digits are asked for
        from sklearn.datasets import load_digits
    except ImportError:
        raise ReplayError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    labels = np.asarray(digits.target, dtype=np.int64)
    images = render_digits(np.asarray(digits.images))
    k = num_train_batches + num_test_batches
    if num_train_batches < 1 or num_test_batches < 0:
        raise ValueError("need at least one training batch and no negative number of test batches")
    parts = _stratified_batches(labels, k, np.random.default_rng(seed))
    order = np.concatenate(parts)
    sizes = [p.size for p in parts]
    extra = {"dp_type": dp_type} if dp_type else {}
    return make_batches_from_arrays(images[order], labels[order], [str(i) for i in range(10)], out_dir, sizes,
                                    stats_images=sum(sizes[:num_train_batches]),
                                    num_test_batches=num_test_batches, **extra)


# -- CIFAR-10 python archive -----------------------------------------------------------------------

_CIFAR_DIR = "cifar-10-batches-py"
# limit of the reader (docs/fidelity.md, "Limits of the readers"): the archive's batches are 31 MB each
MAX_CIFAR_MEMBER_BYTES = 256 * 1024 * 1024


def _read_member(tar: tarfile.TarFile, archive: Path, name: str):
    what = f"{archive}:{name}"
    try:
        info = tar.getmember(name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot be read: the archive is damaged or truncated ({exc})", file=what) from None
    except KeyError:
        raise DataError("missing from the archive (expected the CIFAR-10 python layout: "
                        f"{_CIFAR_DIR}/data_batch_1..5, test_batch, batches.meta)", file=what) from None
    if not info.isfile():
        raise DataError("is not a regular file", file=what)
    if info.size > MAX_CIFAR_MEMBER_BYTES:
        raise DataError(f"declares {info.size:,} bytes, more than the {MAX_CIFAR_MEMBER_BYTES:,} the reader accepts "
                        "for a member of the CIFAR-10 archive (limit of the reader)", file=what)
    f = tar.extractfile(info)
    try:
        raw = f.read()
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise DataError(f"cannot be read: the archive is damaged or truncated ({exc})", file=what) from None
    obj = loads_pickle(raw, what)
    if not isinstance(obj, dict):
        raise DataError(f"must hold a pickled dict (got {type(obj).__name__})", file=what)
    return _dict_keys_as_str(obj), what


def _archive_batch(tar, archive, name, num_classes):
    d, what = _read_member(tar, archive, name)
    for key in ("data", "labels"):
        if key not in d:
            raise DataError("missing", file=what, key=key)
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"must be a uint8 array of one 3072-value image per row (got "
                        f"{type(data).__name__} {getattr(data, 'dtype', '')} {shape})", file=what, key="data")
    labels = np.asarray(d["labels"])
    if labels.ndim != 1 or labels.size != data.shape[0] or labels.dtype.kind not in "iu":
        raise DataError(f"must be {data.shape[0]} integer labels, one per row of 'data' (got {labels.size})",
                        file=what, key="labels")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DataError(f"label {int(labels[bad[0]])} at position {int(bad[0])} is out of range "
                        f"0..{num_classes - 1}", file=what, key="labels")
    return data, labels.astype(np.int64)


def cifar10_python_archive(archive_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                           dp_type: str | None = None) -> MadeBatches:
    """Convert the CIFAR-10 python archive (``cifar-10-python.tar.gz``) into the release's layout.

    Reads ``cifar-10-batches-py/data_batch_1`` … ``_5``, ``test_batch`` and ``batches.meta`` with the
    restricted unpickler (nothing is extracted to disk), turns the rows (one image each) into
    columns, and writes ``data_batch_1`` … ``_5`` (training) and ``data_batch_6`` (the test batch,
    driver.md §D.3's conventional split) with a ``batches.meta`` whose mean and colour PCA come
    from the five training batches.
    """
    archive = Path(archive_path)
    if not archive.is_file():
        raise DataError("missing (no such file)", file=archive)
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"not a readable tar archive ({exc})", file=archive) from None
    with tar:
        meta, what = _read_member(tar, archive, f"{_CIFAR_DIR}/batches.meta")
        if "label_names" not in meta:
            raise DataError("missing", file=what, key="label_names")
        names = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in meta["label_names"]]
        if meta.get("num_vis", 3072) != 3072:
            raise DataError(f"is {meta['num_vis']!r}; CIFAR-10 images have 3072 values", file=what, key="num_vis")
        members = [f"{_CIFAR_DIR}/data_batch_{i}" for i in range(1, 6)] + [f"{_CIFAR_DIR}/test_batch"]
        parts = [_archive_batch(tar, archive, m, len(names)) for m in members]
    images = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([p[1] for p in parts])
    sizes = [p[0].shape[0] for p in parts]
    extra = {"dp_type": dp_type} if dp_type else {}
    return make_batches_from_arrays(images, labels, names, out_dir, sizes, stats_images=sum(sizes[:5]),
                                    num_test_batches=1, **extra)


# -- a folder of images, one subfolder per class ---------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def list_image_folder(folder: str | os.PathLike) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image path, class index)]): the subfolders of `folder` in sorted order are
    the classes; their files with an image suffix (any case) are the images, sorted by name."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError("is not a folder (give a folder with one subfolder of images per class)", file=root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError("has no class subfolders (expected one subfolder of images per class)", file=root)
    items = []
    for k, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"holds no image files ({', '.join(IMAGE_SUFFIXES)})", file=root / name)
        items += [(p, k) for p in files]
    return classes, items


def load_image_resized(path: str | os.PathLike, size: int):
    """An image file as an RGB Pillow image of size×size: the shorter side scaled to `size`
    (bicubic), then the centre size×size square, as the 2012 paper prepared ImageNet. Returns
    (image, original (height, width)); a file Pillow cannot read raises DataError naming it."""
    from PIL import Image  # heavy: imported only when images are converted

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot be read as an image ({type(exc).__name__}: {exc})", file=path) from None
    w, h = rgb.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        rgb = rgb.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return rgb.crop((left, top, left + size, top + size)), (h, w)


def _encode_jpeg(img, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def _check_image_options(image_size: int, batch_size: int, num_test_batches: int, quality: int) -> None:
    if image_size < 1 or batch_size < 1 or num_test_batches < 0 or not 1 <= quality <= 100:
        raise ReplayError(f"image size ({image_size}) and batch size ({batch_size}) must be >= 1, test batches "
                          f"({num_test_batches}) >= 0, JPEG quality ({quality}) in 1..100")


def _convert_images(paths: Sequence[Path], source: Path, out_dir: str | os.PathLike, *, image_size: int,
                    batch_size: int, num_test_batches: int, fmt: str, quality: int, seed: int, first_batch: int,
                    write: Callable[[Path, np.ndarray, list, list, np.ndarray], None],
                    meta_keys: Callable[[np.ndarray], dict]) -> MadeBatches:
    """What the image-folder writers share: scale and centre-crop every image of `paths`, shuffle
    (seeded), cut into batches, and write them with
    ``write(batch file, image indices, jpegs, original sizes, pixels (n, 3·S²) uint8)``; then
    ``batches.meta`` with the training batches' ``data_mean`` and ``color_pca``, ``num_vis``,
    ``batch_size`` and ``meta_keys(indices of the training images)``. All in a temporary folder
    inside `out_dir`, moved into place at the end, ``batches.meta`` last."""
    order = np.random.default_rng(seed).permutation(len(paths))
    parts = [order[a:a + batch_size] for a in range(0, len(paths), batch_size)]
    k_train = len(parts) - num_test_batches
    if k_train < 1:
        raise DataError(f"{len(paths)} images make {len(parts)} batch(es) of {batch_size}; that leaves no "
                        f"training batch after {num_test_batches} test batch(es)", file=source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".make-batches-", dir=out))
    size, num_vis = int(image_size), 3 * int(image_size) ** 2
    try:
        total = np.zeros(num_vis, dtype=np.float64)
        count = 0
        nums = []
        for i, part in enumerate(parts):
            num = first_batch + i
            pixels, jpegs, sizes = [], [], []
            for j in part:
                img, orig = load_image_resized(paths[j], size)
                if fmt == "jpeg":
                    jpegs.append(_encode_jpeg(img, quality))
                    pixels.append(decode_image(jpegs[-1], size))  # what the provider will see
                    sizes.append(orig)
                else:
                    pixels.append(np.asarray(img).transpose(2, 0, 1))
            arr = np.stack(pixels).reshape(len(part), num_vis)
            write(batch_path(tmp, num), part, jpegs, sizes, arr)
            if i < k_train:
                total += arr.sum(axis=0, dtype=np.float64)
                count += len(part)
            nums.append(num)
        mean = total / count
        cov, samples = np.zeros((3, 3)), 0
        for num in nums[:k_train]:  # second pass: the scatter about the mean, from the written batches
            if fmt == "jpeg":
                # both tuple formats (ImageNet's, Flickr's) hold the JPEGs first; written just now
                imgs = np.stack([decode_image(b, size) for b in load_pickle(batch_path(tmp, num))[0]])
            else:
                imgs = read_batch(tmp, num).data.T.reshape(-1, 3, size, size)
            c, m = pixel_covariance(imgs, mean)
            cov, samples = cov + c, samples + m
        pca = pca_from_covariance(cov / samples)
        write_meta(tmp, data_mean=mean, num_vis=num_vis, color_pca=pca, batch_size=int(batch_size),
                   **meta_keys(np.concatenate(parts[:k_train])))
        for num in nums:
            os.replace(batch_path(tmp, num), batch_path(out, num))
        os.replace(tmp / META_NAME, out / META_NAME)
        meta = read_meta(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return MadeBatches(out_dir=out, meta=meta, batch_nums=nums, train_batches=nums[:k_train],
                       test_batches=nums[k_train:])


def image_folder_batches(folder: str | os.PathLike, out_dir: str | os.PathLike, *, image_size: int = 256,
                         batch_size: int = 1024, num_test_batches: int = 1, fmt: str = "jpeg", quality: int = 90,
                         seed: int = 0, first_batch: int = 1) -> MadeBatches:
    """Convert a folder of images (one subfolder per class) into ImageNet batches.

    Every image is scaled and centre-cropped to `image_size` (:func:`load_image_resized`); the
    images are shuffled (seeded) and cut into batches of `batch_size`, numbered from
    `first_batch`; the last `num_test_batches` batches are the test batches.

    * ``fmt="jpeg"``: ``inet-lr-cropped-jpeg`` batches (driver.md §D.4), the tuple
      ``(jpegs, sizes, [(class folder name, class index), ...])``; the images are re-encoded by
      Pillow at `quality`; ``sizes`` holds each source image's original (height, width).
    * ``fmt="raw"``: ``inet-lr-cropped`` batches (§D.5), ``data`` (3·S² × N uint8) and ``labels``.

    ``batches.meta`` gets ``data_mean`` and ``color_pca`` computed from the training batches'
    pixels as the provider decodes them, ``label_names`` (the subfolder names), ``num_vis``,
    ``batch_size`` and ``dp_type``. Everything is written into a temporary folder inside
    `out_dir` and moved into place at the end, ``batches.meta`` last; on any error nothing
    in `out_dir` changes.
    """
    if fmt not in ("jpeg", "raw"):
        raise ReplayError(f"format must be 'jpeg' or 'raw' (got {fmt!r})")
    _check_image_options(image_size, batch_size, num_test_batches, quality)
    names, items = list_image_folder(folder)

    def write(path, part, jpegs, sizes, arr):
        labels = [items[j][1] for j in part]
        if fmt == "jpeg":
            write_jpeg_batch(path, jpegs, labels, [names[k] for k in labels], sizes)
        else:
            write_batch(path, np.ascontiguousarray(arr.T), labels, num_classes=len(names))

    dp_type = "inet-lr-cropped-jpeg" if fmt == "jpeg" else "inet-lr-cropped"
    return _convert_images([p for p, _ in items], Path(folder), out_dir, image_size=image_size,
                           batch_size=batch_size, num_test_batches=num_test_batches, fmt=fmt, quality=quality,
                           seed=seed, first_batch=first_batch, write=write,
                           meta_keys=lambda train: {"label_names": names, "dp_type": dp_type})


# -- a folder of images with several tags each (Flickr, driver.md §D.7) ----------------------------

def read_tags_file(tags_file: str | os.PathLike, folder: str | os.PathLike) -> list[tuple[Path, list[str]]]:
    """[(image path, raw tags)] from a tags file, in the file's order (the format of
    :func:`tagged_image_batches`). Every listed image must exist under `folder`, once."""
    path, root = Path(tags_file), Path(folder)
    if not root.is_dir():
        raise DataError("is not a folder (give the folder the tags file's image paths are relative to)", file=root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("missing (no such file)", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot be read as UTF-8 text ({exc})", file=path) from None
    items, seen = [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, tag_text = line.partition("\t")
        name = name.strip()
        image = root / name
        if name in seen:
            raise DataError(f"line {number}: image '{name}' is listed again (first on line {seen[name]})", file=path)
        if not image.is_file():
            raise DataError(f"line {number}: image '{name}' is not a file in {root}", file=path)
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"line {number}: '{name}' has no image suffix ({', '.join(IMAGE_SUFFIXES)})", file=path)
        seen[name] = number
        items.append((image, [t.strip() for t in tag_text.split(",") if t.strip()]))
    if not items:
        raise DataError("lists no images (expected lines 'image path<TAB>tag, tag, ...')", file=path)
    return items


def tag_vocabulary(tags: Sequence[Sequence[str]], max_tags: int = 0) -> list[str]:
    """The normalised tags (:func:`.batches.normalise_tag`) of `tags` ordered by the number of
    images that carry them, most frequent first, ties in alphabetical order; the `max_tags`
    most frequent when `max_tags` > 0. A tag's position is its row in the multi-hot matrix."""
    counts: Counter[str] = Counter()
    for image_tags in tags:
        counts.update({normalise_tag(t) for t in image_tags} - {""})
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    return ranked[:max_tags] if max_tags > 0 else ranked


def tagged_image_batches(folder: str | os.PathLike, tags_file: str | os.PathLike, out_dir: str | os.PathLike, *,
                         image_size: int = 256, batch_size: int = 1024, num_test_batches: int = 1,
                         max_tags: int = 0, quality: int = 90, seed: int = 0, first_batch: int = 1) -> MadeBatches:
    """Convert images with several tags each into ``flickr-ce-cropped`` batches (driver.md §D.7).

    `tags_file` is UTF-8 text, one image per line: the image's path relative to `folder`, a TAB,
    then its tags separated by commas, e.g. ``beach/0001.jpg<TAB>Sea, sand ,New York``. Spaces
    around a tag are dropped; an image may have no tags (nothing after the TAB, or no TAB);
    blank lines and lines starting with ``#`` are skipped. Only the listed images are used.

    Images are scaled, centre-cropped, shuffled, cut into batches and stored as JPEGs as by
    :func:`image_folder_batches`; each batch is the tuple ``(jpegs, sizes, tag lists)`` with the
    tags as written in the file (the provider normalises them). ``batches.meta`` gets, besides
    ``data_mean``, ``color_pca``, ``num_vis`` and ``batch_size`` (from the training batches):

    * ``label_names``: the tag vocabulary, normalised (lower case, no whitespace), counted over
      the training images, most frequent first (:func:`tag_vocabulary`), cut to `max_tags` when
      > 0. Its length is the tag count C (driver.md §D.1).
    * ``freq_to_id``: {tag: row}, the position of each tag in ``label_names``.
    * ``dp_type``: ``flickr-ce-cropped``.
    """
    _check_image_options(image_size, batch_size, num_test_batches, quality)
    if max_tags < 0:
        raise ReplayError(f"max_tags must be >= 0 (got {max_tags}; 0 keeps every tag)")
    items = read_tags_file(tags_file, folder)

    def write(path, part, jpegs, sizes, arr):
        write_flickr_batch(path, jpegs, [items[j][1] for j in part], sizes)

    def meta_keys(train):
        names = tag_vocabulary([items[j][1] for j in train], max_tags)
        if not names:
            raise DataError("the training images carry no tags: a multi-label data set needs at least one",
                            file=tags_file)
        return {"label_names": names, "freq_to_id": {t: k for k, t in enumerate(names)},
                "dp_type": "flickr-ce-cropped"}

    return _convert_images([p for p, _ in items], Path(tags_file), out_dir, image_size=image_size,
                           batch_size=batch_size, num_test_batches=num_test_batches, fmt="jpeg", quality=quality,
                           seed=seed, first_batch=first_batch, write=write, meta_keys=meta_keys)
