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

import copy
import hashlib
import time
from contextlib import nullcontext

import torch
from torch.nn import functional as F

from . import compiling
from .checkpoints import Checkpointer
from .data import BatchStream, ImageData, Normalizer
from .ledger import Ledger, Steps, TrainResult, eval_steps, run_steps
from .models import build_model
from .rates import RateTable
from .schedule_specs import make_schedule
from .train import autocast_for, run_numerics, test_batches

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


class _FusedRuns(Steps):
    """K runs' parameters, buffers and velocities stacked along a leading dimension: one batched
    forward pass, and each run's Caffe SGD update with its own rate, momentum and weight decay.

    All K runs' parameters live in one ``K x N`` tensor (each parameter a view of its columns), and
    so do their velocities: the update is a handful of whole-tensor operations, however many
    parameters the network has. The rates and momenta of each chunk of steps come from a
    :class:`~lrstudy.rates.RateTable` on the device. No channels_last here: under vmap a convolution
    becomes one grouped convolution over the K runs' channels, which cuDNN runs in NCHW."""

    def __init__(self, configs, data: ImageData, device: torch.device, precision: str, compile_model: bool = False):
        first, self.k = configs[0], len(configs)
        self.data, self.device = data, device
        models = []
        for config in configs:  # each run's initial weights, drawn as a lone run draws them
            torch.manual_seed(config.seed)
            models.append(build_model(config.model, num_classes=data.num_classes).to(device=device))
        multipliers = models[0].param_multipliers
        stacked, self.buffers = torch.func.stack_module_state(models)
        self.base = copy.deepcopy(models[0]).to("meta")
        del models
        self.flat = torch.cat([t.detach().reshape(self.k, -1) for t in stacked.values()], 1)
        self.params = _views(self.flat, stacked)
        self.velocity_flat = torch.zeros_like(self.flat)
        self.velocity = _views(self.velocity_flat, stacked)
        per_element = lambda which: torch.cat([torch.full((t[0].numel(),), multipliers[name][which], device=device)  # noqa: E731
                                               for name, t in stacked.items()])
        self.lr_mult = per_element(0)
        weight_decay = torch.tensor([c.optimizer.get("weight_decay", 0.0) for c in configs], device=device)
        self.decay = weight_decay[:, None] * per_element(1)  # each run's weight decay times each weight's decay_mult

        def forward(p, b, x):
            return torch.func.functional_call(self.base, (p, b), (x,))

        self.batched = torch.vmap(forward, randomness="error")
        self.autocast = autocast_for(precision, device)
        self.losses_and_hits = torch.compile(self._losses_and_hits, dynamic=False) if compile_model \
            else self._losses_and_hits
        self.schedules = [make_schedule(**c.schedule) for c in configs]
        self.momenta = [make_schedule(**c.momentum) if c.momentum is not None else None for c in configs]
        fixed_momenta = [c.optimizer.get("momentum", 0.0) for c in configs]
        self.rates = RateTable(self.schedules + [m if m is not None else (lambda s, m0=m0: m0)
                                                 for m, m0 in zip(self.momenta, fixed_momenta)], device)
        self.normalize = Normalizer(first.normalize, data, device)
        self.streams = [BatchStream(data, first.batch_size, c.seed, self.normalize, **dict(first.augment))
                        for c in configs]

    def _losses_and_hits(self, params: dict, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            logits = self.batched(params, self.buffers, xs).float()
        losses = F.cross_entropy(logits.flatten(0, 1), ys.flatten(), reduction="none").view(self.k, -1).mean(1)
        return losses, (logits.argmax(2) == ys).sum(1)

    def prepare(self, start: int, stop: int) -> None:
        self.rates.fill(start, stop)

    def update(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.rates.load(step)
        lrs, moms = values[:self.k, None], values[self.k:, None]
        batches = [next(s) for s in self.streams]
        xs = torch.stack([x for x, _ in batches]).contiguous()
        ys = torch.stack([y for _, y in batches])
        leaves = {name: view.detach().requires_grad_() for name, view in self.params.items()}
        losses, hits = self.losses_and_hits(leaves, xs, ys)
        grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
        with torch.no_grad():
            g = torch.cat([grad.reshape(self.k, -1) for grad in grads], 1)
            g.addcmul_(self.decay, self.flat)  # + weight decay
            self.velocity_flat.mul_(moms).addcmul_(lrs * self.lr_mult, g)
            self.flat.sub_(self.velocity_flat)
        return losses.detach(), hits

    @torch.no_grad()
    def evaluate(self, step: int, runs: list[int]) -> dict[int, tuple[float, float]]:
        self.base.eval()
        losses = torch.zeros(self.k, device=self.device, dtype=torch.float64)
        hits = torch.zeros(self.k, device=self.device, dtype=torch.int64)
        for x, y in test_batches(self.data, self.normalize):
            xs = x.contiguous().unsqueeze(0).expand(self.k, *x.shape)
            with self.autocast():
                logits = self.batched(self.params, self.buffers, xs).float()
            losses += F.cross_entropy(logits.flatten(0, 1), y.repeat(self.k), reduction="none").view(
                self.k, -1).sum(1).double()
            hits += (logits.argmax(2) == y).sum(1)
        self.base.train()
        n = len(self.data.test_y)
        loss, accuracy = (losses / n).tolist(), (100.0 * hits / n).tolist()  # one read for every run
        return {i: (loss[i], accuracy[i]) for i in runs}

    def state(self) -> dict:
        return {"params": dict(self.params), "buffers": dict(self.buffers), "velocity": dict(self.velocity),
                "streams": [s.state() for s in self.streams]}

    def load(self, state: dict) -> None:
        with torch.no_grad():
            for live, kept in ((self.params, state["params"]), (self.buffers, state["buffers"]),
                               (self.velocity, state["velocity"])):
                for name, tensor in live.items():
                    tensor.copy_(kept[name])
        for stream, kept in zip(self.streams, state["streams"]):
            stream.restore(kept)


def _views(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each of ``like``'s K-stacked tensors as a view of its columns of ``flat`` (K x N), in order."""
    views, start = {}, 0
    for name, tensor in like.items():
        size = tensor[0].numel()
        views[name] = flat[:, start:start + size].view(tensor.shape)
        start += size
    return views


def train_fused(configs, data: ImageData, device: str | torch.device = "cpu", precision: str = "fp32",
                progress: bool = True, description: str | None = None,
                checkpointer: Checkpointer | None = None, compile_model: bool = False) -> list[TrainResult]:
    """Train ``configs`` (RunConfigs with one :func:`fusable_key`) together; one result per run,
    in order, with the rows :func:`lrstudy.train.train` would have written. With a
    ``checkpointer`` (whose run id is :func:`group_id` of ``configs``) the group's state is saved
    every ``checkpointer.every`` updates and a group killed on the way resumes from it.
    ``compile_model`` runs the batched forward pass and loss through ``torch.compile``."""
    if not configs or len({fusable_key(c) for c in configs}) != 1 or not all(fusable(c) for c in configs):
        raise ValueError("train_fused: the runs must be fusable and share everything but seed, schedule and solver")
    with run_numerics(), (compiling.recompile_scope() if compile_model else nullcontext()):
        return _train_fused(configs, data, torch.device(device), precision, progress, description, checkpointer,
                            compile_model)


def _train_fused(configs, data, device, precision, progress, description, checkpointer, compile_model):
    started = time.perf_counter()
    first = configs[0]
    if first.train_subset or first.test_subset:
        data = data.subset(first.train_subset, first.test_subset)
    data = data.on(device)
    runs = _FusedRuns(configs, data, device, precision, compile_model)
    ledger = Ledger(runs.schedules, runs.momenta, first.batch_size, len(data.train_y), device, started)
    resumed_from = run_steps(runs, ledger, first.iterations, eval_steps(first.iterations, first.eval_every,
                                                                         first.eval_at or ()),
                             None, checkpointer, device, progress, description)
    results = ledger.results(resumed_from)
    for result in results:
        result.timings["fused_runs"] = len(configs)
        result.step_mode = "fused-compiled" if compile_model else "fused"
    return results
