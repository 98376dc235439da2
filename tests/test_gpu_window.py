"""A lent GPU's one command on a CPU: on a bare Python (no papermill, jupyter, nbval, ray, make or
git) it says in one line that there is no GPU and exits non-zero, leaving its environment check; and,
pretending the CPU is a GPU (test only), a window killed at any point leaves a folder that imports
without error and without losing a record it had written."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lrstudy import gpu_window
from lrstudy.archive import import_archive
from lrstudy.config import PROFILES

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("papermill", "jupyter", "jupyter_client", "jupyter_core", "jupyterlab", "nbval", "nbformat", "nbconvert",
           "nbclient", "ipykernel", "ray")
# A sitecustomize that makes the blocked packages unimportable, as on the lent machine
BLOCKER = f"""
import sys
BLOCKED = {BLOCKED!r}
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed on this machine (blocked by the test)")
        return None
sys.meta_path.insert(0, _Absent())
"""


def _bare_environment(tmp_path: Path, **extra) -> dict:
    """PYTHONPATH=src plus the blocker; PATH holds python3 and nothing else (no make, no git)."""
    (tmp_path / "blocker").mkdir()
    (tmp_path / "blocker" / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "bin").mkdir()
    python = tmp_path / "bin" / "python3"  # (a script, not a link: a venv's python finds its venv by its own path)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LRSTUDY_WINDOW"))}
    env.update(PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{tmp_path / 'blocker'}", PATH=str(tmp_path / "bin"),
               LRSTUDY_RESULTS=str(tmp_path / "results"), LRSTUDY_DATA_ROOT=str(tmp_path / "data"), **extra)
    return env


def test_the_bare_environment_really_lacks_the_tools(tmp_path):
    env = _bare_environment(tmp_path)
    for name in ("papermill", "ray", "nbval", "jupyter_client"):
        probe = subprocess.run(["python3", "-c", f"import {name}"], env=env, capture_output=True, text=True)
        assert probe.returncode != 0 and "blocked by the test" in probe.stderr
    assert subprocess.run(["python3", "-c", "import shutil, sys; sys.exit(any(map(shutil.which, ('make', 'git'))))"],
                          env=env).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: the window would train")
def test_on_a_bare_cpu_the_window_says_no_gpu_in_one_line_and_exits_non_zero(tmp_path):
    from test_bad_data import make_tree

    data = make_tree(tmp_path / "tiny-cifar", classes=[f"c{i}" for i in range(10)], per_class=(2, 1), size=32)
    out = tmp_path / "out"
    done = subprocess.run(["python3", "-m", "lrstudy", "gpu-window", "--minutes", "8", "--out", str(out),
                           "--data", str(data), "--profile", "smoke"],
                          cwd=ROOT, env=_bare_environment(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "no usable CUDA GPU" in line
    check = (out / "gpu-check.csv").read_text().splitlines()
    assert check[0].startswith("check,status") and check[1].startswith("environment,pass,")
    assert "no CUDA device" in check[1] and "C compiler none" in check[1]  # (PATH held python3 only)
    files = list(out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= gpu_window.FILE_LIMIT for f in files)
    assert json.loads((out / "summary.json").read_text())["ended"] is True


@pytest.mark.parametrize("minutes", ["0", "-3", "1"])
def test_a_window_too_short_for_its_reserve_is_refused_in_one_line(tmp_path, minutes, capsys):
    from lrstudy.__main__ import main

    assert main(["gpu-window", "--minutes", minutes, "--out", str(tmp_path / "out"), "--profile", "smoke"]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "--minutes" in error
    assert not (tmp_path / "out").exists()


def test_a_window_never_writes_into_a_folder_that_holds_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "records.jsonl").write_text("an earlier window's records\n")
    with pytest.raises(ValueError, match="not empty"):
        gpu_window.gpu_window(8, out, profile="smoke")
    assert (out / "records.jsonl").read_text() == "an earlier window's records\n"


def _kill_at(seconds: float, out: Path, tmp_path: Path, *options: str) -> None:
    """Start a window and kill it ``seconds`` after it has made its output folder."""
    (tmp_path / "tmp").mkdir(parents=True)
    env = {**os.environ, "LRSTUDY_WINDOW_PRETEND_GPU": "1", "PYTHONPATH": str(ROOT / "src"),
           "LRSTUDY_RESULTS": str(tmp_path / "window-results"), "TMPDIR": str(tmp_path / "tmp")}
    window = subprocess.Popen([sys.executable, "-m", "lrstudy", "gpu-window", "--minutes", "1.5", "--out", str(out),
                               "--profile", "smoke", *options], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    started = time.monotonic()
    while not (out / "summary.json").exists() and window.poll() is None and time.monotonic() < started + 120:
        time.sleep(0.05)
    try:
        window.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(window.pid, signal.SIGKILL)  # the window and every child it started, at once
    except ProcessLookupError:  # (it had ended)
        pass
    window.wait()


def test_a_window_killed_at_random_points_leaves_what_it_wrote_importable(tmp_path, monkeypatch):
    """Five kills at random times: two in the check and measure stages, three in the runs stage
    (alone, with the other stages skipped, so that on a slow CPU runs finish before the kill)."""
    rng = random.Random(os.environ.get("LRSTUDY_KILL_SEED", time.time_ns()))
    points = [(rng.uniform(0, 6), ()), (rng.uniform(6, 12), ()),
              *((rng.uniform(8 * i, 8 * i + 8), ("--skip", "gpu-check,measure")) for i in (1, 2, 3))]  # (of 30 s)
    for i, (at, options) in enumerate(points):
        out = tmp_path / f"out-{i}"
        _kill_at(at, out, tmp_path / f"kill-{i}", *options)
        files = list(out.iterdir())
        assert len(files) <= 8 and all(f.stat().st_size <= gpu_window.FILE_LIMIT for f in files)
        sink = out / "records.jsonl"
        written = sink.read_bytes().count(b"\n") if sink.exists() else 0
        announced = {line.split()[2] for line in (out / "window.log").read_text().splitlines()
                     if line.startswith("gpu-window: record ") and "written to" in line}
        monkeypatch.setenv("LRSTUDY_RESULTS", str(tmp_path / f"home-{i}"))
        summary = import_archive(out, profiles=PROFILES)  # never raises: whatever the kill left is a readable output
        records = sum(1 for _ in (tmp_path / f"home-{i}").glob("*/runs/*.json"))
        lines = sink.read_bytes().split(b"\n")[:written] if written else []
        assert records == sum(json.loads(line)["kind"] == "record" for line in lines), (at, summary)
        ids = {p.stem for p in (tmp_path / f"home-{i}").glob("*/runs/*.json")}
        assert announced <= ids, (at, announced - ids)  # no record the window said it had written is lost
        print(f"killed at {at:.1f} s: {summary}")


def test_a_line_cut_off_by_a_kill_is_left_out_and_a_damaged_one_refuses_the_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    sink = out / "records.jsonl"
    assert gpu_window.append_line(sink, gpu_window.files_entry("record", {"extra/x.txt": b"x"}))
    sink.write_bytes(sink.read_bytes() + b'{"kind": "record", "fil')  # a kill in the middle of a write
    files, manifest = gpu_window.read_output(out)
    assert files == {"extra/x.txt": b"x"} and manifest["format"] == 1
    assert gpu_window.append_line(sink, gpu_window.files_entry("record", {"extra/y.txt": b"y"}))  # cut line dropped
    assert set(gpu_window.read_output(out)[0]) == {"extra/x.txt", "extra/y.txt"}
    sink.write_bytes(sink.read_bytes().replace(b'"eA=="', b'"eQ=="'))  # x's content, altered
    with pytest.raises(ValueError, match="differs from its digest"):
        gpu_window.read_output(out)
    sink.unlink()
    (out / "notes.txt").write_text("not the window's")
    with pytest.raises(ValueError, match="not a file a GPU window writes"):
        gpu_window.read_output(out)


def test_make_gpu_window_runs_the_command_from_src_without_a_venv():
    dry = subprocess.run(["make", "-n", "gpu-window", "MINUTES=8", "OUT=out", "PROFILE=smoke"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    dry = " ".join(dry.replace("\\\n", " ").split())  # the recipe's continued lines as one
    assert f"PYTHONPATH={ROOT / 'src'}" in dry and "python3 -m lrstudy gpu-window --minutes 8 --out \"out\" " \
                                                     "--profile smoke" in dry
    assert ".venv" not in dry


def test_the_window_needs_no_notebook_tools_git_or_ray():
    """A lent GPU has torch and the plain dependencies only: everything the window runs must import
    with papermill, jupyter, nbformat, git and ray missing."""
    missing = ("papermill", "jupyter", "nbformat", "nbconvert", "nbclient", "ipykernel", "git", "ray")
    code = (f"import sys; sys.modules.update(dict.fromkeys({missing!r})); "
            "import lrstudy.__main__, lrstudy.gpu_window, lrstudy.runqueue, lrstudy.archive, lrstudy.bench, "
            "lrstudy.gpucheck, lrstudy.experiments")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_a_windows_measurements_once_imported_replace_the_assumed_floor(tmp_path, monkeypatch):
    from lrstudy.costs import ASSUMED_H100, throughput_for

    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"name": "gpu-window-nvidia-h100-80gb-hbm3-20270101-000000"}))
    device = "NVIDIA H100 80GB HBM3"
    (out / "measure.csv").write_text(
        "measure,mode,value,unit,detail,seconds,device\n"
        f"lone step,eager,2.5,ms/step,,3.0,{device}\n"
        f"fused step,K=12,9.0,ms/group step,,4.0,{device}\n"
        f"lone step,compile,1.2,ms/step,,41.0,{device}\n"
        f"lone step,reduce-overhead,0.9")  # a row a kill cut off: left out
    monkeypatch.setenv("LRSTUDY_RESULTS", str(tmp_path / "home"))
    assert throughput_for("cuda") == ASSUMED_H100 and not ASSUMED_H100.measured  # (nothing imported yet)
    import_archive(out, profiles=PROFILES)
    measured = throughput_for("cuda")
    assert measured.measured and measured.device == device and "measured by a GPU window" in measured.basis
    assert measured.step_floor_ms == 1.2 and measured.compile_s == 41.0
    assert measured.fused_tflops > measured.tflops["caffe_cifar10_full"]  # (12 runs in 9 ms vs one in 1.2 ms)
