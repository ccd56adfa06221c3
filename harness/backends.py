"""The training backends of ``alexnet-replay train --backend engine|port`` (docs/scaling.md).

The driver always builds the engine net first (:class:`~alexnet_replay.engine.EngineNet`:
the seeded initial weights, ``--init-from``, a checkpoint of either backend,
``--unshare-weights``), then :func:`training_net` hands it back as the backend that
trains:

* ``engine``: the engine net itself; in a data-parallel job (:mod:`.distributed`) wrapped in
  :class:`EngineShare`, which trains this process's share of each minibatch and sums the
  shares' gradients with ``all_reduce`` on the engine's own buffers (numpy views, handed to
  torch without a copy) before the update;
* ``port``: :class:`~alexnet_replay.modernize.port.trainer.PortNet`, the PyTorch port and its
  ReleaseSGD on any torch device, with the engine net's state copied in. torch is an
  optional extra, so the port is imported only when asked for.

Both answer the methods the driver calls (``train_step``, ``forward``, ``reseed``,
``set_progress``, ``acts``, ``array``, ``set_array``, ``has_array``, ``config``,
``accumulated``), so the loop, the log lines, the tests and the checkpoints are one code.
"""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

import numpy as np

from ..engine import WEIGHT_LAYER_TYPES, EngineNet
from ..errors import ReplayError
from .distributed import Group
from .options import parse_gpus

__all__ = ["BACKENDS", "EngineShare", "check_device", "training_net"]

BACKENDS = ("engine", "port")


def check_device(backend: str, device: str) -> None:
    """``--backend`` and ``--device`` checked together, before anything is built."""
    if backend not in BACKENDS:
        raise ReplayError(f"--backend {backend}: must be engine or port")
    if backend == "engine" and device not in ("cpu", "cuda"):
        raise ReplayError(f"--device {device}: the engine runs on cpu or cuda (cuda:N is the port's: "
                          "--backend port, or choose the engine's devices with --gpu)")
    if backend == "port" and not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ReplayError(f"--device {device}: must be cpu, cuda or cuda:N")


def _accumulators(net: EngineNet) -> list[np.ndarray]:
    """The buffers a backward writes a minibatch's gradient into, one per owned matrix and bias
    (engine.md §4.2): G for the useGrad path (conv, treefc, superEps, biases), the increment
    for fc and local, whose backward forms ``mom*inc + (eps/N) sum``. Views, no copies."""
    found = []
    for layer in net.config.layers.values():
        if layer.type not in WEIGHT_LAYER_TYPES:
            continue
        for i, src in enumerate(layer.weight_sources):
            if src is None:
                kind = "weight_grad" if net.has_array("weight_grad", layer.name, i) else "weight_inc"
                found.append(net.array(kind, layer.name, i))
        found.append(net.array("bias_grad", layer.name))
    return found


class EngineShare:
    """An engine net training its process's share of each minibatch (data parallel, CPU).

    Summing works on the buffers as the backward leaves them: every process divides by the
    whole minibatch's N (the net's ``grad_cases``), the processes other than rank 0 zero the
    buffers before their backward, so that rank 0 keeps what the buffer held (the momentum
    term of fc's increment, the partial sums of ``--wupdate-freq``) and the others add only
    their share; after ``all_reduce`` every process holds what one process's backward on the
    whole minibatch leaves, summed in another order, and applies the same update."""

    def __init__(self, net: EngineNet, group: Group) -> None:
        self.net, self.group = net, group
        draws = [l.name for l in net.config.layers.values()
                 if l.type in ("hs", "rscale") or (l.type == "neuron" and (l.neuron or "").startswith("nrelu"))
                 or (l.type == "pool" and l.attrs.get("pool") == "rand")]
        if draws:
            raise ReplayError(f"data parallel with the engine: layers {', '.join(draws)} draw in the engine per "
                              "process, so K processes would not draw what one draws; use --backend port (which "
                              "draws the whole minibatch in every process) or one process")
        self._buffers = _accumulators(net)
        import torch  # the group exists, so torch does

        # zero-copy: torch tensors on the engine's memory (Fortran-ordered matrices as their flat storage)
        self._tensors = [torch.from_numpy(b.reshape(-1, order="A")) for b in self._buffers]
        for b, t in zip(self._buffers, self._tensors):
            if t.numel() and t.data_ptr() != b.__array_interface__["data"][0]:
                raise AssertionError("an engine buffer was copied")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)

    def train_step(self, data: Sequence[np.ndarray]) -> dict[str, list[float]]:
        cases = data[0].shape[1]
        lo, hi = self.group.share(cases)
        self.net._net.grad_cases = cases  # 1/N of the whole minibatch (Plan::grad_cases)
        if self.group.rank != 0:
            for t in self._tensors:
                t.zero_()
        costs = self.net.forward([np.ascontiguousarray(m[:, lo:hi]) for m in data], train=True)
        self.net.backward()
        self.group.all_reduce_(self._tensors)
        self.net.update()
        return self.group.all_reduce_costs(costs)


def _towers(options: dict[str, Any]) -> list[str] | None:
    """--gpu ids as torch devices of the port's towers (cuda only): entry g serves gpu=g."""
    ids = parse_gpus(options.get("gpu") or "")
    if not options["device"].startswith("cuda") or not ids or all(i < 0 for i in ids):
        return None
    if any(i < 0 for i in ids):
        raise ReplayError(f"--gpu={options['gpu']}: give a device id for every tower, or -1 for all of them")
    # the CLI shows CUDA the --gpu ids in order (driver.export_gpu_ids): torch numbers them from 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and not all(str(i) in visible for i in ids):
        raise ReplayError(f"--gpu={options['gpu']}: not all of these devices are among CUDA_VISIBLE_DEVICES="
                          f"{','.join(visible)}")
    return [f"cuda:{visible.index(str(i)) if visible else i}" for i in ids]


def _port(net: EngineNet, options: dict[str, Any], group: Group | None):
    try:  # torch is an optional extra: only --backend port needs it
        from ..modernize.port.trainer import PortNet
    except ImportError as exc:
        raise ReplayError(f"--backend port needs PyTorch (pip install 'alexnet-replay[torch]'): {exc}") from None
    device, towers = options["device"], _towers(options)
    if group is not None and device.startswith("cuda"):
        if towers and len(towers) > 1:
            raise ReplayError("--gpu with several ids places towers in one process; in a data-parallel job each "
                              "process trains on the GPU of its local rank: leave --gpu out")
        device, towers = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}", None
    return PortNet(net, device, minibatch=options["mini"], towers=towers, group=group)


def training_net(net: EngineNet, options: dict[str, Any], group: Group | None):
    """The net that trains, for ``options["backend"]`` (see the module docstring)."""
    backend = options.get("backend") or "engine"
    check_device(backend, options["device"])
    if backend == "port":
        return _port(net, options, group)
    if group is not None:
        if net.device != "cpu":
            raise ReplayError("data parallel with the engine runs on the CPU (its CUDA buffers are not torch "
                              "tensors); use --backend port --device cuda")
        return EngineShare(net, group)
    return net
