"""Profiles, notebook settings, a whole experiment through the store, verdict rules, the CLI."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from lrstudy import execute as execute_mod
from lrstudy.__main__ import main
from lrstudy.config import resolve_device
from lrstudy.experiments import clr_cifar10, get_experiment, load_profile
from lrstudy.knobs import CaffeNetKnobs, NetworkSize, read_knobs
from lrstudy.paper import paper_table
from lrstudy.stats import VERDICTS, Claim, mean_ci


def test_every_profile_loads_and_configures_every_notebook():
    from lrstudy.experiments import EXPERIMENTS

    for name in ("smoke", "cpu", "fast", "full"):
        profile = load_profile(name)
        for experiment in EXPERIMENTS.values():
            s = experiment.settings(name)
            assert s.profile == profile and len(s.seeds) == profile.seeds
            assert len(experiment.run_configs(s)) == len(experiment.scaled_rows(s)) * profile.seeds


def test_a_bad_knob_is_named_by_file_notebook_and_dotted_key(monkeypatch):
    from lrstudy import study
    from lrstudy.config import parse_profile

    text = (Path(study.__file__).parent / "profiles" / "cpu.yaml").read_text()
    for old, new, message in [
        ("eval_every: 125", "eval_every: 0", "cpu.yaml, notebook 'sgdr': eval_every=0 is out of range"),
        ("{wrn: {depth: 10, width: 1}}", "{wrn: {depht: 10}}", "notebook 'sgdr': unknown key 'networks.wrn.depht'"),
        ("{wrn: {depth: 10, width: 1}}", "{resnet: {depth: 20}}", "unknown key 'networks.resnet' .*'wrn'"),
        ("{wrn: {depth: 10, width: 1}}", "{wrn: {depth: 10, width: 1.5}}", "networks.wrn.width=1.5 has the wrong type"),
    ]:
        assert old in text
        bad = text.replace(old, new)
        monkeypatch.setattr(study, "load_profile", lambda name, bad=bad, **registries: parse_profile(name, bad, **registries))
        with pytest.raises(ValueError, match=message):
            get_experiment("sgdr").settings("cpu")


def test_profiles_set_only_what_differs_from_the_defaults():
    """Each knob a profile gives changes what runs (a default repeated in a profile would hide which
    values are the profile's own), and the defaults are the papers': the full profile sets none."""
    from lrstudy import study
    from lrstudy.config import Profile, read_yaml
    from lrstudy.experiments import EXPERIMENTS

    for name in ("smoke", "cpu", "fast", "full"):
        profile = load_profile(name)
        for experiment in EXPERIMENTS.values():
            section = profile.section(experiment.name)
            default = experiment.knobs()
            for key, value in section.items():
                parts = value.items() if isinstance(value, dict) else [(None, value)]
                for part, one in parts:
                    given = {key: {part: one} if part else one}
                    assert read_knobs(experiment.knobs, given, name) != default, (name, experiment.name, key, part)
    assert load_profile("full").notebooks == {}
    for name in ("smoke", "cpu", "fast", "full"):
        text = (Path(study.__file__).parent / "profiles" / f"{name}.yaml").read_text()
        for key, value in read_yaml(text, name).items():
            default = Profile.__dataclass_fields__[key].default
            assert key in ("description", "device", "seeds", "notebooks") or value != default, (name, key)


def test_a_bad_profile_key_is_one_line_naming_the_file_and_the_key():
    from lrstudy.config import parse_profile

    required = {"description": "description: x", "device": "device: cpu", "seeds": "seeds: 1"}
    defaults = parse_profile("cpu", "\n".join(required.values()), notebooks=None, networks=None)
    assert (defaults.data, defaults.precision, defaults.capture, defaults.notebooks) == ("cifar10", "fp32", (), {})
    for key, line, message in [
        ("seeds", "seeds: 0", "cpu.yaml: seeds=0 is out of range; runs per setting"),
        ("seeds", "seeds: 2.5", "cpu.yaml: seeds=2.5 has the wrong type"),
        ("device", "device: tpu", "cpu.yaml: device='tpu' is out of range; .*'cuda'"),
        ("device", "", "cpu.yaml: missing key 'device'"),
        (None, "depth: 20", "cpu.yaml: unknown key 'depth'"),
        (None, "capture: resnet", "cpu.yaml: capture='resnet' has the wrong type"),
        (None, "results_data: ' '", "cpu.yaml: results_data=' ' is out of range"),
    ]:
        text = "\n".join([*(v for k, v in required.items() if k != key), line])
        with pytest.raises(ValueError, match=message):
            parse_profile("cpu", text, notebooks=None, networks=None)


@pytest.mark.parametrize("call, message", [
    (lambda: load_profile("medium"), "unknown profile 'medium'"),
    (lambda: clr_cifar10.EXPERIMENT.settings("smoke", seeds=0), "seeds=0"),
    (lambda: clr_cifar10.EXPERIMENT.settings("smoke", device="tpu"), "device='tpu'"),
    (lambda: get_experiment("sgdr_imagenet"), "unknown experiment 'sgdr_imagenet'"),
    (lambda: read_knobs(CaffeNetKnobs, {"budget_scale": 2}, "x"), "budget_scale=2 is out of range"),
    (lambda: read_knobs(CaffeNetKnobs, {"budget_scale": "1", "eval_every": 5}, "x"), "wrong type"),
    (lambda: read_knobs(CaffeNetKnobs, {"budget_scale": 1, "eval_every": 5, "lr": 1}, "x"), "unknown key 'lr'"),
    (lambda: read_knobs(NetworkSize, {}, "x"), "missing key 'depth'"),
])
def test_bad_settings_fail_with_the_key_and_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_cuda_requested_without_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(RuntimeError, match="PROFILE=cpu"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_smoke_study_runs_then_only_reads(monkeypatch):
    """In the session's store, which test_experiments has usually filled with these runs already
    (run alone, this test trains them): the second call must read everything back."""
    experiment = clr_cifar10.EXPERIMENT
    s = experiment.settings("smoke")
    first = experiment.run(s, progress=False)
    assert set(first.runs.status) == {"finished"}
    assert list(first.summary(clr_cifar10.paper()).index) == list(clr_cifar10.ROWS)
    monkeypatch.setattr(execute_mod, "load_data", lambda *a: pytest.fail("data loaded on a re-run"))
    monkeypatch.setattr(execute_mod, "train", lambda *a, **k: pytest.fail("trained on a re-run"))
    again = experiment.run(s, progress=False)
    assert again.runs.final_test_acc.tolist() == first.runs.final_test_acc.tolist()
    verdicts = experiment.verdicts(s, again)
    # a thousandth of the paper's budget and one seed: nothing is judged either way
    assert set(verdicts.verdict) <= {"not testable at this budget", "inconclusive (n < 2)", "not run"}
    assert (verdicts.n <= 1).all()


def test_a_setting_with_some_seeds_run_counts_its_runs_by_status():
    import pandas as pd

    from lrstudy.study import _status_counts

    assert _status_counts(pd.Series(["finished"] * 3)) == "finished"
    assert _status_counts(pd.Series(["not run yet", "finished", "finished", "not run yet", "finished"])) == \
        "3 finished, 2 not run yet"  # not "finished, not run yet": a reader sees how many of each


def test_a_failing_run_does_not_stop_the_others(scratch, monkeypatch):
    from lrstudy.experiments import clr_range_test

    real_train = execute_mod.train

    def sometimes(config, *a, **k):
        if config.schedule["name"] == "exp_sweep":
            raise RuntimeError("simulated crash")
        return real_train(config, *a, **k)

    monkeypatch.setattr(execute_mod, "train", sometimes)
    experiment = clr_range_test.EXPERIMENT
    results = experiment.run(experiment.settings("smoke"), progress=False)
    runs = results.runs.set_index("setting")
    failed = clr_range_test.EXPONENTIAL
    assert runs.loc[failed, "status"] == "failed" and "simulated crash" in runs.loc[failed, "error"]
    assert (runs.drop(index=failed).status == "finished").all()


def test_claim_rules():
    final = {"a": {1: 80.0, 2: 81.0, 3: 82.0}, "b": {1: 79.0, 2: 79.5, 3: 80.2}, "c": {1: 82.0}}
    assert Claim("x", "", "a", "b").judge(final)["verdict"] == "confirmed"
    assert Claim("x", "", "b", "a").judge(final)["verdict"] == "not confirmed"
    assert Claim("x", "", "b", "a", kind="not_worse", margin=5).judge(final)["verdict"] == "confirmed"
    single = Claim("x", "", "c", "a").judge(final)  # one seed is never enough for a yes or a no
    assert single["n"] == 1 and single["verdict"] == "inconclusive (n < 2)" and "one seed" in single["basis"]
    assert Claim("x", "", "a", "missing").judge(final)["verdict"] == "not run"
    mean, low, high = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and low == pytest.approx(2 - 4.302653 * 1 / math.sqrt(3), rel=1e-5)


def test_paper_table_has_the_cifar10_rows():
    rows = clr_cifar10.paper().set_index("setting")
    for label in clr_cifar10.TABLE1:
        assert rows.loc[label, "iterations"] == clr_cifar10.ROWS[label].iterations
    assert paper_table("CLR").arxiv.unique().tolist() == ["1506.01186v6"]
    # every number says how far it was checked: the paper's text, the authors' logs, or a secondary source
    assert paper_table().checked.str.len().gt(0).all()
    logs = paper_table("SC")[paper_table("SC").table.str.startswith("authors' logs")]
    assert len(logs) == 8 and (logs.arxiv == "-").all()


def test_cli(scratch, capsys):
    assert main(["list"]) == 0
    assert "clr_cifar10" in capsys.readouterr().out
    assert main(["run", "clr_range_test", "--profile", "smoke", "--no-progress"]) == 0
    assert "finished" in capsys.readouterr().out
    assert main(["status", "--profile", "smoke", "clr_range_test"]) == 0
    assert "2 finished" in capsys.readouterr().out
    assert main(["status", "--profile", "smoke", "clr_adaptive"]) == 1  # its runs are missing


def test_equivalence_and_agreement_rules():
    from lrstudy.stats import Agreement

    final = {"a": {1: 80.0, 2: 80.4, 3: 79.8}, "b": {1: 80.1, 2: 80.0, 3: 80.0}, "far": {1: 90.0, 2: 91.0, 3: 92.0}}
    assert Claim("x", "", "a", "b", kind="equivalent", margin=1.0).judge(final)["verdict"] == "confirmed"
    assert Claim("x", "", "far", "b", kind="equivalent", margin=1.0).judge(final)["verdict"] == "not confirmed"
    with pytest.raises(ValueError, match="needs a margin"):
        Claim("x", "", "a", "b", kind="equivalent")
    lrs = {"max": {1: 0.007, 2: 0.005}, "mixed": {1: 0.006, 2: 0.1}}
    assert Agreement("m", "", "max", 0.006).judge(lrs)["verdict"] == "confirmed"
    assert Agreement("m", "", "mixed", 0.006).judge(lrs)["verdict"] == "inconclusive"
    assert Agreement("m", "", "missing", 0.006).judge(lrs)["verdict"] == "not run"


def test_rows_scale_every_step_count():
    from lrstudy.study import Row

    row = Row(24_000, {"name": "triangular", "base_lr": 0.001, "max_lr": 0.006, "step_size": 2000},
              {"name": "caffe_cifar10_full"}, {"name": "caffe_sgd"}, batch_size=100, eval_every=2000, trace_every=10)
    small = row.scaled(0.02)
    assert (small.iterations, small.schedule["step_size"], small.eval_every, small.trace_every) == (480, 40, 40, 1)
    assert row.scaled(1) is row


def test_range_test_notebook_measures(scratch):
    from lrstudy.experiments import clr_range_test

    experiment = clr_range_test.EXPERIMENT
    s = experiment.settings("smoke")
    results = experiment.run(s, progress=False)
    linear, exponential = clr_range_test.sweeps(results)
    assert len(linear) >= 3 and linear.lr.is_monotonic_increasing
    assert len(exponential) > 0 and exponential.lr.is_monotonic_increasing  # one row per update (trace)
    assert set(clr_range_test.derive(s, results)) == {"Smith max_lr", "Smith base_lr", "Smith max_lr / base_lr"}
    verdicts = experiment.verdicts(s, results)
    assert set(verdicts.verdict) <= set(VERDICTS) - {"not run"}


@pytest.mark.parametrize("module", ["lrstudy.scorecard", "lrstudy.runs", "lrstudy.data"])
def test_reading_modules_load_no_training_code(module):
    """What only reads results (the report, the run store, the data layer) imports nothing from
    training: a fresh interpreter, so that no other test's imports count."""
    check = f"import {module}, sys; assert 'lrstudy.train' not in sys.modules, sorted(sys.modules)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_results_only_read_the_store(scratch, monkeypatch):
    """Experiment.results, and run under settings that do not train (LRSTUDY_TRAIN=no), read what
    the store holds and call the rest "not run yet": nothing is loaded or trained."""
    from lrstudy import notebook

    monkeypatch.setattr(execute_mod, "load_data", lambda *a: pytest.fail("data loaded by a reader"))
    monkeypatch.setattr(execute_mod, "train", lambda *a, **k: pytest.fail("trained by a reader"))
    experiment = clr_cifar10.EXPERIMENT
    read = experiment.results(experiment.settings("smoke"))
    assert set(read.runs.status) == {"not run yet"}
    monkeypatch.setenv("LRSTUDY_TRAIN", "no")
    monkeypatch.setattr(notebook, "setup", lambda: None)  # (pandas' display options stay as they are)
    s = notebook.settings(experiment, "smoke")
    assert not s.train and set(experiment.run(s, progress=False).runs.status) == {"not run yet"}


def test_the_full_profile_plans_table_3_in_bf16_and_the_rest_in_fp32():
    # The precision check (CLR-prec.*) allowed bf16 for Table 3 only: its pages and the scorecard
    # read the bf16 runs the campaign trained, and every fp32 id of the other notebooks stays.
    adaptive, table1 = get_experiment("clr_adaptive"), get_experiment("clr_cifar10")
    assert adaptive.settings("full", device="cpu").precision == "bf16"
    assert table1.settings("full", device="cpu").precision == "fp32"
    assert adaptive.settings("full", device="cpu", precision="fp32").precision == "fp32"  # the override wins
    assert {config.precision_name for _, config in adaptive.run_configs(adaptive.settings("full", device="cpu"))} \
        == {"bf16"}


def test_the_full_profile_plans_super_convergences_range_tests_in_bf16_and_its_other_rows_in_fp32():
    # Decided before item 5 of the CPU campaign ran: its two range tests train in bf16 (the queue's
    # --precision bf16) and the page must read those ids; the 1cycle and PC-LR rows stay float32.
    sc = get_experiment("super_convergence")
    s = sc.settings("full", device="cpu")
    by_label = {label: config.precision_name for label, config in sc.run_configs(s)}
    ranges = {"range test 0-3: ResNet-56", "range test 0-3: Caffe CIFAR-10 net"}
    assert {by_label[label] for label in ranges} == {"bf16"}
    assert {p for label, p in by_label.items() if label not in ranges} == {"fp32"}
    assert s.precision_text == "fp32 (bf16: 'range test 0-3: ResNet-56', 'range test 0-3: Caffe CIFAR-10 net')"
    from lrstudy.notebook import deviations

    assert "runs the rows 'range test 0-3: ResNet-56', 'range test 0-3: Caffe CIFAR-10 net' with forward passes " \
        "under bfloat16" in deviations(sc, s).data  # the page says which rows, not the whole notebook
    # the queue's explicit --precision bf16 trains the very runs the page reads
    queued = sc.settings("full", device="cpu", precision="bf16")
    assert [c.id for _, c in sc.selected(queued, claims=["SC-2b", "SC-2b.resnet"])] == \
        [c.id for _, c in sc.selected(s, claims=["SC-2b", "SC-2b.resnet"])]
    assert {c.precision_name for _, c in sc.run_configs(sc.settings("full", device="cpu", precision="fp32"))} \
        == {"fp32"}  # an explicit precision wins for every row that names none


def test_a_bf16_notebook_names_the_rows_its_profile_keeps_in_fp32_among_its_deviations(monkeypatch):
    from lrstudy import study
    from lrstudy.config import parse_profile
    from lrstudy.experiments import EXPERIMENTS
    from lrstudy.models import MODELS
    from lrstudy.notebook import deviations

    text = (Path(__file__).parents[1] / "src" / "lrstudy" / "profiles" / "smoke.yaml").read_text()
    profile = parse_profile("smoke", text + "precision: bf16\nprecision_of: {clr_adaptive: {'Adam fixed': fp32}}\n",
                            notebooks=EXPERIMENTS, networks=MODELS)
    monkeypatch.setattr(study, "load_profile", lambda *args, **kwargs: profile)
    adaptive = get_experiment("clr_adaptive")
    said = deviations(adaptive, adaptive.settings("smoke")).data
    assert "runs every row but 'Adam fixed' with forward passes under bfloat16 autocast" in said
    assert "Profile `smoke` runs forward passes" not in said  # not "every row" while one stays float32
