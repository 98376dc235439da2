"""The bookkeeping of training, shared by a lone run (:mod:`lrstudy.train`) and a group of runs
trained as one computation (:mod:`lrstudy.fused`).

A :class:`Ledger` keeps, for each of K runs (K = 1 for a lone run), its evaluation rows and the
wall time of each, the training loss and correct predictions summed since its last row, the step
at which it diverged (if it did), and the time spent, across resumes. :func:`run_steps` drives the
updates of a training loop: it evaluates at the planned steps, writes trace rows, saves and resumes
checkpoints, and stops following a run whose loss stops being finite. A loop supplies only what is
its own -- how it makes an update and how it evaluates (a :class:`Steps`) -- so both loops write the
same rows, the same timings and one checkpoint layout: ``{"step", "ledger", "rng", "loop"}``.
"""

from __future__ import annotations

import bisect
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch

from .checkpoints import Checkpointer, StopRequested

__all__ = ["TrainResult", "Ledger", "Steps", "run_steps", "eval_steps", "DIVERGENCE_CHECK_EVERY"]

DIVERGENCE_CHECK_EVERY = 10  # updates between NaN checks (each check waits for the GPU)


@dataclass
class TrainResult:
    status: str  # "finished" or "diverged"
    rows: list[dict]
    timings: dict = field(default_factory=dict)
    diverged_at: int | None = None
    snapshots: dict | None = None  # {"steps", "probs", "labels"} when the config asks for them


def eval_steps(iterations: int, eval_every: int, extra=()) -> list[int]:
    """Steps after which the test set is evaluated: 0, every ``eval_every``, the last, and ``extra``."""
    return sorted({0, *range(eval_every, iterations, eval_every), iterations, *extra})


class Ledger:
    """Rows, wall times, running training sums and divergence of K runs that step together.

    ``schedules`` and ``momenta`` (None where a run has no momentum schedule) give each row's
    ``lr`` and ``momentum`` columns: the values of the last update before the row.
    """

    def __init__(self, schedules: Sequence[Callable[[float], float]],
                 momenta: Sequence[Callable[[float], float] | None], batch_size: int, n_train: int,
                 device: torch.device, started: float):
        runs = len(schedules)
        self.schedules, self.momenta = list(schedules), list(momenta)
        self.batch_size, self.n_train = batch_size, n_train
        self.rows: list[list[dict]] = [[] for _ in range(runs)]
        self.walls: list[list[float]] = [[] for _ in range(runs)]  # seconds since the start, per row
        self.loss_sum = torch.zeros(runs, device=device, dtype=torch.float64)
        self.correct = torch.zeros(runs, device=device, dtype=torch.int64)
        self.updates = [0] * runs  # since each run's last row
        self.diverged_at: list[int | None] = [None] * runs
        self.eval_seconds = 0.0
        self.started, self.elapsed_before = started, 0.0  # (elapsed_before: time spent before a resume)

    @property
    def training(self) -> list[int]:
        """The runs still followed (those that have not diverged)."""
        return [i for i, at in enumerate(self.diverged_at) if at is None]

    def wall(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def add(self, losses: torch.Tensor, correct: torch.Tensor) -> None:
        """One update's training loss and correct predictions, per run."""
        self.loss_sum += losses.detach().double()
        self.correct += correct
        self.updates = [n + 1 for n in self.updates]

    def diverging(self) -> list[int]:
        """Runs still followed whose loss since their last row is no longer finite."""
        finite = torch.isfinite(self.loss_sum).tolist()
        return [i for i in self.training if not finite[i]]

    def record(self, step: int, tests: Mapping[int, tuple[float, float]],
               columns: Mapping[int, dict] | None = None) -> None:
        """A row at ``step`` for each run in ``tests`` (its test loss and accuracy, NaN on a trace
        row), with the run's own ``columns`` after its rate; the run's training sums start again."""
        for i, (test_loss, test_acc) in tests.items():
            row = {"step": step, "epoch": step * self.batch_size / self.n_train,
                   "lr": self.schedules[i](max(step - 1, 0))}
            if self.momenta[i] is not None:
                row["momentum"] = self.momenta[i](max(step - 1, 0))
            row.update((columns or {}).get(i, {}))
            row.update(self._training_columns(i), test_loss=test_loss, test_acc=test_acc)
            self.rows[i].append(row)
            self.walls[i].append(self.wall())
            self.loss_sum[i] = 0
            self.correct[i] = 0
            self.updates[i] = 0

    def _training_columns(self, i: int) -> dict:
        """Mean training loss and accuracy (%) over the run's updates since its last row (NaN if none)."""
        updates = self.updates[i]
        if not updates:
            return {"train_loss": math.nan, "train_acc": math.nan}
        return {"train_loss": self.loss_sum[i].item() / updates,
                "train_acc": 100.0 * self.correct[i].item() / (updates * self.batch_size)}

    def state(self) -> dict:
        return {"rows": self.rows, "walls": self.walls, "loss_sum": self.loss_sum, "correct": self.correct,
                "updates": self.updates, "diverged_at": self.diverged_at, "eval_seconds": self.eval_seconds,
                "elapsed": self.wall()}

    def load(self, state: dict) -> None:
        self.rows, self.walls = [list(r) for r in state["rows"]], [list(w) for w in state["walls"]]
        self.loss_sum.copy_(state["loss_sum"])
        self.correct.copy_(state["correct"])
        self.updates, self.diverged_at = list(state["updates"]), list(state["diverged_at"])
        self.eval_seconds, self.elapsed_before = state["eval_seconds"], state["elapsed"]

    def results(self, resumed_from: int) -> list[TrainResult]:
        """Each run's status, rows and timings."""
        total = self.wall()
        out = []
        for i, rows in enumerate(self.rows):
            done = rows[-1]["step"]
            out.append(TrainResult("diverged" if self.diverged_at[i] else "finished", rows, {
                "wall_s": total,
                "eval_s": self.eval_seconds,
                "train_images_per_s": done * self.batch_size / max(total - self.eval_seconds, 1e-9),
                "eval_wall_s": self.walls[i],
                "resumed_from_step": resumed_from or None,
            }, self.diverged_at[i]))
        return out


class Steps:
    """What a training loop supplies to :func:`run_steps`: its update, its evaluation, and the state
    a checkpoint must carry to resume it (weights, optimizer, data order)."""

    def update(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Make update ``step`` of every run; return its training loss and correct predictions per run."""
        raise NotImplementedError

    def evaluate(self, step: int, runs: list[int]) -> dict[int, tuple[float, float]]:
        """Test loss and accuracy (%) of ``runs`` after ``step`` updates."""
        raise NotImplementedError

    def columns(self, run: int) -> dict:
        """The loop's own columns in a run's next row (none unless a loop has some)."""
        return {}

    def state(self) -> dict:
        raise NotImplementedError

    def load(self, state: dict) -> None:
        raise NotImplementedError


def progress_stream():
    """Where the live bar goes: with ``LRSTUDY_PROGRESS=terminal`` (``make reproduce`` sets it for
    papermill), to the process's own stderr -- the terminal running make -- so that a rendered
    notebook keeps one line per run and no bar; otherwise where tqdm puts it (a notebook, a terminal)."""
    return sys.__stderr__ if os.environ.get("LRSTUDY_PROGRESS") == "terminal" else None


def run_steps(loop: Steps, ledger: Ledger, iterations: int, evals: Sequence[int], trace_every: int | None,
              checkpointer: Checkpointer | None, device: torch.device, progress: bool = True,
              description: str | None = None) -> int:
    """Make ``iterations`` updates (fewer where every run diverges), writing a row for each run at
    every step of ``evals`` (test columns) and every ``trace_every`` (training columns only), and a
    checkpoint every ``checkpointer.every`` updates; resume from the checkpoint if there is one.
    Returns the step training started from (0, or where the checkpoint left off)."""
    from tqdm import tqdm  # the text bar: it renders in terminals, papermill logs and notebooks alike

    first_step = 0
    saved = checkpointer.load() if checkpointer is not None else None
    if saved is not None:
        first_step = saved["step"]
        ledger.load(saved["ledger"])
        loop.load(saved["loop"])
        torch.set_rng_state(saved["rng"]["torch"])
        if device.type == "cuda" and saved["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(saved["rng"]["cuda"], device)

    def record(step: int, runs: list[int], test: bool) -> None:
        started = time.perf_counter()
        tests = loop.evaluate(step, runs) if test else {i: (math.nan, math.nan) for i in runs}
        ledger.eval_seconds += time.perf_counter() - started
        ledger.record(step, tests, {i: loop.columns(i) for i in runs})

    bar = tqdm(total=iterations, initial=first_step, desc=description, disable=not progress, mininterval=2.0,
               unit="it", dynamic_ncols=True, leave=False, file=progress_stream())
    # A checkpoint is written after that step's rows, so on resume they are already there.
    next_eval = bisect.bisect_right(evals, first_step) if saved is not None else 0
    for step in range(first_step, iterations + 1):
        runs = ledger.training
        if not runs:
            break
        if step == evals[next_eval]:
            record(step, runs, test=True)
            next_eval += 1
            bar.set_postfix(test_acc=f"{ledger.rows[runs[0]][-1]['test_acc']:.1f}", refresh=False)
        elif trace_every and step % trace_every == 0 and step > first_step:
            record(step, runs, test=False)
        if step == iterations:
            break
        stopping = checkpointer is not None and checkpointer.stop_requested()  # a time limit or SIGTERM
        if checkpointer is not None and step > first_step and (step % checkpointer.every == 0 or stopping):
            checkpointer.save({
                "step": step, "ledger": ledger.state(), "loop": loop.state(),
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
            })
        if stopping:
            bar.close()
            raise StopRequested(f"stopped after {step} of {iterations} updates; the checkpoint holds them")
        ledger.add(*loop.update(step))
        bar.update(1)
        if (step + 1) % DIVERGENCE_CHECK_EVERY == 0:
            diverged = ledger.diverging()
            if diverged:  # a row where each was seen to diverge, as a lone run ends; then stop following it
                record(step + 1, diverged, test=True)
                for i in diverged:
                    ledger.diverged_at[i] = step + 1
    bar.close()
    return first_step
