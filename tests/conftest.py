"""Shared fixtures. The release's cfg files are read in place, never copied:
from $ALEXNET_RELEASE_DIR if set, else from ../shared/release beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def release_dir() -> Path | None:
    env = os.environ.get("ALEXNET_RELEASE_DIR")
    path = Path(env) if env else SHARED / "release"
    return path if path.is_dir() else None


def spec_dir() -> Path | None:
    path = SHARED / "spec"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def release() -> Path:
    """Folder holding the release's cfg files; skips the test when absent."""
    path = release_dir()
    if path is None:
        pytest.skip("the release's cfg files are not here: set ALEXNET_RELEASE_DIR "
                    "or put them in ../shared/release")
    return path


@pytest.fixture(scope="session")
def catalog_json() -> dict:
    """../shared/spec/catalog.json, the expected verdicts and counts; skips when absent."""
    import json

    path = spec_dir()
    if path is None or not (path / "catalog.json").is_file():
        pytest.skip("../shared/spec/catalog.json is not here")
    return json.loads((path / "catalog.json").read_text(encoding="utf-8"))
