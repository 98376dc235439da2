"""Profiles, notebook settings, a whole experiment through the store, verdict rules, the CLI."""

import math

import pytest

from lrstudy import study as study_mod
from lrstudy.__main__ import main
from lrstudy.config import check_section, load_profile, resolve_device
from lrstudy.experiments import clr_cifar10, get_experiment
from lrstudy.paper import paper_table
from lrstudy.stats import Claim, mean_ci


def test_every_profile_loads_and_configures_every_notebook():
    for name in ("smoke", "cpu", "fast", "full"):
        profile = load_profile(name)
        s = clr_cifar10.settings(name)
        assert s.profile == profile and len(s.seeds) == profile.seeds
        assert len(clr_cifar10.run_configs(s)) == 5 * profile.seeds


@pytest.mark.parametrize("call, message", [
    (lambda: load_profile("medium"), "unknown profile 'medium'"),
    (lambda: clr_cifar10.settings("smoke", seeds=0), "seeds=0"),
    (lambda: clr_cifar10.settings("smoke", device="tpu"), "device='tpu'"),
    (lambda: get_experiment("sgdr_imagenet"), "unknown notebook/experiment 'sgdr_imagenet'"),
    (lambda: check_section("x", {"budget_scale": 2}, clr_cifar10.KNOBS), "budget_scale=2 is out of range"),
    (lambda: check_section("x", {"budget_scale": "1", "eval_every": 5}, clr_cifar10.KNOBS), "wrong type"),
    (lambda: check_section("x", {"budget_scale": 1, "eval_every": 5, "lr": 1}, clr_cifar10.KNOBS), "unknown key 'lr'"),
    (lambda: check_section("x", {"eval_every": 5}, clr_cifar10.KNOBS), "missing key 'budget_scale'"),
])
def test_bad_settings_fail_with_the_key_and_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_cuda_requested_without_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(RuntimeError, match="PROFILE=cpu"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_smoke_study_runs_then_only_reads(scratch, monkeypatch):
    s = clr_cifar10.settings("smoke")
    first = clr_cifar10.run(s, progress=False)
    assert set(first.runs.status) == {"finished"}
    assert list(first.summary(clr_cifar10.paper()).index) == list(clr_cifar10.POLICIES)
    monkeypatch.setattr(study_mod, "load_data", lambda *a: pytest.fail("data loaded on a re-run"))
    monkeypatch.setattr(study_mod, "train", lambda *a, **k: pytest.fail("trained on a re-run"))
    again = clr_cifar10.run(s, progress=False)
    assert again.runs.final_test_acc.tolist() == first.runs.final_test_acc.tolist()
    verdicts = again.verdicts(clr_cifar10.CLAIMS)
    assert set(verdicts.verdict) <= {"confirmed", "not confirmed", "inconclusive"}
    assert (verdicts.n == 1).all()


def test_a_failing_run_does_not_stop_the_others(scratch, monkeypatch):
    real_train = study_mod.train

    def sometimes(config, *a, **k):
        if config.schedule["name"] == "exp":
            raise RuntimeError("simulated crash")
        return real_train(config, *a, **k)

    monkeypatch.setattr(study_mod, "train", sometimes)
    results = clr_cifar10.run(clr_cifar10.settings("smoke"), progress=False)
    runs = results.runs.set_index("setting")
    assert runs.loc["exp", "status"] == "failed" and "simulated crash" in runs.loc["exp", "error"]
    assert (runs.drop(index="exp").status == "finished").all()


def test_claim_rules():
    final = {"a": {1: 80.0, 2: 81.0, 3: 82.0}, "b": {1: 79.0, 2: 79.5, 3: 80.2}, "c": {1: 82.0}}
    assert Claim("x", "", "a", "b").judge(final)["verdict"] == "confirmed"
    assert Claim("x", "", "b", "a").judge(final)["verdict"] == "not confirmed"
    assert Claim("x", "", "b", "a", kind="not_worse", margin=5).judge(final)["verdict"] == "confirmed"
    single = Claim("x", "", "c", "a").judge(final)
    assert single["n"] == 1 and single["verdict"] == "confirmed" and "one seed" in single["basis"]
    assert Claim("x", "", "a", "missing").judge(final)["verdict"] == "not run"
    mean, low, high = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and low == pytest.approx(2 - 4.302653 * 1 / math.sqrt(3), rel=1e-5)


def test_paper_table_has_the_cifar10_rows():
    rows = clr_cifar10.paper()
    assert list(rows.setting) == list(clr_cifar10.POLICIES)
    assert (rows.iterations.tolist() == [n for n, _ in clr_cifar10.POLICIES.values()])
    assert paper_table("CLR").arxiv.unique().tolist() == ["1506.01186v6"]


def test_cli(scratch, capsys):
    assert main(["list"]) == 0
    assert "clr_cifar10" in capsys.readouterr().out
    assert main(["run", "clr_cifar10", "--profile", "smoke", "--no-progress"]) == 0
    assert "finished" in capsys.readouterr().out
