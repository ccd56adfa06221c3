"""How long each ``alexnet-replay show`` view (and ``predict``) takes, on the paper's network
and on the demo's.

    python bench/bench_views.py [--release DIR] [--threads 2] [--work DIR]

* The paper's network: the release's ``layers-145.cfg`` with ``layer-params-145.cfg`` at
  3x224x224 (the release folder is ``--release``, ``$ALEXNET_RELEASE_DIR`` or
  ``../shared/release``), trained for two batches of 16 images through ``train`` (so that it
  has a cost history; its weights are still nearly the initial ones) on JPEG batches made with
  ``make-batches --images`` from 4 of scikit-image's photographs (8 crops each: 2 batches, the
  second the test batch); ``batches.meta`` then declares 1000 classes, as ILSVRC's did, so
  that the network's 1000-way softmax fits it (the images use 4).
* The demo's network: ``cifar-18pct`` trained by ``alexnet-replay demo --quick`` (digits).

Every view is timed alone (one ``show`` call each), with the engine on ``--threads`` OpenMP
threads; ``preds`` runs the multiview test (10 views for the ImageNet batches; the demo's
provider has none, 1), ``similar`` searches the training batches. Writes
``bench/results/views.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIMIT = 60.0  # seconds a view may take on 2 cores, the paper's network included


def release_dir(given: str | None) -> Path:
    for cand in (given, os.environ.get("ALEXNET_RELEASE_DIR"), HERE.parent.parent / "shared" / "release"):
        if cand and (Path(cand) / "layers" / "layers-145.cfg").is_file():
            return Path(cand)
    print("bench_views: no release folder with layers/layers-145.cfg (--release DIR)", file=sys.stderr)
    raise SystemExit(2)


def photo_folder(folder: Path) -> None:
    import numpy as np
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(0)
    for name, img in (("astronaut", data.astronaut()), ("cat", data.chelsea()), ("coffee", data.coffee()),
                      ("rocket", data.rocket())):
        (folder / name).mkdir(parents=True)
        h, w = img.shape[:2]
        for k in range(8):
            side = int(min(h, w) * rng.uniform(0.5, 1.0))
            y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            Image.fromarray(np.ascontiguousarray(img[y:y + side, x:x + side])).save(folder / name / f"{k}.jpg")


def cli(argv: list[str]) -> None:
    from alexnet_replay.cli import main

    with open(os.devnull, "w") as null:
        old, sys.stdout = sys.stdout, null
        try:
            code = main(argv)
        finally:
            sys.stdout = old
    if code != 0:
        raise SystemExit(f"bench_views: alexnet-replay {' '.join(argv)} failed ({code})")


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    cli(argv)
    return round(time.perf_counter() - t0, 2)


def views(checkpoint: str, out: Path, filters: str, hidden: str, multiview: int, mini: int) -> dict[str, float]:
    common = ["--mini", str(mini)]
    return {
        "predict": timed(["predict", checkpoint, "--out", str(out / "predict"), "--multiview-test", str(multiview),
                          *common]),
        "cost": timed(["show", checkpoint, "--out", str(out / "cost"), "--cost"]),
        "filters": timed(["show", checkpoint, "--out", str(out / "filters"), "--filters", filters]),
        "preds": timed(["show", checkpoint, "--out", str(out / "preds"), "--preds", "--multiview-test",
                        str(multiview), *common]),
        "similar": timed(["show", checkpoint, "--out", str(out / "similar"), "--similar", hidden, "--count", "4",
                          "--neighbours", "4", *common]),
        "features": timed(["show", checkpoint, "--out", str(out / "features"), "--features", hidden, *common]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="the release folder (default $ALEXNET_RELEASE_DIR, ../shared/release)")
    parser.add_argument("--threads", type=int, default=2, help="OpenMP threads of the engine (default 2)")
    parser.add_argument("--work", help="working folder (default: a temporary one, removed)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    release = release_dir(args.release)
    try:
        import skimage  # noqa: F401
    except ImportError:
        print("bench_views: needs scikit-image (pip install '.[bench]')", file=sys.stderr)
        return 2
    from alexnet_replay.harness.batches import read_meta, write_meta

    work = Path(args.work or tempfile.mkdtemp(prefix="alexnet-views-"))
    result: dict = {"benchmark": "views", "threads": args.threads, "python": platform.python_version(),
                    "machine": platform.machine() + " " + platform.processor(), "cpus": os.cpu_count(),
                    "load_average_before": round(os.getloadavg()[0], 2)}
    try:
        photo_folder(work / "photos")
        cli(["make-batches", str(work / "data"), "--images", str(work / "photos"), "--batch-size", "16",
             "--test-batches", "1", "--force"])
        meta = read_meta(work / "data")
        extra = {k: v for k, v in meta.raw.items() if k not in ("data_mean", "label_names", "num_vis", "color_pca")}
        write_meta(work / "data", data_mean=meta.data_mean, label_names=list(meta.label_names)
                   + [f"unused {i}" for i in range(len(meta.label_names), 1000)], num_vis=meta.num_vis,
                   color_pca=meta.color_pca, **extra)
        t0 = time.perf_counter()
        cli(["train", "--data-path", str(work / "data"), "--save-path", str(work / "paper"), "--train-range", "1",
             "--test-range", "2", "--layer-def", str(release / "layers" / "layers-145.cfg"), "--layer-params",
             str(release / "layers" / "layer-params-145.cfg"), "--data-provider", "inet-lr-cropped-jpeg",
             "--crop-border", "16", "--test-freq", "1", "--epochs", "1", "--mini", "16", "--quiet"])
        result["paper_train_seconds"] = round(time.perf_counter() - t0, 2)
        (paper,) = (work / "paper").iterdir()
        result["paper"] = {"network": "layers-145.cfg, 3x224x224", "test_images": 16, "multiview": 10,
                           "seconds": views(str(paper), work / "paper-views", "conv1", "fc2048ba", 1, 16)}
        cli(["demo", "--out", str(work / "demo"), "--quick", "--no-parity", "--quiet"])
        demo = json.loads((work / "demo" / "summary.json").read_text())["checkpoint"]
        result["demo"] = {"network": "cifar-18pct, 3x32x32", "test_images": 299, "multiview": 1,
                          "seconds": views(demo, work / "demo-views", "conv1", "pool3", 0, 128)}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    result["seconds"] = {k: result[k]["seconds"] for k in ("paper", "demo")}
    result["limit_seconds"] = LIMIT
    result["within_limit"] = all(s <= LIMIT for part in result["seconds"].values() for s in part.values())
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "views.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
