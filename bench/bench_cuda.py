"""Training-step throughput and peak GPU memory: the CUDA engine against the PyTorch port on the same GPU.

    python bench/bench_cuda.py [--release DIR] [--steps 10] [--profile-steps 3]

For each network -- the paper network layers-145 (3x224x224; the bundled paper-2012
when the release's files are absent) and the CIFAR "18%" example (3x32x32), both at
minibatch 128 -- one training step (forward, backward, update, dropout drawing masks)
is timed on the GPU in

- `engine`: the CUDA engine (alexnet_replay.load(..., device="cuda"));
- `pytorch_port`: the PyTorch port (alexnet_replay.modernize: the release's exact
  semantics) on CUDA with TF32 disabled (torch.backends.cuda.matmul.allow_tf32 and
  torch.backends.cudnn.allow_tf32 False), with its ReleaseSGD.

Each in its own process. Steps are timed from the host with the GPU synchronised at
both ends; one warm-up step, then the best and the median of `--steps`. Peak GPU
memory: for the engine, the bytes it allocated (exact: it allocates everything when
built) and the device's used memory (cudaMemGetInfo, which includes the CUDA context
and cuBLAS's workspace); for the port, torch.cuda.max_memory_allocated (and
max_memory_reserved). Then the engine runs `--profile-steps` steps in profile mode
(CUDA events around every operation of every layer) and reports the three slowest
operations ("<layer type>:<operation>", summed over layers) with their share of the
profiled step, and the time per layer type.

Prints one JSON object and writes it to bench/results/cuda.json. Needs a CUDA GPU, a
CUDA build of the package and (for the port) a CUDA build of torch; exits 2 with the
reason when the GPU or the build is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def release_dir(arg: str | None) -> Path | None:
    path = Path(arg or os.environ.get("ALEXNET_RELEASE_DIR") or REPO.parent / "shared" / "release")
    return path if path.is_dir() else None


def networks(release: Path | None) -> list[dict]:
    nets = []
    if release is not None:
        nets.append({"name": "layers-145", "layers": str(release / "layers" / "layers-145.cfg"),
                     "params": str(release / "layers" / "layer-params-145.cfg"), "image": [3, 224, 224],
                     "minibatch": 128, "classes": 1000})
    else:
        nets.append({"name": "paper-2012 (layers-145 absent)", "layers": "paper-2012", "params": None,
                     "image": [3, 224, 224], "minibatch": 128, "classes": 1000})
    nets.append({"name": "cifar-18pct", "layers": "cifar-18pct", "params": None, "image": [3, 32, 32],
                 "minibatch": 128, "classes": 10})
    return nets


def _timed(step, sync, steps: int) -> list[float]:
    step()
    sync()
    times = []
    for _ in range(steps):
        sync()
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    return times


def measure(impl: str, net: dict, steps: int, profile_steps: int, seed: int) -> dict:
    import numpy as np

    mb = net["minibatch"]
    c, h, w = net["image"]
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((c * h * w, mb)).astype(np.float32)
    labels = rng.integers(0, net["classes"], (1, mb)).astype(np.float32)
    extra: dict = {}
    if impl == "engine":
        import alexnet_replay

        engine = alexnet_replay.load(net["layers"], net["params"], image_size=tuple(net["image"]), minibatch=mb,
                                     seed=seed, device="cuda")
        times = _timed(lambda: engine.train_step([images, labels]), engine.synchronize, steps)
        extra["gemm"] = engine.gemm
        extra["peak_gpu_memory_mib"] = engine._net.allocated_bytes / 2**20
        extra["device_used_memory_mib"] = [b / 2**20 for b in engine._net.device_used_bytes()]
        extra["devices"] = engine._net.devices
        # Profile mode: CUDA events around every operation.
        engine._net.kernel_seconds = {}
        engine._net.layer_seconds = {}
        engine._net.profile = True
        for _ in range(profile_steps):
            engine.train_step([images, labels])
        engine.synchronize()
        engine._net.profile = False
        ops = dict(engine._net.kernel_seconds)
        total = sum(ops.values())
        ranked = sorted(ops.items(), key=lambda kv: -kv[1])
        extra["slowest_kernels"] = [{"operation": k, "seconds_per_step": v / profile_steps,
                                     "share_of_step": v / total if total else None} for k, v in ranked[:3]]
        by_type: dict[str, float] = {}
        for name, secs in engine._net.layer_seconds.items():
            kind = engine.config.layers[name].type
            by_type[kind] = by_type.get(kind, 0.0) + sum(secs)
        extra["time_share_by_layer_type"] = {k: round(v / total, 4) for k, v in
                                             sorted(by_type.items(), key=lambda kv: -kv[1])} if total else {}
        extra["profiled_step_seconds"] = total / profile_steps if profile_steps else None
    else:
        import torch

        from alexnet_replay.modernize.port import ReleaseSGD, build_module
        from alexnet_replay.original.shownet import load

        if not torch.cuda.is_available():
            raise RuntimeError(f"torch {torch.__version__} finds no usable GPU")
        torch.backends.cuda.matmul.allow_tf32 = False  # exact float32, as the engine (STYLE.md habit 9)
        torch.backends.cudnn.allow_tf32 = False
        dev = torch.device("cuda")
        config, _ = load(net["layers"], net["params"], image_size=tuple(net["image"]))
        module = build_module(config, seed=seed).to(dev)
        optimizer = ReleaseSGD.for_module(module)
        x = torch.from_numpy(images.T.reshape(mb, c, h, w).copy()).to(dev)
        y = torch.from_numpy(labels[0].astype(np.int64)).to(dev)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            out = module([x, y], train=True)
            module.objective(out).backward()
            optimizer.step(mb)  # the gradients are of the summed objective (engine.md §1.1)

        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = _timed(step, torch.cuda.synchronize, steps)
        extra["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        extra["peak_gpu_memory_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        extra["torch"] = torch.__version__
        extra["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    best, median = min(times), statistics.median(times)
    return {"impl": impl, "step_seconds_best": best, "step_seconds_median": median,
            "images_per_second": mb / median, "steps": steps, **extra}


def child(args: argparse.Namespace) -> int:
    print(json.dumps(measure(args.impl, json.loads(args.net), args.steps, args.profile_steps, args.seed)))
    return 0


def run_child(impl: str, net: dict, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", "--impl", impl, "--net", json.dumps(net), "--steps", str(args.steps),
           "--profile-steps", str(args.profile_steps), "--seed", str(args.seed)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        return {"impl": impl, "error": result.stderr.strip().splitlines()[-1] if result.stderr else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="folder of the release's cfg files")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=["engine", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--net", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    import alexnet_replay
    from alexnet_replay.engine import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is not None:
        print(f"bench_cuda: needs a CUDA GPU and a CUDA build: {reason}", file=sys.stderr)
        return 2
    results = []
    for net in networks(release_dir(args.release)):
        engine = run_child("engine", net, args)
        port = run_child("torch", net, args)
        ratio = (engine["images_per_second"] / port["images_per_second"]
                 if "images_per_second" in engine and "images_per_second" in port else None)
        results.append({"network": net["name"], "image_size": net["image"], "minibatch": net["minibatch"],
                        "engine": engine, "pytorch_port": port, "engine_over_pytorch_port": ratio})
    info = alexnet_replay.build_info()
    # The issue sets no time limit for the GPU: measured and reported, not judged.
    report = {"benchmark": "cuda", "limit_seconds": None, "within_limit": None, "results": results,
              "build": {k: info.get(k) for k in ("cuda_compiler", "cuda_archs", "cuda_gemm", "cuda_devices")},
              "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        report["gpu"] = gpu.stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        report["gpu"] = None
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
