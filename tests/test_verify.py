"""The release as an archive: the manifest vouches for itself, and a copy is judged right.

The expected verdicts are worked out here from the manifest and a plain listing of
the folder, not from the code under test; the tree ids are checked against git.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from alexnet_replay.errors import ReplayError
from alexnet_replay.original.manifest import (
    RELEASE_FILE_COUNT,
    RELEASE_TOTAL_BYTES,
    RELEASE_TREE,
    SWH_DIR,
    SWH_REV,
    load_manifest,
    tree_id_from_entries,
)
from alexnet_replay.original import verify
from alexnet_replay.original.verify import git_blob_sha1, git_tree_id, verify_copy


def listing(folder: Path) -> set[str]:
    """Every file under `folder`, '/'-separated and relative, without the top .git."""
    found = set()
    for root, dirs, files in os.walk(folder):
        if Path(root) == folder and ".git" in dirs:
            dirs.remove(".git")
        found.update(Path(root, name).relative_to(folder).as_posix() for name in files)
    return found


def writable_copy(source: Path, target: Path) -> Path:
    """A copy of `source` that the test may change (the shared release is read-only)."""
    shutil.copytree(source, target)
    for root, _, files in os.walk(target):
        for path in [root, *(os.path.join(root, name) for name in files)]:
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)
    return target


def statuses(report: verify.VerifyReport) -> dict[str, str]:
    return {result.path: result.status for result in report.results}


# -- the manifest --------------------------------------------------------------------


def test_manifest_matches_release_tree() -> None:
    entries = load_manifest()
    assert len(entries) == RELEASE_FILE_COUNT == 246
    assert sum(entry.size for entry in entries) == RELEASE_TOTAL_BYTES == 1035524
    assert len({entry.path for entry in entries}) == len(entries)
    # The id from (path, mode, blob sha1) alone: any wrong row would change it.
    assert tree_id_from_entries(entries) == RELEASE_TREE
    assert SWH_DIR.endswith(RELEASE_TREE)


def test_manifest_is_cached_and_frozen() -> None:
    entries = load_manifest()
    assert load_manifest() is entries
    with pytest.raises(AttributeError):
        entries[0].size = 0  # type: ignore[misc]


def test_git_blob_sha1_known_values() -> None:
    # `git hash-object` of an empty file and of "hello\n".
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_empty_folder_is_the_empty_tree(tmp_path: Path) -> None:
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    assert git_tree_id(tmp_path) == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


# -- the shared, partial release -----------------------------------------------------


def test_release_folder_cfg_files_ok_rest_missing(release: Path) -> None:
    manifest_paths = {entry.path for entry in load_manifest()}
    present = listing(release)
    assert present, "the release fixture folder is empty"
    # The shared folder is the release root: its files sit at manifest paths.
    assert present <= manifest_paths

    report = verify_copy(release)
    got = statuses(report)
    assert set(got) == manifest_paths
    assert {path for path, status in got.items() if status == "ok"} == present
    assert {path for path, status in got.items() if status == "missing"} == manifest_paths - present
    assert report.counts == {"ok": len(present), "modified": 0, "missing": 246 - len(present),
                             "unreadable": 0, "extra": 0}
    assert report.ok is False
    assert report.tree_matches is False
    # The folder's own id is that of the manifest rows for the files it has.
    subset = [entry for entry in load_manifest() if entry.path in present]
    assert report.tree_id == tree_id_from_entries(subset)


def test_release_folder_against_its_own_subset_is_ok(release: Path) -> None:
    present = listing(release)
    subset = [entry for entry in load_manifest() if entry.path in present]
    report = verify_copy(release, manifest=subset)
    assert report.ok is True
    assert report.tree_matches is True
    assert report.counts["ok"] == len(subset) == report.manifest_files
    assert "result: the copy is the release" in report.format_text()


def test_altered_deleted_added(release: Path, tmp_path: Path) -> None:
    copy = writable_copy(release, tmp_path / "copy")
    present = sorted(listing(copy))
    altered, deleted = present[0], present[1]
    added = "layers/my-notes.txt"

    data = bytearray((copy / altered).read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, different contents
    (copy / altered).write_bytes(bytes(data))
    (copy / deleted).unlink()
    (copy / added).write_text("not part of the release\n", encoding="utf-8")

    report = verify_copy(copy)
    got = {r.path: (r.status, r.reason) for r in report.results}
    assert got[altered] == ("modified", "sha256")
    assert got[deleted] == ("missing", None)
    assert got[added] == ("extra", None)
    unchanged = set(present) - {altered, deleted}
    assert {path for path, (status, _) in got.items() if status == "ok"} == unchanged
    assert report.counts["extra"] == 1 and report.counts["modified"] == 1
    assert report.ok is False

    text = report.format_text()
    assert f"  {altered} (sha256)" in text
    assert f"extra:\n  {added}\n" in text


def test_size_and_mode_differences(release: Path, tmp_path: Path) -> None:
    copy = writable_copy(release, tmp_path / "copy")
    present = sorted(listing(copy))
    shortened, executable = present[0], present[1]
    (copy / shortened).write_bytes((copy / shortened).read_bytes()[:-1])
    os.chmod(copy / executable, os.stat(copy / executable).st_mode | stat.S_IXUSR)
    # Group and others' x bits do not count for git, nor here.
    os.chmod(copy / present[2], os.stat(copy / present[2]).st_mode | stat.S_IXGRP | stat.S_IXOTH)

    got = {r.path: (r.status, r.reason) for r in verify_copy(copy).results}
    assert got[shortened] == ("modified", "size, sha256")
    assert got[executable] == ("modified", "mode")
    assert got[present[2]] == ("ok", None)


def test_only_manifest_files_ok_subset_with_extra_is_not_ok(release: Path, tmp_path: Path) -> None:
    copy = writable_copy(release, tmp_path / "copy")
    subset = [entry for entry in load_manifest() if entry.path in listing(copy)]
    (copy / "extra-folder").mkdir()
    (copy / "extra-folder" / "x.bin").write_bytes(b"\x00\x01")
    (copy / "empty-folder").mkdir()  # not a file: changes nothing
    report = verify_copy(copy, manifest=subset)
    assert report.counts["ok"] == len(subset)
    assert [r.path for r in report.with_status("extra")] == ["extra-folder/x.bin"]
    assert report.ok is False
    assert report.tree_matches is False


def test_unreadable_file_is_reported_not_raised(
    release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = writable_copy(release, tmp_path / "copy")
    victim = sorted(listing(copy))[0]
    real_hash = verify._hash_regular

    def refuse(path: str, rel: str) -> verify.FoundFile:
        # Root reads anything whatever the mode, so permission is denied by hand here.
        if rel == victim:
            raise PermissionError(13, "Permission denied", path)
        return real_hash(path, rel)

    monkeypatch.setattr(verify, "_hash_regular", refuse)
    report = verify_copy(copy)
    got = {r.path: (r.status, r.reason) for r in report.results}
    assert got[victim] == ("unreadable", "Permission denied")
    assert report.tree_id is None and report.ok is False
    assert "git tree id: not computed" in report.format_text()
    with pytest.raises(ReplayError, match="Permission denied"):
        git_tree_id(copy)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can read files whatever their mode")
def test_unreadable_folder_by_mode(release: Path, tmp_path: Path) -> None:
    copy = writable_copy(release, tmp_path / "copy")
    os.chmod(copy / "layers", 0)
    try:
        report = verify_copy(copy)
    finally:
        os.chmod(copy / "layers", 0o755)
    under = [r for r in report.results if r.path.startswith("layers/")]
    assert under and all(r.status == "unreadable" for r in under)


# -- output --------------------------------------------------------------------------


def test_to_dict_is_json_ready_and_ordered(release: Path) -> None:
    report = verify_copy(release)
    data = json.loads(json.dumps(report.to_dict()))
    assert list(data) == ["format", "version", "folder", "ok", "release", "manifest_files",
                          "counts", "tree_id", "expected_tree_id", "tree_matches", "files"]
    assert data["format"] == "alexnet-replay verify" and data["version"] == 1
    assert data["release"] == {"commit": "2f8b81f76470bf873c865754ad8f4a5e0dbbeb7b",
                               "tree": RELEASE_TREE, "swh_dir": SWH_DIR, "swh_rev": SWH_REV}
    assert list(data["counts"]) == list(verify.STATUSES)
    assert sum(data["counts"].values()) == len(data["files"]) == 246
    paths = [entry["path"] for entry in data["files"]]
    assert paths == sorted(paths)
    assert all(list(entry) == ["path", "status", "reason"] for entry in data["files"])


def test_format_text_cuts_missing_unless_verbose(release: Path) -> None:
    report = verify_copy(release)
    missing = [r.path for r in report.with_status("missing")]
    assert len(missing) > 20
    text = report.format_text()
    assert f"git tree id: {report.tree_id} (release: {RELEASE_TREE}) differs" in text
    assert SWH_DIR in text and SWH_REV in text
    assert f"  ... and {len(missing) - 20} more (use --json for all)" in text
    assert f"  {missing[19]}\n" in text and f"  {missing[20]}\n" not in text
    verbose = report.format_text(verbose=True)
    assert all(f"  {path}\n" in verbose for path in missing)
    assert "more (use --json for all)" not in verbose


# -- bad input -----------------------------------------------------------------------


def test_nonexistent_or_file_path_raises_replay_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no such folder"):
        verify_copy(tmp_path / "nowhere")
    with pytest.raises(ReplayError, match="no such folder"):
        git_tree_id(tmp_path / "nowhere")
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(ReplayError, match="not a folder"):
        verify_copy(tmp_path / "a-file")


# -- against git itself --------------------------------------------------------------


def git_write_tree(folder: Path, home: Path) -> str:
    """`git add -A && git write-tree` in `folder`, isolated from any user or system config."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C"}
    config = ["-c", "user.name=test", "-c", "user.email=test@example.invalid",
              "-c", "core.fileMode=true", "-c", "core.symlinks=true", "-c", "init.defaultBranch=main",
              "-c", "safe.directory=*"]

    def run(*args: str) -> str:
        done = subprocess.run([git, *config, *args], cwd=folder, env=env, check=True,
                              capture_output=True, text=True)
        return done.stdout.strip()

    run("init", "-q")
    run("add", "-A")
    return run("write-tree")


def build_awkward_folder(root: Path) -> None:
    """Names that test git's sort (foo-bar < foo.txt < foo/ < foo0), modes, odd contents."""
    (root / "foo" / "deeper" / "deepest").mkdir(parents=True)
    (root / "foo" / "deeper" / "deepest" / "leaf.cfg").write_text("[data]\ntype=data\n")
    (root / "foo" / "inner.txt").write_text("inner\n")
    (root / "foo-bar").write_text("dash\n")
    (root / "foo.txt").write_text("dot\n")
    (root / "foo0").write_text("zero\n")
    (root / "Upper.md").write_text("capitals sort first\n")
    (root / "name with space.txt").write_text("space\n")
    (root / "empty").write_bytes(b"")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 7 + b"\0\r\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o755)
    (root / "group-exec.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "group-exec.sh", 0o654)  # x for group only: git says 100644
    (root / "empty-folder" / "also-empty").mkdir(parents=True)
    if hasattr(os, "symlink"):
        os.symlink("foo/inner.txt", root / "link-to-inner")
        os.symlink("does/not/exist", root / "foo" / "dangling")


def test_git_tree_id_equals_git_write_tree(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    build_awkward_folder(work)
    ours_before_git = git_tree_id(work)
    theirs = git_write_tree(work, tmp_path / "home")
    assert (work / ".git").is_dir()
    assert git_tree_id(work) == theirs  # the new .git folder is ignored
    assert ours_before_git == theirs


def test_release_copy_tree_id_equals_git_write_tree(release: Path, tmp_path: Path) -> None:
    copy = writable_copy(release, tmp_path / "copy")
    assert git_tree_id(copy) == git_write_tree(copy, tmp_path / "home")
