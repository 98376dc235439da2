"""The Ray executor of the run queue: each task (a run, or a fused group) is a Ray task.

    python -m lrstudy run all --profile fast --executor ray                   # every GPU of this machine
    python -m lrstudy run all --profile fast --executor ray --address auto    # a running cluster

* **One writer.** A worker trains and returns each run's outcome -- its rows and metadata, or its
  error -- and the driver alone writes the run store, holding each run's lock from submission to
  its record. A cluster needs no shared filesystem, and the store keeps its atomic writes and locks.
* **Checkpoints** stay on the worker's node (its own ``results/<profile>/checkpoints``). A retried
  task resumes from there if it lands on that node, else it starts over; a worker removes a run's
  checkpoint when it hands the result back, and nothing is recorded before the whole result has come.
* **Order.** The driver hands Ray only as many tasks as the cluster runs at once, the next one in
  the queue's order as each ends. Ray puts a retried task behind every task it already holds, so
  with the whole queue handed over at the start a run whose worker died would train last, hours
  after the claim it completes (seen in the CPU campaign: a worker killed while paused went behind
  8 queued runs).
* **Failures.** A worker killed or a node lost: Ray runs the task again, up to :data:`MAX_RETRIES`
  times (``max_retries``), on the slot its worker freed, and after that the run is reported as lost
  and left unrecorded. A run that raises is recorded as ``failed``, as the local executor records
  it. Ctrl-C cancels every task (``ray.cancel``) and writes nothing more; the next call resumes from
  the nodes' checkpoints.
* **Time limit and SIGTERM.** Workers get the queue's deadline and a stop flag (a Ray actor the
  driver raises on SIGTERM): the run in progress saves its checkpoint and the task returns; tasks
  not yet handed to Ray stay with the driver, reported as not run. A flag that can no longer be read (its actor died) counts as
  raised, so no run trains on out of the queue's reach.
* **Where.** Without an address a local Ray instance starts with this machine's CPUs and GPUs (8
  GPUs: 8 runs at once); ``address`` joins a running cluster. Ray is imported only here.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import ExitStack

from .checkpoints import StopRequested
from .execute import Sources, finish_checkpoints, save_outcomes, train_task
from .queue_types import QueueResult, planned_device, queued_name
from .runs import RunStore

__all__ = ["run_on_ray", "MAX_RETRIES"]

MAX_RETRIES = 3  # times a task runs again after its worker died or its node was lost
_STOP_FLAG_EVERY = 2.0  # seconds between a worker's looks at the driver's stop flag
_LOADED: dict = {}  # data sets a worker process has loaded, by id: reused by its next tasks


def run_on_ray(plan, box, progress: bool = True, address: str | None = None, gpus_per_run: float | None = None,
               cpus_per_run: int | None = None):
    """Train ``plan``'s tasks as Ray tasks and write their outcomes into the store; ``box`` (a
    :class:`~lrstudy.queue_types.TimeBox`) says when to stop. Returns a
    :class:`~lrstudy.queue_types.QueueResult`."""
    import ray  # (in each function: ray is optional, the cluster extra; the local queue imports this module)

    cuda = planned_device(plan.tasks[0].settings) == "cuda"
    resources = {"num_gpus": gpus_per_run or 1, "num_cpus": 1} if cuda else {"num_cpus": cpus_per_run or 1}
    threads = None if cuda else resources["num_cpus"]
    started_here = not ray.is_initialized()
    if started_here:
        # ray.init installs its own SIGTERM handler; the queue's (the time box's: checkpoint, stop
        # cleanly, exit 3) is put back, so that a batch system's warning stops the queue as documented
        sigterm = signal.getsignal(signal.SIGTERM)
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        if threading.current_thread() is threading.main_thread():  # only there can a handler be set
            signal.signal(signal.SIGTERM, sigterm)
    result = QueueResult()
    try:
        flag = ray.remote(num_cpus=0)(_StopFlag).remote()
        remote = ray.remote(_train_on_worker).options(max_retries=MAX_RETRIES, retry_exceptions=False, **resources)
        submit = _Submitter(remote, flag, box.wall_deadline(), threads)
        _collect(plan.tasks, submit, box, flag, lambda: _capacity(ray.cluster_resources(), resources), progress,
                 result)
    finally:
        if started_here:
            ray.shutdown()
    return result


class _Submitter:
    """Hands one task to Ray, with the locks of its runs held by the driver until their records are
    written; a run another process stored meanwhile is left out."""

    def __init__(self, remote, flag, deadline, threads):
        self.remote, self.flag, self.deadline, self.threads = remote, flag, deadline, threads
        self.checked: set = set()

    def __call__(self, task):
        """``(ref, entry)`` for ``_collect``, or None when no run of ``task`` is left to train."""
        store = RunStore(task.settings.profile.name)
        if store.root not in self.checked:
            store.check_writable()
            self.checked.add(store.root)
        locks = ExitStack()
        for run in task.runs:
            locks.enter_context(store.locked(run.config.id))
        labelled = [(label, c) for label, c in task.labelled if store.load(c) is None]  # (another process may have)
        if not labelled:
            locks.close()
            return None
        names = [queued_name(task.settings.experiment, label, c.seed) for label, c in labelled]
        ref = self.remote.remote(task.settings, labelled, names, self.deadline, self.flag, self.threads)
        return ref, (task.settings, labelled, names, locks, store)


def _capacity(cluster: dict, resources: dict) -> int:
    """How many tasks the cluster runs at once: how many the driver lets Ray hold."""
    key, per_task = ("GPU", resources["num_gpus"]) if "num_gpus" in resources else ("CPU", resources["num_cpus"])
    return max(1, math.floor(cluster.get(key, 0) / per_task))


def _collect(tasks, submit, box, flag, capacity, progress: bool, result) -> None:
    """Keep ``capacity()`` tasks with Ray, handing over the next in order as one ends, and write each
    outcome into the store; a stop (SIGTERM, the time limit) hands over nothing more. On Ctrl-C
    cancel them all."""
    import ray
    from tqdm import tqdm

    waiting = list(tasks)[::-1]  # the queue's order, popped from the end
    bar = tqdm(total=sum(len(t.labelled) for t in waiting), desc="runs", unit="run", disable=not progress,
               dynamic_ncols=True)
    pending: dict = {}
    raised = False
    try:
        while True:
            if box() and not raised:  # SIGTERM (workers watch the deadline themselves)
                flag.set.remote()
                raised = True
            while waiting and not raised and len(pending) < capacity():
                task = waiting.pop()
                submitted = submit(task)
                if submitted is None:
                    bar.update(len(task.labelled))  # stored by another process meanwhile
                else:
                    pending[submitted[0]] = submitted[1]
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                settings, labelled, names, locks, store = pending.pop(ref)
                with locks:
                    _store_outcomes(ref, settings, labelled, names, store, bar, result)
                bar.update(len(labelled))
            running = sum(len(entry[1]) for entry in pending.values())
            bar.set_postfix(running=running, queued=sum(len(t.labelled) for t in waiting), refresh=False)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        for *_, locks, _ in pending.values():
            locks.close()
        bar.close()
        raise
    if waiting:  # stopped before these were handed over: as a task that returns at once says
        result.stopped = True
        for task in waiting:
            for _, config in task.labelled:
                result.errors[config.id] = "not run: stopped before it finished"
        bar.update(sum(len(t.labelled) for t in waiting))
    bar.close()


def _store_outcomes(ref, settings, labelled, names, store: RunStore, bar, result) -> None:
    import ray

    try:
        outcomes = ray.get(ref)
    except ray.exceptions.RayError as err:
        if isinstance(err, ray.exceptions.RayTaskError):  # the worker could not even start it (its data, say)
            why = f"not run: {type(err.cause).__name__}: {str(err.cause).splitlines()[0]}"
        else:  # the worker or its node died more than MAX_RETRIES times
            why = f"lost: {type(err).__name__} (tried {MAX_RETRIES + 1} times)"
        for (_, config), name in zip(labelled, names):
            result.errors[config.id] = why
            bar.write(f"{name}: {why}; not recorded, the next call tries it again")
        return
    result.stopped |= any(kind == "stopped" for kind, _ in outcomes)
    errors = save_outcomes(settings, store, labelled, outcomes, names, say=bar.write)
    result.errors.update(errors)


class _StopFlag:
    """Raised by the driver on SIGTERM; read by the workers."""

    def __init__(self):
        self.value = False

    def set(self) -> None:
        self.value = True

    def is_set(self) -> bool:
        return self.value


class _WorkerStop:
    """Whether a worker's run must stop now: the queue's deadline (wall clock) has passed, or the
    driver has raised its stop flag. A background thread asks the flag every ``every`` seconds: Ray
    lends out the CPUs of a task whose main thread blocks in ``ray.get`` and starts the next queued
    task on them, so looks from the training thread let more runs train at once than the machine has
    CPUs (4 on 2 CPUs, measured); looks from another thread lend nothing. Used as a context manager,
    which stops the thread (a Ray worker process goes on to its next task)."""

    def __init__(self, deadline: float | None, flag, every: float = _STOP_FLAG_EVERY):
        self.deadline, self.flag, self.every = deadline, flag, every
        self.raised, self.asked, self.done = threading.Event(), threading.Event(), threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="lrstudy-stop-flag", daemon=True)

    def _watch(self) -> None:
        import ray

        try:
            while not self.done.is_set():
                if ray.get(self.flag.is_set.remote()):
                    self.raised.set()
                    return
                self.asked.set()
                self.done.wait(self.every)
        except Exception:  # noqa: BLE001 (the flag's actor or the connection to it is gone)
            # a flag nobody can read any more is taken as raised: the run saves its checkpoint and
            # returns "stopped", which the next call resumes, instead of training on where no SIGTERM
            # can reach it
            self.raised.set()
        finally:
            self.asked.set()

    def __enter__(self) -> _WorkerStop:
        # the first answer is awaited (on a thread event, which lends nothing out): a task that starts
        # after the driver raised the flag returns at once, as before
        self.watcher.start()
        self.asked.wait()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()

    def __call__(self) -> bool:
        if self.deadline is not None and time.time() >= self.deadline:
            return True
        return self.raised.is_set()


def _train_on_worker(settings, labelled, names, deadline, flag, threads):
    """A Ray task: train one task on this worker and return its outcomes (records are the driver's
    to write). Checkpoints go to this node's store folder and are removed once the results exist."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    checkpoints = RunStore(settings.profile.name)
    try:
        with _WorkerStop(deadline, flag) as stop:
            outcomes = train_task(settings, labelled, Sources(settings, _LOADED), checkpoints, False, names, stop)
    except StopRequested:
        return [("stopped", None)] * len(labelled)
    finish_checkpoints(settings, checkpoints, labelled, outcomes)
    return outcomes
