"""The curator's dossier (``alexnet-replay dossier``): one page, and one folder, a museum can archive.

>>> build_dossier("AlexNet-Source-Code", "dossier", quick=True)   # dossier/dossier.html, .json, the crate

* :mod:`.facts`: the facts of each section as plain data (what dossier.json holds);
* :mod:`.contents`: what the release holds and lacks, in a curator's words;
* :mod:`.page`: dossier.html, drawn from the facts alone;
* :mod:`.build`: the folder, written whole or not at all, and its RO-Crate.

This package sits above ``original``, ``harness`` and ``modernize`` and imports all three
(docs/architecture.md); only the CLI imports it.
"""

from __future__ import annotations

from .build import FORMAT, VERSION, build_dossier, write_crate

__all__ = ["FORMAT", "VERSION", "build_dossier", "write_crate"]
