"""Data pipeline throughput of the ImageNet JPEG provider against the engine's training rate.

    python bench/bench_pipeline.py [--images 256] [--threads 2] [--repeats 3] [--workers 0,1,2]

A JPEG batch (driver.md §D.4) of `--images` 256x256 images is made from real
photographs shipped with scikit-image (``skimage.data``: astronaut, coffee, chelsea,
rocket, ...; each used several times through different seeded crops of the photo,
scaled and centre-cropped to 256 as make-batches does, stored as quality-90 JPEGs).
Then, in this order:

- ``decode_only``: Pillow decoding of the batch in this process (images/s);
- ``pipeline``: the whole training path of ``inet-lr-cropped-jpeg`` (decode, 224x224
  crop and flip per chunk of 32, centre mean window, PCA colour noise c = 0.1, float32
  (D, N) matrix) with 0 (in this process), 1 and 2 worker processes: the best and the
  median of `--repeats` batches after one warm-up batch that also starts the workers;
- ``engine``: one training step of layers-145 (the bundled ``paper-2012``, the same
  architecture) at minibatch 32 on `--threads` threads, measured by
  ``bench_train_step.py``'s child process (images/s);
- ``overlap``: the driver's pattern with 1 worker: the next batch is prefetched while
  the engine trains the current one (minibatches of 32); the seconds the loop waits
  for data, out of the total.

Prints one JSON object and writes it to bench/results/pipeline.json. Needs the
``bench`` extra (scikit-image).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "immunohistochemistry", "hubble_deep_field",
          "camera", "cat", "colorwheel", "brick", "grass", "gravel")
SIZE, BORDER, COLOR_NOISE = 256, 16, 0.1


def photos() -> list:
    """The sample photographs scikit-image ships (those that need no download), as RGB uint8."""
    import numpy as np
    from skimage import data

    out = []
    for name in PHOTOS:
        try:
            img = getattr(data, name)()
        except Exception:  # noqa: BLE001 - some need an optional download; use what is bundled
            continue
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        if img.dtype != np.uint8 or img.shape[2] != 3 or min(img.shape[:2]) < 128:
            continue
        out.append((name, np.ascontiguousarray(img)))
    return out


def make_folder(folder: Path, n: int, seed: int) -> dict:
    import numpy as np
    from PIL import Image

    from alexnet_replay.harness import batches as bt
    from alexnet_replay.harness.make_batches import pixel_pca
    from alexnet_replay.harness.providers import decode_image

    rng = np.random.default_rng(seed)
    pics = photos()
    if not pics:
        raise SystemExit("bench_pipeline: no scikit-image sample photographs found (pip install scikit-image)")
    jpegs, labels, pixels = [], [], []
    for i in range(n):
        name, img = pics[i % len(pics)]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        im = Image.fromarray(img[y:y + side, x:x + side]).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        jpegs.append(buf.getvalue())
        labels.append(i % len(pics))
        pixels.append(decode_image(jpegs[-1], SIZE))
    arr = np.stack(pixels)
    mean = arr.reshape(n, -1).mean(axis=0, dtype=np.float64)
    bt.write_jpeg_batch(bt.batch_path(folder, 1), jpegs, labels, [pics[k][0] for k in labels])
    bt.write_meta(folder, data_mean=mean, label_names=[p[0] for p in pics], num_vis=3 * SIZE * SIZE,
                  color_pca=pixel_pca(arr, mean), dp_type="inet-lr-cropped-jpeg")
    return {"photos": [p[0] for p in pics], "jpeg_bytes_mean": int(np.mean([len(j) for j in jpegs])),
            "jpegs": jpegs}


def time_pipeline(folder: Path, workers: int, repeats: int, n: int) -> dict:
    from alexnet_replay.harness.providers import JPEGCroppedProvider, batch_rng

    with JPEGCroppedProvider(folder, [1], crop_border=BORDER, color_noise=COLOR_NOISE, workers=workers) as p:
        p.get_batch(1, rng=batch_rng(0, 0, 1))  # warm-up: starts the worker processes
        times = []
        for k in range(repeats):
            t = time.perf_counter()
            x = p.get_batch(1, rng=batch_rng(0, k + 1, 1))[0]
            times.append(time.perf_counter() - t)
    assert x.shape == (3 * (SIZE - 2 * BORDER) ** 2, n)
    med = statistics.median(times)
    return {"workers": workers, "seconds_best": min(times), "seconds_median": med, "images_per_second": n / med,
            "repeats": repeats}


def engine_rate(threads: int, steps: int) -> dict:
    net = {"name": "paper-2012 (layers-145's architecture)", "layers": "paper-2012", "params": None,
           "image": [3, 224, 224], "minibatch": 32}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(REPO / "bench" / "bench_train_step.py"), "--child", "--impl", "engine",
           "--net", json.dumps(net), "--steps", str(steps), "--seed", "0"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr else "failed"}
    out = json.loads(result.stdout.strip().splitlines()[-1])
    out.pop("time_share_by_layer_type", None)
    return {"network": net["name"], "minibatch": 32, "threads": threads, **out}


def overlap(folder: Path, batches: int, threads: int) -> dict:
    """The driver's loop (harness/driver.py): get the batch, prefetch the next, train it."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import alexnet_replay
    from alexnet_replay.harness.providers import JPEGCroppedProvider, batch_rng, minibatches

    net = alexnet_replay.load("paper-2012", image_size=(3, 224, 224), minibatch=32, seed=0)
    wait = train = 0.0
    with JPEGCroppedProvider(folder, [1], crop_border=BORDER, color_noise=COLOR_NOISE, workers=1) as p:
        p.get_batch(1, rng=batch_rng(0, 0, 1))  # starts the worker
        p.prefetch(1, batch_rng(0, 1, 1))
        for k in range(1, batches + 1):
            t = time.perf_counter()
            matrices = p.get_batch(1, rng=batch_rng(0, k, 1))
            wait += time.perf_counter() - t
            p.prefetch(1, batch_rng(0, k + 1, 1))
            t = time.perf_counter()
            for part in minibatches(matrices, 32):
                net.train_step(part)
            train += time.perf_counter() - t
    return {"batches": batches, "workers": 1, "wait_seconds": wait, "train_seconds": train,
            "wait_fraction": wait / (wait + train)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="images in the JPEG batch (default 256)")
    parser.add_argument("--threads", type=int, default=2, help="engine threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="0,1,2", help="worker counts to time (default 0,1,2)")
    parser.add_argument("--engine-steps", type=int, default=3)
    parser.add_argument("--overlap-batches", type=int, default=2, help="batches of the overlap run (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import skimage  # noqa: F401
    except ImportError:
        print("bench_pipeline: needs scikit-image (pip install '.[bench]')", file=sys.stderr)
        return 2
    from alexnet_replay.harness.providers import decode_image

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        folder = Path(tmp)
        made = make_folder(folder, args.images, args.seed)
        t = time.perf_counter()
        for j in made["jpegs"]:
            decode_image(j, SIZE)
        decode = {"seconds": time.perf_counter() - t}
        decode["images_per_second"] = args.images / decode["seconds"]
        pipeline = [time_pipeline(folder, int(w), args.repeats, args.images) for w in args.workers.split(",")]
        engine = engine_rate(args.threads, args.engine_steps)
        ov = overlap(folder, args.overlap_batches, args.threads) if args.overlap_batches > 0 else None
    best = max(p["images_per_second"] for p in pipeline)
    report = {
        "benchmark": "pipeline",
        "batch": {"images": args.images, "image_size": SIZE, "crop": SIZE - 2 * BORDER, "color_noise": COLOR_NOISE,
                  "jpeg_quality": 90, "jpeg_bytes_mean": made["jpeg_bytes_mean"], "photos": made["photos"]},
        "decode_only": decode,
        "pipeline": pipeline,
        "engine": engine,
        "overlap": ov,
        "pipeline_over_engine": best / engine["images_per_second"] if "images_per_second" in engine else None,
        "limit_ratio": 1.0,
        "within_limit": "images_per_second" in engine and best >= engine["images_per_second"],
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
