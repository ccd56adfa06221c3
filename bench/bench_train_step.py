"""Training-step throughput and peak memory: the C++ engine against the PyTorch port.

    python bench/bench_train_step.py [--release DIR] [--threads 2] [--steps 5]

For each network -- the CIFAR "18%" example (3x32x32, minibatch 128) and the
paper network layers-145 (3x224x224, minibatch 32; the bundled paper-2012 when
the release's files are absent) -- one training step (forward, backward,
update, with dropout drawing masks) is timed in the engine, in the PyTorch port
(alexnet_replay.modernize: the release's exact semantics in PyTorch) and in the
same architecture written with PyTorch's fastest standard ops only (an upper
bound for PyTorch: not the release's exact math), on the same number of
threads, in the same run.
Each measurement runs in its own process, so that its peak resident memory
(ru_maxrss) is its own. One warm-up step, then the best and the median of
`--steps` steps. The engine also reports where its time goes (per layer type).

Prints one JSON object and writes it to bench/results/train_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
    nets = [{"name": "cifar-18pct", "layers": "cifar-18pct", "params": None, "image": [3, 32, 32], "minibatch": 128}]
    if release is not None:
        nets.append({"name": "layers-145", "layers": str(release / "layers" / "layers-145.cfg"),
                     "params": str(release / "layers" / "layer-params-145.cfg"), "image": [3, 224, 224],
                     "minibatch": 32})
    else:
        nets.append({"name": "paper-2012 (layers-145 absent)", "layers": "paper-2012", "params": None,
                     "image": [3, 224, 224], "minibatch": 32})
    return nets


# -- one measurement, in a child process ------------------------------------------
def measure(impl: str, net: dict, steps: int, seed: int) -> dict:
    import numpy as np

    mb = net["minibatch"]
    c, h, w = net["image"]
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((c * h * w, mb)).astype(np.float32)
    labels = rng.integers(0, 10 if "cifar" in net["name"] else 1000, (1, mb)).astype(np.float32)
    times = []
    extra: dict = {}
    if impl == "engine":
        import alexnet_replay

        engine = alexnet_replay.load(net["layers"], net["params"], image_size=tuple(net["image"]),
                                     minibatch=mb, seed=seed)
        engine.train_step([images, labels])
        engine._net.profile = True
        for _ in range(steps):
            t = time.perf_counter()
            engine.train_step([images, labels])
            times.append(time.perf_counter() - t)
        by_type: dict[str, float] = {}
        for name, (fwd, bwd, _update) in engine._net.layer_seconds.items():
            kind = engine.config.layers[name].type
            by_type[kind] = by_type.get(kind, 0.0) + fwd + bwd
        total = sum(by_type.values())
        extra["time_share_by_layer_type"] = {k: round(v / total, 4) for k, v in
                                             sorted(by_type.items(), key=lambda kv: -kv[1])}
    elif impl == "torch-standard":
        import torch

        from alexnet_replay.original.shownet import load

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        config, _ = load(net["layers"], net["params"], image_size=tuple(net["image"]))
        module, params = standard_torch_net(config, seed)
        optimizer = torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=0.0005)
        x = torch.from_numpy(images.T.reshape(mb, c, h, w).copy())
        y = torch.from_numpy(labels[0].astype(np.int64))

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(module(x), y, reduction="sum").backward()
            optimizer.step()

        step()
        for _ in range(steps):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        extra["torch"] = torch.__version__
    else:
        import torch

        from alexnet_replay.modernize.port import ReleaseSGD, build_module
        from alexnet_replay.original.shownet import load

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        config, _ = load(net["layers"], net["params"], image_size=tuple(net["image"]))
        module = build_module(config, seed=seed)
        optimizer = ReleaseSGD.for_module(module)
        x = torch.from_numpy(images.T.reshape(mb, c, h, w).copy())
        y = torch.from_numpy(labels[0].astype(np.int64))

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            out = module([x, y], train=True)
            module.objective(out).backward()
            optimizer.step(mb)  # the gradients are of the summed objective (engine.md §1.1)

        step()
        for _ in range(steps):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        extra["torch"] = torch.__version__
    best, median = min(times), statistics.median(times)
    return {"impl": impl, "step_seconds_best": best, "step_seconds_median": median,
            "images_per_second": mb / median, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "steps": steps, **extra}


def standard_torch_net(config, seed: int):
    """The same architecture with PyTorch's fastest standard ops only -- an upper bound
    for PyTorch, not the release's exact semantics (the port is that): cmrnorm as
    F.local_response_norm, spatial rnorm through avg_pool2d of squares, pooling with
    ceil_mode, inverted dropout, torch.optim.SGD."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    params, ops = [], []
    for layer in config.layers.values():
        a, t = layer.attrs, layer.type
        if t in ("conv", "fc"):
            ws = []
            for i, (rows, cols) in enumerate(layer.weights):
                if t == "conv":
                    k, cg = a["filterSize"][i], a["filterChannels"][i]
                    shape = (cols, cg, k, k)
                else:
                    shape = (cols, rows)
                ws.append(torch.nn.Parameter(0.01 * torch.randn(*shape, generator=gen)))
            b = torch.nn.Parameter(torch.zeros(layer.biases[0] * layer.biases[1]))
            params += ws + [b]
            ops.append((layer, ws, b))
        else:
            ops.append((layer, None, None))

    class Net(torch.nn.Module):
        def forward(self, x):
            out = {}
            for layer, ws, b in ops:
                a, t = layer.attrs, layer.type
                xs = [out[i] if i in out else x for i in layer.inputs]
                if t == "data":
                    continue
                if t == "conv":
                    y = 0
                    for i, w in enumerate(ws):
                        s, k, p, st = a["imgSize"][i], a["filterSize"][i], -a["padding"][i], a["stride"][i]
                        extra = (a["modulesX"] - 1) * st + k - (s + 2 * p)
                        xi = F.pad(xs[i], (p, p + extra, p, p + extra))
                        y = y + F.conv2d(xi, w, stride=st, groups=a["groups"][i])
                    y = y + b.view(1, -1, 1, 1)
                elif t == "fc":
                    y = sum(F.linear(xi.flatten(1), w) for xi, w in zip(xs, ws)) + b
                elif t == "pool":
                    fn = F.max_pool2d if a["pool"] != "avg" else F.avg_pool2d
                    y = fn(xs[0], a["sizeX"], a["stride"], ceil_mode=True)
                elif t == "cmrnorm":
                    y = F.local_response_norm(xs[0], a["size"], alpha=1e-4, beta=0.75, k=2.0)
                elif t in ("rnorm", "cnorm"):
                    sq = F.avg_pool2d(xs[0] * xs[0], a["size"], 1, a["size"] // 2, count_include_pad=True)
                    y = xs[0] * (1 + 1e-4 * sq[..., : xs[0].shape[-2], : xs[0].shape[-1]]).pow(-0.75)
                elif t == "neuron":
                    y = F.relu(xs[0])
                elif t == "hs":
                    y = F.dropout(xs[0], 0.5, training=True)
                elif t == "softmax":
                    return xs[0]  # logits: cross_entropy applies the softmax
                else:
                    raise ValueError(f"standard-ops reference has no '{t}' layer")
                out[layer.name] = y
            raise ValueError("no softmax")

    return Net(), params


def child(args: argparse.Namespace) -> int:
    print(json.dumps(measure(args.impl, json.loads(args.net), args.steps, args.seed)))
    return 0


def run_child(impl: str, net: dict, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, __file__, "--child", "--impl", impl, "--net", json.dumps(net), "--steps", str(args.steps),
           "--seed", str(args.seed)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        return {"impl": impl, "error": result.stderr.strip().splitlines()[-1] if result.stderr else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="folder of the release's cfg files")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=["engine", "torch", "torch-standard"], help=argparse.SUPPRESS)
    parser.add_argument("--net", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    import alexnet_replay

    results = []
    for net in networks(release_dir(args.release)):
        engine = run_child("engine", net, args)
        port = run_child("torch", net, args)
        standard = run_child("torch-standard", net, args)

        def ratio(other: dict, engine: dict = engine) -> float | None:  # this network's engine run
            if "images_per_second" in engine and "images_per_second" in other:
                return engine["images_per_second"] / other["images_per_second"]
            return None

        results.append({"network": net["name"], "image_size": net["image"], "minibatch": net["minibatch"],
                        "engine": engine, "pytorch_port": port, "pytorch_standard_ops": standard,
                        "engine_over_pytorch_port": ratio(port),
                        "engine_over_pytorch_standard_ops": ratio(standard), "target": 0.8,
                        "meets_target": all(r is not None and r >= 0.8 for r in (ratio(port), ratio(standard)))})
    report = {"benchmark": "train_step", "threads": args.threads, "results": results,
              "build": {k: v for k, v in alexnet_replay.build_info().items() if k in ("blas", "threads", "cxx_flags")},
              "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_step.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
