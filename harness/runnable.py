"""Whether this engine can build and train a network, and if not, why (``catalog``, ``show-net``).

The reader's verdict says whether the *release* accepted a file. This one says what a user of
this project gets, at one input size:

* **builds**: with its layer-parameter file (a definition file alone has no learning
  rates), the engine's plan accepts every layer at minibatch 2 (``engine.check_plan``:
  the checks a net makes before it allocates anything; nothing is allocated here).
* **trains**: it builds, so ``train`` can run it, given what the run must be told: the
  checkpoint that ``initWFunc``/``initBFunc``/``initCFunc`` copy from (``--init-from``,
  driver.md §A.5), and for ``treefc`` the data's label tree (``batches.meta['tree']``,
  engine.md §3.3; without the data, the net is checked on a balanced stand-in tree).
  These are listed as *needs*, not failures.

Layers that run a reconstruction (kernels never published) are listed beside this verdict by
``original/reconstructions.py``; they do not change it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from ..engine import check_plan
from ..errors import ReplayError
from ..original.labeltree import LabelTree
from ..original.layers import DataProfile, Network
from .init_from import init_calls

MINIBATCH = 2


@dataclass
class Runnability:
    builds: bool
    trains: bool
    why: str | None = None                       # why not (builds or trains), one line
    needs: list[str] = field(default_factory=list)

    def verdict(self) -> str:
        """One short phrase: 'trains', 'builds (...)' or 'does not build: ...'."""
        if not self.builds:
            return f"does not build: {self.why}"
        if not self.trains:
            return f"builds; does not train: {self.why}"
        return "trains" + (f" (needs {'; '.join(self.needs)})" if self.needs else "")

    def to_dict(self) -> dict[str, Any]:
        return {"builds": self.builds, "trains": self.trains, "verdict": self.verdict(), "why": self.why,
                "needs": list(self.needs)}


def assess(net: Network, rebuild: Callable[[DataProfile], Network] | None = None) -> Runnability:
    """The engine's verdict on `net` (as the reader built it). `rebuild(profile)` reads the same
    files again at another data profile; it is used to give a treefc net a stand-in label tree."""
    if net.params_path is None:
        return Runnability(False, False, "a definition file alone has no learning rates: give it a layer-parameter "
                           "file")
    needs: list[str] = []
    try:
        calls = init_calls(net)
    except ReplayError as exc:
        return Runnability(False, False, str(exc))
    if calls:
        sources = sorted({c.source for c in calls})
        needs.append(f"--init-from a checkpoint with layer(s) {', '.join(sources)} "
                     f"({len(calls)} init function(s), driver.md §A.5)")
    if any(l.type == "treefc" for l in net.layers.values()) and net.profile.tree is None:
        needs.append("the data's label tree (batches.meta['tree']); checked with a balanced stand-in")
        if rebuild is None:
            return Runnability(False, False, "treefc needs the data's label tree to be built", needs)
        classes = net.profile.num_classes or 1
        try:
            net = rebuild(dataclasses.replace(net.profile, tree=LabelTree.stand_in(classes)))
        except (ReplayError, ValueError) as exc:
            return Runnability(False, False, str(exc), needs)
    try:
        check_plan(net, MINIBATCH)
    except ReplayError as exc:
        return Runnability(False, False, str(exc), needs)
    return Runnability(True, True, None, needs)
