"""A run's cost history (driver.md §C.7): what ``show --cost`` plots, kept in every checkpoint.

The release kept, in ``model_state``, ``train_outputs`` (one ``(costs, cases)`` pair per
trained batch) and ``test_outputs`` (one per test), the costs being per-case means. This
project keeps the same, with where each entry falls in the run, in the checkpoint state's
``"history"`` (docs/json-formats.md)::

    {"train": [[batches_done, epoch, batchnum, cases, {cost: [per-case values]}], ...],
     "test":  [[batches_done, cases, {cost: [per-case values]}], ...],
     "rates": [[batches_done, params_file, {layer: {"epsW": [...], "epsB": e}}], ...]}

``rates`` gets an entry at every start of the run (fresh or ``-f``) whose learning rates
differ from the last entry's: the hand-made schedules of §E changed rates by resuming with
another parameter file, and these are the changes ``show --cost`` marks.

A checkpoint holds the history up to the batch it was taken after, so a run killed and
resumed from it repeats the batches trained since and ends with the history of the run
that was never killed. Converting to the release's pickle writes ``train_outputs`` and
``test_outputs`` as the release did, and the positions and rates under the extra key
``model_state['replay']`` (plain data, which the 2012 tools ignore); converting back uses
them, or, for a file the release wrote, numbers the batches in order and puts the k-th
test after ``k · testing_freq`` batches (what the release's plot assumed).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import ReplayError
from .options import parse_range

__all__ = ["History", "rates_of"]

Costs = dict[str, list[float]]


def _costs(value: Any, where: str) -> Costs:
    if not isinstance(value, dict):
        raise ReplayError(f"{where}: costs must be a dict of cost name -> list of numbers, not "
                          f"{type(value).__name__}")
    out = {}
    for name, values in value.items():
        vals = values if isinstance(values, (list, tuple)) else [values]
        try:
            out[str(name)] = [float(v) for v in vals]
        except (TypeError, ValueError):
            raise ReplayError(f"{where}: cost '{name}' holds values that are not numbers") from None
    return out


def rates_of(config) -> dict[str, dict[str, Any]]:
    """The base learning rates of every weight layer of a parsed network (§B.2): epsW per
    matrix and epsB."""
    out = {}
    for layer in config.layers.values():
        if "epsW" in layer.params:
            out[layer.name] = {"epsW": [float(v) for v in layer.params["epsW"]],
                               "epsB": float(layer.params.get("epsB", 0.0))}
    return out


class History:
    """Training and test outputs of a run, with their positions; see the module docstring."""

    def __init__(self, train: Sequence[list] = (), test: Sequence[list] = (), rates: Sequence[list] = ()) -> None:
        self.train: list[list] = [list(e) for e in train]
        self.test: list[list] = [list(e) for e in test]
        self.rates: list[list] = [list(e) for e in rates]

    # -- recording (the driver) --
    def add_train(self, batches_done: int, epoch: int, batchnum: int, cases: int, sums: Costs) -> None:
        """`sums`: cost sums over the batch's `cases`; stored per case (§C.7)."""
        self.train.append([int(batches_done), int(epoch), int(batchnum), int(cases),
                           {k: [float(v) / cases for v in vs] for k, vs in sums.items()}])

    def add_test(self, batches_done: int, cases: int, per_case: Costs) -> None:
        self.test.append([int(batches_done), int(cases), {k: [float(v) for v in vs] for k, vs in per_case.items()}])

    def add_rates(self, batches_done: int, params_file: str | None, rates: dict[str, dict[str, Any]]) -> bool:
        """Record the rates a start runs with, unless they are the last record's; True if recorded."""
        if self.rates and self.rates[-1][2] == rates:
            return False
        self.rates.append([int(batches_done), str(params_file or ""), rates])
        return True

    # -- this project's checkpoint state --
    def to_state(self) -> dict[str, list]:
        return {"train": self.train, "test": self.test, "rates": self.rates}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, where: str = "checkpoint") -> "History":
        """The history of a checkpoint state; an older checkpoint without one starts from its
        ``test_outputs`` (no positions: they are numbered 1, 2, ...) or nothing."""
        state = state or {}
        raw = state.get("history")
        if raw is None:
            tests = state.get("test_outputs") or []
            return cls(test=[[k + 1, 0, _costs(t, f"{where}: test_outputs[{k}]")] for k, t in enumerate(tests)
                             if isinstance(t, dict)])
        if not isinstance(raw, dict):
            raise ReplayError(f"{where}: key 'history' must be a dict with train, test and rates")
        try:
            train = [[int(b), int(e), int(n), int(c), _costs(v, f"{where}: history.train[{k}]")]
                     for k, (b, e, n, c, v) in enumerate(raw.get("train", []))]
            test = [[int(b), int(c), _costs(v, f"{where}: history.test[{k}]")]
                    for k, (b, c, v) in enumerate(raw.get("test", []))]
            rates = [[int(b), str(p), dict(r)] for b, p, r in raw.get("rates", [])]
        except (TypeError, ValueError):
            raise ReplayError(f"{where}: key 'history' is malformed (see docs/json-formats.md)") from None
        return cls(train, test, rates)

    # -- the release's model_state --
    def to_release(self) -> dict[str, Any]:
        """``train_outputs``, ``test_outputs`` (lists of (costs, cases) tuples) and ``replay``."""
        return {"train_outputs": [(costs, cases) for _, _, _, cases, costs in self.train],
                "test_outputs": [(costs, cases) for _, cases, costs in self.test],
                "replay": {"train_at": [[b, e, n] for b, e, n, _, _ in self.train],
                           "test_at": [b for b, _, _ in self.test], "rates": self.rates}}

    @classmethod
    def from_release(cls, train_outputs: Sequence[Any], test_outputs: Sequence[Any], replay: Any,
                     options: dict[str, Any], where: str) -> "History":
        """From a release checkpoint's lists; positions from ``replay`` when it fits them, else
        inferred (module docstring)."""
        def pairs(entries: Sequence[Any], key: str) -> list[tuple[Costs, int]]:
            out = []
            for k, entry in enumerate(entries):
                if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
                    raise ReplayError(f"{where}: key 'model_state.{key}[{k}]' is not a (costs, cases) pair")
                out.append((_costs(entry[0], f"{where}: key 'model_state.{key}[{k}]'"), int(entry[1])))
            return out

        train, test = pairs(train_outputs, "train_outputs"), pairs(test_outputs, "test_outputs")
        replay = replay if isinstance(replay, dict) else {}
        train_at, test_at = replay.get("train_at"), replay.get("test_at")
        if not (isinstance(train_at, list) and len(train_at) == len(train)):
            batches = None
            if options.get("train_range"):
                try:
                    batches = parse_range(str(options["train_range"]), "train_range")
                except ReplayError:
                    batches = None
            train_at = [[k + 1, k // len(batches) + 1, batches[k % len(batches)]] if batches else [k + 1, 0, 0]
                        for k in range(len(train))]
        if not (isinstance(test_at, list) and len(test_at) == len(test)):
            freq = int(options.get("test_freq") or 50)
            test_at = [(k + 1) * freq for k in range(len(test))]
        rates = replay.get("rates") if isinstance(replay.get("rates"), list) else []
        return cls([[int(at[0]), int(at[1]), int(at[2]), cases, costs] for at, (costs, cases) in zip(train_at, train)],
                   [[int(at), cases, costs] for at, (costs, cases) in zip(test_at, test)],
                   [[int(b), str(p), dict(r)] for b, p, r in rates])

    # -- for the plots --
    def series(self, cost: str, index: int) -> tuple[list[int], list[float], list[int], list[float]]:
        """(training x, values, test x, values) of value `index` of cost `cost`."""
        tx = [e[0] for e in self.train if cost in e[4] and index < len(e[4][cost])]
        ty = [e[4][cost][index] for e in self.train if cost in e[4] and index < len(e[4][cost])]
        sx = [e[0] for e in self.test if cost in e[2] and index < len(e[2][cost])]
        sy = [e[2][cost][index] for e in self.test if cost in e[2] and index < len(e[2][cost])]
        return tx, ty, sx, sy

    def cost_names(self) -> list[str]:
        names: dict[str, None] = {}
        for e in self.train:
            names.update(dict.fromkeys(e[4]))
        for e in self.test:
            names.update(dict.fromkeys(e[2]))
        return list(names)

    def rate_changes(self) -> list[dict[str, Any]]:
        """Each rates entry after the first that differs from the one before: where it falls,
        its parameter file, and the factor every changed rate was multiplied by (None when
        they differ)."""
        out = []
        for (_, _, before), (at, params, after) in zip(self.rates, self.rates[1:]):
            factors = set()
            changed = []
            for layer, new in after.items():
                old = before.get(layer)
                if old is None:
                    continue
                for key in ("epsW", "epsB"):
                    a = old[key] if isinstance(old[key], list) else [old[key]]
                    b = new[key] if isinstance(new[key], list) else [new[key]]
                    for x, y in zip(a, b):
                        if x != y:
                            changed.append(f"{layer}.{key}")
                            factors.add(round(y / x, 6) if x else None)
            factor = factors.pop() if len(factors) == 1 else None
            out.append({"batches_done": at, "params_file": params, "changed": changed, "factor": factor})
        return out
