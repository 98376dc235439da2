"""Learning-rate and momentum schedules of the three papers, as pure functions of the step.

Conventions used by every schedule here:

* ``step`` counts optimizer updates from 0: the value at ``step = t`` is the one used by update
  number ``t + 1``. (This is the papers' "iteration"; with gradient accumulation or several
  processes it is still one *optimizer update*, never one forward pass.) Fractional steps are
  allowed and mean what they say.
* A policy is a plain function ``policy(step, **params) -> float``. Nothing is stored between calls,
  so a schedule can be evaluated at any step in any order, resumed anywhere, and tested at the
  landmarks the papers describe. Schedules with an end (1cycle) hold their last value past it.
* ``make_schedule(name, **params)`` validates the parameters and returns a :class:`Schedule`: a
  callable that also knows its ``spec()`` -- the plain dict (``{"name": ..., **params}``, defaults
  spelled out) that notebooks, profile files and the run store use to name it.
* Momentum schedules are schedules too (``one_cycle_momentum``, ``onecycle_torch_momentum``,
  ``fixed``); :mod:`lrstudy.scheduler` applies them to SGD's momentum or Adam's beta1.

Policies by paper:

* CLR (Smith 2017): ``triangular``, ``triangular2``, ``exp_range`` (two readings), each with a
  ``window`` (triangle, Welch, Hann) and optional asymmetric ``step_size_down``; ``clr_decay``;
  Caffe's ``fixed``, ``step``, ``multistep``/``piecewise`` and ``exp``.
* SGDR (Loshchilov & Hutter 2017): ``sgdr`` (eq. 5 with per-batch fractional T_cur).
* Super-convergence (Smith & Topin 2017/18): ``one_cycle`` and ``one_cycle_momentum`` (the
  paper's linear form with a final annihilation); ``onecycle_torch`` and
  ``onecycle_torch_momentum`` (PyTorch's ``OneCycleLR``, fastai-style cosine by default).
* Composition: ``stages`` runs schedules one after another, each from its own step 0 (Caffe's
  ``start_lr_policy``; CLR Table 2); :func:`then` builds one. ``product`` multiplies schedules
  step by step (a cyclical rate under a step decay, CLR Table 4).
"""

from __future__ import annotations

import bisect
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

__all__ = ["POLICIES", "Schedule", "Stages", "Product", "make_schedule", "then", "rescale", "scale_steps", "sample",
           "sgdr_cycle_ends", "sgdr_stop_budget"]


# ---------------------------------------------------------------------------------------------
# Constant and step-wise policies (Caffe)
# ---------------------------------------------------------------------------------------------


def fixed(step: float, lr: float) -> float:
    """A constant (Caffe ``lr_policy: "fixed"``); also a constant momentum."""
    return lr


def piecewise(step: float, values: Sequence[float], boundaries: Sequence[int]) -> float:
    """``values[i]`` from ``boundaries[i-1]`` (inclusive) up to ``boundaries[i]`` (exclusive).

    A "fixed" rate changed by hand between solver runs, as in Caffe's CIFAR-10 "full" example
    (0.001 until 60,000, 0.0001 until 65,000, then 0.00001), or any list of stages.
    """
    return values[bisect.bisect_right(boundaries, step)]


def step_decay(step: float, base_lr: float, gamma: float, step_size: int) -> float:
    """Caffe's ``step``: ``base_lr * gamma ** floor(step / step_size)``."""
    return base_lr * gamma ** math.floor(step / step_size)


def multistep(step: float, base_lr: float, gamma: float, milestones: Sequence[int]) -> float:
    """Caffe's ``multistep`` (PyTorch's ``MultiStepLR``): times ``gamma`` at each milestone passed."""
    return base_lr * gamma ** bisect.bisect_right(milestones, step)


def exp(step: float, base_lr: float, gamma: float) -> float:
    """Caffe's ``exp``: ``base_lr * gamma**step``."""
    return base_lr * gamma**step


def exp_sweep(step: float, start_lr: float, end_lr: float, total_steps: int) -> float:
    """A geometric sweep from ``start_lr`` (step 0) to ``end_lr`` (step ``total_steps - 1``), held
    after: the exponential LR range test (fastai, pytorch-lr-finder)."""
    pct = min(step / max(total_steps - 1, 1), 1.0)
    return start_lr * (end_lr / start_lr) ** pct


# ---------------------------------------------------------------------------------------------
# CLR: cyclical policies
# ---------------------------------------------------------------------------------------------

WINDOWS = ("triangle", "welch", "hann")


def cycle_position(step: float, step_size: int, step_size_down: int | None = None) -> tuple[float, int]:
    """Where ``step`` falls in its cycle: ``(h, cycle)`` with ``h`` rising linearly from 0 at the
    cycle's start to 1 after ``step_size`` steps and back to 0 after ``step_size_down`` more,
    and ``cycle`` counted from 0.

    For equal halves this is CLR's ``h = max(0, 1 - |t/s - 2c - 1|)`` with ``c = floor(t / 2s)``
    (the paper's Torch and Caffe code, with a 0-based cycle).
    """
    down = step_size if step_size_down is None else step_size_down
    length = step_size + down
    cycle = math.floor(step / length)
    into = step - cycle * length
    if down == step_size:  # the paper's own expression, so landmark values are exact
        return max(0.0, 1.0 - abs(step / step_size - 2 * cycle - 1)), cycle
    return (into / step_size if into < step_size else 1.0 - (into - step_size) / down), cycle


def window_height(h: float, window: str) -> float:
    """The cycle's shape (CLR §3.1): the triangle itself, Welch's parabola ``1 - (1 - h)**2`` or
    Hann's raised cosine ``(1 - cos(pi h)) / 2`` -- all 0 at the cycle's ends and 1 at its peak."""
    if window == "triangle":
        return h
    if window == "welch":
        return 1.0 - (1.0 - h) ** 2
    return (1.0 - math.cos(math.pi * h)) / 2.0


def triangular(step: float, base_lr: float, max_lr: float, step_size: int,
               step_size_down: int | None = None, window: str = "triangle") -> float:
    """CLR's triangular policy: from ``base_lr`` up to ``max_lr`` in ``step_size`` steps and back
    down in ``step_size_down`` (default: as many); one cycle is their sum."""
    h, _ = cycle_position(step, step_size, step_size_down)
    return base_lr + (max_lr - base_lr) * window_height(h, window)


def triangular2(step: float, base_lr: float, max_lr: float, step_size: int,
                step_size_down: int | None = None, window: str = "triangle") -> float:
    """Triangular, with the amplitude ``max_lr - base_lr`` halved at the end of every cycle
    (CLR Appendix A: ``(1 - |x|) / 2**cycle`` with a 0-based cycle)."""
    h, cycle = cycle_position(step, step_size, step_size_down)
    return base_lr + (max_lr - base_lr) * window_height(h, window) / 2**cycle


def exp_range(step: float, base_lr: float, max_lr: float, step_size: int, gamma: float,
              bounds: str = "both", step_size_down: int | None = None, window: str = "triangle") -> float:
    """Cyclical, with bounds declining by ``gamma**step``. Two readings differ a lot late in training:

    * ``bounds="both"`` -- the CLR paper's text: "each boundary value declines by an exponential
      factor of gamma^iteration", i.e. ``(base_lr + (max_lr - base_lr) * h) * gamma**step``;
    * ``bounds="amplitude"`` -- the Keras code the paper points to (bckenstler/CLR) and PyTorch's
      ``CyclicLR(mode="exp_range")``: only the amplitude declines, the floor stays at ``base_lr``:
      ``base_lr + (max_lr - base_lr) * h * gamma**step``.
    """
    h, _ = cycle_position(step, step_size, step_size_down)
    height = window_height(h, window)
    decay = gamma**step
    if bounds == "both":
        return (base_lr + (max_lr - base_lr) * height) * decay
    return base_lr + (max_lr - base_lr) * height * decay


def welch(step: float, base_lr: float, max_lr: float, step_size: int, step_size_down: int | None = None) -> float:
    """Triangular cycles shaped as a parabola (CLR §3.1's Welch window)."""
    return triangular(step, base_lr, max_lr, step_size, step_size_down, window="welch")


def hann(step: float, base_lr: float, max_lr: float, step_size: int, step_size_down: int | None = None) -> float:
    """Triangular cycles shaped as a raised cosine (CLR §3.1's Hann window)."""
    return triangular(step, base_lr, max_lr, step_size, step_size_down, window="hann")


def clr_decay(step: float, base_lr: float, max_lr: float, step_size: int) -> float:
    """CLR's "decay" control (§4.1.1): start at ``max_lr``, fall linearly to ``base_lr`` over
    ``step_size`` steps, then stay at ``base_lr``."""
    progress = min(step, step_size) / step_size
    return max_lr - (max_lr - base_lr) * progress


# ---------------------------------------------------------------------------------------------
# SGDR
# ---------------------------------------------------------------------------------------------


def sgdr_cycle(epoch: float, T_0: float, T_mult: float) -> tuple[int, float, float]:
    """``(i, start, T_i)`` of the cycle that contains ``epoch``: cycle ``i`` (from 0) starts at
    ``start = T_0 (1 + T_mult + ... + T_mult**(i-1))`` and lasts ``T_i = T_0 * T_mult**i`` epochs.
    Walked cycle by cycle rather than through a logarithm, so restart epochs are exact."""
    i, start, length = 0, 0.0, float(T_0)
    while epoch >= start + length:
        start += length
        length *= T_mult
        i += 1
    return i, start, length


def sgdr(step: float, eta_max: float, eta_min: float, T_0: float, steps_per_epoch: float,
         T_mult: float = 1.0, restart_decay: float = 1.0, sample: str = "end") -> float:
    """SGDR's eq. (5): ``eta_min + (eta_max - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``.

    ``T_cur`` is counted in epochs since the last restart and advances by ``1/steps_per_epoch``
    with every update (per-batch, fractional). Restarts fall after ``T_0``, ``T_0 + T_0 T_mult``, ...
    epochs; ``T_mult`` may be any real >= 1. ``restart_decay`` multiplies both ``eta_max`` and
    ``eta_min`` at every restart (1 = the paper's constant bounds).

    ``sample`` says where in its batch an update reads the schedule:

    * ``"end"`` (default) -- at ``T_cur = (t + 1) / steps_per_epoch``: the last update of a cycle
      uses exactly ``eta_min`` (the paper: "eta_t = eta_min when T_cur = T_i"), so the weights at a
      cycle's end are the paper's recommended solution;
    * ``"start"`` -- at ``T_cur = t / steps_per_epoch``: the first update of a cycle uses exactly
      ``eta_max`` and ``eta_min`` is never reached, as in the released code (``SGDR_WRNs.py`` sets
      the rate after each batch) and PyTorch's ``CosineAnnealingWarmRestarts`` stepped with
      fractional epochs. The two differ by one batch.
    """
    # The cycle is the one in which the update begins; "end" reads T_cur where the update ends,
    # capped at T_i, so an update that closes a cycle gets eta_min exactly.
    i, start, length = sgdr_cycle(step / steps_per_epoch, T_0, T_mult)
    epoch = (step + 1) / steps_per_epoch if sample == "end" else step / steps_per_epoch
    t_cur = min(epoch - start, length)
    scale = restart_decay**i
    hi, lo = eta_max * scale, eta_min * scale
    return lo + (hi - lo) * (1 + math.cos(math.pi * t_cur / length)) / 2


def sgdr_cycle_ends(T_0: float, T_mult: float, budget: float) -> list[float]:
    """Epochs at which SGDR cycles end (restarts happen), up to ``budget`` epochs.

    >>> sgdr_cycle_ends(1, 2, 200)
    [1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 127.0]
    """
    ends, start, length = [], 0.0, float(T_0)
    while start + length <= budget + 1e-9:
        start += length
        ends.append(start)
        length *= T_mult
    return ends


def sgdr_stop_budget(T_0: float, T_mult: float, budget: float) -> float:
    """The longest training within ``budget`` epochs that stops at the end of a cycle (where
    ``eta = eta_min``; SGDR's and CLR's advice), or 0 if the first cycle does not fit."""
    ends = sgdr_cycle_ends(T_0, T_mult, budget)
    return ends[-1] if ends else 0.0


# ---------------------------------------------------------------------------------------------
# 1cycle
# ---------------------------------------------------------------------------------------------


def interpolate(step: float, knots: Sequence[float], values: Sequence[float], anneal: str = "linear") -> float:
    """Piecewise interpolation through ``(knots[i], values[i])``: linear or half-cosine between
    neighbours, the first value before the first knot, the last value after the last."""
    if step <= knots[0]:
        return values[0]
    if step >= knots[-1]:
        return values[-1]
    i = bisect.bisect_right(knots, step) - 1
    pct = (step - knots[i]) / (knots[i + 1] - knots[i])
    return _anneal(values[i], values[i + 1], pct, anneal)


def _anneal(start: float, end: float, pct: float, how: str) -> float:
    if how == "cos":  # PyTorch's OneCycleLR form, kept verbatim so that the two agree to the last bit
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def one_cycle(step: float, base_lr: float, max_lr: float, step_size: int, total_steps: int,
              final_lr: float | None = None, tail: str = "linear") -> float:
    """The super-convergence paper's 1cycle: linear ``base_lr -> max_lr`` over ``step_size``
    steps, linear back to ``base_lr`` over as many, then an annihilation phase to ``final_lr``
    (default ``base_lr / 1000``) over the remaining steps; held there past ``total_steps``.

    ``tail="linear"`` decays linearly through the annihilation phase (the paper's text: "allow the
    learning rate to decrease several orders of magnitude"); ``tail="constant"`` drops to
    ``final_lr`` and holds it, as Smith's Caffe logs show (their last phase sits at base/1000).
    With ``total_steps = 2 * step_size`` this is the plain one-cycle triangle of Fig. 1a.
    """
    final = base_lr / 1000 if final_lr is None else final_lr
    if step < 2 * step_size:
        return interpolate(step, [0, step_size, 2 * step_size], [base_lr, max_lr, base_lr])
    if tail == "constant" or total_steps <= 2 * step_size:
        return final if total_steps > 2 * step_size else base_lr
    return interpolate(step, [2 * step_size, total_steps], [base_lr, final])


def one_cycle_momentum(step: float, max_momentum: float, min_momentum: float, step_size: int) -> float:
    """Cyclical momentum of 1cycle: ``max -> min`` while the rate rises, ``min -> max`` while it
    falls, then ``max`` (0.95 -> 0.85 -> 0.95 by default in the paper and in fastai)."""
    return interpolate(step, [0, step_size, 2 * step_size], [max_momentum, min_momentum, max_momentum])


def _torch_phases(total_steps: int, pct_start: float, three_phase: bool) -> list[float]:
    """End steps of OneCycleLR's phases, as PyTorch computes them."""
    if three_phase:
        return [float(pct_start * total_steps) - 1, float(2 * pct_start * total_steps) - 2, total_steps - 1]
    return [float(pct_start * total_steps) - 1, total_steps - 1]


def _torch_phase_value(step: float, ends: list[float], values: list[tuple[float, float]], anneal: str) -> float:
    step = min(step, ends[-1])  # hold the last value instead of raising "Tried to step"
    start = 0.0
    for i, end in enumerate(ends):
        if step <= end or i == len(ends) - 1:
            pct = (step - start) / (end - start)
            return _anneal(values[i][0], values[i][1], pct, anneal)
        start = end
    raise AssertionError("unreachable")


def onecycle_torch(step: float, max_lr: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
                   final_div_factor: float = 1e4, anneal: str = "cos", three_phase: bool = False) -> float:
    """PyTorch's ``OneCycleLR`` (and fastai's ``fit_one_cycle`` shape), value for value.

    Starts at ``max_lr / div_factor``, rises to ``max_lr`` by step ``pct_start * total_steps - 1``
    and anneals to ``max_lr / div_factor / final_div_factor`` by ``total_steps - 1``; with
    ``three_phase`` it first returns to the start value (by ``2 pct total - 2``) and only then
    anneals, which with ``anneal="linear"`` is the closest PyTorch gets to the paper's form.
    fastai's defaults differ: ``pct_start=0.25``, ``final_div_factor=1e5 / 25``.
    """
    initial = max_lr / div_factor
    final = initial / final_div_factor
    ends = _torch_phases(total_steps, pct_start, three_phase)
    if three_phase:
        values = [(initial, max_lr), (max_lr, initial), (initial, final)]
    else:
        values = [(initial, max_lr), (max_lr, final)]
    return _torch_phase_value(step, ends, values, anneal)


def onecycle_torch_momentum(step: float, total_steps: int, pct_start: float = 0.3, base_momentum: float = 0.85,
                            max_momentum: float = 0.95, anneal: str = "cos", three_phase: bool = False) -> float:
    """The momentum that ``OneCycleLR(cycle_momentum=True)`` sets: ``max -> base`` while the rate
    rises, back to ``max`` while it falls (and ``max`` through a third phase)."""
    ends = _torch_phases(total_steps, pct_start, three_phase)
    values = [(max_momentum, base_momentum), (base_momentum, max_momentum)]
    if three_phase:
        values.append((max_momentum, max_momentum))
    return _torch_phase_value(step, ends, values, anneal)


# ---------------------------------------------------------------------------------------------
# Registry: every policy, which of its parameters count steps, and what each parameter accepts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    function: Callable[..., float]
    step_params: tuple[str, ...] = ()  # counted in optimizer steps; stretched by `rescale`
    rate_params: tuple[str, ...] = ()  # applied once per step (gamma of exp); `rescale` adjusts them
    choices: Mapping[str, tuple] = field(default_factory=dict)  # parameters with a closed set of values
    # Parameters added after runs using this policy were stored: at their default they are left
    # out of the spec, so those runs keep their ids (a run's id hashes its schedule's spec).
    quiet: tuple[str, ...] = ()

    def parameters(self) -> list[str]:
        return list(inspect.signature(self.function).parameters)[1:]

    def defaults(self) -> dict:
        sig = inspect.signature(self.function).parameters
        return {p: sig[p].default for p in self.parameters() if sig[p].default is not inspect.Parameter.empty}


_CYCLIC_STEPS = ("step_size", "step_size_down")
_WINDOW = {"window": WINDOWS}
_LATER = ("step_size_down", "window")
POLICIES: dict[str, Policy] = {
    "fixed": Policy(fixed),
    "piecewise": Policy(piecewise, step_params=("boundaries",)),
    "step": Policy(step_decay, step_params=("step_size",)),
    "multistep": Policy(multistep, step_params=("milestones",)),
    "exp": Policy(exp, rate_params=("gamma",)),
    "exp_sweep": Policy(exp_sweep, step_params=("total_steps",)),
    "triangular": Policy(triangular, step_params=_CYCLIC_STEPS, choices=_WINDOW, quiet=_LATER),
    "triangular2": Policy(triangular2, step_params=_CYCLIC_STEPS, choices=_WINDOW, quiet=_LATER),
    "exp_range": Policy(exp_range, step_params=_CYCLIC_STEPS, rate_params=("gamma",),
                        choices={"bounds": ("both", "amplitude"), **_WINDOW}, quiet=_LATER),
    "welch": Policy(welch, step_params=_CYCLIC_STEPS),
    "hann": Policy(hann, step_params=_CYCLIC_STEPS),
    "clr_decay": Policy(clr_decay, step_params=("step_size",)),
    "sgdr": Policy(sgdr, step_params=("steps_per_epoch",), choices={"sample": ("end", "start")}),
    "one_cycle": Policy(one_cycle, step_params=("step_size", "total_steps"), choices={"tail": ("linear", "constant")}),
    "one_cycle_momentum": Policy(one_cycle_momentum, step_params=("step_size",)),
    "onecycle_torch": Policy(onecycle_torch, step_params=("total_steps",),
                             choices={"anneal": ("cos", "linear"), "three_phase": (False, True)}),
    "onecycle_torch_momentum": Policy(onecycle_torch_momentum, step_params=("total_steps",),
                                      choices={"anneal": ("cos", "linear"), "three_phase": (False, True)}),
}

# What each parameter name accepts, wherever it appears: (check, description).
_RATE = (lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "must be a finite value >= 0")
_POSITIVE = (lambda v: _is_number(v) and math.isfinite(v) and v > 0, "must be a finite value > 0")
_MOMENTUM = (lambda v: _is_number(v) and 0 <= v < 1, "must be a momentum in [0, 1)")
_CHECKS = {
    "lr": _RATE, "base_lr": _RATE, "start_lr": _POSITIVE, "end_lr": _POSITIVE, "max_lr": _RATE, "final_lr": _RATE, "eta_max": _RATE, "eta_min": _RATE,
    "max_momentum": _MOMENTUM, "min_momentum": _MOMENTUM, "base_momentum": _MOMENTUM,
    "gamma": (lambda v: _is_number(v) and 0 < v <= 1, "must be in (0, 1]"),
    "T_0": (lambda v: _is_number(v) and v > 0, "must be a number of epochs > 0"),
    "T_mult": (lambda v: _is_number(v) and 1 <= v < math.inf, "must be a real number >= 1"),
    "restart_decay": (lambda v: _is_number(v) and 0 < v <= 1, "must be in (0, 1]"),
    "pct_start": (lambda v: _is_number(v) and 0 < v < 1, "must be a fraction in (0, 1)"),
    "div_factor": (lambda v: _is_number(v) and v >= 1, "must be >= 1"),
    "final_div_factor": (lambda v: _is_number(v) and v >= 1, "must be >= 1"),
}
_STEPS = (lambda v: _is_number(v) and v > 0 and int(v) == v, "must be a whole number of steps > 0")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fail(name: str, param: str, value: Any, allowed: str) -> None:
    raise ValueError(f"schedule {name!r}: {param}={value!r} is invalid; {allowed}")


def _normalise(name: str, policy: Policy, params: dict) -> dict:
    """Check every parameter; return them all (defaults spelled out) in canonical types."""
    allowed = policy.parameters()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        _fail(name, unknown[0], params[unknown[0]], f"the parameters of {name!r} are {allowed}")
    values = {**policy.defaults(), **params}
    missing = [p for p in allowed if p not in values]
    if missing:
        raise ValueError(f"schedule {name!r}: missing parameter {missing[0]!r} (needs {allowed})")
    out = {}
    for key in allowed:
        value = values[key]
        if key in policy.choices:
            if value not in policy.choices[key] or type(value) is not type(policy.choices[key][0]):
                _fail(name, key, value, f"allowed: {list(policy.choices[key])}")
            out[key] = value
        elif value is None:  # optional parameters left at None (step_size_down, final_lr)
            out[key] = None
        elif key in ("boundaries", "milestones"):
            if not isinstance(value, (list, tuple)) or not value or any(not _STEPS[0](b) for b in value):
                _fail(name, key, value, "must be a non-empty list of whole step counts > 0")
            if list(value) != sorted(set(value)):
                _fail(name, key, value, "must be strictly increasing")
            out[key] = [int(b) for b in value]
        elif key == "values":
            if not isinstance(value, (list, tuple)) or any(not _RATE[0](v) for v in value):
                _fail(name, key, value, "must be a list of finite values >= 0")
            out[key] = [float(v) for v in value]
        elif key in policy.step_params:
            if key == "steps_per_epoch":
                ok = _is_number(value) and value > 0
                if not ok:
                    _fail(name, key, value, "must be a number of steps > 0")
                out[key] = float(value) if int(value) != value else int(value)
                continue
            if not _STEPS[0](value):
                _fail(name, key, value, _STEPS[1])
            out[key] = int(value)
        else:
            check, allowed_text = _CHECKS[key]
            if not check(value):
                _fail(name, key, value, allowed_text)
            out[key] = float(value)
    _check_relations(name, out)
    defaults = policy.defaults()
    return {k: v for k, v in out.items() if not (k in policy.quiet and v == defaults[k])}


def _check_relations(name: str, p: dict) -> None:
    if "values" in p and len(p["values"]) != len(p["boundaries"]) + 1:
        _fail(name, "values", p["values"], "needs exactly one more entry than boundaries")
    if "max_lr" in p and "base_lr" in p and p["max_lr"] < p["base_lr"]:
        _fail(name, "max_lr", p["max_lr"], f"must be >= base_lr ({p['base_lr']})")
    if "eta_max" in p and p["eta_max"] < p["eta_min"]:
        _fail(name, "eta_max", p["eta_max"], f"must be >= eta_min ({p['eta_min']})")
    if "min_momentum" in p and p["min_momentum"] > p["max_momentum"]:
        _fail(name, "min_momentum", p["min_momentum"], f"must be <= max_momentum ({p['max_momentum']})")
    if "base_momentum" in p and p["base_momentum"] > p["max_momentum"]:
        _fail(name, "base_momentum", p["base_momentum"], f"must be <= max_momentum ({p['max_momentum']})")
    if name == "one_cycle" and p["total_steps"] < 2 * p["step_size"]:
        _fail(name, "total_steps", p["total_steps"], f"must be >= 2 * step_size ({2 * p['step_size']})")
    if name.startswith("onecycle_torch"):
        ends = _torch_phases(p["total_steps"], p["pct_start"], p["three_phase"])
        starts = [0.0, *ends[:-1]]
        if any(e <= s for s, e in zip(starts, ends)):  # PyTorch divides by zero here
            _fail(name, "total_steps", p["total_steps"],
                  f"is too small for pct_start={p['pct_start']}: a phase would have no steps")


# ---------------------------------------------------------------------------------------------
# Schedule objects
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Schedule:
    """A validated policy with its parameters; call it with a step to get the value."""

    name: str
    params: Mapping[str, Any]

    def __call__(self, step: float) -> float:
        return POLICIES[self.name].function(step, **self.params)

    def spec(self) -> dict:
        """The plain-dict form that ``make_schedule(**spec)`` turns back into this schedule."""
        return {"name": self.name, **{k: list(v) if isinstance(v, (list, tuple)) else v
                                      for k, v in self.params.items()}}

    def then(self, other: "Schedule | Stages | Mapping", at: int) -> "Stages":
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
    schedules: tuple[Schedule | Stages, ...]
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
        return Product(tuple(_as_schedule(f) for f in factors))
    if name not in POLICIES:
        raise ValueError(f"unknown schedule {name!r}; known schedules: {sorted([*POLICIES, 'stages', 'product'])}")
    return Schedule(name, _normalise(name, POLICIES[name], dict(params)))


def _as_schedule(value: Schedule | Stages | Product | Mapping) -> Schedule | Stages | Product:
    return value if isinstance(value, (Schedule, Stages, Product)) else make_schedule(**value)


def then(first: Schedule | Stages | Mapping, second: Schedule | Stages | Mapping, at: int) -> Stages:
    """``first`` until step ``at``, then ``second`` from its own step 0 (e.g. a triangle, then a
    constant tail; or CLR Table 2's three triangular2 stages)."""
    first, second = _as_schedule(first), _as_schedule(second)
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
    value at the same *fraction* of training is unchanged. Used by the cheaper profiles."""
    if not _is_number(factor) or factor <= 0:
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
    policy = POLICIES[name]
    for key in policy.step_params:
        value = spec.get(key)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            spec[key] = _strictly_increasing([scale_steps(v, factor) for v in value])
        elif key == "steps_per_epoch":  # a rate of steps, not a count: keep it exact
            spec[key] = value * factor
        else:
            spec[key] = scale_steps(value, factor)
    for key in policy.rate_params:
        if key in spec:
            spec[key] = spec[key] ** (1.0 / factor)
    if name == "one_cycle":  # rounding must not leave the cycle longer than the run
        spec["total_steps"] = max(spec["total_steps"], 2 * spec["step_size"])
    return make_schedule(name, **spec).spec()


def scale_steps(steps: int, factor: float, minimum: int = 1) -> int:
    """A step count multiplied by ``factor`` and rounded, never below ``minimum``."""
    return max(minimum, int(round(steps * factor)))


def _strictly_increasing(values: list[int]) -> list[int]:
    out: list[int] = []
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
