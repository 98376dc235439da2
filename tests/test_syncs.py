"""A training step reads nothing back from the device between evaluations.

:class:`lrstudy.syncs.HostReads` counts every ``.item()``, ``.tolist()``, ``.cpu()``, ``bool(t)``... made
inside the training loop but outside an evaluation, the rows it writes or a checkpoint (and, on CUDA,
every synchronisation torch's sync debug mode reports). Lone runs with every per-step feature
(rate and momentum schedules, a trace row every update, the Hessian-free estimate), stochastic depth
and fused groups make none -- on the CPU's exact path and with the rates on the device, and on CUDA
where there is a GPU. The counter's own blind spots are tested with planted reads: one in
``RateTable.load`` (which a bare-name allowlist took for a checkpoint's load) and implicit ones
(``x[x > 0]``, ``nonzero``, ``unique``, ``torch.equal``, ``masked_select``).
"""

import math

import pandas as pd
import pytest
import torch

from lrstudy import train as train_module
from lrstudy.data import synthetic
from lrstudy.fused import train_fused
from lrstudy.ledger import Steps, run_steps
from lrstudy.runs import RunConfig
from lrstudy.syncs import HostReads, describe
from lrstudy.train import train

BUSY = dict(profile="smoke", data="synthetic", model={"name": "caffe_cifar10_full"},
            optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004},
            schedule={"name": "triangular", "base_lr": 0.001, "max_lr": 0.006, "step_size": 5},
            momentum={"name": "one_cycle_momentum", "max_momentum": 0.95, "min_momentum": 0.85, "step_size": 10},
            trace_every=1, lr_estimate="corrected", iterations=12, batch_size=20, eval_every=6, seed=1)


DATA = synthetic(train=400, test=100)  # (few test images: evaluations are not what is tested)
# Every test runs on the CPU and, where there is one, on CUDA (where torch's sync debug mode also counts)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]


def _counted(run, device="cpu"):
    with HostReads(cuda=device == "cuda") as reads:
        result = run()
    return result, reads.calls


@pytest.mark.parametrize("on_device", [False, True], ids=["python-rates", "device-rates"])
def test_a_busy_lone_run_reads_nothing_between_evaluations(monkeypatch, on_device):
    data = DATA
    plain = train(RunConfig(**BUSY), data, progress=False)
    monkeypatch.setattr(train_module, "rates_on_device", lambda device, mode: on_device)
    result, calls = _counted(lambda: train(RunConfig(**BUSY), data, progress=False))
    assert not calls, describe(calls)
    assert len(result.rows) == 13 and result.status == "finished"
    ours, theirs = pd.DataFrame(result.rows), pd.DataFrame(plain.rows)
    if not on_device:  # the CPU's own path is the committed one, bit for bit
        pd.testing.assert_frame_equal(ours, theirs)
    else:  # a tensor rate rounds once more than a fused multiply-add with a float
        pd.testing.assert_frame_equal(ours, theirs, rtol=1e-4, check_exact=False)


@pytest.mark.parametrize("config", [
    dict(model={"name": "resnet_sd", "depth": 8}, optimizer={"name": "torch_sgd", "momentum": 0.9, "nesterov": True,
                                                             "weight_decay": 1e-4}, lr_estimate=None),
    dict(optimizer={"name": "caffe_adam", "momentum": 0.9, "weight_decay": 0.004}, momentum=None),
], ids=["stochastic-depth", "adam"])
def test_other_networks_and_solvers_read_nothing(monkeypatch, config):
    monkeypatch.setattr(train_module, "rates_on_device", lambda device, mode: True)
    result, calls = _counted(lambda: train(RunConfig(**{**BUSY, **config}), DATA, progress=False))
    assert not calls, describe(calls)
    assert result.status == "finished"


FUSED = {k: v for k, v in BUSY.items() if k not in ("trace_every", "lr_estimate")}


@pytest.mark.parametrize("device", DEVICES)
def test_a_fused_group_reads_nothing_between_evaluations(device):
    configs = [RunConfig(**{**FUSED, "seed": seed}) for seed in (1, 2)]
    results, calls = _counted(lambda: train_fused(configs, DATA, device=device, progress=False), device)
    assert not calls, describe(calls)
    assert all(r.status == "finished" and len(r.rows) == 3 for r in results)


@pytest.mark.parametrize("device", DEVICES[1:])  # (the CPU's: test_a_busy_lone_run_reads_nothing_between_evaluations)
def test_a_lone_run_with_rates_on_the_device_reads_nothing(device, monkeypatch):
    monkeypatch.setattr(train_module, "rates_on_device", lambda device, mode: True)
    result, calls = _counted(lambda: train(RunConfig(**BUSY), DATA, device=device, progress=False), device)
    assert not calls, describe(calls)
    assert result.status == "finished"


def test_a_read_planted_in_rate_table_load_is_counted(monkeypatch):
    """RateTable.load runs every step: a read in it must count, though checkpoints' ``load`` may read."""
    from lrstudy.rates import RateTable

    load = RateTable.load

    def reading_load(self, step):
        row = load(self, step)
        assert row.sum().item() >= 0  # planted
        return row

    monkeypatch.setattr(RateTable, "load", reading_load)
    configs = [RunConfig(**{**FUSED, "seed": seed}) for seed in (1, 2)]
    _, calls = _counted(lambda: train_fused(configs, DATA, progress=False))
    assert len(calls) == FUSED["iterations"] and {what for what, _ in calls} == {"item"}
    assert all(where.startswith("fused.py:") and where.endswith(" update") for _, where in calls)  # (its caller)


@pytest.mark.parametrize("implicit", [
    lambda x: x[x > 0],
    lambda x: torch.nonzero(x),
    lambda x: x.unique(),
    lambda x: torch.equal(x, x),
    lambda x: x.masked_select(x > 0),
], ids=["boolean-mask", "nonzero", "unique", "equal", "masked_select"])
def test_an_implicit_read_in_an_update_is_counted(implicit):
    """Reads that name no read: the result's size or value needs the device's numbers."""
    class Reading(Steps):
        def update(self, step):
            loss = torch.ones(4) - step
            implicit(loss)
            return loss.sum(), torch.zeros(1, dtype=torch.int64)

        def evaluate(self, step, runs):
            return {0: (float(torch.zeros(())), 0.0)}

    from lrstudy.ledger import Ledger

    ledger = Ledger([lambda s: 0.1], [None], 1, 10, torch.device("cpu"), 0.0)
    with HostReads() as reads:
        run_steps(Reading(), ledger, 5, [0, 5], None, None, torch.device("cpu"), progress=False)
    assert len(reads.calls) == 5, describe(reads.calls)


def test_a_read_in_an_update_is_counted():
    class Reading(Steps):
        def update(self, step):
            loss = torch.ones(1)
            assert math.isfinite(loss.sum().item())  # the kind of check a loop must not make
            return loss, torch.zeros(1, dtype=torch.int64)

        def evaluate(self, step, runs):
            return {0: (float(torch.zeros(())), 0.0)}  # evaluations may read

    from lrstudy.ledger import Ledger

    ledger = Ledger([lambda s: 0.1], [None], 1, 10, torch.device("cpu"), 0.0)
    with HostReads() as reads:
        run_steps(Reading(), ledger, 5, [0, 5], None, None, torch.device("cpu"), progress=False)
    assert [what for what, _ in reads.calls] == ["item"] * 5  # one per update, none in the evaluations
