"""The project's own example networks, written here in the release's cfg format.

``paper-2012``   the two-tower ImageNet network of the 2012 paper (3x224x224)
``cifar-18pct``  a small CIFAR-10 network after the release's "18%" example (3x32x32)

They ship inside the package so that everything works without a copy of the
release. :func:`bundled` returns the paths of a network's two files.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class Bundled:
    name: str
    layers: Path
    params: Path
    description: str


_DESCRIPTIONS = {
    "paper-2012": "the ImageNet network of the 2012 paper: two towers, 5 conv + 3 fc layers, 3x224x224",
    "cifar-18pct": "a small CIFAR-10 network after the release's 18% example, 3x32x32",
}


def names() -> list[str]:
    return list(_DESCRIPTIONS)


def bundled(name: str) -> Bundled:
    """The files of bundled network `name` (KeyError if there is none)."""
    if name not in _DESCRIPTIONS:
        raise KeyError(name)
    folder = Path(str(resources.files(__package__)))
    return Bundled(name, folder / f"{name}.layers.cfg", folder / f"{name}.params.cfg", _DESCRIPTIONS[name])
