"""``alexnet-replay show-net``: a table of a network's layers.

For each layer after ``neuron=`` splitting, in execution order: name, type,
GPU, inputs, output shape per case, weights, biases, and multiply-adds per
image. Multiply-adds are counted for the layers with weights (conv, local, fc:
one per weight use); pooling, normalisation and neurons are not counted. Layers
that run a reconstruction (:mod:`.reconstructions`) are listed below the table.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .. import networks
from .cfgfile import read_cfg
from .labeltree import LabelTree
from .layers import LENIENT, STRICT, DataProfile, Network, build_network, custom_profile
from .params import apply_params
from .profiles import guess_profiles
from .reconstructions import reconstructions

FORMAT = "alexnet-replay show-net"
VERSION = 1


def resolve_files(layers: str, params: str | None) -> tuple[Path, Path | None]:
    """A bundled network's name (``paper-2012``) or a path; bundled names bring their params."""
    if layers in networks.names() and not Path(layers).exists():
        found = networks.bundled(layers)
        return found.layers, Path(params) if params else found.params
    return Path(layers), Path(params) if params else None


def load(layers: str | Path, params: str | Path | None = None, *,
         image_size: tuple[int, int, int] | None = None, lenient: bool = False,
         num_gpus: int | None = None, tree: LabelTree | None = None,
         num_classes: int | None = None) -> tuple[Network, list[str]]:
    """Read a definition file (and parameter file) at a given or guessed input size.

    `tree` is the data's label tree (batches.meta['tree']) for treefc layers; without
    one, a treefc layer's weight matrix has an unknown width and the net cannot be built.
    `num_classes` is the data's class count (a treefc layer's outputs), when known.

    Returns the network and the parameter file's sections that match no layer.
    In strict mode a file that only the lenient reader accepts raises a
    ConfigError that says so.
    """
    layers_path, params_path = resolve_files(str(layers), str(params) if params else None)
    cfg = read_cfg(layers_path)
    guessed = guess_profiles(cfg, layers_path.name)
    profile: DataProfile = custom_profile(image_size, guessed[0]) if image_size else guessed[0]
    if tree is not None or num_classes:
        profile = dataclasses.replace(profile, tree=tree, num_classes=num_classes or profile.num_classes)
    params_cfg = read_cfg(params_path) if params_path else None
    mode = LENIENT if lenient else STRICT
    try:
        net = build_network(cfg, profile, mode, num_gpus)
        unused = apply_params(net, params_cfg) if params_cfg else []
    except ConfigError as exc:
        if lenient:
            raise
        try:
            relaxed = build_network(cfg, profile, LENIENT, num_gpus)
            if params_cfg:
                apply_params(relaxed, params_cfg)
        except ConfigError:
            raise exc from None
        raise ConfigError(f"{exc.reason} (the release rejects this; --lenient reads it with "
                          f"{len(relaxed.fixes)} relaxation(s))", file=exc.file, line=exc.line,
                          section=exc.section, key=exc.key) from None
    if not image_size and len(guessed) > 1:
        net.warnings.append("also built for: " + ", ".join("x".join(map(str, p.image)) for p in guessed[1:])
                            + " (choose with --image-size)")
    return net, unused


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) if shape else "-"


def _type(layer) -> str:
    return f"neuron {layer.neuron}" if layer.type == "neuron" and layer.neuron else layer.type


def network_dict(net: Network, unused: list[str], engine: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON of show-net; `engine` is this engine's verdict (harness/runnable.py), when given."""
    return {
        "format": FORMAT, "version": VERSION,
        "layers_file": net.path, "params_file": net.params_path,
        "image_size": list(net.profile.image), "mode": net.mode,
        "fixes": net.fixes, "warnings": net.warnings, "unused_param_sections": unused,
        "parameters": net.parameters, "parameters_incomplete": net.parameters_incomplete,
        "weights": net.weights, "biases": net.biases,
        "multiply_adds": sum(layer.macs for layer in net.layers.values()),
        "gpus": net.gpus,
        "engine": engine,
        "reconstructions": [dataclasses.asdict(r) for r in reconstructions(net)],
        "layers": [{
            "name": l.name, "type": l.type, "neuron": l.neuron if l.type == "neuron" else None,
            "gpu": l.gpu, "inputs": l.inputs, "shape": list(l.shape),
            "weights": l.weight_count, "biases": l.bias_count, "multiply_adds": l.macs,
            "shared_weights": [list(s) if s else None for s in l.weight_sources],
        } for l in net.layers.values()],
    }


def network_table(net: Network, unused: list[str], engine: dict[str, Any] | None = None) -> str:
    header = ("name", "type", "gpu", "inputs", "output", "weights", "biases", "mult-adds")
    rows = [header]
    for l in net.layers.values():
        rows.append((l.name, _type(l), "-" if l.gpu < 0 else str(l.gpu), ",".join(l.inputs) or "-",
                     _shape(l.shape), f"{l.weight_count:,}" if l.weights else "-",
                     f"{l.bias_count:,}" if l.biases else "-", f"{l.macs:,}" if l.macs else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {2, 5, 6, 7}

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    lines = [f"{net.path}" + (f" + {net.params_path}" if net.params_path else ""),
             f"input {_shape(net.profile.image)} ({net.profile.description}), {net.mode} reading", "",
             fmt(rows[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows[1:]]
    macs = sum(l.macs for l in net.layers.values())
    lines += ["", f"{len(net.layers)} layers ({net.neuron_layers_added} added by neuron=), GPUs "
              f"{','.join(map(str, net.gpus)) or '-'}",
              f"trainable parameters {net.parameters:,} (weights {net.weights:,}, biases {net.biases:,})"
              + (" + the label tree's matrix (size in batches.meta)" if net.parameters_incomplete else ""),
              f"multiply-adds per image {macs:,} (conv, local and fc layers)"]
    lines += [f"relaxed: {fix}" for fix in net.fixes]
    lines += [f"note: {w}" for w in net.warnings]
    lines += [f"reconstruction: {r.text()}" for r in reconstructions(net)]
    if unused:
        lines.append(f"parameter sections matching no layer (ignored, as the release did): {', '.join(unused)}")
    if engine is not None:
        lines.append(f"this engine at {_shape(net.profile.image)}: {engine['verdict']}")
    return "\n".join(lines) + "\n"
