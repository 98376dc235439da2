"""Faults injected on purpose: runs killed with SIGKILL and resumed, corrupted checkpoints,
concurrent writers, disk errors, bad inputs, a failing notebook under make. Nothing may be lost or
half-written, and every bad input must be refused with a message before anything is written."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lrstudy.checkpoints import Checkpointer
from lrstudy.files import atomic_write
from lrstudy.config import check_section, resolve_device
from lrstudy.data import DataUnavailable, load_data
from lrstudy.experiments import clr_cifar10, get_experiment, load_profile
from lrstudy.runs import RunConfig, RunStore
from lrstudy.schedule_specs import make_schedule
from lrstudy.notebook import check_injected_parameters
from lrstudy.study import STANDARD_KNOBS
from lrstudy.train import train

ROOT = Path(__file__).resolve().parents[1]
KILL_POINTS = 6
RUN = dict(
    profile="smoke", data="synthetic", model={"name": "caffe_cifar10_full"},
    optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004},
    schedule={"name": "triangular2", "base_lr": 0.001, "max_lr": 0.006, "step_size": 50},
    iterations=1000, batch_size=20, eval_every=100, seed=3,
)

# A child process that asks the store for the run above, checkpointing every 7 updates, and says
# whether it had to train. One thread, like the parent's reference, so results can match bit for bit.
CHILD = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from lrstudy.data import load_data
    from lrstudy.runs import RunConfig, RunStore
    from lrstudy.train import train
    config = RunConfig(**{run!r})
    store = RunStore("smoke", sys.argv[1])
    checkpointer = store.checkpointer(config, every=7)
    data = load_data("synthetic")
    def run(c):
        print("TRAINED", flush=True)
        r = train(c, data, progress=False, checkpointer=checkpointer)
        return r.status, r.rows, {{"timings": r.timings}}
    record = store.get_or_run(config, run, checkpointer=checkpointer)
    print("FINAL", record.final["test_acc"], flush=True)
""").format(run=RUN)


def same(rows_a, rows_b) -> bool:
    """Rows equal value for value (NaN equal to NaN, which == on dicts does not guarantee)."""
    import pandas as pd

    return pd.DataFrame(rows_a).equals(pd.DataFrame(rows_b))


def child(store_dir) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(store_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def csv_bytes(store_dir) -> bytes:
    return (Path(store_dir) / f"{RunConfig(**RUN).id}.csv").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> bytes:
    """The run trained straight through, in a child process like the interrupted ones."""
    store_dir = tmp_path_factory.mktemp("reference")
    out, err = child(store_dir).communicate(timeout=300)
    assert "FINAL" in out, err
    return csv_bytes(store_dir)


def test_sigkill_at_random_points_then_resume_gives_identical_results(tmp_path, reference):
    rng = random.Random(20261125)
    store_dir = tmp_path / "runs"
    checkpoint = RunStore("smoke", store_dir).checkpointer(RunConfig(**RUN), every=7).path
    kills = 0
    while kills < KILL_POINTS:
        before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
        proc = child(store_dir)
        deadline = time.monotonic() + 60
        # wait until this process has written a checkpoint of its own, i.e. it is mid-training ...
        while (checkpoint.stat().st_mtime_ns if checkpoint.exists() else None) == before:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no new checkpoint before kill {kills + 1}: {proc.communicate()[1][-2000:]}")
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.25))  # ... then kill it at a seeded moment (a checkpoint every 7 updates)
        if proc.poll() is not None:
            pytest.fail(f"the run finished before kill {kills + 1}; lengthen it")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    out, err = child(store_dir).communicate(timeout=300)
    assert "FINAL" in out, err
    assert csv_bytes(store_dir) == reference
    meta = json.loads((store_dir / f"{RunConfig(**RUN).id}.json").read_text())
    assert meta["status"] == "finished" and meta["timings"]["resumed_from_step"]
    assert not checkpoint.exists()  # removed once the record was saved
    assert kills == KILL_POINTS


def test_concurrent_processes_train_a_run_once(tmp_path, reference):
    store_dir = tmp_path / "runs"
    procs = [child(store_dir) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert sum(o.count("TRAINED") for o in outs) == 1, outs
    assert len({o.split("FINAL")[1] for o in outs}) == 1
    assert csv_bytes(store_dir) == reference


@pytest.mark.parametrize("damage", ["truncated", "bit flipped", "other run", "empty"])
def test_damaged_checkpoint_is_set_aside_and_the_run_starts_over(tmp_path, damage):
    data = load_data("synthetic")
    config = RunConfig(**{**RUN, "iterations": 30, "eval_every": 10})
    store = RunStore("smoke", tmp_path / "runs")
    checkpointer = store.checkpointer(config, every=7)
    straight = train(config, data, progress=False)
    # leave a real checkpoint behind, as a killed run would
    train(config, data, progress=False, checkpointer=Checkpointer(checkpointer.path, config.id, 7, keep=True))
    raw = checkpointer.path.read_bytes()
    if damage == "truncated":
        checkpointer.path.write_bytes(raw[: len(raw) // 2])
    elif damage == "bit flipped":
        checkpointer.path.write_bytes(raw[:100] + bytes([raw[100] ^ 1]) + raw[101:])
    elif damage == "other run":
        Checkpointer(checkpointer.path, "someotherrun", 7).save({"step": 3})
    else:
        checkpointer.path.write_bytes(b"")
    with pytest.warns(UserWarning, match="ignoring checkpoint"):
        again = train(config, data, progress=False, checkpointer=checkpointer)
    assert same(again.rows, straight.rows) and again.timings["resumed_from_step"] is None
    assert checkpointer.path.with_suffix(".corrupt").exists()


def test_a_resumed_run_matches_in_process(tmp_path):
    """The same guarantee without processes: stop after a checkpoint, resume, compare rows."""
    data = load_data("synthetic")
    config = RunConfig(**{**RUN, "iterations": 50, "eval_every": 10})
    straight = train(config, data, progress=False)
    path = tmp_path / "ck.pt"

    class Stop(Exception):
        pass

    class StopAfterFirstSave(Checkpointer):
        def save(self, state):
            super().save(state)
            raise Stop

    with pytest.raises(Stop):
        train(config, data, progress=False, checkpointer=StopAfterFirstSave(path, config.id, 14))
    resumed = train(config, data, progress=False, checkpointer=Checkpointer(path, config.id, 14))
    assert resumed.timings["resumed_from_step"] == 14
    assert same(resumed.rows, straight.rows)


def test_disk_write_errors_name_the_path(tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    def full_disk(path, mode="r", *a, **k):
        if "w" in mode:
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full_disk)
    target = tmp_path / "runs" / "abc.csv"
    with pytest.raises(OSError, match=f"cannot write {target}.*No space left"):
        atomic_write(target, b"x")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


BAD_INPUTS = [
    (lambda: load_profile("medium"), ValueError, "unknown profile 'medium'"),
    (lambda: clr_cifar10.EXPERIMENT.settings("smoke", seeds=0), ValueError, "seeds=0"),
    (lambda: clr_cifar10.EXPERIMENT.settings("smoke", seeds=-2), ValueError, "seeds=-2"),
    (lambda: clr_cifar10.EXPERIMENT.settings("smoke", seeds="3"), ValueError, "seeds='3'"),
    (lambda: clr_cifar10.EXPERIMENT.settings("smoke", seeds=True), ValueError, "seeds=True"),
    (lambda: clr_cifar10.EXPERIMENT.settings("smoke", device="tpu"), ValueError, "device='tpu'"),
    (lambda: get_experiment("alexnet"), ValueError, "unknown experiment 'alexnet'"),
    (lambda: check_section("k", {"budget_scale": 2, "eval_every": 5}, STANDARD_KNOBS), ValueError, "budget_scale=2"),
    (lambda: check_section("k", {"budget_scale": "1", "eval_every": 5}, STANDARD_KNOBS), ValueError, "budget_scale='1'"),
    (lambda: check_section("k", {"budget_scale": 1, "eval_every": 0}, STANDARD_KNOBS), ValueError, "eval_every=0"),
    (lambda: check_section("k", {"budget_scale": 1, "eval_every": 5, "lr": 1}, STANDARD_KNOBS), ValueError, "unknown key 'lr'"),
    (lambda: check_section("k", {"eval_every": 5}, STANDARD_KNOBS), ValueError, "missing key 'budget_scale'"),
    (lambda: RunConfig(**{**RUN, "iterations": 0}), ValueError, "iterations=0"),
    (lambda: RunConfig(**{**RUN, "batch_size": 2.5}), ValueError, "batch_size=2.5"),
    (lambda: RunConfig(**{**RUN, "seed": -1}), ValueError, "seed=-1"),
    (lambda: RunConfig(**{**RUN, "model": {"name": "vgg"}}), ValueError, "unknown model 'vgg'"),
    (lambda: RunConfig(**{**RUN, "optimizer": {"name": "lamb"}}), ValueError, "unknown optimizer 'lamb'"),
    (lambda: make_schedule("cosine"), ValueError, "unknown schedule 'cosine'"),
    (lambda: make_schedule("fixed", lr=-0.1), ValueError, "lr=-0.1"),
    (lambda: make_schedule("triangular", base_lr=0.1, max_lr=0.2, step_size=0), ValueError, "step_size=0"),
    (lambda: make_schedule("triangular", base_lr=0.3, max_lr=0.2, step_size=5), ValueError, "max_lr=0.2"),
    (lambda: make_schedule("sgdr", eta_max=0.1, eta_min=0, T_0=1, steps_per_epoch=5, T_mult=0.5), ValueError, "T_mult=0.5"),
    (lambda: make_schedule("onecycle_torch", max_lr=1, total_steps=100, pct_start=1.5), ValueError, "pct_start=1.5"),
    (lambda: load_data("/nonexistent/cifar"), DataUnavailable, "DATA="),
    (lambda: load_data(ROOT / "README.md"), DataUnavailable, "not a .tar"),
    (lambda: load_data(ROOT / "tests"), DataUnavailable, "no train/ and test/"),
    (lambda: check_injected_parameters(["# Parameters\nprofile = \"cpu\"\nseed = 3\n"]), ValueError,
     "unknown notebook parameter 'seed'"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUTS, ids=[m for _, _, m in BAD_INPUTS])
def test_bad_input_is_refused_and_nothing_is_written(scratch, call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        call()
    assert not any(p.is_file() for p in scratch.rglob("*")), "something was written"


def test_cuda_requested_but_absent(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU.*PROFILE=cpu"):
        resolve_device("cuda")


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "papermill").exists(), reason="needs the project's .venv")
def test_an_unknown_profile_is_refused_before_any_notebook_runs(tmp_path):
    """Under make, a profile that does not exist stops the preflight: make exits non-zero and
    nothing is written where results go. (A notebook that fails later: tests/test_reproduce.py.)"""
    result = subprocess.run(
        ["make", "--no-print-directory", "reproduce", "PROFILE=medium", "NOTEBOOKS=clr_range_test",
         f"RESULTS={tmp_path}", f"BUILD={tmp_path / 'build'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "invalid choice: 'medium'" in result.stderr
    assert not (tmp_path / "medium").exists() and not (tmp_path / "build").exists()


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "papermill").exists(), reason="needs the project's .venv")
def test_a_newcomer_without_data_or_network_gets_one_message(tmp_path):
    """A fresh clone, no data, no internet, `make reproduce`: the preflight stops before any notebook
    runs, with one message naming DATA= and the download, and make exits non-zero. (The network is
    made unreachable with a proxy on a closed port.)"""
    offline = {**os.environ, "LRSTUDY_DATA_ROOT": str(tmp_path / "data"), "https_proxy": "http://127.0.0.1:9",
               "http_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    started = time.monotonic()
    result = subprocess.run(
        ["make", "--no-print-directory", "reproduce", "PROFILE=cpu", "NOTEBOOKS=clr_cifar10", f"RESULTS={tmp_path}",
         f"BUILD={tmp_path / 'build'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=offline,
    )
    assert result.returncode != 0
    assert "cannot be reached" in result.stderr and "DATA=" in result.stderr
    assert not (tmp_path / "cpu").exists() and not (tmp_path / "build").exists()
    assert time.monotonic() - started < 60


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "papermill").exists(), reason="needs the project's .venv")
def test_a_misspelt_papermill_parameter_stops_the_notebook(tmp_path):
    """papermill only warns about a parameter the notebook does not declare; the study refuses it
    before any run starts, naming it."""
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "papermill"), "-k", "python3", "--cwd", str(ROOT / "notebooks"),
         "-p", "profile", "smoke", "-p", "seed", "3", str(ROOT / "notebooks" / "clr_range_test.ipynb"),
         str(tmp_path / "out.ipynb")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "LRSTUDY_RESULTS": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "unknown notebook parameter 'seed'" in result.stdout + result.stderr
    assert not (tmp_path / "smoke").exists()  # no run was started
