"""Regenerate the pictures under docs/figures/ (README, "Looking at a run"): the paper's
evaluation and figures (driver.md §F) on real photographs, end to end through the commands.

    pip install ".[show,bench]" scikit-learn   # matplotlib; the packages' sample photographs
    python docs/figures/make_figures.py [--work DIR] [--keep]

1. Ten photographs that scikit-learn and scikit-image ship (no download) are the classes;
   each class gets 48 random square crops of its photograph (a side of 15-45% of the
   shorter one, anywhere, half of them mirrored), saved as JPEG files, one folder per class.
   A toy set: it shows the machinery on real pictures, not ImageNet accuracy.
2. ``make-batches --images`` turns the folder into the release's JPEG batches (96x96 images,
   batches of 80: 5 for training, the last one for testing).
3. A small two-tower network in the release's format (written here: two conv towers of 16
   7x7 filters, as the paper split its 96 over two GPUs, a hidden fc layer and a softmax) is
   trained twice with different seeds through ``train`` (80x80 crops, PCA colour noise), for
   6 epochs, then resumed for 2 more with every learning rate divided by 10 (how the 2012
   runs changed rates: a resume with another parameter file, marked in the cost plot).
4. ``predict --multiview-test 1`` for both runs, ``average`` of the two (weights searched on
   the top-1 error: every top-5 error is 0 here; on the test crops themselves, so optimistic),
   and every ``show`` view of the first run; the PNGs are copied to docs/figures/.

It takes about a minute on two cores, and prints the errors the README quotes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from alexnet_replay.cli import main as cli

HERE = Path(__file__).resolve().parent
PER_CLASS = 48
LAYERS = """
[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
""" + "".join(f"""
[conv1{t}]
type=conv
inputs=data
channels=3
filters=16
filterSize=7
stride=2
padding=0
initW=0.01
partialSum=0
sharedBiases=1
neuron=relu
gpu={g}
[pool1{t}]
type=pool
pool=max
inputs=conv1{t}
channels=16
sizeX=3
stride=2
start=0
outputsX=0
gpu={g}
""" for t, g in (("a", 0), ("b", 1))) + """
[fc64]
type=fc
inputs=pool1a,pool1b
outputs=64
initW=0.01,0.01
neuron=relu
gpu=0
[fc10]
type=fc
inputs=fc64
outputs=10
initW=0.01
gpu=0
[probs]
type=softmax
inputs=fc10
gpu=0
[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""


def params(eps: float) -> str:
    def block(name: str, inputs: int) -> str:
        many = lambda v: ",".join([str(v)] * inputs)  # noqa: E731 - one value per input
        return f"[{name}]\nepsW={many(eps)}\nepsB={2 * eps}\nmomW={many(0.9)}\nmomB=0.9\nwc={many(0.0005)}\n\n"

    return block("conv1a", 1) + block("conv1b", 1) + block("fc64", 2) + block("fc10", 1) \
        + "[logprob]\ncoeff=1\ntopk=5\n"


def photographs() -> dict[str, np.ndarray]:
    """name -> HxWx3 uint8, from the packages' own files."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {"temple": china, "flower": flower, "astronaut": data.astronaut(), "cat": data.chelsea(),
            "coffee": data.coffee(), "rocket": data.rocket(), "galaxies": data.hubble_deep_field(),
            "tissue": data.immunohistochemistry(), "retina": data.retina(), "colour wheel": data.colorwheel()}


def write_photo_folder(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name, img in photographs().items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        h, w = img.shape[:2]
        for k in range(PER_CLASS):
            side = int(min(h, w) * rng.uniform(0.15, 0.45))
            y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = Image.fromarray(np.ascontiguousarray(img[y:y + side, x:x + side, :3]))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.resize((128, 128), Image.Resampling.BICUBIC).save(folder / name / f"{k:03d}.jpg", quality=92)


def run(argv: list[str]) -> None:
    print("$ alexnet-replay " + " ".join(argv), flush=True)
    code = cli(argv)
    if code != 0:
        raise SystemExit(f"make_figures: alexnet-replay {argv[0]} failed ({code})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--epochs", type=int, default=6, help="epochs at the first rate (default 6)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="alexnet-figures-"))
    started = time.perf_counter()
    try:
        write_photo_folder(work / "photos")
        run(["make-batches", str(work / "data"), "--images", str(work / "photos"), "--image-size", "96",
             "--batch-size", "80", "--test-batches", "1", "--force"])
        (work / "net.cfg").write_text(LAYERS)
        (work / "params.cfg").write_text(params(0.0003))
        (work / "params-slow.cfg").write_text(params(0.00003))
        runs = []
        for seed in (1, 2):
            save = work / f"runs-{seed}"
            run(["train", "--data-path", str(work / "data"), "--save-path", str(save), "--train-range", "1-5",
                 "--test-range", "6", "--layer-def", str(work / "net.cfg"), "--layer-params",
                 str(work / "params.cfg"), "--data-provider", "inet-lr-cropped-jpeg", "--crop-border", "8",
                 "--color-noise", "0.1", "--test-freq", "5", "--epochs", str(args.epochs), "--mini", "40",
                 "--seed", str(seed), "--quiet"])
            (folder,) = save.iterdir()
            run(["train", "-f", str(folder), "--layer-params", str(work / "params-slow.cfg"),
                 "--epochs", str(args.epochs + 2), "--quiet"])
            runs.append(folder)
            run(["predict", str(folder), "--out", str(work / f"preds-{seed}"), "--multiview-test", "1"])
        run(["average", str(work / "preds-1"), str(work / "preds-2"), "--out", str(work / "ensemble"),
             "--search-on", "top1"])  # every top-5 error is 0 on this toy set
        run(["show", str(runs[0]), "--out", str(work / "show"), "--cost", "--filters", "conv1", "--preds",
             "--similar", "fc64", "--train-range", "1-5", "--count", "6", "--neighbours", "7",
             "--features", "fc64"])
        run(["show", str(runs[0]), "--out", str(work / "show-preds"), "--preds", "--count", "8", "--seed", "3"])
        shutil.copy(work / "show-preds" / "preds.png", work / "show" / "preds.png")
        for name in ("cost", "filters", "preds", "similar"):
            Image.open(work / "show" / f"{name}.png").convert("RGB").save(HERE / f"{name}.png", optimize=True)
        errors = {name: json.loads((work / name / "predictions.json").read_text())["errors"]
                  for name in ("preds-1", "preds-2", "ensemble")}
        for name, e in errors.items():
            print(f"{name}: top-1 error {e['top1']:.3f}, top-5 error {e['top5']:.3f} ({e['images']} images)")
        sizes = {p.name: p.stat().st_size for p in sorted(HERE.glob("*.png"))}
        print(f"pictures: {sizes} ({sum(sizes.values()) / 1024:.0f} KiB); {time.perf_counter() - started:.0f} s")
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
