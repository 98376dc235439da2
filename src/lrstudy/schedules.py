"""Learning-rate schedules as pure functions of the optimizer step.

Conventions used by every schedule here:

* ``step`` counts optimizer updates from 0: the value at ``step = t`` is the learning rate used by
  update number ``t + 1``. (This is the papers' "iteration"; with gradient accumulation or several
  processes it is still one *optimizer update*, never one forward pass.)
* A policy is a plain function ``policy(step, **params) -> float``. Nothing is stored between calls,
  so a schedule can be evaluated at any step in any order, resumed anywhere, and tested at the
  landmarks the papers describe.
* ``make_schedule(name, **params)`` validates the parameters and returns a :class:`Schedule`: a
  callable that also knows its ``spec()`` -- the plain dict (``{"name": ..., **params}``) that
  notebooks, profile files and the run store use to name it.

Stages (``make_schedule("stages", stages=[...])``) chain schedules: each stage starts at a given step
and sees the step counted from its own start, as Caffe's ``start_lr_policy`` does (CLR Table 2).
"""

from __future__ import annotations

import bisect
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

__all__ = ["POLICIES", "Schedule", "make_schedule", "rescale", "sample"]


# ---------------------------------------------------------------------------------------------
# Policies: pure functions of the step
# ---------------------------------------------------------------------------------------------


def fixed(step: float, lr: float) -> float:
    """A constant learning rate (Caffe ``lr_policy: "fixed"``)."""
    return lr


def piecewise(step: float, values: Sequence[float], boundaries: Sequence[int]) -> float:
    """``values[i]`` from ``boundaries[i-1]`` (inclusive) up to ``boundaries[i]`` (exclusive).

    This is a "fixed" rate changed by hand between solver runs, as in Caffe's CIFAR-10 "full"
    example (0.001 until iteration 60,000, then 0.0001 until 65,000, then 0.00001 until 70,000),
    and the "multistep" policy.
    """
    return values[bisect.bisect_right(boundaries, step)]


def _triangle(step: float, step_size: float) -> tuple[float, int]:
    """Height (0 at a cycle's ends, 1 at its middle) and 0-based cycle index.

    CLR §3.1 (Torch code): ``cycle = floor(1 + t/(2s))``, ``x = |t/s - 2 cycle + 1|``,
    height ``max(0, 1 - x)``; here the cycle index is 0-based, so the ``+1`` terms cancel.
    """
    cycle = math.floor(step / (2 * step_size))
    x = abs(step / step_size - 2 * cycle - 1)
    return max(0.0, 1.0 - x), cycle


def triangular(step: float, base_lr: float, max_lr: float, step_size: int) -> float:
    """CLR's triangular window: linear from ``base_lr`` up to ``max_lr`` in ``step_size`` steps
    and back down in as many; one cycle is ``2 * step_size`` steps."""
    height, _ = _triangle(step, step_size)
    return base_lr + (max_lr - base_lr) * height


def triangular2(step: float, base_lr: float, max_lr: float, step_size: int) -> float:
    """Triangular, with the amplitude ``max_lr - base_lr`` halved at the end of every cycle
    (CLR Appendix A: ``min(1, max(0, (1-|x|) / 2**cycle))`` with a 0-based cycle)."""
    height, cycle = _triangle(step, step_size)
    return base_lr + (max_lr - base_lr) * height / 2**cycle


def exp(step: float, base_lr: float, gamma: float) -> float:
    """Caffe's ``exp`` policy: ``base_lr * gamma**step``."""
    return base_lr * gamma**step


def exp_range(
    step: float, base_lr: float, max_lr: float, step_size: int, gamma: float, bounds: str = "both"
) -> float:
    """Triangular cycles whose bounds decline by ``gamma**step``.

    Two readings exist and they differ a lot late in training:

    * ``bounds="both"`` -- the CLR paper's text: "each boundary value declines by an exponential
      factor of gamma^iteration", i.e. ``(base_lr + (max_lr - base_lr) * h) * gamma**step``.
    * ``bounds="amplitude"`` -- the Keras reference code the paper points to (bckenstler/CLR) and
      PyTorch's ``CyclicLR(mode="exp_range")``: only the amplitude declines and the floor stays at
      ``base_lr``: ``base_lr + (max_lr - base_lr) * h * gamma**step``.
    """
    height, _ = _triangle(step, step_size)
    decay = gamma**step
    if bounds == "both":
        return (base_lr + (max_lr - base_lr) * height) * decay
    return base_lr + (max_lr - base_lr) * height * decay


def clr_decay(step: float, base_lr: float, max_lr: float, step_size: int) -> float:
    """CLR's "decay" control (§4.1.1): start at ``max_lr``, fall linearly to ``base_lr`` over
    ``step_size`` steps, then stay at ``base_lr``."""
    progress = min(step, step_size) / step_size
    return max_lr - (max_lr - base_lr) * progress


# ---------------------------------------------------------------------------------------------
# Registry: which parameters count steps, which are per-step rates, and how each is checked
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    function: Callable[..., float]
    step_params: tuple[str, ...] = ()  # counted in optimizer steps; scaled by `rescale`
    rate_params: tuple[str, ...] = ()  # a factor applied once per step (gamma)
    choices: Mapping[str, tuple[str, ...]] = None  # string parameters and their allowed values

    def parameters(self) -> list[str]:
        return list(inspect.signature(self.function).parameters)[1:]

    def required(self) -> list[str]:
        sig = inspect.signature(self.function).parameters
        return [p for p in self.parameters() if sig[p].default is inspect.Parameter.empty]


POLICIES: dict[str, Policy] = {
    "fixed": Policy(fixed),
    "piecewise": Policy(piecewise, step_params=("boundaries",)),
    "triangular": Policy(triangular, step_params=("step_size",)),
    "triangular2": Policy(triangular2, step_params=("step_size",)),
    "exp": Policy(exp, rate_params=("gamma",)),
    "exp_range": Policy(
        exp_range,
        step_params=("step_size",),
        rate_params=("gamma",),
        choices={"bounds": ("both", "amplitude")},
    ),
    "clr_decay": Policy(clr_decay, step_params=("step_size",)),
}

_LR_PARAMS = ("lr", "base_lr", "max_lr")


def _fail(name: str, param: str, value: Any, allowed: str) -> None:
    raise ValueError(f"schedule {name!r}: {param}={value!r} is invalid; {allowed}")


def _normalise(name: str, policy: Policy, params: dict) -> dict:
    """Check every parameter and return them with canonical types (ints for step counts)."""
    allowed = policy.parameters()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        _fail(name, unknown[0], params[unknown[0]], f"parameters of {name!r} are {allowed}")
    missing = [p for p in policy.required() if p not in params]
    if missing:
        raise ValueError(f"schedule {name!r}: missing parameter {missing[0]!r} (needs {policy.required()})")
    out = {}
    for key, value in params.items():
        if key in (policy.choices or {}):
            if value not in policy.choices[key]:
                _fail(name, key, value, f"allowed: {list(policy.choices[key])}")
            out[key] = value
        elif key == "boundaries":
            if not isinstance(value, (list, tuple)) or any(
                not _is_number(b) or b <= 0 or int(b) != b for b in value
            ):
                _fail(name, key, value, "must be a list of positive whole step counts")
            if list(value) != sorted(set(value)):
                _fail(name, key, value, "must be strictly increasing")
            out[key] = [int(b) for b in value]
        elif key == "values":
            if not isinstance(value, (list, tuple)) or any(not _is_number(v) or v < 0 for v in value):
                _fail(name, key, value, "must be a list of learning rates >= 0")
            out[key] = [float(v) for v in value]
        elif key in policy.step_params:
            if not _is_number(value) or value <= 0 or int(value) != value:
                _fail(name, key, value, "must be a whole number of steps > 0")
            out[key] = int(value)
        elif key in policy.rate_params:
            if not _is_number(value) or not 0 < value <= 1:
                _fail(name, key, value, "must be in (0, 1]")
            out[key] = float(value)
        elif key in _LR_PARAMS:
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                _fail(name, key, value, "must be a finite learning rate >= 0")
            out[key] = float(value)
        else:  # pragma: no cover - every parameter of every policy is handled above
            out[key] = value
    sig = inspect.signature(policy.function).parameters
    for key in allowed:  # spell out defaults, so a spec (and a run's id) never depends on them
        if key not in out:
            out[key] = sig[key].default
    if "values" in out and len(out["values"]) != len(out["boundaries"]) + 1:
        _fail(name, "values", out["values"], "needs exactly one more entry than boundaries")
    if "max_lr" in out and out["max_lr"] < out["base_lr"]:
        _fail(name, "max_lr", out["max_lr"], f"must be >= base_lr ({out['base_lr']})")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------
# Schedule objects
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Schedule:
    """A validated policy with its parameters; call it with a step to get the learning rate."""

    name: str
    params: Mapping[str, Any]

    def __call__(self, step: float) -> float:
        return POLICIES[self.name].function(step, **self.params)

    def spec(self) -> dict:
        """The plain-dict form that ``make_schedule(**spec)`` turns back into this schedule."""
        return {"name": self.name, **{k: _copy(v) for k, v in self.params.items()}}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (Schedule, Stages)) and self.spec() == other.spec()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"


@dataclass(frozen=True, eq=False)
class Stages:
    """Schedules run one after another. Stage ``i`` covers ``[start_i, start_{i+1})`` and is
    evaluated at ``step - start_i``; the first stage must start at step 0."""

    starts: tuple[int, ...]
    schedules: tuple[Schedule, ...]
    name: str = "stages"

    def __call__(self, step: float) -> float:
        i = bisect.bisect_right(self.starts, step) - 1
        return self.schedules[i](step - self.starts[i])

    def spec(self) -> dict:
        return {
            "name": "stages",
            "stages": [{"start": s, **sch.spec()} for s, sch in zip(self.starts, self.schedules)],
        }

    __eq__ = Schedule.__eq__

    def __repr__(self) -> str:
        return "stages(" + ", ".join(f"@{s}: {sch!r}" for s, sch in zip(self.starts, self.schedules)) + ")"


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def make_schedule(name: str, **params: Any) -> Schedule | Stages:
    """Build a schedule from its name and parameters, checking both.

    >>> make_schedule("triangular", base_lr=0.001, max_lr=0.006, step_size=2000)(2000)
    0.006
    """
    if name == "stages":
        return _make_stages(params)
    if name not in POLICIES:
        known = sorted([*POLICIES, "stages"])
        raise ValueError(f"unknown schedule {name!r}; known schedules: {known}")
    policy = POLICIES[name]
    return Schedule(name, _normalise(name, policy, dict(params)))


def _make_stages(params: dict) -> Stages:
    if set(params) != {"stages"}:
        raise ValueError(f"schedule 'stages' takes one parameter, 'stages'; got {sorted(params)}")
    stages = params["stages"]
    if not isinstance(stages, (list, tuple)) or not stages:
        raise ValueError("schedule 'stages': stages must be a non-empty list of schedule specs")
    starts, schedules = [], []
    for i, stage in enumerate(stages):
        if not isinstance(stage, Mapping) or "start" not in stage or "name" not in stage:
            raise ValueError(f"schedule 'stages': stage {i} must be a dict with 'start' and 'name'")
        spec = dict(stage)
        start = spec.pop("start")
        if not _is_number(start) or start < 0 or int(start) != start:
            raise ValueError(f"schedule 'stages': stage {i} start={start!r} must be a whole step >= 0")
        starts.append(int(start))
        schedules.append(make_schedule(**spec))
    if starts[0] != 0 or starts != sorted(set(starts)):
        raise ValueError(f"schedule 'stages': starts {starts} must begin at 0 and strictly increase")
    return Stages(tuple(starts), tuple(schedules))


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def rescale(spec: Mapping[str, Any], factor: float) -> dict:
    """The same schedule stretched in time by ``factor``: every step count is multiplied by it
    (rounded, at least 1) and every per-step rate ``gamma`` becomes ``gamma**(1/factor)``, so the
    learning rate at the same *fraction* of training is unchanged. Used by the cheaper profiles."""
    if not _is_number(factor) or factor <= 0:
        raise ValueError(f"rescale: factor={factor!r} must be > 0")
    spec = dict(spec)
    name = spec.pop("name")
    if name == "stages":
        stages = []
        for stage in spec["stages"]:
            stage = dict(stage)
            start = stage.pop("start")
            stages.append({"start": scale_steps(start, factor, minimum=0), **rescale(stage, factor)})
        return make_schedule("stages", stages=stages).spec()
    policy = POLICIES[name]
    for key in policy.step_params:
        if key in spec:
            value = spec[key]
            spec[key] = (
                [scale_steps(v, factor) for v in value] if isinstance(value, (list, tuple))
                else scale_steps(value, factor)
            )
    if "boundaries" in spec:  # stretching can merge boundaries; keep them strictly increasing
        spec["boundaries"] = _strictly_increasing(spec["boundaries"])
    for key in policy.rate_params:
        if key in spec:
            spec[key] = spec[key] ** (1.0 / factor)
    return make_schedule(name, **spec).spec()


def scale_steps(steps: int, factor: float, minimum: int = 1) -> int:
    """A step count multiplied by ``factor`` and rounded, never below ``minimum``."""
    return max(minimum, int(round(steps * factor)))


def _strictly_increasing(values: list[int]) -> list[int]:
    out = []
    for v in values:
        out.append(max(v, out[-1] + 1) if out else v)
    return out


def sample(schedule: Callable[[float], float], steps: int, points: int | None = None) -> list[tuple[int, float]]:
    """``(step, value)`` pairs over ``[0, steps)`` -- every step, or ``points`` evenly spaced
    ones (always including the first and last) for plotting long schedules."""
    if points is None or points >= steps:
        grid = range(steps)
    else:
        grid = sorted({round(i * (steps - 1) / (points - 1)) for i in range(points)})
    return [(s, schedule(s)) for s in grid]
