"""Whole-step capture (``step_mode="reduce-overhead"``): the part of a training step that is replayed
as CUDA graphs -- forward, loss, backward, the optimizer's update -- makes the same operations on
tensors of the same shapes every step, whatever the rate, momentum or batch, and reads nothing back
to the host. That is what a graph replay needs, and it is checked here on the CPU. Where torch.compile
works, the captured step compiles once and never again as the schedule moves on.
"""

import math
import shutil

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lrstudy import train as train_module
from lrstudy.data import load_data
from lrstudy.runs import RunConfig
from lrstudy.syncs import HostReads, describe
from lrstudy.train import WARMUP_STEPS, step_function, train

RUN = dict(profile="smoke", data="synthetic-mnist", model={"name": "lenet"}, normalize="scale",
           schedule={"name": "triangular", "base_lr": 0.001, "max_lr": 0.02, "step_size": 4},
           momentum={"name": "one_cycle_momentum", "max_momentum": 0.95, "min_momentum": 0.85, "step_size": 4},
           iterations=16, batch_size=20, eval_every=8, seed=1)
SOLVERS = [{"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 5e-4},
           {"name": "caffe_adam", "momentum": 0.9, "weight_decay": 5e-4},
           {"name": "torch_sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}]


class Operations(TorchDispatchMode):
    """Every operation with the shapes, dtypes and devices of its tensor arguments."""

    def __init__(self):
        super().__init__()
        self.log = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        flat = torch.utils._pytree.tree_leaves((args, kwargs or {}))
        self.log.append((str(func), tuple((tuple(t.shape), t.dtype, t.device.type) for t in flat
                                          if isinstance(t, torch.Tensor))))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("optimizer", SOLVERS, ids=[s["name"] for s in SOLVERS])
def test_the_captured_step_is_the_same_operations_on_the_same_shapes_every_step(monkeypatch, optimizer):
    monkeypatch.setattr(train_module.torch, "compile", lambda fn, **kw: fn)  # the step as it would be captured
    config = RunConfig(**{**RUN, "optimizer": optimizer})
    step = step_function(config, load_data("synthetic-mnist"), "cpu", "fp32", "reduce-overhead")
    for i in range(WARMUP_STEPS):  # eager: optimizer state is made
        step(i)
    run, traces = step.run, []
    captured = run._captured_step
    for i in range(WARMUP_STEPS, WARMUP_STEPS + 3):  # three steps with three rates and momenta
        run.rates.load(i)
        x, y = next(run.stream)
        with Operations() as ops, HostReads() as reads:
            loss, hits = captured(x, y)
        assert not reads.calls, describe(reads.calls)
        assert math.isfinite(loss.item())
        traces.append(ops.log)
    assert traces[0] == traces[1] == traces[2]
    assert not any("_local_scalar_dense" in op for op, _ in traces[0])  # (what .item() and bool() dispatch to)


def test_a_captured_run_reads_nothing_and_follows_the_eager_run(monkeypatch):
    monkeypatch.setattr(train_module.torch, "compile", lambda fn, **kw: fn)
    data = load_data("synthetic-mnist")
    config = RunConfig(**{**RUN, "optimizer": SOLVERS[0]})
    eager = train(config, data, progress=False)
    with HostReads() as reads:
        captured = train(config, data, progress=False, step_mode="reduce-overhead")
    assert not reads.calls, describe(reads.calls)
    assert captured.step_mode == "reduce-overhead" and eager.step_mode == "eager"
    for a, b in zip(eager.rows, captured.rows):
        assert a["step"] == b["step"] and a["lr"] == b["lr"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4, nan_ok=True)


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="torch.compile on the CPU needs a C compiler")
def test_reduce_overhead_compiles_once_whatever_the_schedule():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    data = load_data("synthetic-mnist")
    config = RunConfig(**{**RUN, "optimizer": SOLVERS[0]})
    step = step_function(config, data, "cpu", "fp32", "reduce-overhead")
    for i in range(WARMUP_STEPS + 2):
        step(i)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 2  # the network with its loss (forward and backward), and the update
    for i in range(WARMUP_STEPS + 2, WARMUP_STEPS + 8):  # the rate and momentum change every step
        loss, _ = step(i)
        assert math.isfinite(loss.item())
    assert counters["stats"]["unique_graphs"] == graphs
