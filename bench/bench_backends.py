"""Training throughput of the two backends, and of data parallel: 1 against K processes.

    python bench/bench_backends.py [--steps 5] [--mini 128] [--processes 2] [--threads 1]

The CIFAR "18%" network (cifar-18pct) on 3x24x24 images (the digits' crops), one
minibatch of --mini random cases, trained in the engine (``--backend engine``) and in the
port (``--backend port``, ReleaseSGD) on the CPU, each in 1 process and in --processes
processes joined by torch.distributed (gloo on 127.0.0.1, each process on --threads
threads), exactly as ``alexnet-replay train`` shares a minibatch (harness/backends.py).
One warm-up step, then the median of --steps steps; images/s = minibatch / median step.
Scaling efficiency = images/s of K processes / (K x images/s of 1 process).

The machine's load (os.getloadavg before and after) is reported: on a shared machine the
figures move with it. Prints one JSON object and writes it to bench/results/backends.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def child(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from alexnet_replay import networks
    from alexnet_replay.engine import EngineNet
    from alexnet_replay.harness.backends import EngineShare
    from alexnet_replay.harness.distributed import join
    from alexnet_replay.original.shownet import load

    torch.set_num_threads(args.threads)
    config, _ = load("cifar-18pct", networks.bundled("cifar-18pct").params, image_size=(3, 24, 24))
    group = join("cpu")
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((3 * 24 * 24, args.mini)).astype(np.float32),
            rng.integers(0, 10, (1, args.mini)).astype(np.float32)]
    if args.impl == "engine":
        net = EngineNet(config, args.mini, 0)
        net = EngineShare(net, group) if group is not None else net
    else:
        from alexnet_replay.modernize.port.trainer import PortNet

        net = PortNet(EngineNet(config, 1, 0), "cpu", minibatch=args.mini, group=group)
    times = []
    for _ in range(args.steps + 1):
        if group is not None:
            group.barrier()
        t0 = time.perf_counter()
        net.train_step(data)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times[1:])
    if group is None or group.writer:
        print(json.dumps({"median_step_seconds": median, "images_per_second": args.mini / median,
                          "steps_seconds": times[1:]}))
    if group is not None:
        group.close()
    return 0


def run(impl: str, processes: int, args: argparse.Namespace) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for r in range(processes):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), RANK=str(r), WORLD_SIZE=str(processes),
                   LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, __file__, "--child", "--impl", impl, "--steps", str(args.steps),
                                       "--mini", str(args.mini), "--threads", str(args.threads)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise SystemExit(f"bench_backends: {impl} x{processes} failed:\n{err[-2000:]}")
    return json.loads(outs[0][0].strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--mini", type=int, default=128)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=["engine", "port"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    load_before = os.getloadavg()
    started = time.perf_counter()
    results: dict = {}
    for impl in ("engine", "port"):
        one = run(impl, 1, args)
        many = run(impl, args.processes, args)
        results[impl] = {"1_process": one, f"{args.processes}_processes": many,
                         "scaling_efficiency": many["images_per_second"] / (args.processes
                                                                             * one["images_per_second"])}
    report = {
        "benchmark": "backends", "network": "cifar-18pct", "image": [3, 24, 24], "minibatch": args.mini,
        "steps": args.steps, "threads_per_process": args.threads, "processes": args.processes,
        "results": results,
        "port_over_engine_1_process": results["port"]["1_process"]["images_per_second"]
        / results["engine"]["1_process"]["images_per_second"],
        "seconds": round(time.perf_counter() - started, 2), "limit_seconds": 600.0,
        "within_limit": time.perf_counter() - started <= 600.0,
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.platform(),
    }
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "backends.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
