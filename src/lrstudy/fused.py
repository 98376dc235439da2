"""Fused runs: K independent runs of one small network trained as one batched computation.

The study trains many copies of the same small net that differ only in seed, schedule or solver
hyperparameters (CLR Table 1 over five seeds, say). On a GPU, one such run leaves the device idle
between tiny kernels; K of them stacked along a leading dimension -- parameters, momentum buffers,
batches -- and pushed through ``torch.func.vmap`` make one computation of K times the work.

Each run keeps everything that makes it itself: its initial weights (built under its own seed, as
:func:`lrstudy.train.train` builds them), its data order and augmentation (its own
:class:`~lrstudy.data.BatchStream`), its learning rate and momentum every step, its weight decay.
The update is Caffe's SGD, as in :class:`lrstudy.optim.CaffeSGD`, with the network's per-parameter
multipliers. So the K results equal K separate runs up to floating-point summation order (tested).

Runs that can be fused share everything else (:func:`fusable_key`). Networks that draw random
numbers while training (stochastic depth, dropout) are not fused: vmap cannot give each run the
random stream it would have had alone.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import math
import time
from contextlib import nullcontext

import torch
from torch.nn import functional as F

from .checkpoints import Checkpointer
from .data import BatchStream, ImageData, Normalizer
from .models import build_model
from .schedule_specs import make_schedule
from .train import DIVERGENCE_CHECK_EVERY, TrainResult, eval_steps, row_start, training_columns

__all__ = ["fusable", "fusable_key", "group_id", "train_fused"]

_STOCHASTIC_MODELS = {"resnet_sd"}
_PER_RUN = {"seed", "schedule", "momentum", "optimizer"}


def fusable(config) -> bool:
    """Whether a run can join a fused group at all."""
    return (
        config.optimizer["name"] == "caffe_sgd"
        and config.model["name"] not in _STOCHASTIC_MODELS
        and not config.model.get("dropout")
        and not (config.trace_every or config.snapshot_at or config.lr_estimate)
    )


def fusable_key(config) -> tuple:
    """Runs with equal keys can be trained together: all but seed, schedules and the solver's
    momentum and weight decay must match."""
    d = config.to_dict()
    rest = {k: v for k, v in d.items() if k not in _PER_RUN}
    return repr(sorted(rest.items()))


def group_id(configs) -> str:
    """The id of a group of runs trained together: its checkpoint belongs to exactly these runs,
    in this order."""
    return "fused-" + hashlib.sha256(" ".join(c.id for c in configs).encode()).hexdigest()[:16]


def train_fused(configs, data: ImageData, device: str | torch.device = "cpu", precision: str = "fp32",
                progress: bool = True, description: str | None = None,
                checkpointer: Checkpointer | None = None) -> list[TrainResult]:
    """Train ``configs`` (RunConfigs with one :func:`fusable_key`) together; one result per run,
    in order, with the rows :func:`lrstudy.train.train` would have written. With a
    ``checkpointer`` (whose run id is :func:`group_id` of ``configs``) the group's state is saved
    every ``checkpointer.every`` updates and a group killed on the way resumes from it."""
    from tqdm import tqdm

    if not configs or len({fusable_key(c) for c in configs}) != 1 or not all(fusable(c) for c in configs):
        raise ValueError("train_fused: the runs must be fusable and share everything but seed, schedule and solver")
    device = torch.device(device)
    started = time.perf_counter()
    first, k = configs[0], len(configs)
    if first.train_subset or first.test_subset:
        data = data.subset(first.train_subset, first.test_subset)
    data = data.on(device)

    models = []
    for config in configs:  # each run's initial weights, drawn as a lone run draws them
        torch.manual_seed(config.seed)
        models.append(build_model(config.model, num_classes=data.num_classes).to(device=device,
                                                                                 memory_format=torch.channels_last))
    multipliers = models[0].param_multipliers
    params, buffers = torch.func.stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    del models

    def forward(p, b, x):
        return torch.func.functional_call(base, (p, b), (x,))

    batched = torch.vmap(forward, randomness="error")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if (
        precision == "bf16" and device.type == "cuda") else nullcontext

    shape = lambda v: torch.tensor(v, device=device, dtype=torch.float32)  # noqa: E731
    lr_schedules = [make_schedule(**c.schedule) for c in configs]
    mom_schedules = [make_schedule(**c.momentum) if c.momentum is not None else None for c in configs]
    momentum0 = [c.optimizer.get("momentum", 0.0) for c in configs]
    weight_decay = shape([c.optimizer.get("weight_decay", 0.0) for c in configs])
    velocity = {name: torch.zeros_like(p) for name, p in params.items()}

    normalize = Normalizer(first.normalize, data, device)
    streams = [BatchStream(data, first.batch_size, c.seed, normalize, **dict(first.augment)) for c in configs]
    n_train = len(data.train_y)
    steps = eval_steps(first.iterations, first.eval_every, first.eval_at or ())
    rows: list[list[dict]] = [[] for _ in configs]
    walls: list[list[float]] = [[] for _ in configs]
    loss_sum = torch.zeros(k, device=device, dtype=torch.float64)
    correct = torch.zeros(k, device=device, dtype=torch.int64)
    since_row = 0
    alive = [True] * k
    diverged_at: list[int | None] = [None] * k
    eval_seconds, elapsed_before = 0.0, 0.0  # (elapsed_before: time spent before a resume)
    first_step = 0

    saved = checkpointer.load() if checkpointer is not None else None
    if saved is not None:
        with torch.no_grad():
            for store, kept in ((params, saved["params"]), (buffers, saved["buffers"]), (velocity, saved["velocity"])):
                for name, tensor in store.items():
                    tensor.copy_(kept[name])
        for stream, state in zip(streams, saved["streams"]):
            stream.restore(state)
        rows, walls = [list(r) for r in saved["rows"]], [list(w) for w in saved["walls"]]
        loss_sum.copy_(saved["loss_sum"])
        correct.copy_(saved["correct"])
        alive, diverged_at = list(saved["alive"]), list(saved["diverged_at"])
        since_row, eval_seconds, elapsed_before = saved["since_row"], saved["eval_seconds"], saved["elapsed"]
        first_step = saved["step"]

    def wall() -> float:
        return elapsed_before + time.perf_counter() - started

    def save_checkpoint(step: int) -> None:
        checkpointer.save({
            "step": step,
            "params": {name: t.detach() for name, t in params.items()},
            "buffers": dict(buffers),
            "velocity": velocity,
            "streams": [s.state() for s in streams],
            "rows": rows,
            "walls": walls,
            "loss_sum": loss_sum,
            "correct": correct,
            "alive": alive,
            "diverged_at": diverged_at,
            "since_row": since_row,
            "eval_seconds": eval_seconds,
            "elapsed": wall(),
        })

    def view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
        base.eval()
        losses = torch.zeros(k, device=device, dtype=torch.float64)
        hits = torch.zeros(k, device=device, dtype=torch.int64)
        for start in range(0, len(data.test_y), 1000):
            x = normalize(data.test_x[start:start + 1000])
            y = data.test_y[start:start + 1000]
            xs = x.unsqueeze(0).expand(k, *x.shape)
            with autocast():
                logits = batched(params, buffers, xs).float()
            losses += F.cross_entropy(logits.flatten(0, 1), y.repeat(k), reduction="none").view(k, -1).sum(1).double()
            hits += (logits.argmax(2) == y).sum(1)
        base.train()
        n = len(data.test_y)
        return losses / n, 100.0 * hits / n

    def record(step: int, runs: list[int]) -> None:
        nonlocal since_row, eval_seconds
        t0 = time.perf_counter()
        test_loss, test_acc = evaluate()
        eval_seconds += time.perf_counter() - t0
        for i in runs:
            row = row_start(step, first.batch_size, n_train, lr_schedules[i], mom_schedules[i])
            row.update(training_columns(loss_sum[i].item(), correct[i].item(), since_row, first.batch_size),
                       test_loss=test_loss[i].item(), test_acc=test_acc[i].item())
            rows[i].append(row)
            walls[i].append(wall())
        loss_sum.zero_(), correct.zero_()
        since_row = 0

    bar = tqdm(total=first.iterations, initial=first_step, desc=description, disable=not progress,
               mininterval=2.0, unit="it", leave=False)
    # A checkpoint is written after that step's rows, so on resume they are already there.
    next_eval = bisect.bisect_right(steps, first_step) if saved is not None else 0
    for step in range(first_step, first.iterations + 1):
        if step == steps[next_eval]:
            record(step, [i for i in range(k) if alive[i]])
            next_eval += 1
        if step == first.iterations or not any(alive):
            break
        if checkpointer is not None and step > first_step and step % checkpointer.every == 0:
            save_checkpoint(step)
        lrs = shape([s(step) for s in lr_schedules])
        moms = shape([m(step) if m is not None else m0 for m, m0 in zip(mom_schedules, momentum0)])
        batches = [next(s) for s in streams]
        # stack the K batches so that each run's slice stays channels_last for the convolutions
        xs = torch.stack([x.permute(0, 2, 3, 1) for x, _ in batches]).permute(0, 1, 4, 2, 3)
        ys = torch.stack([y for _, y in batches])
        with autocast():
            logits = batched(params, buffers, xs).float()
        losses = F.cross_entropy(logits.flatten(0, 1), ys.flatten(), reduction="none").view(k, -1).mean(1)
        grads = torch.autograd.grad(losses.sum(), list(params.values()))
        with torch.no_grad():
            for (name, p), g in zip(params.items(), grads):
                lr_mult, decay_mult = multipliers[name]
                g = g + view(weight_decay * decay_mult, p) * p
                v = velocity[name]
                v.mul_(view(moms, v)).add_(view(lrs * lr_mult, v) * g)
                p.sub_(v)
        loss_sum += losses.detach().double()
        correct += (logits.detach().argmax(2) == ys).sum(1)
        since_row += 1
        bar.update(1)
        if (step + 1) % DIVERGENCE_CHECK_EVERY == 0:
            bad = [i for i in range(k) if alive[i] and not math.isfinite(loss_sum[i].item())]
            if bad:  # record where each diverged, as a lone run would, and stop following it
                record(step + 1, bad)
                for i in bad:
                    alive[i], diverged_at[i] = False, step + 1
    bar.close()
    total = wall()
    results = []
    for i in range(k):
        done = rows[i][-1]["step"]
        results.append(TrainResult("diverged" if diverged_at[i] else "finished", rows[i], {
            "wall_s": total, "eval_s": eval_seconds, "fused_runs": k,
            "train_images_per_s": done * first.batch_size / max(total - eval_seconds, 1e-9),
            "eval_wall_s": walls[i], "resumed_from_step": first_step or None,
        }, diverged_at[i]))
    return results
