"""Initialisation from an earlier run: ``initWFunc``, ``initBFunc``, ``initCFunc`` (driver.md §A.5).

Ten of the release's definition files fill some layers by calling Python code of the
release, ``initw.makew(L)``, ``initw.makeb(L)`` and ``initw.makec(L)``, which copied
matrix *i* (called once per input *i*), the biases, or the connection table of input *i*
of the layer named ``L`` from a checkpoint of an earlier run, at a path written into
that code. The paper's network fine-tuned on ILSVRC-2012 from a Fall-2011 pre-training
(``layers-146-2012-2011.cfg``) is one of them.

This project never imports that code. ``train --init-from CHECKPOINT`` names the earlier
run instead (this project's ``.npz`` or the release's pickle), and :class:`InitSource`
supplies what the function copied: the named source layer's array, checked for shape
against the layer it fills. Layers filled this way draw no random weights, as in the
release; every other layer draws as usual.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ReplayError
from ..original.layers import Layer, Network
from .checkpoint import read_checkpoint
from .checkpoint_format import RELEASE, checkpoint_format
from .release_checkpoint import read_release_checkpoint

# module.function(arg): the release's functions take the source layer's name.
_CALL_RE = re.compile(r"\s*[A-Za-z_][\w.]*\.(?P<func>[A-Za-z_]\w*)\((?P<args>.*)\)\s*", re.DOTALL)
KEYS = {"initWFunc": "weights", "initBFunc": "biases", "initCFunc": "conns"}


@dataclass
class InitCall:
    """One ``init?Func`` of one layer: what it fills and from which source layer."""

    layer: str
    key: str      # initWFunc, initBFunc or initCFunc
    text: str     # as written
    source: str   # the source layer named by its argument

    @property
    def what(self) -> str:
        return KEYS[self.key]


def init_calls(config: Network) -> list[InitCall]:
    """Every init function of the network, in layer order."""
    calls = []
    for layer in config.layers.values():
        for key in KEYS:
            text = layer.attrs.get(key)
            if not text:
                continue
            match = _CALL_RE.fullmatch(text)
            args = [a.strip() for a in match.group("args").split(",")] if match else []
            if not args or not args[0]:
                raise ReplayError(f"{config.path}: layer '{layer.name}': {key}={text}: the function's first "
                                  "argument must name the source layer of the earlier run")
            calls.append(InitCall(layer.name, key, text, args[0].strip("'\"")))
    return calls


def require_source(config: Network, source: InitSource | None) -> None:
    """One line naming the file, the layer and the option when a source is needed and missing."""
    calls = init_calls(config)
    if calls and source is None:
        c = calls[0]
        more = f" (and {len(calls) - 1} more init function(s))" if len(calls) > 1 else ""
        raise ReplayError(f"{config.path}: layer '{c.layer}': {c.key}={c.text} copies the {c.what} of layer "
                          f"'{c.source}' from an earlier run{more}; give that run's checkpoint with --init-from "
                          "CHECKPOINT (this project's .npz or the release's pickle)")


@dataclass
class InitSource:
    """The arrays an earlier run offers: weights[(layer, i)], biases[layer], conns[(layer, i)]."""

    path: str
    weights: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    biases: dict[str, np.ndarray] = field(default_factory=dict)
    conns: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> "InitSource":
        """A checkpoint of this project or of the release (told apart by its bytes)."""
        path = Path(path)
        out = cls(str(path))
        if checkpoint_format(path) == RELEASE:
            ck = read_release_checkpoint(path)
            for name, rec in ck.layers.items():
                for i, w in enumerate(_list(rec.get("weights"))):
                    if isinstance(w, np.ndarray):
                        out.weights[(name, i)] = w
                if isinstance(rec.get("biases"), np.ndarray):
                    out.biases[name] = rec["biases"]
                conns = rec.get("filterConns")
                for i, table in enumerate(_list(conns)):
                    if table is not None and not isinstance(table, (int, float)):
                        out.conns[(name, i)] = [int(v) for v in np.asarray(table).ravel()]
            return out
        _, arrays = read_checkpoint(path)
        for key, value in arrays.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[1] == "weights":
                out.weights[(parts[0], int(parts[2]))] = value
            elif len(parts) == 2 and parts[1] == "biases":
                out.biases[parts[0]] = value
            elif len(parts) == 3 and parts[1] == "conns":
                out.conns[(parts[0], int(parts[2]))] = [int(v) for v in value.ravel()]
        return out

    def _missing(self, call: InitCall, what: str) -> ReplayError:
        return ReplayError(f"{self.path}: has no {what} of layer '{call.source}', which {call.key}={call.text} "
                           f"of layer '{call.layer}' copies")

    def conn_tables(self, config: Network) -> dict[str, list[list[int] | None]]:
        """The connection tables that initCFunc copies, by layer (for EngineNet(conns=...))."""
        out: dict[str, list[list[int] | None]] = {}
        for call in init_calls(config):
            if call.key != "initCFunc":
                continue
            layer = config.layers[call.layer]
            tables: list[list[int] | None] = []
            for i in range(len(layer.inputs)):
                if not layer.attrs["randSparse"][i]:
                    tables.append(None)
                    continue
                table = self.conns.get((call.source, i))
                if table is None:
                    raise self._missing(call, f"connection table {i}")
                want = layer.attrs["groups"][i] * layer.attrs["filterChannels"][i]
                if len(table) != want or not all(0 <= v < layer.attrs["channels"][i] for v in table):
                    raise ReplayError(f"{self.path}: connection table {i} of layer '{call.source}' has "
                                      f"{len(table)} entries, layer '{call.layer}' needs {want} channel indices "
                                      f"in 0..{layer.attrs['channels'][i] - 1}")
                tables.append(table)
            out[call.layer] = tables
        return out

    def fill(self, net: Any) -> list[str]:
        """Copy what each initWFunc/initBFunc names into `net`; one log line per layer filled."""
        lines = []
        for call in init_calls(net.config):
            layer: Layer = net.config.layers[call.layer]
            if call.key == "initWFunc":
                for i, src in enumerate(layer.weight_sources):
                    if src is not None:
                        continue
                    value = self.weights.get((call.source, i))
                    if value is None:
                        raise self._missing(call, f"weight matrix {i}")
                    _check_shape(self.path, call, f"weight matrix {i}", value.shape, layer.weights[i])
                    net.set_weights(layer.name, np.asarray(value, np.float32), i)
            elif call.key == "initBFunc":
                value = self.biases.get(call.source)
                if value is None:
                    raise self._missing(call, "biases")
                _check_shape(self.path, call, "biases", value.shape, layer.biases)
                net.set_biases(layer.name, np.asarray(value, np.float32))
            lines.append(f"{call.layer}: {call.what} from layer '{call.source}' of {self.path} ({call.key})")
        return lines


def _list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [] if value is None else [value]


def _check_shape(path: str, call: InitCall, what: str, got: tuple[int, ...], want: tuple[int, ...] | None) -> None:
    if want is not None and int(np.prod(got)) == int(np.prod(want)) and len(got) == 2 and tuple(got) == tuple(want):
        return
    raise ReplayError(f"{path}: {what} of layer '{call.source}' is {tuple(got)}, but layer '{call.layer}' "
                      f"({call.key}={call.text}) needs {tuple(want) if want is not None else '?'}")
