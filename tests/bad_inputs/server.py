"""Runs corpus cases for tests/test_bad_inputs.py, each in a forked child with limits.

Reads one JSON request per line on stdin ({"argv": [...], "cwd": "..."}) and answers
one JSON line per request: the exit code, stdout and stderr, CPU seconds, wall
seconds, peak resident memory (MiB) and whether it had to be killed. The server
imports the package once and never runs the engine itself, so each fork starts in
a fresh state (no OpenMP pool to lose in the fork) within milliseconds.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback

import alexnet_replay.cli as cli
import alexnet_replay.harness.driver  # noqa: F401  (imported once, before the forks)
import numpy  # noqa: F401

WALL_LIMIT = 30.0  # seconds before a case counts as hung and is killed
MEMORY_CAP = 3 << 30  # bytes of address space a case may add: an allocation beyond fails, the case with it


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def run(argv: list[str], cwd: str) -> dict:
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    sys.stdout.flush()
    sys.stderr.flush()
    limit = _vm_size() + MEMORY_CAP
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the case
        rc = 99
        try:
            os.chdir(cwd)
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            rc = cli.main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            rc = 98
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(rc if isinstance(rc, int) else 97)
    killed = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > WALL_LIMIT:
            os.kill(pid, signal.SIGKILL)
            killed = True
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.005)
    wall = time.monotonic() - start
    out.seek(0)
    err.seek(0)
    return {"rc": os.waitstatus_to_exitcode(status), "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"), "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "wall_seconds": wall, "max_rss_mib": usage.ru_maxrss / 1024, "killed": killed}


def main() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        print(json.dumps(run(req["argv"], req["cwd"])), flush=True)


if __name__ == "__main__":
    main()
