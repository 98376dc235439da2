"""A lent GPU's one command: check the device, measure what the plan assumes, then train the
profile's runs in priority order until the time is up -- leaving, at any moment it may be killed,
an output folder that ``python -m lrstudy import`` takes as it is.

    PYTHONPATH=src python3 -m lrstudy gpu-window --minutes 8 --out "$OUT" --data .gpu-window/cifar10-jpeg.tar.xz
    python -m lrstudy import "$OUT"          # at home, on the folder the lent machine gave back

A lent machine is short and bare (minutes of device time, no network, no make or git, at most 8
files of 16 MiB brought back), and may be cut off at any time. So:

* every stage is a child process with a hard time limit, and the whole window ends at least
  :data:`END_RESERVE` seconds before ``--minutes``;
* every stage writes into ``OUT`` as it goes, appending: ``gpu-check.csv`` row by row (each
  check as it ends), ``measure.csv`` row by row (:func:`lrstudy.bench.measure_window`), and
  ``records.jsonl`` one line per finished run, written the moment its record is saved (then, at the
  end, the checkpoints of the runs the time limit stopped, while they fit). ``window.log`` gets every
  child's output, ``summary.json`` (rewritten atomically) what each stage did;
* a line cut off by a kill is the last line of its file, and import leaves it out;
* without a usable CUDA GPU the window runs only the environment check, says so in one line on
  stderr and exits 1.

Stages: ``python -m lrstudy gpu-check`` (its budget inside the stage's), the measurements
(``python -m lrstudy.bench --window``), then ``python -m lrstudy run all --profile P --time-limit``
(the run in progress at the limit saves a checkpoint). Needs torch and the plain dependencies only:
no papermill, jupyter, nbval, ray, make, git or network.

Test only: ``LRSTUDY_WINDOW_PRETEND_GPU=1`` lets the window go on without CUDA (on the CPU), so that
tests can kill it in the middle of its stages. Its summary says so; never set it on a real window.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

from .files import atomic_write
from .provenance import device_name, device_slug

__all__ = ["gpu_window", "read_output", "append_line", "files_entry", "FILE_LIMIT", "OUTPUT_FILES", "END_RESERVE"]

FILE_LIMIT = 16 * 2**20  # bytes: what a lent machine hands back per file
OUTPUT_FILES = ("summary.json", "window.log", "gpu-check.csv", "measure.csv", "records.jsonl")  # (at most 8)
LOG_LIMIT = 4 * 2**20  # window.log keeps its first 4 MiB
END_RESERVE = 60.0  # seconds: the window ends at least this long before --minutes
FINAL_RESERVE = 8.0  # seconds kept after the last child: its SIGTERM wait, the checkpoints, the summary
TERM_WAIT = 3.0  # seconds a child told to stop at its hard limit has before it is killed
CHECK_SHARE, CHECK_MOST = 0.2, 90.0  # the gpu-check stage: a fifth of the window, at most 90 s
MEASURE_SHARE, MEASURE_MOST = 0.3, 150.0  # the measurements: three tenths, at most 150 s
NO_GPU_CHECK_MOST = 60.0  # without a GPU only the environment check runs
CHECKPOINT_GRACE_MOST = 30.0  # the runs stop themselves this long before their hard limit, to save a checkpoint
PRETEND = "LRSTUDY_WINDOW_PRETEND_GPU"  # test only: go on without CUDA
FINAL_STATUSES = ("finished", "diverged")
PROFILE_NAME = re.compile(r"[a-z]+")
SKIPPABLE = ("gpu-check", "measure")
STOP_AT = "--stop-at"  # (window_relay) a wall-clock time, made a --time-limit once the child's imports are done


def gpu_window(minutes: float, out: str | Path, profile: str = "fast", sources: Mapping[str, str | None] | None = None,
               skip: tuple[str, ...] = ()) -> int:
    """Run the window (see the module docstring). Returns 0 once every stage has run (a stage
    stopped by its time limit included: what it wrote is kept), 1 without a usable CUDA GPU.
    ``skip`` may name "gpu-check" and "measure" (a later window on a device already measured)."""
    started = time.monotonic()
    if set(skip) - set(SKIPPABLE):
        raise ValueError(f"--skip {','.join(skip)}: only {', '.join(SKIPPABLE)} can be skipped")
    if not minutes * 60 > END_RESERVE + 10:
        raise ValueError(f"--minutes {minutes:g}: the window ends {END_RESERVE:.0f} s before its minutes are up, "
                         f"so it needs more than {(END_RESERVE + 10) / 60:.2f} minutes")
    deadline = started + minutes * 60 - END_RESERVE
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out}: not empty; a window writes into an empty folder (nothing is overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"lrstudy-gpu-window-{os.getpid()}-{int(time.time())}"
    data_args = [a for parameter, value in (sources or {}).items() if value
                 for a in (f"--{parameter.replace('_', '-')}", str(value))]
    log = open(out / "window.log", "ab", buffering=0)
    summary: dict = {"name": f"gpu-window-{time.strftime('%Y%m%d-%H%M%S')}", "minutes": minutes, "profile": profile,
                     "stages": {}, "records": 0, "checkpoints": 0, "ended": False}

    def say(line: str, stream=sys.stdout) -> None:
        print(line, file=stream, flush=True)
        log.write(f"[{time.monotonic() - started:6.1f} s] {line}\n".encode())

    def save_summary() -> None:
        atomic_write(out / "summary.json", (json.dumps(summary, indent=1) + "\n").encode())

    def left() -> float:
        return deadline - FINAL_RESERVE - time.monotonic()

    def stage(name: str, args: list[str], limit: float, env: Mapping[str, str] | None = None) -> None:
        if name in skip:
            summary["stages"][name] = {"exit": "skipped (--skip)", "seconds": 0.0}
            say(f"gpu-window: {name}: skipped (--skip)")
            return
        limit = min(limit, left())
        if limit < 1:
            summary["stages"][name] = {"exit": "no time left", "seconds": 0.0}
            say(f"gpu-window: {name}: no time left")
            return
        say(f"gpu-window: {name}: started, at most {limit:.0f} s")
        t0 = time.monotonic()
        code = _child([sys.executable, *args], limit, log, env)
        summary["stages"][name] = {"exit": code, "seconds": round(time.monotonic() - t0, 1), "limit": round(limit, 1)}
        say(f"gpu-window: {name}: exit {code} after {time.monotonic() - t0:.0f} s")
        save_summary()

    import torch

    cuda = torch.cuda.is_available()
    pretend = not cuda and os.environ.get(PRETEND) == "1"
    here = device_name("cuda" if cuda else "cpu")
    summary.update(name=f"gpu-window-{device_slug(here)}-{time.strftime('%Y%m%d-%H%M%S')}", device=here,
                   torch=torch.__version__, pretend_gpu=pretend)
    save_summary()
    say(f"gpu-window: {here}, torch {torch.__version__}; {minutes:g} minutes, ends by {deadline - started:.0f} s"
        + ("; PRETENDING the CPU is a GPU (test only)" if pretend else ""))
    check = ["-m", "lrstudy", "gpu-check", "--append", str(out / "gpu-check.csv")]
    if not (cuda or pretend):
        stage("gpu-check", [*check, "--only", "environment"], NO_GPU_CHECK_MOST)
        summary["ended"] = True
        save_summary()
        log.close()
        print(f"gpu-window: no usable CUDA GPU (torch {torch.__version__} sees none): nothing measured or trained; "
              f"the environment check is in {out / 'gpu-check.csv'}", file=sys.stderr, flush=True)
        return 1
    window = deadline - time.monotonic()
    share = min(CHECK_MOST, CHECK_SHARE * window) if "gpu-check" not in skip else 0
    stage("gpu-check", [*check, "--budget", f"{max(share * 0.8, 1):.0f}"], share)
    share = min(MEASURE_MOST, MEASURE_SHARE * window) if "measure" not in skip else 0
    stage("measure", ["-m", "lrstudy.bench", "--window", "--append", str(out / "measure.csv"),
                      "--budget", f"{max(share * 0.9, 1):.0f}"], share)
    # the runs stop themselves at their time limit; the grace after it is for saving a checkpoint
    grace = min(CHECKPOINT_GRACE_MOST, 0.2 * max(left(), 0))
    env = {**os.environ, "LRSTUDY_RESULTS": str(work / "results")}
    stage("runs", ["-m", "lrstudy.window_relay", str(out / "records.jsonl"), "run", "all", "--profile", profile,
                   "--no-progress", *data_args, STOP_AT, f"{time.time() + max(left() - grace, 1):.1f}"], left(), env)
    summary["records"] = _count_lines(out / "records.jsonl")
    summary["checkpoints"] = _append_checkpoints(out / "records.jsonl", work / "results", profile, say)
    summary["ended"] = True
    save_summary()
    shutil.rmtree(work, ignore_errors=True)  # (the runs' own store: what mattered is in records.jsonl)
    say(f"gpu-window: {summary['records']} records and {summary['checkpoints']} checkpoints in {out}; "
        f"at home: python -m lrstudy import {out}")
    log.close()
    _cap(out / "window.log", LOG_LIMIT)
    return 0


def _child(command: list[str], limit: float, log, env: Mapping[str, str] | None) -> int | str:
    """Run ``command`` with its output appended to ``log``; at ``limit`` seconds it gets SIGTERM
    (the run queue checkpoints and stops on it), and is killed with everything it started if it has
    not ended :data:`TERM_WAIT` seconds later. Returns its exit status, or "timed out"."""
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env={**(env or os.environ), "PYTHONUNBUFFERED": "1"})  # (a killed child's lines too)
    try:
        return process.wait(timeout=max(limit, 0.1))
    except subprocess.TimeoutExpired:
        pass
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=TERM_WAIT)
    except subprocess.TimeoutExpired:
        for pid in [*_descendants(process.pid), process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
    return "timed out"


def _descendants(pid: int) -> list[int]:
    """Every process ``pid`` started, and theirs (Linux: from /proc; elsewhere none)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def append_line(path: Path, entry: dict) -> bool:
    """Append ``entry`` as one JSON line to ``path`` and fsync it; False (nothing written) if the
    file would pass :data:`FILE_LIMIT`. A line a kill cut off before is removed first."""
    line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            head = os.pread(fd, size, 0)
            size = head.rfind(b"\n") + 1
            os.ftruncate(fd, size)
        if size + len(line) > FILE_LIMIT:
            return False
        written = 0
        while written < len(line):
            written += os.write(fd, line[written:])
        os.fsync(fd)
        return True
    finally:
        os.close(fd)


def files_entry(kind: str, files: Mapping[str, bytes]) -> dict:
    return {"kind": kind, "files": {k: base64.b64encode(v).decode() for k, v in files.items()},
            "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}}


def _count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _append_checkpoints(sink: Path, results: Path, profile: str, say) -> int:
    """The checkpoints the runs stage left (runs the time limit stopped), appended while they fit."""
    added = 0
    for checkpoint in sorted((results / profile / "checkpoints").glob("*.pt")):
        entry = files_entry("checkpoint", {f"checkpoints/{profile}/{checkpoint.name}": checkpoint.read_bytes()})
        if append_line(sink, entry):
            added += 1
        else:
            say(f"gpu-window: checkpoint {checkpoint.stem} left out: it would take {sink.name} past 16 MiB")
    return added


def _cap(path: Path, limit: int) -> None:
    if path.exists() and path.stat().st_size > limit:
        os.truncate(path, limit)


def read_output(folder: Path) -> tuple[dict[str, bytes], dict]:
    """A window's output folder as an archive's members and manifest (for
    :func:`lrstudy.archive.import_archive`, which then checks every record as it checks an archive's):
    each complete line of ``records.jsonl`` after checking its files' digests (a last line a kill cut
    off is left out), the other files under ``extra/``. Raises ValueError for anything a window does
    not write (another file, a link, a damaged complete line)."""
    files: dict[str, bytes] = {}
    problems: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") and ".tmp-" in path.name:
            continue  # an atomic write a kill interrupted
        if path.is_symlink() or not path.is_file():
            problems.append(f"{path.name}: not a plain file")
        elif path.stat().st_size > FILE_LIMIT:  # checked before reading: a folder is as untrusted as an archive
            problems.append(f"{path.name}: {path.stat().st_size} bytes, more than a window writes ({FILE_LIMIT})")
        elif path.name not in OUTPUT_FILES:
            problems.append(f"{path.name}: not a file a GPU window writes ({', '.join(OUTPUT_FILES)})")
        elif path.name != "records.jsonl":
            files[f"extra/{path.name}"] = path.read_bytes()
    sink = folder / "records.jsonl"
    readable = sink.is_file() and not sink.is_symlink() and sink.stat().st_size <= FILE_LIMIT
    lines = sink.read_bytes().split(b"\n") if readable else [b""]
    for number, line in enumerate(lines[:-1], 1):  # (the last piece: empty, or a line a kill cut off)
        try:
            entry = json.loads(line)
            blobs = {name: base64.b64decode(text, validate=True) for name, text in entry["files"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            problems.append(f"records.jsonl line {number}: unreadable ({type(err).__name__})")
            continue
        for name, blob in blobs.items():
            if entry.get("sha256", {}).get(name) != hashlib.sha256(blob).hexdigest():
                problems.append(f"records.jsonl line {number}: {name} differs from its digest")
            elif name in files and files[name] != blob:
                problems.append(f"records.jsonl line {number}: {name} given twice, with other content")
            else:
                files[name] = blob
    if problems:
        raise ValueError(f"refused {folder}, nothing was written:\n  " + "\n  ".join(problems))
    try:
        name = json.loads(files.get("extra/summary.json", b"{}")).get("name")
    except (ValueError, AttributeError):
        name = None
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9._-]+", name)):
        name = "gpu-window-" + (re.sub(r"[^A-Za-z0-9._-]", "-", folder.resolve().name) or "output")
    manifest = {"format": 1, "name": name, "files": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}}
    return files, manifest
