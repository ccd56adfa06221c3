"""Shared fixtures. The release's cfg files are read in place, never copied:
from $ALEXNET_RELEASE_DIR if set, else from ../shared/release beside the repo.

What a run left out on purpose (release files a list excuses, the release tests when
the release is absent) is recorded in NOT_RUNNING and printed once, after the run, by
pytest_terminal_summary: no test has to run last, and no test only prints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# {what did not run: why}, filled by the tests through the `not_running` fixture.
NOT_RUNNING: dict[str, str] = {}


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
        why = "the release's cfg files are not here: set ALEXNET_RELEASE_DIR or put them in ../shared/release"
        NOT_RUNNING["every test that reads the release's cfg files"] = why
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def not_running() -> dict[str, str]:
    """The record of what did not run and why, printed at the end of the run."""
    return NOT_RUNNING


@pytest.fixture(scope="session")
def catalog_json() -> dict:
    """../shared/spec/catalog.json, the expected verdicts and counts; skips when absent."""
    import json

    path = spec_dir()
    if path is None or not (path / "catalog.json").is_file():
        pytest.skip("../shared/spec/catalog.json is not here")
    return json.loads((path / "catalog.json").read_text(encoding="utf-8"))


def pytest_terminal_summary(terminalreporter) -> None:
    if not NOT_RUNNING:
        return
    terminalreporter.write_sep("=", f"what did not run, and why ({len(NOT_RUNNING)})")
    for what, why in sorted(NOT_RUNNING.items()):
        terminalreporter.write_line(f"{what}: {why}")
