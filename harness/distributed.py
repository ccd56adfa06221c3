"""Data parallel training with ``torch.distributed`` (docs/scaling.md).

``torchrun --nproc-per-node K alexnet-replay train ...`` starts K processes with RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT in their environment; :func:`join` makes them one
process group (gloo on the CPU, NCCL with ``--device cuda``). Every process reads the same
batches (the providers draw from (seed, epoch, batch), so they read the same cases) and
keeps its :meth:`Group.share` of each minibatch: consecutive columns, the first ``n % K``
shares one case longer. The shares' gradients are summed with ``all_reduce`` before the
update, so that one step is the single-process step on the whole minibatch (the sums only
in another order). Rank 0 alone logs, tests and writes checkpoints (atomically, as
always); the others hold the same weights, which :func:`weights_digest` checks.

A process that dies makes the next collective of the others fail (gloo: the connection
closes; NCCL: the timeout), and :meth:`Group.all_reduce_` turns that into a ReplayError
naming the rank; ``ALEXNET_REPLAY_DIST_TIMEOUT`` (seconds, default 300) bounds any wait.

torch is imported when a group is made, so a single-process run needs none.
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from typing import Any, Sequence

import numpy as np

from ..engine import WEIGHT_LAYER_TYPES
from ..errors import ReplayError

__all__ = ["Group", "join", "share_bounds", "weights_digest"]

TIMEOUT_ENV = "ALEXNET_REPLAY_DIST_TIMEOUT"


def share_bounds(cases: int, rank: int, world: int) -> tuple[int, int]:
    """Columns [lo, hi) of a minibatch of `cases` cases that process `rank` of `world` trains."""
    if cases < world:
        raise ReplayError(f"data parallel: a minibatch of {cases} case(s) cannot be shared by {world} processes; "
                          f"use --mini of at least {world} and data batches whose last minibatch has {world} or "
                          "more cases, or fewer processes")
    base, extra = divmod(cases, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class Group:
    """This process's place in the job: rank, world size, and the collectives the backends use."""

    def __init__(self, rank: int, world: int, backend: str, dist: Any = None) -> None:
        self.rank, self.world, self.backend = rank, world, backend
        self._dist = dist

    @property
    def writer(self) -> bool:
        """The one process that logs, tests and writes checkpoints."""
        return self.rank == 0

    def share(self, cases: int) -> tuple[int, int]:
        return share_bounds(cases, self.rank, self.world)

    def _failed(self, exc: BaseException, what: str) -> ReplayError:
        return ReplayError(f"data parallel: rank {self.rank} of {self.world}: {what} failed, so another process "
                           f"has stopped or died (see its output); this one stops too ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})")

    def all_reduce_(self, tensors: Sequence[Any]) -> None:
        """Sum each tensor over the processes, in place."""
        if self.world == 1:
            return
        try:
            for t in tensors:
                self._dist.all_reduce(t)
        except (RuntimeError, ValueError) as exc:  # gloo's closed connection, a timeout, NCCL's error
            raise self._failed(exc, "all_reduce") from None

    def all_reduce_costs(self, costs: dict[str, list[float]]) -> dict[str, list[float]]:
        """Cost sums of the shares added up: the whole minibatch's (float64)."""
        import torch

        names = list(costs)
        device = f"cuda:{torch.cuda.current_device()}" if self.backend == "nccl" else "cpu"  # NCCL: CUDA tensors only
        flat = torch.tensor([v for n in names for v in costs[n]], dtype=torch.float64, device=device)
        self.all_reduce_([flat])
        flat = flat.cpu()
        out, k = {}, 0
        for n in names:
            out[n] = [float(v) for v in flat[k:k + len(costs[n])]]
            k += len(costs[n])
        return out

    def barrier(self) -> None:
        if self.world > 1:
            try:
                self._dist.barrier()
            except RuntimeError as exc:
                raise self._failed(exc, "barrier") from None

    def close(self) -> None:
        if self._dist is not None and self._dist.is_initialized():
            self._dist.destroy_process_group()


def join(device: str) -> Group | None:
    """The process group of a torchrun job (WORLD_SIZE > 1 in the environment), or None."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise ReplayError(f"data parallel: WORLD_SIZE={world} but {' and '.join(missing)} not set; start the "
                          "processes with torchrun (docs/scaling.md)")
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "300")))
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if not torch.cuda.is_available() or local >= torch.cuda.device_count():
            raise ReplayError(f"data parallel with --device {device}: local rank {local} has no CUDA device")
        torch.cuda.set_device(local)
    try:
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout)
    except (RuntimeError, ValueError) as exc:
        raise ReplayError(f"data parallel: rank {rank} of {world} could not join the process group at "
                          f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({exc})") from None
    return Group(rank, world, backend, dist)


def weights_digest(net: Any) -> str:
    """A digest of every weight matrix and bias of `net` (either backend): equal digests, equal weights."""
    h = hashlib.sha256()
    for layer in net.config.layers.values():
        if layer.type not in WEIGHT_LAYER_TYPES:
            continue
        for i in range(len(layer.weights)):
            h.update(np.ascontiguousarray(net.array("weights", layer.name, i), dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(net.array("biases", layer.name), dtype=np.float32).tobytes())
    return h.hexdigest()
