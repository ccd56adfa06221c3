"""The ImageNet-style providers (driver.md §D.2, §D.4–§D.7), the multiview test (§C.5), the
image-folder converter, and a short training run on JPEG batches through the driver.

References are written from the spec with plain numpy loops. The reference decode is
Pillow's decode of the same JPEG bytes (``ref_decode``): the providers must not change a
pixel of it. Comparisons are bit-exact (atol = rtol = 0) because the reference does the
same float32 operations in the same order (§D.6's formula, as harness/providers/augment.py documents it).
"""

from __future__ import annotations

import argparse
import io
import math
import pickle
import re

import numpy as np
import pytest
from PIL import Image

from alexnet_replay.cli import main as cli_main
from alexnet_replay.harness import batches as bt
from alexnet_replay.harness import make_batches as mb
from alexnet_replay.harness import multiview as mv
from alexnet_replay.harness import providers as pv
from alexnet_replay.harness.driver import train
from alexnet_replay.harness.options import add_train_arguments
from alexnet_replay.harness.pickles import DataError
from alexnet_replay.testing import assert_close

F32 = np.float32


# -- helpers ------------------------------------------------------------------------------------------

def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 with some structure (JPEG keeps it recognisable) and some noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([40 + 6 * yy + 3 * xx, 200 - 5 * xx, 90 + 4 * yy], axis=-1) + rng.integers(0, 40, (h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def jpeg_bytes(arr: np.ndarray, mode: str = "RGB", quality: int = 95) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def ref_decode(data: bytes) -> np.ndarray:
    """Pillow's own decode of the bytes, RGB, channel-major (3, H, W) uint8."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1).copy()


def random_pca(rng):
    v, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    return np.array([19.0, 6.5, 2.25], dtype=F32), v.astype(F32)


def write_jpeg_folder(folder, size, batches, classes=3, seed=0, **meta_extra):
    """batches: {num: (jpegs, labels)}; a random float mean and a colour PCA in batches.meta."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    mean = rng.uniform(60, 180, 3 * size * size)
    pca = random_pca(rng)
    for num, (jpegs, labels) in batches.items():
        bt.write_jpeg_batch(bt.batch_path(folder, num), jpegs, labels, [f"n{k:08d}" for k in labels])
    bt.write_meta(folder, data_mean=mean, label_names=[f"class{k}" for k in range(classes)],
                  num_vis=3 * size * size, color_pca=pca, dp_type="inet-lr-cropped-jpeg", **meta_extra)
    return folder, mean, pca


def make_jpegs(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return [jpeg_bytes(smooth_image(rng, size, size)) for _ in range(n)], [int(k) for k in rng.integers(0, 3, n)]


def reference_train(images, size, border, offsets, flips, chunk, mean, pca=None, c=0.0, r=None):
    """§D.4 steps 2–5 and §D.6 with plain loops: image i takes chunk i // chunk's offset and flip;
    the centre window of the mean is subtracted; then c·(V·(s∘r_i))[ch] is added and the result
    divided by (1 + c), all in float32."""
    s = size - 2 * border
    m = np.asarray(mean, dtype=np.float64).reshape(3, size, size)[:, border:border + s, border:border + s]
    cols = []
    for i, img in enumerate(images):
        y, x = offsets[i // chunk]
        win = img[:, y:y + s, x:x + s]
        if flips[i // chunk]:
            win = win[:, :, ::-1]
        v = win.astype(F32) - m.astype(F32)
        if c:
            sv, vv = pca
            t = [F32(sv[j]) * F32(r[i, j]) for j in range(3)]
            for ch in range(3):
                n_ch = (F32(vv[ch, 0]) * t[0] + F32(vv[ch, 1]) * t[1]) + F32(vv[ch, 2]) * t[2]
                v[ch] = (v[ch] + F32(c) * n_ch) / F32(1.0 + c)
        cols.append(v.reshape(-1))
    return np.stack(cols, axis=1)


def raises_data_error(fn, file, key=None, contains=()):
    with pytest.raises(DataError) as info:
        fn()
    err = info.value
    assert err.file is not None and str(err.file).endswith(str(file)), (err.file, file)
    assert err.key == key, (err.key, key)
    for text in contains:
        assert text in str(err), (text, str(err))
    return err


# -- training batches ---------------------------------------------------------------------------------

def test_jpeg_training_batch_golden(tmp_path):
    """Crop + flip shared by chunks of 32 (§D.4 step 2, §G.8), centre mean window (step 3),
    colour noise with the division by 1 + c (§D.6), on 70 images (chunks of 32, 32, 6)."""
    size, border, n, c = 12, 2, 70, 0.1
    jpegs, labels = make_jpegs(n, size)
    d, mean, pca = write_jpeg_folder(tmp_path / "d", size, {1: (jpegs, labels)})
    r = np.random.default_rng(5).standard_normal((n, 3), dtype=F32)
    draws = pv.BatchDraws(offsets=np.array([[0, 4], [3, 1], [4, 4]]), flips=np.array([True, False, True]),
                          chunk=32, noise=r)
    with pv.make_provider(None, d, [1], crop_border=border, color_noise=c) as p:
        assert isinstance(p, pv.JPEGCroppedProvider) and p.chunk == 32 and p.get_data_dims(0) == 3 * 8 * 8
        x, lab = p.get_batch(1, draws=draws)
    want = reference_train([ref_decode(j) for j in jpegs], size, border, draws.offsets, draws.flips, 32, mean,
                           pca, c, r)
    assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == (192, n)
    assert_close(x, want, 0, 0, what="crops - mean window + colour noise")
    assert lab.tolist() == [[float(k) for k in labels]]
    # without colour noise the mean-subtracted crops are not scaled
    with pv.make_provider(None, d, [1], crop_border=border) as p:
        x0 = p.get_batch(1, draws=pv.BatchDraws(draws.offsets, draws.flips, chunk=32))[0]
    assert_close(x0, reference_train([ref_decode(j) for j in jpegs], size, border, draws.offsets, draws.flips,
                                     32, mean), 0, 0, what="crops - mean window")


def test_crop_and_flip_are_shared_by_chunks_of_32(tmp_path):
    """The same image 64 times: columns 0–31 are equal, 32–63 are equal, and the two chunks'
    draws differ for this seed; the CIFAR rule (chunk=1, §D.3) gives different crops within a chunk."""
    size, border = 12, 2
    one = jpeg_bytes(smooth_image(np.random.default_rng(1), size, size))
    d, mean, _ = write_jpeg_folder(tmp_path / "d", size, {1: ([one] * 64, [0] * 64)})
    with pv.make_provider(None, d, [1], crop_border=border) as p:
        x = p.get_batch(1, rng=pv.batch_rng(3, 1, 1))[0]
        drawn = p.last_draws
    assert drawn.chunk == 32 and drawn.offsets.shape == (2, 2) and drawn.flips.shape == (2,)
    assert (drawn.offsets[0].tolist(), bool(drawn.flips[0])) != (drawn.offsets[1].tolist(), bool(drawn.flips[1]))
    assert (x[:, :32] == x[:, :1]).all() and (x[:, 32:] == x[:, 32:33]).all()
    assert not (x[:, 0] == x[:, 32]).all()
    assert_close(x, reference_train([ref_decode(one)] * 64, size, border, drawn.offsets, drawn.flips, 32, mean),
                 0, 0, what="chunked crops")
    with pv.make_provider(None, d, [1], crop_border=border, chunk=1) as p:
        x1 = p.get_batch(1, rng=pv.batch_rng(3, 1, 1))[0]
    assert len({x1[:, i].tobytes() for i in range(32)}) > 1


def test_draw_statistics():
    """Offsets uniform in 0..2b and flips with p = 1/2, drawn once per chunk (N = 32·4000 images);
    bounds: 5 standard errors of the counts."""
    d = pv.draw_crops(np.random.default_rng(0), 32 * 4000, 3, chunk=32)
    assert d.offsets.shape == (4000, 2)
    counts = np.bincount(d.offsets.ravel(), minlength=7)
    assert counts.size == 7 and abs(counts - 8000 / 7).max() < 5 * math.sqrt(8000 / 7)
    assert abs(d.flips.sum() - 2000) < 5 * math.sqrt(1000)


def test_results_do_not_depend_on_the_number_of_workers(tmp_path):
    """Workers 0 (in process), 1 and 2, units of 7 images: the same bytes, training and multiview."""
    size = 12
    jpegs, labels = make_jpegs(45, size, seed=2)
    d, *_ = write_jpeg_folder(tmp_path / "d", size, {1: (jpegs, labels), 2: (jpegs[:13], labels[:13])})
    got = []
    for workers in (0, 1, 2):
        with pv.JPEGCroppedProvider(d, [1], crop_border=2, color_noise=0.1, workers=workers, unit=7) as p, \
                pv.JPEGCroppedProvider(d, [2], test=True, multiview=True, crop_border=2, workers=workers,
                                       unit=7) as t:
            got.append(p.get_batch(1, rng=pv.batch_rng(0, 1, 1)) + t.get_batch(2))
    for other in got[1:]:
        for a, b in zip(got[0], other):
            assert a.tobytes() == b.tobytes()


def test_prefetch_gives_the_same_batch_and_leaves_the_generator_where_drawing_would(tmp_path):
    size = 12
    jpegs, labels = make_jpegs(40, size, seed=3)
    d, *_ = write_jpeg_folder(tmp_path / "d", size, {1: (jpegs, labels), 2: (jpegs[5:], labels[5:])})
    with pv.JPEGCroppedProvider(d, [1, 2], crop_border=2, color_noise=0.1, workers=1) as p:
        direct_rng = pv.batch_rng(7, 1, 2)
        direct = p.get_batch(2, rng=direct_rng)
        assert p.prefetch(2, pv.batch_rng(7, 1, 2)) and not p.prefetch(1, pv.batch_rng(7, 1, 1))  # depth 1
        used_rng = pv.batch_rng(7, 1, 2)
        fetched = p.get_batch(2, rng=used_rng)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(direct, fetched))
        assert used_rng.bit_generator.state == direct_rng.bit_generator.state
        # a prefetch drawn from another generator state is not used
        assert p.prefetch(2, pv.batch_rng(8, 1, 2))
        other = p.get_batch(2, rng=pv.batch_rng(7, 1, 2))
        assert all(a.tobytes() == b.tobytes() for a, b in zip(direct, other))
    with pytest.raises(DataError, match="closed"):
        p.get_batch(2, rng=pv.batch_rng(7, 1, 2))
    with pv.JPEGCroppedProvider(d, [1], test=True, crop_border=2) as t:
        assert not t.prefetch(1, pv.batch_rng(7, 1, 1))  # test batches are decoded synchronously (§D.4)


# -- test views -----------------------------------------------------------------------------------------

def test_multiview_views_are_the_exact_windows_hand_values(tmp_path):
    """A raw 3x6x6 image with pixel (c, y, x) = 36c + 6y + x, border 1 (crops 4x4). The 10 views of
    §D.4: (0,0), (0,2), (1,1), (2,0), (2,2), then the same flipped; each a block of N columns."""
    img = (36 * np.arange(3)[:, None, None] + 6 * np.arange(6)[None, :, None] + np.arange(6)[None, None, :])
    data = np.stack([img.reshape(-1), (255 - img).reshape(-1)], axis=1).astype(np.uint8)  # 2 images
    d = tmp_path / "raw"
    d.mkdir()
    bt.write_batch(bt.batch_path(d, 1), data, [1, 2], num_classes=3)
    bt.write_meta(d, data_mean=np.zeros(108), label_names=["a", "b", "c"], dp_type="inet-lr-cropped")
    with pv.make_provider(None, d, [1], test=True, multiview=True, crop_border=1) as p:
        x, lab = p.get_batch(1)
    assert x.shape == (48, 20) and lab.tolist() == [[1.0, 2.0] * 10]
    views = x[:, 0::2].T.reshape(10, 3, 4, 4)  # image 0 of every view block
    first_rows = [[0, 1, 2, 3], [2, 3, 4, 5], [7, 8, 9, 10], [12, 13, 14, 15], [14, 15, 16, 17],
                  [3, 2, 1, 0], [5, 4, 3, 2], [10, 9, 8, 7], [15, 14, 13, 12], [17, 16, 15, 14]]
    assert views[:, 0, 0, :].tolist() == first_rows
    assert views[4, 2, 3].tolist() == [104, 105, 106, 107] and views[9, 2, 3].tolist() == [107, 106, 105, 104]
    assert views[2, 1].tolist() == [[43, 44, 45, 46], [49, 50, 51, 52], [55, 56, 57, 58], [61, 62, 63, 64]]
    assert (x[:, 1::2] == 255 - x[:, 0::2]).all()  # image 1 = 255 - image 0, same windows
    # the centre window of the mean is subtracted from every view, whatever its offset or flip:
    # with mean = the image itself, unflipped views are constant (-7, -5, 0, 5, 7)
    bt.write_meta(d, data_mean=img.reshape(-1).astype(np.float64), label_names=["a", "b", "c"],
                  dp_type="inet-lr-cropped")
    with pv.make_provider(None, d, [1], test=True, multiview=True, crop_border=1) as p:
        xm = p.get_batch(1)[0][:, 0::2].T.reshape(10, 3, 4, 4)
    for v, value in enumerate([-7, -5, 0, 5, 7]):
        assert (xm[v] == value).all(), v
    assert xm[5, 0, 0].tolist() == [-4, -6, -8, -10]  # flipped (0,0): p(y, 3-j) - p(y+1, j+1) = -4 - 2j
    with pv.make_provider(None, d, [1], test=True, crop_border=1) as p:  # no multiview: the centre crop
        assert (p.get_batch(1)[0][:, 0] == 0).all()


def test_jpeg_multiview_matches_the_reference_decode(tmp_path):
    size, border = 12, 2
    jpegs, labels = make_jpegs(5, size, seed=4)
    d, mean, _ = write_jpeg_folder(tmp_path / "d", size, {3: (jpegs, labels)})
    with pv.make_provider(None, d, [3], test=True, multiview=True, crop_border=border) as p:
        assert p.num_views == 10
        x, lab = p.get_batch(3)
    s = size - 2 * border
    m = mean.reshape(3, size, size)[:, border:border + s, border:border + s].astype(F32)
    views = [(0, 0, False), (0, 4, False), (2, 2, False), (4, 0, False), (4, 4, False),
             (0, 0, True), (0, 4, True), (2, 2, True), (4, 0, True), (4, 4, True)]
    want = np.zeros((3 * s * s, 50), dtype=F32)
    for v, (y, xx, flip) in enumerate(views):
        for i, j in enumerate(jpegs):
            win = ref_decode(j)[:, y:y + s, xx:xx + s]
            want[:, v * 5 + i] = ((win[:, :, ::-1] if flip else win).astype(F32) - m).reshape(-1)
    assert_close(x, want, 0, 0, what="10 views")
    assert lab.tolist() == [[float(k) for k in labels] * 10]


def test_logreg_costs_tie_rules():
    """engine.md §3.23 by hand: 3 classes, 4 cases, top-2."""
    p = np.array([[0.5, 0.25, 0.4, 0.2],
                  [0.3, 0.25, 0.4, 0.2],
                  [0.2, 0.5, 0.2, 0.6]], dtype=F32)
    labels = [0, 1, 2, 0]
    # case 0: label is the max -> top1 1, top2 1; case 1: p=0.25 tied with class 0, one above -> top1 0,
    # slots 1 for 2 equal -> 1/2; case 2: label 0.2 below two 0.4 -> 0, 0; case 3: below the max, tied
    # with class 1 -> top1 0, slots 1 for 2 equal -> 1/2
    nll = -(np.log(F32(0.5)) + np.log(F32(0.25)) + np.log(F32(0.2)) + np.log(F32(0.2)))
    got = mv.logreg_costs(p, labels, topk=2)
    assert got[0] == pytest.approx(float(nll), rel=1e-6)  # float32 logs summed in float64
    assert got[1:] == [3.0, 4 - 2.0]
    p2 = np.array([[0.4, 0.1], [0.4, 0.9], [0.2, 0.0]], dtype=F32)
    assert mv.logreg_costs(p2, [0, 1], topk=1)[1] == 0.5  # tied max: 1/2 credit


# -- bad input ------------------------------------------------------------------------------------------

def test_undecodable_image_is_dropped_with_its_label(tmp_path, caplog):
    """§D.4: an image that fails to decode is dropped with its label; the kept images take the draws
    of their new positions (image 33 becomes position 32, the second chunk)."""
    size, border = 12, 2
    jpegs, labels = make_jpegs(36, size, seed=6)
    bad = list(jpegs)
    bad[3] = jpegs[3][: len(jpegs[3]) // 3]  # truncated JPEG
    d, mean, _ = write_jpeg_folder(tmp_path / "d", size, {1: (bad, labels)})
    draws = pv.BatchDraws(offsets=np.array([[1, 2], [4, 0]]), flips=np.array([False, True]), chunk=32)
    with pv.make_provider(None, d, [1], crop_border=border, workers=0) as p:
        x, lab = p.get_batch(1, draws=draws)
        assert [(f.endswith("data_batch_1"), i) for f, i, _ in p.dropped] == [(True, 3)]
    kept = [i for i in range(36) if i != 3]
    assert lab.tolist() == [[float(labels[i]) for i in kept]]
    want = reference_train([ref_decode(jpegs[i]) for i in kept], size, border, draws.offsets, draws.flips, 32, mean)
    assert_close(x, want, 0, 0, what="kept images")
    assert any("data_batch_1: image 3 dropped" in r.getMessage() for r in caplog.records)
    # a batch with no decodable image is an error naming the file
    bt.write_jpeg_batch(bt.batch_path(d, 2), [b"not a jpeg"], [0], ["n0"])
    with pv.make_provider(None, d, [2], test=True, crop_border=border) as t:
        raises_data_error(lambda: t.get_batch(2), file="data_batch_2", contains=("none of its 1 images",))


def test_bad_jpeg_batches_name_the_file(tmp_path):
    size = 12
    jpegs, labels = make_jpegs(4, size, seed=7)
    d, *_ = write_jpeg_folder(tmp_path / "d", size, {1: (jpegs, labels)}, batch_size=3)
    path = bt.batch_path(d, 1)

    def batch_of():
        with pv.make_provider(None, d, [1], test=True, crop_border=2) as p:
            return p.get_batch(1)

    raises_data_error(lambda: batch_of(), file="data_batch_1", key="jpegs", contains=("batch_size = 3",))
    bt.write_meta(d, data_mean=np.zeros(3 * size * size), label_names=["a", "b", "c"], dp_type="inet-lr-cropped-jpeg")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # truncated batch file
    raises_data_error(lambda: batch_of(), file="data_batch_1", contains=("truncated",))
    pickle_ = lambda obj: path.write_bytes(pickle.dumps(obj, protocol=2))  # noqa: E731
    pickle_((jpegs, None, [("n1", 1), ("n2", 5), ("n3", 0), ("n4", 0)]))
    raises_data_error(lambda: batch_of(), file="data_batch_1", key="labels",
                      contains=("label 5 at position 1 is out of range 0..2",))
    pickle_((jpegs, None, [("n1", 1)] * 3))
    raises_data_error(lambda: batch_of(), file="data_batch_1", key="labels", contains=("3 labels for 4",))
    pickle_({"data": np.zeros((3, 3)), "labels": [0]})
    raises_data_error(lambda: batch_of(), file="data_batch_1", contains=("raw-pixel format",))
    big = jpeg_bytes(smooth_image(np.random.default_rng(0), 14, 12))
    pickle_(([jpegs[0], big], None, [("n", None), ("n", 2)]))
    raises_data_error(lambda: batch_of(), file="data_batch_1", key="jpegs",
                      contains=("image 1 is 12x14 pixels", "exactly 12x12"))
    # label_offset is added; None (unlabelled) reads as 0
    bt.write_meta(d, data_mean=np.zeros(3 * size * size), label_names=["a", "b", "c"], label_offset=1)
    pickle_((jpegs[:2], None, [("n", None), ("n", 1)]))
    with pv.make_provider("inet-lr-cropped-jpeg", d, [1], test=True, crop_border=2) as p:
        assert p.get_batch(1)[1].tolist() == [[1.0, 2.0]]
    (d / "batches.meta").unlink()
    raises_data_error(lambda: pv.make_provider("inet-lr-cropped-jpeg", d, [1]), file="batches.meta",
                      contains=("missing",))


def test_raw_provider_errors_and_no_crop(tmp_path):
    d = tmp_path / "raw"
    d.mkdir()
    bt.write_batch(bt.batch_path(d, 1), np.zeros((3 * 36, 1025), np.uint8), [0] * 1025, num_classes=2)
    bt.write_meta(d, data_mean=np.zeros(108), label_names=["a", "b"], color_pca=random_pca(np.random.default_rng(0)))
    with pv.make_provider("inet-lr-cropped", d, [1], crop_border=1, color_noise=0.1) as p:
        raises_data_error(lambda: p.get_batch(1, rng=pv.batch_rng(0, 1, 1)), file="data_batch_1", key="data",
                          contains=("1024",))
    with pv.make_provider("inet-lr-cropped", d, [1], crop_border=1) as p:  # without noise the size is fine
        assert p.get_batch(1, rng=pv.batch_rng(0, 1, 1))[0].shape == (48, 1025)
    with pytest.raises(DataError, match="crop-border=3"):
        pv.make_provider("inet-lr-cropped", d, [1], crop_border=3)


def test_no_crop_pastes_small_images_on_a_mean_canvas(tmp_path):
    """§D.4 no_crop: a smaller image sits in the middle of an S×S canvas of the scalar mean, and
    the scalar mean is subtracted. Mean 100.4 -> canvas 100, subtracted value float32(100.4)."""
    size = 12
    small = smooth_image(np.random.default_rng(8), 7, 10)  # h 7, w 10
    j = jpeg_bytes(small)
    d, *_ = write_jpeg_folder(tmp_path / "d", size, {1: ([j], [0])})
    bt.write_meta(d, data_mean=np.full(3 * size * size, 100.4), label_names=["a", "b", "c"], no_crop=True)
    with pv.make_provider("inet-lr-cropped-jpeg", d, [1], test=True, crop_border=0) as p:
        x = p.get_batch(1)[0].reshape(3, size, size)
    canvas = np.full((3, size, size), 100, np.uint8)
    canvas[:, 2:9, 1:11] = ref_decode(j)  # top-left at ((12-7)//2, (12-10)//2)
    assert_close(x, canvas.astype(F32) - F32(100.4), 0, 0, what="no_crop canvas")


def test_greyscale_and_cmyk_jpegs_are_converted_to_rgb(tmp_path):
    size = 8
    rgb = smooth_image(np.random.default_rng(9), size, size)
    jpegs = [jpeg_bytes(rgb, "L"), jpeg_bytes(rgb, "CMYK")]
    d, mean, _ = write_jpeg_folder(tmp_path / "d", size, {1: (jpegs, [0, 1])})
    with pv.make_provider(None, d, [1], test=True, crop_border=0) as p:
        x = p.get_batch(1)[0]
    want = np.stack([ref_decode(j).reshape(-1).astype(F32) for j in jpegs], axis=1) - mean.astype(F32)[:, None]
    assert_close(x, want, 0, 0, what="converted")


# -- flatmem, dummy ---------------------------------------------------------------------------------------

def test_flatmem_and_dummy(tmp_path):
    d = tmp_path / "flat"
    d.mkdir()
    data = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    bt.write_batch(bt.batch_path(d, 1), data, [2, 0, 1, 2], num_classes=3)
    bt.write_meta(d, data_mean=np.full(5, 1.5), label_names=["a", "b", "c"], dp_type="flatmem")
    p = pv.make_provider(None, d, [1])
    x, onehot = p.get_batch(1)
    assert_close(x, data - F32(1.5), 0, 0, what="flatmem data - mean")
    assert onehot.tolist() == [[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]]
    assert p.get_data_dims(0) == 5 and p.get_data_dims(1) == 3
    dm = pv.make_provider("dummy-lr-7", tmp_path / "nothing", [1, 2])
    a = dm.get_batch(1, rng=np.random.default_rng(0))
    b = dm.get_batch(1, rng=np.random.default_rng(0))
    assert [m.shape for m in a] == [(7, 512), (1, 512), (1, 512)] and all(np.array_equal(u, v) for u, v in zip(a, b))
    assert set(np.unique(a[1])) <= set(range(10)) and dm.get_num_classes() == 10
    with pytest.raises(DataError, match="dummy-lr-<D>"):
        pv.make_provider("dummy-lr-x", tmp_path, [1])


# -- make-batches from an image folder -------------------------------------------------------------------

def image_folder(root, sizes=((20, 30), (31, 17), (16, 16))):
    rng = np.random.default_rng(10)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for k, (h, w) in enumerate(sizes):
            Image.fromarray(smooth_image(rng, h, w)).save(root / cls / f"{k}.png")
    (root / "dog" / "notes.txt").write_text("not an image, ignored by suffix")
    return root


def test_image_folder_to_jpeg_batches(tmp_path):
    src = image_folder(tmp_path / "imgs")
    made = mb.image_folder_batches(src, tmp_path / "out", image_size=16, batch_size=4, num_test_batches=1, seed=1)
    assert made.batch_nums == [1, 2] and made.train_batches == [1] and made.test_batches == [2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["batches.meta", "data_batch_1", "data_batch_2"]
    meta = bt.read_meta(tmp_path / "out")
    assert meta.label_names == ["cat", "dog"] and meta.num_vis == 768 and meta.dp_type == "inet-lr-cropped-jpeg"
    assert meta.raw["batch_size"] == 4
    b1, b2 = bt.read_jpeg_batch(tmp_path / "out", 1, meta), bt.read_jpeg_batch(tmp_path / "out", 2, meta)
    assert b1.num_cases == 4 and b2.num_cases == 2
    assert sorted(b1.labels.tolist() + b2.labels.tolist()) == [0] * 3 + [1] * 3
    assert [meta.label_names[k] for k in b1.labels] == b1.wnids
    # each stored image: the shorter side scaled to 16 (bicubic), then the centre 16x16
    order = np.random.default_rng(1).permutation(6)
    files = [src / c / f"{k}.png" for c in ("cat", "dog") for k in range(3)]
    for i, j in enumerate(order[:4]):
        with Image.open(files[j]) as im:
            w, h = im.size
            sc = 16 / min(w, h)
            nw, nh = max(16, round(w * sc)), max(16, round(h * sc))
            ref = im.convert("RGB")
            if (nw, nh) != (w, h):
                ref = ref.resize((nw, nh), Image.Resampling.BICUBIC)
            ref = ref.crop(((nw - 16) // 2, (nh - 16) // 2, (nw - 16) // 2 + 16, (nh - 16) // 2 + 16))
        # Pillow's encoder is deterministic: the stored bytes are the reference image encoded at quality 90
        assert b1.jpegs[i] == jpeg_bytes(np.asarray(ref), quality=90)
        assert b1.sizes[i] == (h, w)
    # mean and colour PCA from the training batch's pixels as the provider decodes them
    pixels = np.stack([ref_decode(j) for j in b1.jpegs])
    mean = pixels.reshape(4, -1).mean(axis=0)
    assert_close(meta.data_mean.ravel(), mean, 1e-9, 0, what="data_mean")  # float64 sums in another order
    xc = (pixels.reshape(4, 3, -1).astype(np.float64) - mean.reshape(1, 3, -1)).transpose(1, 0, 2).reshape(3, -1)
    vals, vecs = np.linalg.eigh(xc @ xc.T / xc.shape[1])
    s, v = meta.color_pca
    assert_close(s, np.sqrt(vals[::-1]).astype(F32), 1e-4, 1e-5, what="color_pca s")  # float32 storage
    for k in range(3):
        assert abs(abs(float(v[:, k] @ vecs[:, 2 - k])) - 1) < 1e-5


def test_image_folder_raw_format_and_bad_image(tmp_path):
    src = image_folder(tmp_path / "imgs")
    made = mb.image_folder_batches(src, tmp_path / "raw", image_size=12, batch_size=6, num_test_batches=0, fmt="raw")
    b = bt.read_batch(tmp_path / "raw", 1, made.meta)
    assert b.data.shape == (432, 6) and b.data.dtype == np.uint8 and made.meta.dp_type == "inet-lr-cropped"
    assert_close(made.meta.data_mean.ravel(), b.data.mean(axis=1, dtype=np.float64), 1e-9, 0, what="raw mean")
    (src / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out2"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    raises_data_error(lambda: mb.image_folder_batches(src, out, image_size=12, batch_size=3),
                      file="cat/broken.jpg", contains=("cannot be read as an image",))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # nothing written, no temporary folder left
    raises_data_error(lambda: mb.image_folder_batches(tmp_path / "none", out), file="none",
                      contains=("not a folder",))


def test_cli_make_batches_images(tmp_path, capsys):
    src = image_folder(tmp_path / "imgs")
    out = tmp_path / "out"
    assert cli_main(["make-batches", str(out), "--images", str(src), "--image-size", "16", "--batch-size", "3",
                     "--test-batches", "1"]) == 0
    text = capsys.readouterr().out
    assert "data_batch_1..2" in text and "2 classes" in text and "train 1-1, test 2-2" in text
    assert cli_main(["make-batches", str(out), "--images", str(src)]) != 0
    assert "not empty" in capsys.readouterr().err
    assert cli_main(["make-batches", str(tmp_path / "o2"), "--images", str(src), "--batch-size", "0"]) != 0
    assert "batch size (0)" in capsys.readouterr().err


# -- through the driver ---------------------------------------------------------------------------------------

TINY_NET = """
[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
[fc1]
type=fc
inputs=data
outputs=9
initW=0.01
neuron=relu
gpu=0
[fc2]
type=fc
inputs=fc1
outputs=3
initW=0.01
[probs]
type=softmax
inputs=fc2
[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""
TINY_PARAMS = "".join(f"[{n}]\nepsW=0.001\nepsB=0.002\nmomW=0.9\nmomB=0.9\nwc=0.0005\n" for n in ("fc1", "fc2")) + \
    "[logprob]\ncoeff=1\ntopk=2\n"


def test_train_on_jpeg_batches_through_the_driver(tmp_path):
    """A tiny fc net on 3x8x8 crops of 12x12 JPEGs: decoding in a worker process, chunked crops,
    colour noise, prefetch; the multiview test's costs equal the softmax outputs of the 10 views
    averaged by hand."""
    size = 12
    batches = {}
    for num in (1, 2, 3):
        jpegs, labels = make_jpegs(40, size, seed=20 + num)
        batches[num] = (jpegs, labels)
    d, *_ = write_jpeg_folder(tmp_path / "d", size, batches)
    (tmp_path / "net.cfg").write_text(TINY_NET)
    (tmp_path / "params.cfg").write_text(TINY_PARAMS)
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    base = ["--data-path", str(d), "--save-path", str(tmp_path / "save"), "--train-range", "1-2", "--test-range", "3",
            "--layer-def", str(tmp_path / "net.cfg"), "--layer-params", str(tmp_path / "params.cfg"),
            "--crop-border", "2", "--mini", "16", "--seed", "4", "--multiview-test", "1"]
    log = io.StringIO()
    run, net = train(parser.parse_args(base + ["--epochs", "1", "--test-freq", "2", "--color-noise", "0.1",
                                               "--decode-workers", "1"]), out=log)
    lines = log.getvalue().splitlines()
    assert [l.split("...")[0] for l in lines if "..." in l] == ["1.1", "1.2", "2.1"]
    m = re.search(r"Test output: logprob:  ([\d.]+), ([\d.]+), ([\d.]+)", log.getvalue())
    assert m and 0 < float(m.group(1)) < 5 and 0 <= float(m.group(3)) <= float(m.group(2)) <= 1

    # --test-only with a fresh net: the printed costs against the views averaged by hand
    log = io.StringIO()
    _, net = train(parser.parse_args(base + ["--test-only", "1", "--decode-workers", "0"]), out=log)
    with pv.make_provider(None, d, [3], test=True, multiview=True, crop_border=2) as t:
        x, lab = t.get_batch(3)
    n = 40
    probs = []
    for v in range(10):
        for a in range(0, n, 16):
            net.forward([x[:, v * n + a:v * n + min(a + 16, n)], lab[:, a:min(a + 16, n)]], train=False)
            probs.append(np.array(net.acts("probs")))
    p = np.concatenate(probs, axis=1).reshape(3, 10, n)
    avg = p[:, 0].copy()
    for v in range(1, 10):
        avg += p[:, v]
    avg *= F32(0.1)
    labels = lab[0, :n].astype(int)
    nll = -np.log(avg[labels, np.arange(n)]).astype(np.float64).sum() / n
    top1 = np.mean([0.0 if avg[labels[i], i] == avg[:, i].max() else 1.0 for i in range(n)])  # no ties here
    top2 = np.mean([0.0 if (avg[:, i] > avg[labels[i], i]).sum() < 2 else 1.0 for i in range(n)])
    got = re.search(r"Test output: logprob:  ([\d.]+), ([\d.]+), ([\d.]+)", log.getvalue())
    assert got, log.getvalue()
    assert [float(g) for g in got.groups()] == pytest.approx([nll, top1, top2], abs=1e-6)  # printed with 6 decimals
