"""Bad inputs for the readers: cfg files, parameter files, batches, batches.meta and both
checkpoint formats (issue 13, items 2-4). See common.py for what a case is and must give.

Families are generated where a rule applies to many keys (every numeric key of the small
net times the values the release could not have used); each case is one input that differs
from every other. Large inputs (bombs) are made small on disk: a gzip or zip whose header
declares more than it should, a pickle of shared lists, an interpolation that grows.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from common import LAYERS, PARAMS, TRAIN_ARGS, Case, batch_dict, meta_dict, pickled, valid_files

SHOW = ["show-net", "layers.cfg", "params.cfg", "--image-size", "3,8,8"]
CONVERT = ["checkpoint", "convert", "ck.npz", "out.pkl", "--layer-def", "layers.cfg", "--layer-params",
           "params.cfg", "--image-size", "3,8,8"]
CONVERT_RELEASE = ["checkpoint", "convert", "ck.pkl", "out.npz", "--layer-def", "layers.cfg", "--layer-params",
                   "params.cfg", "--image-size", "3,8,8"]
CASES: list[Case] = []


def add(name: str, argv: list[str], expect: list[str], files: dict | None = None, setup=None,
        exit_codes: tuple[int, ...] = (1, 2)) -> None:
    CASES.append(Case(name, argv, expect, dict(files or {}), setup, exit_codes))


def with_files(**changes: str | bytes) -> dict[str, str | bytes]:
    """valid_files() with some files replaced (keys use '__' for '/')."""
    files = valid_files()
    for key, value in changes.items():
        files[key.replace("__", "/")] = value
    return files


def set_key(text: str, section: str, key: str, value: str | None) -> str:
    """`text` with `key` of `section` set to `value` (added when absent, removed for None)."""
    out, inside, done = [], False, False
    for line in text.split("\n"):
        if line.startswith("["):
            if inside and not done and value is not None:
                out.insert(len(out) - (1 if out and out[-1] == "" else 0), f"{key}={value}")
                done = True
            inside = line == f"[{section}]"
        elif inside and line.split("=", 1)[0] == key:
            done = True
            if value is not None:
                out.append(f"{key}={value}")
            continue
        out.append(line)
    if inside and not done and value is not None:
        out.append(f"{key}={value}")
    return "\n".join(out)


# -- 1. cfg files: the file itself -------------------------------------------------------------
def _fifo(name: str):
    def make(d: Path) -> None:
        os.mkfifo(d / name)
    return make


def _link(name: str, target: str):
    def make(d: Path) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, d / name)
    return make


def _folder(name: str):
    def make(d: Path) -> None:
        (d / name).mkdir(parents=True)
    return make


def _big(name: str, size: int):
    def make(d: Path) -> None:
        with open(d / name, "wb") as f:
            f.truncate(size)  # sparse: nothing on disk (only files a little past a limit: the runner hashes them)
    return make


for which in ("layers.cfg", "params.cfg"):
    tag = which.split(".")[0]
    base = {k: v for k, v in valid_files().items() if k != which}
    add(f"cfg/{tag}-fifo", SHOW, [which, "FIFO", "not a regular file"], base, _fifo(which))
    add(f"cfg/{tag}-dev-zero-link", SHOW, [which, "character device"], base, _link(which, "/dev/zero"))
    add(f"cfg/{tag}-dev-null-link", SHOW, [which, "character device"], base, _link(which, "/dev/null"))
    add(f"cfg/{tag}-dangling-link", SHOW, [which, "does not exist"], base, _link(which, "nowhere.cfg"))
    add(f"cfg/{tag}-folder", SHOW, [which, "is a folder"], base, _folder(which))
    add(f"cfg/{tag}-too-large", SHOW, [which, "limit of the reader"], base, _big(which, 5 * 1024 * 1024))
    add(f"cfg/{tag}-missing", SHOW, [which, "file not found"], base)
    add(f"cfg/{tag}-link-loop", SHOW, [which, "cannot read"], base, _link(which, which))

add("cfg/layers-empty", SHOW, ["layers.cfg", "no layers"], with_files(**{"layers.cfg": ""}))
add("cfg/layers-only-comments", SHOW, ["layers.cfg", "no layers"], with_files(**{"layers.cfg": "# nothing\n; here\n"}))
add("cfg/layers-only-blank-lines", SHOW, ["layers.cfg", "no layers"], with_files(**{"layers.cfg": "\n\n   \n\n"}))
add("cfg/layers-only-default-section", SHOW, ["layers.cfg", "no layers"],
    with_files(**{"layers.cfg": "[DEFAULT]\ntype=data\n"}))
add("cfg/params-empty", SHOW, ["params.cfg", "[conv1]"], with_files(**{"params.cfg": ""}))
add("cfg/layers-text-before-header", SHOW, ["layers.cfg", "line 1", "before the first"],
    with_files(**{"layers.cfg": "type=data\n" + LAYERS}))
add("cfg/layers-binary-junk", SHOW, ["layers.cfg", "line 1"],
    with_files(**{"layers.cfg": bytes(range(256)) * 4}))
add("cfg/layers-nul-bytes", SHOW, ["layers.cfg", "line 1"], with_files(**{"layers.cfg": b"\0" * 4096}))
add("cfg/layers-gzip-file", SHOW, ["layers.cfg", "line 1"],
    with_files(**{"layers.cfg": gzip.compress(LAYERS.encode(), mtime=0)}))
add("cfg/layers-garbage-line", SHOW, ["layers.cfg", "line 5", "not a [section] header"],
    with_files(**{"layers.cfg": LAYERS.replace("[labels]", "garbage here\n[labels]", 1)}))
add("cfg/params-garbage-line", SHOW, ["params.cfg", "line 2", "not a [section] header"],
    with_files(**{"params.cfg": "[conv1]\nthis is not a key\n" + PARAMS}))
add("cfg/layers-terminal-escape-line", SHOW, ["layers.cfg", "\\x1b"],
    with_files(**{"layers.cfg": LAYERS + "\n\x1b[2J\x1b]0;pwned\x07\n"}))
add("cfg/layers-long-junk-line", SHOW, ["layers.cfg", "not a [section] header"],
    with_files(**{"layers.cfg": LAYERS + "\n" + "x" * 200_000 + "\n"}))


# -- 2. cfg interpolation ------------------------------------------------------------------------
def fanout(levels: int, width: int, leaf: str) -> str:
    """[conv1] key k0 = width references to k1, each to k2, ...: width**levels leaves."""
    lines = [f"k{i}=" + "".join(f"%(k{i + 1})s" for _ in range(width)) for i in range(levels)]
    return "\n".join(lines + [f"k{levels}={leaf}"])


def interp(name: str, extra: str, key: str, value: str, expect: list[str], target: str = "layers.cfg",
           section: str = "conv1") -> None:
    text = LAYERS if target == "layers.cfg" else PARAMS
    text = set_key(text, section, key, value).replace(f"[{section}]\n", f"[{section}]\n{extra}\n", 1)
    add(f"interp/{name}", SHOW, [target, *expect], with_files(**{target: text}))


interp("fanout-grows", fanout(9, 8, "x" * 20), "filters", "%(k0)s", ["filters", "characters"])
interp("fanout-empty-leaves", fanout(9, 8, ""), "filters", "16%(k0)s", ["filters", "substitutions"])
interp("fanout-wide-shallow", fanout(2, 400, "y" * 400), "filters", "%(k0)s", ["filters", "characters"])
interp("fanout-in-initw", fanout(8, 6, "0"), "initW", "%(k0)s", ["initW", "substitutions"])
interp("fanout-in-params", fanout(4, 8, "ab" * 10), "epsW", "%(k0)s", ["params.cfg", "epsW", "characters"],
       target="params.cfg")
interp("self-loop", "", "filters", "%(filters)s", ["filters", "levels deep"])
interp("two-cycle", "a=%(b)s\nb=%(a)s", "filters", "%(a)s", ["filters", "levels deep"])
interp("chain-eleven", "\n".join(f"c{i}=%(c{i + 1})s" for i in range(11)) + "\nc11=16", "filters", "%(c0)s",
       ["filters", "levels deep"])
interp("missing-reference", "", "filters", "%(nothere)s", ["filters", "no key 'nothere'"])
interp("unclosed-reference", "", "filters", "%(filt", ["filters", "bad interpolation syntax"])
interp("lone-percent", "", "filters", "16%", ["filters", "must be followed by"])
interp("percent-d", "", "filters", "%d", ["filters", "must be followed by"])
interp("huge-bad-syntax-value", "", "initW", "%(" + "z" * 100_000, ["initW", "100002 characters"])
interp("escape-in-reference", "", "filters", "%(\x1b[31m)s", ["filters", "\\x1b"])
add("interp/default-section-loop", SHOW, ["layers.cfg", "levels deep"],
    with_files(**{"layers.cfg": "[DEFAULT]\nx=%(y)s\ny=%(x)s\n" + set_key(LAYERS, "fc2", "outputs", "%(x)s")}))
add("interp/default-section-fanout", SHOW, ["layers.cfg", "outputs", "characters"],
    with_files(**{"layers.cfg": "[DEFAULT]\n" + fanout(5, 5, "4" * 30) + "\n"
                  + set_key(LAYERS, "fc2", "outputs", "%(k0)s")}))


# -- 3. numeric keys x values the release could not have used ------------------------------------
# (section, key, file, values that must be refused, and a word each message must hold)
BAD_INT = {"nan": "must be an int", "inf": "must be an int", "x": "must be an int", "": "must be an int",
           "1.5": "must be an int", "1e3": "must be an int", "99999999999": "C int", "-99999999999": "C int"}
INT_KEYS = [("conv1", "channels"), ("conv1", "filters"), ("conv1", "padding"), ("conv1", "stride"),
            ("conv1", "filterSize"), ("conv1", "partialSum"), ("conv1", "gpu"), ("fc2", "outputs"),
            ("data", "dataIdx"), ("labels", "dataIdx")]
LIST_KEYS = {"channels", "filters", "padding", "stride", "filterSize"}  # conv keys: one value per input
for section, key in INT_KEYS:
    for value, word in BAD_INT.items():
        slug = {"": "empty", "-99999999999": "huge-negative", "99999999999": "huge"}.get(value, value)
        if key in LIST_KEYS and word == "must be an int":
            word = "list of ints"
        add(f"layers/{section}-{key}-{slug}", SHOW, ["layers.cfg", f"[{section}]", key, word],
            with_files(**{"layers.cfg": set_key(LAYERS, section, key, value)}))

NEGATIVE = [("conv1", "channels", "-3", "channels must be"), ("conv1", "filters", "-16", "filters must be >= 1"),
            ("conv1", "filters", "0", "filters must be >= 1"), ("conv1", "padding", "-1", "padding must be >= 0"),
            ("conv1", "stride", "0", "stride must be >= 1"), ("conv1", "stride", "-2", "stride must be >= 1"),
            ("conv1", "filterSize", "0", "filterSize must be >= 1"),
            ("conv1", "filterSize", "-3", "filterSize must be >= 1"),
            ("conv1", "partialSum", "-1", "partialSum"), ("conv1", "gpu", "-5", "gpu"),
            ("fc2", "outputs", "0", "must be >= 1"), ("fc2", "outputs", "-4", "must be >= 1"),
            ("data", "dataIdx", "-1", "must be >= 0"), ("conv1", "filterSize", "99", "larger than the padded"),
            ("conv1", "channels", "5", "channels must be 1, 2, 3"), ("conv1", "filters", "17", "divisible by 16")]
for section, key, value, word in NEGATIVE:
    add(f"layers/{section}-{key}-is-{value}", SHOW, ["layers.cfg", f"[{section}]", key, word],
        with_files(**{"layers.cfg": set_key(LAYERS, section, key, value)}))

BAD_FLOAT = {"nan": "finite", "inf": "finite", "-inf": "finite", "+NaN": "finite", "Infinity": "finite",
             "x": "must be a", "": "must be a", "1e999": "finite"}
for section, key in [("conv1", "initW"), ("fc2", "initW"), ("conv1", "initB"), ("fc2", "initB")]:
    for value, word in BAD_FLOAT.items():
        slug = {"": "empty", "+NaN": "plus-nan", "-inf": "minus-inf"}.get(value, value.lower())
        add(f"layers/{section}-{key}-{slug}", SHOW, ["layers.cfg", f"[{section}]", key, word],
            with_files(**{"layers.cfg": set_key(LAYERS, section, key, value)}))
add("layers/conv1-initW-list-too-long", SHOW, ["layers.cfg", "initW", "list has 2 entries"],
    with_files(**{"layers.cfg": set_key(LAYERS, "conv1", "initW", "0.01,0.01")}))
add("layers/conv1-neuron-unknown", SHOW, ["layers.cfg", "neuron", "unknown neuron"],
    with_files(**{"layers.cfg": set_key(LAYERS, "conv1", "neuron", "nanrelu")}))
add("layers/conv1-sharedBiases-text", SHOW, ["layers.cfg", "sharedBiases", "must be a bool"],
    with_files(**{"layers.cfg": set_key(LAYERS, "conv1", "sharedBiases", "maybe")}))

PARAM_FLOATS = ["epsW", "epsB", "momW", "momB", "wc"]
for section in ("conv1", "fc2"):
    for key in PARAM_FLOATS:
        for value, word in {"nan": "finite", "inf": "finite", "-inf": "finite", "x": "must be a",
                            "": "must be a"}.items():
            slug = {"": "empty", "-inf": "minus-inf"}.get(value, value)
            add(f"params/{section}-{key}-{slug}", SHOW, ["params.cfg", f"[{section}]", key, word],
                with_files(**{"params.cfg": set_key(PARAMS, section, key, value)}))
for value, word in {"nan": "finite", "inf": "finite", "x": "must be a", "": "must be a"}.items():
    add(f"params/logprob-coeff-{value or 'empty'}", SHOW, ["params.cfg", "[logprob]", "coeff", word],
        with_files(**{"params.cfg": set_key(PARAMS, "logprob", "coeff", value)}))
for key in ("epsW", "epsB", "momW", "momB"):
    add(f"params/conv1-{key}-missing", SHOW, ["params.cfg", "[conv1]", key, "missing"],
        with_files(**{"params.cfg": set_key(PARAMS, "conv1", key, None)}))
for value, word in {"dexp[tgtFactor=inf,noiseStdev=0,numSteps=3]": "finite",
                    "exp[tgtFactor=nan,noiseStdev=0]": "finite",
                    "dexp[tgtFactor=10,noiseStdev=0,numSteps=99999999999]": "C int",
                    "linear[tgtFactor=1,noiseStdev=-inf]": "finite", "wobble[1]": "unknown schedule",
                    "exp[noiseStdev=0,tgtFactor=10]": "in this order"}.items():
    slug = value.split("[")[0] + "-" + ("inf" if "inf" in value else "nan" if "nan" in value else
                                        "huge" if "999" in value else "order" if "noiseStdev=0,t" in value else "bad")
    add(f"params/schedW-{slug}", SHOW, ["params.cfg", "schedW", word],
        with_files(**{"params.cfg": set_key(PARAMS, "conv1", "schedW", value)}))
add("params/conv1-epsW-list-too-long", SHOW, ["params.cfg", "epsW", "list has 3 entries"],
    with_files(**{"params.cfg": set_key(PARAMS, "conv1", "epsW", "0.1,0.1,0.1")}))
add("params/no-section-for-fc2", SHOW, ["params.cfg", "[fc2]", "needs a section"],
    with_files(**{"params.cfg": PARAMS.replace("[fc2]", "[fc2-elsewhere]")}))

# The same refusals through `train`: nothing is written (no run folder) when the files are bad.
for name, target, text, word in [
        ("initW-nan", "layers.cfg", set_key(LAYERS, "conv1", "initW", "nan"), "finite"),
        ("epsW-inf", "params.cfg", set_key(PARAMS, "fc2", "epsW", "inf"), "finite"),
        ("filters-negative", "layers.cfg", set_key(LAYERS, "conv1", "filters", "-16"), "filters must be >= 1"),
        ("layers-empty", "layers.cfg", "", "no layers"),
        ("interp-bomb", "layers.cfg", set_key(LAYERS, "conv1", "filters", "%(k0)s").replace(
            "[conv1]\n", "[conv1]\n" + fanout(9, 8, "1" * 20) + "\n", 1), "characters"),
        ("momB-nan", "params.cfg", set_key(PARAMS, "conv1", "momB", "NaN"), "finite")]:
    add(f"train-cfg/{name}", TRAIN_ARGS, [target, word], with_files(**{target: text}))
add("train-cfg/layers-fifo", TRAIN_ARGS, ["layers.cfg", "FIFO"],
    {k: v for k, v in valid_files().items() if k != "layers.cfg"}, _fifo("layers.cfg"))
add("train-cfg/params-dev-zero", TRAIN_ARGS, ["params.cfg", "character device"],
    {k: v for k, v in valid_files().items() if k != "params.cfg"}, _link("params.cfg", "/dev/zero"))

# A labels layer reading a matrix the provider does not give (cifar gives dataIdx 0 and 1).
for idx in (2, 7, 1000):
    add(f"train-cfg/labels-dataIdx-{idx}", TRAIN_ARGS, ["dataIdx", str(idx)],
        with_files(**{"layers.cfg": set_key(LAYERS, "labels", "dataIdx", str(idx))}))


# -- 4. batches.meta and data batches (through train) -----------------------------------------------
def data_case(name: str, expect: list[str], meta: bytes | None = None, batch1: bytes | None = None,
              setup=None, batch2: bytes | None = None, argv: list[str] = TRAIN_ARGS) -> None:
    files = valid_files()
    for key, value in (("data/batches.meta", meta), ("data/data_batch_1", batch1), ("data/data_batch_2", batch2)):
        if value is not None:
            files[key] = value
    add(f"data/{name}", argv, expect, files, setup)


def meta_with(**changes) -> bytes:
    meta = meta_dict()
    for k, v in changes.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    return pickled(meta)


def batch_with(**changes) -> bytes:
    b = batch_dict(seed=1)
    for k, v in changes.items():
        if v is None:
            b.pop(k)
        else:
            b[k] = v
    return pickled(b)


def gzip_declaring(payload: bytes, declared: int) -> bytes:
    """A gzip file of `payload` whose trailer declares `declared` bytes (mod 2**32)."""
    raw = gzip.compress(payload, mtime=0)
    return raw[:-4] + struct.pack("<I", declared % 2**32)


def shared_lists(levels: int, leaf=0) -> list:
    """A list holding the next list twice, `levels` deep: 2**levels leaves, a tiny pickle."""
    node = [leaf]
    for _ in range(levels):
        node = [node, node]
    return node


def nested(levels: int) -> list:
    node: list = []
    for _ in range(levels):
        node = [node]
    return node


def deep_pickle(levels: int) -> bytes:
    """A list nested `levels` deep, written directly as opcodes (pickle.dumps would recurse)."""
    return b"\x80\x02" + b"]" * levels + b"a" * (levels - 1) + b"."


def zip_with(member: str, payload: bytes, declared: int | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, payload)
    raw = bytearray(out.getvalue())
    if declared is not None:  # patch the uncompressed size in the local and the central header
        for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            at = raw.find(sig)
            raw[at + off:at + off + 4] = struct.pack("<I", declared)
    return bytes(raw)


meta_file = "data/batches.meta"
batch_file = "data/data_batch_1"
data_case("meta-missing-num_vis", [meta_file, "num_vis", "missing"], meta=meta_with(num_vis=None))
data_case("meta-missing-label_names", [meta_file, "label_names"], meta=meta_with(label_names=None))
data_case("meta-missing-data_mean", [meta_file, "data_mean"], meta=meta_with(data_mean=None))
data_case("meta-num_vis-zero", [meta_file, "num_vis", "positive"], meta=meta_with(num_vis=0))
data_case("meta-num_vis-negative", [meta_file, "num_vis", "positive"], meta=meta_with(num_vis=-192))
data_case("meta-num_vis-text", [meta_file, "num_vis", "positive"], meta=meta_with(num_vis="192"))
data_case("meta-num_vis-float", [meta_file, "num_vis", "positive"], meta=meta_with(num_vis=192.0))
data_case("meta-num_vis-wrong", [meta_file, "data_mean", "num_vis"], meta=meta_with(num_vis=300))
data_case("meta-label_names-empty", [meta_file, "label_names", "non-empty"], meta=meta_with(label_names=[]))
data_case("meta-label_names-numbers", [meta_file, "label_names", "not a string"], meta=meta_with(label_names=[1, 2]))
data_case("meta-label_names-nested-lists", [meta_file, "label_names", "not a string"],
          meta=meta_with(label_names=[["a"], ["b"]]))
data_case("meta-label_names-shared-bomb", [meta_file, "limit of the reader"],
          meta=meta_with(label_names=shared_lists(40, "cat")))
data_case("meta-data_mean-shared-bomb", [meta_file, "limit of the reader"],
          meta=meta_with(data_mean=shared_lists(40, 1.0)))
data_case("meta-extra-key-shared-bomb", [meta_file, "limit of the reader"], meta=meta_with(notes=shared_lists(60)))
data_case("meta-deeply-nested", [meta_file, "nested"], meta=meta_with(label_names=nested(150)))
data_case("meta-self-referencing", [meta_file, "holds itself"],
          meta=(lambda loop: (loop.append(loop), meta_with(label_names=loop))[1])([]))
data_case("meta-data_mean-nan", [meta_file, "data_mean", "NaN"],
          meta=meta_with(data_mean=np.full((192, 1), np.nan, np.float32)))
data_case("meta-data_mean-inf", [meta_file, "data_mean", "infinite"],
          meta=meta_with(data_mean=np.full((192, 1), np.inf, np.float32)))
data_case("meta-data_mean-text", [meta_file, "data_mean", "numeric"], meta=meta_with(data_mean="mean"))
data_case("meta-data_mean-complex", [meta_file, "data_mean", "complex"],
          meta=meta_with(data_mean=np.ones((192, 1), np.complex64)))
data_case("meta-data_mean-wrong-size", [meta_file, "data_mean", "num_vis"],
          meta=meta_with(data_mean=np.ones((100, 1), np.float32)))
data_case("meta-color_pca-bad", [meta_file, "color_pca"], meta=meta_with(color_pca=(1, 2, 3)))
data_case("meta-not-a-dict", [meta_file, "pickled dict"], meta=pickled([1, 2, 3]))
data_case("meta-empty-file", [meta_file, "empty"], meta=b"")
data_case("meta-truncated", [meta_file, "truncated"], meta=pickled(meta_dict())[:100])
data_case("meta-text-file", [meta_file, "not a pickle"], meta=b"num_vis = 192\n")
data_case("meta-refused-global", [meta_file, "refused global", "os.system"],
          meta=b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
data_case("meta-refused-builtin-eval", [meta_file, "refused global", "eval"],
          meta=b"c__builtin__\neval\n(S'1+1'\ntR.")
data_case("meta-ndarray-called-directly", [meta_file, "numpy.ndarray called directly"],
          meta=b"\x80\x02cnumpy\nndarray\nJ\x00\xca\x9a;\x85R.")
data_case("meta-huge-array-shape", [meta_file, "limit of the reader"],
          meta=b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n\x8a\x05\x00\x00\x00\x00\x10\x85"
               b"U\x01b\x87R.")
data_case("meta-gzip-declares-too-much", [meta_file, "declares", "limit of the reader"],
          meta=gzip_declaring(pickled(meta_dict()), 3 * 1024**3))
data_case("meta-gzip-bomb-lies", [meta_file, "more than the", "trailer declares"],
          meta=gzip_declaring(b"\0" * (16 * 1024 * 1024), 1000))
data_case("meta-gzip-truncated", [meta_file, "gzip", "truncated"], meta=gzip.compress(pickled(meta_dict()))[:-30])
data_case("meta-gzip-two-members", [meta_file, "more than one member"],
          meta=gzip.compress(pickled(meta_dict()), mtime=0) * 2)
data_case("meta-gzip-bad-crc", [meta_file, "damaged"],
          meta=(lambda raw: raw[:-8] + b"\0\0\0\0" + raw[-4:])(gzip.compress(pickled(meta_dict()), mtime=0)))
data_case("meta-zip-bomb-declared", [meta_file, "declares", "limit of the reader"],
          meta=zip_with("data", b"\0" * 1000, declared=3 * 1024**3))
data_case("meta-zip-member-lies", [meta_file, "zip archive"],
          meta=zip_with("data", b"\0" * (8 * 1024 * 1024), declared=1000))
data_case("meta-zip-no-data-member", [meta_file, "no member 'data'"], meta=zip_with("other", pickled(meta_dict())))
data_case("meta-fifo", [meta_file, "FIFO"], setup=lambda d: (os.remove(d / meta_file), os.mkfifo(d / meta_file)))
data_case("meta-dev-zero", [meta_file, "character device"],
          setup=lambda d: (os.remove(d / meta_file), os.symlink("/dev/zero", d / meta_file)))
data_case("meta-dangling-link", [meta_file],
          setup=lambda d: (os.remove(d / meta_file), os.symlink("gone.meta", d / meta_file)))
data_case("meta-folder", [meta_file], setup=lambda d: (os.remove(d / meta_file), os.mkdir(d / meta_file)))

data_case("batch-zero-images", [batch_file, "0 images"],
          batch1=batch_with(data=np.zeros((192, 0), np.uint8), labels=[], filenames=[]))
data_case("batch-nan-pixel", [batch_file, "data", "NaN"],
          batch1=batch_with(data=np.where(np.arange(192 * 12).reshape(192, 12) == 77, np.nan, 1.0).astype(np.float32)))
data_case("batch-inf-pixel", [batch_file, "data", "infinite"],
          batch1=batch_with(data=np.where(np.arange(192 * 12).reshape(192, 12) == 5, np.inf, 1.0)))
data_case("batch-complex-pixels", [batch_file, "data", "complex"],
          batch1=batch_with(data=np.ones((192, 12), np.complex64)))
data_case("batch-bool-pixels", [batch_file, "data", "bool"], batch1=batch_with(data=np.ones((192, 12), bool)))
data_case("batch-text-pixels", [batch_file, "data", "numpy array"], batch1=batch_with(data="pixels"))
data_case("batch-3d-data", [batch_file, "data", "2-D"], batch1=batch_with(data=np.zeros((3, 64, 12), np.uint8)))
data_case("batch-wrong-rows", [batch_file, "data", "num_vis"], batch1=batch_with(data=np.zeros((100, 12), np.uint8)))
data_case("batch-rows-per-image", [batch_file, "data", "one image per row"],
          batch1=batch_with(data=np.zeros((12, 192), np.uint8)))
data_case("batch-missing-data", [batch_file, "data", "missing"], batch1=batch_with(data=None))
data_case("batch-missing-labels", [batch_file, "labels", "missing"], batch1=batch_with(labels=None))
data_case("batch-label-out-of-range", [batch_file, "labels", "out of range"], batch1=batch_with(labels=[9] * 12))
data_case("batch-label-negative", [batch_file, "labels", "out of range"], batch1=batch_with(labels=[-1] * 12))
data_case("batch-label-nan", [batch_file, "labels", "not an integer"], batch1=batch_with(labels=[float("nan")] * 12))
data_case("batch-label-text", [batch_file, "labels", "not an integer"], batch1=batch_with(labels=["cat"] * 12))
data_case("batch-label-huge", [batch_file, "labels", "out of range"], batch1=batch_with(labels=[2**62] * 12))
data_case("batch-labels-too-few", [batch_file, "labels", "truncated"], batch1=batch_with(labels=[0] * 5))
data_case("batch-labels-shared-bomb", [batch_file, "limit of the reader"], batch1=batch_with(labels=shared_lists(45)))
data_case("batch-labels-nested", [batch_file, "nested"], batch1=batch_with(labels=nested(200)))
data_case("batch-deep-opcodes", [batch_file, "nested"], batch1=deep_pickle(100_000))
data_case("batch-not-a-dict", [batch_file, "pickled dict"], batch1=pickled((1, 2, 3)))
data_case("batch-none", [batch_file, "pickled dict"], batch1=pickled(None))
data_case("batch-empty-file", [batch_file, "empty"], batch1=b"")
data_case("batch-truncated", [batch_file, "truncated"], batch1=batch_with()[:300])
data_case("batch-refused-global", [batch_file, "refused global", "subprocess"],
          batch1=b"csubprocess\ncall\n(S'true'\ntR.")
data_case("batch-persistent-id", [batch_file, "persistent"], batch1=b"\x80\x02X\x01\x00\x00\x00aQ.")
data_case("batch-gzip-bomb-lies", [batch_file, "trailer declares"],
          batch1=gzip_declaring(b"\0" * (16 * 1024 * 1024), 4096))
data_case("batch-gzip-declares-too-much", [batch_file, "limit of the reader"],
          batch1=gzip_declaring(batch_with(), 2**32 - 1))
data_case("batch-gzip-garbage", [batch_file, "gzip"], batch1=b"\x1f\x8b\x08\x00" + b"\xff" * 64)
data_case("batch-zip-bomb", [batch_file, "limit of the reader"],
          batch1=zip_with("data", b"\0" * 100, declared=4 * 1024**3 - 1))
data_case("batch-fifo", [batch_file, "FIFO"],
          setup=lambda d: (os.remove(d / batch_file), os.mkfifo(d / batch_file)))
data_case("batch-dev-zero", [batch_file, "character device"],
          setup=lambda d: (os.remove(d / batch_file), os.symlink("/dev/zero", d / batch_file)))
data_case("batch-dev-urandom", [batch_file, "character device"],
          setup=lambda d: (os.remove(d / batch_file), os.symlink("/dev/urandom", d / batch_file)))
data_case("batch-huge-array-shape", [batch_file, "limit of the reader"],
          batch1=b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x7f\x85U\x01b\x87R.")
data_case("batch-test-batch-zero-images", ["data/data_batch_2", "0 images"],
          batch2=pickled({**batch_dict(seed=2), "data": np.zeros((192, 0), np.uint8), "labels": []}),
          argv=[*TRAIN_ARGS, "--test-freq", "1"])


# -- 5. this project's checkpoint (.npz + JSON header) ---------------------------------------------
@lru_cache(maxsize=None)
def npz_parts() -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a valid checkpoint of the corpus net, made without training."""
    import tempfile

    from alexnet_replay.engine import EngineNet
    from alexnet_replay.harness.checkpoint import read_checkpoint, save_checkpoint
    from alexnet_replay.original.shownet import load

    with tempfile.TemporaryDirectory() as d:
        Path(d, "layers.cfg").write_text(LAYERS)
        Path(d, "params.cfg").write_text(PARAMS)
        config, _ = load(str(Path(d, "layers.cfg")), str(Path(d, "params.cfg")), image_size=(3, 8, 8))
        save_checkpoint(Path(d, "ck.npz"), EngineNet(config, 1, 0), {"epoch": 1, "batchnum": 1})
        meta, arrays = read_checkpoint(Path(d, "ck.npz"))
    meta["layers_file"], meta["params_file"] = "layers.cfg", "params.cfg"
    return meta, arrays


def npz_bytes(meta: dict | None = None, arrays: dict | None = None, header: bytes | None = None) -> bytes:
    base_meta, base_arrays = npz_parts()
    meta = base_meta if meta is None else meta
    arrays = base_arrays if arrays is None else arrays
    head = header if header is not None else json.dumps(meta).encode()
    out = io.BytesIO()
    np.savez(out, __meta__=np.frombuffer(head, np.uint8), **arrays)
    return out.getvalue()


def meta_edit(path: str, value) -> dict:
    """The valid header with the field at dotted `path` set to `value` (removed for ...)."""
    meta = json.loads(json.dumps(npz_parts()[0]))
    *parents, last = path.split(".")
    node = meta
    for p in parents:
        node = node[p]
    if value is ...:
        node.pop(last)
    else:
        node[last] = value
    return meta


def arrays_edit(name: str, value) -> dict:
    arrays = dict(npz_parts()[1])
    if value is None:
        arrays.pop(name)
    else:
        arrays[name] = value
    return arrays


def ck_case(name: str, expect: list[str], data: bytes | None = None, setup=None, argv=None) -> None:
    files = valid_files() if argv else {"layers.cfg": LAYERS, "params.cfg": PARAMS}
    if data is not None:
        files["ck.npz"] = data
    add(f"npz/{name}", argv or CONVERT, ["ck.npz", *expect], files, setup)


HEADER_EDITS = {
    "state-null": ("state", None, "'state' must be an object"),
    "state-text": ("state", "resumed", "'state' must be an object"),
    "state-list": ("state", [1, 2], "'state' must be an object"),
    "epoch-text": ("state.epoch", "one", "state.epoch"),
    "epoch-null": ("state.epoch", None, "state.epoch"),
    "epoch-float": ("state.epoch", 1.5, "state.epoch"),
    "epoch-zero": ("state.epoch", 0, "state.epoch"),
    "epoch-huge": ("state.epoch", 2**40, "state.epoch"),
    "batchnum-negative": ("state.batchnum", -3, "state.batchnum"),
    "batchnum-text": ("state.batchnum", "1", "state.batchnum"),
    "batchnum-bool": ("state.batchnum", True, "state.batchnum"),
    "options-list": ("state.options", ["--mini", "128"], "state.options"),
    "signature-null": ("signature", None, "'signature'"),
    "signature-text": ("signature", "conv1", "'signature'"),
    "signature-row-short": ("signature", [["conv1", "conv"]], "'signature'"),
    "signature-shape-text": ("signature", [["conv1", "conv", [["27", 16]], [16, 1]]], "'signature'"),
    "signature-shape-negative": ("signature", [["conv1", "conv", [[-27, 16]], [16, 1]]], "'signature'"),
    "update-text": ("update", "yes", "'update'"),
    "update-freq-zero": ("update", {"freq": 0, "accumulated": 0}, "'update'"),
    "update-accumulated-text": ("update", {"freq": 1, "accumulated": "2"}, "'update'"),
    "update-null": ("update", None, "'update'"),
    "layers_file-number": ("layers_file", 17, "'layers_file'"),
    "params_file-list": ("params_file", ["params.cfg"], "'params_file'"),
    "image_size-text": ("image_size", "3,8,8", "'image_size'"),
    "image_size-zero": ("image_size", [3, 0, 8], "'image_size'"),
    "image_size-two": ("image_size", [8, 8], "'image_size'"),
    "version-text": ("version", "2", "version"),
    "version-99": ("version", 99, "version 99"),
    "format-other": ("format", "something else", "not an alexnet-replay checkpoint"),
}
for slug, (field_path, value, word) in HEADER_EDITS.items():
    ck_case(f"header-{slug}", [word], npz_bytes(meta=meta_edit(field_path, value)))
ck_case("header-state-missing", ["'state' must be an object"], npz_bytes(meta=meta_edit("state", ...)))
ck_case("header-signature-missing", ["'signature'"], npz_bytes(meta=meta_edit("signature", ...)))
ck_case("header-deep-nesting", ["nested too deeply"],
        npz_bytes(header=b'{"format": "alexnet-replay checkpoint", "version": 2, "x": ' + b"[" * 100_000
              + b"]" * 100_000 + b"}"))
ck_case("header-not-json", ["not an alexnet-replay checkpoint"], npz_bytes(header=b"{format: checkpoint"))
ck_case("header-not-utf8", ["not an alexnet-replay checkpoint"], npz_bytes(header=b"\xff\xfe{}"))
ck_case("header-json-list", ["not an alexnet-replay checkpoint"], npz_bytes(header=b"[1, 2, 3]"))
ck_case("header-missing", ["not an alexnet-replay checkpoint"],
        (lambda o: (np.savez(o, **npz_parts()[1]), o.getvalue())[1])(io.BytesIO()))

W = "conv1/weights/0"
nan_w = npz_parts()[1][W].copy()
nan_w[3, 4] = np.nan
ck_case("weights-nan", ["conv1", "NaN or infinite"], npz_bytes(arrays=arrays_edit(W, nan_w)))
ck_case("weights-inf", ["conv1", "NaN or infinite"], npz_bytes(arrays=arrays_edit(W, np.full_like(nan_w, np.inf))))
ck_case("weights-complex", ["conv1", "complex"], npz_bytes(arrays=arrays_edit(W, nan_w.astype(np.complex64) * 0)))
ck_case("weights-text", ["conv1", "<U"], npz_bytes(arrays=arrays_edit(W, np.full(nan_w.shape, "w"))))
ck_case("weights-bool", ["conv1", "bool"], npz_bytes(arrays=arrays_edit(W, np.ones(nan_w.shape, bool))))
ck_case("biases-nan", ["fc2", "NaN or infinite"],
        npz_bytes(arrays=arrays_edit("fc2/biases", np.full((1, 4), np.nan, np.float32))))
ck_case("inc-inf", ["fc2", "NaN or infinite"],
        npz_bytes(arrays=arrays_edit("fc2/weights_inc/0", np.full((1024, 4), -np.inf, np.float32))))
ck_case("weights-wrong-shape", ["wrong shape"], npz_bytes(arrays=arrays_edit(W, np.zeros((3, 3), np.float32))))
ck_case("weights-missing", ["missing"], npz_bytes(arrays=arrays_edit(W, None)))
ck_case("object-array", ["Python objects"],
        (lambda o: (np.savez(o, __meta__=np.frombuffer(json.dumps(npz_parts()[0]).encode(), np.uint8),
                             **{W: np.array([{"a": 1}], dtype=object)}), o.getvalue())[1])(io.BytesIO()))


def npy_member(shape: tuple, dtype: str = "<f4", data: bytes = b"") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def zip_members(members: dict[str, bytes], method=zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return out.getvalue()


ck_case("npy-declares-huge-shape", ["declares shape"],
        zip_members({"__meta__.npy": npy_member((10**6, 10**6)), W + ".npy": npy_member((27, 16))}))
ck_case("npy-shape-larger-than-data", ["declares shape"],
        zip_members({W + ".npy": npy_member((1000,), data=b"\0" * 40)}))
ck_case("npy-deflate-bomb", ["limit of the reader"],
        (lambda raw: raw)(zip_with(W + ".npy", b"\0" * 100, declared=3 * 1024**3)))
ck_case("npy-not-npy", ["not a .npy array"], zip_members({W + ".npy": b"hello, not an array"}))
ck_case("npy-object-dtype", ["Python objects"], zip_members({W + ".npy": npy_member((1,), "|O", b"\0" * 8)}))
ck_case("zip-truncated", ["not a readable alexnet-replay checkpoint"], npz_bytes()[:500])
ck_case("zip-garbage", ["not a readable alexnet-replay checkpoint"], b"PK\x03\x04" + b"\x00" * 200)
ck_case("empty-file", ["empty file"], b"")
ck_case("fifo", ["FIFO"], setup=_fifo("ck.npz"))
ck_case("dev-zero", ["character device"], setup=_link("ck.npz", "/dev/zero"))
ck_case("folder", ["no such checkpoint file"], setup=_folder("ck.npz"))
ck_case("dangling-link", ["does not exist"], setup=_link("ck.npz", "gone.npz"))
ck_case("train-resume-nan", ["conv1", "NaN or infinite"], npz_bytes(arrays=arrays_edit(W, nan_w)),
        argv=[*TRAIN_ARGS, "-f", "ck.npz"])
ck_case("train-resume-state-null", ["'state' must be an object"], npz_bytes(meta=meta_edit("state", None)),
        argv=[*TRAIN_ARGS, "-f", "ck.npz"])
ck_case("train-resume-epoch-text", ["state.epoch"], npz_bytes(meta=meta_edit("state.epoch", "3")),
        argv=[*TRAIN_ARGS, "-f", "ck.npz"])


# -- 6. the release's checkpoint (pickle) ----------------------------------------------------------
@lru_cache(maxsize=None)
def release_parts() -> dict:
    """A valid release checkpoint of the corpus net as plain data (unpickled)."""
    meta, arrays = npz_parts()
    layers = {}
    for name in ("conv1", "fc2"):
        layers[name] = {"name": name, "type": "conv" if name == "conv1" else "fc",
                        "weights": [arrays[f"{name}/weights/0"]], "weightsInc": [arrays[f"{name}/weights_inc/0"]],
                        "biases": arrays[f"{name}/biases"], "biasesInc": arrays[f"{name}/biases_inc"]}
    layers["data"] = {"name": "data", "type": "data", "dataIdx": 0, "outputs": 192}
    return {"op": {"layer_def": "layers.cfg", "layer_params": "params.cfg", "train_batch_range": [1],
                   "test_batch_range": [2]},
            "model_state": {"layers": layers, "train_outputs": [], "test_outputs": [], "epoch": 1, "batchnum": 1}}


def release_with(path: str, value) -> bytes:
    obj = release_parts()
    layers = {k: dict(v) for k, v in obj["model_state"]["layers"].items()}
    obj = {"op": dict(obj["op"]), "model_state": {**obj["model_state"], "layers": layers}}
    *parents, last = path.split(".")
    node = obj
    for p in parents:
        node = node[p]
    node[last] = value
    return pickle.dumps(obj, protocol=2)


def rel_case(name: str, expect: list[str], data: bytes | None = None, setup=None, argv=None) -> None:
    files = valid_files() if argv else {"layers.cfg": LAYERS, "params.cfg": PARAMS}
    if data is not None:
        files["ck.pkl"] = data
    add(f"release/{name}", argv or CONVERT_RELEASE, ["ck.pkl", *expect], files, setup)


L = "model_state.layers"
w0 = release_parts()["model_state"]["layers"]["conv1"]["weights"][0]
rel_case("weights-nan", ["conv1", "NaN or infinite"], release_with(f"{L}.conv1.weights", [np.full_like(w0, np.nan)]))
rel_case("weights-inf", ["conv1", "NaN or infinite"], release_with(f"{L}.conv1.weights", [np.full_like(w0, np.inf)]))
rel_case("weights-complex", ["conv1", "complex"], release_with(f"{L}.conv1.weights", [w0.astype(np.complex128)]))
rel_case("weights-object", ["conv1", "object"], release_with(f"{L}.conv1.weights", [w0.astype(object)]))
rel_case("biasesInc-nan", ["fc2", "NaN or infinite"],
         release_with(f"{L}.fc2.biasesInc", np.full((1, 4), np.nan, np.float32)))
rel_case("weightsInc-neg-inf", ["fc2", "NaN or infinite"],
         release_with(f"{L}.fc2.weightsInc", [np.full((1024, 4), -np.inf, np.float32)]))
rel_case("weights-wrong-shape", ["another network"], release_with(f"{L}.conv1.weights", [np.zeros((2, 2), np.float32)]))
loop: list = []
loop.append(loop)
rel_case("self-referencing-weights", ["holds itself"], release_with(f"{L}.conv1.weights", loop))
rel_case("self-referencing-train-outputs", ["holds itself"], release_with("model_state.train_outputs", loop))
rel_case("shared-lists-train-outputs", ["limit of the reader"],
         release_with("model_state.train_outputs", shared_lists(50, ({"logprob": [1.0, 0.5]}, 128))))
rel_case("shared-lists-test-outputs", ["limit of the reader"],
         release_with("model_state.test_outputs", shared_lists(40)))
rel_case("shared-lists-options", ["limit of the reader"], release_with("op.train_batch_range", shared_lists(48)))
rel_case("deep-nesting", ["nested"], release_with("model_state.train_outputs", nested(250)))
rel_case("layers-not-dict", ["model_state.layers"], release_with(L, [1, 2]))
rel_case("model_state-missing", ["model_state"], pickle.dumps({"op": {}}, protocol=2))
rel_case("record-not-dict", ["conv1"], release_with(f"{L}.conv1", "weights"))
rel_case("epoch-text", ["epoch"], release_with("model_state.epoch", "one"))
rel_case("top-level-list", ["pickled dict"], pickle.dumps([1, 2], protocol=2))
rel_case("refused-global", ["refused global", "os.system"], b"cos\nsystem\n(S'true'\ntR.")
rel_case("refused-global-in-options", ["refused global", "posix.system"],
         b"\x80\x02}q\x00X\x02\x00\x00\x00opq\x01cposix\nsystem\nq\x02s.")
rel_case("truncated", ["truncated"], release_with("model_state.epoch", 1)[:-200])
rel_case("gzip-bomb-lies", ["trailer declares"], gzip_declaring(b"\0" * (16 * 1024 * 1024), 512))
rel_case("gzip-declares-too-much", ["limit of the reader"],
         gzip_declaring(release_with("model_state.epoch", 1), 3 * 1024**3))
rel_case("zip-bomb-declared", ["limit of the reader"], zip_with("data", b"\0" * 64, declared=3 * 1024**3))
rel_case("zip-member-lies", ["zip archive"], zip_with("data", b"\0" * (8 * 1024 * 1024), declared=64))
rel_case("fifo", ["FIFO"], setup=_fifo("ck.pkl"))
rel_case("dev-zero", ["character device"], setup=_link("ck.pkl", "/dev/zero"))
rel_case("huge-array-shape", ["limit of the reader"],
         b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n\x8a\x05\x00\x00\x00\x00\x40\x85U\x01b\x87R.")
rel_case("train-resume-nan", ["conv1", "NaN or infinite"],
         release_with(f"{L}.conv1.weights", [np.full_like(w0, np.nan)]), argv=[*TRAIN_ARGS, "-f", "ck.pkl"])
rel_case("train-resume-loop", ["holds itself"], release_with("model_state.train_outputs", loop),
         argv=[*TRAIN_ARGS, "-f", "ck.pkl"])


# -- 7. catalog and verify on folders that are not what they seem ---------------------------------
def cat_case(name: str, expect: list[str], setup, files: dict | None = None) -> None:
    base = {"cfgs/layers-1.cfg": LAYERS, "cfgs/layer-params-1.cfg": PARAMS, **(files or {})}
    add(f"catalog/{name}", ["catalog", "cfgs"], ["cfgs/", *expect], base, setup)


cat_case("fifo", ["layers-2.cfg", "FIFO"], lambda d: os.mkfifo(d / "cfgs/layers-2.cfg"))
cat_case("fifo-params", ["layer-params-2.cfg", "FIFO"], lambda d: os.mkfifo(d / "cfgs/layer-params-2.cfg"))
cat_case("dev-zero-link", ["layers-2.cfg", "character device"], _link("cfgs/layers-2.cfg", "/dev/zero"))
cat_case("dev-zero-params-link", ["layer-params-2.cfg", "character device"],
         _link("cfgs/layer-params-2.cfg", "/dev/zero"))
cat_case("dangling-link", ["layers-2.cfg", "does not exist"], _link("cfgs/layers-2.cfg", "missing.cfg"))
cat_case("link-loop", ["layers-2.cfg"], _link("cfgs/layers-2.cfg", "layers-2.cfg"))
cat_case("folder-named-cfg", ["layers-2.cfg", "is a folder"], _folder("cfgs/layers-2.cfg"))
cat_case("folder-named-params-cfg", ["layer-params-9.cfg", "is a folder"], _folder("cfgs/layer-params-9.cfg"))
cat_case("too-large", ["layers-2.cfg", "limit of the reader"], _big("cfgs/layers-2.cfg", 5 * 1024 * 1024))
add("catalog/root-is-fifo", ["catalog", "cfgs"], ["cfgs", "no such folder"], {}, _fifo("cfgs"))
add("catalog/root-missing", ["catalog", "nowhere"], ["nowhere", "no such folder"], {})
add("verify/root-is-file", ["verify", "layers.cfg"], ["layers.cfg"], {"layers.cfg": LAYERS})
add("verify/root-missing", ["verify", "nowhere"], ["nowhere"], {})


# -- 8. make-batches --cifar10: the pickles inside an archive ---------------------------------------
def cifar_tar(members: dict[str, bytes | int | None]) -> bytes:
    """A tar of `members` under cifar-10-batches-py/: bytes as content, an int as a header that
    declares that size with no content after it, None as a FIFO entry."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            if content is None:
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            elif isinstance(content, int):
                info.size = content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


CIFAR_META = pickled({"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072})
CIFAR_ARGV = ["make-batches", "out", "--cifar10", "archive.tar"]
for name, members, words in [
        ("not-a-tar", b"just text, not an archive\n" * 40, ["not a readable tar archive"]),
        ("empty-tar", {}, ["batches.meta", "missing from the archive"]),
        ("meta-refused-global", {"batches.meta": b"cos\nsystem\n(S'true'\ntR."}, ["refused global", "os.system"]),
        ("meta-declares-huge-truncated", {"batches.meta": 3 * 1024**3}, ["damaged or truncated"]),
        ("meta-shared-bomb", {"batches.meta": pickled({"label_names": shared_lists(44, "x")})},
         ["batches.meta", "limit of the reader"]),
        ("meta-fifo-member", {"batches.meta": None}, ["batches.meta", "not a regular file"]),
        ("meta-gzip-bomb", {"batches.meta": gzip_declaring(b"\0" * (32 * 1024 * 1024), 100)},
         ["batches.meta", "trailer declares"]),
        ("batch-labels-out-of-range", {"batches.meta": CIFAR_META, "data_batch_1": pickled(
            {"data": np.zeros((2, 3072), np.uint8), "labels": [3, 12]})}, ["data_batch_1", "out of range"]),
        ("batch-deep-nesting", {"batches.meta": CIFAR_META, "data_batch_1": deep_pickle(50_000)},
         ["data_batch_1", "nested"])]:
    add(f"make-batches/{name}", CIFAR_ARGV, ["archive.tar", *words],
        {"archive.tar": members if isinstance(members, bytes) else cifar_tar(members)})


# -- 9. a batches.meta problem is blamed on batches.meta, not on the layers file ---------------------
def _data_of(num_vis: int) -> dict[str, bytes]:
    meta = {**meta_dict(), "num_vis": num_vis, "data_mean": np.full((num_vis, 1), 127.5, np.float32)}
    out = {"data/batches.meta": pickled(meta)}
    for n in (1, 2):
        b = batch_dict(seed=n)
        out[f"data/data_batch_{n}"] = pickled({**b, "data": np.zeros((num_vis, 12), np.uint8)})
    return out


for num_vis in (200, 190, 3 * 8 * 8 + 1):
    add(f"data/meta-num_vis-{num_vis}-not-square", TRAIN_ARGS, ["data/batches.meta", f"{num_vis} values", "square"],
        {"layers.cfg": LAYERS, "params.cfg": PARAMS, **_data_of(num_vis)})
