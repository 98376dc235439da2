"""The GPU session's one command, end to end on a CPU under the smoke profile: the benchmark
(tested on its own) replaced by a quick stand-in that leaves its kind of output, and the device
check absent, as on a branch without it."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

from lrstudy import gpu_window
from lrstudy.archive import import_archive

ROOT = Path(__file__).resolve().parents[1]
BENCH_CSV = ROOT / "results" / "bench" / "cpu-intel-r-xeon-r-processor-2-threads.csv"


def test_gpu_window_leaves_one_archive_that_imports_at_home(scratch, monkeypatch, capsys):
    # a branch without the gpu-check command: the window says so and goes on
    monkeypatch.setattr(gpu_window, "gpu_check_available", lambda: False)
    monkeypatch.setattr(gpu_window, "BENCH", ["-c", "import os, shutil, sys; os.makedirs(sys.argv[1]); "
                                                    f"shutil.copy({str(BENCH_CSV)!r}, sys.argv[1])", "{bench}"])
    out = scratch / "out"
    assert gpu_window.gpu_window(0.7, out, profile="smoke") == 0  # about 20 s of runs
    [archive] = list(out.iterdir())
    assert archive.name.startswith("gpu-window-cpu-") and archive.stat().st_size <= gpu_window.ARCHIVE_LIMIT
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        summary = json.loads(tar.extractfile("extra/summary.json").read())
    assert "gpu-check: not available in this version of lrstudy" in capsys.readouterr().out
    assert {"extra/bench.log", "extra/runs.log", f"extra/bench/{BENCH_CSV.name}"} <= set(names)
    assert summary["steps"]["gpu-check"]["exit"] == "not available" and summary["steps"]["runs"]["exit"] in (0, 3)
    records = sum(n.endswith(".json") and n.startswith("runs/") for n in names)
    assert records == summary["runs"].get("finished", 0) + summary["runs"].get("diverged", 0)
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "home"))
    assert f"imported {records} records" in import_archive(archive)
    assert (scratch / "home" / "imported" / archive.name.split(".")[0] / "bench" / BENCH_CSV.name).exists()


def test_make_gpu_window_runs_the_command_from_src_without_a_venv():
    dry = subprocess.run(["make", "-n", "gpu-window", "MINUTES=9", "OUT=out", "PROFILE=smoke"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    dry = " ".join(dry.replace("\\\n", " ").split())  # the recipe's continued lines as one
    assert f"PYTHONPATH={ROOT / 'src'}" in dry and "python3 -m lrstudy gpu-window --minutes 9 --out \"out\" " \
                                                     "--profile smoke" in dry
    assert ".venv" not in dry


def test_the_window_needs_no_notebook_tools_git_or_ray():
    """A rented GPU has torch and the plain dependencies only: everything the window runs must import
    with papermill, jupyter, nbformat, git and ray missing."""
    missing = ("papermill", "jupyter", "nbformat", "nbconvert", "nbclient", "ipykernel", "git", "ray")
    code = (f"import sys; sys.modules.update(dict.fromkeys({missing!r})); "
            "import lrstudy.__main__, lrstudy.gpu_window, lrstudy.runqueue, lrstudy.archive, lrstudy.bench, "
            "lrstudy.experiments")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
