"""The GPU session's one command, end to end on a CPU under the smoke profile: the check and the
benchmark (tested on their own) replaced by quick stand-ins that leave their kind of output."""

import json
import re
import subprocess
import tarfile
from pathlib import Path

from lrstudy import gpu_window
from lrstudy.archive import import_archive

ROOT = Path(__file__).resolve().parents[1]
BENCH_CSV = ROOT / "results" / "bench" / "cpu-intel-r-xeon-r-processor-2-threads.csv"


def test_gpu_window_leaves_one_archive_that_imports_at_home(scratch, monkeypatch, capsys):
    monkeypatch.setattr(gpu_window, "CHECK", ["-c", "print('every check: skipped (stand-in)')"])
    monkeypatch.setattr(gpu_window, "BENCH", ["-c", "import os, shutil, sys; os.makedirs(sys.argv[1]); "
                                                    f"shutil.copy({str(BENCH_CSV)!r}, sys.argv[1])", "{bench}"])
    out = scratch / "out"
    assert gpu_window.gpu_window(1.0, out, profile="smoke") == 0
    [archive] = list(out.iterdir())
    assert archive.name.startswith("gpu-window-cpu-") and archive.stat().st_size <= gpu_window.ARCHIVE_LIMIT
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        summary = json.loads(tar.extractfile("extra/summary.json").read())
    assert {"extra/gpu-check.log", "extra/bench.log", "extra/runs.log", f"extra/bench/{BENCH_CSV.name}"} <= set(names)
    assert summary["steps"]["gpu-check"]["exit"] == 0 and summary["steps"]["runs"]["exit"] in (0, 3)
    records = sum(n.endswith(".json") and n.startswith("runs/") for n in names)
    assert records == summary["runs"].get("finished", 0) + summary["runs"].get("diverged", 0)
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "home"))
    assert f"imported {records} records" in import_archive(archive)
    assert (scratch / "home" / "imported" / archive.name.split(".")[0] / "bench" / BENCH_CSV.name).exists()


def test_make_gpu_window_runs_the_command_from_src_without_a_venv():
    dry = subprocess.run(["make", "-n", "gpu-window", "MINUTES=9", "OUT=out", "PROFILE=smoke"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert f"PYTHONPATH={ROOT / 'src'}" in dry and "python3 -m lrstudy gpu-window --minutes 9 --out \"out\" " \
                                                     "--profile smoke" in dry
    assert ".venv" not in dry
    printed = subprocess.run(["make", "-s", "gpu-window-command"], cwd=ROOT, capture_output=True, text=True).stdout
    assert re.search(r'run\(command="LRSTUDY_COMMIT=[0-9a-f]* make gpu-window MINUTES=9 OUT=\$OUT '
                     r'DATA=.gpu-window/cifar10-jpeg.tar.xz", carry=\[".gpu-window"\], timeout_s=600\)', printed)
