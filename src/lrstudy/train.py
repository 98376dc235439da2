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

A loss that becomes NaN or infinite ends the run with status ``"diverged"`` (its last row holds the
step where that was seen); the study goes on with the next run.
"""

from __future__ import annotations

import bisect
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from .checkpoints import Checkpointer
from .range_test import HessianFreeLR
from .data import BatchStream, ImageData, Normalizer
from .models import build_model
from .optim import build_optimizer
from .schedule_specs import make_schedule
from .scheduler import set_lr_and_momentum

__all__ = ["TrainResult", "train", "evaluate", "eval_steps"]

DIVERGENCE_CHECK_EVERY = 10  # updates between NaN checks (each check waits for the GPU)


@dataclass
class TrainResult:
    status: str  # "finished" or "diverged"
    rows: list[dict]
    timings: dict = field(default_factory=dict)
    diverged_at: int | None = None
    snapshots: dict | None = None  # {"steps", "probs", "labels"} when the config asks for them


def row_start(step: int, batch_size: int, n_train: int, schedule, momentum=None) -> dict:
    """A row's first columns: where training is, and the rate (and momentum) of its last update."""
    row = {"step": step, "epoch": step * batch_size / n_train, "lr": schedule(max(step - 1, 0))}
    if momentum is not None:
        row["momentum"] = momentum(max(step - 1, 0))
    return row


def training_columns(loss_sum: float, correct: int, updates: int, batch_size: int) -> dict:
    """Mean training loss and accuracy (%) over the ``updates`` since the previous row (NaN if none)."""
    if not updates:
        return {"train_loss": math.nan, "train_acc": math.nan}
    return {"train_loss": loss_sum / updates, "train_acc": 100.0 * correct / (updates * batch_size)}


def eval_steps(iterations: int, eval_every: int, extra=()) -> list[int]:
    """Steps after which the test set is evaluated: 0, every ``eval_every``, the last, and ``extra``."""
    return sorted({0, *range(eval_every, iterations, eval_every), iterations, *extra})


@torch.no_grad()
def evaluate(model, images: torch.Tensor, labels: torch.Tensor, normalize: Normalizer,
             autocast, batch_size: int = 1000, keep_probs: bool = False):
    """Mean loss and accuracy (%) over a whole split; with ``keep_probs`` also the softmax
    outputs (float16, on the CPU) for snapshot ensembles."""
    model.eval()
    loss_sum = torch.zeros((), device=images.device, dtype=torch.float64)
    correct = torch.zeros((), device=images.device, dtype=torch.int64)
    probs = []
    for start in range(0, len(labels), batch_size):
        x = normalize(images[start:start + batch_size])
        y = labels[start:start + batch_size]
        with autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        if keep_probs:
            probs.append(logits.float().softmax(1).half().cpu())
    model.train()
    n = len(labels)
    result = (loss_sum.item() / n, 100.0 * correct.item() / n)
    return (*result, torch.cat(probs)) if keep_probs else result


def train(config, data: ImageData, device: str | torch.device = "cpu", precision: str = "fp32",
          progress: bool = True, description: str | None = None,
          checkpointer: Checkpointer | None = None, compile_model: bool = False) -> TrainResult:
    """Train the run described by ``config`` (a :class:`lrstudy.runs.RunConfig`) on ``data``.

    ``precision="bf16"`` runs forward passes under bfloat16 autocast (CUDA only; the weights and the
    update stay in float32). With a ``checkpointer``, the complete training state is saved every
    ``checkpointer.every`` updates and a run killed on the way resumes from its last checkpoint.
    ``compile_model`` runs the network through ``torch.compile`` (shapes are static; the rate and
    momentum live in the optimizer, outside the compiled graph, so schedules never recompile).
    ``LRSTUDY_DETERMINISTIC=1`` asks torch for deterministic kernels (the tests set it).
    """
    from tqdm import tqdm  # the text bar: it renders in terminals, papermill logs and notebooks alike

    device = torch.device(device)
    started = time.perf_counter()
    if os.environ.get("LRSTUDY_DETERMINISTIC") == "1":
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(config.seed)
    if config.train_subset or config.test_subset:
        data = data.subset(config.train_subset, config.test_subset)
    data = data.on(device)
    model = build_model(config.model, num_classes=data.num_classes)
    model = model.to(device=device, memory_format=torch.channels_last)
    optimizer = build_optimizer(config.optimizer, model)
    network = torch.compile(model, dynamic=False) if compile_model else model
    schedule = make_schedule(**config.schedule)
    momentum = make_schedule(**config.momentum) if config.momentum is not None else None
    normalize = Normalizer(config.normalize, data, device)
    stream = BatchStream(data, config.batch_size, config.seed, normalize, **dict(config.augment))
    tracker = HessianFreeLR(model.parameters(), keep_rows=False,
                            initial=None if config.lr_estimate == "corrected" else 0.1) if config.lr_estimate else None
    if precision == "bf16" and device.type == "cuda":
        autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    else:
        autocast = nullcontext

    n_train = len(data.train_y)
    checkpoints = eval_steps(config.iterations, config.eval_every, [*(config.eval_at or ()), *(config.snapshot_at or ())])
    snapshot_steps = set(config.snapshot_at or ())
    snapshots: list[tuple[int, torch.Tensor]] = []
    rows: list[dict] = []
    eval_wall: list[float] = []  # seconds since the start of training, per row
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    since_row = 0
    eval_seconds, elapsed_before = 0.0, 0.0  # (elapsed_before: time spent before a resume)
    status, diverged_at = "finished", None
    first_step = 0

    saved = checkpointer.load() if checkpointer is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        stream.restore(saved["stream"])
        torch.set_rng_state(saved["torch_rng"])
        if device.type == "cuda" and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"], device)
        rows, eval_wall = list(saved["rows"]), list(saved["eval_wall"])
        snapshots = list(zip(saved["snapshot_steps"], saved["snapshot_probs"]))
        if tracker is not None:
            tracker.load_state(saved["tracker"])
        loss_sum.fill_(saved["loss_sum"])
        correct.fill_(saved["correct"])
        since_row, eval_seconds, elapsed_before = saved["since_row"], saved["eval_seconds"], saved["elapsed"]
        first_step = saved["step"]

    def wall() -> float:
        return elapsed_before + time.perf_counter() - started

    def record(step: int, test: bool = True) -> None:
        nonlocal since_row, eval_seconds
        t0 = time.perf_counter()
        if test and step in snapshot_steps:
            test_loss, test_acc, probs = evaluate(network, data.test_x, data.test_y, normalize, autocast,
                                                  keep_probs=True)
            snapshots.append((step, probs))
        elif test:
            test_loss, test_acc = evaluate(network, data.test_x, data.test_y, normalize, autocast)
        else:
            test_loss = test_acc = math.nan
        eval_seconds += time.perf_counter() - t0
        row = row_start(step, config.batch_size, n_train, schedule, momentum)
        if tracker is not None:
            row["lr_estimate"] = tracker.average if tracker.count else math.nan  # NaN until it exists
        row.update(training_columns(loss_sum.item(), correct.item(), since_row, config.batch_size),
                   test_loss=test_loss, test_acc=test_acc)
        rows.append(row)
        eval_wall.append(wall())
        loss_sum.zero_(), correct.zero_()
        since_row = 0

    def save_checkpoint(step: int) -> None:
        checkpointer.save({
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "stream": stream.state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "rows": rows,
            "eval_wall": eval_wall,
            "tracker": tracker.state() if tracker is not None else None,
            "snapshot_steps": [step for step, _ in snapshots],
            "snapshot_probs": [probs for _, probs in snapshots],
            "loss_sum": loss_sum.item(),
            "correct": correct.item(),
            "since_row": since_row,
            "eval_seconds": eval_seconds,
            "elapsed": wall(),
        })

    bar = tqdm(total=config.iterations, initial=first_step, desc=description, disable=not progress,
               mininterval=2.0, unit="it", dynamic_ncols=True, leave=False)
    # A checkpoint is written after that step's rows, so on resume they are already there.
    next_eval = bisect.bisect_right(checkpoints, first_step) if saved is not None else 0
    for step in range(first_step, config.iterations + 1):
        if step == checkpoints[next_eval]:
            record(step)
            next_eval += 1
            bar.set_postfix(test_acc=f"{rows[-1]['test_acc']:.1f}", refresh=False)
        elif config.trace_every and step % config.trace_every == 0 and step > first_step:
            record(step, test=False)
        if step == config.iterations:
            break
        if checkpointer is not None and step > first_step and step % checkpointer.every == 0:
            save_checkpoint(step)
        rate = schedule(step)
        set_lr_and_momentum(optimizer, rate, None if momentum is None else momentum(step))
        x, y = next(stream)
        with autocast():
            logits = network(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if tracker is not None:
            tracker.observe(rate)
        loss_sum += loss.detach().double()
        correct += (logits.detach().argmax(1) == y).sum()
        since_row += 1
        bar.update(1)
        if (step + 1) % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
            status, diverged_at = "diverged", step + 1
            record(step + 1)
            break
    bar.close()
    total = wall()
    done = rows[-1]["step"]
    train_seconds = max(total - eval_seconds, 1e-9)
    return TrainResult(status, rows, {
        "wall_s": total,
        "eval_s": eval_seconds,
        "train_images_per_s": done * config.batch_size / train_seconds,
        "eval_wall_s": eval_wall,
        "resumed_from_step": first_step or None,
    }, diverged_at, {
        "steps": [step for step, _ in snapshots],
        "probs": torch.stack([probs for _, probs in snapshots]),
        "labels": data.test_y.cpu(),
    } if snapshots else None)
