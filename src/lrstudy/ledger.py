"""The bookkeeping of training, shared by a lone run (:mod:`lrstudy.train`) and a group of runs
trained as one computation (:mod:`lrstudy.fused`).

A :class:`Ledger` keeps, for each of K runs (K = 1 for a lone run), its evaluation rows and the
wall time of each, the training loss and correct predictions summed since its last row, the step
at which it diverged (if it did), and the time spent, across resumes. :func:`run_steps` drives the
updates of a training loop: it evaluates at the planned steps, writes trace rows, saves and resumes
checkpoints, and stops following a run whose loss stops being finite. A loop supplies only what is
its own -- how it makes an update and how it evaluates (a :class:`Steps`) -- so both loops write the
same rows, the same timings and one checkpoint layout: ``{"step", "ledger", "rng", "loop"}``.

Between two evaluations nothing is read back from the device. The updates are made in chunks that
end where the host must look (an evaluation, a checkpoint, the end): the loop learns each chunk's
steps first (:meth:`Steps.prepare`: its rates for all of them at once). Training sums stay on the
device; a trace row (``trace_every``) is a snapshot of them, kept on the device and read together
with the next evaluation's. Divergence is read there too: the first row whose loss sum is no longer
finite is a run's last, and its ``diverged_at`` names the update whose loss first was not finite.
"""

from __future__ import annotations

import bisect
import math
import os
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Mapping, Sequence

import torch

from .checkpoints import Checkpointer, StopRequested

__all__ = ["TrainResult", "Ledger", "Steps", "Deferred", "run_steps", "eval_steps"]


@dataclass
class TrainResult:
    status: str  # "finished" or "diverged"
    rows: list[dict]
    timings: dict = field(default_factory=dict)
    diverged_at: int | None = None  # updates done when the loss was first seen not finite
    snapshots: dict | None = None  # {"steps", "probs", "labels"} when the config asks for them
    step_mode: str = "eager"  # how the training step ran: "eager", "compiled", "captured", "fused", ...


def eval_steps(iterations: int, eval_every: int, extra=()) -> list[int]:
    """Steps after which the test set is evaluated: 0, every ``eval_every``, the last, and ``extra``."""
    return sorted({0, *range(eval_every, iterations, eval_every), iterations, *extra})


@dataclass
class Deferred:
    """A column value still on the device: ``tensor`` is read with the next rows (no wait now), and
    ``finish`` turns what was read (a list of floats) into the value the row holds."""

    tensor: torch.Tensor
    finish: Callable[[list[float]], object]


@dataclass
class _PendingRow:
    step: int
    runs: list[int]
    updates: list[int]  # each run's updates since its previous row
    sums: torch.Tensor  # 3 x K on the device: loss sum, correct predictions, updates before the loss sum stopped being finite
    tests: Mapping[int, tuple[float, float]] | None
    columns: Mapping[int, dict]
    wall: float


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
        # updates since the last row after which the loss sum was still finite: where divergence began
        self.finite_updates = torch.zeros(runs, device=device, dtype=torch.int64)
        self.updates = [0] * runs  # since each run's last row
        self.diverged_at: list[int | None] = [None] * runs
        self.eval_seconds = 0.0
        self.started, self.elapsed_before = started, 0.0  # (elapsed_before: time spent before a resume)
        self._pending: list[_PendingRow] = []

    @property
    def training(self) -> list[int]:
        """The runs still followed (those not seen to diverge)."""
        return [i for i, at in enumerate(self.diverged_at) if at is None]

    def wall(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def add(self, losses: torch.Tensor, correct: torch.Tensor) -> None:
        """One update's training loss and correct predictions, per run (device tensors: nothing is read)."""
        self.loss_sum += losses.detach().double()
        self.correct += correct
        self.finite_updates += torch.isfinite(self.loss_sum)
        self.updates = [n + 1 for n in self.updates]

    def row(self, step: int, runs: list[int], tests: Mapping[int, tuple[float, float]] | None = None,
            columns: Mapping[int, dict] | None = None) -> None:
        """A row at ``step`` for each of ``runs``: its test loss and accuracy (``tests``; none on a
        trace row), the loop's own ``columns`` and the training sums since the run's last row, which
        start again. Kept on the device until :meth:`flush`."""
        sums = torch.stack([self.loss_sum, self.correct.double(), self.finite_updates.double()])
        self._pending.append(_PendingRow(step, list(runs), list(self.updates), sums, tests, columns or {},
                                         self.wall()))
        # every run followed is in every row, so all sums start again (runs no longer followed are never read)
        self.loss_sum.zero_()
        self.correct.zero_()
        self.finite_updates.zero_()
        self.updates = [0] * len(self.updates)

    def flush(self) -> None:
        """Read the rows kept on the device (one transfer) and write them; a run whose loss sum in a
        row is no longer finite ends with that row, as ``diverged``."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        deferred = [value for row in pending for cols in row.columns.values() for value in cols.values()
                    if isinstance(value, Deferred)]
        parts = [row.sums.reshape(-1) for row in pending] + [d.tensor.double().reshape(-1) for d in deferred]
        flat = iter(torch.cat(parts).tolist())
        read = [list(islice(flat, part.numel())) for part in parts]
        finished = {id(d): d.finish(read[len(pending) + n]) for n, d in enumerate(deferred)}
        runs = len(self.rows)
        for n, row in enumerate(pending):
            values = read[n]
            for i in row.runs:
                if self.diverged_at[i] is not None:
                    continue  # ended by an earlier row of this flush
                loss_sum, correct, finite = values[i], values[runs + i], values[2 * runs + i]
                columns = {k: finished[id(v)] if isinstance(v, Deferred) else v
                           for k, v in row.columns.get(i, {}).items()}
                self._write(i, row, loss_sum, int(correct), columns)
                if not math.isfinite(loss_sum):
                    self.diverged_at[i] = row.step - row.updates[i] + int(finite) + 1

    def _write(self, i: int, row: _PendingRow, loss_sum: float, correct: int, columns: dict) -> None:
        step, updates = row.step, row.updates[i]
        out = {"step": step, "epoch": step * self.batch_size / self.n_train, "lr": self.schedules[i](max(step - 1, 0))}
        if self.momenta[i] is not None:
            out["momentum"] = self.momenta[i](max(step - 1, 0))
        out.update(columns)
        if updates:  # mean training loss and accuracy (%) over the run's updates since its last row
            out.update(train_loss=loss_sum / updates, train_acc=100.0 * correct / (updates * self.batch_size))
        else:
            out.update(train_loss=math.nan, train_acc=math.nan)
        test_loss, test_acc = row.tests[i] if row.tests is not None else (math.nan, math.nan)
        out.update(test_loss=test_loss, test_acc=test_acc)
        self.rows[i].append(out)
        self.walls[i].append(row.wall)

    def state(self) -> dict:
        """What a checkpoint keeps (after :meth:`flush`: nothing is pending)."""
        return {"rows": self.rows, "walls": self.walls, "loss_sum": self.loss_sum, "correct": self.correct,
                "finite_updates": self.finite_updates, "updates": self.updates, "diverged_at": self.diverged_at,
                "eval_seconds": self.eval_seconds, "elapsed": self.wall()}

    def load(self, state: dict) -> None:
        self.rows, self.walls = [list(r) for r in state["rows"]], [list(w) for w in state["walls"]]
        self.loss_sum.copy_(state["loss_sum"])
        self.correct.copy_(state["correct"])
        self.updates, self.diverged_at = list(state["updates"]), list(state["diverged_at"])
        # (checkpoints written before this count existed were only written with finite sums)
        self.finite_updates.copy_(state.get("finite_updates", torch.tensor(self.updates)))
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

    def prepare(self, start: int, stop: int) -> None:
        """Updates ``start .. stop-1`` come next, with no evaluation between them (compute their
        rates now)."""

    def update(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Make update ``step`` of every run; return its training loss and correct predictions per
        run, as device tensors (reading them would make the host wait)."""
        raise NotImplementedError

    def evaluate(self, step: int, runs: list[int]) -> dict[int, tuple[float, float]]:
        """Test loss and accuracy (%) of ``runs`` after ``step`` updates."""
        raise NotImplementedError

    def columns(self, run: int) -> dict:
        """The loop's own columns in a run's next row (none unless a loop has some); a value still
        on the device is a :class:`Deferred`."""
        return {}

    def state(self) -> dict:
        raise NotImplementedError

    def load(self, state: dict) -> None:
        raise NotImplementedError


def progress_stream():
    """Where the live bar goes: with ``LRSTUDY_PROGRESS=terminal`` (``make reproduce`` sets it for
    papermill), to the terminal running make, opened as ``/dev/tty`` -- the kernel forwards its own
    stderr into the notebook, so ``sys.__stderr__`` would put every redraw on the page -- and nowhere
    (:data:`NO_BAR`) without a terminal (CI, a background job); otherwise where tqdm puts it (a
    notebook, a terminal)."""
    if os.environ.get("LRSTUDY_PROGRESS") != "terminal":
        return None
    try:
        return open("/dev/tty", "w")  # noqa: SIM115 -- lives as long as the bar
    except OSError:
        return NO_BAR


NO_BAR = object()  # progress_stream's answer where a bar has nowhere to go but the page


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

    def record(step: int, runs: list[int]) -> None:
        started = time.perf_counter()
        tests = loop.evaluate(step, runs)
        ledger.eval_seconds += time.perf_counter() - started
        ledger.row(step, runs, tests, {i: loop.columns(i) for i in runs})
        ledger.flush()

    stream = progress_stream()
    bar = tqdm(total=iterations, initial=first_step, desc=description, disable=not progress or stream is NO_BAR,
               mininterval=2.0, unit="it", dynamic_ncols=True, leave=False,
               file=None if stream is NO_BAR else stream)
    # A checkpoint is written after that step's rows, so on resume they are already there.
    next_eval = bisect.bisect_right(evals, first_step) if saved is not None else 0
    chunk_end = first_step
    for step in range(first_step, iterations + 1):
        runs = ledger.training
        if not runs:
            break
        if step == evals[next_eval]:
            ledger.flush()  # the trace rows before it first: a run may have ended in one
            runs = ledger.training
            if not runs:
                break
            record(step, runs)
            next_eval += 1
            bar.set_postfix(test_acc=f"{ledger.rows[runs[0]][-1]['test_acc']:.1f}", refresh=False)
        elif trace_every and step % trace_every == 0 and step > first_step:
            ledger.row(step, runs, None, {i: loop.columns(i) for i in runs})
        if step == iterations or not ledger.training:
            break
        stopping = checkpointer is not None and checkpointer.stop_requested()  # a time limit or SIGTERM
        if checkpointer is not None and step > first_step and (step % checkpointer.every == 0 or stopping):
            ledger.flush()
            checkpointer.save({
                "step": step, "ledger": ledger.state(), "loop": loop.state(),
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
            })
        if stopping:
            bar.close()
            raise StopRequested(f"stopped after {step} of {iterations} updates; the checkpoint holds them")
        if step == chunk_end:  # the updates until the host must look again (evaluation, checkpoint, end)
            every = checkpointer.every if checkpointer is not None else iterations
            chunk_end = min(evals[next_eval], (step // every + 1) * every, iterations)
            loop.prepare(step, chunk_end)
        ledger.add(*loop.update(step))
        bar.update(1)
    ledger.flush()
    bar.close()
    return first_step
