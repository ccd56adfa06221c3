"""The CPU net's thread count follows the cores other processes leave free
(engine/include/alexnet/cpu/threads.h; issue 13, item 8; measured in
bench/bench_shared_cores.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import alexnet_replay

# A child pinned to two cores, beside `busy` spinning neighbours pinned to the same
# two: it trains for about 1.5 s and prints the engine's thread facts.
_CHILD = r"""
import json, os, sys, time
import numpy as np
os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")})
import alexnet_replay
net = alexnet_replay.load("cifar-18pct", None, image_size=(3, 32, 32), minibatch=32, seed=0)
x = np.random.default_rng(0).standard_normal((3072, 32)).astype(np.float32)
y = np.zeros((1, 32), np.float32)
end = time.monotonic() + 1.5
while time.monotonic() < end:
    net.train_step([x, y])
print(json.dumps(net.info()))
"""


def _run_pinned(busy: int, **env) -> dict:
    cores = sorted(os.sched_getaffinity(0))[:2]
    if len(cores) < 2:
        pytest.skip("needs two cores to share")
    pin = ",".join(map(str, cores))
    spin = f"import os; os.sched_setaffinity(0, {{{pin}}})\nwhile True: pass"
    neighbours = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(busy)]
    try:
        time.sleep(0.3)
        child_env = {k: v for k, v in os.environ.items() if k not in ("ALEXNET_ADAPTIVE_THREADS",)}
        child_env.update(OMP_NUM_THREADS="2", **env)
        out = subprocess.run([sys.executable, "-c", _CHILD, pin], env=child_env, capture_output=True, text=True,
                             timeout=120, check=True)
    finally:
        for p in neighbours:
            p.kill()
            p.wait()
    return json.loads(out.stdout)


def test_two_busy_neighbours_on_two_cores_leave_one_thread():
    info = _run_pinned(busy=2)
    assert info["threads_adaptive"] == "yes"
    assert info["threads_max"] == "2"
    assert info["threads"] == "1", info
    assert float(info["neighbour_cores"]) >= 0.5, info


def test_adaptation_can_be_turned_off():
    info = _run_pinned(busy=2, ALEXNET_ADAPTIVE_THREADS="0")
    assert info["threads_adaptive"] == "no"
    assert info["threads"] == "2", info


def test_the_thread_count_does_not_change_the_numbers():
    """Training steps give bit-identical weights on 1 and on 2 threads, so the
    controller may change the count between any two steps."""
    script = r"""
import sys
import numpy as np
import alexnet_replay
net = alexnet_replay.load("cifar-18pct", None, image_size=(3, 32, 32), minibatch=13, seed=3)
rng = np.random.default_rng(1)
for _ in range(3):
    x = rng.standard_normal((3072, 13)).astype(np.float32)
    y = rng.integers(0, 10, (1, 13)).astype(np.float32)
    net.train_step([x, y])
names = [n for n in net.layer_names if net.config.layers[n].type in ("conv", "fc")]
np.save(sys.argv[1], np.concatenate([np.ravel(net.weights(n)) for n in names]))
"""
    outs = []
    for threads in ("1", "2"):
        path = f"/tmp/_alexnet_threads_{os.getpid()}_{threads}.npy"
        env = dict(os.environ, OMP_NUM_THREADS=threads, ALEXNET_ADAPTIVE_THREADS="0")
        subprocess.run([sys.executable, "-c", script, path], env=env, check=True, timeout=120)
        outs.append(np.load(path))
        os.remove(path)
    assert outs[0].size > 1000
    assert np.array_equal(outs[0], outs[1])


def test_info_reports_the_controller():
    net = alexnet_replay.load("cifar-18pct", None, image_size=(3, 32, 32), minibatch=4, seed=0)
    info = net.info()
    assert {"threads", "threads_max", "threads_adaptive", "neighbour_cores"} <= set(info)
    assert 1 <= int(info["threads"]) <= int(info["threads_max"])
