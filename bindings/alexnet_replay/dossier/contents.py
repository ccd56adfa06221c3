"""The dossier's "Contents" section: what the 2012 release holds, in a curator's words.

Written for this project from the specification's account of the release
(``../shared/spec/driver.md`` §0, ``engine.md`` §0, §9, §11 and §12, ``catalog.md``):
a summary of what is there, what is not, and why the code cannot run as shipped.
Nothing here is taken from the release itself. Plain data, so that dossier.json and
the page say the same.
"""

from __future__ import annotations

from typing import Any

from ..original.manifest import RELEASE_COMMIT, RELEASE_FILE_COUNT, RELEASE_TOTAL_BYTES, RELEASE_URL

SUMMARY = (
    "The release is the source code of the network that won the ImageNet competition (ILSVRC) in 2012, "
    "as the Computer History Museum published it: a snapshot of the author's working folder "
    f"({RELEASE_FILE_COUNT} files, {RELEASE_TOTAL_BYTES:,} bytes, commit {RELEASE_COMMIT[:12]} of {RELEASE_URL}). "
    "It is a researcher's working copy, not a product: it holds the program and the settings of many "
    "experiments, but neither the data, nor trained weights, nor several libraries the program needs."
)

#: What the release holds, part by part.
PARTS: list[dict[str, str]] = [
    {"part": "Engine",
     "what": "The C++ and CUDA sources of the compiled module that did the arithmetic on the graphics cards "
             "(src/ and include/): every layer type, the weight update with momentum and weight decay, the "
             "learning-rate schedules, the cost functions, and the code that split one network over two to "
             "four GPUs. It was built as an extension of Python 2."},
    {"part": "Driver",
     "what": "The Python 2 programs around it: the trainer (convnet.py), the reader of the configuration "
             "files (layer.py), the data readers for CIFAR-10, ImageNet (raw pixels and JPEG) and Flickr, "
             "a visualisation tool (shownet.py), a few small utilities and five shell scripts."},
    {"part": "Configurations",
     "what": "179 configuration files in pairs: a layer-definition file (the shape of a network: its layers, "
             "sizes and which GPU holds each) and a layer-parameter file (its learning rates and weight decay). "
             "The parameter files end with the author's notes: when a run started, when learning rates were "
             "lowered by hand and at which epoch, and the error rates reached. They are the laboratory "
             "notebook of the summer and autumn of 2012, through early 2013."},
]

#: What the release lacks, each with why it matters.
MISSING: list[dict[str, str]] = [
    {"item": "The kernel library (cudaconv2 and nvmatrix)",
     "why": "The convolution, pooling and normalisation kernels and the GPU matrix class live in a separate "
            "library that the release does not contain; the build script copies them from outside. A public "
            "2012 version exists, but the release was linked against a later private one."},
    {"item": "Private kernels never published",
     "why": "The release calls functions found in no public library: a random pooling over local regions, "
            "half-precision packing for transfers between GPUs, a horizontal mirror of images, and a "
            "minimum-divisor argument of the cross-map normalisation. alexnet-replay runs reconstructions of "
            "them, and says so wherever they are used."},
    {"item": "Headers and helpers",
     "why": "matrix.h, queue.h, thread.h, sync.h and the GPU-locking helper, and the Makefile that build.sh "
            "expects (Makefile-all), are not included."},
    {"item": "Python modules of the author's own folder",
     "why": "gpumodel.py (the training loop's base class, options and checkpoints), options.py (the "
            "command-line parser), data.py, util.py and ordereddict.py are imported but absent; the trainer "
            "also uses names (a per-GPU list of CPU cores, a test for Kepler machines) that no public version "
            "of those modules provides."},
    {"item": "Data, trained weights and the label tree",
     "why": "No images, no checkpoints and no class hierarchy ship with it; two networks need that hierarchy "
            "to be built at all."},
]

#: Why the release cannot run as shipped, today.
CANNOT_RUN: list[str] = [
    "It cannot be built: the libraries and files listed as missing are needed to compile it.",
    "Its build targets the 2010 Fermi generation of NVIDIA cards (compute capability 2.0), which CUDA "
    "toolkits dropped in 2017, and another build expects private Kepler (K20X) libraries.",
    "It uses parts of CUDA that have been deprecated or changed since: the legacy cuBLAS interface, "
    "thread-synchronisation calls, helper headers of the old SDK samples, and reductions that assume "
    "threads of a warp run in lock-step, which GPUs since 2017 no longer guarantee.",
    "The Python side is Python 2 only (print statements, cPickle, xrange, the old ConfigParser), as is "
    "the C interface of the compiled module; Python 2 reached its end of life in 2020.",
    "Several kernels assume sizes that are multiples of 16 or 128 and the tuning of 2012 GPUs.",
]


def contents(counts: dict[str, int]) -> dict[str, Any]:
    """The section as data; `counts` says how many definition and parameter files this copy holds."""
    return {"summary": SUMMARY, "parts": PARTS, "missing": MISSING, "cannot_run": CANNOT_RUN,
            "in_this_copy": counts,
            "how_this_project_runs_it": (
                "alexnet-replay reads the configuration files exactly as the 2012 reader did, runs the networks "
                "in a new C++ engine on CPU or GPU and in a PyTorch port, and compares the two layer by layer. "
                "It never runs or copies the release's code."),
            "sources": ["driver.md §0", "engine.md §0, §9, §11, §12", "catalog.md"]}
