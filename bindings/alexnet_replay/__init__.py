"""alexnet-replay: run the 2012 AlexNet release's networks today, and prove it.

Subpackages
-----------
original   the release as an archive: manifest, verification, cfg reader, catalog
harness    replay of the original driver (training schedules, data providers)
modernize  the PyTorch port and the parity suite

The compiled engine is ``alexnet_replay._core``; :func:`build_info` reports how it
was built.
"""

from __future__ import annotations

import os

# How the engine's OpenMP threads wait for work: a bounded spin, then sleep. libgomp's
# own default spins for about a millisecond at every barrier, which on cores shared
# with a busy neighbour makes a step several times slower (bench/bench_shared_cores.py;
# README, "Threads"). libgomp reads this once, when it is loaded, so it is set here,
# before the engine's module is; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
# (Where another library loaded libgomp first, e.g. torch imported before this
# package, libgomp keeps its default; the engine's thread count still adapts.)
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"

from importlib.metadata import PackageNotFoundError, version as _version

from .errors import ConfigError, ReplayError

try:
    __version__ = _version("alexnet-replay")
except PackageNotFoundError:  # pragma: no cover - running from an unbuilt tree
    __version__ = "0+unknown"


def build_info() -> dict:
    """Facts of the compiled engine: compiler, flags, BLAS, CUDA, devices seen."""
    from . import _core

    info = dict(_core.build_info())
    count, reason = _core.cuda_device_count()
    info["cuda_devices"] = count
    info["cuda_devices_reason"] = reason
    return info


def load(*args, **kwargs):
    """Build a network in the C++ engine: see :func:`alexnet_replay.engine.load`."""
    from .engine import load as _load

    return _load(*args, **kwargs)


__all__ = ["ConfigError", "ReplayError", "build_info", "load", "__version__"]
