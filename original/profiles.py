"""Which input sizes to try for a definition file (``driver.md`` §A.9).

Input sizes are not in the cfg files; they came from the data provider. The
release used 3x224x224 crops for its ImageNet and Flickr nets and 3x32x32 or
3x24x24 images for CIFAR-10. The family is read from the network itself -- the
width of its classifier -- rather than from the file's name:

* a net with a softmax classifier of 10 classes is a CIFAR-10 net: both CIFAR
  sizes are tried;
* a net whose labels are a vector (the Flickr tag nets: ``cost.crossent2``,
  ``cost.rflickr``, or labels fed into an ``eltsum``) is a Flickr net;
* anything else is an ImageNet net at 224x224, with as many classes as its
  classifier has outputs.

The one fact the file cannot give is the class count of a ``treefc`` classifier
(it lives in ``batches.meta``): the release's tree nets were trained on the
Fall-2009 ImageNet (10,184 classes) when the file name says ``-2009``, on the
1000-class set otherwise. That is a naming convention of the release, used only
there.
"""

from __future__ import annotations

import re
from dataclasses import replace

from .cfgfile import CfgFile
from .layers import PROFILES, DataProfile

_FALL_2009_CLASSES = 10184
_FALL_2009_NAME = re.compile(r"-2009(-tree)?\.cfg")


def _value(cfg: CfgFile, section: str, key: str) -> str | None:
    try:
        return cfg.get(section, key) if cfg.has_option(section, key) else None
    except Exception:  # noqa: BLE001 - any malformed value just means "cannot guess"
        return None


def _inputs(cfg: CfgFile, section: str) -> list[str]:
    text = _value(cfg, section, "inputs")
    return [p.strip() for p in text.split(",")] if text else []


def _classifier_width(cfg: CfgFile, section: str, seen: frozenset[str] = frozenset()) -> int | None:
    """Values per case reaching `section`: the outputs of the fc layer feeding it (through
    neuron, dropout and other one-input layers), or for a concat the sum over its inputs
    (the 4-GPU nets' softmax reads a concat of four 2546-wide fc layers: 10184 classes)."""
    while section in cfg.sections and section not in seen:
        seen = seen | {section}
        kind = _value(cfg, section, "type")
        if kind == "fc":
            try:
                return int(_value(cfg, section, "outputs") or "")
            except ValueError:
                return None
        if kind == "treefc":
            return None
        inputs = _inputs(cfg, section)
        if not inputs:
            return None
        if kind == "concat":
            widths = [_classifier_width(cfg, i, seen) for i in inputs]
            return sum(w for w in widths if w) if all(widths) else None
        section = inputs[0]
    return None


def guess_profiles(cfg: CfgFile, file_name: str = "") -> list[DataProfile]:
    """The data profiles the release used for a net like this one, most likely first."""
    sections = cfg.section_names()
    types = {name: _value(cfg, name, "type") for name in sections}
    label_layers = {n for n in sections if types[n] == "data" and _value(cfg, n, "dataidx") not in (None, "0")}
    multi_label = any(t in ("cost.crossent2", "cost.rflickr") for t in types.values()) or any(
        types[n] == "eltsum" and label_layers.intersection(_inputs(cfg, n)) for n in sections)
    if multi_label:
        widths = [_classifier_width(cfg, n) for n in sections if types[n] == "fc"]
        tags = max((w for w in widths if w), default=PROFILES["flickr224"].num_classes)
        return [replace(PROFILES["flickr224"], label_size=tags, num_classes=tags)]
    for name in sections:
        if types[name] in ("cost.logreg", "cost.msm"):
            inputs = _inputs(cfg, name)
            softmax = inputs[1] if len(inputs) > 1 else None
            if softmax is None or types.get(softmax) != "softmax":
                continue
            feed = _inputs(cfg, softmax)
            width = _classifier_width(cfg, feed[0]) if feed else None
            if width == 10:
                return [PROFILES["cifar32"], PROFILES["cifar24"]]
            if width is None and feed and types.get(feed[0]) == "treefc":
                width = _FALL_2009_CLASSES if _FALL_2009_NAME.search(file_name) else 1000
            if width:
                return [replace(PROFILES["inet224"], num_classes=width)]
    return [PROFILES["inet224"], PROFILES["cifar32"], PROFILES["cifar24"]]
