"""What the data tells a network before it is built: its class count and label tree.

The release's reader sized a ``treefc`` layer from the data provider's tree
(``batches.meta['tree']``, engine.md §3.3) and refused a ``cost.logreg`` whose softmax
does not have one output per class of the data (driver.md §A.4: as many outputs as
``len(batches.meta['label_names'])``). :func:`data_facts` reads both from a provider, for
:func:`alexnet_replay.original.shownet.load`; :func:`check_class_count` applies the rule.
"""

from __future__ import annotations

from typing import Any

from ..errors import ReplayError
from ..original.labeltree import LabelTree
from ..original.layers import Network


def data_facts(provider: Any) -> dict[str, Any]:
    """``{"tree": LabelTree | None, "num_classes": int | None}`` of a data provider."""
    classes = provider.get_num_classes() if hasattr(provider, "get_num_classes") else None
    meta = getattr(provider, "meta", None)
    tree = None
    if meta is not None and classes:
        tree = LabelTree.from_meta(meta.raw, classes, str(getattr(meta, "path", "batches.meta")))
    return {"tree": tree, "num_classes": classes}


def check_data_layers(config: Network, provider: Any, source: str) -> None:
    """Each data layer reads a matrix the provider gives (``dataIdx`` in range) of the size the
    net was built for; `source` names the data. The release would index past its list or read
    zeros; here the layer and the data are named, and a size the data cannot give blames the data."""
    count = getattr(provider, "num_matrices", None)
    if count is None:
        return
    for layer in config.layers.values():
        if layer.type != "data":
            continue
        idx = layer.attrs.get("dataIdx", 0)
        if idx >= count:
            raise ReplayError(f"{config.path}: [{layer.name}] dataIdx {idx}: the data provider "
                              f"'{getattr(provider, 'name', '?')}' gives {count} matrices (dataIdx 0..{count - 1}) "
                              f"for {source}")
        dims = provider.get_data_dims(idx)
        if idx == 0 and layer.outputs != dims:
            meta = getattr(getattr(provider, "meta", None), "path", source)
            raise ReplayError(f"{meta}: images of {dims} values (num_vis) are not square colour images "
                              f"(3 x S x S); the nearest, {layer.outputs}, is what the layers would read")
        if idx > 0 and layer.outputs != dims:
            raise ReplayError(f"{config.path}: [{layer.name}] dataIdx {idx}: matrix {idx} of the data provider "
                              f"'{getattr(provider, 'name', '?')}' has {dims} rows per case, the layer reads "
                              f"{layer.outputs} (matrices 0..{count - 1} for {source})")


def check_class_count(config: Network, classes: int | None, source: str) -> None:
    """Each cost.logreg's softmax has one output per class of the data (`source` names it)."""
    if not classes:
        return
    for layer in config.layers.values():
        if layer.type != "cost.logreg" or len(layer.inputs) < 2:
            continue
        probs = config.layers[layer.inputs[1]]
        if probs.outputs != classes:
            raise ReplayError(f"{config.path}: layer '{probs.name}' (the softmax of cost.logreg '{layer.name}') has "
                              f"{probs.outputs} outputs, but the data ({source}) has {classes} classes "
                              "(len(label_names)); the release refused this pairing")
