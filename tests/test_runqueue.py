"""The run queue: selection by claims, the plan's arithmetic, the claims-first order, and the time box
(a run stopped at the limit with a checkpoint, finished by the next call, byte-identical)."""

import itertools
import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from lrstudy.__main__ import main
from lrstudy.costs import run_cost, step_flops
from lrstudy.experiments import EXPERIMENTS, clr_cifar10, super_convergence
from lrstudy.models import build_model
from lrstudy.queue_types import TimeBox, parse_duration
from lrstudy.runqueue import EXIT_STOPPED, make_plan
from lrstudy.queue_selection import select_runs
from lrstudy.runs import RunStore

ROOT = Path(__file__).resolve().parents[1]


def ids_of(experiment, labels, seeds=(1,), profile="smoke"):
    settings = experiment.settings(profile, seeds=max(seeds))
    return [c.id for label, c in experiment.run_configs(settings) if label in labels and c.seed in seeds]


def test_claims_select_exactly_the_runs_they_need():
    runs = select_runs(["all"], "smoke", claims=["CLR-T1.tri2-vs-fixed,SC-data.gap"], seed_range="1")
    expected = ids_of(clr_cifar10.EXPERIMENT, {"fixed", "triangular2"}) + ids_of(
        super_convergence.EXPERIMENT, {super_convergence.FIG1A_CLR, super_convergence.FIG1A_PC,
                                       "one cycle, 10000 training images", "PC-LR, 10000 training images"})
    assert sorted(r.config.id for r in runs) == sorted(expected)
    # a derived measure's claim trains the rows the measure reads: one run stopped at a cycle's end and mid-descent
    assert [r.label for r in select_runs(["clr_cifar10"], "smoke", claims=["CLR-3.3.stop-at-cycle-end"])] == \
        [clr_cifar10.STOP_RUN]


def test_only_and_seed_range_across_experiments_and_unknown_names():
    runs = select_runs(["clr_cifar10"], "smoke", only=["fixed,exp"], seed_range="2-3")
    assert [(r.label, r.config.seed) for r in runs] == [("fixed", 2), ("exp", 2), ("fixed", 3), ("exp", 3)]
    every = select_runs(["all", "sgdr"], "smoke")
    assert list(dict.fromkeys(r.experiment for r in every)) == list(EXPERIMENTS) and len(every) == 102
    with pytest.raises(ValueError, match="unknown setting 'Adam fixed'; this experiment's settings are: 'fixed'"):
        select_runs(["clr_cifar10", "clr_adaptive"], "smoke", only=["Adam fixed"])
    with pytest.raises(ValueError, match="unknown claim 'CLR-T9'; the claims of clr_cifar10 are: CLR-T1.tri2-vs-fixed"):
        select_runs(["clr_cifar10"], "smoke", claims=["CLR-T9"])
    with pytest.raises(ValueError, match="unknown experiment 'clr'; known: all, clr_range_test"):
        select_runs(["clr"], "smoke")
    with pytest.raises(ValueError, match="--only.*or by claims"):
        clr_cifar10.EXPERIMENT.selected(clr_cifar10.EXPERIMENT.settings("smoke"), only=["fixed"], claims=["CLR-3.1.hann"])
    assert main(["plan", "clr_cifar10", "--profile", "smoke", "--claims", "SC-1a"]) == 2


def test_plan_flops_are_counted_on_the_real_network():
    model = build_model({"name": "caffe_cifar10_full"}, num_classes=10)
    x, y = torch.randn(100, 3, 32, 32), torch.randint(0, 10, (100,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    assert step_flops({"name": "caffe_cifar10_full"}, 100)[0] == counter.get_total_flops() > 0
    run = select_runs(["clr_cifar10"], "smoke", only=["fixed"])[0]
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as forward:
        model(torch.randn(500, 3, 32, 32))  # the synthetic test split, once
    assert not run.config.eval_at
    evaluations = len({*range(0, run.config.iterations, run.config.eval_every), run.config.iterations})  # 0, 20, .., 70
    cost = run_cost(run.config, run.dataset)
    assert cost.train_flops == counter.get_total_flops() * run.config.iterations
    assert cost.eval_flops == forward.get_total_flops() * evaluations


def test_plan_totals_are_the_sums_of_its_lines(scratch, capsys):
    assert main(["plan", "clr_cifar10", "sgdr", "--profile", "smoke", "--order", "notebook"]) == 0
    text = capsys.readouterr().out
    lines = [line.split() for line in text.splitlines() if line[:4].strip().isdigit()]
    assert len(lines) == 17 + 16  # clr_cifar10's 19 settings, two of them the same runs as others (trained once)
    totals = {line.split()[0]: line.split() for line in text.split("totals")[1].splitlines()[2:] if line.strip()}
    for name, rows in (("clr_cifar10", lines[:17]), ("sgdr", lines[17:]), ("all", lines)):
        runs, _, steps, flops, minutes = totals[name][1:6]
        assert int(runs) == len(rows) and int(steps) == sum(int(r[4]) for r in rows)
        assert float(flops) == pytest.approx(sum(float(r[5]) for r in rows), rel=5e-3)
        assert float(minutes) == pytest.approx(sum(float(r[6]) for r in rows), abs=0.05 + 0.005 * len(rows))
    assert "estimated time" in text and "CPU" in text


def test_claims_order_completes_the_priority_claims_first():
    plan = make_plan(select_runs(["clr_adaptive", "super_convergence"], "fast", seeds=2), fresh=True)
    first = [r.experiment for r in plan.runs]
    assert first.index("super_convergence") == first.count("clr_adaptive")  # the profile's priority notebook first
    notebook = make_plan(select_runs(["clr_cifar10"], "smoke"), order="notebook")
    settings = clr_cifar10.EXPERIMENT.settings("smoke")
    # (settings that are the same run -- "fixed" and "fixed (fp32)" under an fp32 profile -- train once)
    in_order = list(dict.fromkeys(c.id for _, c in clr_cifar10.EXPERIMENT.run_configs(settings)))
    assert [r.config.id for r in notebook.runs] == in_order
    # the claims order gives each claim all its arms before the next claim's
    claims = make_plan(select_runs(["clr_cifar10"], "smoke", seeds=2), fresh=True)  # whatever the store holds
    labels = [r.label for r in claims.runs]
    # (the first run's label may belong to several claims: one of them must come whole, 2 seeds per arm)
    candidates = [set(clr_cifar10.EXPERIMENT.rows_for([c.id])) for c in clr_cifar10.EXPERIMENT.claims]
    assert any(set(labels[:2 * len(rows)]) == rows for rows in candidates if labels[0] in rows)


@pytest.mark.parametrize("text,seconds", [("45m", 2700), ("8h", 28800), ("1h30m", 5400), ("90s", 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_durations_are_refused():
    for text in ("45", "soon", "0m"):
        with pytest.raises(ValueError, match="time limit"):
            parse_duration(text)


def test_sigterm_stops_the_queue_like_the_time_limit():
    box = TimeBox()
    before = signal.getsignal(signal.SIGTERM)
    with box.on_sigterm():
        assert not box()
        os.kill(os.getpid(), signal.SIGTERM)
        assert box()
    assert signal.getsignal(signal.SIGTERM) is before


def test_time_limit_stops_a_run_with_a_checkpoint_and_the_next_call_finishes_it(scratch, monkeypatch, capsys):
    select = ["run", "clr_cifar10", "--profile", "smoke", "--only", "fixed", "--no-progress"]
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "straight"))
    assert main(select) == 0
    config = select_runs(["clr_cifar10"], "smoke", only=["fixed"])[0].config
    reference = (scratch / "straight" / "smoke" / "runs" / f"{config.id}.csv").read_bytes()

    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "boxed"))
    ticks = itertools.count()
    monkeypatch.setattr(TimeBox, "clock", staticmethod(lambda: next(ticks)))  # one second per look at the clock
    assert main([*select, "--time-limit", "30s"]) == EXIT_STOPPED
    store = RunStore("smoke")
    checkpoint = store.checkpointer(config, 50).path
    assert checkpoint.exists() and store.load(config) is None
    assert "stopped (time limit)" in capsys.readouterr().out

    monkeypatch.setattr(TimeBox, "clock", staticmethod(lambda: 0.0))
    assert main(select) == 0
    assert store.paths(config.id)[0].read_bytes() == reference
    meta = json.loads(store.paths(config.id)[1].read_text())
    assert 0 < meta["timings"]["resumed_from_step"] < config.iterations and not checkpoint.exists()


def test_the_fast_profile_fits_an_hour_on_one_h100():
    """The fast profile's budget (issue 18): its whole plan, compiling included, at the stated H100
    throughput; the Caffe-net claims (the profile's priority notebooks) come first."""
    from lrstudy.costs import ASSUMED_H100

    plan = make_plan(select_runs(["all"], "fast"), fresh=True, command="python -m lrstudy plan all --profile fast")
    if plan.throughput == ASSUMED_H100:  # (a machine with its own CUDA benchmark estimates with that instead)
        assert plan.total_seconds <= 60 * 60
        # the committed plan is this one, and fast.yaml's budget comments are copied from it
        committed = (ROOT / "results" / "plan" / "fast.txt").read_text()
        assert plan.render() == committed, "results/plan/fast.txt is stale: make plans"
        stated = re.findall(r"^#   (\w+) +(?:(\S+%) +(\S+%) +)?([\d.]+)", (ROOT / "src/lrstudy/profiles/fast.yaml").read_text(), re.M)
        totals = {line.split()[0]: line.split() for line in committed.split("\ntotals")[1].splitlines()[2:] if line.strip()}
        assert stated and all(totals[name][5:] == ([minutes, steps, flops] if steps else [minutes])
                              for name, steps, flops, minutes in stated if name != "all")
        assert f"{plan.total_seconds / 60:.1f}" == dict((n, m) for n, *_, m in stated)["all"]
    caffe = {name: set(EXPERIMENTS[name].rows_for(c.id for c in EXPERIMENTS[name].claims))
             for name in ("clr_range_test", "clr_cifar10", "clr_adaptive")}
    claimed = [r.label in caffe.get(r.experiment, ()) for r in plan.runs]
    # (a plan trains settings that are the same run once: "fixed" and "fixed (bf16)" under this bf16 profile)
    caffe_runs = {r.config.id for r in select_runs(list(caffe), "fast") if r.label in caffe[r.experiment]}
    assert claimed == sorted(claimed, reverse=True) and sum(claimed) == len(caffe_runs)
