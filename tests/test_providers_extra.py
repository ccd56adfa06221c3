"""The providers added last (driver.md §D.2, §D.7): ``inet-lr`` (whole images with word
presence), ``flickr-ce-cropped`` (multi-hot tags on JPEG batches), ``dummy-ce-<D>`` (random
cases with one-hot labels); the multi-label batch writer (``make-batches --tags``); and a short
training run through the driver with each.

Expected matrices are written from the spec with plain numpy loops and hand-written tables
(the tag → row table below is typed out, not computed by the harness's normalisation).
Comparisons are bit-exact (atol = rtol = 0): the references do the same float32 operations.
"""

from __future__ import annotations

import argparse
import io
import pickle
import re

import numpy as np
import pytest
from PIL import Image

from alexnet_replay.cli import main as cli_main
from alexnet_replay.errors import ReplayError
from alexnet_replay.harness import batches as bt
from alexnet_replay.harness import make_batches as mb
from alexnet_replay.harness import providers as pv
from alexnet_replay.harness.driver import train
from alexnet_replay.harness.options import add_train_arguments
from alexnet_replay.harness.pickles import DataError
from alexnet_replay.testing import assert_close

F32 = np.float32


# -- helpers ------------------------------------------------------------------------------------------

def raises_data_error(fn, file, key=None, contains=()):
    with pytest.raises(DataError) as info:
        fn()
    err = info.value
    if file is None:
        assert err.file is None, err.file
    else:
        assert err.file is not None and str(err.file).endswith(str(file)), (err.file, file)
    assert err.key == key, (err.key, key)
    for text in contains:
        assert text in str(err), (text, str(err))
    return err


def check_matrix(m, rows, cols):
    assert m.shape == (rows, cols) and m.dtype == np.float32 and m.flags.c_contiguous, (m.shape, m.dtype)


def smooth_image(rng, h, w):
    """(h, w, 3) uint8 with some structure (JPEG keeps it recognisable) and some noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([40 + 6 * yy + 3 * xx, 200 - 5 * xx, 90 + 4 * yy], axis=-1) + rng.integers(0, 40, (h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def jpeg_bytes(arr, quality=95):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def ref_decode(data):
    """Pillow's own decode of the bytes, RGB, channel-major (3, H, W) uint8."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1).copy()


def make_jpegs(n, size, seed):
    rng = np.random.default_rng(seed)
    return [jpeg_bytes(smooth_image(rng, size, size)) for _ in range(n)]


def args_for(*argv):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(argv)


def cost_lines(text):
    """The log's cost lines without the timings and the run folder's name."""
    out = []
    for line in text.splitlines():
        if "..." in line or line.startswith("Test output"):
            out.append(re.sub(r"\s*\([\d.]+ sec\)", "", line))
    return out


# -- inet-lr ----------------------------------------------------------------------------------------------

S_LR = 3          # 3x3 images: num_vis 27
CLASSES_LR = 4


def write_inet_lr_folder(folder, sizes=(7, 13), seed=3, wordpres_dtype=np.uint8):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    num_vis = 3 * S_LR * S_LR
    batches = {}
    for num, n in enumerate(sizes, start=1):
        data = rng.integers(0, 256, (num_vis, n), dtype=np.uint8)
        labels = [int(k) for k in rng.integers(0, CLASSES_LR, n)]
        words = (rng.random((100, n)) < 0.3).astype(wordpres_dtype)
        bt.write_batch(bt.batch_path(folder, num), data, labels, num_classes=CLASSES_LR, extra={"wordpres": words})
        batches[num] = (data, labels, words)
    mean = rng.uniform(20, 230, num_vis)
    bt.write_meta(folder, data_mean=mean, label_names=[f"c{k}" for k in range(CLASSES_LR)], num_vis=num_vis,
                  dp_type="inet-lr")
    return folder, mean, batches


def test_inet_lr_matrices(tmp_path):
    """[data − mean (27, N), labels (1, N), wordpres (100, N)] on batches of 7 and 13 images."""
    d, mean, batches = write_inet_lr_folder(tmp_path / "d")
    p = pv.make_provider(None, d, [1, 2])
    assert isinstance(p, pv.ImageNetLogRegProvider) and p.num_views == 1
    assert [p.get_data_dims(i) for i in range(3)] == [27, 1, 100] and p.get_num_classes() == CLASSES_LR
    raises_data_error(lambda: p.get_data_dims(3), file=None, contains=("dataIdx 3", "0..2"))
    for num, (data, labels, words) in batches.items():
        x, lab, w = p.get_batch(num)
        n = len(labels)
        for m, rows in ((x, 27), (lab, 1), (w, 100)):
            check_matrix(m, rows, n)
        want = np.empty((27, n), dtype=F32)
        for r in range(27):
            for i in range(n):
                want[r, i] = F32(data[r, i]) - F32(mean[r])  # float32 subtraction, one rounding
        assert_close(x, want, 0, 0, what=f"batch {num}: data - mean")
        assert lab[0].tolist() == labels
        assert w.tolist() == words.astype(F32).tolist()  # passed on as stored
    # the same batch read again is the same (nothing drawn), and by name as well as by dp_type
    q = pv.make_provider("inet-lr", d, [2], test=True)
    assert all(np.array_equal(a, b) for a, b in zip(q.get_batch(2), p.get_batch(2)))


def test_inet_lr_boolean_and_float_wordpres(tmp_path):
    d, _, batches = write_inet_lr_folder(tmp_path / "d", sizes=(7,), wordpres_dtype=bool)
    _, _, w = pv.make_provider(None, d, [1]).get_batch(1)
    assert w.tolist() == batches[1][2].astype(F32).tolist()
    d2, _, batches2 = write_inet_lr_folder(tmp_path / "d2", sizes=(13,), wordpres_dtype=np.float64)
    _, _, w2 = pv.make_provider(None, d2, [1]).get_batch(1)
    assert w2.tolist() == batches2[1][2].astype(F32).tolist()


def test_inet_lr_bad_input(tmp_path):
    d, _, batches = write_inet_lr_folder(tmp_path / "d", sizes=(7, 13, 7, 7, 7, 7))
    f = {num: bt.batch_path(d, num) for num in range(1, 7)}
    data, labels, words = batches[1]

    def rewrite(num, obj):
        f[num].write_bytes(pickle.dumps(obj, protocol=2))

    rewrite(1, {"data": data, "labels": labels})                                   # no wordpres
    rewrite(2, {"data": batches[2][0], "labels": batches[2][1], "wordpres": batches[2][2].T})  # one row per image
    rewrite(3, {"data": data, "labels": labels, "wordpres": words[:99]})            # 99 rows
    rewrite(4, {"data": data, "labels": labels, "wordpres": np.full((100, 7), np.nan)})
    rewrite(5, {"data": data, "labels": labels[:5], "wordpres": words})             # labels cut short
    f[6].write_bytes(pickle.dumps({"data": data, "labels": labels, "wordpres": words}, protocol=2)[:-40])
    p = pv.make_provider("inet-lr", d, range(1, 7))
    raises_data_error(lambda: p.get_batch(1), file="data_batch_1", key="wordpres", contains=("missing",))
    raises_data_error(lambda: p.get_batch(2), file="data_batch_2", key="wordpres",
                      contains=("shape (13, 100)", "transpose"))
    raises_data_error(lambda: p.get_batch(3), file="data_batch_3", key="wordpres", contains=("shape (99, 7)",))
    raises_data_error(lambda: p.get_batch(4), file="data_batch_4", key="wordpres", contains=("NaN",))
    raises_data_error(lambda: p.get_batch(5), file="data_batch_5", key="labels", contains=("truncated or damaged",))
    raises_data_error(lambda: p.get_batch(6), file="data_batch_6", contains=("truncated",))
    with pytest.raises(DataError, match="batch 7 is not in"):
        p.get_batch(7)
    with pytest.raises(DataError, match="has no views"):
        pv.make_provider("inet-lr", d, [1], test=True, multiview=True)
    with pytest.raises(DataError, match="no colour noise"):
        pv.make_provider("inet-lr", d, [1], color_noise=0.1)
    raises_data_error(lambda: pv.make_provider("inet-lr", d, [1, 8]), file="data_batch_8", contains=("missing",))
    # a tuple batch (the JPEG format) and a folder whose images are not 3·S²
    f[1].write_bytes(pickle.dumps(([b"x"], [None], [("n1", 0)]), protocol=2))
    raises_data_error(lambda: p.get_batch(1), file="data_batch_1", contains=("pickled dict", "JPEG batch format"))
    e = tmp_path / "e"
    e.mkdir()
    bt.write_batch(bt.batch_path(e, 1), np.zeros((20, 7), np.uint8), [0] * 7, extra={"wordpres": np.zeros((100, 7))})
    bt.write_meta(e, data_mean=np.zeros(20), label_names=["a"])
    raises_data_error(lambda: pv.make_provider("inet-lr", e, [1]), file="batches.meta", key="num_vis",
                      contains=("not 3·S²",))


# -- flickr-ce-cropped ---------------------------------------------------------------------------------

#: The tags of the hand-built batches and the row each must land in (None: not in freq_to_id),
#: worked out by hand from §D.7's rule (lower case, whitespace removed).
RAW_ROW = {"Sea": 0, " sand ": 1, "New York": 2, "SEA": 0, "unknown": None, "Night  Sky": 4, "sand": 1}
POOL = list(RAW_ROW)
TAG_NAMES = ["sea", "sand", "newyork", "beach", "nightsky"]   # row 3 is never used by these images
FREQ_TO_ID = {"sea": 0, "sand": 1, "newyork": 2, "beach": 3, "nightsky": 4}
C = len(TAG_NAMES)


def image_tags(n, shift=0):
    """Image i: (i % 4) tags from POOL, starting at (i + shift) % 7; image 0 has none."""
    return [[POOL[(i + shift + k) % len(POOL)] for k in range(i % 4)] for i in range(n)]


def expected_multi_hot(tags):
    m = np.zeros((C, len(tags)), dtype=F32)
    for i, row in enumerate(tags):
        for t in row:
            if RAW_ROW[t] is not None:
                m[RAW_ROW[t], i] = 1.0
    return m


def random_pca(rng):
    v, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    return np.array([19.0, 6.5, 2.25], dtype=F32), v.astype(F32)


def write_flickr_folder(folder, size, batches, seed=0, **meta_extra):
    """batches: {num: (jpegs, tag lists)}; a random float mean and a colour PCA in batches.meta.
    Beside it, folder.with_name(folder.name + '-inet'): the same JPEGs as ImageNet JPEG batches
    (labels 0) with the same meta, to compare the image matrices with."""
    rng = np.random.default_rng(seed)
    inet = folder.with_name(folder.name + "-inet")
    folder.mkdir(parents=True)
    inet.mkdir(parents=True)
    mean = rng.uniform(60, 180, 3 * size * size)
    pca = random_pca(rng)
    for num, (jpegs, tags) in batches.items():
        bt.write_flickr_batch(bt.batch_path(folder, num), jpegs, tags)
        bt.write_jpeg_batch(bt.batch_path(inet, num), jpegs, [0] * len(jpegs), ["n0"] * len(jpegs))
    meta = dict(data_mean=mean, num_vis=3 * size * size, color_pca=pca, batch_size=64)
    bt.write_meta(folder, label_names=TAG_NAMES, dp_type="flickr-ce-cropped",
                  **{"freq_to_id": FREQ_TO_ID, **meta, **meta_extra})
    bt.write_meta(inet, label_names=["n0"], dp_type="inet-lr-cropped-jpeg", **meta)
    return folder, inet, mean


def reference_crops(images, size, border, offsets, flips, chunk, mean):
    """§D.4 steps 2–3 with plain loops: image i takes chunk i // chunk's offset and flip; the centre
    window of the mean is subtracted in float32."""
    s = size - 2 * border
    m = np.asarray(mean, dtype=np.float64).reshape(3, size, size)[:, border:border + s, border:border + s]
    cols = []
    for i, img in enumerate(images):
        y, x = offsets[i // chunk]
        win = img[:, y:y + s, x:x + s]
        if flips[i // chunk]:
            win = win[:, :, ::-1]
        cols.append((win.astype(F32) - m.astype(F32)).reshape(-1))
    return np.stack(cols, axis=1)


SIZE, BORDER = 12, 2
CROP_DIM = 3 * (SIZE - 2 * BORDER) ** 2   # 192


@pytest.fixture
def flickr(tmp_path):
    jp1, jp2 = make_jpegs(37, SIZE, seed=1), make_jpegs(13, SIZE, seed=2)
    tags1, tags2 = image_tags(37), image_tags(13, shift=3)
    d, inet, mean = write_flickr_folder(tmp_path / "fl", SIZE, {1: (jp1, tags1), 2: (jp2, tags2)})
    return d, inet, mean, {1: (jp1, tags1), 2: (jp2, tags2)}


def test_flickr_training_batch(flickr):
    """37 images (chunks of 32 and 5): crops and flips per chunk, the centre mean window, and a
    multi-hot (5, 37) label matrix from the hand-written tag table."""
    d, _, mean, batches = flickr
    jpegs, tags = batches[1]
    draws = pv.BatchDraws(offsets=np.array([[0, 4], [3, 1]]), flips=np.array([True, False]), chunk=32)
    with pv.make_provider(None, d, [1, 2], crop_border=BORDER) as p:
        assert isinstance(p, pv.FlickrProvider) and p.chunk == 32 and p.get_num_classes() == C
        assert [p.get_data_dims(i) for i in range(2)] == [CROP_DIM, C] and p.num_matrices == 2
        x, lab = p.get_batch(1, draws=draws)
    check_matrix(x, CROP_DIM, 37)
    check_matrix(lab, C, 37)
    want = reference_crops([ref_decode(j) for j in jpegs], SIZE, BORDER, draws.offsets, draws.flips, 32, mean)
    assert_close(x, want, 0, 0, what="flickr crops - mean window")
    assert lab.tolist() == expected_multi_hot(tags).tolist()
    assert lab[:, 0].tolist() == [0] * C                       # image 0: no tags


def test_flickr_multi_hot_columns_by_hand(flickr):
    """A few columns worked out by hand: a row named twice ("sand", " sand ") is one 1; unknown
    tags add nothing; an image without tags is a zero column."""
    d, _, _, batches = flickr
    tags = batches[1][1]
    assert tags[3] == ["SEA", "unknown", "Night  Sky"] and tags[5] == ["Night  Sky"] and tags[4] == []
    assert tags[7] == ["Sea", " sand ", "New York"] and tags[27] == ["sand", "Sea", " sand "]
    with pv.make_provider(None, d, [1], test=True, crop_border=BORDER) as p:
        _, lab = p.get_batch(1)
    assert lab[:, 3].tolist() == [1, 0, 0, 0, 1]
    assert lab[:, 5].tolist() == [0, 0, 0, 0, 1]
    assert lab[:, 4].tolist() == [0, 0, 0, 0, 0]
    assert lab[:, 7].tolist() == [1, 1, 1, 0, 0]
    assert lab[:, 27].tolist() == [1, 1, 0, 0, 0]


def test_flickr_images_match_the_jpeg_provider(flickr):
    """Everything but the labels is §D.4's: with colour noise, and with the 10 test views, the image
    matrix equals inet-lr-cropped-jpeg's on the same JPEGs bit for bit; labels repeat per view."""
    d, inet, _, batches = flickr
    r = np.random.default_rng(5).standard_normal((37, 3), dtype=F32)
    draws = pv.BatchDraws(offsets=np.array([[4, 0], [1, 2]]), flips=np.array([False, True]), chunk=32, noise=r)
    with pv.make_provider(None, d, [1], crop_border=BORDER, color_noise=0.1) as p, \
            pv.make_provider(None, inet, [1], crop_border=BORDER, color_noise=0.1) as q:
        x, lab = p.get_batch(1, draws=draws)
        y, _ = q.get_batch(1, draws=draws)
    assert_close(x, y, 0, 0, what="flickr vs jpeg provider, colour noise")
    assert lab.tolist() == expected_multi_hot(batches[1][1]).tolist()
    with pv.make_provider(None, d, [2], test=True, multiview=True, crop_border=BORDER) as p, \
            pv.make_provider(None, inet, [2], test=True, multiview=True, crop_border=BORDER) as q:
        assert p.num_views == 10
        x, lab = p.get_batch(2)
        y, _ = q.get_batch(2)
    check_matrix(x, CROP_DIM, 130)
    check_matrix(lab, C, 130)
    assert_close(x, y, 0, 0, what="flickr vs jpeg provider, 10 views")
    one = expected_multi_hot(batches[2][1])
    for v in range(10):
        assert lab[:, v * 13:(v + 1) * 13].tolist() == one.tolist(), v


def test_flickr_seeded_replay_and_prefetch(flickr):
    """Same seed, same draws, same matrices: drawn here, handed in ready-made, or prefetched."""
    d, _, _, _ = flickr
    with pv.make_provider(None, d, [1, 2], crop_border=BORDER, color_noise=0.1) as p:
        a = p.get_batch(1, rng=np.random.default_rng(7))
        da = p.last_draws
        b = p.get_batch(1, rng=np.random.default_rng(7))
        db = p.last_draws
        c = p.get_batch(1, draws=p.draw(37, np.random.default_rng(7)))
        other = p.get_batch(1, rng=np.random.default_rng(9))
        assert p.prefetch(2, np.random.default_rng(8))
        e = p.get_batch(2, rng=np.random.default_rng(8))  # the prefetched batch
        f = p.get_batch(2, rng=np.random.default_rng(8))  # assembled here
    for u, v, w in zip(a, b, c):
        assert np.array_equal(u, v) and np.array_equal(u, w)
    for field in ("offsets", "flips", "noise"):
        assert np.array_equal(getattr(da, field), getattr(db, field)), field
    assert da.noise.shape == (37, 3) and len(da.offsets) == 2
    assert not np.array_equal(a[0], other[0]) and np.array_equal(a[1], other[1])  # tags do not depend on draws
    assert all(np.array_equal(u, v) for u, v in zip(e, f))


def test_flickr_dropped_image_drops_its_tags(tmp_path):
    """An undecodable image goes with its tag column (§D.4, "everything else as in D.4")."""
    jpegs = make_jpegs(7, 10, seed=4)
    jpegs[2] = b"\xff\xd8\xff\xe0 not a jpeg"
    tags = image_tags(7)
    d, _, _ = write_flickr_folder(tmp_path / "fl", 10, {1: (jpegs, tags)})
    with pv.make_provider(None, d, [1], test=True, crop_border=1) as p:
        x, lab = p.get_batch(1)
        assert [i for _, i, _ in p.dropped] == [2]
    kept = [t for i, t in enumerate(tags) if i != 2]
    check_matrix(x, 3 * 8 * 8, 6)
    assert lab.tolist() == expected_multi_hot(kept).tolist()


def test_flickr_bad_input(tmp_path):
    jpegs = make_jpegs(7, 10, seed=6)
    tags = image_tags(7)
    d, _, _ = write_flickr_folder(tmp_path / "fl", 10, {n: (jpegs, tags) for n in range(1, 10)})
    f = {n: bt.batch_path(d, n) for n in range(1, 10)}

    def rewrite(num, obj):
        f[num].write_bytes(pickle.dumps(obj, protocol=2))

    rewrite(1, {"data": np.zeros((300, 7), np.uint8), "labels": [0] * 7})
    rewrite(2, (jpegs, tags))
    rewrite(3, (jpegs, None, tags[:5]))
    rewrite(4, (jpegs, None, tags[:6] + ["sea"]))
    rewrite(5, (jpegs, None, tags[:6] + [["sea", 3]]))
    rewrite(6, (jpegs[:6] + [17], None, tags))
    f[7].write_bytes(pickle.dumps((jpegs, None, tags), protocol=2)[:-25])
    rewrite(8, (make_jpegs(6, 10, seed=1) + [jpeg_bytes(np.zeros((9, 10, 3), np.uint8))], None, tags))
    rewrite(9, (jpegs, None, tags))
    with pv.make_provider("flickr-ce-cropped", d, range(1, 10), test=True, crop_border=1) as p:
        raises_data_error(lambda: p.get_batch(1), file="data_batch_1", contains=("holds a dict", "§D.7"))
        raises_data_error(lambda: p.get_batch(2), file="data_batch_2", contains=("3-tuple", "a tuple of 2"))
        raises_data_error(lambda: p.get_batch(3), file="data_batch_3", key="tags",
                          contains=("5 tag lists for 7 JPEG images", "truncated or damaged"))
        raises_data_error(lambda: p.get_batch(4), file="data_batch_4", key="tags",
                          contains=("entry 6 is str, not a list",))
        raises_data_error(lambda: p.get_batch(5), file="data_batch_5", key="tags", contains=("entry 6", "not text"))
        raises_data_error(lambda: p.get_batch(6), file="data_batch_6", key="jpegs", contains=("entry 6 is int",))
        raises_data_error(lambda: p.get_batch(7), file="data_batch_7", contains=("truncated",))
        raises_data_error(lambda: p.get_batch(8), file="data_batch_8", key="jpegs",
                          contains=("image 6 is 10x9 pixels",))
        assert p.get_batch(9)[1].shape == (C, 7)
    big = tmp_path / "big"
    write_flickr_folder(big, 10, {1: (jpegs, tags)}, batch_size=5)
    with pv.make_provider(None, big, [1], test=True, crop_border=1) as p:
        raises_data_error(lambda: p.get_batch(1), file="data_batch_1", key="jpegs", contains=("batch_size = 5",))
    nometa = tmp_path / "nometa"
    nometa.mkdir()
    bt.write_flickr_batch(bt.batch_path(nometa, 1), jpegs, tags)
    bt.write_meta(nometa, data_mean=np.zeros(300), label_names=TAG_NAMES)
    raises_data_error(lambda: pv.make_provider("flickr-ce-cropped", nometa, [1], crop_border=1),
                      file="batches.meta", key="freq_to_id", contains=("missing",))
    bt.write_meta(nometa, data_mean=np.zeros(300), label_names=TAG_NAMES, freq_to_id={"sea": 0, "sky": 5})
    raises_data_error(lambda: pv.make_provider("flickr-ce-cropped", nometa, [1], crop_border=1),
                      file="batches.meta", key="freq_to_id", contains=("'sky' maps to 5", "0..4"))
    bt.write_meta(nometa, data_mean=np.zeros(300), label_names=TAG_NAMES, freq_to_id=[("sea", 0)])
    raises_data_error(lambda: pv.make_provider("flickr-ce-cropped", nometa, [1], crop_border=1),
                      file="batches.meta", key="freq_to_id", contains=("must be a dict",))


def test_normalise_tag():
    assert bt.normalise_tag(" New\tYork  City\n") == "newyorkcity"
    assert bt.normalise_tag("SEA") == "sea" and bt.normalise_tag("   ") == ""
    assert pv.tag_rows([["Sea", "x", "SEA"], []], {"sea": 2}) == [[2, 2], []]


# -- dummy-ce-<D> -----------------------------------------------------------------------------------------

def test_dummy_ce_values_and_replay(tmp_path):
    """[rand (D, 16), one-hot (16, 16)], D = 13: the draws of the generator handed in, in order
    (data row-major, then the 16 labels), so the same seed gives the same batch."""
    dm = pv.make_provider("dummy-ce-13", tmp_path / "nothing", [1, 2])
    assert isinstance(dm, pv.DummyCEProvider) and dm.num_views == 1 and dm.num_matrices == 2
    assert [dm.get_data_dims(i) for i in range(2)] == [13, 16] and dm.get_num_classes() == 16
    with pytest.raises(DataError, match="dataIdx 2"):
        dm.get_data_dims(2)
    x, onehot = dm.get_batch(1, rng=np.random.default_rng(11))
    check_matrix(x, 13, 16)
    check_matrix(onehot, 16, 16)
    ref = np.random.default_rng(11)
    want_x = ref.standard_normal((13, 16), dtype=F32)
    want_labels = ref.integers(0, 16, 16)
    assert_close(x, want_x, 0, 0, what="dummy-ce data")
    want = np.zeros((16, 16), dtype=F32)
    for n, k in enumerate(want_labels):
        want[k, n] = 1.0
    assert onehot.tolist() == want.tolist()
    again = dm.get_batch(1, rng=np.random.default_rng(11))
    assert np.array_equal(again[0], x) and np.array_equal(again[1], onehot)
    other = dm.get_batch(1, rng=np.random.default_rng(12))
    assert not np.array_equal(other[0], x)
    # test batches are drawn from a generator seeded by the batch number: they repeat
    t = pv.make_provider("dummy-ce-13", tmp_path, [3], test=True)
    a, b = t.get_batch(3), t.get_batch(3, rng=np.random.default_rng(1))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    ref = np.random.default_rng([3])
    assert_close(a[0], ref.standard_normal((13, 16), dtype=F32), 0, 0, what="dummy-ce test data")
    assert a[1].argmax(axis=0).tolist() == ref.integers(0, 16, 16).tolist()
    # the RandomState kind replays too
    r1 = dm.get_batch(2, rng=np.random.RandomState(4))
    r2 = dm.get_batch(2, rng=np.random.RandomState(4))
    assert all(np.array_equal(u, v) for u, v in zip(r1, r2)) and np.array_equal(r1[1].sum(axis=0), np.ones(16))


def test_dummy_ce_errors_and_meta(tmp_path):
    for name in ("dummy-ce-0", "dummy-ce-x", "dummy-ce-"):
        with pytest.raises(DataError, match="dummy-ce-<D>"):
            pv.make_provider(name, tmp_path, [1])
    with pytest.raises(DataError, match="has no views"):
        pv.make_provider("dummy-ce-7", tmp_path, [1], test=True, multiview=True)
    with pytest.raises(DataError, match="no colour noise"):
        pv.make_provider("dummy-ce-7", tmp_path, [1], color_noise=0.1)
    d = tmp_path / "meta"
    d.mkdir()
    bt.write_meta(d, data_mean=np.zeros(7), label_names=["a"], dp_type="dummy-ce-7")
    p = pv.make_provider(None, d, [1])
    assert isinstance(p, pv.DummyCEProvider) and p.get_data_dims(0) == 7
    assert "dummy-ce-<D>" in pv.PROVIDERS and "inet-lr" in pv.PROVIDERS and "flickr-ce-cropped" in pv.PROVIDERS
    with pytest.raises(DataError, match="crashes in the release"):
        pv.make_provider("inet-rs-lr-cropped", d, [1])


# -- make-batches for multi-label data -------------------------------------------------------------------

#: (path relative to the image folder, (height, width)), the sizes all different, so the stored
#: sizes say which image is which
PHOTOS = [("a/one.jpg", (20, 30)), ("a/two.png", (31, 17)), ("b/three.jpg", (16, 16)), ("four.jpg", (25, 19)),
          ("b/c/five.jpeg", (18, 40)), ("six.jpg", (23, 23)), ("seven.JPG", (17, 29))]
TAG_LINES = {
    "a/one.jpg": "Sea, sand",
    "a/two.png": "New York ,night sky,SEA",
    "b/three.jpg": "",
    "four.jpg": None,                       # no TAB at all: no tags
    "b/c/five.jpeg": "sand,Sand, beach",
    "six.jpg": "sea",
    "seven.JPG": "NIGHT SKY,,  ",
}
#: each raw tag as the file gives it, and its normalised form, by hand
NORMAL = {"Sea": "sea", "sand": "sand", "New York": "newyork", "night sky": "nightsky", "SEA": "sea",
          "Sand": "sand", "beach": "beach", "sea": "sea", "NIGHT SKY": "nightsky"}


def photo_folder(root):
    rng = np.random.default_rng(10)
    for name, (h, w) in PHOTOS:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth_image(rng, h, w)).save(p)
    Image.fromarray(smooth_image(rng, 12, 12)).save(root / "unlisted.jpg")
    lines = ["# photo<TAB>tags", ""]
    for name, _ in PHOTOS:
        t = TAG_LINES[name]
        lines.append(name if t is None else f"{name}\t{t}")
    (root / "tags.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root, root / "tags.txt"


def file_tags(name):
    t = TAG_LINES[name]
    return [] if t is None else [x.strip() for x in t.split(",") if x.strip()]


def test_tagged_image_batches_round_trip(tmp_path):
    src, tags_file = photo_folder(tmp_path / "photos")
    made = mb.tagged_image_batches(src, tags_file, tmp_path / "out", image_size=10, batch_size=3,
                                   num_test_batches=1, seed=2)
    assert made.batch_nums == [1, 2, 3] and made.train_batches == [1, 2] and made.test_batches == [3]
    by_size = {size: name for name, size in PHOTOS}
    seen, train_tags, pixels = [], [], []
    for num in made.batch_nums:
        b = bt.read_flickr_batch(made.out_dir, num)
        assert b.num_cases == (3 if num < 3 else 1)
        for jpeg, size, tags in zip(b.jpegs, b.sizes, b.tags):
            name = by_size[tuple(size)]
            assert tags == file_tags(name), name        # stored raw, as the file wrote them
            seen.append(name)
            if num in made.train_batches:
                train_tags.append(tags)
                pixels.append(ref_decode(jpeg).reshape(-1))
    assert sorted(seen) == sorted(n for n, _ in PHOTOS)          # every listed image once, none unlisted
    # the vocabulary: normalised tags of the training images by image count, ties alphabetical
    counts = {}
    for tags in train_tags:
        for t in {NORMAL[x] for x in tags}:
            counts[t] = counts.get(t, 0) + 1
    names = sorted(counts, key=lambda t: (-counts[t], t))
    meta = made.meta
    assert meta.label_names == names and meta.raw["freq_to_id"] == {t: k for k, t in enumerate(names)}
    assert meta.dp_type == "flickr-ce-cropped" and meta.num_vis == 300 and meta.raw["batch_size"] == 3
    assert_close(meta.data_mean.ravel(), np.mean(np.stack(pixels), axis=0, dtype=np.float64), 1e-9, 0,
                 what="data_mean of the training images")
    assert meta.color_pca is not None
    # the provider reads them back: its multi-hot columns from the hand-made normal forms
    with pv.make_provider(None, made.out_dir, [1, 2, 3], test=True, crop_border=1) as p:
        for num in made.batch_nums:
            x, lab = p.get_batch(num)
            b = bt.read_flickr_batch(made.out_dir, num)
            check_matrix(x, 3 * 8 * 8, b.num_cases)
            want = np.zeros((len(names), b.num_cases), dtype=F32)
            for i, tags in enumerate(b.tags):
                for t in tags:
                    if NORMAL[t] in names:
                        want[names.index(NORMAL[t]), i] = 1.0
            assert lab.tolist() == want.tolist(), num
    few = mb.tagged_image_batches(src, tags_file, tmp_path / "few", image_size=10, batch_size=3,
                                  num_test_batches=1, seed=2, max_tags=2)
    assert few.meta.label_names == names[:2]


def test_tagged_image_batches_errors(tmp_path):
    src, tags_file = photo_folder(tmp_path / "photos")
    out = tmp_path / "out"
    bad = tmp_path / "bad.txt"
    bad.write_text("a/one.jpg\tsea\nmissing.jpg\tsky\n", encoding="utf-8")
    raises_data_error(lambda: mb.tagged_image_batches(src, bad, out, image_size=10), file="bad.txt",
                      contains=("line 2", "missing.jpg", "not a file"))
    bad.write_text("a/one.jpg\tsea\n# again\na/one.jpg\tsand\n", encoding="utf-8")
    raises_data_error(lambda: mb.tagged_image_batches(src, bad, out, image_size=10), file="bad.txt",
                      contains=("line 3", "listed again", "line 1"))
    bad.write_text("tags.txt\tsea\n", encoding="utf-8")
    raises_data_error(lambda: mb.tagged_image_batches(src, bad, out, image_size=10), file="bad.txt",
                      contains=("no image suffix",))
    bad.write_text("# nothing\n\n", encoding="utf-8")
    raises_data_error(lambda: mb.tagged_image_batches(src, bad, out, image_size=10), file="bad.txt",
                      contains=("lists no images",))
    raises_data_error(lambda: mb.tagged_image_batches(src, tmp_path / "none.txt", out), file="none.txt",
                      contains=("missing",))
    bad.write_bytes(b"a/one.jpg\t\xff\xfe sea\n")
    raises_data_error(lambda: mb.tagged_image_batches(src, bad, out), file="bad.txt", contains=("UTF-8",))
    bad.write_text("a/one.jpg\t\nfour.jpg\n", encoding="utf-8")
    raises_data_error(lambda: mb.tagged_image_batches(src, bad, out, image_size=10, batch_size=1,
                                                      num_test_batches=1), file="bad.txt",
                      contains=("carry no tags",))
    with pytest.raises(ReplayError, match="max_tags must be >= 0"):
        mb.tagged_image_batches(src, tags_file, out, max_tags=-1)
    assert not out.exists() or list(out.iterdir()) == []          # nothing written, no temporary folder left


def test_cli_make_batches_tags(tmp_path, capsys):
    src, tags_file = photo_folder(tmp_path / "photos")
    out = tmp_path / "out"
    assert cli_main(["make-batches", str(out), "--images", str(src), "--tags", str(tags_file), "--image-size", "10",
                     "--batch-size", "3", "--test-batches", "1", "--max-tags", "3"]) == 0
    text = capsys.readouterr().out
    assert "data_batch_1..3" in text and "3 tags" in text and "train 1-2, test 3-3" in text
    assert bt.read_meta(out).dp_type == "flickr-ce-cropped"
    assert cli_main(["make-batches", str(tmp_path / "o2"), "--images", str(src), "--tags", str(tags_file),
                     "--format", "raw"]) != 0
    assert "--format raw" in capsys.readouterr().err
    assert cli_main(["make-batches", str(tmp_path / "o3"), "--digits", "--tags", str(tags_file)]) != 0
    assert "give --images" in capsys.readouterr().err
    assert cli_main(["make-batches", str(tmp_path / "o4"), "--images", str(src), "--max-tags", "2"]) != 0
    assert "--max-tags applies to --tags" in capsys.readouterr().err


# -- through the driver -----------------------------------------------------------------------------------

def data_net(top: str) -> str:
    return "[data]\ntype=data\ndataIdx=0\n[labels]\ntype=data\ndataIdx=1\n" + top


CE_NET = data_net("[fc1]\ntype=fc\ninputs=data\noutputs={c}\ninitW={w}\nneuron=logistic\ngpu=0\n"
                  "[ce]\ntype=cost.crossent2\ninputs=labels,fc1\ngpu=0\n")
LR_NET = data_net("[fc1]\ntype=fc\ninputs=data\noutputs={c}\ninitW=0.001\ngpu=0\n[probs]\ntype=softmax\ninputs=fc1\n"
                  "[logprob]\ntype=cost.logreg\ninputs=labels,probs\ngpu=0\n")
PARAMS = "[fc1]\nepsW=0.01\nepsB=0.02\nmomW=0.9\nmomB=0.9\nwc=0.0005\n"


def run_driver(tmp_path, net, params, data, *extra):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "net.cfg").write_text(net)
    (tmp_path / "params.cfg").write_text(params)
    log = io.StringIO()
    run, _ = train(args_for("--data-path", str(data), "--save-path", str(tmp_path / "save"),
                            "--layer-def", str(tmp_path / "net.cfg"), "--layer-params", str(tmp_path / "params.cfg"),
                            "--epochs", "2", "--test-freq", "2", "--seed", "5", *extra), out=log)
    return run, log.getvalue()


def test_train_dummy_ce_through_the_driver(tmp_path):
    """dummy-ce-27 (3x3x3 'images') into a logistic fc layer and cost.crossent2; the same seed
    gives the same costs, line for line."""
    args = ("--data-provider", "dummy-ce-27", "--train-range", "1-2", "--test-range", "3", "--mini", "7")
    net, params = CE_NET.format(c=16, w=0.1), PARAMS + "[ce]\ncoeff=1\n"
    _, first = run_driver(tmp_path / "a", net, params, tmp_path / "unused", *args)
    _, second = run_driver(tmp_path / "b", net, params, tmp_path / "unused", *args)
    lines = cost_lines(first)
    assert lines == cost_lines(second)
    assert [l.split("...")[0] for l in lines if "..." in l] == ["1.1", "1.2", "2.1", "2.2", "3.1"]
    costs = [float(m) for m in re.findall(r"ce:  ([\d.]+)", first)]
    assert all(np.isfinite(costs)) and costs[-1] < costs[0]  # 16 cases of 16 classes are learnt quickly


def test_train_inet_lr_through_the_driver(tmp_path):
    d, _, _ = write_inet_lr_folder(tmp_path / "d", sizes=(13, 7, 7))
    params = PARAMS.replace("epsW=0.01", "epsW=0.00001") + "[logprob]\ncoeff=1\ntopk=2\n"  # pixels are ±200
    run, log = run_driver(tmp_path, LR_NET.format(c=CLASSES_LR), params, d,
                          "--train-range", "1-2", "--test-range", "3", "--mini", "5")
    m = re.findall(r"Test output: logprob:  ([\d.]+), ([\d.]+), ([\d.]+)", log)
    assert len(m) == 2 and all(0 < float(a) < 5 and 0 <= float(c) <= float(b) <= 1 for a, b, c in m)


def test_train_flickr_through_the_driver(tmp_path):
    jp = {n: make_jpegs(k, 10, seed=30 + n) for n, k in ((1, 13), (2, 7), (3, 7))}
    d, _, _ = write_flickr_folder(tmp_path / "fl", 10, {n: (j, image_tags(len(j), shift=n)) for n, j in jp.items()})
    args = ("--train-range", "1-2", "--test-range", "3", "--mini", "4", "--crop-border", "1", "--color-noise", "0.1",
            "--decode-workers", "0")
    # pixels are ±100: small weights keep the logistic outputs off 0 and 1
    net, params = CE_NET.format(c=C, w=0.0001), PARAMS.replace("epsW=0.01", "epsW=0.000001") + "[ce]\ncoeff=1\n"
    _, first = run_driver(tmp_path / "a", net, params, d, *args)
    _, second = run_driver(tmp_path / "b", net, params, d, *args)
    assert cost_lines(first) == cost_lines(second)
    m = re.findall(r"Test output: ce:  ([\d.]+)", first)
    assert len(m) == 2 and all(0 < float(v) < 10 for v in m)
