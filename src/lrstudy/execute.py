"""Training tasks into the run store: the data each needs, runs trained one by one or in fused
groups, failures recorded and reported. The run queue (:mod:`lrstudy.runqueue`) decides what
trains and in which order; a data set is loaded only once some run on it trains.

The unit of training is a *task*: one run, or a group of runs trained as one computation
(:mod:`lrstudy.fused`). :func:`train_task` trains a task and returns each run's outcome without
writing the store; :func:`save_outcomes` writes them. Both executors of the run queue
(:mod:`lrstudy.runqueue`) use the pair: the local one in one process, the Ray one with training on
a worker and the store written by the driver alone.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from . import compiling
from .checkpoints import StopRequested
from .config import resolve_device
from .data import DataSource, DataUnavailable, check_shape, load_data
from .fused import fusable, fusable_key, group_id, train_fused
from .provenance import environment
from .runs import FinishedRecordExists, RunConfig, RunStore
from .train import TF32, train

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["Sources", "group_tasks", "default_fuse", "train_task", "save_outcomes",
           "train_task_into_store", "prepare_store", "finish_checkpoints"]

Labelled = Sequence[tuple[str, RunConfig]]
# A run's outcome: ("record", (status, rows, info)), ("failed", error), ("not run", reason) or
# ("stopped", None) -- the last only from a worker of the Ray executor, which cannot raise it across.
Outcome = tuple[str, object]


def default_fuse(settings: Settings) -> int:
    """How many runs may train as one computation: the profile's ``fuse`` on CUDA, one elsewhere."""
    return settings.profile.fuse if resolve_device(settings.device).type == "cuda" else 1


def prepare_store(settings: Settings, store: RunStore, sources: Sources, missing: Labelled) -> None:
    """Before the first run trains: stop at once if the main data set (CIFAR-10) is needed and
    cannot be had, and if the store cannot be written."""
    main_data = settings.data["cifar10"].id
    if any(c.data == main_data for _, c in missing):
        unavailable = sources.get(main_data)
        if isinstance(unavailable, DataUnavailable):
            raise DataUnavailable(str(unavailable)) from None
    store.check_writable()


def group_tasks(items: Sequence, fuse: int, config: Callable = lambda item: item[1],
                scope: Callable = lambda item: None) -> list[list]:
    """The ``items`` (runs, e.g. ``(label, config)`` pairs) as units of training, in order: runs that
    can share one batched computation (:func:`lrstudy.fused.fusable_key`, within one ``scope``) in
    groups of up to ``fuse``, each group at the place of its first run; every other run alone."""
    tasks: list[list] = []
    open_groups: dict[tuple, list] = {}
    for item in items:
        if fuse > 1 and fusable(config(item)):
            key = (scope(item), fusable_key(config(item)))
            group = open_groups.get(key)
            if group is not None and len(group) < fuse:
                group.append(item)
                continue
            open_groups[key] = [item]
            tasks.append(open_groups[key])
        else:
            tasks.append([item])
    return tasks


def train_task(settings: Settings, task: Labelled, sources: Sources, checkpoints: RunStore, progress: bool,
               names: Sequence[str], stop: Callable[[], bool] | None = None) -> list[Outcome]:
    """Train one task -- a run, or a group of runs trained as one computation -- and return each
    run's outcome, in order, without writing any record. Checkpoints go to ``checkpoints``' folder
    (on this machine), every ``checkpoint_every`` updates and when ``stop()`` turns true, which
    raises :class:`~lrstudy.checkpoints.StopRequested` once the checkpoint is saved. A group that
    fails as a whole is trained again run by one; a run that raises is a ``"failed"`` outcome."""
    if stop is not None and stop():
        raise StopRequested("the queue is stopping; this task did not start")
    if len(task) > 1:
        outcomes = _train_group(settings, task, sources, checkpoints, progress, stop)
        if outcomes is not None:
            return outcomes
    return [_train_single(settings, label, config, sources, checkpoints, progress, name, stop)
            for (label, config), name in zip(task, names)]


def save_outcomes(settings: Settings, store: RunStore, task: Labelled, outcomes: Sequence[Outcome],
                  names: Sequence[str], say: Callable[[str], None] = print) -> dict[str, str]:
    """Write each finished or failed run of a task into the store (the caller holds its locks) and
    report it in one line; returns the reason each run has no record, by run id."""
    errors = {}
    for (label, config), (kind, value), name in zip(task, outcomes, names):
        if kind not in ("record", "failed"):
            errors[config.id] = value or "not run: stopped before it finished"
            if kind == "not run":
                say(f"{name}: {value}")
            continue
        try:
            if kind == "record":
                status, rows, info = value
                record = store.save(config, status, rows, info)
                final = record.final
                fused = " (fused)" if str(info.get("step_mode", "")).startswith("fused") else ""
                say(f"{name}: {record.status}, {int(final['step'])} iterations, {final['test_acc']:.1f}%, "
                    f"{record.meta['timings']['wall_s']:.0f} s{fused}")
            else:
                store.save_failure(config, value)
                errors[config.id] = value
                say(f"{name}: FAILED ({value})")
        except FinishedRecordExists as kept:  # a writer that took no lock stored it meanwhile: that one stays
            say(f"{name}: {kept}")
    return errors


def train_task_into_store(settings: Settings, task: Labelled, store: RunStore, sources: Sources, progress: bool,
                          names: Sequence[str], stop: Callable[[], bool] | None = None) -> dict[str, str]:
    """Train a task in this process and store its runs, holding every member's lock meanwhile (a
    run another process stored while we waited is read, not trained); each run's checkpoint goes
    once its record is saved. Returns the reason each run has no record, by run id."""
    with ExitStack() as locks:
        for _, config in task:
            locks.enter_context(store.locked(config.id))
        keep = [i for i, (_, c) in enumerate(task) if store.load(c, sources.fingerprint(c.data)) is None]
        task, names = [task[i] for i in keep], [names[i] for i in keep]
        if not task:
            return {}
        outcomes = train_task(settings, task, sources, store, progress, names, stop)
        errors = save_outcomes(settings, store, task, outcomes, names)
        finish_checkpoints(settings, store, task, outcomes)
    return errors


def finish_checkpoints(settings: Settings, checkpoints: RunStore, task: Labelled, outcomes: Sequence[Outcome]) -> None:
    """Remove the checkpoints of a task's runs that have a result (and of its group, once all do)."""
    finished = [c for (_, c), (kind, _) in zip(task, outcomes) if kind == "record"]
    for config in finished:
        checkpoints.checkpointer(config, settings.profile.checkpoint_every).finish()
    if len(finished) == len(task) > 1:
        checkpoints.checkpointer(group_id([c for _, c in task]), settings.profile.checkpoint_every).finish()


class Sources:
    """The data sets a study trains on, keyed by data id: loaded on first need, or the reason one
    cannot be had (a download that failed); and the device, resolved (and tuned) once, before the
    first training. ``loaded`` may be shared between the Sources of several experiments, so that a
    data set they share is loaded once."""

    def __init__(self, settings: Settings, loaded: dict | None = None):
        self.settings = settings
        self.source_of = {source.id: source for source in settings.data.values()}
        self.dataset_of = {source.id: name for name, source in settings.data.items()}
        self.loaded: dict[str, object] = {} if loaded is None else loaded
        self.device = None

    def fingerprint(self, data_id: str) -> str | None:
        """The fingerprint of the data at hand under this id, if it is on this machine (read from the
        decode cache's index after the first decode; found once per source), or the known one of
        a data set named by its label (cifar10-jpeg); None otherwise: nothing is then checked."""
        data = self.loaded.get(data_id)
        if data is None:
            return self.source_of[data_id].fingerprint
        return None if isinstance(data, DataUnavailable) else data.fingerprint

    def data(self, data_id: str):
        """The loaded data set, or the :class:`DataUnavailable` of a download that failed. Data on
        this machine that cannot be read, or whose images the study's networks cannot take, raises."""
        if data_id not in self.loaded:
            source = self.source_of[data_id]
            try:
                data = load_data(source.source)
            except DataUnavailable as err:
                if source.local:
                    raise
                self.loaded[data_id] = err
                return err
            check_shape(data, self.dataset_of[data_id], source.name)
            self.loaded[data_id] = data
        return self.loaded[data_id]

    def get(self, data_id: str):
        """:meth:`data`, with the training device resolved first."""
        if self.device is None:
            self.device = resolve_device(self.settings.device)
            if self.device.type == "cuda":
                torch.backends.cudnn.benchmark = True  # static shapes: let cuDNN pick its fastest kernels
        return self.data(data_id)


def _train_single(settings: Settings, label: str, config: RunConfig, sources: Sources, checkpoints: RunStore,
                  progress: bool, name: str, stop) -> Outcome:
    if stop is not None and stop():
        raise StopRequested("the queue is stopping; this run did not start")
    data = sources.get(config.data)
    if isinstance(data, DataUnavailable):
        return "not run", f"not run: {str(data).splitlines()[0]}"
    checkpointer = checkpoints.checkpointer(config, settings.profile.checkpoint_every)
    checkpointer.stop = stop
    try:
        return "record", _train_one(config, data, sources.source_of[config.data], sources.device, settings, label,
                                    progress, name, checkpointer)
    except Exception as err:  # recorded as failed; the other runs go on
        return "failed", f"{type(err).__name__}: {err}"


def _train_group(settings: Settings, task: Labelled, sources: Sources, checkpoints: RunStore, progress: bool,
                 stop) -> list[Outcome] | None:
    """A group's outcomes, or None where it cannot train as one (its data cannot be had, or the
    fused computation raised): its runs are then trained one by one."""
    data = sources.get(task[0][1].data)
    if isinstance(data, DataUnavailable):
        return None  # reported run by run
    device, configs = sources.device, [c for _, c in task]
    name = f"fused group of {len(task)} ({task[0][0]} ...)"
    checkpointer = checkpoints.checkpointer(group_id(configs), settings.profile.checkpoint_every)
    checkpointer.stop = stop
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        results = _with_compile_fallback(
            _step_mode(settings, device, configs[0]) != "eager",
            lambda compiled: train_fused(configs, data, device=device, precision=configs[0].precision_name, progress=progress,
                                         description=name, checkpointer=checkpointer, compile_model=compiled))
    except Exception as err:  # fall back to one-by-one training for these runs
        print(f"{name}: fused training failed ({type(err).__name__}: {err}); training them one by one")
        return None
    source = sources.source_of[configs[0].data]
    return [("record", (result.status, result.rows,
                        _info(settings, config, label, started, result, device, data, source)))
            for (label, config), result in zip(task, results)]


def _info(settings: Settings, config: RunConfig, label: str, started: str, result, device, data,
          source: DataSource) -> dict:
    info = {
        "label": label,
        "notebook": settings.experiment,  # a record's key for its experiment (one experiment = one notebook)
        "started_at": started,
        "precision": config.precision_name,
        "tf32": TF32,  # (set for every run: lrstudy.train.run_numerics)
        "diverged_at": result.diverged_at,
        "timings": result.timings,
        "environment": environment(device),
        # how the training step ran: "eager", "compiled", "reduce-overhead" (captured), "fused", "fused-compiled"
        "step_mode": result.step_mode,
        "data": {"source": source.name, **data.describe()},
    }
    if result.snapshots:
        info["snapshots"] = result.snapshots
    return info


def _train_one(config: RunConfig, data, source: DataSource, device, settings: Settings, label: str, progress: bool,
               name: str, checkpointer=None):
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    mode = _step_mode(settings, device, config)
    result = _with_compile_fallback(
        mode != "eager",
        lambda compiled: train(config, data, device=device, precision=config.precision_name, progress=progress,
                               description=name, checkpointer=checkpointer, step_mode=mode if compiled else "eager"))
    info = _info(settings, config, label, started, result, device, data, source)
    return result.status, result.rows, info


def _step_mode(settings: Settings, device, config: RunConfig) -> str:
    """How a run's step runs (:data:`lrstudy.train.STEP_MODES`): compiled only on CUDA (on a CPU
    compiling is slower: the Caffe net trains at 20.7 it/s compiled vs 22.2 eager with 2 threads,
    10.7 vs 12.8 with 1) and only where torch.compile can build its kernels (else one warning, and
    eager); captured whole (``reduce-overhead``) for the networks the profile's ``capture`` names."""
    if not (settings.profile.compile and torch.device(device).type == "cuda" and compiling.available()):
        return "eager"
    return "reduce-overhead" if config.model["name"] in settings.profile.capture else "compile"


def _with_compile_fallback(compiled: bool, training):
    """``training(compiled)``; if compiling fails (a missing compiler or header, a backend error),
    compile is switched off for the rest of the process and the run is trained again, eagerly.
    (Compiling happens at a run's first forward pass, before any checkpoint.)"""
    if not compiled:
        return training(False)
    try:
        return training(True)
    except Exception as err:
        if not compiling.is_compile_failure(err):
            raise
        compiling.give_up(err)
        return training(False)
