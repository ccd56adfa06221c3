"""Check a user's copy of the 2012 release against the manifest and the release's tree id.

Every manifest file is classed ok / modified / missing / unreadable, every other
file in the copy is "extra", and the copy's git tree id is computed the way
``git write-tree`` would see the folder. When the copy has exactly the release's
246 files, contents and modes, its tree id is RELEASE_TREE, the id that Software
Heritage archives as SWH_DIR: the copy is then provably the release, not merely
"close to it".

The copy is read once; files are hashed in chunks so that a large extra file (a
data batch left in the folder) does not need to fit in memory.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ReplayError
from .manifest import (
    MODE_EXECUTABLE,
    MODE_FILE,
    MODE_SYMLINK,
    RELEASE_COMMIT,
    RELEASE_TREE,
    SWH_DIR,
    SWH_REV,
    ManifestEntry,
    load_manifest,
    tree_id_from_entries,
)

# Report order of the statuses, in counts, JSON and text alike.
STATUSES = ("ok", "modified", "missing", "unreadable", "extra")
MISSING_SHOWN = 20
FORMAT_NAME = "alexnet-replay verify"
FORMAT_VERSION = 1

_CHUNK = 1 << 20


def git_blob_sha1(data: bytes) -> str:
    """git's id of a file with these contents (what the manifest's blob column holds)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class FoundFile:
    """A file or symlink found in the copy, with what the manifest records of a file."""

    path: str
    mode: str
    size: int
    sha256: str
    blob_sha1: str


@dataclass
class _Scan:
    """What walking the copy found; `unreadable` maps a path ('/'-ended for folders) to why."""

    files: dict[str, FoundFile] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)


def _require_folder(folder: Path | str) -> Path:
    """The folder as a Path; a path that is not a folder is the user's to fix."""
    path = Path(folder)
    if not path.exists():
        raise ReplayError(f"{path}: no such folder (give the folder of your copy of the release)")
    if not path.is_dir():
        raise ReplayError(f"{path}: not a folder (give the folder of your copy of the release)")
    return path


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _hash_regular(path: str, rel: str) -> FoundFile:
    """Hash a regular file in chunks; its mode follows git's rule (owner-x bit only)."""
    with open(path, "rb") as handle:
        info = os.fstat(handle.fileno())
        sha256 = hashlib.sha256()
        # The blob header needs the size up front; fstat gives it before reading.
        blob = hashlib.sha1(b"blob %d\0" % info.st_size)
        size = 0
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            sha256.update(chunk)
            blob.update(chunk)
            size += len(chunk)
    if size != info.st_size:
        raise OSError(0, "the file changed while it was read")
    mode = MODE_EXECUTABLE if info.st_mode & stat.S_IXUSR else MODE_FILE
    return FoundFile(rel, mode, size, sha256.hexdigest(), blob.hexdigest())


def _hash_symlink(path: str, rel: str) -> FoundFile:
    """git stores a symlink as a blob of its target path, never following it."""
    target = os.readlink(os.fsencode(path))
    return FoundFile(rel, MODE_SYMLINK, len(target), hashlib.sha256(target).hexdigest(),
                     git_blob_sha1(target))


def _scan(folder: Path) -> _Scan:
    """Walk the copy once. The top folder must be readable; anything below may not be."""
    scan = _Scan()
    try:
        _scan_into(os.fspath(folder), "", scan)
    except OSError as exc:
        raise ReplayError(f"{folder}: cannot read the folder: {_reason(exc)}") from exc
    return scan


def _scan_into(directory: str, prefix: str, scan: _Scan) -> None:
    """Record the files under `directory`; `prefix` is its '/'-ended path in the copy."""
    with os.scandir(directory) as iterator:
        entries = list(iterator)
    for entry in entries:
        if not prefix and entry.name == ".git":
            continue  # the user's own repository, not part of the tree
        rel = prefix + entry.name
        try:
            if entry.is_symlink():
                scan.files[rel] = _hash_symlink(entry.path, rel)
            elif entry.is_dir(follow_symlinks=False):
                _scan_into(entry.path, rel + "/", scan)
            elif entry.is_file(follow_symlinks=False):
                scan.files[rel] = _hash_regular(entry.path, rel)
            # Sockets, fifos and devices are skipped: git does not track them either.
        except OSError as exc:
            is_folder = entry.is_dir(follow_symlinks=False)
            scan.unreadable[rel + "/" if is_folder else rel] = _reason(exc)


def git_tree_id(folder: Path | str) -> str:
    """The id ``git add -A && git write-tree`` would give the folder's files.

    Empty folders do not count (git does not track them) and a top-level ``.git``
    is ignored. Raises ReplayError when the folder, or anything in it, cannot be read.
    """
    scan = _scan(_require_folder(folder))
    if scan.unreadable:
        path, reason = next(iter(sorted(scan.unreadable.items())))
        raise ReplayError(f"{folder}: cannot compute the git tree id: {path}: {reason}")
    return tree_id_from_entries(scan.files.values())


@dataclass(frozen=True)
class FileResult:
    """The verdict on one path: status is one of STATUSES; reason says why, when not plain."""

    path: str
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class VerifyReport:
    """The result of `verify_copy`. `ok` holds only when the copy is exactly the release."""

    folder: str
    results: tuple[FileResult, ...]
    manifest_files: int
    tree_id: str | None
    expected_tree_id: str = RELEASE_TREE

    @property
    def counts(self) -> dict[str, int]:
        """Results per status, every status present, in STATUSES order."""
        counts = dict.fromkeys(STATUSES, 0)
        for result in self.results:
            counts[result.status] += 1
        return counts

    @property
    def tree_matches(self) -> bool:
        """Whether the folder, as git would store it, is the expected tree."""
        return self.tree_id == self.expected_tree_id

    @property
    def ok(self) -> bool:
        """All manifest files match and nothing else is there.

        Extra files make the copy differ from the release (its tree id changes),
        so they fail the check too; a clean copy of the release passes.
        """
        counts = self.counts
        return counts["ok"] == self.manifest_files == len(self.results) and self.tree_matches

    def with_status(self, status: str) -> list[FileResult]:
        """The results of one status, in path order (what the CLI lists)."""
        return [result for result in self.results if result.status == status]

    def to_dict(self) -> dict:
        """JSON-ready, keys in a fixed order; documented in docs/json-formats.md."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "folder": self.folder,
            "ok": self.ok,
            "release": {"commit": RELEASE_COMMIT, "tree": RELEASE_TREE,
                        "swh_dir": SWH_DIR, "swh_rev": SWH_REV},
            "manifest_files": self.manifest_files,
            "counts": self.counts,
            "tree_id": self.tree_id,
            "expected_tree_id": self.expected_tree_id,
            "tree_matches": self.tree_matches,
            "files": [{"path": r.path, "status": r.status, "reason": r.reason}
                      for r in self.results],
        }

    def format_text(self, verbose: bool = False) -> str:
        """A summary for people: counts, tree id, SWH ids, then every file that is not ok.

        Missing files are cut after MISSING_SHOWN unless `verbose`: a partial copy
        (only the cfg files, say) would otherwise bury the lines that matter.
        """
        lines = [f"copy: {self.folder}"]
        lines += self._count_lines()
        lines.append(self._tree_line())
        lines.append(f"Software Heritage: {SWH_DIR} (tree), {SWH_REV} (commit)")
        for status in ("modified", "unreadable", "extra"):
            lines += self._file_lines(status, limit=None)
        lines += self._file_lines("missing", limit=None if verbose else MISSING_SHOWN)
        verdict = "the copy is the release" if self.ok else "the copy differs from the release"
        lines.append(f"result: {verdict}")
        return "\n".join(lines) + "\n"

    def _count_lines(self) -> list[str]:
        counts = self.counts
        lines = [f"  {'ok':<11}{counts['ok']:>4} of {self.manifest_files}"]
        lines += [f"  {status:<11}{counts[status]:>4}" for status in STATUSES[1:]]
        return lines

    def _tree_line(self) -> str:
        shown = self.tree_id or "not computed (some files cannot be read)"
        verdict = "matches" if self.tree_matches else "differs"
        return f"git tree id: {shown} (release: {self.expected_tree_id}) {verdict}"

    def _file_lines(self, status: str, limit: int | None) -> list[str]:
        results = self.with_status(status)
        if not results:
            return []
        shown = results if limit is None else results[:limit]
        lines = [f"{status}:"]
        lines += [f"  {r.path}" + (f" ({r.reason})" if r.reason else "") for r in shown]
        if len(results) > len(shown):
            lines.append(f"  ... and {len(results) - len(shown)} more (use --json for all)")
        return lines


def verify_copy(folder: Path | str, *, manifest: Sequence[ManifestEntry] | None = None) -> VerifyReport:
    """Compare the copy in `folder` with the release, file by file and as a git tree.

    `manifest` narrows the check to some of the release's files (the cfg files,
    say); the expected tree id is then that of those files alone.
    """
    path = _require_folder(folder)
    entries = tuple(load_manifest() if manifest is None else manifest)
    scan = _scan(path)
    results = [_judge(entry, scan) for entry in entries]
    results += _leftovers(entries, scan)
    results.sort(key=lambda result: result.path)
    tree_id = None if scan.unreadable else tree_id_from_entries(scan.files.values())
    expected = RELEASE_TREE if manifest is None else tree_id_from_entries(entries)
    return VerifyReport(str(path), tuple(results), len(entries), tree_id, expected)


def _judge(entry: ManifestEntry, scan: _Scan) -> FileResult:
    """The verdict on one manifest file."""
    found = scan.files.get(entry.path)
    if found is not None:
        differences = _differences(entry, found)
        if differences:
            return FileResult(entry.path, "modified", ", ".join(differences))
        return FileResult(entry.path, "ok")
    why = _unreadable_reason(entry.path, scan)
    if why is not None:
        return FileResult(entry.path, "unreadable", why)
    return FileResult(entry.path, "missing")


def _differences(entry: ManifestEntry, found: FoundFile) -> list[str]:
    """Which of size, sha256, mode differ, in that order."""
    differences = []
    if found.size != entry.size:
        differences.append("size")
    if found.sha256 != entry.sha256:
        differences.append("sha256")
    if found.mode != entry.mode:
        differences.append("mode")
    return differences


def _unreadable_reason(path: str, scan: _Scan) -> str | None:
    """Why a manifest file could not be read: itself, or a folder above it."""
    if path in scan.unreadable:
        return scan.unreadable[path]
    parts = path.split("/")
    for depth in range(len(parts) - 1, 0, -1):
        folder = "/".join(parts[:depth]) + "/"
        if folder in scan.unreadable:
            return f"in folder {folder}, which cannot be read: {scan.unreadable[folder]}"
    return None


def _leftovers(entries: Sequence[ManifestEntry], scan: _Scan) -> list[FileResult]:
    """Files not in the manifest (extra) and unreadable things no manifest file accounts for."""
    known = {entry.path for entry in entries}
    results = [FileResult(path, "extra") for path in scan.files if path not in known]
    for path, reason in scan.unreadable.items():
        covered = path in known or (path.endswith("/") and any(k.startswith(path) for k in known))
        if not covered:
            results.append(FileResult(path, "unreadable", reason))
    return results
