"""The bad-input corpus (issue 13): every case, in a subprocess with limits, ends with
one clear message naming the file and the problem, a non-zero exit, no traceback,
nothing in its folder created, changed or removed, in under 5 CPU seconds and 1 GB.

The cases are in tests/bad_inputs/cases_*.py (the format: tests/bad_inputs/common.py);
tests/bad_inputs/server.py runs them, each in a forked child.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "bad_inputs"
sys.path.insert(0, str(HERE))

from common import Case  # noqa: E402

CPU_LIMIT = 5.0  # seconds
MEMORY_LIMIT = 1024.0  # MiB of peak resident memory
MESSAGE_LIMIT = 4000  # characters: a message, not a dump


def _load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(HERE.glob("cases_*.py")):
        spec = importlib.util.spec_from_file_location(f"bad_inputs_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cases += module.CASES
    names = [c.name for c in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"case names must be unique: {dupes}"
    return cases


CASES = _load_cases()


def test_the_corpus_is_large():
    assert len(CASES) >= 300, len(CASES)


@pytest.fixture(scope="module")
def server():
    env = dict(os.environ, PYTHONPATH=str(HERE))
    proc = subprocess.Popen([sys.executable, str(HERE / "server.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=60)
    proc.stdout.close()


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`, not following links, reading only regular files
    that can be read (never a FIFO or a device)."""
    out = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            st = path.lstat()
            key = str(path.relative_to(folder))
            if stat.S_ISREG(st.st_mode) and os.access(path, os.R_OK):
                out[key] = ("file", st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISLNK(st.st_mode):
                out[key] = ("link", os.readlink(path))
            else:
                out[key] = ("other", st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _make(case: Case, folder: Path) -> None:
    for rel, content in case.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    if case.setup is not None:
        case.setup(folder)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, server, tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    _make(case, folder)
    before = _snapshot(folder)
    argv = [a.replace("{dir}", str(folder)) for a in case.argv]
    server.stdin.write(json.dumps({"argv": argv, "cwd": str(folder)}) + "\n")
    server.stdin.flush()
    result = json.loads(server.stdout.readline())
    err = result["stderr"]
    shown = f"alexnet-replay {' '.join(argv)}\nexit {result['rc']}\nstderr:\n{err[:3000]}"
    assert not result["killed"], f"hung (killed after {result['wall_seconds']:.0f} s)\n{shown}"
    assert "Traceback" not in err, shown
    assert result["rc"] in case.exit_codes, shown
    assert err.count("error:") == 1, shown
    assert len(err) <= MESSAGE_LIMIT, f"a {len(err)}-character message\n{shown}"
    assert "\x1b" not in err and "\x1b" not in result["stdout"], shown
    for want in case.expect:
        assert want in err, f"the message does not say {want!r}\n{shown}"
    assert result["cpu_seconds"] < CPU_LIMIT, f"{result['cpu_seconds']:.1f} CPU seconds\n{shown}"
    assert result["max_rss_mib"] < MEMORY_LIMIT, f"{result['max_rss_mib']:.0f} MiB\n{shown}"
    assert _snapshot(folder) == before, f"files changed\n{shown}"
