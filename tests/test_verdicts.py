"""The verdict model on constructed data: every state a claim can end in, the power of its seeds,
the second row at equal iterations, and chance-corrected measures."""

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from lrstudy.knobs import Knobs
from lrstudy.stats import (NOT_TESTABLE, TOO_FEW, Agreement, AtLeast, Claim, Testability, detectable_difference,
                           seeds_needed)
from lrstudy.study import Experiment, Row, StudyResults

PAIRED = {"a": {1: 81.0, 2: 81.5, 3: 81.2}, "b": {1: 79.0, 2: 79.4, 3: 79.1}}


def test_a_testable_claim_with_seeds_gets_a_yes_or_a_no():
    assert Claim("x", "", "a", "b").judge(PAIRED)["verdict"] == "confirmed"
    assert Claim("x", "", "b", "a").judge(PAIRED)["verdict"] == "not confirmed"
    assert Claim("x", "", "a", "b", margin=5.0).judge(PAIRED)["verdict"] == "not confirmed"  # "far better" needs 5


def test_one_seed_is_never_a_yes_or_a_no():
    one = {"a": {1: 90.0}, "b": {1: 10.0}}
    row = Claim("x", "", "a", "b").judge(one)
    assert row["verdict"] == TOO_FEW and row["n"] == 1
    # power is prospective (the planned seeds, a pooled spread), never one seed's binomial error
    assert math.isnan(row["detectable"]) and math.isnan(row["p"])
    planned = Claim("x", "", "a", "b").judge(one, spread=1.0, planned=5)
    assert planned["detectable"] == pytest.approx(detectable_difference(1.0, 5))
    assert Agreement("m", "", "a", 90.0).judge(one)["verdict"] == TOO_FEW
    assert AtLeast("m", "", "a", 50.0).judge(one)["verdict"] == TOO_FEW


def test_three_seeds_with_a_wide_spread_stay_inconclusive():
    wide = {"a": {1: 85.0, 2: 75.0, 3: 83.0}, "b": {1: 79.0, 2: 79.0, 3: 79.0}}
    row = Claim("x", "", "a", "b").judge(wide, spread=5.0, planned=3)
    assert row["verdict"] == "inconclusive" and row["ci_low"] < 0 < row["ci_high"]
    # detectable comes from the spread given (pooled over the experiment), not from this row's own
    assert row["detectable"] == pytest.approx(detectable_difference(5.0, 3))
    assert row["detectable"] > abs(row["difference"])  # the seeds could not have seen this difference


def test_a_budget_below_the_threshold_is_not_testable_whatever_the_numbers():
    rule = Testability(min_budget=0.5)
    reason = rule.reason(0.02, {})
    assert "2.00% of the paper's images (needs 50%)" in reason
    row = Claim("x", "", "a", "b", testable=rule).judge(PAIRED, testable=reason)
    assert row["verdict"] == NOT_TESTABLE and row["difference"] == pytest.approx(2.0667, rel=1e-3)
    assert rule.reason(0.6, {}) is None


def test_arms_that_have_not_levelled_off_are_not_testable():
    rule = Testability(min_budget=0.0, levelled=("exp",), window=0.2, max_gain=0.5)
    assert "exp still gained 3.00 points" in rule.reason(1.0, {"exp": 3.0})
    assert rule.reason(1.0, {"exp": 0.2}) is None
    assert "too few evaluations" in rule.reason(1.0, {"exp": math.nan})


def test_seeds_needed_for_an_effect():
    assert seeds_needed(3.0, 1.0) == 4  # (4.30 + 1.06) / sqrt(3) = 3.10 > 3; (3.18 + 0.98) / 2 = 2.08
    assert seeds_needed(0.1, 1.0) is None  # more than a hundred
    assert seeds_needed(-1.0, 1.0) is None  # nothing to detect
    not_worse = Claim("x", "", "a", "b", kind="not_worse", margin=1.0)
    assert not_worse.effect_to_detect(81.4, 81.4) == 1.0


def _curves_experiment(final_steps=(25, 70)):
    short, long = final_steps
    rows = {"short": Row(short, {"name": "fixed", "lr": 0.01}, {"name": "caffe_cifar10_full"}, {"name": "caffe_sgd"}, 100),
            "long": Row(long, {"name": "fixed", "lr": 0.01}, {"name": "caffe_cifar10_full"}, {"name": "caffe_sgd"}, 100)}
    claim = Claim("T", "short in fewer iterations matches long", a="short", b="long", kind="not_worse", margin=1.0,
                  equal_iterations=True)
    return Experiment("toy", rows, [claim], [], pd.DataFrame), rows


class _Record:
    def __init__(self, steps, accs):
        self.rows = pd.DataFrame({"step": steps, "test_acc": accs})
        self.meta = {"data": {"test_examples": 10_000}}

    @property
    def final(self):
        return self.rows.iloc[-1].to_dict()


class _Config:
    def __init__(self, seed, iterations):
        self.seed, self.iterations, self.test_subset = seed, iterations, None


def test_a_fewer_iterations_claim_gets_a_second_row_at_equal_iterations():
    experiment, rows = _curves_experiment()
    assert [c.id for c in experiment.claims] == ["T", "T@equal-iterations"]
    measure = "long at short's last iteration"
    assert measure in experiment.labels and experiment.inputs(measure) == ("short", "long")
    records, labels, configs = [], [], []
    for seed in (1, 2, 3):
        labels += ["short", "long"]
        configs += [_Config(seed, 25), _Config(seed, 70)]
        records += [_Record([0, 25], [10, 60 + seed]), _Record([0, 20, 30, 70], [10, 40, 50, 80])]
    results = StudyResults(None, labels, configs, records)
    paper_budget = SimpleNamespace(knobs=Knobs(), seeds=(1, 2, 3))
    # the long arm read at step 25 off its curve: halfway between 40 (step 20) and 50 (step 30)
    assert experiment.at_equal_iterations(paper_budget, results)[measure] == {1: 45.0, 2: 45.0, 3: 45.0}
    table = experiment.verdicts(paper_budget, results)
    assert table.loc["T", "verdict"] == "not confirmed"  # at their own budgets the long arm wins ...
    assert table.loc["T@equal-iterations", "verdict"] == "confirmed"  # ... at equal iterations the short one
    assert table.loc["T@equal-iterations", "difference"] == pytest.approx(17.0)


def test_chance_is_subtracted_from_retained_accuracy():
    from lrstudy.experiments import super_convergence as sc

    class Results:
        labels, configs, records = [], [], []
        curves = pd.DataFrame({"setting": [sc.RANGE_CAFFE] * 4, "seed": [1] * 4, "step": [0, 50, 90, 100],
                               "lr": [0, 1, 2, 3], "test_acc": [10.0, 40.0, 10.0, 10.0]})

        @staticmethod
        def final_accuracy():
            return {}

    out = sc.derive(None, Results())
    # a net back at chance (10%) at the top of its sweep retains nothing (it scored 0.25 before)
    assert out[sc.RETAINED_CAFFE] == {1: 0.0}


def test_budgets_read_as_plain_percentages():
    from lrstudy.notebook import percent

    assert [percent(f) for f in (1.0, 0.25, 0.02, 0.0004)] == ["100%", "25%", "2%", "0.04%"]


def test_a_page_says_where_its_runs_trained_when_not_where_the_profile_plans():
    from lrstudy.notebook import trained_on

    runs = pd.DataFrame({"device": ["CPU: x (1 threads)", "CPU: x (1 threads)", None],
                         "precision": ["fp32", "fp32", None]})
    on_gpu = SimpleNamespace(device="cuda")
    text = trained_on(runs, on_gpu)
    assert "CPU: x (1 threads), fp32 (2 runs)" in text
    assert "plans a GPU; 2 of these runs were trained on a CPU" in text
    assert "plans" not in trained_on(runs, SimpleNamespace(device="cpu"))
    assert trained_on(runs.iloc[2:], on_gpu) == "No run has been trained yet."
