"""The harness's data layer: safe pickles, the release's batch formats, the CIFAR providers,
colour noise, and the batch writers (driver.md §C.7, §D.1–§D.6).

References below are written from the spec with plain numpy loops, never from the
harness's code; comparisons of integer-valued or same-order float32 results are
bit-exact (atol = rtol = 0).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from alexnet_replay import files
from alexnet_replay.errors import ReplayError
from alexnet_replay.harness import batches as bt
from alexnet_replay.harness import make_batches as mb
from alexnet_replay.harness import pickles as pk
from alexnet_replay.harness import providers as pv
from alexnet_replay.harness.pickles import DataError
from alexnet_replay.testing import assert_close


# -- helpers ----------------------------------------------------------------------------------------

def py2_pickle(obj) -> bytes:
    """A protocol-2 pickle as Python 2's cPickle and numpy 1.x wrote it: text as 8-bit
    strings (SHORT_BINSTRING/BINSTRING), arrays through numpy.core.multiarray._reconstruct
    with the raw bytes as a string. Supports dict, list, tuple, str, int, None, bool, ndarray."""
    out = io.BytesIO()

    def s(text: str | bytes) -> None:
        b = text.encode("latin1") if isinstance(text, str) else text
        if len(b) < 256:
            out.write(b"U" + bytes([len(b)]) + b)
        else:
            out.write(b"T" + struct.pack("<i", len(b)) + b)

    def i(v: int) -> None:
        out.write(b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v))

    def dtype(dt: np.dtype) -> None:
        out.write(b"cnumpy\ndtype\n")
        s(dt.str[1:])
        out.write(b"K\x00K\x01\x87R(K\x03")
        s(dt.str[0])
        out.write(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")

    def w(o) -> None:
        if o is None:
            out.write(b"N")
        elif isinstance(o, bool):
            out.write(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            i(o)
        elif isinstance(o, (str, bytes)):
            s(o)
        elif isinstance(o, np.ndarray):
            out.write(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85")
            s("b")
            out.write(b"\x87R(K\x01(")
            for d in o.shape:
                i(d)
            out.write(b"t")
            dtype(o.dtype)
            out.write(b"\x89")
            s(np.ascontiguousarray(o).tobytes())
            out.write(b"tb")
        elif isinstance(o, dict):
            out.write(b"}(")
            for k, v in o.items():
                w(k)
                w(v)
            out.write(b"u")
        elif isinstance(o, list):
            out.write(b"](")
            for v in o:
                w(v)
            out.write(b"e")
        elif isinstance(o, tuple):
            out.write(b"(")
            for v in o:
                w(v)
            out.write(b"t")
        else:
            raise TypeError(type(o))

    out.write(b"\x80\x02")
    w(obj)
    out.write(b".")
    return out.getvalue()


def raises_data_error(fn, *, file, key=None, contains=()) -> DataError:
    """`fn()` must raise one DataError (a ReplayError) naming `file` (and `key`)."""
    with pytest.raises(DataError) as info:
        fn()
    err = info.value
    assert isinstance(err, ReplayError)
    msg = str(err)
    assert str(file) in msg, msg
    if key is not None:
        assert f"key '{key}'" in msg and err.key == key, msg
    for text in contains:
        assert text in msg, msg
    return err


def write_folder(tmp_path, num_vis=3 * 11 * 11, sizes=(77, 40), classes=4, seed=1, pca=True):
    """A small data folder in the release's layout, written without the harness's writers."""
    rng = np.random.default_rng(seed)
    d = tmp_path / "data"
    d.mkdir()
    data, labels = {}, {}
    for num, n in enumerate(sizes, start=1):
        data[num] = rng.integers(0, 256, size=(num_vis, n), dtype=np.uint8)
        labels[num] = [int(x) for x in rng.integers(0, classes, size=n)]
        with open(d / f"data_batch_{num}", "wb") as f:
            f.write(py2_pickle({"data": data[num], "labels": labels[num]}))
    meta = {"data_mean": rng.uniform(0, 255, size=(num_vis, 1)), "label_names": [f"c{k}" for k in range(classes)],
            "num_vis": num_vis}
    if pca:
        meta["color_pca"] = (np.array([30.0, 5.0, 1.0], np.float32),
                             np.linalg.qr(rng.standard_normal((3, 3)))[0].astype(np.float32))
    with open(d / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return d, data, labels, meta


# -- pickles ----------------------------------------------------------------------------------------

SAMPLE = {
    "u8": np.arange(24, dtype=np.uint8).reshape(4, 6),
    "f32": np.linspace(-1, 1, 15, dtype=np.float32).reshape(3, 5),
    "f64_fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "scalar": np.float64(2.5),
    "int_scalar": np.int32(-7),
    "nested": [1, 2.5, None, True, False, b"\x00\xff", "text", (3, [4])],
}


def _assert_same(a, b):
    assert type(a) is type(b) or (isinstance(a, np.generic) and isinstance(b, np.generic))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b and type(a) is type(b)


@pytest.mark.parametrize("protocol", [0, 1, 2, pickle.HIGHEST_PROTOCOL])
def test_restricted_unpickler_reads_arrays_and_containers(tmp_path, protocol):
    path = tmp_path / "p"
    path.write_bytes(pickle.dumps(SAMPLE, protocol=protocol))
    _assert_same(pk.load_pickle(path), SAMPLE)


def test_reads_python2_style_pickle_without_importing_numpy_core():
    arr = np.arange(300, dtype=np.float32).reshape(3, 100) / 7  # > 255 bytes: BINSTRING
    raw = py2_pickle({"data": arr, "labels": [0, 1, 2], "names": ["a", "b"], "n": 3072})
    before = "numpy.core.multiarray" in sys.modules
    got = pk.loads_pickle(raw, "py2")
    assert got["data"].dtype == np.float32 and np.array_equal(got["data"], arr)
    assert got["labels"] == [0, 1, 2] and got["names"] == ["a", "b"] and got["n"] == 3072
    assert ("numpy.core.multiarray" in sys.modules) == before


class _Payload:
    """Unpickling this would call `func(*args)`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("which", ["open", "os.system", "eval", "subprocess"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, which):
    import builtins
    import subprocess

    marker = tmp_path / "pwned"
    payload = {
        "open": _Payload(builtins.open, str(marker), "w"),
        "os.system": _Payload(os.system, f"touch {marker}"),
        "eval": _Payload(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "subprocess": _Payload(subprocess.call, ["touch", str(marker)]),
    }[which]
    path = tmp_path / "evil"
    # Hide the payload inside an ordinary-looking batch dict.
    path.write_bytes(pickle.dumps({"data": np.zeros((2, 2), np.uint8), "labels": payload}, protocol=2))
    err = raises_data_error(lambda: pk.load_pickle(path), file=path, contains=("refused global",))
    # Named as Python 3 spells it (io.open, builtins.eval, subprocess.call, posix.system).
    assert f"'{payload.func.__module__}.{payload.func.__qualname__}'" in str(err)
    assert not marker.exists()


def test_refused_module_is_not_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_side_effect_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef f(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = b"\x80\x02cevil_side_effect_mod\nf\n)R."
    raises_data_error(lambda: pk.loads_pickle(raw, "x.pkl"), file="x.pkl",
                      contains=("refused global 'evil_side_effect_mod.f'",))
    assert "evil_side_effect_mod" not in sys.modules and not marker.exists()


def test_codecs_encode_admitted_for_latin1_only():
    assert pk.loads_pickle(pickle.dumps(b"\x00\xfe", protocol=2), "b") == b"\x00\xfe"
    raw = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R."
    raises_data_error(lambda: pk.loads_pickle(raw, "rot.pkl"), file="rot.pkl", contains=("rot13",))


def test_extra_globals_stand_ins():
    raw = b"\x80\x02coptions\nOptionsParser\n)R."
    raises_data_error(lambda: pk.loads_pickle(raw, "ckpt"), file="ckpt",
                      contains=("refused global 'options.OptionsParser'",))

    class StandIn:
        pass

    assert isinstance(pk.loads_pickle(raw, "ckpt", extra_globals={("options", "OptionsParser"): StandIn}), StandIn)


def test_load_pickle_errors_name_the_file(tmp_path):
    good = pickle.dumps(SAMPLE, protocol=2)
    raises_data_error(lambda: pk.load_pickle(tmp_path / "nope"), file=tmp_path / "nope", contains=("missing",))
    raises_data_error(lambda: pk.load_pickle(tmp_path), file=tmp_path, contains=("folder",))
    cases = {"empty": b"", "text": b"hello, this is a text file\n", "png": b"\x89PNG\r\n\x1a\n" + bytes(40),
             "zeros": bytes(64)}
    for name, raw in cases.items():
        p = tmp_path / name
        p.write_bytes(raw)
        raises_data_error(lambda: pk.load_pickle(p), file=p)
    # Cut a valid pickle at every length: each is one "truncated" (or empty) error.
    p = tmp_path / "cut"
    for cut in range(0, len(good), 7):
        p.write_bytes(good[:cut])
        raises_data_error(lambda: pk.load_pickle(p), file=p,
                          contains=("truncated",) if cut else ("empty",))


def test_gzip_and_zip_containers(tmp_path):
    raw = pickle.dumps(SAMPLE, protocol=2)
    g = tmp_path / "g"
    g.write_bytes(gzip.compress(raw))
    _assert_same(pk.load_pickle(g), SAMPLE)
    z = tmp_path / "z"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("data", raw)
    _assert_same(pk.load_pickle(z), SAMPLE)
    g.write_bytes(gzip.compress(raw)[:30])
    raises_data_error(lambda: pk.load_pickle(g), file=g, contains=("gzip",))
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("other", raw)
    raises_data_error(lambda: pk.load_pickle(z), file=z, contains=("'data'",))


# -- atomic writes ----------------------------------------------------------------------------------

def _half_then_fail(obj, f, protocol=None):
    data = pickle.dumps(obj, protocol=protocol)
    f.write(data[: len(data) // 2])
    f.flush()
    raise RuntimeError("interrupted mid-write")


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("where", ["dump", "fsync", "replace"])
def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch, existing, where):
    target = tmp_path / "data_batch_1"
    old = pickle.dumps({"old": 1}, protocol=2)
    if existing:
        target.write_bytes(old)

    def fail(*a, **k):
        raise RuntimeError(f"interrupted in {where}")

    if where == "dump":
        monkeypatch.setattr(pk.pickle, "dump", _half_then_fail)
    elif where == "fsync":  # batches are written by the project's one atomic writer
        monkeypatch.setattr(files.os, "fsync", fail)
    else:
        monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        bt.write_batch(target, np.zeros((12, 5), np.uint8), [0, 1, 2, 3, 4])
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["data_batch_1"] if existing else [])
    if existing:
        assert target.read_bytes() == old
    # And an uninterrupted write replaces the file completely.
    bt.write_batch(target, np.ones((12, 5), np.uint8), [0, 1, 2, 3, 4])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data_batch_1"]
    assert bt.validate_batch(pk.load_pickle(target), target, num_vis=12).data.sum() == 60


# -- batches: round trip and validation ---------------------------------------------------------

def test_batch_and_meta_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=(3 * 7 * 7, 13), dtype=np.uint8)
    labels = rng.integers(0, 5, size=13)
    mean = data.mean(axis=1)
    pca = (np.array([3.0, 2.0, 1.0], np.float32), np.eye(3, dtype=np.float32)[:, ::-1])
    bt.write_batch(tmp_path / "data_batch_4", data, labels, num_classes=5)
    bt.write_meta(tmp_path, data_mean=mean, label_names=list("abcde"), color_pca=pca, dp_type="cifar-cropped",
                  batch_size=13)
    # The files are plain protocol-2 pickles with the release's keys and types.
    raw_batch = pickle.loads((tmp_path / "data_batch_4").read_bytes())
    assert (tmp_path / "data_batch_4").read_bytes()[:2] == b"\x80\x02"
    assert set(raw_batch) == {"data", "labels"} and isinstance(raw_batch["labels"], list)
    assert all(type(x) is int for x in raw_batch["labels"])
    raw_meta = pickle.loads((tmp_path / "batches.meta").read_bytes())
    assert raw_meta["data_mean"].shape == (147, 1) and raw_meta["num_vis"] == 147
    meta = bt.read_meta(tmp_path)
    assert meta.num_vis == 147 and meta.label_names == list("abcde") and meta.num_classes == 5
    assert meta.image_size == 7 and meta.dp_type == "cifar-cropped" and meta.raw["batch_size"] == 13
    assert meta.data_mean.dtype == np.float64 and np.array_equal(meta.data_mean[:, 0], mean)
    assert np.array_equal(meta.color_pca[0], pca[0]) and np.array_equal(meta.color_pca[1], pca[1])
    b = bt.read_batch(tmp_path, 4, meta)
    assert b.data.dtype == np.uint8 and np.array_equal(b.data, data) and np.array_equal(b.labels, labels)
    assert bt.list_batches(tmp_path) == [4]
    # Written with the usual permissions (not mkstemp's 0600), no temporary files left.
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "data_batch_4").stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batches.meta", "data_batch_4"]


def test_reads_release_style_python2_batches(tmp_path):
    d, data, labels, meta = write_folder(tmp_path)
    m = bt.read_meta(d)
    b = bt.read_batch(d, 1, m)
    assert np.array_equal(b.data, data[1]) and b.labels.tolist() == labels[1]


def _meta_dict(**over):
    m = {"data_mean": np.zeros((12, 1)), "label_names": ["a", "b", "c"], "num_vis": 12}
    m.update(over)
    return {k: v for k, v in m.items() if v is not None}


BAD_META = [
    ("num_vis", _meta_dict(num_vis=None), "missing"),
    ("label_names", _meta_dict(label_names=None), "missing"),
    ("data_mean", _meta_dict(data_mean=None), "missing"),
    ("num_vis", _meta_dict(num_vis=-3), "positive"),
    ("num_vis", _meta_dict(num_vis="12"), "positive"),
    ("data_mean", _meta_dict(data_mean=np.zeros((11, 1))), "num_vis = 12"),
    ("data_mean", _meta_dict(data_mean=np.zeros((3, 4))), "column"),
    ("data_mean", _meta_dict(data_mean=np.full((12, 1), np.nan)), "NaN"),
    ("label_names", _meta_dict(label_names=[]), "non-empty"),
    ("label_names", _meta_dict(label_names=["a", 3]), "entry 1"),
    ("color_pca", _meta_dict(color_pca=(np.ones(3),)), "pair"),
    ("color_pca", _meta_dict(color_pca=(np.ones(2), np.eye(3))), "3x3"),
    ("color_pca", _meta_dict(color_pca=(np.ones(3), np.eye(2))), "3x3"),
]


@pytest.mark.parametrize("key,obj,text", BAD_META, ids=[f"{k}-{t}" for k, _, t in BAD_META])
def test_bad_meta_names_file_and_key(tmp_path, key, obj, text):
    path = tmp_path / "batches.meta"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    raises_data_error(lambda: bt.read_meta(tmp_path), file=path, key=key, contains=(text,))


def test_missing_or_unreadable_meta(tmp_path):
    raises_data_error(lambda: bt.read_meta(tmp_path), file=tmp_path / "batches.meta", contains=("missing",))
    (tmp_path / "batches.meta").write_bytes(pickle.dumps([1, 2], protocol=2))
    raises_data_error(lambda: bt.read_meta(tmp_path), file=tmp_path / "batches.meta", contains=("dict",))
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(_meta_dict(), protocol=2)[:-9])
    raises_data_error(lambda: bt.read_meta(tmp_path), file=tmp_path / "batches.meta", contains=("truncated",))


def _batch(data=None, labels=None, **extra):
    d = {"data": np.zeros((12, 4), np.uint8) if data is None else data,
         "labels": [0, 1, 2, 0] if labels is None else labels}
    d.update(extra)
    return {k: v for k, v in d.items() if not (isinstance(v, str) and v == "drop")}


BAD_BATCHES = [
    ("data", _batch(data="drop"), "missing"),
    ("labels", _batch(labels="drop"), "missing"),
    ("data", _batch(data=[[1, 2]]), "numpy array"),
    ("data", _batch(data=np.zeros((11, 4), np.uint8)), "num_vis = 12 rows"),
    ("data", _batch(data=np.zeros((4, 12), np.uint8)), "one image per row"),
    ("data", _batch(data=np.zeros(48, np.uint8)), "2-D"),
    ("labels", _batch(labels=[0, 1, 2]), "3 labels for 4 images"),
    ("labels", _batch(labels=[0, 1, 2, 0, 1]), "5 labels for 4 images"),
    ("labels", _batch(labels=[0, 3, 1, 2]), "label 3 at position 1 is out of range 0..2"),
    ("labels", _batch(labels=[0, 1, -1, 2]), "label -1 at position 2 is out of range"),
    ("labels", _batch(labels=np.array([0, 1, 7, 9])), "out of range"),
    ("labels", _batch(labels=[0, 1.5, 1, 2]), "not an integer"),
    ("labels", _batch(labels=[0, "1", 1, 2]), "entry 1"),
    ("labels", _batch(labels=np.zeros((2, 2), int)), "shape"),
]


@pytest.mark.parametrize("key,obj,text", BAD_BATCHES, ids=[f"{k}-{t}" for k, _, t in BAD_BATCHES])
def test_bad_batch_names_file_and_key(tmp_path, key, obj, text):
    bt.write_meta(tmp_path, data_mean=np.zeros(12), label_names=["a", "b", "c"])
    path = tmp_path / "data_batch_2"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    raises_data_error(lambda: bt.read_batch(tmp_path, 2, bt.read_meta(tmp_path)), file=path, key=key,
                      contains=(text,))


def test_bad_batch_files(tmp_path):
    bt.write_meta(tmp_path, data_mean=np.zeros(12), label_names=["a", "b", "c"])
    meta = bt.read_meta(tmp_path)
    for n in (1, 2, 5):
        bt.write_batch(bt.batch_path(tmp_path, n), np.zeros((12, 4), np.uint8), [0, 1, 2, 0])
    missing = tmp_path / "data_batch_3"
    raises_data_error(lambda: bt.read_batch(tmp_path, 3, meta), file=missing, contains=("1-2, 5",))
    (tmp_path / "data_batch_3.1").write_bytes(b"")
    raises_data_error(lambda: bt.read_batch(tmp_path, 3, meta), file=missing, contains=("sub-batches",))
    raw = (tmp_path / "data_batch_2").read_bytes()
    (tmp_path / "data_batch_2").write_bytes(raw[: len(raw) - 20])
    raises_data_error(lambda: bt.read_batch(tmp_path, 2, meta), file=tmp_path / "data_batch_2",
                      contains=("truncated",))
    (tmp_path / "data_batch_5").write_bytes(pickle.dumps(([b"jpeg"], [(1, 1)], [("n01", 0)]), protocol=2))
    raises_data_error(lambda: bt.read_batch(tmp_path, 5, meta), file=tmp_path / "data_batch_5",
                      contains=("JPEG",))
    with pytest.raises(DataError, match="out of range"):
        bt.write_batch(tmp_path / "data_batch_9", np.zeros((12, 2), np.uint8), [0, 3], num_classes=3)
    assert not (tmp_path / "data_batch_9").exists()


# -- crop references written from driver.md §D.3/§D.4 ------------------------------------------

def ref_crops(data, size, b, offsets, flips, chunk, mean):
    """Per chunk of `chunk` images: the window at offsets[k] = (y, x), mirrored left-right if
    flips[k]; minus the centre window of the mean image. Plain slicing, one image at a time."""
    s = size - 2 * b
    n = data.shape[1]
    m = mean.reshape(3, size, size)[:, b:b + s, b:b + s].astype(np.float32)
    out = np.empty((3 * s * s, n), np.float32)
    for i in range(n):
        k = i // chunk
        y, x = int(offsets[k][0]), int(offsets[k][1])
        img = data[:, i].reshape(3, size, size)
        crop = img[:, y:y + s, x:x + s]
        if flips[k]:
            crop = crop[:, :, ::-1]
        out[:, i] = (crop.astype(np.float32) - m).reshape(-1)
    return out


@pytest.mark.parametrize("chunk", [1, 32, 5])
def test_training_crops_match_reference(tmp_path, chunk):
    d, data, labels, meta = write_folder(tmp_path, pca=False)
    p = pv.CIFARCroppedProvider(d, [1, 2], crop_border=2, chunk=chunk, rng=np.random.default_rng(11))
    assert p.get_data_dims(0) == 3 * 7 * 7 and p.get_data_dims(1) == 1 and p.num_views == 1
    for num in (1, 2):
        got, lab = p.get_batch(num)
        dr = p.last_draws
        n = data[num].shape[1]
        assert dr.chunk == chunk and len(dr.offsets) == -(-n // chunk) == len(dr.flips)
        want = ref_crops(data[num], 11, 2, dr.offsets, dr.flips, chunk, meta["data_mean"])
        assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (147, n)
        assert_close(got, want, 0, 0, what="crops")  # same float32 subtraction: bit-exact
        assert lab.shape == (1, n) and lab.dtype == np.float32 and lab[0].tolist() == labels[num]
    # Ready-made draws replay the batch exactly.
    again, _ = p.get_batch(2, draws=dr)
    assert np.array_equal(again, got)


def test_chunk_of_32_shares_offset_and_flip(tmp_path):
    """Images in one chunk of 32 are cropped alike: per chunk, every image's crop equals the
    reference crop with the chunk's single (y, x, flip); the 77 images make chunks 32, 32, 13."""
    d, data, _, meta = write_folder(tmp_path, pca=False)
    p = pv.CIFARCroppedProvider(d, [1], crop_border=2, chunk=32)
    dr = pv.BatchDraws(offsets=np.array([[0, 4], [3, 1], [4, 0]]), flips=np.array([True, False, True]), chunk=32)
    got, _ = p.get_batch(1, draws=dr)
    img = data[1].reshape(3, 11, 11, -1).astype(np.float32)
    m = meta["data_mean"].reshape(3, 11, 11)[:, 2:9, 2:9].astype(np.float32)
    for i in (0, 31, 32, 63, 64, 76):
        y, x = dr.offsets[i // 32]
        crop = img[:, y:y + 7, x:x + 7, i]
        if dr.flips[i // 32]:
            crop = crop[:, :, ::-1]
        assert np.array_equal(got[:, i], (crop - m).reshape(-1)), i


def test_training_draws_are_seeded_and_replayable(tmp_path):
    d, *_ = write_folder(tmp_path, pca=False)
    p = pv.CIFARCroppedProvider(d, [1, 2], crop_border=2, chunk=1)
    a = p.get_batch(1, rng=pv.batch_rng(5, 1, 1))[0]
    b = p.get_batch(1, rng=pv.batch_rng(5, 1, 1))[0]
    c = p.get_batch(1, rng=pv.batch_rng(5, 2, 1))[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    legacy = p.get_batch(1, rng=np.random.RandomState(0))[0]
    assert np.array_equal(legacy, p.get_batch(1, rng=np.random.RandomState(0))[0])
    with pytest.raises(DataError, match="random generator"):
        p.get_batch(1)


def test_test_crops_centre_and_multiview(tmp_path):
    d, data, labels, meta = write_folder(tmp_path, pca=False)
    n = data[2].shape[1]
    centre = pv.CIFARCroppedProvider(d, [2], test=True, crop_border=2).get_batch(2)
    want = ref_crops(data[2], 11, 2, [(2, 2)], [False], n, meta["data_mean"])
    assert_close(centre[0], want, 0, 0, what="centre crop")
    mv = pv.CIFARCroppedProvider(d, [2], test=True, multiview=True, crop_border=2)
    assert mv.num_views == 9
    got, lab = mv.get_batch(2)
    assert got.shape == (147, 9 * n) and lab.shape == (1, 9 * n)
    views = [(y, x) for y in (0, 2, 4) for x in (0, 2, 4)]  # row-major, no flips (§D.3)
    for v, off in enumerate(views):
        want = ref_crops(data[2], 11, 2, [off], [False], n, meta["data_mean"])
        assert_close(got[:, v * n:(v + 1) * n], want, 0, 0, what=f"view {v} {off}")
        assert lab[0, v * n:(v + 1) * n].tolist() == labels[2]


def test_cifar_provider(tmp_path):
    d, data, labels, meta = write_folder(tmp_path)
    p = pv.make_provider("cifar", d, [1, 2])
    assert [p.get_data_dims(i) for i in range(3)] == [363, 1, 4] and p.get_num_classes() == 4
    x, lab, onehot = p.get_batch(2)
    n = data[2].shape[1]
    want = np.empty((363, n), np.float32)
    for i in range(n):
        for r in range(363):
            want[r, i] = np.float32(data[2][r, i]) - np.float32(meta["data_mean"][r, 0])
    assert_close(x, want, 0, 0, what="data - mean")
    assert x.flags.c_contiguous and lab.shape == (1, n) and lab[0].tolist() == labels[2]
    assert onehot.shape == (4, n) and onehot.dtype == np.float32
    assert np.array_equal(onehot.argmax(axis=0), labels[2]) and np.array_equal(onehot.sum(axis=0), np.ones(n))
    x2 = p.get_batch(2)[0]
    assert np.shares_memory(x, x2) and not x2.flags.writeable  # subtracted once, kept (§D.3)
    raises_data_error(lambda: p.get_data_dims(3), file="", contains=("dataIdx 3",))


def test_provider_errors(tmp_path):
    d, *_ = write_folder(tmp_path, pca=False)
    raises_data_error(lambda: pv.make_provider(None, d, [1]), file=d / "batches.meta", key="dp_type")
    for name, text in (("inet-rs-lr-cropped", "not implemented"), ("bogus", "not a provider")):
        with pytest.raises(DataError, match=text):
            pv.make_provider(name, d, [1])
    raises_data_error(lambda: pv.make_provider("cifar-cropped", d, [1, 3]), file=d / "data_batch_3",
                      contains=("missing",))
    with pytest.raises(DataError, match="crop-border=6"):
        pv.make_provider("cifar-cropped", d, [1], crop_border=6)
    with pytest.raises(DataError, match="test provider only"):
        pv.make_provider("cifar-cropped", d, [1], multiview=True)
    with pytest.raises(DataError, match="views"):
        pv.make_provider("cifar", d, [1], test=True, multiview=True)
    raises_data_error(lambda: pv.make_provider("cifar-cropped", d, [1], color_noise=0.1),
                      file=d / "batches.meta", key="color_pca")
    p = pv.make_provider("cifar-cropped", d, [1], test=True)
    with pytest.raises(DataError, match="batch 2 is not in"):
        p.get_batch(2)


def test_minibatches():
    m = [np.arange(30, dtype=np.float32).reshape(3, 10), np.arange(10, dtype=np.float32).reshape(1, 10)]
    parts = list(pv.minibatches(m, 4))
    assert [p[0].shape[1] for p in parts] == [4, 4, 2]
    assert np.array_equal(np.concatenate([p[0] for p in parts], axis=1), m[0])
    assert all(p[1].flags.c_contiguous for p in parts)


# -- statistics of the draws (STYLE habit 5) --------------------------------------------------------

@pytest.mark.parametrize("rng", [np.random.default_rng(2024), np.random.RandomState(2024)], ids=["Generator",
                                                                                                 "RandomState"])
def test_crop_draw_statistics(rng):
    b, chunks = 3, 40_000
    d = pv.draw_crops(rng, chunks * 32, b, chunk=32)
    assert d.offsets.shape == (chunks, 2) and d.flips.shape == (chunks,)
    # Flip probability 1/2: the standard error is 0.0025; 0.015 is 6 of them.
    assert abs(d.flips.mean() - 0.5) < 0.015
    # Offsets uniform over {0..2b}^2: chi-square over the 49 cells, 48 degrees of freedom;
    # 84.0 is the 0.1% critical value.
    cells = np.bincount(d.offsets[:, 0] * (2 * b + 1) + d.offsets[:, 1], minlength=(2 * b + 1) ** 2)
    assert cells.size == (2 * b + 1) ** 2
    expected = chunks / cells.size
    chi2 = float(((cells - expected) ** 2 / expected).sum())
    assert chi2 < 84.0, chi2
    assert d.offsets.min() == 0 and d.offsets.max() == 2 * b
    # Flips independent of the offsets: the flip rate per x offset stays near 1/2.
    for x in range(2 * b + 1):
        assert abs(d.flips[d.offsets[:, 1] == x].mean() - 0.5) < 0.04


def test_color_noise_draw_statistics():
    r = pv.draw_color_noise(np.random.default_rng(7), 50_000)
    assert r.dtype == np.float32 and r.shape == (50_000, 3)
    # N(0, I3): mean within 5 standard errors (0.0045 each), covariance within 0.03 of I.
    assert np.abs(r.mean(axis=0)).max() < 0.025
    assert np.abs(np.cov(r.T.astype(np.float64)) - np.eye(3)).max() < 0.03


# -- colour noise (driver.md §D.6) --------------------------------------------------------------------

def test_color_noise_formula():
    rng = np.random.default_rng(8)
    n, p = 7, 13
    batch = rng.standard_normal((3 * p, n)).astype(np.float32) * 40
    s = np.array([60.0, 12.0, 3.0], np.float32)
    v = np.linalg.qr(rng.standard_normal((3, 3)))[0].astype(np.float32)
    c = 0.1
    r = pv.draw_color_noise(np.random.default_rng(9), n)
    got = pv.color_noise(batch, s, v, c, draws=r)
    assert got.dtype == np.float32 and got.shape == batch.shape
    # float64 reference of the formula, pixel by pixel.
    want = np.empty((3 * p, n))
    for i in range(n):
        noise = v.astype(np.float64) @ (s.astype(np.float64) * r[i].astype(np.float64))
        for ch in range(3):
            for q in range(p):
                want[ch * p + q, i] = (float(batch[ch * p + q, i]) + c * noise[ch]) / (1 + c)
    # float32 arithmetic of values up to ~200 against float64: a few ulp (ulp(200) = 1.5e-5).
    assert_close(got, want, atol=1e-4, rtol=1e-6, what="colour noise vs float64")
    # The same formula in float32 in the documented order is bit-exact.
    want32 = np.empty((3 * p, n), np.float32)
    for i in range(n):
        t = s * r[i]
        for ch in range(3):
            nc = (v[ch, 0] * t[0] + v[ch, 1] * t[1]) + v[ch, 2] * t[2]
            for q in range(p):
                want32[ch * p + q, i] = (batch[ch * p + q, i] + np.float32(c) * nc) / np.float32(1 + c)
    assert_close(got, want32, 0, 0, what="colour noise, float32 order")
    # Same rng, same draws; c = 0 leaves the batch alone and draws nothing.
    assert np.array_equal(pv.color_noise(batch, s, v, c, np.random.default_rng(9)), got)
    g = np.random.default_rng(1)
    state = g.bit_generator.state
    assert np.array_equal(pv.color_noise(batch, s, v, 0.0, g), batch) and g.bit_generator.state == state


def test_cropped_provider_colour_noise_extension(tmp_path):
    d, data, _, meta = write_folder(tmp_path)
    p = pv.CIFARCroppedProvider(d, [1], crop_border=2, chunk=32, color_noise=0.1, rng=np.random.default_rng(4))
    got, _ = p.get_batch(1)
    dr = p.last_draws
    assert dr.noise.shape == (77, 3)
    crops = ref_crops(data[1], 11, 2, dr.offsets, dr.flips, 32, meta["data_mean"])
    want = pv.apply_color_noise(crops, *meta["color_pca"], 0.1, dr.noise)
    assert_close(got, want, 0, 0, what="crops + colour noise")
    # Test batches get no noise.
    t = pv.CIFARCroppedProvider(d, [1], test=True, crop_border=2, color_noise=0.1)
    assert_close(t.get_batch(1)[0], ref_crops(data[1], 11, 2, [(2, 2)], [False], 77, meta["data_mean"]), 0, 0)


# -- writers ---------------------------------------------------------------------------------------

def test_make_batches_from_arrays(tmp_path):
    rng = np.random.default_rng(12)
    n, size = 23, 5
    images = rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)
    images[:, 1] = (images[:, 0] // 2 + images[:, 1] // 2)  # correlated channels
    labels = rng.integers(0, 3, size=n)
    made = mb.make_batches_from_arrays(images, labels, ["x", "y", "z"], tmp_path / "out", 10, stats_images=20,
                                       num_test_batches=1, dp_type="cifar")
    assert made.batch_nums == [1, 2, 3] and made.train_batches == [1, 2] and made.test_batches == [3]
    meta = bt.read_meta(tmp_path / "out")
    assert meta.num_vis == 75 and meta.dp_type == "cifar"
    for num, (a, z) in zip((1, 2, 3), ((0, 10), (10, 20), (20, 23))):
        b = bt.read_batch(tmp_path / "out", num, meta)
        for i in range(a, z):  # column j of batch = image a+j, channel-major pixels
            assert np.array_equal(b.data[:, i - a], images[i].reshape(-1))
        assert np.array_equal(b.labels, labels[a:z])
    mean = np.zeros(75)
    for i in range(20):
        mean += images[i].reshape(-1)
    assert_close(meta.data_mean[:, 0], mean / 20, atol=1e-12, rtol=1e-12, what="data_mean")  # float64 sums
    # color_pca: eigen-decomposition of the RGB covariance of the mean-subtracted pixels.
    samples = np.stack([(images[:20, ch].reshape(20, -1) - (mean / 20).reshape(3, -1)[ch]).reshape(-1)
                        for ch in range(3)])
    cov = np.cov(samples, bias=True)
    s, v = meta.color_pca
    assert np.all(np.diff(s) <= 0) and s.dtype == np.float32 and v.dtype == np.float32
    assert_close(v.T @ v, np.eye(3), atol=1e-6, what="orthonormal V")  # float32 rounding of unit vectors
    assert_close(cov @ v, v * (s.astype(np.float64) ** 2), atol=1e-3 * cov.max(), what="cov V = V s^2")
    assert np.all(v.sum(axis=0) >= 0)
    with pytest.raises(ValueError, match="uint8"):
        mb.make_batches_from_arrays(images.astype(np.float32), labels, ["x", "y", "z"], tmp_path / "o2", 10)


def test_render_digits():
    d = np.zeros((2, 8, 8))
    d[0, 0, 0], d[0, 7, 7], d[1, 3, 4] = 16, 8, 1
    img = mb.render_digits(d)
    assert img.shape == (2, 3, 32, 32) and img.dtype == np.uint8
    assert np.array_equal(img[:, 0], img[:, 1]) and np.array_equal(img[:, 0], img[:, 2])
    assert (img[0, 0, :4, :4] == 255).all() and (img[0, 0, 28:, 28:] == 128).all()
    assert (img[1, 0, 12:16, 16:20] == 16).all() and img[1].sum() == 3 * 16 * 16
    assert img[0].sum() == 3 * 16 * (255 + 128)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    pytest.importorskip("sklearn")
    out = tmp_path_factory.mktemp("digits")
    return mb.digits_batches(out, seed=0)


def test_digits_batches(digits_dir, tmp_path):
    from sklearn.datasets import load_digits

    made = digits_dir
    assert made.batch_nums == [1, 2, 3, 4, 5, 6] and made.test_batches == [6]
    meta = made.meta
    assert meta.num_vis == 3072 and meta.label_names == [str(i) for i in range(10)]
    assert meta.dp_type == "cifar-cropped"
    ref = load_digits()
    bs = [bt.read_batch(made.out_dir, k, meta) for k in made.batch_nums]
    assert sum(b.num_cases for b in bs) == 1797
    assert np.array_equal(np.bincount(np.concatenate([b.labels for b in bs]), minlength=10),
                          np.bincount(ref.target, minlength=10))
    for b in bs:  # stratified: every class appears about equally in every batch
        counts = np.bincount(b.labels, minlength=10)
        assert counts.min() >= np.bincount(ref.target).min() // 6 - 1
    # Every written image is one of the rendered originals (as a multiset).
    rendered = mb.render_digits(ref.images).reshape(1797, -1)
    written = np.concatenate([b.data for b in bs], axis=1).T
    key = lambda a: sorted(row.tobytes() for row in a)  # noqa: E731
    assert key(written) == key(rendered)
    train = np.concatenate([b.data for b in bs[:5]], axis=1).astype(np.float64)
    assert_close(meta.data_mean[:, 0], train.mean(axis=1), atol=1e-9, what="mean over training batches")
    # Grey images: the first principal axis is (1, 1, 1)/sqrt(3).
    assert_close(meta.color_pca[1][:, 0], np.full(3, 3 ** -0.5), atol=1e-6, what="grey axis")
    # Seeded: the same seed writes the same files.
    again = mb.digits_batches(tmp_path / "again", seed=0)
    for k in again.batch_nums:
        assert (tmp_path / "again" / f"data_batch_{k}").read_bytes() == \
            (made.out_dir / f"data_batch_{k}").read_bytes()
    p = pv.make_provider(None, made.out_dir, made.train_batches, rng=np.random.default_rng(0))
    x, lab = p.get_batch(3)
    assert x.shape == (3 * 24 * 24, bs[2].num_cases) and lab.shape == (1, bs[2].num_cases)


# -- CIFAR-10 python archive -------------------------------------------------------------------------

def make_cifar_archive(path, sizes=(6, 5, 7, 4, 6, 5), python2_member=2, meta=None, drop=None, extra=None):
    rng = np.random.default_rng(21)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    rows, labs = {}, {}
    with tarfile.open(path, "w:gz") as tar:
        def add(name, raw):
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))

        m = meta if meta is not None else {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                           "frog", "horse", "ship", "truck"],
                                           "num_cases_per_batch": 10000, "num_vis": 3072}
        add("batches.meta", pickle.dumps(m, protocol=2))
        for k, (name, n) in enumerate(zip(names, sizes), start=1):
            if name == drop:
                continue
            rows[k] = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            labs[k] = [int(x) for x in rng.integers(0, 10, size=n)]
            d = {"batch_label": f"batch {k}", "data": rows[k], "labels": labs[k],
                 "filenames": [f"img_{i}.png" for i in range(n)]}
            add(name, py2_pickle(d) if k == python2_member else pickle.dumps(d, protocol=2))
        for name, raw in (extra or {}).items():
            add(name, raw)
    return rows, labs


def test_cifar10_python_archive(tmp_path):
    arc = tmp_path / "cifar-10-python.tar.gz"
    rows, labs = make_cifar_archive(arc)
    made = mb.cifar10_python_archive(arc, tmp_path / "out")
    assert made.batch_nums == [1, 2, 3, 4, 5, 6] and made.train_batches == [1, 2, 3, 4, 5]
    meta = bt.read_meta(tmp_path / "out")
    assert meta.label_names[0] == "airplane" and meta.num_vis == 3072
    for k in range(1, 7):
        b = bt.read_batch(tmp_path / "out", k, meta)
        assert b.data.shape == (3072, rows[k].shape[0])
        assert np.array_equal(b.data.T, rows[k]) and b.labels.tolist() == labs[k]  # rows -> columns
    train = np.concatenate([rows[k] for k in range(1, 6)]).astype(np.float64)
    assert_close(meta.data_mean[:, 0], train.mean(axis=0), atol=1e-9, what="mean over the 5 training batches")
    p = pv.make_provider("cifar-cropped", tmp_path / "out", [6], test=True, multiview=True)
    assert p.get_batch(6)[0].shape == (1728, 9 * rows[6].shape[0])


def test_cifar10_archive_errors(tmp_path):
    arc = tmp_path / "a.tar.gz"
    make_cifar_archive(arc, drop="data_batch_4")
    raises_data_error(lambda: mb.cifar10_python_archive(arc, tmp_path / "o"),
                      file=f"{arc}:cifar-10-batches-py/data_batch_4", contains=("missing",))
    arc2 = tmp_path / "b.tar.gz"
    make_cifar_archive(arc2, meta={"label_names": ["a", "b"], "num_vis": 3072})
    raises_data_error(lambda: mb.cifar10_python_archive(arc2, tmp_path / "o"),
                      file=f"{arc2}:cifar-10-batches-py/data_batch_1", key="labels", contains=("out of range",))
    arc3 = tmp_path / "c.tar.gz"
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(os.system, f"touch {marker}"), protocol=2)
    make_cifar_archive(arc3, meta={}, extra={})
    with tarfile.open(arc3, "w:gz") as tar:  # overwrite with an archive whose meta is malicious
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(evil)
        tar.addfile(info, io.BytesIO(evil))
    raises_data_error(lambda: mb.cifar10_python_archive(arc3, tmp_path / "o"), file=arc3,
                      contains=("refused global",))
    assert not marker.exists()
    notar = tmp_path / "x.tar.gz"
    notar.write_bytes(b"not an archive at all")
    raises_data_error(lambda: mb.cifar10_python_archive(notar, tmp_path / "o"), file=notar,
                      contains=("tar",))
    raises_data_error(lambda: mb.cifar10_python_archive(tmp_path / "none.tgz", tmp_path / "o"),
                      file=tmp_path / "none.tgz", contains=("missing",))
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
