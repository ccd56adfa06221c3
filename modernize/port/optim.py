"""The release's update rule as a torch optimizer (engine.md §4.2, §4.3, §4.4).

:class:`ReleaseSGD` applies §4.2 from ``param.grad`` (the port's summed loss, see
convert.py on sign and scale), with the rate schedules of §4.3
(:func:`schedule_rate`), the weight constraints of §3.2/§3.4, the experimental
superEps update of §4.4 and the driver's ``--wupdate-freq`` (§4.2: accumulation
over several minibatches).
:func:`release_param_groups` reads one group per matrix and per bias from the
layer-parameter file.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from ...errors import ReplayError
from .convert import WEIGHT_TYPES
from .network import ReleaseNet


def schedule_rate(kind: str, base: float, progress: float, tgt_factor: float = 1.0, noise_stdev: float = 0.0,
                  num_steps: int = 1, z: float = 0.0) -> float:
    """§4.3 learning rate at progress p in [0, 1] (clipped), times 1 + |z|*noiseStdev. Doubles."""
    p = min(max(progress, 0.0), 1.0)
    final = base / tgt_factor

    def exp_rate(q: float) -> float:  # base^(1 + q*(ln final/ln base - 1)), as the release wrote it
        if base == 0.0:
            return 0.0
        return base ** (1.0 + q * (math.log(final) / math.log(base) - 1.0))

    if kind == "default":
        rate = base
    elif kind == "linear":
        rate = base * (1.0 - p) + final * p
    elif kind == "exp":
        rate = exp_rate(p)
    elif kind in ("dexp", "jdexp"):
        k = max(1, num_steps)
        level = min(max(math.ceil(p * k) - 1, 0), k - 1)  # level i serves p in (i/k, (i+1)/k]

        def level_rate(i: int) -> float:
            return final if i == k - 1 else exp_rate(i / (k - 1))

        rate = level_rate(level)
        if kind == "jdexp" and level > 0 and 0.2 < p < 0.9 and p > (level + 0.5) / k:
            rate = math.sqrt(rate * level_rate(level - 1))
    else:
        raise ValueError(f"unknown schedule type '{kind}' (default, linear, exp, dexp, jdexp)")
    return rate * (1.0 + abs(z) * noise_stdev)


def _schedule_args(sched: Any) -> dict:
    if sched is None:
        return {"kind": "default"}
    p = dict(sched.params)
    return {"kind": sched.type, "tgt_factor": float(p.get("tgtFactor", 1.0)),
            "noise_stdev": float(p.get("noiseStdev", 0.0)), "num_steps": int(p.get("numSteps", 1))}


def release_param_groups(module: ReleaseNet) -> list[dict]:
    """One parameter group per owned matrix and per bias, with the parameter file's
    eps/mom/wc/schedule and the constraints (wball x fan-in, wcNormMin/Max)."""
    groups = []
    for layer in module.config.layers.values():
        if layer.type not in WEIGHT_TYPES:
            continue
        p = layer.params
        if "epsW" not in p:
            raise ReplayError(f"layer '{layer.name}': the optimizer needs its learning parameters "
                              "(give the layer-parameter file)")
        super_eps = max(float(p.get("superEps", 0.0)), 0.0)  # §4.4: the weight matrices only, as the engine
        if super_eps > 0 and layer.type == "treefc":
            raise ReplayError(f"layer '{layer.name}': superEps: treefc's node-wise update (engine.md §3.3) has no "
                              "superEps form; set superEps=0")
        mod = module.weight_layer(layer.name)
        for i, src in enumerate(layer.weight_sources):
            if src is None:
                groups.append({"params": [mod.weight[i]], "name": f"{layer.name}.weight.{i}", "kind": layer.type,
                               "eps": p["epsW"][i], "mom": p["momW"][i], "wc": p["wc"][i], "super_eps": super_eps,
                               "schedule": _schedule_args(p["schedW"]), "wball": p["wballNormed"][i],
                               "norm_min": p.get("wcNormMin", [0.0] * (i + 1))[i],
                               "norm_max": p.get("wcNormMax", [0.0] * (i + 1))[i]})
                if layer.type == "treefc":  # §3.3: each node's rate and decay divided by its leaf count
                    counts = layer.attrs["tree"].leaf_counts()
                    groups[-1]["leaf_counts"] = torch.tensor(counts, dtype=torch.float32).reshape(-1, 1)
        groups.append({"params": [mod.bias], "name": f"{layer.name}.bias", "kind": "bias", "eps": p["epsB"],
                       "mom": p["momB"], "wc": 0.0, "schedule": _schedule_args(p["schedB"]),
                       "wball": 0.0, "norm_min": 0.0, "norm_max": 0.0})
    return groups


def _f32(v: float) -> float:
    return float(np.float32(v))


class ReleaseSGD(torch.optim.Optimizer):
    """The release's momentum update (engine.md §4.2), per matrix:

        G   = -(1/N) dE/dW          (= -param.grad / N: the port's loss E is summed over cases)
        inc <- mom * inc + eps * G
        inc <- inc + (-wc * eps) * W      if wc > 0
        W   <- W + inc

    then the constraints (§3.2, §3.4: max-norm ``wball`` per output vector, conv's
    ``wcNormMin/Max``). A treefc matrix takes its own node-wise rule (§3.3): node u with
    n_u leaves below it uses eps/n_u and wc/n_u, ``inc <- mom*inc + eps_u*(G - wc_u*W)``.

    A weight matrix whose layer has ``superEps`` > 0 (group key ``super_eps``) takes §4.4's
    increment instead, as written (hard-coded 0.9; Gavg where Gavg² was meant; superMom
    unused), with state ``gavg`` and ``g2avg`` starting at zero::

        gavg  <- mom * gavg  + (1 - mom) * G
        g2avg <- mom * g2avg + (1 - mom) * G*G
        inc   <- 0.9 * inc + (eps * G) / sqrt(g2avg - gavg + superEps)

    NaN where the root's argument is negative, as float arithmetic gives (no guard).

    ``update_freq`` F > 1 (the driver's ``--wupdate-freq``, §4.2): :meth:`step` is called
    once per minibatch and G is divided by N = F x ``minibatch`` (nominal). fc and local
    matrices without superEps fold each minibatch's ``eps*G`` into ``inc`` as the engine's
    GEMM does (momentum on the first minibatch only); the others (conv, treefc, biases,
    superEps) sum G in state ``grad``. Decay, step and constraints (and, for the summed G,
    the increment) happen on every F-th call; :attr:`accumulated` counts the calls between.

    The learning rate sits inside the momentum term and the decay is
    multiplied by it; with the mean loss L = E/N this is ``v <- mu v - eps dL/dw -
    eps wc w; w <- w + v``, the paper's rule. torch.optim.SGD (``v <- mu v + g + wc w;
    w <- w - lr v``) is the same only while the rate is constant.

    Each group carries ``eps`` (base rate), ``mom``, ``wc``, ``schedule`` (§4.3) and
    ``lr`` (the scheduled rate of the coming step, float32 like the engine's kernels);
    :meth:`set_progress` sets ``lr``. :meth:`step` needs the minibatch size N. A
    parameter without a gradient is left alone, as the engine skips matrices that got
    no gradient. Matrices with base rate 0 never move.
    """

    def __init__(self, params: Iterable[Any], eps: float = 0.01, mom: float = 0.9, wc: float = 0.0,
                 schedule: dict | None = None, *, update_freq: int = 1, minibatch: int | None = None) -> None:
        defaults = {"eps": eps, "mom": mom, "wc": wc, "schedule": schedule or {"kind": "default"},
                    "wball": 0.0, "norm_min": 0.0, "norm_max": 0.0, "kind": "other", "name": "", "super_eps": 0.0}
        super().__init__(params, defaults)
        for group in self.param_groups:
            group.setdefault("lr", _f32(group["eps"]))
        if update_freq < 1:
            raise ValueError(f"update_freq must be >= 1 (got {update_freq})")
        if update_freq > 1 and (minibatch is None or minibatch < 1):
            raise ValueError("update_freq > 1 needs the nominal minibatch size (N = update_freq x minibatch)")
        self.update_freq = update_freq
        self.minibatch = minibatch
        self.accumulated = 0  # minibatches summed since the last applied update (0 ... update_freq - 1)

    @classmethod
    def for_module(cls, module: ReleaseNet, *, update_freq: int = 1, minibatch: int | None = None) -> "ReleaseSGD":
        return cls(release_param_groups(module), update_freq=update_freq, minibatch=minibatch)

    def set_progress(self, progress: float, z: float | Mapping[str, float] | torch.Generator | None = None) -> None:
        """Rates of the coming steps at schedule progress p (§4.3). Noise draws z ~ N(0,1):
        one per matrix from `z` (a number, a {group name: z} map, or a generator; default
        a fresh draw from torch's generator) -- used only where noiseStdev > 0."""
        for group in self.param_groups:
            s = dict(group["schedule"])
            kind = s.pop("kind")
            zz = 0.0
            if s.get("noise_stdev", 0.0) > 0:
                if isinstance(z, Mapping):
                    zz = float(z[group["name"]])
                elif isinstance(z, (int, float)):
                    zz = float(z)
                else:
                    zz = float(torch.randn((), generator=z))
            group["lr"] = _f32(schedule_rate(kind, group["eps"], progress, z=zz, **s))

    @torch.no_grad()
    def step(self, cases: int, closure=None):  # type: ignore[override]
        """One minibatch of `cases` cases; the update is applied on every update_freq-th call."""
        if cases < 1:
            raise ValueError(f"cases must be >= 1 (got {cases})")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        first = self.accumulated == 0
        due = self.accumulated + 1 >= self.update_freq
        self.accumulated = 0 if due else self.accumulated + 1
        # §1.5: N is the minibatch's cases, or F x the nominal minibatch size when F > 1
        scale = _f32(-1.0 / (cases if self.update_freq == 1 else self.update_freq * self.minibatch))
        for group in self.param_groups:
            if group["eps"] <= 0:
                continue  # §4.2: a matrix with base rate 0 gets no gradient and no update
            eps, mom, wc = group["lr"], _f32(group["mom"]), _f32(group["wc"])
            super_eps = _f32(group.get("super_eps", 0.0))
            decay = _f32(np.float32(-wc) * np.float32(eps))
            folds = group.get("kind") in ("fc", "local") and super_eps <= 0  # the engine's non-useGrad path
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "inc" not in state:
                    state["inc"] = torch.zeros_like(p)
                inc = state["inc"]
                g = p.grad * scale                       # G = -(1/N) dE/dW
                if folds:                                # fc, local: inc <- mom*inc + eps*G in backward,
                    g.mul_(eps)                          # separate roundings, as the engine's kernel:
                    inc.mul_(mom if first else 1.0).add_(g)  # inc*mom, G*eps, their sum (no FMA)
                    if not due:
                        continue
                else:                                    # the useGrad path: G summed over the minibatches
                    if not first and "grad" in state:
                        g = state["grad"].add_(g)
                    state["grad"] = g
                    if not due:
                        continue
                    if "leaf_counts" in group:  # treefc (§3.3): inc <- mom*inc + eps_u*(G - wc_u*W), W += inc
                        n = group["leaf_counts"].to(p.device)
                        eps_u = torch.tensor(eps, dtype=torch.float32, device=p.device) / n
                        wc_u = torch.tensor(wc, dtype=torch.float32, device=p.device) / n
                        inc.mul_(mom).add_(eps_u * (g - wc_u * p))
                        p.add_(inc)
                        continue
                    if super_eps > 0:
                        _super_increment(state, inc, g, eps, mom, super_eps)
                    else:
                        inc.mul_(mom).add_(g * eps)      # inc*mom, G*eps, their sum (no FMA)
                if wc > 0:
                    inc.add_(p * decay)
                p.add_(inc)
                _constrain(p, group)
        return loss


def _super_increment(state: dict, inc: Tensor, g: Tensor, eps: float, mom: float, super_eps: float) -> None:
    """§4.4 as written, each operation rounded on its own as in the engine's kernel."""
    if "gavg" not in state:
        state["gavg"], state["g2avg"] = torch.zeros_like(g), torch.zeros_like(g)
    keep = _f32(np.float32(1.0) - np.float32(mom))
    gavg, g2avg = state["gavg"], state["g2avg"]
    gavg.mul_(mom).add_(g * keep)
    g2avg.mul_(mom).add_((g * g) * keep)
    # the root in float64, rounded once to float32: the correctly rounded float sqrt of the
    # engine's sqrtf (torch's float32 sqrt on the CPU can be an ulp off)
    root = torch.sqrt(((g2avg - gavg) + super_eps).double()).float()
    inc.mul_(_f32(0.9)).add_((g * eps) / root)


def _constrain(p: Tensor, group: dict) -> None:
    """§3.4 wcNormMin/Max (conv) then §3.2/§3.4/§3.5 max-norm on each output vector."""
    kind = group.get("kind")
    if kind not in WEIGHT_TYPES or kind == "treefc":  # the tree update has no constraint (§3.3)
        return
    dims = {"conv": (1, 2, 3), "fc": (1,), "local": (3, 4, 5)}[kind]
    if kind == "conv" and group.get("norm_max", 0.0) > 0:
        length = p[0].numel()
        mean = p.sum(dim=dims, keepdim=True) / float(length)
        a = torch.sqrt(((p - mean) ** 2).sum(dim=dims, keepdim=True)) / float(length)
        lo, hi = _f32(group["norm_min"]), _f32(group["norm_max"])
        factor = torch.where(a < lo, lo / a, torch.where(a > hi, hi / a, torch.ones_like(a)))
        p.mul_(factor)
    bound = _f32(group.get("wball", 0.0))
    if bound > 0:
        norm = torch.sqrt((p * p).sum(dim=dims, keepdim=True))
        p.mul_(torch.where(norm > bound, bound / norm, torch.ones_like(norm)))

