"""The manifest of the 2012 AlexNet release: its 246 files with size, hashes and mode.

The manifest (``data/release-manifest.tsv``) is our own metadata about the release,
not a file of it: it lets a user prove that their copy is the one the replay was
built against, without us shipping the release. The upstream commit and tree ids
are kept here once; `tree_id_from_entries` recomputes the tree id from the
manifest alone, so the manifest vouches for itself (a wrong hash, mode or a
missing row would change the id).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

RELEASE_COMMIT = "2f8b81f76470bf873c865754ad8f4a5e0dbbeb7b"
RELEASE_TREE = "97dfaea0c937871af30aa4aabff048b5822e3dbb"
SWH_DIR = "swh:1:dir:97dfaea0c937871af30aa4aabff048b5822e3dbb"
SWH_REV = "swh:1:rev:2f8b81f76470bf873c865754ad8f4a5e0dbbeb7b"
RELEASE_URL = "https://github.com/computerhistory/AlexNet-Source-Code"

# What the manifest says of itself; the tests check the loaded rows against these.
RELEASE_FILE_COUNT = 246
RELEASE_TOTAL_BYTES = 1035524

# git's modes, as written in tree objects (a tree's mode has no leading zero).
MODE_FILE = "100644"
MODE_EXECUTABLE = "100755"
MODE_SYMLINK = "120000"
MODE_TREE = "40000"
FILE_MODES = (MODE_FILE, MODE_EXECUTABLE, MODE_SYMLINK)

_RESOURCE = ("data", "release-manifest.tsv")
_COLUMNS = ["path", "size_bytes", "git_blob_sha1", "sha256", "mode"]


@dataclass(frozen=True)
class ManifestEntry:
    """One file of the release. `path` is '/'-separated, relative to the release root."""

    path: str
    size: int
    blob_sha1: str
    sha256: str
    mode: str

    @property
    def executable(self) -> bool:
        """Whether git records the file as executable (the owner-x bit of a copy)."""
        return self.mode == MODE_EXECUTABLE


class TreeLeaf(Protocol):
    """Anything with a path, a git mode and a blob id: a manifest entry or a file found on disk."""

    @property
    def path(self) -> str: ...

    @property
    def mode(self) -> str: ...

    @property
    def blob_sha1(self) -> str: ...


@functools.cache
def load_manifest() -> tuple[ManifestEntry, ...]:
    """The release's files in manifest order, read once from the package data."""
    # One joinpath per part: Python 3.10's Traversable takes a single name.
    folder, name = _RESOURCE
    text = resources.files(__package__).joinpath(folder).joinpath(name).read_text(encoding="utf-8")
    header, entries = parse_manifest(text)
    # A manifest from another commit would make every verification meaningless.
    if header.get("commit") != RELEASE_COMMIT or header.get("tree") != RELEASE_TREE:
        raise ValueError(f"{'/'.join(_RESOURCE)}: header names commit {header.get('commit')} "
                         f"tree {header.get('tree')}, not the release's {RELEASE_COMMIT}")
    return entries


def parse_manifest(text: str) -> tuple[dict[str, str], tuple[ManifestEntry, ...]]:
    """Split manifest text into its ``# key: value`` header comments and its rows.

    Raises ValueError naming the line: a bad manifest is a packaging bug, not the user's.
    """
    header: dict[str, str] = {}
    rows: list[ManifestEntry] = []
    seen_columns = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            header[key.strip()] = value.strip()
        elif not seen_columns:
            if line.split("\t") != _COLUMNS:
                raise ValueError(f"manifest line {number}: expected the column row {_COLUMNS}")
            seen_columns = True
        elif line:
            rows.append(_parse_row(line, number))
    return header, tuple(rows)


def _parse_row(line: str, number: int) -> ManifestEntry:
    """One tab-separated row, with its hashes and mode checked for shape."""
    fields = line.split("\t")
    if len(fields) != len(_COLUMNS):
        raise ValueError(f"manifest line {number}: {len(fields)} fields, expected {len(_COLUMNS)}")
    path, size, blob_sha1, sha256, mode = fields
    if not (size.isdigit() and _is_hex(blob_sha1, 40) and _is_hex(sha256, 64) and mode in FILE_MODES):
        raise ValueError(f"manifest line {number}: malformed row {line!r}")
    return ManifestEntry(path, int(size), blob_sha1, sha256, mode)


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def tree_object_id(children: Iterable[tuple[bytes, str, str]]) -> str:
    """The git id of one tree object holding `children` as (name, mode, hex id).

    git sorts the entries by name bytes, a tree's name compared as if it ended
    in '/': so ``foo-bar`` < ``foo.txt`` < ``foo/`` < ``foo0``.
    """

    def sort_key(child: tuple[bytes, str, str]) -> bytes:
        name, mode, _ = child
        return name + b"/" if mode == MODE_TREE else name

    body = b"".join(
        mode.encode("ascii") + b" " + name + b"\0" + bytes.fromhex(object_id)
        for name, mode, object_id in sorted(children, key=sort_key)
    )
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


def tree_id_from_entries(entries: Iterable[TreeLeaf]) -> str:
    """The git tree id of the root folder holding exactly these files.

    Only files are named, so folders without files cannot appear, as in git.
    """
    root: dict = {}
    for entry in entries:
        *folders, name = entry.path.split("/")
        node = root
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = (entry.mode, entry.blob_sha1)
    return _nested_tree_id(root)


def _nested_tree_id(node: dict) -> str:
    """Hash a {name: subtree dict | (mode, blob id)} mapping bottom-up."""
    children = []
    for name, value in node.items():
        # surrogateescape round-trips file names that are not valid UTF-8 to their bytes.
        raw = name.encode("utf-8", "surrogateescape")
        if isinstance(value, dict):
            children.append((raw, MODE_TREE, _nested_tree_id(value)))
        else:
            children.append((raw, *value))
    return tree_object_id(children)
