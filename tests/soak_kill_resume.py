"""The kill-and-resume soak (issue 13): runs killed with SIGKILL at random moments, some inside
checkpoint writes, then continued, must end bit-identical to an uninterrupted run and leave no
stray files. Not part of the suite (it takes minutes); run it by hand:

    python tests/soak_kill_resume.py [--kills 20] [--seed 0] [--out /tmp/soak]

Three scenarios share the kills: ``train`` (cifar-18pct on the digits), ``schedule run`` (a
two-stage run script, the second stage resuming the first's run with new rates), and a
``train`` on ``cifar-cropped`` with colour noise (random crops, flips and noise draws: the
draws must replay too). Each is first run without a kill; then, over and over, a process is
started (a fresh run, or a resume once a checkpoint exists), killed after a random delay
(after the start-up, within a share of the uninterrupted run's duration, so that some land
inside a checkpoint write), each start continuing the last, until the scenario's share of
kills is spent and the last start is left to finish. The final
checkpoint's arrays are compared bit for bit with the uninterrupted run's, and the folders
are checked for leftovers (temporary files, abandoned run folders). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from alexnet_replay import networks



STARTUP = 1.0  # seconds: about what a start takes before it trains


def command(scenario: str, work: Path, data: Path, resume: Path | None) -> list[str]:
    """The command of one attempt; `work` is ROOT/<scenario>/<reference or killed>."""
    root = work.parent.parent
    base = [sys.executable, "-m", "alexnet_replay"]
    common = ["--data-path", str(data), "--train-range", "1-5", "--test-range", "6", "--layer-def", "cifar-18pct",
              "--layer-params", str(root / "params.cfg"), "--test-freq", "2", "--mini", "64", "--seed", "3",
              "--max-filesize", "0"]
    if scenario == "schedule":
        return base + ["schedule", "run", str(root / "two-stages.sh"), "--out", str(work / "out"), "--quiet"]
    extra = ["--epochs", "10"]
    if scenario == "cropped":
        extra += ["--data-provider", "cifar-cropped", "--crop-border", "4", "--color-noise", "0.1"]
    if resume is not None:
        return base + ["train", "-f", str(resume), "--quiet"]
    return base + ["train", *common, *extra, "--save-path", str(work / "runs"), "--quiet"]


def run_folder(scenario: str, work: Path) -> Path | None:
    """The run folder holding a checkpoint (what a resume continues), or None."""
    root = work / ("out" if scenario == "schedule" else "runs")
    folders = [f for f in root.glob("ConvNet__*") if any(f.glob("*.npz"))] if root.is_dir() else []
    return folders[0] if len(folders) == 1 else None


def final_arrays(scenario: str, work: Path) -> dict[str, np.ndarray]:
    folder = run_folder(scenario, work)
    assert folder is not None, f"{scenario}: no run folder with a checkpoint in {work}"
    (last,) = sorted(folder.glob("*.npz"))
    with np.load(last) as z:
        return {k: z[k] for k in z.files if not k.startswith("__")}


def leftovers(work: Path) -> list[str]:
    """Temporary files anywhere, and run folders without a checkpoint."""
    out = [str(p) for p in work.rglob("*.tmp")]
    out += [str(f) for f in work.rglob("ConvNet__*") if f.is_dir() and not any(f.glob("*.npz"))]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/alexnet-replay-soak")
    args = ap.parse_args()
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    data = root / "digits"
    subprocess.run([sys.executable, "-m", "alexnet_replay", "make-batches", str(data), "--digits"], check=True,
                   stdout=subprocess.DEVNULL)
    params = networks.bundled("cifar-18pct").params.read_text()
    (root / "params.cfg").write_text(params)
    (root / "params-b.cfg").write_text(params.replace("epsW=0.001", "epsW=0.0005"))
    common = (f"--data-path={data} --train-range=1-5 --test-range=6 --layer-def=cifar-18pct --test-freq=2 "
              "--mini=64 --seed=3")
    (root / "two-stages.sh").write_text(
        f"python convnet.py {common} --layer-params={root / 'params.cfg'} --epochs=3\n"
        f"python convnet.py -f /nobackup/run --layer-params={root / 'params-b.cfg'} --epochs=5\n")
    rng = np.random.default_rng(args.seed)
    scenarios = ["train", "schedule", "cropped"]
    share = {s: args.kills // 3 + (1 if i < args.kills % 3 else 0) for i, s in enumerate(scenarios)}
    result = {"kills": args.kills, "scenarios": {}}
    for scenario in scenarios:
        ref = root / scenario / "reference"
        ref.mkdir(parents=True)
        started = time.monotonic()
        subprocess.run(command(scenario, ref, data, None), check=True, stdout=subprocess.DEVNULL)
        duration = time.monotonic() - started
        want = final_arrays(scenario, ref)
        work = root / scenario / "killed"
        work.mkdir()
        delays, attempts, in_writes = [], 0, 0
        while True:
            attempts += 1
            if attempts > 10 * share[scenario] + 20:
                raise SystemExit(f"{scenario}: no end after {attempts} attempts")
            resume = run_folder(scenario, work) if scenario != "schedule" else None
            proc = subprocess.Popen(command(scenario, work, data, resume), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            if len(delays) < share[scenario]:
                # the start-up, then up to a share of the whole run: each kill lands at a random point,
                # and the run still moves on between kills
                delay = float(rng.uniform(STARTUP, STARTUP + duration / (share[scenario] + 1)))
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    delays.append(round(delay, 2))
                    in_writes += any(work.rglob("*.tmp"))  # killed inside a checkpoint write
                    continue
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"{scenario}: exit {proc.returncode}: {err}")
            break  # it ran to its end
        got = final_arrays(scenario, work)
        same = sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)
        result["scenarios"][scenario] = {"kills": len(delays), "kill_delays_s": delays, "attempts": attempts,
                                         "kills_inside_a_write": in_writes,
                                         "uninterrupted_s": round(duration, 2), "bit_identical": same,
                                         "leftovers": leftovers(work)}
        print(f"{scenario}: {len(delays)} kills, bit-identical {same}, leftovers {leftovers(work)}",
              file=sys.stderr)
    result["all_bit_identical"] = all(s["bit_identical"] for s in result["scenarios"].values())
    result["no_leftovers"] = all(not s["leftovers"] for s in result["scenarios"].values())
    print(json.dumps(result, indent=1))
    return 0 if result["all_bit_identical"] and result["no_leftovers"] else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
