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

Schedules may be given as :class:`~lrstudy.schedules.Schedule` objects or spec dicts, one for all
groups or a list with one per group (e.g. different bounds for a backbone and a head). A group's
``lr_mult`` (Caffe-style per-layer multiplier), if present, multiplies its rate. Momentum goes into
SGD-style ``momentum`` or Adam-style ``betas[0]``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .schedule_specs import Schedule, Stages, make_schedule

__all__ = ["apply", "ScheduledLR", "torch_trace"]

ScheduleLike = Schedule | Stages | Mapping


def _specs(value: ScheduleLike | Sequence[ScheduleLike] | None, n_groups: int, what: str) -> list[dict] | None:
    if value is None:
        return None
    items = list(value) if isinstance(value, (list, tuple)) else [value] * n_groups
    if len(items) != n_groups:
        raise ValueError(f"{what}: got {len(items)} schedules for {n_groups} parameter groups; "
                         "give one schedule, or one per group")
    return [item.spec() if hasattr(item, "spec") else make_schedule(**item).spec() for item in items]


def _set_momentum(group: dict, value: float) -> None:
    if "betas" in group:
        group["betas"] = (value, *tuple(group["betas"])[1:])
    elif "momentum" in group:
        group["momentum"] = value
    else:
        raise ValueError("momentum schedule given, but the optimizer's parameter groups have neither "
                         "'momentum' (SGD-style) nor 'betas' (Adam-style)")


def apply(optimizer: torch.optim.Optimizer, step: float, lr: ScheduleLike | Sequence[ScheduleLike],
          momentum: ScheduleLike | Sequence[ScheduleLike] | None = None) -> list[float]:
    """Set each group's learning rate (times its ``lr_mult``) and momentum for update ``step``;
    return the rates set. Builds the schedules on every call -- keep a :class:`ScheduledLR`, or
    pass Schedule objects, in hot loops."""
    groups = optimizer.param_groups
    lr_specs = _specs(lr, len(groups), "lr")
    mom_specs = _specs(momentum, len(groups), "momentum")
    rates = []
    for i, group in enumerate(groups):
        rate = make_schedule(**lr_specs[i])(step) * group.get("lr_mult", 1.0)
        group["lr"] = rate
        rates.append(rate)
        if mom_specs is not None:
            _set_momentum(group, make_schedule(**mom_specs[i])(step))
    return rates


class ScheduledLR(torch.optim.lr_scheduler.LRScheduler):
    """A PyTorch scheduler driven by pure-function schedules (see the module docstring).

    ``last_epoch`` is the index of the last update already done (``-1`` for a fresh start); given
    another value, the optimizer is set for that update at once -- no ``initial_lr`` is needed.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: ScheduleLike | Sequence[ScheduleLike],
                 momentum: ScheduleLike | Sequence[ScheduleLike] | None = None, last_epoch: int = -1):
        self.lr_specs = _specs(lr, len(optimizer.param_groups), "lr")
        self.momentum_specs = _specs(momentum, len(optimizer.param_groups), "momentum")
        if self.momentum_specs is not None:
            for group in optimizer.param_groups:  # fail now, not at the first step
                _set_momentum(group, group.get("momentum", (group.get("betas") or (0.0,))[0]))
        self._build()
        # Always start the base class fresh: resuming through it needs `initial_lr` in every group.
        super().__init__(optimizer, last_epoch=-1)
        if last_epoch != -1:
            self.last_epoch = last_epoch
            self._write(last_epoch)

    def _build(self) -> None:
        self._lr = [make_schedule(**s) for s in self.lr_specs]
        self._momentum = None if self.momentum_specs is None else [make_schedule(**s) for s in self.momentum_specs]

    def _rates(self, step: int) -> list[float]:
        return [sched(step) * group.get("lr_mult", 1.0)
                for sched, group in zip(self._lr, self.optimizer.param_groups)]

    def _write(self, step: int) -> None:
        rates = self._rates(step)
        for group, rate in zip(self.optimizer.param_groups, rates):
            group["lr"] = rate
        self._set_momenta(step)
        self._last_lr = rates

    def _set_momenta(self, step: int) -> None:
        if self._momentum is not None:
            for sched, group in zip(self._momentum, self.optimizer.param_groups):
                _set_momentum(group, sched(step))

    def get_lr(self) -> list[float]:
        # Called by LRScheduler.step() after it advanced last_epoch: the values for that update.
        self._set_momenta(self.last_epoch)
        return self._rates(self.last_epoch)

    def _get_closed_form_lr(self) -> list[float]:  # used by step(epoch=...) in some torch versions
        return self.get_lr()

    def state_dict(self) -> dict:
        return {k: v for k, v in super().state_dict().items() if k not in ("_lr", "_momentum")}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._build()
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
