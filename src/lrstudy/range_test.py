"""The LR range test in its two forms, and the super-convergence paper's Hessian-free LR estimate.

* **Smith's form** (CLR §3.3; super-convergence §3): train for a few epochs while the rate rises
  *linearly* from a low to a high value, evaluate held-out accuracy along the way, and read off
  ``base_lr`` where accuracy starts to rise and ``max_lr`` where it stops rising (slows, turns
  ragged or falls); or take ``base_lr`` as a third or a quarter of ``max_lr``.
* **fastai's form**: one short sweep with the rate rising *exponentially*, watching the smoothed
  training loss, stopping once it exceeds 4x its best; suggestions from the loss curve.

:func:`lr_range_test` runs either on any model and optimizer and restores both exactly afterwards;
:func:`suggest_smith` and :func:`suggest_fastai` turn a sweep's table into suggested bounds, each
with the rule that chose them, so the study can apply them to its own stored runs too.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import torch

from .ledger import Deferred
from .schedule_specs import make_schedule
from .scheduler import set_lr_and_momentum

__all__ = ["lr_range_test", "range_schedule", "SmoothedLoss", "smoothed_sweep", "suggest_smith", "suggest_fastai",
           "HessianFreeLR"]


def range_schedule(start_lr: float, end_lr: float, num_iter: int, mode: str = "linear") -> dict:
    """The schedule of a range test, as a spec: ``triangular`` with ``step_size = num_iter`` for
    the linear form (exactly Smith's Caffe setup: "set both the stepsize and max_iter to the same
    number of iterations"), ``exp_sweep`` for fastai's form."""
    if mode == "linear":
        return make_schedule("triangular", base_lr=start_lr, max_lr=end_lr, step_size=num_iter).spec()
    if mode == "exp":
        return make_schedule("exp_sweep", start_lr=start_lr, end_lr=end_lr, total_steps=num_iter).spec()
    raise ValueError(f"range test: mode={mode!r}; allowed: 'linear', 'exp'")


def lr_range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    start_lr: float,
    end_lr: float,
    num_iter: int,
    mode: str = "linear",
    evaluate: Callable[[torch.nn.Module], float] | None = None,
    eval_every: int = 10,
    smoothing: float = 0.98,
    stop_factor: float | None = 4.0,
) -> pd.DataFrame:
    """Sweep the learning rate over ``num_iter`` updates; return one row per update.

    Columns: ``step``, ``lr``, ``loss`` (the batch's training loss), ``smooth_loss`` (bias-corrected
    exponential average with factor ``smoothing``), and ``metric`` where ``evaluate(model)`` was
    called (every ``eval_every`` updates and after the last; NaN elsewhere). ``batches`` is cycled
    if it runs out. In ``"exp"`` mode the sweep stops early once the smoothed loss exceeds
    ``stop_factor`` times its best (``None``: never). The model's and optimizer's states -- weights,
    buffers, momentum -- are restored exactly afterwards, whatever happens.
    """
    if num_iter < 2:
        raise ValueError(f"range test: num_iter={num_iter} must be >= 2")
    if not 0 <= start_lr < end_lr:
        raise ValueError(f"range test: need 0 <= start_lr < end_lr; got {start_lr}, {end_lr}")
    rate = make_schedule(**range_schedule(start_lr, end_lr, num_iter, mode))
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    rows = []
    try:
        stream = _cycle(batches)
        watch = SmoothedLoss(smoothing, stop_factor if mode == "exp" else None)
        model.train()
        for step in range(num_iter):
            lr = rate(step)
            set_lr_and_momentum(optimizer, lr)
            x, y = next(stream)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            smooth = watch.add(value)
            metric = math.nan
            if evaluate is not None and ((step + 1) % eval_every == 0 or step == num_iter - 1):
                metric = float(evaluate(model))
                model.train()
            rows.append({"step": step, "lr": lr, "loss": value, "smooth_loss": smooth, "metric": metric})
            if watch.stop:
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
    return pd.DataFrame(rows)


class SmoothedLoss:
    """fastai's view of a sweep's training loss: an exponential moving average with bias
    correction (weight ``smoothing`` on the past), and its stop rule -- the sweep is over once the
    smoothed loss is no longer finite, or exceeds ``stop_factor`` times its best so far (``None``:
    only the first)."""

    def __init__(self, smoothing: float = 0.98, stop_factor: float | None = 4.0):
        self.smoothing, self.stop_factor = smoothing, stop_factor
        self._average, self._count = 0.0, 0
        self.value, self.best = math.nan, math.inf

    def add(self, loss: float) -> float:
        """The smoothed loss after one more update's ``loss``."""
        self._count += 1
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        self.value = self._average / (1 - self.smoothing**self._count)
        if math.isfinite(self.value):
            self.best = min(self.best, self.value)
        return self.value

    @property
    def stop(self) -> bool:
        if not math.isfinite(self.value):
            return True
        return self.stop_factor is not None and self.value > self.stop_factor * self.best


def smoothed_sweep(losses: Iterable[float], smoothing: float = 0.98,
                   stop_factor: float | None = 4.0) -> tuple[np.ndarray, int]:
    """A recorded exponential sweep read as :func:`lr_range_test` reads it live: the smoothed loss
    at every update, and how many updates to keep -- those before the first at which the sweep
    would have stopped."""
    watch, smooth, keep = SmoothedLoss(smoothing, stop_factor), [], None
    for loss in losses:
        smooth.append(watch.add(float(loss)))
        if keep is None and watch.stop:
            keep = len(smooth) - 1
    return np.asarray(smooth), len(smooth) if keep is None else keep


def _cycle(batches: Iterable) -> Iterator:
    while True:
        empty = True
        for item in batches:
            empty = False
            yield item
        if empty:
            raise ValueError("range test: the batch iterable is empty")
        if iter(batches) is batches:  # a one-shot iterator cannot be restarted
            raise ValueError("range test: ran out of batches; pass a re-iterable (a list or DataLoader)")


def suggest_smith(lrs, metric, rise: float = 0.1, window: int = 3) -> dict:
    """Bounds from a linear sweep's held-out accuracy, by Smith's reading.

    The accuracy curve is first smoothed with a centred moving average of ``window`` points. Then
    ``max_lr`` is the rate at its peak (where accuracy stops rising), ``base_lr`` the first rate at
    which it has gained ``rise`` of its total rise from the start; the rule of thumb gives
    ``max_lr/3`` and ``max_lr/4`` for comparison.
    """
    df = pd.DataFrame({"lr": np.asarray(lrs, float), "metric": np.asarray(metric, float)}).dropna()
    if len(df) < 3:
        raise ValueError("suggest_smith: need at least 3 evaluated points")
    smooth = df.metric.rolling(window, center=True, min_periods=1).mean().to_numpy()
    lr = df.lr.to_numpy()
    peak = int(np.argmax(smooth))
    start = smooth[0]
    threshold = start + rise * (smooth[peak] - start)
    first = int(np.argmax(smooth[: peak + 1] >= threshold)) if smooth[peak] > start else 0
    max_lr = float(lr[peak])
    return {
        "base_lr": float(lr[first]),
        "max_lr": max_lr,
        "base_lr_third": max_lr / 3,
        "base_lr_quarter": max_lr / 4,
        "rule": (f"accuracy smoothed over {window} evaluations; max_lr at its peak; base_lr where it first "
                 f"gained {rise:.0%} of its rise; thumb rule base_lr = max_lr/3 or /4"),
    }


def suggest_fastai(lrs, smooth_loss, skip_start: float = 0.1, skip_end: int = 5) -> dict:
    """fastai-style suggestions from an exponential sweep's smoothed training loss (the first
    ``skip_start`` fraction and last ``skip_end`` points are ignored, as fastai does):

    ``valley`` -- the middle of the longest stretch over which the loss keeps falling;
    ``minimum`` -- a tenth of the rate at the lowest loss; ``steep`` -- where the loss falls
    fastest against log(lr).
    """
    lr = np.asarray(lrs, float)
    loss = np.asarray(smooth_loss, float)
    finite = np.isfinite(loss)
    if not finite.all():
        stop = int(np.argmin(finite))
        lr, loss = lr[:stop], loss[:stop]
    lo, hi = int(len(lr) * skip_start), max(int(len(lr) * skip_start) + 3, len(lr) - skip_end)
    lr, loss = lr[lo:hi], loss[lo:hi]
    if len(lr) < 3:
        raise ValueError("suggest_fastai: need at least 3 points after skipping the ends")
    # longest run of consecutive decreases
    best_len, best_start, run_start = 0, 0, 0
    for i in range(1, len(loss)):
        if loss[i] >= loss[i - 1]:
            run_start = i
        if i - run_start > best_len:
            best_len, best_start = i - run_start, run_start
    valley = best_start + best_len // 2
    slope = np.gradient(loss, np.log(lr))
    return {
        "valley": float(lr[valley]),
        "minimum": float(lr[int(np.argmin(loss))] / 10),
        "steep": float(lr[int(np.argmin(slope))]),
        "rule": "valley: middle of the longest falling stretch of the smoothed loss; "
                "minimum: lr at the lowest loss / 10; steep: steepest fall against log(lr)",
    }


class HessianFreeLR:
    """Super-convergence §4's estimate of the optimal learning rate along a run.

    From three consecutive weight vectors and the rate ``eps`` of the step between the first two,
    ``eps* = eps * sum|theta_{i+1} - theta_i| / sum|2 theta_{i+1} - theta_i - theta_{i+2}|``
    (sums over every weight), then an exponential moving average with weight ``smoothing`` -- as in
    the authors' ``L2TermComputation`` scripts (0.1, starting from 0.1; ``initial=None`` starts from 0
    with a bias correction instead, so short runs are not dominated by the start). The ratio is a secant
    estimate of 1/curvature along the step, derived for plain SGD; with momentum it is the same
    heuristic the paper plotted.

    Usage: ``tracker = HessianFreeLR(model.parameters())``, then ``tracker.observe(lr)`` after every
    ``optimizer.step()`` with the rate that step used. Holds two copies of the weights.

    The sums and the average stay on the weights' device: :meth:`advance` (what a training loop
    calls) reads nothing back, and :meth:`snapshot` is the average as a :class:`~lrstudy.ledger.Deferred`
    row value, read with the next evaluation. The arithmetic is the one the host did before, in
    float64 and in the same order, so the CPU's values are unchanged bit for bit.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], smoothing: float = 0.1, initial: float | None = 0.1,
                 keep_rows: bool = True):
        self.params = [p for p in params if p.requires_grad]
        # initial=None: start the average at 0 and divide out the start-up weight, as Adam does, so
        # that a short run's early values are not pulled towards an arbitrary starting value
        self.corrected = initial is None
        self.smoothing, self.keep_rows = smoothing, keep_rows
        device = self.params[0].device
        self._ema = torch.full((), 0.0 if initial is None else initial, dtype=torch.float64, device=device)
        self._finite = torch.zeros((), dtype=torch.int64, device=device)  # finite estimates (the bias correction counts these)
        self._history: list[tuple[torch.Tensor, float | torch.Tensor]] = [(self._flat(), math.nan)]
        self.rows: list[dict] = []
        self.count = 0  # estimates made so far

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1).double() for p in self.params])

    def advance(self, lr: float | torch.Tensor) -> torch.Tensor | None:
        """Record the weights after an update that used rate ``lr`` (a float, or a 0-dim float64
        tensor on the device); return the raw estimate, on the device, once three weight vectors
        are known (None before)."""
        self._history.append((self._flat(), lr))
        if len(self._history) < 3:
            return None
        (t0, _), (t1, lr01), (t2, _) = self._history[-3:]
        self._history = self._history[-2:]
        top = (t1 - t0).abs().sum()
        bottom = (2 * t1 - t0 - t2).abs().sum()
        raw = torch.where(bottom > 0, top * lr01 / bottom, math.inf)
        finite = torch.isfinite(raw)
        self._ema = torch.where(finite, self._ema * (1 - self.smoothing) + raw * self.smoothing, self._ema)
        self._finite += finite
        self.count += 1
        return raw

    def observe(self, lr: float) -> float | None:
        """:meth:`advance`, then the smoothed estimate read back (None before three weight vectors)."""
        raw = self.advance(lr)
        if raw is None:
            return None
        if self.keep_rows:
            self.rows.append({"update": self.count, "lr": float(lr), "estimate": raw.item(), "smoothed": self.average})
        return self.average

    @property
    def average(self) -> float:
        """The smoothed estimate (NaN before the first finite one, where the average is corrected)."""
        return self._average_of(self._ema.item(), int(self._finite.item()))

    def _average_of(self, ema: float, finite: int) -> float:
        if not self.corrected:
            return ema
        return ema / (1 - (1 - self.smoothing) ** finite) if finite else math.nan

    def snapshot(self) -> float | Deferred:
        """The smoothed estimate as it is now, for a row: NaN before any estimate, else read later."""
        if not self.count:
            return math.nan
        return Deferred(torch.stack([self._ema, self._finite.double()]),
                        lambda values: self._average_of(values[0], int(values[1])))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def state(self) -> dict:
        """Plain data to resume from (the last two weight vectors, the average, the rows)."""
        return {"history": [t for t, _ in self._history], "rates": [float(r) for _, r in self._history],
                "ema": self._ema.item(), "finite": int(self._finite.item()), "average": self.average,
                "count": self.count, "rows": list(self.rows)}

    def load_state(self, state: dict) -> None:
        device = self._ema.device  # (a checkpoint is read onto the CPU)
        self._history = list(zip([t.to(device) for t in state["history"]], state["rates"]))
        self._ema.fill_(state["ema"])
        self._finite.fill_(state["finite"])
        self.count, self.rows = state["count"], list(state["rows"])
