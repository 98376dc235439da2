"""Learning-rate and momentum schedules of the three papers, as pure functions of the step.

Conventions used by every schedule here:

* ``step`` counts optimizer updates from 0: the value at ``step = t`` is the one used by update
  number ``t + 1``. (This is the papers' "iteration"; with gradient accumulation or several
  processes it is still one *optimizer update*, never one forward pass.) Fractional steps are
  allowed and mean what they say.
* A policy is a plain function ``policy(step, **params) -> float``. Nothing is stored between calls,
  so a schedule can be evaluated at any step in any order, resumed anywhere, and tested at the
  landmarks the papers describe. Schedules with an end (1cycle) hold their last value past it.
* :data:`POLICIES` registers each policy with what its parameters are (a
  :class:`~lrstudy.policy.Kind` each) and how they must relate. :mod:`lrstudy.schedule_specs`
  turns a spec -- the plain dict ``{"name": ..., **params}`` that notebooks, profile files and the
  run store use -- into a checked, callable schedule, composes schedules and stretches them to
  another budget. A new policy is one function here and one entry in :data:`POLICIES`.
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
* Range tests: ``exp_sweep`` (fastai's exponential sweep); Smith's linear sweep is ``triangular``.
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Mapping, Sequence

from .policy import (DECAY_PER_STEP, DIVISOR, EPOCHS, FACTOR, FRACTION, GROWTH, MOMENTUM, POSITIVE_RATE, RATE,
                     RATE_LIST, STEP_LIST, STEPS, STEPS_PER_EPOCH, Policy, at_least, at_most, choice)

__all__ = ["POLICIES", "sgdr_cycle_ends", "sgdr_stop_budget"]


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
# Registry: every policy, what each of its parameters is, and how its parameters must relate
# ---------------------------------------------------------------------------------------------


def _one_more_value(p: Mapping[str, Any]) -> tuple[str, str] | None:
    ok = len(p["values"]) == len(p["boundaries"]) + 1
    return None if ok else ("values", "needs exactly one more entry than boundaries")


def _whole_cycle_fits(p: Mapping[str, Any]) -> tuple[str, str] | None:
    ok = p["total_steps"] >= 2 * p["step_size"]
    return None if ok else ("total_steps", f"must be >= 2 * step_size ({2 * p['step_size']})")


def _torch_phases_have_steps(p: Mapping[str, Any]) -> tuple[str, str] | None:
    ends = _torch_phases(p["total_steps"], p["pct_start"], p["three_phase"])
    if all(end > start for start, end in zip([0.0, *ends[:-1]], ends)):  # PyTorch divides by zero otherwise
        return None
    return "total_steps", f"is too small for pct_start={p['pct_start']}: a phase would have no steps"


_CYCLE = {"base_lr": RATE, "max_lr": RATE, "step_size": STEPS, "step_size_down": STEPS, "window": choice(*WINDOWS)}
_LATER = ("step_size_down", "window")
_ONECYCLE_TORCH = {"total_steps": STEPS, "pct_start": FRACTION, "anneal": choice("cos", "linear"),
                   "three_phase": choice(False, True)}
POLICIES: dict[str, Policy] = {
    "fixed": Policy(fixed, {"lr": RATE}),
    "piecewise": Policy(piecewise, {"values": RATE_LIST, "boundaries": STEP_LIST}, (_one_more_value,)),
    "step": Policy(step_decay, {"base_lr": RATE, "gamma": FACTOR, "step_size": STEPS}),
    "multistep": Policy(multistep, {"base_lr": RATE, "gamma": FACTOR, "milestones": STEP_LIST}),
    "exp": Policy(exp, {"base_lr": RATE, "gamma": DECAY_PER_STEP}),
    "exp_sweep": Policy(exp_sweep, {"start_lr": POSITIVE_RATE, "end_lr": POSITIVE_RATE, "total_steps": STEPS}),
    "triangular": Policy(triangular, _CYCLE, (at_least("max_lr", "base_lr"),), quiet=_LATER),
    "triangular2": Policy(triangular2, _CYCLE, (at_least("max_lr", "base_lr"),), quiet=_LATER),
    "exp_range": Policy(exp_range, {**_CYCLE, "gamma": DECAY_PER_STEP, "bounds": choice("both", "amplitude")},
                        (at_least("max_lr", "base_lr"),), quiet=_LATER),
    "clr_decay": Policy(clr_decay, {"base_lr": RATE, "max_lr": RATE, "step_size": STEPS},
                        (at_least("max_lr", "base_lr"),)),
    "sgdr": Policy(sgdr, {"eta_max": RATE, "eta_min": RATE, "T_0": EPOCHS, "steps_per_epoch": STEPS_PER_EPOCH,
                          "T_mult": GROWTH, "restart_decay": FACTOR, "sample": choice("end", "start")},
                   (at_least("eta_max", "eta_min"),)),
    "one_cycle": Policy(one_cycle, {"base_lr": RATE, "max_lr": RATE, "step_size": STEPS, "total_steps": STEPS,
                                    "final_lr": RATE, "tail": choice("linear", "constant")},
                        (at_least("max_lr", "base_lr"), _whole_cycle_fits),
                        after_rescale=lambda p: {**p, "total_steps": max(p["total_steps"], 2 * p["step_size"])}),
    "one_cycle_momentum": Policy(one_cycle_momentum, {"max_momentum": MOMENTUM, "min_momentum": MOMENTUM,
                                                      "step_size": STEPS}, (at_most("min_momentum", "max_momentum"),)),
    "onecycle_torch": Policy(onecycle_torch, {"max_lr": RATE, "div_factor": DIVISOR, "final_div_factor": DIVISOR,
                                              **_ONECYCLE_TORCH}, (_torch_phases_have_steps,)),
    "onecycle_torch_momentum": Policy(onecycle_torch_momentum, {"base_momentum": MOMENTUM, "max_momentum": MOMENTUM,
                                                                **_ONECYCLE_TORCH},
                                      (at_most("base_momentum", "max_momentum"), _torch_phases_have_steps)),
}
