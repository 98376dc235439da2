"""Schedule specs: the plain dicts that name a schedule, checked and built into callables, composed,
and stretched to another budget.

A spec is ``{"name": ..., **params}``: the form notebooks, profile files and the run store write a
schedule down in. :func:`make_schedule` checks it against the policy's registry entry
(:data:`lrstudy.schedules.POLICIES`: the kind of every parameter and the relations between them)
and returns a :class:`Schedule`, a callable that knows its canonical ``spec()`` (defaults spelled
out). Two names compose other schedules:

* ``stages`` runs schedules one after another, each from its own step 0 (Caffe's
  ``start_lr_policy``; CLR Table 2); :func:`then` builds one;
* ``product`` multiplies schedules step by step (a cyclical rate under a step decay, CLR Table 4).

:func:`rescale` stretches any spec in time, so that cheaper profiles keep each schedule's shape.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .policy import Policy, scale_steps
from .schedules import POLICIES

__all__ = ["Schedule", "Stages", "Product", "ScheduleLike", "make_schedule", "as_schedule", "then", "rescale",
           "sample"]


def _fail(name: str, param: str, value: Any, allowed: str) -> None:
    raise ValueError(f"schedule {name!r}: {param}={value!r} is invalid; {allowed}")


def _checked(name: str, policy: Policy, params: dict) -> dict:
    """Every parameter checked against its kind, then the policy's relations; all of them returned
    in canonical form, defaults spelled out (but ``quiet`` ones left out at their default)."""
    allowed = policy.parameters()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        _fail(name, unknown[0], params[unknown[0]], f"the parameters of {name!r} are {allowed}")
    defaults = policy.defaults()
    values = {**defaults, **params}
    missing = [p for p in allowed if p not in values]
    if missing:
        raise ValueError(f"schedule {name!r}: missing parameter {missing[0]!r} (needs {allowed})")
    out = {}
    for key in allowed:
        value, kind = values[key], policy.kinds[key]
        if value is None and key in defaults and defaults[key] is None:  # an optional parameter left unset
            out[key] = None
            continue
        problem = kind.refuse(value)
        if problem:
            _fail(name, key, value, problem)
        out[key] = kind.canonical(value)
    for relation in policy.relations:
        broken = relation(out)
        if broken:
            _fail(name, broken[0], out[broken[0]], broken[1])
    return {k: v for k, v in out.items() if not (k in policy.quiet and v == defaults[k])}


@dataclass(frozen=True, eq=False)
class Schedule:
    """A checked policy with its parameters; call it with a step to get the value."""

    name: str
    params: Mapping[str, Any]

    def __call__(self, step: float) -> float:
        return POLICIES[self.name].function(step, **self.params)

    def spec(self) -> dict:
        """The plain-dict form that ``make_schedule(**spec)`` turns back into this schedule."""
        return {"name": self.name, **{k: list(v) if isinstance(v, (list, tuple)) else v
                                      for k, v in self.params.items()}}

    def then(self, other: ScheduleLike, at: int) -> Stages:
        """This schedule until step ``at``, then ``other`` (starting from its own step 0)."""
        return then(self, other, at)

    def __eq__(self, other: object) -> bool:
        return hasattr(other, "spec") and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"


@dataclass(frozen=True, eq=False)
class Stages:
    """Schedules run one after another. Stage ``i`` covers ``[start_i, start_{i+1})`` and is
    evaluated at ``step - start_i``; the first stage starts at step 0."""

    starts: tuple[int, ...]
    schedules: tuple[Schedule | Stages | Product, ...]
    name: str = "stages"

    def __call__(self, step: float) -> float:
        i = bisect.bisect_right(self.starts, step) - 1
        return self.schedules[i](step - self.starts[i])

    def spec(self) -> dict:
        return {"name": "stages",
                "stages": [{"start": s, **sch.spec()} for s, sch in zip(self.starts, self.schedules)]}

    then = Schedule.then
    __eq__ = Schedule.__eq__
    __hash__ = Schedule.__hash__

    def __repr__(self) -> str:
        return "stages(" + ", ".join(f"@{s}: {sch!r}" for s, sch in zip(self.starts, self.schedules)) + ")"


@dataclass(frozen=True, eq=False)
class Product:
    """The product of several schedules at the same step: e.g. a cyclical rate whose bounds are cut
    by an original implementation's step schedule (CLR Table 4: "the fixed learning rate and the
    range are reduced according to the same schedule"), cycles keeping their phase across the cut."""

    factors: tuple[Schedule | Stages | Product, ...]
    name: str = "product"

    def __call__(self, step: float) -> float:
        value = 1.0
        for factor in self.factors:
            value *= factor(step)
        return value

    def spec(self) -> dict:
        return {"name": "product", "factors": [f.spec() for f in self.factors]}

    then = Schedule.then
    __eq__ = Schedule.__eq__
    __hash__ = Schedule.__hash__

    def __repr__(self) -> str:
        return " * ".join(repr(f) for f in self.factors)


ScheduleLike = Schedule | Stages | Product | Mapping


def make_schedule(name: str, **params: Any) -> Schedule | Stages | Product:
    """Build a schedule from its name and parameters, checking both.

    >>> make_schedule("triangular", base_lr=0.001, max_lr=0.006, step_size=2000)(2000)
    0.006
    """
    if name == "stages":
        return _make_stages(params)
    if name == "product":
        factors = params.get("factors")
        if set(params) != {"factors"} or not isinstance(factors, (list, tuple)) or len(factors) < 2:
            raise ValueError("schedule 'product' takes one parameter, 'factors': a list of two or more schedule specs")
        return Product(tuple(as_schedule(f) for f in factors))
    if name not in POLICIES:
        raise ValueError(f"unknown schedule {name!r}; known schedules: {sorted([*POLICIES, 'stages', 'product'])}")
    return Schedule(name, _checked(name, POLICIES[name], dict(params)))


def as_schedule(value: ScheduleLike) -> Schedule | Stages | Product:
    """A schedule object as it is, a spec built into one."""
    return value if isinstance(value, (Schedule, Stages, Product)) else make_schedule(**value)


def then(first: ScheduleLike, second: ScheduleLike, at: int) -> Stages:
    """``first`` until step ``at``, then ``second`` from its own step 0 (e.g. a triangle, then a
    constant tail; or CLR Table 2's three triangular2 stages)."""
    first, second = as_schedule(first), as_schedule(second)
    if isinstance(first, Stages):
        if at <= first.starts[-1]:
            raise ValueError(f"then: at={at} must come after the last stage's start ({first.starts[-1]})")
        return make_schedule("stages", stages=[*first.spec()["stages"], {"start": at, **second.spec()}])
    return make_schedule("stages", stages=[{"start": 0, **first.spec()}, {"start": at, **second.spec()}])


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
        if isinstance(start, bool) or not isinstance(start, (int, float)) or start < 0 or int(start) != start:
            raise ValueError(f"schedule 'stages': stage {i} start={start!r} must be a whole step >= 0")
        starts.append(int(start))
        schedules.append(make_schedule(**spec))
    if starts[0] != 0 or starts != sorted(set(starts)):
        raise ValueError(f"schedule 'stages': starts {starts} must begin at 0 and strictly increase")
    return Stages(tuple(starts), tuple(schedules))


def rescale(spec: Mapping[str, Any], factor: float) -> dict:
    """The same schedule stretched in time by ``factor``, as a spec: every parameter changes as its
    kind says (step counts multiplied and rounded, at least 1; a per-step decay ``gamma`` raised to
    ``1/factor``), so that the value at the same *fraction* of training is unchanged. Used by the
    cheaper profiles."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
        raise ValueError(f"rescale: factor={factor!r} must be > 0")
    spec = dict(spec)
    name = spec.pop("name")
    if name == "product":
        return make_schedule("product", factors=[rescale(f, factor) for f in spec["factors"]]).spec()
    if name == "stages":
        stages = []
        for stage in spec["stages"]:
            stage = dict(stage)
            start = stage.pop("start")
            stages.append({"start": scale_steps(start, factor, minimum=0), **rescale(stage, factor)})
        return make_schedule("stages", stages=stages).spec()
    if name not in POLICIES:
        raise ValueError(f"rescale: unknown schedule {name!r}")
    policy = POLICIES[name]
    for key, kind in policy.kinds.items():
        if kind.stretch is not None and spec.get(key) is not None:
            spec[key] = kind.stretch(spec[key], factor)
    if policy.after_rescale is not None:
        spec = policy.after_rescale(spec)
    return make_schedule(name, **spec).spec()


def sample(schedule: Callable[[float], float], steps: int, points: int | None = None) -> list[tuple[int, float]]:
    """``(step, value)`` pairs over ``[0, steps)`` -- every step, or ``points`` evenly spaced
    ones (always including the first and last) for plotting long schedules."""
    if points is None or points >= steps:
        grid = range(steps)
    else:
        grid = sorted({round(i * (steps - 1) / (points - 1)) for i in range(points)})
    return [(s, schedule(s)) for s in grid]
