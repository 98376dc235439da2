"""The Ray executor on a local 2-CPU Ray instance: records byte-identical to the local executor's,
and a worker SIGKILLed mid-run retried into the same record with no partial file left."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from lrstudy.__main__ import main
from lrstudy.queue_selection import select_runs

ray = pytest.importorskip("ray")

# Claims whose runs cover a plain Caffe net, the Hessian-free estimate (a traced ResNet) and snapshots (a WRN)
CLAIMS = ["--claims", "CLR-T1.tri2-vs-fixed,SC-HF,SGDR-T2.snapshots.CIFAR-10"]
VOLATILE = {"timings", "started_at", "saved_at", "record_sha256"}  # when and how long: never equal between runs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray instance with 2 CPUs whose workers see the store under ``<root>/results``
    (a worker reads the environment it was started with)."""
    root = tmp_path_factory.mktemp("ray")
    saved = {k: os.environ.get(k) for k in ("LRSTUDY_RESULTS", "LRSTUDY_DATA_ROOT")}
    os.environ.update(LRSTUDY_RESULTS=str(root / "results"), LRSTUDY_DATA_ROOT=str(root / "data"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield root / "results" / "smoke"
    ray.shutdown()
    for key, value in saved.items():
        os.environ[key] = value


@pytest.fixture
def one_thread():
    """Float sums depend on the thread count: train in-process with one thread, as each worker does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def local_store(tmp_path, monkeypatch, argv) -> Path:
    """The selection trained by the local executor in another store."""
    monkeypatch.setenv("LRSTUDY_RESULTS", str(tmp_path / "local"))
    assert main(argv) == 0
    monkeypatch.setenv("LRSTUDY_RESULTS", os.environ["LRSTUDY_RESULTS"])
    monkeypatch.undo()
    return tmp_path / "local" / "smoke" / "runs"


def record(folder: Path, run_id: str) -> tuple:
    meta = json.loads((folder / f"{run_id}.json").read_text())
    snapshots = folder / f"{run_id}.snapshots.pt"
    return ((folder / f"{run_id}.csv").read_bytes(), snapshots.read_bytes() if snapshots.exists() else None,
            {k: v for k, v in meta.items() if k not in VOLATILE})


def test_ray_gives_records_identical_to_the_local_executor(cluster, tmp_path, monkeypatch, one_thread):
    argv = ["run", "all", "--profile", "smoke", *CLAIMS, "--no-progress"]
    local = local_store(tmp_path, monkeypatch, argv)
    assert main([*argv, "--executor", "ray", "--cpus-per-run", "1"]) == 0
    runs = select_runs(["all"], "smoke", claims=CLAIMS[1].split(","))
    assert len(runs) == 4 and any(r.config.snapshot_at for r in runs) and any(r.config.lr_estimate for r in runs)
    for run in runs:
        assert record(cluster / "runs", run.config.id) == record(local, run.config.id), run.label


def _worker_pids() -> list[int]:
    """Processes below this one (Ray's raylet, then its workers) running a training task."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            children.setdefault(int(rest.rsplit(") ", 1)[1].split()[1]), []).append(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    below, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            below.append(child)
            todo.append(child)
    out = []
    for pid in below:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::_train_on_worker"):
                out.append(pid)
        except OSError:
            continue
    return out


def _once_mid_run(checkpoint: Path, act) -> tuple[threading.Thread, list]:
    """A watcher thread that calls ``act(worker pids)`` once, as soon as a worker is training and
    its checkpoint exists; the list it returns is non-empty once it acted."""
    acted = []

    def watch():
        deadline = time.monotonic() + 300
        while not acted and time.monotonic() < deadline:
            pids = _worker_pids()
            if checkpoint.exists() and pids:
                act(pids)
                acted.append(pids[0])
            time.sleep(0.01)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher, acted


def test_a_worker_killed_mid_run_is_retried_into_the_same_record(cluster, tmp_path, monkeypatch, one_thread):
    argv = ["run", "clr_range_test", "--profile", "smoke", "--only", "linear 0 to 0.02 (Smith)", "--no-progress"]
    local = local_store(tmp_path, monkeypatch, argv)
    config = select_runs(["clr_range_test"], "smoke", only=["linear 0 to 0.02 (Smith)"])[0].config
    checkpoint = cluster / "checkpoints" / f"{config.id}.pt"
    watcher, killed = _once_mid_run(checkpoint, lambda pids: os.kill(pids[0], signal.SIGKILL))
    assert main([*argv, "--executor", "ray", "--cpus-per-run", "1"]) == 0
    watcher.join()
    assert killed, "no worker was caught mid-run"
    assert record(cluster / "runs", config.id) == record(local, config.id)
    meta = json.loads((cluster / "runs" / f"{config.id}.json").read_text())
    assert meta["status"] == "finished" and meta["timings"]["resumed_from_step"] == 50  # resumed on its node
    assert not checkpoint.exists() and not list(cluster.rglob(".*.tmp-*")) and not list(cluster.rglob("*.corrupt"))


def test_ctrl_c_cancels_the_tasks_records_nothing_and_the_next_call_resumes(cluster, tmp_path, monkeypatch,
                                                                              one_thread):
    import fcntl

    argv = ["run", "clr_range_test", "--profile", "smoke", "--only", "linear 0 to 0.02 (Smith)", "--no-progress"]
    local = local_store(tmp_path, monkeypatch, argv)
    # the driver writes another store than the earlier tests'; the worker keeps its checkpoints in its own
    monkeypatch.setenv("LRSTUDY_RESULTS", str(tmp_path / "driver"))
    store = tmp_path / "driver" / "smoke"
    config = select_runs(["clr_range_test"], "smoke", only=["linear 0 to 0.02 (Smith)"])[0].config
    checkpoint = cluster / "checkpoints" / f"{config.id}.pt"
    armed = threading.Event()

    def ctrl_c(signum, frame):  # a key press that lands after the call returned is dropped
        if armed.is_set():
            armed.clear()
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, ctrl_c)
    try:
        armed.set()
        watcher, pressed = _once_mid_run(checkpoint, lambda pids: os.kill(os.getpid(), signal.SIGINT))
        with pytest.raises(KeyboardInterrupt):
            main([*argv, "--executor", "ray", "--cpus-per-run", "1"])
    finally:
        armed.clear()
        signal.signal(signal.SIGINT, previous)
    watcher.join()
    assert pressed, "Ctrl-C came too late: the run had finished"
    deadline = time.monotonic() + 30
    while _worker_pids() and time.monotonic() < deadline:  # ray.cancel(force=True) kills the worker
        time.sleep(0.1)
    assert not _worker_pids(), "the task still runs after Ctrl-C"
    assert not (store / "runs" / f"{config.id}.json").exists() and checkpoint.exists()
    with open(store / "locks" / f"{config.id}.lock") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: BlockingIOError if still held

    assert main([*argv, "--executor", "ray", "--cpus-per-run", "1"]) == 0
    assert record(store / "runs", config.id) == record(local, config.id)
    meta = json.loads((store / "runs" / f"{config.id}.json").read_text())
    assert meta["timings"]["resumed_from_step"] == 50 and not checkpoint.exists()


def test_the_driver_hands_ray_only_as_many_tasks_as_it_runs_at_once(cluster, tmp_path, monkeypatch, one_thread):
    # Ray queues a retried task behind every task it holds: were the whole queue handed over at the
    # start, a run whose worker died would train after all the others instead of next
    from lrstudy import ray_executor

    monkeypatch.setenv("LRSTUDY_RESULTS", str(tmp_path / "driver"))
    events = []
    submit, store_outcomes = ray_executor._Submitter.__call__, ray_executor._store_outcomes

    def spy_submit(self, task):
        events.append(("handed", task.runs[0].config.id))
        return submit(self, task)

    def spy_store(ref, settings, labelled, *args):
        events.append(("ended", labelled[0][1].id))
        return store_outcomes(ref, settings, labelled, *args)

    monkeypatch.setattr(ray_executor._Submitter, "__call__", spy_submit)
    monkeypatch.setattr(ray_executor, "_store_outcomes", spy_store)
    assert main(["run", "clr_range_test", "--profile", "smoke", "--only", "exponential 1e-6 to 10 (fastai)",
                 "--seed-range", "1-3", "--no-progress", "--executor", "ray", "--cpus-per-run", "1"]) == 0
    with_ray, most = 0, 0
    for kind, _ in events:
        with_ray += 1 if kind == "handed" else -1
        most = max(most, with_ray)
    assert most == 2 and with_ray == 0  # the cluster's 2 CPUs, never more
    assert len({run for kind, run in events if kind == "handed"}) == 3 and events[2][0] == "ended"
    assert len(list((tmp_path / "driver" / "smoke" / "runs").glob("*.json"))) == 3


class _Flag:  # the driver's flag actor, as a worker sees it (ray.get is monkeypatched to answer)
    class is_set:  # noqa: N801 (an actor method's handle)
        @staticmethod
        def remote():
            return "ref"


def test_the_stop_flag_is_read_off_the_training_thread(monkeypatch):
    """Ray lends out the CPUs of a task whose main thread blocks in ``ray.get`` and starts a queued
    task on them: while the workers read the stop flag from the training thread, the campaign trained
    4 runs at once on 2 CPUs. So every read happens on another thread, the first one before training
    starts (a task that starts after the flag went up stops at once), and none after the task ends."""
    from lrstudy.ray_executor import _WorkerStop

    reads, value = [], [False]

    def get(ref):
        reads.append(threading.current_thread() is threading.main_thread())
        return value[0]

    monkeypatch.setattr(ray, "get", get)
    with _WorkerStop(None, _Flag(), every=0.01) as stop:
        assert reads and reads[0] is False  # read before training (more reads may follow at once under load)
        for _ in range(50):
            assert stop() is False
            time.sleep(0.002)
        value[0] = True
        deadline = time.monotonic() + 10
        while not stop() and time.monotonic() < deadline:
            time.sleep(0.002)
        assert stop() is True
    assert len(reads) > 2 and not any(reads)

    value[0] = False  # a task that ends while the flag is down: its reading thread stops with it
    with _WorkerStop(None, _Flag(), every=0.01) as stop:
        time.sleep(0.05)
    stop.watcher.join(timeout=5)
    assert not stop.watcher.is_alive()

    value[0] = True
    with _WorkerStop(None, _Flag(), every=60) as stop:
        assert stop() is True  # raised before the task started


def test_a_stop_flag_that_cannot_be_read_stops_the_run(monkeypatch):
    """Should the flag's actor die, a worker can no longer learn of a SIGTERM: it stops as if the flag
    were raised (saving its checkpoint, which the next call resumes) instead of training on for hours
    out of the queue's reach, as it did while the reading thread died with the error."""
    from lrstudy.ray_executor import _WorkerStop

    answers = iter([False, False])

    def get(ref):
        try:
            return next(answers)
        except StopIteration:
            raise ray.exceptions.RayActorError() from None

    monkeypatch.setattr(ray, "get", get)
    with _WorkerStop(None, _Flag(), every=0.01) as stop:
        deadline = time.monotonic() + 10
        while not stop() and time.monotonic() < deadline:
            time.sleep(0.002)
        assert stop() is True
    stop.watcher.join(timeout=5)
    assert not stop.watcher.is_alive()

    def lost(ref):
        raise ray.exceptions.RayActorError()

    monkeypatch.setattr(ray, "get", lost)  # gone before the task started: it returns at once
    with _WorkerStop(None, _Flag(), every=60) as stop:
        assert stop() is True


def test_a_queue_stopped_before_its_tasks_were_handed_over_says_they_did_not_run():
    from types import SimpleNamespace

    from lrstudy.queue_types import QueueResult
    from lrstudy.ray_executor import _collect

    raised = []
    flag = SimpleNamespace(set=SimpleNamespace(remote=lambda: raised.append(True)))
    tasks = [SimpleNamespace(labelled=[("fixed", SimpleNamespace(id=f"run{i}"))]) for i in range(3)]
    result = QueueResult()
    _collect(tasks, lambda task: pytest.fail("handed over after the stop"), lambda: True, flag, lambda: 2, False,
             result)
    assert raised and result.stopped
    assert result.errors == {f"run{i}": "not run: stopped before it finished" for i in range(3)}
