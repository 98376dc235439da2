"""The machinery the larger notebooks add: composed schedules, data subsets and other data sets,
snapshots, the Hessian-free estimate inside a run, data that cannot be had, and the scorecard."""


import pandas as pd
import pytest
import torch

from lrstudy import scorecard
from lrstudy.data import Normalizer, describe_source, is_local, load_data
from lrstudy.experiments import EXPERIMENTS, clr_cifar10, sgdr
from lrstudy.runs import RunConfig, RunStore
from lrstudy.schedule_specs import make_schedule, rescale
from lrstudy.train import train

BASE = dict(profile="smoke", data="synthetic", model={"name": "caffe_cifar10_full"},
            optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004},
            schedule={"name": "fixed", "lr": 0.001}, iterations=20, batch_size=50, eval_every=10, seed=1)


def test_product_schedule_keeps_the_cycle_under_step_drops():
    spec = {"name": "product", "factors": [
        {"name": "triangular", "base_lr": 0.1, "max_lr": 0.3, "step_size": 10},
        {"name": "multistep", "base_lr": 1.0, "gamma": 0.1, "milestones": [25]}]}
    sched = make_schedule(**spec)
    assert sched(10) == pytest.approx(0.3) and sched(30) == pytest.approx(0.03) and sched(20) == pytest.approx(0.1)
    assert make_schedule(**sched.spec()) == sched
    half = make_schedule(**rescale(spec, 0.5))
    assert half(5) == pytest.approx(0.3) and half(15) == pytest.approx(0.03)
    with pytest.raises(ValueError, match="'factors'"):
        make_schedule("product", factors=[spec["factors"][0]])


def test_subsets_are_balanced_fixed_and_paired():
    d = load_data("synthetic")
    a, b = d.subset(100, 50), d.subset(100, 50)
    assert a.train_y.bincount().tolist() == [10] * 10 and a.test_y.bincount().tolist() == [5] * 10
    assert torch.equal(a.train_x, b.train_x)
    with pytest.raises(ValueError, match="train_subset=5000"):
        d.subset(5000)


def test_other_data_sets_and_normalisations():
    mnist = load_data("synthetic-mnist")
    assert mnist.train_x.shape[1:] == (1, 28, 28) and describe_source("mnist") == ("mnist", "MNIST")
    assert load_data("synthetic-cifar100").num_classes == 100
    d = load_data("synthetic")
    x = Normalizer("channel_stats", d, torch.device("cpu"))(d.train_x)
    assert x.mean((0, 2, 3)).abs().max() < 1e-3 and (x.std((0, 2, 3)) - 1).abs().max() < 1e-2
    unit = Normalizer("mean_image_unit", d, torch.device("cpu"))(d.train_x)
    assert unit.abs().max() <= 1.0
    assert is_local("synthetic") and not is_local("/nonexistent/tree")


def test_snapshots_are_stored_verified_and_resumable(tmp_path):
    config = RunConfig(**BASE, eval_at=[5], snapshot_at=[10, 20])
    store = RunStore("smoke", tmp_path / "runs")
    data = load_data("synthetic")

    def run(c):
        r = train(c, data, progress=False)
        return r.status, r.rows, {"snapshots": r.snapshots}

    record = store.get_or_run(config, run)
    snaps = record.snapshots()
    assert snaps["steps"] == [10, 20] and snaps["probs"].shape == (2, 500, 10)
    assert list(record.rows.step) == [0, 5, 10, 20]
    snap_file = (tmp_path / "runs" / f"{config.id}.snapshots.pt")
    snap_file.write_bytes(snap_file.read_bytes()[:100])
    assert store.load(config) is None  # a damaged snapshot file means the run is redone


def test_hessian_free_estimate_is_recorded_along_a_run():
    result = train(RunConfig(**{**BASE, "iterations": 30}, lr_estimate="corrected"), load_data("synthetic"), progress=False)
    estimates = [r["lr_estimate"] for r in result.rows]
    assert estimates[0] != estimates[0]  # NaN before two updates exist
    assert all(e > 0 for e in estimates[1:])


def test_runs_on_unavailable_data_are_not_run_and_the_notebook_goes_on(scratch):
    experiment = sgdr.EXPERIMENT
    s = experiment.settings("smoke", data_cifar100="/nonexistent/cifar100")
    results = experiment.run(s, progress=False)
    runs = results.runs
    c100 = runs[runs.setting.str.startswith("CIFAR-100")]
    assert set(c100.status) == {"not run"} and c100.error.str.contains("does not exist").all()
    assert set(runs[runs.setting.str.startswith("CIFAR-10:")].status) == {"finished"}
    verdicts = experiment.verdicts(s, results)
    assert set(verdicts[verdicts.index.str.endswith("CIFAR-100")].verdict) == {"not run"}
    with pytest.raises(ValueError, match="unknown parameter 'data_imagenet'"):
        experiment.settings("smoke", data_imagenet="x")


def test_every_notebook_has_claims_measures_and_a_paper_table():
    for name, experiment in EXPERIMENTS.items():
        assert experiment.claims and experiment.deviations, name
        assert len(experiment.paper()) > 0, name
        ids = [c.id for c in experiment.claims]
        assert len(ids) == len(set(ids)), name


def test_scorecard_reads_without_training(scratch, monkeypatch, tmp_path):
    from lrstudy import execute

    monkeypatch.setattr(execute, "train", lambda *a, **k: pytest.fail("the scorecard trained"))
    card = scorecard.collect("smoke", experiments=["clr_range_test", "super_convergence"])
    assert set(card.verdict) == {"not run"} and len(card) == len(EXPERIMENTS["clr_range_test"].claims) + len(
        EXPERIMENTS["super_convergence"].claims)
    assert card.difference.isna().all() and set(card.kind) == {"difference", "ratio to paper", "value"}
    readme = tmp_path / "README.md"
    readme.write_text("top\n<!-- scorecard:smoke:begin -->\nold\n<!-- scorecard:smoke:end -->\nbottom\n")
    scorecard.update_readme(readme, card, "smoke")
    text = readme.read_text()
    assert "old" not in text and "| paper | claim |" in text and text.endswith("bottom\n")
    index = scorecard.write_index("smoke", card)
    assert index.exists() and "Scorecard" in index.read_text() and "not run" in index.read_text()


def test_the_scorecard_headline_names_each_device_and_data_set_once():
    """Notebooks share devices: one notebook's runs on two CPUs, another's on one of them."""
    card = pd.DataFrame({"verdict": ["not run"] * 3, "budget": [1.0] * 3, "claim": ["A", "B", "C"], "seeds": [3] * 3,
                         "data": ["CIFAR-10 (JPEG q75 copy)", "CIFAR-10 (JPEG q75 copy)", "-"],
                         "devices": ["CPU: AMD EPYC (1 threads), CPU: Xeon (1 threads)", "CPU: Xeon (1 threads)", "-"],
                         "source": ["the paper"] * 3, "status": ["no runs"] * 3, "hypothesis": ["A", "B", "C"],
                         "notebook": ["x"] * 3, "n": [0] * 3, "against": [0] * 3})
    line = scorecard.headline(card, "full")
    assert line.endswith("Profile `full`; data: CIFAR-10 (JPEG q75 copy); "
                         "devices: CPU: AMD EPYC (1 threads), CPU: Xeon (1 threads).")
    assert "none yet" in scorecard.headline(card.assign(devices="-"), "full")


def test_every_claim_names_only_declared_labels():
    """A claim reads a row's label or a derived measure the experiment declares, never a loose string."""
    for name, experiment in EXPERIMENTS.items():
        declared = set(experiment.rows()) | set(experiment.derived) | set(experiment.equal_iterations)
        assert set(experiment.labels) == declared, name
        for claim in experiment.claims:
            assert set(claim.labels) <= declared, (name, claim.id)


def test_a_claim_naming_an_unknown_label_is_refused_when_its_experiment_is_made():
    from lrstudy.stats import Claim
    from lrstudy.study import Experiment

    rows = clr_cifar10.ROWS
    with pytest.raises(ValueError, match="claim X names 'fixd', which is neither"):
        Experiment("x", rows, [Claim("X", "", a="fixd", b="fixed")], [], clr_cifar10.paper)
    with pytest.raises(ValueError, match="derived measure 'measured' must name the rows it reads"):
        Experiment("x", rows, [], [], clr_cifar10.paper, derived={"measured": ("fxed",)}, derive=lambda s, r: {})
    made = Experiment("x", rows, [Claim("X", "", a="measured", b="fixed")], [], clr_cifar10.paper,
                      derived={"measured": ("fixed",)}, derive=lambda s, r: {"measured": {}, "undeclared": {}})
    assert made.rows_for(["X"]) == ["fixed"]  # what --claims trains for it
    with pytest.raises(ValueError, match="'undeclared'"):
        made.measures(None, type("Results", (), {"final_accuracy": lambda self: {}})())


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_derives_exactly_its_declared_measures(name):
    """On the smoke profile's runs, in the session's store (the notebooks, executed next by nbval,
    read them back): the derived measures are exactly the declared ones, and every claim is judged."""
    experiment = EXPERIMENTS[name]
    s = experiment.settings("smoke")
    results = experiment.run(s, progress=False)
    measures = experiment.measures(s, results)  # raises if derive() gives other labels than the declared
    assert set(experiment.derived) <= set(measures)
    verdicts = experiment.verdicts(s, results)
    assert list(verdicts.index) == [c.id for c in experiment.claims]


def test_the_makefile_runs_every_notebook_in_the_experiments_order():
    """The Makefile's NOTEBOOKS list is the one list of notebooks outside Python: it must name the
    schedule gallery, every experiment in EXPERIMENTS' order, then the scorecard -- and each a file."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    line = next(text for text in (root / "Makefile").read_text().splitlines() if text.startswith("NOTEBOOKS ?="))
    notebooks = line.split("?=", 1)[1].split()
    assert notebooks == ["schedules", *EXPERIMENTS, "scorecard"]
    assert {p.stem for p in (root / "notebooks").glob("*.ipynb")} == set(notebooks)
