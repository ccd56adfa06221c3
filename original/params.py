"""The release's rules for layer-parameter files (``../shared/spec/driver.md`` §B).

Sections are matched to layers by name; sections for unknown layers are
ignored (one parameter file served several definition files). A layer that
needs parameters must have a section. Values are checked and stored in
``Layer.params`` with the release's derived values:

* norm ``scale`` is rewritten on load: divided by ``size`` for cmrnorm and by
  ``size**2`` for rnorm/cnorm (§B.2); the file's value is kept as ``scale_file``;
* ``wball`` is stored multiplied by the weights per filter (``wballNormed``);
* schedules are parsed with the named-argument grammar of §B.3. The older
  positional spelling (``dexp[250,0,4]``) was rejected by the release; lenient
  mode reads it as the notes mean it and records the fix.

Layers are checked in definition-file order (the release's dict order was
arbitrary, so which error came first there was not deterministic).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .cfgfile import CfgFile, read_cfg
from .layers import LENIENT, Layer, Network
from .values import Reader, _Refused, c_int, finite_float, py2_float

# §B.3 named-argument schedules: type -> argument names in their required order.
SCHEDULES: dict[str, tuple[str, ...]] = {
    "default": (),
    "linear": ("tgtFactor", "noiseStdev"),
    "exp": ("tgtFactor", "noiseStdev"),
    "dexp": ("tgtFactor", "noiseStdev", "numSteps"),
    "jdexp": ("tgtFactor", "noiseStdev", "numSteps"),
}
_SCHED_RE = re.compile(r"([a-z]+)\[(.*)\]", re.DOTALL)
_INT_ARGS = ("numSteps",)


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: its type and its named arguments."""

    type: str
    params: tuple[tuple[str, float], ...] = ()

    def as_dict(self) -> dict:
        return {"type": self.type, "params": dict(self.params)}

    def __str__(self) -> str:
        if not self.params:
            return self.type
        args = ",".join(f"{k}={v:g}" for k, v in self.params)
        return f"{self.type}[{args}]"


def _positional(kind: str, values: list[str]) -> tuple[tuple[str, float], ...] | None:
    """§B.3 [inferred] older spellings: 3 values (F,S,K), 2 values (F,K) or (F,S), 1 value (F)."""
    names = SCHEDULES[kind]
    nums = [py2_float(v) for v in values]
    if len(nums) == len(names):
        picked = names
    elif kind in ("dexp", "jdexp") and len(nums) == 2:
        picked = ("tgtFactor", "numSteps")
    elif len(nums) == 1 and names:
        picked = ("tgtFactor",)
    elif kind in ("linear", "exp") and len(nums) == 2:
        picked = ("tgtFactor", "noiseStdev")
    else:
        return None
    given = dict(zip(picked, nums))
    return tuple((n, int(given.get(n, 0)) if n in _INT_ARGS else given.get(n, 0.0)) for n in names)


def parse_schedule(text: str, lenient: bool = False) -> tuple[Schedule, str | None]:
    """Parse schedW/schedB text. Returns (schedule, fix) where fix describes a lenient reading.

    Raises ValueError with the reason when the text is not a schedule.
    """
    spec = text.strip()
    if spec == "default":
        return Schedule("default"), None
    match = _SCHED_RE.fullmatch(spec)
    if not match or match.group(1) not in SCHEDULES or match.group(1) == "default":
        raise ValueError(f"unknown schedule; known: {', '.join(SCHEDULES)}")
    kind, body = match.group(1), match.group(2)
    items = [piece.strip() for piece in body.split(",")]
    names = SCHEDULES[kind]
    if all("=" in item for item in items):
        pairs = [tuple(p.strip() for p in item.split("=", 1)) for item in items]
        if [k for k, _ in pairs] != list(names):
            raise ValueError(f"{kind} takes {', '.join(f'{n}=' for n in names)} in this order")
        try:
            params = tuple((k, c_int(v) if k in _INT_ARGS else finite_float(v)) for k, v in pairs)
        except _Refused as exc:
            raise ValueError(str(exc)) from None
        except ValueError:
            raise ValueError("an argument is not a number") from None
        return Schedule(kind, params), None
    if lenient and not any("=" in item for item in items):
        try:
            params = _positional(kind, items)
        except (ValueError, OverflowError):  # OverflowError: int() of an infinite numSteps
            params = None
        if params is not None:
            sched = Schedule(kind, params)
            return sched, f"read as {sched.as_dict()}"
    raise ValueError(f"{kind} takes named arguments {', '.join(f'{n}=' for n in names)} "
                     "(the positional spelling was rejected by the release)")


class _Params:
    def __init__(self, net: Network, cfg: CfgFile, lenient: bool) -> None:
        self.net = net
        self.cfg = cfg
        self.read = Reader(cfg)
        self.lenient = lenient
        self.fixes: list[str] = []

    def error(self, layer: str, key: str | None, reason: str) -> ConfigError:
        if self.cfg.has_section(layer):
            return self.read.error(layer, key, reason)
        return ConfigError(reason, file=self.cfg.path, section=layer, key=key)

    def weights(self, layer: Layer) -> dict:
        r, name, n = self.read, layer.name, len(layer.weights)
        p: dict = {
            "epsW": r.float_list(name, "epsW", length=n),
            "epsB": r.float(name, "epsB"),
            "momW": r.float_list(name, "momW", length=n),
            "momB": r.float(name, "momB"),
            "wc": r.float_list(name, "wc", [0.0] * n, length=n),
            "wball": r.float_list(name, "wball", [0.0] * n, length=n),
            "superEps": r.float(name, "superEps", 0.0),
            "superMom": r.float(name, "superMom", 0.0),
        }
        per_filter = layer.attrs.get("weightsPerFilter") or [rows for rows, _ in layer.weights]
        p["wballNormed"] = [w * f for w, f in zip(p["wball"], per_filter)]
        for key in ("schedW", "schedB"):
            text = r.text(name, key, "default")
            try:
                sched, fix = parse_schedule(text, self.lenient)
            except ValueError as exc:
                raise self.error(name, key, f"unable to parse learning rate schedule {key}={text} ({exc})") from None
            if fix:
                self.fixes.append(f"{name}: positional schedule {key}={text} {fix}")
            p[key] = sched
        if layer.type == "conv":
            p["wcNormMax"] = r.float_list(name, "wcNormMax", [0.0] * n, length=n)
            p["wcNormMin"] = r.float_list(name, "wcNormMin", [0.0] * n, length=n)
            for lo, hi in zip(p["wcNormMin"], p["wcNormMax"]):
                if lo > hi:
                    raise self.error(name, "wcNormMin", f"wcNormMin {lo} is larger than wcNormMax {hi}")
        return p

    def norm(self, layer: Layer) -> dict:
        r, name = self.read, layer.name
        p: dict = {}
        from_definition = []
        for key in ("scale", "pow"):
            old = layer.attrs.get(f"definition_{key}")
            if not r.has(name, key) and old is not None and self.lenient:
                from_definition.append(key)
                p[key] = old
            else:
                p[key] = r.float(name, key)
        if from_definition:
            self.fixes.append(f"{name}: {'/'.join(from_definition)} taken from the definition file (old layout)")
        size = layer.attrs["size"]
        p["scale_file"] = p["scale"]
        # §B.2 / engine.md §3.7: the coefficient the engine uses is scale/size (cross-map)
        # or scale/size^2 (same-map).
        p["scale"] = p["scale"] / (size if layer.type == "cmrnorm" else size * size)
        if layer.type == "cmrnorm":
            p["minDiv"] = r.float(name, "minDiv", 1.0)
        return p

    def cost(self, layer: Layer) -> dict:
        r, name = self.read, layer.name
        p: dict = {"coeff": r.float(name, "coeff")}
        if layer.type == "cost.logreg":
            p["topk"] = r.int(name, "topk", 1)
            if p["topk"] < 1:
                raise self.error(name, "topk", f"must be >= 1 (got {p['topk']})")
        if layer.type == "cost.msm":
            classes = layer.attrs.get("num_classes", 0)
            p["setSize"] = r.int(name, "setSize")
            p["threads"] = r.int(name, "threads")
            if not 1 <= p["setSize"] < classes:
                raise self.error(name, "setSize", f"must be in 1..{classes - 1}, got {p['setSize']}")
            if not 1 <= p["threads"] <= 32:
                raise self.error(name, "threads", f"must be in 1..32, got {p['threads']}")
        return p

    def quant(self, layer: Layer, section: str) -> dict:
        p = {}
        for key in ("quantF", "quantB"):
            value = self.read.text(section, key, "default").lower()
            if value not in ("default", "half"):
                raise self.error(section, key, f"must be 'default' or 'half' (got {value!r})")
            p[key] = value
        return p

    def apply(self) -> list[str]:
        """Check every layer against the file; returns the section names no layer uses."""
        for layer in self.net.layers.values():
            section = layer.neuron_of or layer.name
            has = self.cfg.has_section(section)
            old_norm = layer.neuron_of is None and "definition_scale" in layer.attrs
            if layer.needs_params and not has and not (old_norm and self.lenient):
                raise self.error(layer.name, None, f"a {layer.type} layer needs a section [{layer.name}] "
                                 "in the parameter file")
            params: dict = self.quant(layer, section) if has else {"quantF": "default", "quantB": "default"}
            if old_norm and self.lenient and not has:
                params.update(self.norm(layer))
            elif layer.neuron_of is None and has:
                if layer.type in ("conv", "local", "fc", "treefc"):
                    params.update(self.weights(layer))
                elif layer.type in ("rnorm", "cnorm", "cmrnorm"):
                    params.update(self.norm(layer))
                elif layer.type == "hs":
                    params["enable"] = self.read.bool(layer.name, "enable")
                elif layer.type == "pool" and layer.attrs.get("pool") == "rand":
                    params["doMax"] = self.read.bool(layer.name, "doMax", False)
                elif layer.is_cost:
                    params.update(self.cost(layer))
            layer.params = params
        return [s for s in self.cfg.section_names() if s not in self.net.layers]


def apply_params(net: Network, cfg: CfgFile) -> list[str]:
    """Check `cfg` against `net` and fill each layer's ``params``.

    Lenient readings are appended to ``net.fixes``. Returns the sections that
    match no layer (the release ignored them silently).
    """
    worker = _Params(net, cfg, net.mode == LENIENT)
    unused = worker.apply()
    net.fixes.extend(worker.fixes)
    net.params_path = cfg.path
    return unused


def load_params(net: Network, path: str | Path, display_name: str | None = None) -> list[str]:
    """Read a layer-parameter file and apply it to `net` (see :func:`apply_params`)."""
    return apply_params(net, read_cfg(path, display_name))
