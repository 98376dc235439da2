"""A rented GPU's one command: check the device, measure it, train the fast profile in priority
order until the time is up, and leave one archive to merge at home.

    make gpu-window MINUTES=9 OUT=dir DATA=path/to/cifar10-jpeg.tar.xz
    PYTHONPATH=src python3 -m lrstudy gpu-window --minutes 9 --out dir --data path/to/cifar10-jpeg.tar.xz

Steps, each a child process with its own share of the window, its output logged:

1. ``python -m lrstudy gpu-check`` -- every network, optimizer and mode on this device (skipped,
   with a message, where this version of the study has no such command);
2. ``python -m lrstudy.bench --quick`` -- this device's throughput, which then drives the estimates;
3. ``python -m lrstudy run all --profile fast --time-limit <what is left>`` -- the runs in priority
   order (the Caffe-net claims first); the run in progress at the limit saves a checkpoint.

Then one archive, ``OUT/gpu-window-<device>-<time>.tar.gz`` (at most 16 MiB: records first, then
the benchmark, the logs and a summary, then checkpoints of unfinished runs while they fit), which
``python -m lrstudy import`` merges into the store at home. Needs torch and the project's plain
dependencies only: no papermill, jupyter, git or network.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping

__all__ = ["gpu_window", "ARCHIVE_LIMIT"]

ARCHIVE_LIMIT = 16 * 2**20  # bytes: what a lent machine's output folder hands back per file
# The first two steps (arguments to `python`); the tests put quick stand-ins in their place.
CHECK = ["-m", "lrstudy", "gpu-check"]
BENCH = ["-m", "lrstudy.bench", "--quick", "--out", "{bench}"]
STEP_SHARE, STEP_MOST = 0.25, 150.0  # the check and the benchmark each get a quarter of the window, at most 150 s
ARCHIVE_RESERVE = 20.0  # seconds kept at the end for the archive


def gpu_check_available() -> bool:
    """Whether this version of the study has ``python -m lrstudy gpu-check`` (:mod:`lrstudy.gpucheck`)."""
    return importlib.util.find_spec("lrstudy.gpucheck") is not None


def gpu_window(minutes: float, out: str | Path, profile: str = "fast", sources: Mapping[str, str | None] | None = None) -> int:
    """Run the window (see the module docstring); returns 0 once the archive is written, whatever
    the steps did (their exit statuses are in the archive's summary and printed), and 2 at once,
    having run nothing, where the profile trains on CUDA and no CUDA GPU is usable."""
    import torch

    from .config import load_profile

    if not (0 < minutes < float("inf")):
        raise ValueError(f"gpu-window: --minutes {minutes:g} must be a number of minutes above 0")
    if load_profile(profile).device == "cuda" and not torch.cuda.is_available():
        print(f"gpu-window: no usable CUDA GPU (torch {torch.__version__}, CUDA build {torch.version.cuda}); profile "
              f"{profile!r} trains on one: nothing was run", file=sys.stderr)
        return 2

    from .archive import export_runs
    from .provenance import device_name, device_slug
    from .runqueue import make_plan, select_runs

    started, budget = time.monotonic(), minutes * 60
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lrstudy-gpu-window-"))
    data_args = [a for parameter, value in (sources or {}).items() if value
                 for a in (f"--{parameter.replace('_', '-')}", str(value))]
    summary: dict = {"minutes": minutes, "profile": profile, "steps": {}}

    def step(name: str, args: list[str], limit: float) -> None:
        t0 = time.monotonic()
        with open(work / f"{name}.log", "w") as log:
            try:
                code = subprocess.run([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                                      timeout=max(limit, 1.0)).returncode
            except subprocess.TimeoutExpired:
                code = "timed out"
        summary["steps"][name] = {"exit": code, "seconds": round(time.monotonic() - t0, 1)}
        print(f"gpu-window: {name}: exit {code} after {time.monotonic() - t0:.0f} s (log {name}.log)", flush=True)

    share = min(STEP_MOST, STEP_SHARE * budget)
    if gpu_check_available():
        step("gpu-check", [*CHECK, "--budget", f"{max(share - 15, 10):.0f}"], share)  # its own budget, inside the share
    else:  # a version of the study from before the check existed: the window still trains
        summary["steps"]["gpu-check"] = {"exit": "not available", "seconds": 0.0}
        print("gpu-window: gpu-check: not available in this version of lrstudy (no lrstudy.gpucheck module); "
              "skipped, the window goes on with the benchmark and the runs", flush=True)
    step("bench", [a.replace("{bench}", str(work / "bench")) for a in BENCH], share)
    bench = sorted((work / "bench").glob("*.csv"))
    left = budget - (time.monotonic() - started) - ARCHIVE_RESERVE
    run_args = ["-m", "lrstudy", "run", "all", "--profile", profile, "--no-progress", *data_args,
                *(["--bench", str(bench[0])] if bench else [])]
    if left > 1:
        # the child stops itself at the limit; the extra minute is for saving its checkpoint
        step("runs", [*run_args, "--time-limit", f"{left:.0f}s"], left + 60)
    else:
        print("gpu-window: no time left for runs")

    runs = select_runs(["all"], profile, sources=sources)
    plan = make_plan(runs, bench=str(bench[0]) if bench else None)
    here = device_name("cuda" if torch.cuda.is_available() else "cpu")
    summary.update(device=here, estimated_minutes_left=round(plan.total_seconds / 60, 1), estimated_on=plan.throughput.device,
                   runs={s: list(plan.status.values()).count(s) for s in sorted(set(plan.status.values()))})
    extras = {p.relative_to(work).as_posix(): p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}
    extras["summary.json"] = (json.dumps(summary, indent=1) + "\n").encode()
    name = f"gpu-window-{device_slug(here)}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(export_runs(out / f"{name}.tar.gz", runs, with_checkpoints=True, checkpoint_ids=plan.group_ids(),
                      extras=extras, name=name, size_limit=ARCHIVE_LIMIT))
    print(f"gpu-window: runs {summary['runs']}; at home: python -m lrstudy import {out / name}.tar.gz")
    return 0
