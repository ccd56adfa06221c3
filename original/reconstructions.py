"""Where a network runs a reconstruction: release behaviour whose kernel was never published.

engine.md states two such behaviours by their intent only (docs/fidelity.md,
"Reconstructions"):

* ``pool=rand`` without ``doMax`` (§3.6: ``convLocalRandomPool``): the engine and the
  port pool one uniformly random pixel of each clipped window, per channel and case,
  in every pass type, and route the gradient back by max-undo. The picks come from the
  net's seeded generator (the engine's "mask" buffer of the layer), so they can be
  injected like dropout masks. With ``doMax`` the layer is max pooling, exactly.
* ``quantF``/``quantB`` = ``half`` (§6: ``convQuantizeHalf``): the copy of a layer's
  output that a consumer on another ``gpu=`` reads is rounded to IEEE half precision
  (round to nearest even) and back, and the gradient that comes back from those
  consumers (their sum on that device) likewise, before it is added to the layer's.
  :func:`with_transfers` inserts one ``quant`` layer per (producer, consumer gpu) for
  this; the engine (engine.py) and the port (port/network.py) both run the transformed
  network, so parity compares the ``quant`` layers like any other. Consumers on the
  producer's own gpu read exact values: there, quantF and quantB change nothing (the
  release only quantised copies between devices without peer access).

:func:`reconstructions` lists the notes for a network; show-net, the catalog, the
parity report and the training log print them.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from .layers import Layer, Network

QUANT_TYPE = "quant"  # the engine's layer type of a half-precision transfer (not a cfg type)


@dataclass(frozen=True)
class Reconstruction:
    """One layer that runs a reconstruction: what the engine does, and why it is not exact."""

    layer: str
    what: str
    why: str

    def text(self) -> str:
        return f"{self.layer}: {self.what} ({self.why})"


_RAND_WHY = ("engine.md §3.6: the release called convLocalRandomPool, whose kernel was never published; "
             "its exact rule and random stream are unknown")
_QUANT_WHY = ("engine.md §6: the release rounded transfers between GPUs without peer access with "
              "convQuantizeHalf, never published; IEEE round-to-nearest-even is assumed")


def _consumers(net: Network, name: str) -> list[Layer]:
    return [l for l in net.layers.values() if name in l.inputs]


def _half(layer: Layer) -> tuple[bool, bool]:
    p = layer.params
    return p.get("quantF") == "half", p.get("quantB") == "half"


def _remote_gpus(net: Network, layer: Layer) -> list[int]:
    """The gpus, other than the layer's, of its consumers, in order of first appearance."""
    gpus: list[int] = []
    for c in _consumers(net, layer.name):
        if c.gpu >= 0 and c.gpu != layer.gpu and c.gpu not in gpus:
            gpus.append(c.gpu)
    return gpus


def by_layer(notes: list[Reconstruction]) -> dict[str, str]:
    """{layer: its notes as one text}, for reports that give one line per layer."""
    out: dict[str, list[str]] = {}
    for r in notes:
        out.setdefault(r.layer, []).append(f"{r.what} ({r.why})")
    return {name: "; ".join(texts) for name, texts in out.items()}


def reconstructions(net: Network) -> list[Reconstruction]:
    """The reconstruction notes of `net`, in execution order: one per pool=rand layer without
    doMax (or whose doMax is not known, with no parameter file) and one per layer with
    quantF or quantB = half (saying that nothing happens when no consumer is on another gpu)."""
    notes: list[Reconstruction] = []
    for layer in net.layers.values():
        if layer.type == "pool" and layer.attrs.get("pool") == "rand" and not layer.params.get("doMax"):
            unset = " unless the parameter file sets doMax" if net.params_path is None else ""
            notes.append(Reconstruction(
                layer.name, f"pool=rand without doMax: one uniformly random pixel per window{unset}, "
                "max-undo backward", _RAND_WHY))
        if layer.type == QUANT_TYPE:  # inserted by with_transfers
            a = layer.attrs
            keys = " and ".join(k for k in ("quantF", "quantB") if a.get(k) == "half")
            notes.append(Reconstruction(layer.name, f"the half-precision transfer of {a.get('source')} to gpu "
                                        f"{layer.gpu} ({keys}=half)", _QUANT_WHY))
            continue
        forward, backward = _half(layer)
        if not (forward or backward):
            continue
        keys = " and ".join(k for k, on in (("quantF=half", forward), ("quantB=half", backward)) if on)
        remote = _remote_gpus(net, layer)
        if not remote:
            notes.append(Reconstruction(layer.name, f"{keys}: no effect, every consumer is on its gpu "
                                        f"{layer.gpu} (only transfers between gpus are rounded)", _QUANT_WHY))
            continue
        parts = ([f"output rounded to half for gpu {', '.join(map(str, remote))}"] if forward else []) + \
                (["gradient from there rounded to half"] if backward else [])
        notes.append(Reconstruction(layer.name, f"{keys}: {'; '.join(parts)}", _QUANT_WHY))
    return notes


def transfer_name(producer: str, gpu: int) -> str:
    """The name of the quant layer carrying `producer`'s output to gpu `gpu`."""
    return f"{producer}@gpu{gpu}"


def with_transfers(net: Network) -> Network:
    """`net` with a ``quant`` layer between each layer whose quantF or quantB is half and its
    consumers on each other gpu (one per gpu, placed there, right after the producer), those
    consumers reading it instead. `net` itself is not changed; without such layers (or when
    already transformed) it is returned as is."""
    if any(l.type == QUANT_TYPE for l in net.layers.values()):
        return net
    plan: dict[str, list[int]] = {}
    for layer in net.layers.values():
        if any(_half(layer)) and layer.type != "data":
            remote = _remote_gpus(net, layer)
            if remote:
                plan[layer.name] = remote
    if not plan:
        return net
    layers: dict[str, Layer] = {}
    for layer in net.layers.values():
        renamed = [transfer_name(i, layer.gpu) if layer.gpu in plan.get(i, ()) else i for i in layer.inputs]
        layers[layer.name] = dataclasses.replace(layer, inputs=renamed) if renamed != layer.inputs else layer
        forward, backward = _half(layer)
        for gpu in plan.get(layer.name, ()):
            name = transfer_name(layer.name, gpu)
            if name in net.layers:
                raise ValueError(f"layer '{name}': the name of the half-precision transfer of "
                                 f"'{layer.name}' to gpu {gpu} is taken")
            layers[name] = Layer(name, QUANT_TYPE, layer.line, gpu, [layer.name], layer.outputs, layer.image,
                                 attrs={"quantF": "half" if forward else "default",
                                        "quantB": "half" if backward else "default", "source": layer.name},
                                 params={"quantF": "default", "quantB": "default"})
    out = copy.copy(net)
    out.layers = layers
    return out
