"""What a schedule policy is, for the registry (:data:`lrstudy.schedules.POLICIES`): its function,
the :class:`Kind` of each parameter -- which values it accepts, its canonical form in a spec, what
stretching the schedule in time does to it -- and the relations its parameters must keep.
:mod:`lrstudy.schedule_specs` applies all of this; nothing there knows a policy or a parameter by name.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["Policy", "Kind", "Relation", "choice", "at_least", "at_most", "scale_steps", "RATE", "POSITIVE_RATE",
           "MOMENTUM", "FACTOR", "DECAY_PER_STEP", "FRACTION", "DIVISOR", "EPOCHS", "GROWTH", "STEPS",
           "STEPS_PER_EPOCH", "STEP_LIST", "RATE_LIST"]


def scale_steps(steps: int, factor: float, minimum: int = 1) -> int:
    """A step count multiplied by ``factor`` and rounded, never below ``minimum``."""
    return max(minimum, int(round(steps * factor)))


@dataclass(frozen=True)
class Kind:
    """What a parameter is: why a value is refused (``refuse`` returns the reason, or None), its
    canonical form in a spec, and what stretching a schedule in time by a factor does to it
    (``stretch``; None: nothing, as for a rate)."""

    refuse: Callable[[Any], str | None]
    canonical: Callable[[Any], Any] = float
    stretch: Callable[[Any, float], Any] | None = None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _accepting(test: Callable[[Any], bool], allowed: str) -> Callable[[Any], str | None]:
    return lambda value: None if _number(value) and test(value) else allowed


def _increasing_steps(values: list[int]) -> list[int]:
    """Rounded step counts kept strictly increasing (two milestones may round to one step)."""
    out: list[int] = []
    for v in values:
        out.append(max(v, out[-1] + 1) if out else v)
    return out


MAX_STEPS = 10**9  # no schedule or run of the study comes near: a larger count is a typo (1e300)


def _whole_step(value: Any) -> bool:
    return _number(value) and math.isfinite(value) and 0 < value <= MAX_STEPS and int(value) == value


def _refuse_step_list(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)) or not value or not all(_whole_step(b) for b in value):
        return f"must be a non-empty list of whole step counts in [1, {MAX_STEPS:.0e}]"
    return None if list(value) == sorted(set(value)) else "must be strictly increasing"


RATE = Kind(_accepting(lambda v: math.isfinite(v) and v >= 0, "must be a finite value >= 0"))
POSITIVE_RATE = Kind(_accepting(lambda v: math.isfinite(v) and v > 0, "must be a finite value > 0"))
MOMENTUM = Kind(_accepting(lambda v: 0 <= v < 1, "must be a momentum in [0, 1)"))
FACTOR = Kind(_accepting(lambda v: 0 < v <= 1, "must be in (0, 1]"))
# a factor applied once per step (exp's gamma): stretched so the value at a fraction of training stays
DECAY_PER_STEP = Kind(FACTOR.refuse, stretch=lambda v, factor: v ** (1.0 / factor))
FRACTION = Kind(_accepting(lambda v: 0 < v < 1, "must be a fraction in (0, 1)"))
DIVISOR = Kind(_accepting(lambda v: 1 <= v < math.inf, "must be a finite value >= 1"))
EPOCHS = Kind(_accepting(lambda v: 0 < v < math.inf, "must be a finite number of epochs > 0"))
GROWTH = Kind(_accepting(lambda v: 1 <= v < math.inf, "must be a real number >= 1"))
STEPS = Kind(lambda v: None if _whole_step(v) else f"must be a whole number of steps in [1, {MAX_STEPS:.0e}]", int, scale_steps)
# a rate of steps, not a count: any real > 0, kept exact when stretched
STEPS_PER_EPOCH = Kind(_accepting(lambda v: 0 < v <= MAX_STEPS, f"must be a number of steps in (0, {MAX_STEPS:.0e}]"),
                       lambda v: float(v) if int(v) != v else int(v), lambda v, factor: v * factor)
STEP_LIST = Kind(_refuse_step_list, lambda v: [int(b) for b in v],
                 lambda v, factor: _increasing_steps([scale_steps(b, factor) for b in v]))
RATE_LIST = Kind(lambda v: None if isinstance(v, (list, tuple)) and all(RATE.refuse(x) is None for x in v)
                 else "must be a list of finite values >= 0", lambda v: [float(x) for x in v])


def choice(*allowed: Any) -> Kind:
    """A parameter with a closed set of values (of one type: ``True`` is not ``1``)."""
    return Kind(lambda v: None if v in allowed and type(v) is type(allowed[0]) else f"allowed: {list(allowed)}",
                lambda v: v)


# A relation between parameters: None where it holds, else (the parameter to blame, what it must be).
Relation = Callable[[Mapping[str, Any]], "tuple[str, str] | None"]


def at_least(param: str, other: str) -> Relation:
    """``param`` must not fall below ``other`` (a cycle's top below its bottom, say)."""
    return lambda p: None if p[param] >= p[other] else (param, f"must be >= {other} ({p[other]})")


def at_most(param: str, other: str) -> Relation:
    """``param`` must not exceed ``other``."""
    return lambda p: None if p[param] <= p[other] else (param, f"must be <= {other} ({p[other]})")


@dataclass(frozen=True)
class Policy:
    """A registry entry: the schedule function, the kind of each of its parameters, the relations
    between them, and ``quiet`` -- parameters added after runs using the policy were stored, left
    out of the spec at their default so that those runs keep their ids (a run's id hashes its
    schedule's spec). ``after_rescale`` restores a relation that rounding each step count on its
    own may break."""

    function: Callable[..., float]
    kinds: Mapping[str, Kind]
    relations: tuple[Relation, ...] = ()
    quiet: tuple[str, ...] = ()
    after_rescale: Callable[[dict], dict] | None = None

    def __post_init__(self):
        if set(self.kinds) != set(self.parameters()):
            raise TypeError(f"policy {self.function.__name__}: kinds {sorted(self.kinds)} must name exactly its "
                            f"parameters {self.parameters()}")

    def parameters(self) -> list[str]:
        return list(inspect.signature(self.function).parameters)[1:]

    def defaults(self) -> dict:
        sig = inspect.signature(self.function).parameters
        return {p: sig[p].default for p in self.parameters() if sig[p].default is not inspect.Parameter.empty}
