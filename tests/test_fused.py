"""Fused runs equal separate runs: same initial weights, data order and updates per run, up to
floating-point summation order; a run that diverges inside a group is recorded as a lone one."""

import pandas as pd
import pytest

from lrstudy.data import load_data
from lrstudy.fused import fusable, fusable_key, train_fused
from lrstudy.runs import RunConfig
from lrstudy.train import train

BASE = dict(profile="smoke", data="synthetic", optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004},
            iterations=20, batch_size=20, eval_every=10)


def group(model):
    return [
        RunConfig(**BASE, model=model, seed=1, schedule={"name": "fixed", "lr": 0.001}),
        RunConfig(**BASE, model=model, seed=2,
                  schedule={"name": "triangular", "base_lr": 0.001, "max_lr": 0.006, "step_size": 5}),
        RunConfig(**{**BASE, "optimizer": {"name": "caffe_sgd", "momentum": 0.8, "weight_decay": 0.0}}, model=model,
                  seed=3, schedule={"name": "exp", "base_lr": 0.002, "gamma": 0.99},
                  momentum={"name": "one_cycle_momentum", "max_momentum": 0.95, "min_momentum": 0.85, "step_size": 10}),
    ]


@pytest.mark.parametrize("model", [{"name": "caffe_cifar10_full"}, {"name": "caffe_cifar10_sigmoid_bn"},
                                   {"name": "resnet", "depth": 8}])
def test_fused_runs_equal_separate_runs(model):
    data = load_data("synthetic")
    configs = group(model)
    alone = [train(c, data, progress=False) for c in configs]
    together = train_fused(configs, data, progress=False)
    for a, b in zip(alone, together):
        da, db = pd.DataFrame(a.rows), pd.DataFrame(b.rows)
        assert list(da.columns) == list(db.columns) and list(da.step) == list(db.step)
        assert (da.lr == db.lr).all()
        pd.testing.assert_series_equal(da.train_loss, db.train_loss, rtol=1e-3, check_exact=False)
        pd.testing.assert_series_equal(da.test_loss, db.test_loss, rtol=1e-3, check_exact=False)
        assert (da.test_acc - db.test_acc).abs().max() <= 1.0  # a near-tie may flip a prediction or two


def test_a_diverging_run_in_a_group_is_recorded_as_diverged():
    data = load_data("synthetic")
    healthy, wild = group({"name": "caffe_cifar10_full"})[:2]
    wild = RunConfig.from_dict({**wild.to_dict(), "schedule": {"name": "fixed", "lr": 1e4}})
    alone = train(wild, data, progress=False)
    assert alone.status == "diverged"
    a, b = train_fused([healthy, wild], data, progress=False)
    assert a.status == "finished" and b.status == "diverged" and b.diverged_at == alone.diverged_at
    assert b.rows[-1]["step"] == alone.rows[-1]["step"]
    # the healthy run's training columns still average over all its updates since its last row
    healthy_alone = pd.DataFrame(train(healthy, data, progress=False).rows)
    pd.testing.assert_series_equal(pd.DataFrame(a.rows).train_loss, healthy_alone.train_loss, rtol=1e-3,
                                   check_exact=False)


def test_which_runs_fuse():
    configs = group({"name": "caffe_cifar10_full"})
    assert len({fusable_key(c) for c in configs}) == 1
    other = RunConfig.from_dict({**configs[0].to_dict(), "batch_size": 10})
    assert fusable_key(other) != fusable_key(configs[0])
    sd = RunConfig.from_dict({**configs[0].to_dict(), "model": {"name": "resnet_sd", "depth": 8}})
    assert not fusable(sd)
    with pytest.raises(ValueError, match="fusable"):
        train_fused([configs[0], other], load_data("synthetic"), progress=False)


def test_a_study_with_fusing_trains_groups_and_stores_each_run(scratch):
    import dataclasses

    from lrstudy.experiments import clr_cifar10

    experiment = clr_cifar10.EXPERIMENT
    s = experiment.settings("smoke")
    fused_settings = dataclasses.replace(s, profile=dataclasses.replace(s.profile, fuse=8))
    # three window shapes share a network and a length (one group), two exp_range readings another; fixed trains alone
    only = ["welch", "hann", "triangular, stepsize 2 epochs", "exp_range", "exp_range (amplitude only)", "fixed"]
    together = experiment.run(fused_settings, only=only, progress=False, fuse=8)
    runs = together.runs
    assert set(runs.status) == {"finished"}
    grouped = sorted(r.meta["timings"].get("fused_runs", 1) for r in together.records)
    assert grouped == [1, 2, 2, 3, 3, 3]
    assert not list((together.records[0].path.parent.parent / "checkpoints").glob("fused-*"))  # done: removed
    again = experiment.run(fused_settings, only=only, progress=False)  # everything is stored: nothing retrains
    assert again.runs.final_test_acc.tolist() == runs.final_test_acc.tolist()


def test_a_fused_group_stopped_after_a_checkpoint_resumes_to_the_same_rows(tmp_path):
    from lrstudy.checkpoints import Checkpointer
    from lrstudy.fused import group_id

    data = load_data("synthetic")
    configs = [RunConfig.from_dict({**c.to_dict(), "iterations": 30}) for c in group({"name": "caffe_cifar10_full"})]
    straight = train_fused(configs, data, progress=False)
    path, gid = tmp_path / "group.pt", group_id(configs)

    class Stop(Exception):
        pass

    class StopAfterSecondSave(Checkpointer):
        saves = 0

        def save(self, state):
            super().save(state)
            StopAfterSecondSave.saves += 1
            if StopAfterSecondSave.saves == 2:
                raise Stop

    with pytest.raises(Stop):
        train_fused(configs, data, progress=False, checkpointer=StopAfterSecondSave(path, gid, 7))
    resumed = train_fused(configs, data, progress=False, checkpointer=Checkpointer(path, gid, 7))
    for a, b in zip(straight, resumed):
        assert b.timings["resumed_from_step"] == 14 and b.status == a.status
        pd.testing.assert_frame_equal(pd.DataFrame(a.rows), pd.DataFrame(b.rows))
    assert group_id(configs) != group_id(configs[::-1])  # a checkpoint belongs to one group, in order


def test_a_cpu_study_does_not_fuse_by_default(scratch):
    import dataclasses

    from lrstudy.experiments import clr_cifar10

    s = clr_cifar10.EXPERIMENT.settings("smoke")
    s = dataclasses.replace(s, profile=dataclasses.replace(s.profile, fuse=8))
    labelled = clr_cifar10.EXPERIMENT.run_configs(s)[:3]
    from lrstudy.runqueue import run_in_order

    records, _ = run_in_order(s, labelled, progress=False)
    assert all(r.meta["step_mode"] == "eager" and "fused_runs" not in r.meta["timings"] for r in records)
