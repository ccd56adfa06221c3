"""The readers' limits (docs/fidelity.md, "Limits of the readers"), one by one, with their
messages; tests/bad_inputs/cases_readers.py runs the same classes through the CLI."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import time
import zipfile

import numpy as np
import pytest

from alexnet_replay.errors import ConfigError, ReplayError
from alexnet_replay.harness import pickles
from alexnet_replay.harness.npzfile import NpzProblem, read_npz
from alexnet_replay.harness.pickles import DataError, gunzip_bounded, loads_pickle
from alexnet_replay.original import cfgfile
from alexnet_replay.original.cfgfile import parse_cfg_text, read_cfg
from alexnet_replay.original.values import Reader
from alexnet_replay.readfile import FileProblem, read_regular_file


def _fanout(levels: int, width: int, leaf: str) -> str:
    lines = [f"k{i}=" + f"%(k{i + 1})s" * width for i in range(levels)]
    return "[s]\n" + "\n".join(lines + [f"k{levels}={leaf}"])


def test_interpolation_that_grows_is_stopped_at_the_size_limit_quickly():
    cfg = parse_cfg_text(_fanout(9, 8, "x" * 20), "n.cfg")  # 8**9 leaves of 20 characters: 2.7 GB
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        cfg.get("s", "k0")
    assert time.perf_counter() - start < 1.0
    assert str(info.value) == (f"n.cfg: line 2: [s] key 'k0': value grows past {cfgfile.MAX_INTERPOLATED_CHARS} "
                               "characters through %(name)s references (limit of the reader)")


def test_interpolation_of_empty_values_is_stopped_at_the_substitution_limit():
    cfg = parse_cfg_text(_fanout(9, 8, ""), "n.cfg")  # nothing to show for 150 million substitutions
    with pytest.raises(ConfigError, match=f"more than {cfgfile.MAX_INTERPOLATION_STEPS} %\\(name\\)s substitutions"):
        cfg.get("s", "k0")


def test_interpolation_within_the_limits_still_reads():
    cfg = parse_cfg_text(_fanout(3, 4, "ab"), "n.cfg")
    assert cfg.get("s", "k0") == "ab" * 64


def test_a_bad_reference_is_quoted_and_cut():
    cfg = parse_cfg_text("[s]\nk=%(" + "z" * 5000 + "\x1b", "n.cfg")
    with pytest.raises(ConfigError) as info:
        cfg.get("s", "k")
    assert "'%(zzz" in str(info.value) and "... (5003 characters)" in str(info.value)
    assert "\x1b" not in str(info.value) and len(str(info.value)) < 250


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity", "1e999"])
def test_floats_must_be_finite(text):
    reader = Reader(parse_cfg_text(f"[fc]\ninitW={text}\nepsW=0.1,{text}\n", "p.cfg"))
    with pytest.raises(ConfigError, match="must be a finite number") as info:
        reader.float("fc", "initW")
    assert info.value.key == "initW" and info.value.line == 2
    with pytest.raises(ConfigError, match="must be a finite number"):
        reader.float_list("fc", "epsW")


def test_ints_must_fit_a_c_int():
    reader = Reader(parse_cfg_text("[c]\nfilters=2147483647\nchannels=2147483648\n", "l.cfg"))
    assert reader.int("c", "filters") == 2**31 - 1
    with pytest.raises(ConfigError, match="2147483648 does not fit the release's C int"):
        reader.int("c", "channels")


def test_a_fifo_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "layers.cfg")
    with pytest.raises(ConfigError) as info:
        read_cfg(tmp_path / "layers.cfg", "layers.cfg")
    assert str(info.value) == "layers.cfg: is a FIFO (named pipe), not a regular file; only regular files are read"


def test_a_link_to_dev_zero_is_refused_before_reading(tmp_path):
    os.symlink("/dev/zero", tmp_path / "data_batch_1")
    with pytest.raises(DataError, match="is a character device, not a regular file"):
        pickles.load_pickle(tmp_path / "data_batch_1")


def test_a_file_over_the_limit_is_refused_from_its_size(tmp_path):
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.truncate(5000)
    with pytest.raises(FileProblem) as info:
        read_regular_file(path, 4096, "a test file")
    assert info.value.kind == "too-large"
    assert info.value.reason == ("is 5,000 bytes, more than the 4,096 bytes the reader accepts for a test file "
                                 "(limit of the reader)")
    assert read_regular_file(path, 5000) == b"\0" * 5000


def test_gzip_is_decompressed_only_as_far_as_its_trailer_declares():
    bomb = gzip.compress(b"\0" * (4 << 20), mtime=0)
    lying = bomb[:-4] + (1000).to_bytes(4, "little")
    with pytest.raises(DataError, match="decompresses to more than the 1,000 bytes its trailer declares"):
        gunzip_bounded(lying, "b")
    with pytest.raises(DataError, match="declares 4,194,304 bytes decompressed, more than the 1,000"):
        gunzip_bounded(bomb, "b", limit=1000)
    assert gunzip_bounded(bomb, "b") == b"\0" * (4 << 20)


def test_shared_lists_are_counted_each_time_they_are_reached():
    node: list = [0]
    for _ in range(40):
        node = [node, node]  # 2**40 leaves, a pickle of a few hundred bytes
    raw = pickle.dumps({"labels": node}, protocol=2)
    assert len(raw) < 1000
    start = time.perf_counter()
    with pytest.raises(DataError, match=f"reaches more than {pickles.MAX_PICKLE_ITEMS:,} values when read"):
        loads_pickle(raw, "meta")
    assert time.perf_counter() - start < 1.0
    small = [[1, 2]] * 3
    assert loads_pickle(pickle.dumps(small, protocol=2), "ok") == small


def test_a_list_holding_itself_and_deep_nesting_are_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(DataError, match="a list holds itself"):
        loads_pickle(pickle.dumps(loop, protocol=2), "x")
    deep = b"\x80\x02" + b"]" * 200 + b"a" * 199 + b"."
    with pytest.raises(DataError, match="nested more than 100 levels deep"):
        loads_pickle(deep, "x")


def test_an_array_shape_is_checked_before_it_is_allocated():
    raw = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n\x8a\x05\x00\x00\x00\x00\x10\x85"
           b"U\x01b\x87R.")
    with pytest.raises(DataError, match="array of 68,719,476,736 elements"):
        loads_pickle(raw, "x")
    with pytest.raises(DataError, match="numpy.ndarray called directly"):
        loads_pickle(b"\x80\x02cnumpy\nndarray\nJ\x00\xca\x9a;\x85R.", "x")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(loads_pickle(pickle.dumps(a, protocol=2), "x"), a)


def _npz(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return out.getvalue()


def test_npz_member_headers_must_match_their_sizes(tmp_path):
    header = repr({"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}).encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    (tmp_path / "x.npz").write_bytes(_npz({"w.npy": member}))
    with pytest.raises(NpzProblem, match=r"member 'w.npy' declares shape \(1000000, 1000000\) of float32 "
                                         r"\(4,000,000,000,000 bytes\) but holds 0 bytes of data"):
        read_npz(tmp_path / "x.npz")
    out = io.BytesIO()
    np.savez(out, w=np.arange(4, dtype=np.float32), f=np.asfortranarray(np.ones((2, 3))))
    (tmp_path / "ok.npz").write_bytes(out.getvalue())
    arrays = read_npz(tmp_path / "ok.npz")
    assert arrays["w"].tolist() == [0, 1, 2, 3] and arrays["f"].shape == (2, 3)


def test_checkpoint_header_types_are_checked(tmp_path):
    from alexnet_replay.harness.checkpoint import header_problem

    good = {"signature": [["fc", "fc", [[4, 2]], [1, 2]]], "state": {"epoch": 1, "batchnum": 0}}
    assert header_problem(good) is None
    assert header_problem({**good, "state": None}) == "'state' must be an object (got null)"
    assert header_problem({**good, "state": {"epoch": "2"}}) == "'state.epoch' must be an integer from 1 (got '\"2\"')"
    assert header_problem({**good, "update": {"freq": 0}}).startswith("'update' must be")


def test_release_weights_must_be_finite_real_numbers():
    from alexnet_replay.harness.release_checkpoint import unusable_weights

    assert unusable_weights(np.zeros((2, 2), np.float32)) is None
    w = np.zeros((2, 2), np.float32)
    w[1, 0] = np.nan
    assert unusable_weights(w).startswith("1 NaN or infinite value(s) (first at flat index 2)")
    assert unusable_weights(np.zeros(2, np.complex64)).startswith("dtype complex64 is not real numbers")


def test_replay_error_is_the_base_of_every_limit_error():
    assert issubclass(DataError, ReplayError) and issubclass(ConfigError, ReplayError)
