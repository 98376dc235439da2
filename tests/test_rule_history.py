"""Rules with a history and the statistics beside them: when a rule was declared against the runs
it judges, the pre-declared verdict kept beside a revision made after the data, interim verdicts,
joint equivalence, relative margins, p- and q-values, pooled prospective power, t-bands for curves,
and the scorecard's separate counts. All on constructed data: fast, offline."""

import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lrstudy import scorecard
from lrstudy.experiments import EXPERIMENTS, clr_adaptive, clr_architectures, clr_cifar10, sgdr
from lrstudy.history import Revision, declared_before, history_text, rule_before
from lrstudy.knobs import Knobs
from lrstudy.stats import (TOO_FEW, AllEquivalent, Claim, bh_qvalues, curve_band, detectable_difference,
                           difference_band, interim, mean_ci, pooled_sd)
from lrstudy.study import Experiment, Row, StudyResults

PAIRED = {"a": {1: 81.0, 2: 81.5, 3: 81.2}, "b": {1: 79.0, 2: 79.4, 3: 79.1}}


def test_a_bare_date_is_not_before_a_run_of_the_same_day():
    assert declared_before("2026-11-25", "2026-11-26T00:01:00+0000") is True
    assert declared_before("2026-11-25", "2026-11-25T23:00:00+0000") is False  # only the day is known
    assert declared_before("2026-11-25T18:35:54+00:00", "2026-11-25T18:36:04+0000") is True
    assert declared_before("2026-11-30T15:02:21+00:00", "2026-11-25T18:36:04+0000") is False
    assert declared_before("2026-11-25", None) is None and declared_before("", "2026-11-25T00:00") is None


def _revised(declared="2026-11-25T10:00:00+00:00", revised="2026-12-06T18:00:00+00:00"):
    new = Claim("x", "a beats b by more than 5", "a", "b", margin=5.0)
    return Claim("x", "a beats b", "a", "b", declared=declared, commit="abc1234",
                 revision=Revision(new, declared=revised, reason="one line why"))


def test_the_rule_in_force_when_the_first_run_started():
    claim = _revised()
    assert rule_before(claim, "2026-11-26T00:00:00+0000") is claim  # runs between declaration and revision
    assert rule_before(claim, "2026-12-07T00:00:00+0000") is claim.revision.rule  # runs after the revision
    assert rule_before(claim, None) is claim.revision.rule  # no run yet: the revision is simply the rule
    assert rule_before(_revised(declared="2026-11-27T00:00:00+00:00"), "2026-11-26T00:00:00+0000") is None
    text = history_text(claim, "2026-11-26T00:00:00+0000")
    assert text == ("declared 2026-11-25 (abc1234), before its first run (2026-11-26); "
                    "revised 2026-12-06 after data: one line why")


class _Record:
    def __init__(self, steps, accs, started):
        self.rows = pd.DataFrame({"step": steps, "test_acc": accs})
        self.meta = {"started_at": started, "data": {"test_examples": 10_000}}

    @property
    def final(self):
        return self.rows.iloc[-1].to_dict()


def _toy(claim, finals, started, seeds=5):
    """An experiment of rows ``a`` and ``b`` (one network), runs with these final accuracies
    ``{label: {seed: acc}}`` all started at ``started``, and settings planning ``seeds`` seeds."""
    row = Row(10, {"name": "fixed", "lr": 0.01}, {"name": "caffe_cifar10_full"}, {"name": "caffe_sgd"}, 100)
    experiment = Experiment("toy", {"a": row, "b": row}, [claim], [], pd.DataFrame)
    labels, configs, records = [], [], []
    for label, values in finals.items():
        for seed, acc in values.items():
            labels.append(label)
            configs.append(SimpleNamespace(seed=seed, iterations=10, test_subset=None))
            records.append(_Record([0, 10], [10.0, acc], started))
    s = SimpleNamespace(knobs=Knobs(), seeds=tuple(range(1, seeds + 1)))
    return experiment, s, StudyResults(None, labels, configs, records)


def test_a_rule_revised_after_its_data_keeps_the_pre_declared_verdict_beside_the_new_one():
    experiment, s, results = _toy(_revised(), PAIRED, "2026-11-30T12:00:00+0000")
    row = experiment.verdicts(s, results).loc["x"]
    assert row["pre-declared verdict"] == "confirmed"  # a - b ~ 2.07 > 0: the rule declared before the runs
    assert row["verdict"] == "not confirmed"  # ... but not by more than 5: the revision's
    assert row["revised after data"] and row["declared before data"] == "yes"
    assert "revised 2026-12-06 after data: one line why" in row["rule history"]
    assert row["status"] == "interim (3 of 5)" and row["planned"] == 5
    assert row["rule"].startswith("confirmed if the 95% CI of a - b (paired by seed) is above 5")


def test_a_revision_declared_before_the_runs_is_simply_the_rule():
    experiment, s, results = _toy(_revised(), PAIRED, "2026-12-07T12:00:00+0000", seeds=3)
    row = experiment.verdicts(s, results).loc["x"]
    assert not row["revised after data"] and row["pre-declared verdict"] == row["verdict"] == "not confirmed"
    assert row["status"] == "final (3 of 3)"


def test_a_rule_declared_after_its_first_run_has_no_pre_declared_verdict():
    late = Claim("x", "a beats b", "a", "b", declared="2026-12-01T00:00:00+00:00", commit="def5678")
    experiment, s, results = _toy(late, PAIRED, "2026-11-30T12:00:00+0000")
    row = experiment.verdicts(s, results).loc["x"]
    assert row["declared before data"] == "no" and row["pre-declared verdict"] == "no rule before its first run"
    assert "after its first run (2026-11-30)" in row["rule history"]


def test_power_is_prospective_from_the_pooled_spread_of_the_network():
    # a's seeds scatter by sd 1, b's by sd 3 (pooled: sqrt((2 + 18) / 4) = sqrt(5)); 5 seeds planned
    finals = {"a": {1: 80.0, 2: 81.0, 3: 82.0}, "b": {1: 77.0, 2: 80.0, 3: 83.0}}
    assert pooled_sd([[80, 81, 82], [77, 80, 83], [1.0]]) == (pytest.approx(math.sqrt(5)), 4)
    assert pooled_sd([[1.0], []]) == (pytest.approx(math.nan, nan_ok=True), 0)
    experiment, s, results = _toy(_revised(), finals, "2026-11-30T12:00:00+0000")
    row = experiment.verdicts(s, results).loc["x"]
    assert row["detectable"] == pytest.approx(detectable_difference(math.hypot(math.sqrt(5), math.sqrt(5)), 5))


def test_interim_status():
    assert [interim(0, 5), interim(2, 5), interim(5, 5)] == ["no runs", "interim (2 of 5)", "final (5 of 5)"]


def test_p_values_agree_with_the_interval_that_decides_the_verdict():
    for kind, margin in (("better", 0.0), ("better", 1.9), ("not_worse", 0.5), ("equivalent", 2.5)):
        row = Claim("x", "", "a", "b", kind=kind, margin=margin).judge(PAIRED)
        assert (row["verdict"] == "confirmed") == (row["p"] < 0.025), (kind, margin, row)
    assert Claim("x", "", "b", "a").judge(PAIRED)["against"] == 3  # every seed on the wrong side


def test_benjamini_hochberg_q_values():
    q = bh_qvalues([0.01, 0.04, math.nan, 0.03, 0.5])
    assert q[0] == pytest.approx(0.04) and q[1] == pytest.approx(0.16 / 3) and q[3] == pytest.approx(0.16 / 3)
    assert math.isnan(q[2]) and q[4] == pytest.approx(0.5)
    assert bh_qvalues([0.9, 0.8]) == [pytest.approx(0.9), pytest.approx(0.9)]  # monotone, capped at 1
    assert all(math.isnan(v) for v in bh_qvalues([math.nan]))


def test_window_shapes_are_judged_jointly():
    rule = AllEquivalent("w", "", ("t", "w", "h"), margin=0.5)
    close = {"t": {1: 80.0, 2: 80.1, 3: 80.0}, "w": {1: 80.05, 2: 80.1, 3: 80.02}, "h": {1: 80.0, 2: 80.12, 3: 80.03}}
    assert rule.judge(close)["verdict"] == "confirmed"
    far = {**close, "h": {1: 83.0, 2: 83.1, 3: 83.0}}  # one window 3 points away: the joint claim fails
    row = rule.judge(far)
    assert row["verdict"] == "not confirmed" and row["difference"] == pytest.approx(-3.0, abs=0.05)
    assert row["against"] == 3 and "furthest apart" in row["basis"]
    # the pairs are judged on the seeds every window has: one seed of one window is one seed
    assert rule.judge({**close, "h": {1: 80.0}})["verdict"] == TOO_FEW
    assert math.isnan(rule.judge({**close, "h": {1: 80.0}})["p"])


def test_a_relative_margin_scales_with_the_error():
    # b's error is 20%: 5% of it is a 1-point margin; a is 0.8 points worse, within it
    values = {"a": {1: 79.2, 2: 79.3, 3: 79.1}, "b": {1: 80.0, 2: 80.1, 3: 79.9}}
    row = Claim("x", "", "a", "b", kind="not_worse", relative=0.05).judge(values)
    assert row["verdict"] == "confirmed" and "margin 1.00 points" in row["basis"]
    assert Claim("x", "", "a", "b", kind="not_worse", margin=0.3).judge(values)["verdict"] == "not confirmed"


def test_curve_bands_use_the_tables_t_interval():
    curves = pd.DataFrame({"setting": ["a"] * 6 + ["b"] * 6, "seed": [1, 2, 3] * 4,
                           "step": [0, 0, 0, 10, 10, 10] * 2,
                           "test_acc": [10, 11, 12, 50, 52, 57, 10, 10, 10, 40, 41, 45.0]})
    band = curve_band(curves).set_index(["setting", "step"])
    mean, low, high = mean_ci([50, 52, 57])
    assert band.loc[("a", 10), ["mean", "low", "high", "n"]].tolist() == pytest.approx([mean, low, high, 3])
    diff = difference_band(curves, "a", "b").set_index("step")
    assert diff.loc[10, ["mean", "low", "high"]].tolist() == pytest.approx(list(mean_ci([10, 11, 12])))


def test_every_claim_records_when_it_was_declared_and_every_revision_why():
    for experiment in EXPERIMENTS.values():
        for claim in experiment.claims:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", claim.declared), claim.id
            assert re.fullmatch(r"[0-9a-f]{7}", claim.commit), claim.id
            if claim.revision is not None:
                assert claim.revision.reason and "\n" not in claim.revision.reason, claim.id
                assert claim.revision.declared > claim.declared, claim.id
                assert claim.revision.rule.rule != claim.rule, claim.id  # a revision changes the rule


def test_the_declared_revisions():
    cifar = {c.id: c for c in clr_cifar10.EXPERIMENT.claims}
    assert cifar["CLR-T1.tri2-vs-fixed"].in_force.margin == 0.5  # the paper reports equality
    assert cifar["CLR-3.1.welch"].in_force is cifar["CLR-3.1.hann"].in_force  # one joint claim
    adaptive = {c.id: c.in_force for c in clr_adaptive.EXPERIMENT.claims}
    assert (adaptive["CLR-T3.nesterov"].a, adaptive["CLR-T3.nesterov"].b) == ("Nesterov fixed", "Nesterov triangular")
    assert adaptive["CLR-T3.adam-70k"].kind == "equivalent" and adaptive["CLR-T3.adadelta"].margin == 0.5
    assert adaptive["CLR-T3.adagrad"].kind == "better"  # the declared rule already reads the paper's sign
    sg = {c.id: c.in_force for c in sgdr.EXPERIMENT.claims}
    assert sg["SGDR-T1.T0=1.CIFAR-10"].b == "CIFAR-10: default, eta0=0.05" and sg["SGDR-T1.T0=1.CIFAR-10"].relative
    assert sg["SGDR-T0=200.final"].b == "CIFAR-10: SGDR T0=10, Tmult=2"
    assert sg["SGDR-T2.snapshots.CIFAR-10"].margin == 0.26 and sg["SGDR-T2.snapshots.CIFAR-100"].margin == 0.91
    assert {c.origin for c in sgdr.EXPERIMENT.claims if c.id.startswith("SGDR-decay")} == {
        "recaps' advice (not in the paper)"}


def test_revised_measures_are_read_from_the_curves():
    s = clr_cifar10.EXPERIMENT.settings("full")
    rows = clr_cifar10.EXPERIMENT.scaled_rows(s)
    end, clr = rows[clr_cifar10.STOP_RUN].iterations, rows[clr_cifar10.SIGMOID_CLR].iterations
    stop = pd.DataFrame({"setting": clr_cifar10.STOP_RUN, "seed": 1, "step": [8000, 16000, 20000, 23000, end],
                         "test_acc": [70.0, 71.0, 79.5, 75.0, 78.0]})
    steps = np.arange(0, clr + 1, 1000)
    sigmoid = pd.concat([pd.DataFrame({"setting": arm, "seed": 1, "step": steps, "test_acc": steps / 1000 + shift})
                         for arm, shift in ((clr_cifar10.SIGMOID_CLR, 10.0), (clr_cifar10.SIGMOID_FIXED, 0.0))])
    results = SimpleNamespace(curves=pd.concat([stop, sigmoid], ignore_index=True))
    out = clr_cifar10.derive(s, results)
    assert out[clr_cifar10.CYCLE_END] == {1: 78.0} and out[clr_cifar10.BEST_IN_CYCLE] == {1: 79.5}
    # the last three cycle ends of a 60k run with cycles of 4000: 52k, 56k and 60k
    assert out[clr_cifar10.SIGMOID_CLR_LATE] == {1: pytest.approx(66.0)}
    assert out[clr_cifar10.SIGMOID_FIXED_LATE] == {1: pytest.approx(56.0)}


def test_table4_compares_clr_with_the_best_fixed_rate():
    final = {"ResNet, CIFAR-10, fixed 0.1": {1: 90.0, 2: 90.2}, "ResNet, CIFAR-10, fixed 0.2": {1: 91.0, 2: 91.4}}
    out = clr_architectures.derive(None, SimpleNamespace(final_accuracy=lambda: final))
    assert out[clr_architectures.best_fixed("ResNet", "CIFAR-10")] == {1: 91.0, 2: 91.4}
    assert out[clr_architectures.best_fixed("DenseNet", "CIFAR-10")] == {}


def _card():
    """A scorecard of two papers' claims, one joint hypothesis, one added comparison, one recap."""
    rows = [  # claim, paper, source, verdict, n, against, p, hypothesis, pre-declared, revised after data
        ("A", "CLR", "the paper", "confirmed", 3, 0, 0.01, "A", "confirmed", False),
        ("B1", "CLR", "the paper", "inconclusive", 3, 1, 0.2, "B", "confirmed", True),
        ("B2", "CLR", "the paper", "inconclusive", 3, 1, 0.2, "B", "inconclusive", True),
        ("C", "CLR", "the paper", "inconclusive", 3, 3, 0.9, "C", "inconclusive", False),
        ("D", "CLR", "the study's own comparison", "confirmed", 3, 0, 0.001, "D", "confirmed", False),
        ("E", "SGDR", "the paper", "not confirmed", 2, 2, 0.99, "E", "not confirmed", False),
        ("F", "SGDR", "recaps' advice (not in the paper)", TOO_FEW, 1, 0, math.nan, "F", TOO_FEW, False),
    ]
    card = pd.DataFrame(rows, columns=["claim", "paper", "source", "verdict", "n", "against", "p", "hypothesis",
                                       "pre-declared verdict", "revised after data"])
    return card.assign(notebook=card.paper, status="interim (3 of 5)", **{
        "difference [CI]": "+0.00 [-1.00, +1.00]", "declared before data": "yes", "rule history": "h"})


def test_q_values_are_within_each_papers_own_judged_claims():
    q = scorecard.q_values(_card())
    assert q[0] == pytest.approx(0.03) and q[1] == q[2] == pytest.approx(0.3)  # A, B (once), C: 3 tests
    assert q[3] == pytest.approx(0.9) and math.isnan(q[4])  # D is the study's own, not the paper's
    assert q[5] == pytest.approx(0.99) and math.isnan(q[6])


def test_the_headline_counts_paper_claims_and_added_comparisons_apart():
    table = scorecard.counts(_card())
    assert table.loc["paper claims", "total"] == 4  # B1 and B2 are one joint claim
    assert table.loc["paper claims", "confirmed"] == 1 and table.loc["the study's added comparisons", "confirmed"] == 1
    assert table.loc["recaps' advice", TOO_FEW] == 1
    sentence = scorecard.against_paper(_card())
    assert sentence.startswith("The evidence goes against the paper in C (inconclusive")
    assert "E (not confirmed" in sentence and "D" not in sentence.replace("CI", "")
    assert scorecard.against_paper(_card().iloc[:1]) == "No paper claim has evidence against it yet."


def test_the_list_of_verdicts_the_revisions_changed():
    changed = scorecard.revised(_card())
    assert changed.claim.tolist() == ["B1"]
    text = scorecard.rule_changes(_card())
    assert "| CLR | B1 | confirmed | inconclusive | interim (3 of 5) | h |" in text and text.endswith("none\n")
