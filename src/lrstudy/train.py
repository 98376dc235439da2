"""Training one run: iteration-based, as the papers count, with the rate set from the schedule
before every update and the test set evaluated every ``eval_every`` updates.

A run's rows (one per evaluation) hold:

    step        updates done so far (0 = the untrained network)
    epoch       step * batch_size / training-set size
    lr          the schedule's rate for the last update before this row (for step 0: its first)
    momentum    likewise, for runs with a momentum schedule (absent otherwise)
    lr_estimate super-convergence's running Hessian-free estimate of the best rate (runs that ask)
    train_loss  mean training loss over the updates since the previous row
    train_acc   training accuracy (%) over the same updates, measured on the fly
    test_loss   mean loss over the whole test split
    test_acc    accuracy (%) over the whole test split

With ``trace_every`` set, rows are also written every that many updates with the training columns
only (test columns empty): the per-iteration loss curve an exponential range test reads.

Rows hold results only, so that a run interrupted and resumed from a checkpoint writes the same
bytes as one that ran straight through (on the CPU, where kernels are deterministic); the wall
time of each evaluation goes to the run's timings instead.

A loss that becomes NaN or infinite ends the run with status ``"diverged"``: its last row is the
first evaluation (or trace row) after it, and ``diverged_at`` names the update whose loss was first
not finite; the study goes on with the next run. The bookkeeping behind all of this
(rows, timings, checkpoints, divergence) is :mod:`lrstudy.ledger`'s, shared with fused runs; this
module holds a lone run's update and evaluation.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator

import torch
from torch.nn import functional as F

from . import compiling
from .checkpoints import Checkpointer
from .data import BatchStream, ImageData, Normalizer
from .ledger import Ledger, Steps, TrainResult, eval_steps, run_steps
from .models import build_model
from .optim import build_optimizer
from .range_test import HessianFreeLR
from .rates import RateTable
from .schedule_specs import make_schedule
from .scheduler import hold_rates, set_lr_and_momentum

__all__ = ["train", "evaluate", "test_batches", "autocast_for", "step_function", "run_numerics", "EVAL_BATCH",
           "STEP_MODES", "TF32"]

EVAL_BATCH = 1000  # test images per forward pass when evaluating (memory only: results do not depend on it)
# How a lone run's training step runs, and what its record calls it:
#   eager            PyTorch op by op
#   compile          the network through torch.compile (static shapes)
#   reduce-overhead  the whole step replayed as CUDA graphs: the network with its loss through
#                    torch.compile(mode="reduce-overhead") and the optimizer's update likewise
STEP_MODES = {"eager": "eager", "compile": "compiled", "reduce-overhead": "reduce-overhead"}
WARMUP_STEPS = 3  # eager updates before a captured step is compiled (optimizer state, cuDNN's choices)


# TF32 (10-bit mantissa matmuls and convolutions on Ampere and later) is off for every run, set
# explicitly rather than left to torch's defaults (cuDNN's is on): "fp32" means float32, and a bf16
# run's float32 parts stay float32. Each run's record says so (``tf32``).
TF32 = False


@contextmanager
def run_numerics():
    """While a run trains: TF32 as :data:`TF32` says, and, with ``LRSTUDY_DETERMINISTIC=1`` (the
    tests set it), deterministic kernels; both as they were before once the run ends, so that
    nothing a run sets leaks into the next thing the process does."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
              torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = TF32
    if os.environ.get("LRSTUDY_DETERMINISTIC") == "1":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before[:2]
        torch.use_deterministic_algorithms(before[2], warn_only=before[3])


def autocast_for(precision: str, device: torch.device) -> Callable:
    """The context forward passes run under: bfloat16 autocast for ``precision="bf16"`` (on CUDA, and
    on a CPU, where AMX makes it faster), nothing otherwise (the weights and the update stay in
    float32)."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def test_batches(data: ImageData, normalize: Normalizer, batch_size: int = EVAL_BATCH) -> Iterator:
    """The test split in order, normalised, ``batch_size`` images at a time: ``(x, y)`` pairs."""
    for start in range(0, len(data.test_y), batch_size):
        yield normalize(data.test_x[start:start + batch_size]), data.test_y[start:start + batch_size]


@torch.no_grad()
def evaluate(model, data: ImageData, normalize: Normalizer, autocast, keep_probs: bool = False):
    """Mean loss and accuracy (%) of ``model`` over the test split; with ``keep_probs`` also the
    softmax outputs (float16, on the CPU) for snapshot ensembles."""
    model.eval()
    loss_sum = torch.zeros((), device=data.test_x.device, dtype=torch.float64)
    correct = torch.zeros((), device=data.test_x.device, dtype=torch.int64)
    probs = []
    for x, y in test_batches(data, normalize):
        with autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        if keep_probs:
            probs.append(logits.float().softmax(1).half().cpu())
    model.train()
    n = len(data.test_y)
    result = (loss_sum.item() / n, 100.0 * correct.item() / n)
    return (*result, torch.cat(probs)) if keep_probs else result


def rates_on_device(device: torch.device, step_mode: str) -> bool:
    """Whether a lone run's rate and momentum come from a :class:`~lrstudy.rates.RateTable` on the
    device: on CUDA, and wherever the step is captured; not in the CPU's eager and compile modes,
    whose results keep the float rounding of Python floats (``_foreach_add_(..., alpha=lr)`` is one
    fused multiply-add on the CPU, a tensor rate two roundings)."""
    return device.type == "cuda" or step_mode == "reduce-overhead"


class _LossAndHits(torch.nn.Module):
    """The network, its loss and its correct predictions as one module: one graph to capture."""

    def __init__(self, model: torch.nn.Module, autocast):
        super().__init__()
        self.model, self.autocast = model, autocast

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            logits = self.model(x)
        logits = logits.float()
        return F.cross_entropy(logits, y), (logits.argmax(1) == y).sum()


class _LoneRun(Steps):
    """One run's update (the schedule's rate and momentum into the optimizer, forward, backward,
    step) and evaluation (with the test-set outputs kept at ``snapshot_at``).

    The rate and momentum of each chunk of steps are a :class:`~lrstudy.rates.RateTable` on the
    device, which the optimizer's groups hold (:func:`~lrstudy.scheduler.hold_rates`), except in the
    CPU's eager and compile modes: there the groups get the schedules' Python floats, so that the
    CPU's results keep their float rounding bit for bit."""

    def __init__(self, config, data: ImageData, device: torch.device, precision: str, step_mode: str):
        if step_mode not in STEP_MODES:
            raise ValueError(f"step_mode={step_mode!r}; choose one of {list(STEP_MODES)}")
        self.config, self.data, self.step_mode = config, data, step_mode
        self.model = build_model(config.model, num_classes=data.num_classes).to(
            device=device, memory_format=torch.channels_last)
        self.optimizer = build_optimizer(config.optimizer, self.model)
        self.network = torch.compile(self.model, dynamic=False) if step_mode == "compile" else self.model
        self.schedule = make_schedule(**config.schedule)
        self.momentum = make_schedule(**config.momentum) if config.momentum is not None else None
        self.normalize = Normalizer(config.normalize, data, device)
        self.stream = BatchStream(data, config.batch_size, config.seed, self.normalize, **dict(config.augment))
        self.tracker = HessianFreeLR(self.model.parameters(), keep_rows=False,
                                     initial=None if config.lr_estimate == "corrected" else 0.1) \
            if config.lr_estimate else None
        self.autocast = autocast_for(precision, device)
        self.snapshot_at = set(config.snapshot_at or ())
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self.rates = self.tracker_rates = None
        if rates_on_device(device, step_mode):
            groups = self.optimizer.param_groups
            columns = [lambda s, mult=g.get("lr_mult", 1.0): self.schedule(s) * mult for g in groups]
            self.rates = RateTable(columns + ([self.momentum] if self.momentum is not None else []), device)
            self._hold_rates()
            if self.tracker is not None:
                self.tracker_rates = RateTable([self.schedule], device, torch.float64)
        self.captured, self.warm_until = None, None
        if step_mode == "reduce-overhead":
            self.captured = (torch.compile(_LossAndHits(self.model, self.autocast), mode="reduce-overhead", dynamic=False),
                             torch.compile(self.optimizer.step, mode="reduce-overhead", dynamic=False))

    def _hold_rates(self) -> None:
        groups = len(self.optimizer.param_groups)
        hold_rates(self.optimizer, self.rates.current[:groups],
                   self.rates.current[groups] if self.momentum is not None else None)

    def prepare(self, start: int, stop: int) -> None:
        for table in (self.rates, self.tracker_rates):
            if table is not None:
                table.fill(start, stop)

    def update(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rates is not None:
            self.rates.load(step)
        else:
            set_lr_and_momentum(self.optimizer, self.schedule(step), None if self.momentum is None else self.momentum(step))
        x, y = next(self.stream)
        if self.captured is not None and self.warm_until is None:
            # a few eager updates first: they create the optimizer's state and let cuDNN choose its
            # kernels (a resumed run warms up again)
            self.warm_until = step + WARMUP_STEPS
        if self.captured is not None and step >= self.warm_until:
            loss, hits = self._captured_step(x, y)
        else:
            with self.autocast():
                logits = self.network(x)
            loss = F.cross_entropy(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            hits = (logits.detach().argmax(1) == y).sum()
        if self.tracker is not None:  # (the rate is kept with the weights: a copy, not the table's current row)
            self.tracker.advance(self.schedule(step) if self.tracker_rates is None
                                 else self.tracker_rates.load(step)[0].clone())
        return loss.detach(), hits

    def _captured_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        forward, optimizer_step = self.captured
        mark_step = getattr(torch.compiler, "cudagraph_mark_step_begin", None)  # (torch >= 2.1)
        if mark_step is not None:
            mark_step()
        loss, hits = forward(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer_step()
        # a replayed graph's outputs are overwritten by its next replay: keep copies
        return loss.detach().clone(), hits.clone()

    def evaluate(self, step: int, runs: list[int]) -> dict[int, tuple[float, float]]:
        if step in self.snapshot_at:
            test_loss, test_acc, probs = evaluate(self.network, self.data, self.normalize, self.autocast,
                                                  keep_probs=True)
            self.snapshots.append((step, probs))
        else:
            test_loss, test_acc = evaluate(self.network, self.data, self.normalize, self.autocast)
        return {0: (test_loss, test_acc)}

    def columns(self, run: int) -> dict:
        if self.tracker is None:
            return {}
        return {"lr_estimate": self.tracker.snapshot()}  # NaN until the first estimate

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "stream": self.stream.state(),
            "tracker": self.tracker.state() if self.tracker is not None else None,
            "snapshot_steps": [step for step, _ in self.snapshots],
            "snapshot_probs": [probs for _, probs in self.snapshots],
        }

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.rates is not None:
            self._hold_rates()
        self.stream.restore(state["stream"])
        if self.tracker is not None:
            self.tracker.load_state(state["tracker"])
        self.snapshots = list(zip(state["snapshot_steps"], state["snapshot_probs"]))

    def kept_snapshots(self) -> dict | None:
        if not self.snapshots:
            return None
        return {"steps": [step for step, _ in self.snapshots], "probs": torch.stack([p for _, p in self.snapshots]),
                "labels": self.data.test_y.cpu()}


def step_function(config, data: ImageData, device: str | torch.device = "cpu", precision: str = "fp32",
                  step_mode: str = "eager") -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """A run's training step as :func:`train` makes it, alone: ``step(i)`` makes update ``i`` and
    returns its loss and correct predictions (device tensors). For benchmarks and checks."""
    device = torch.device(device)
    torch.manual_seed(config.seed)
    run = _LoneRun(config, data.on(device), device, precision, step_mode)
    prepared = [0, 0]

    def step(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not prepared[0] <= i < prepared[1]:
            prepared[:] = [i, i + 1000]
            run.prepare(i, i + 1000)
        return run.update(i)

    step.run = run
    return step


def train(config, data: ImageData, device: str | torch.device = "cpu", precision: str = "fp32",
          progress: bool = True, description: str | None = None,
          checkpointer: Checkpointer | None = None, compile_model: bool = False,
          step_mode: str | None = None) -> TrainResult:
    """Train the run described by ``config`` (a :class:`lrstudy.runs.RunConfig`) on ``data``.

    ``precision="bf16"`` runs forward passes under bfloat16 autocast (CUDA only; the weights and the
    update stay in float32). With a ``checkpointer``, the complete training state is saved every
    ``checkpointer.every`` updates and a run killed on the way resumes from its last checkpoint.
    ``compile_model`` runs the network through ``torch.compile`` (shapes are static; the rate and
    momentum live in the optimizer, outside the compiled graph, so schedules never recompile):
    ``step_mode="compile"``; ``step_mode`` may also be ``"reduce-overhead"`` (see :data:`STEP_MODES`).
    TF32 and determinism are set for the run and restored after it (:func:`run_numerics`).
    """
    compiled = (step_mode or ("compile" if compile_model else "eager")) != "eager"
    with run_numerics(), (compiling.recompile_scope() if compiled else nullcontext()):
        return _train(config, data, device, precision, progress, description, checkpointer, compile_model, step_mode)


def _train(config, data, device, precision, progress, description, checkpointer, compile_model, step_mode):
    device = torch.device(device)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    if config.train_subset or config.test_subset:
        data = data.subset(config.train_subset, config.test_subset)
    data = data.on(device)
    step_mode = step_mode or ("compile" if compile_model else "eager")
    run = _LoneRun(config, data, device, precision, step_mode)
    ledger = Ledger([run.schedule], [run.momentum], config.batch_size, len(data.train_y), device, started)
    evals = eval_steps(config.iterations, config.eval_every, [*(config.eval_at or ()), *(config.snapshot_at or ())])
    resumed_from = run_steps(run, ledger, config.iterations, evals, config.trace_every, checkpointer, device,
                             progress, description)
    result = ledger.results(resumed_from)[0]
    result.snapshots = run.kept_snapshots()
    result.step_mode = STEP_MODES[step_mode]
    return result
