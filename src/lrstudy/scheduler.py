"""Using the schedules in any PyTorch training loop.

Two ways, both with ``step`` = one optimizer update:

* :func:`apply` -- stateless: ``apply(optimizer, step, lr=..., momentum=...)`` before each update
  sets every parameter group's rate (and momentum) for that update. Nothing to save or resume:
  resuming at update ``k`` means calling it with ``k``.
* :class:`ScheduledLR` -- a ``torch.optim.lr_scheduler.LRScheduler`` for loops built around
  ``scheduler.step()``: after construction the optimizer holds the values for update 0; after the
  ``k``-th ``scheduler.step()`` it holds those for update ``k``. Its ``state_dict`` holds only plain
  data (schedule specs and the step), pickles, and resumes exactly; it never raises past the end of
  a schedule (schedules with an end hold their last value) and never needs ``initial_lr``.

Schedules may be given as schedule objects (:mod:`lrstudy.schedule_specs`) or spec dicts, one for
all groups or a list with one per group (e.g. different bounds for a backbone and a head). A group's
``lr_mult`` (Caffe-style per-layer multiplier), if present, multiplies its rate. Momentum goes into
SGD-style ``momentum`` or Adam-style ``betas[0]``. Both ways, the study's trainer and its range test
put the values in with :func:`set_lr_and_momentum`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .schedule_specs import ScheduleLike, as_schedule

__all__ = ["apply", "set_lr_and_momentum", "hold_rates", "ScheduledLR", "torch_trace"]


def set_lr_and_momentum(optimizer: torch.optim.Optimizer, lr: float | Sequence[float],
                        momentum: float | Sequence[float] | None = None) -> list[float]:
    """Put one update's values into the optimizer: each group's rate is ``lr`` times the group's
    ``lr_mult`` (Caffe-style per-layer multiplier), its momentum goes into SGD-style ``momentum``
    or Adam-style ``betas[0]``. One value for every group, or a sequence with one per group.
    Returns the rates set. The only place the study writes hyperparameters into an optimizer."""
    groups = optimizer.param_groups
    lrs = _per_group(lr, len(groups), "lr")
    momenta = None if momentum is None else _per_group(momentum, len(groups), "momentum")
    _write(groups, [rate * group.get("lr_mult", 1.0) for rate, group in zip(lrs, groups)], momenta)
    return [group["lr"] for group in groups]


def hold_rates(optimizer: torch.optim.Optimizer, rates: torch.Tensor, momentum: torch.Tensor | None = None) -> None:
    """Give each parameter group a 0-dim view of ``rates`` (one per group, already times the
    group's ``lr_mult``) and of ``momentum``, once: a loop that then writes each update's values into
    those two tensors on the device (:class:`lrstudy.rates.RateTable`) sets the optimizer without
    Python values reaching it. Call again after ``optimizer.load_state_dict``, which replaces them."""
    groups = optimizer.param_groups
    _write(groups, [rates[i] for i in range(len(groups))], None if momentum is None else [momentum] * len(groups))


def _write(groups: list[dict], rates: Sequence, momenta: Sequence | None) -> None:
    for i, group in enumerate(groups):
        group["lr"] = rates[i]
        if momenta is None:
            continue
        if "betas" in group:
            group["betas"] = (momenta[i], *tuple(group["betas"])[1:])
        elif "momentum" in group:
            group["momentum"] = momenta[i]
        else:
            raise ValueError("momentum schedule given, but the optimizer's parameter groups have neither "
                             "'momentum' (SGD-style) nor 'betas' (Adam-style)")


def _per_group(value, n_groups: int, what: str) -> list:
    items = list(value) if isinstance(value, (list, tuple)) else [value] * n_groups
    if len(items) != n_groups:
        raise ValueError(f"{what}: got {len(items)} schedules for {n_groups} parameter groups; "
                         "give one schedule, or one per group")
    return items


def _schedules(value: ScheduleLike | Sequence[ScheduleLike] | None, n_groups: int, what: str):
    """One schedule object per group; schedule objects are used as they are, specs are built."""
    return None if value is None else [as_schedule(item) for item in _per_group(value, n_groups, what)]


def apply(optimizer: torch.optim.Optimizer, step: float, lr: ScheduleLike | Sequence[ScheduleLike],
          momentum: ScheduleLike | Sequence[ScheduleLike] | None = None) -> list[float]:
    """Set each group's learning rate (times its ``lr_mult``) and momentum for update ``step``;
    return the rates set. Specs are checked and built on every call -- pass schedule objects (or
    keep a :class:`ScheduledLR`) in hot loops."""
    n = len(optimizer.param_groups)
    lrs, momenta = _schedules(lr, n, "lr"), _schedules(momentum, n, "momentum")
    return set_lr_and_momentum(optimizer, [s(step) for s in lrs],
                               None if momenta is None else [m(step) for m in momenta])


class ScheduledLR(torch.optim.lr_scheduler.LRScheduler):
    """A PyTorch scheduler driven by pure-function schedules (see the module docstring).

    ``last_epoch`` is the index of the last update already done (``-1`` for a fresh start); given
    another value, the optimizer is set for that update at once -- no ``initial_lr`` is needed.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: ScheduleLike | Sequence[ScheduleLike],
                 momentum: ScheduleLike | Sequence[ScheduleLike] | None = None, last_epoch: int = -1):
        n = len(optimizer.param_groups)
        self._lr, self._momentum = _schedules(lr, n, "lr"), _schedules(momentum, n, "momentum")
        # the state is the schedules' specs: plain data that pickles and loads without code
        self.lr_specs = [s.spec() for s in self._lr]
        self.momentum_specs = None if self._momentum is None else [m.spec() for m in self._momentum]
        # Always start the base class fresh: resuming through it needs `initial_lr` in every group.
        # Its first step() writes update 0's values, so an optimizer without a momentum slot is
        # refused here, not at the first update.
        super().__init__(optimizer, last_epoch=-1)
        if last_epoch != -1:
            self.last_epoch = last_epoch
            self._write(last_epoch)

    def _write(self, step: int) -> list[float]:
        rates = set_lr_and_momentum(self.optimizer, [s(step) for s in self._lr],
                                    None if self._momentum is None else [m(step) for m in self._momentum])
        self._last_lr = rates
        return rates

    def get_lr(self) -> list[float]:
        # Called by LRScheduler.step() after it advanced last_epoch: the values for that update.
        return self._write(self.last_epoch)

    def _get_closed_form_lr(self) -> list[float]:  # used by step(epoch=...) in some torch versions
        return self.get_lr()

    def state_dict(self) -> dict:
        return {k: v for k, v in super().state_dict().items() if k not in ("_lr", "_momentum")}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._lr = [as_schedule(s) for s in self.lr_specs]
        self._momentum = None if self.momentum_specs is None else [as_schedule(s) for s in self.momentum_specs]
        self._write(self.last_epoch)


def torch_trace(make_scheduler, steps: int, lr: float = 0.1, epoch_of_step=None) -> list[tuple[float, float]]:
    """``(lr, momentum)`` that a PyTorch scheduler sets for updates ``0..steps-1``, read before each
    update, in the standard loop (``optimizer.step()`` then ``scheduler.step()``). ``make_scheduler``
    receives a fresh SGD optimizer; ``epoch_of_step(t)``, if given, is passed to
    ``scheduler.step(epoch)`` instead (CosineAnnealingWarmRestarts' per-batch use). For comparing
    PyTorch's built-ins with our schedules."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr, momentum=0.9)
    scheduler = make_scheduler(optimizer)
    out = []
    for t in range(steps):
        if epoch_of_step is not None:
            scheduler.step(epoch_of_step(t))
        group = optimizer.param_groups[0]
        out.append((group["lr"], group["momentum"]))
        optimizer.step()
        if epoch_of_step is None and t < steps - 1:
            scheduler.step()
    return out
