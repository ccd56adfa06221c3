"""The release's networks in PyTorch: today's NCHW layout, autograd, a torch optimizer.

>>> from alexnet_replay.original.shownet import load
>>> config, _ = load("paper-2012")            # the parsed cfg files (layers and parameters)
>>> net = build_module(config, seed=1)        # the weights alexnet_replay.load(..., seed=1) draws
>>> out = net([images, labels], train=True)   # images (N, C, H, W) float32, labels (N,)
>>> out["conv1a"].shape, out["logprob"]       # every layer's output by name, and the costs
>>> net.objective(out).backward()             # E = sum over cost layers of coeff * cost[0]

What the port computes is the engine's network (engine.md §3), not a
re-interpretation of it. The package, one job per module:

* ``layers``: one function per layer type, registered under its cfg type with the parity
  classes of its forward and backward (:data:`LAYERS`): what the port computes for it;
* ``ops``: the operations where PyTorch has no exact equivalent of the release's (clipped
  pooling with max-undo, the norms, blur, the neurons whose backward is not autograd's,
  eltmax, the fused softmax + logreg gradient), each with its spec section, and their
  plain-operation forwards for export;
* ``network``: :class:`ReleaseNet`, the nn.Module built from a parsed config, its forward
  in execution order and the backward arranged as the engine's (href, fused softmax);
* ``convert``: the engine's layouts (§1.2, §1.3) to the port's tensors and back, the
  weights and masks between an engine net and a module, and :func:`engine_gradients`,
  the port's gradients in the engine's sign and scale (§1.1);
* ``optim``: :class:`ReleaseSGD`, the release's update rule (§4.2) and rate schedules (§4.3).

Everything is importable from here (``from alexnet_replay.modernize import port;
port.build_module(...)``).
"""

from __future__ import annotations

from .convert import (WEIGHT_TYPES, EngineGradients, bias_from_engine, bias_shape, bias_to_engine, copy_to_engine,
                      engine_gradients, from_engine_acts, load_engine_weights, masks_to_engine,
                      state_dict_from_engine, to_engine_acts, weight_from_engine, weight_shape, weight_to_engine)
from .layers import LAYERS, Step, port_layer, tolerance_class
from .network import SUPPORTED, ReleaseNet, build_module, draw_conns, draw_conns_rng, fused_cost
from .ops import MAX_START, blur, cross_map_norm, pool2d, spatial_norm
from .optim import ReleaseSGD, release_param_groups, schedule_rate

# Internals that export.py and the tests reach as port.<name>: the export path reuses the
# padding, counts and neuron forward, and the tests compare against the Functions directly.
from .ops import (_EltMax, _FusedNLL, _FusedSoftmax, _clipped_counts, _drelu_tanh,  # noqa: F401
                  _exact_pad, _logreg_costs, _neuron)

__all__ = [
    "LAYERS", "Step", "port_layer", "fused_cost", "tolerance_class", "ReleaseNet", "ReleaseSGD", "EngineGradients",
    "SUPPORTED", "WEIGHT_TYPES", "MAX_START", "build_module",
    "pool2d", "cross_map_norm", "spatial_norm", "blur", "draw_conns", "draw_conns_rng", "engine_gradients",
    "state_dict_from_engine", "load_engine_weights", "copy_to_engine", "masks_to_engine", "to_engine_acts",
    "from_engine_acts", "weight_from_engine", "weight_to_engine", "bias_from_engine", "bias_to_engine",
    "release_param_groups", "schedule_rate", "weight_shape", "bias_shape",
]
