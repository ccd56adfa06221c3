"""Benchmark: read every cfg file of the release and build every definition file.

For each ``*.cfg*`` file under the release folder: a parameter file
(``layer-params*``) is read; a definition file (``layers*``) is read, its data
profiles are guessed, and it is built at each of them in strict and in lenient
mode. One pass does all files; the pass runs three times and the best wall time
(``time.perf_counter``) counts. Files the reader rejects still count: rejecting
them is part of the work.

Prints one JSON object and writes it to ``bench/results/read_cfg.json``. Exits 0
whatever the time (a benchmark measures, it does not judge); exits 2 when the
release folder is missing.

    python bench/bench_read_cfg.py [--release DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from alexnet_replay.errors import ConfigError
from alexnet_replay.original.cfgfile import read_cfg
from alexnet_replay.original.layers import LENIENT, STRICT, build_network
from alexnet_replay.original.profiles import guess_profiles

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "read_cfg.json"
LIMIT_SECONDS = 5.0


def default_release() -> Path:
    env = os.environ.get("ALEXNET_RELEASE_DIR")
    return Path(env) if env else REPO.parent / "shared" / "release"


def cfg_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.cfg*") if p.is_file())


def one_pass(files: list[Path], folder: Path) -> int:
    """Read and build everything once; returns the number of build_network calls."""
    builds = 0
    for path in files:
        name = path.relative_to(folder).as_posix()
        try:
            cfg = read_cfg(path, name)
        except ConfigError:
            continue
        if not path.name.startswith("layers"):
            continue  # a parameter file: reading it is the work
        for profile in guess_profiles(cfg, path.name):
            for mode in (STRICT, LENIENT):
                builds += 1
                try:
                    build_network(cfg, profile, mode)
                except ConfigError:
                    pass
    return builds


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, default=None,
                        help="release folder (default: $ALEXNET_RELEASE_DIR, else ../shared/release)")
    parser.add_argument("--repeats", type=int, default=3, help="passes to time; the best counts (default 3)")
    args = parser.parse_args(argv)
    folder = args.release or default_release()
    if not folder.is_dir():
        print(f"bench_read_cfg: no release folder at {folder}; give --release DIR or set "
              "ALEXNET_RELEASE_DIR", file=sys.stderr)
        return 2
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    files = cfg_files(folder)
    times, builds = [], 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        builds = one_pass(files, folder)
        times.append(time.perf_counter() - start)
    best = min(times)
    result = {
        "benchmark": "read_cfg",
        "files": len(files),
        "definition_builds": builds,
        "seconds_best": round(best, 6),
        "seconds_all": [round(t, 6) for t in times],
        "limit_seconds": LIMIT_SECONDS,
        "within_limit": best <= LIMIT_SECONDS,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "machine": machine(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
