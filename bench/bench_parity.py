"""Run time of the parity check on the paper network (the port issue's record).

    python bench/bench_parity.py [--release DIR] [--minibatch 8] [--steps 3]

Runs ``run_parity`` on layers-145 + layer-params-145 (the bundled paper-2012 when
the release is absent) at 3x224x224 and prints one JSON object: the seconds it
took, whether every layer passed, and the worst use of a tolerance; it also
writes bench/results/parity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="folder of the release's cfg files")
    parser.add_argument("--minibatch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    from alexnet_replay.modernize.parity import run_parity

    release = Path(args.release or os.environ.get("ALEXNET_RELEASE_DIR") or REPO.parent / "shared" / "release")
    if (release / "layers" / "layers-145.cfg").is_file():
        layers, params, name = release / "layers" / "layers-145.cfg", release / "layers" / "layer-params-145.cfg", \
            "layers-145"
    else:
        layers, params, name = "paper-2012", None, "paper-2012 (layers-145 absent)"
    started = time.perf_counter()
    report = run_parity(str(layers), str(params) if params else None, minibatch=args.minibatch, steps=args.steps)
    seconds = time.perf_counter() - started
    worst = max(report.metrics, key=lambda m: m.tolerance_used)
    result = {"benchmark": "parity", "network": name, "minibatch": args.minibatch, "steps": args.steps,
              "seconds": seconds, "passed": report.passed, "comparisons": len(report.metrics),
              "worst": {"layer": worst.layer, "quantity": worst.quantity, "tolerance_used": worst.tolerance_used},
              "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "parity.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
