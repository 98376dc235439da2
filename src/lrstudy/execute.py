"""Running a set of runs through the run store: the data each needs, runs trained one by one or in
fused groups, failures recorded and reported.

:func:`execute` makes sure every run of a list exists in the store, training the missing ones, and
returns their records. A data set is loaded only if some run on it is missing, so a notebook whose
runs are all stored only reads.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from . import compiling
from .config import resolve_device
from .data import DataUnavailable, check_shape, describe_source, is_local, load_data, source_fingerprint
from .paths import results_root
from .provenance import environment
from .runs import RunConfig, RunRecord, RunStore
from .train import train

if TYPE_CHECKING:
    from .study import Settings

__all__ = ["execute", "public_source"]


def execute(settings: Settings, labelled: Sequence[tuple[str, RunConfig]], progress: bool = True,
            train_missing: bool | None = None, fuse: int | None = None) -> tuple[list[RunRecord | None], dict[str, str]]:
    """Each run's record, in order (None where there is none), and the reason for each missing one,
    by run id -- after training every run the store lacks.

    Runs are trained one after another on ``settings.device``. A stored run is reused only if the
    data at hand, where it is on this machine, has the fingerprint the run recorded
    (:class:`lrstudy.runs.OtherDataError` otherwise). A run that raises is recorded as failed and the
    others still run. If CIFAR-10 (``settings.data["cifar10"]``) is needed and cannot be had, this
    stops at once with one message naming the remedies; runs on another data set that cannot be
    downloaded are reported as not run, with the reason. Data on this machine that cannot be read
    (a broken image, images of the wrong size) is an error naming the file. With
    ``train_missing=False`` nothing is trained: missing runs are reported as not run yet (the
    scorecard; and every notebook under ``LRSTUDY_TRAIN=no``, which ``make reproduce TRAIN=no`` sets
    to render stored runs on a machine that should not train the rest). Up to ``fuse`` runs of one
    small net train as one batched computation; by default the profile's ``fuse`` on a CUDA device and none elsewhere (on a
    CPU, K=4 fused runs train at 0.49x the rate of one: results/bench).
    """
    store = RunStore(settings.profile.name)
    sources = _Sources(settings)
    stored = {c.id: store.load(c, sources.fingerprint(c.data)) for _, c in labelled}  # each record read once
    if train_missing is None:
        train_missing = os.environ.get("LRSTUDY_TRAIN", "yes") != "no"
    if not train_missing:
        errors = {i: "not run yet: no stored result (nothing is trained here)" for i, r in stored.items() if r is None}
        return [stored[c.id] for _, c in labelled], errors
    records, errors = [], {}
    missing = [(label, c) for label, c in labelled if stored[c.id] is None]
    if missing:
        main_data = describe_source(settings.data["cifar10"])[0]
        if any(c.data == main_data for _, c in missing):
            unavailable = sources.get(main_data)
            if isinstance(unavailable, DataUnavailable):
                raise DataUnavailable(str(unavailable)) from None
        store.check_writable()
        print(f"{len(missing)} of {len(labelled)} runs to train (the rest are in {_relative(store.root)}).")
    done = 0
    if fuse is None:
        fuse = settings.profile.fuse if resolve_device(settings.device).type == "cuda" else 1
    if fuse > 1 and len(missing) > 1:
        done = _train_fused_groups(settings, store, missing, sources, progress, fuse)
    for label, config in labelled:
        # (a fused group may have stored it since)
        record = stored[config.id] or store.load(config, sources.fingerprint(config.data))
        if record is None:
            data, device = sources.get(config.data), sources.device
            done += 1
            name = f"[{done}/{len(missing)}] {label} seed {config.seed}"
            if isinstance(data, DataUnavailable):
                errors[config.id] = f"not run: {str(data).splitlines()[0]}"
                print(f"{name}: {errors[config.id]}")
                records.append(None)
                continue
            checkpointer = store.checkpointer(config, settings.profile.checkpoint_every)
            try:
                source = sources.source_of[config.data]
                record = store.get_or_run(
                    config, lambda c: _train_one(c, data, source, device, settings, label, progress, name,
                                                 checkpointer),
                    checkpointer=checkpointer, fingerprint=data.fingerprint,
                )
                final = record.final
                print(f"{name}: {record.status}, {int(final['step'])} iterations, "
                      f"{final['test_acc']:.1f}%, {record.meta['timings']['wall_s']:.0f} s")
            except Exception as err:  # recorded as failed by the store; go on with the others
                errors[config.id] = f"{type(err).__name__}: {err}"
                print(f"{name}: FAILED ({errors[config.id]})")
                record = None
        records.append(record)
    return records, errors


class _Sources:
    """The data sets a study trains on, keyed by data id: loaded on first need, or the reason one
    cannot be had (a download that failed); and the device, resolved (and tuned) once, before the
    first training."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.source_of = {describe_source(src)[0]: src for src in settings.data.values()}
        self.dataset_of = {describe_source(src)[0]: name for name, src in settings.data.items()}
        self.loaded: dict[str, object] = {}
        self.device = None

    def fingerprint(self, data_id: str) -> str | None:
        """The fingerprint of the data at hand under this id, if it is on this machine (read from the
        decode cache's index after the first decode); None if it is not: nothing is then checked."""
        data = self.loaded.get(data_id)
        if data is None:
            return source_fingerprint(self.source_of[data_id])
        return None if isinstance(data, DataUnavailable) else data.fingerprint

    def data(self, data_id: str):
        """The loaded data set, or the :class:`DataUnavailable` of a download that failed. Data on
        this machine that cannot be read, or whose images the study's networks cannot take, raises."""
        if data_id not in self.loaded:
            source = self.source_of[data_id]
            try:
                data = load_data(source)
            except DataUnavailable as err:
                if is_local(source):
                    raise
                self.loaded[data_id] = err
                return err
            check_shape(data, self.dataset_of[data_id], public_source(source))
            self.loaded[data_id] = data
        return self.loaded[data_id]

    def get(self, data_id: str):
        """:meth:`data`, with the training device resolved first."""
        if self.device is None:
            self.device = resolve_device(self.settings.device)
            if self.device.type == "cuda":
                torch.backends.cudnn.benchmark = True  # static shapes: let cuDNN pick its fastest kernels
        return self.data(data_id)


def _train_fused_groups(settings: Settings, store: RunStore, missing, sources: _Sources, progress: bool,
                        fuse: int) -> int:
    """Train the ``missing`` runs that can share one batched computation (:mod:`lrstudy.fused`) in groups of
    up to ``fuse``, holding every member's lock; the rest are left to the one-by-one loop.
    A group is checkpointed as a whole; its checkpoint goes once every member's record is saved.
    Returns how many ran."""
    from .fused import fusable, fusable_key, group_id, train_fused

    groups: dict[str, list[tuple[str, RunConfig]]] = {}
    for label, config in missing:
        if fusable(config):
            groups.setdefault(fusable_key(config), []).append((label, config))
    count = 0
    for members in groups.values():
        for start in range(0, len(members), fuse):
            chunk = members[start:start + fuse]
            if len(chunk) < 2:
                continue
            data = sources.get(chunk[0][1].data)
            if isinstance(data, DataUnavailable):
                continue  # the one-by-one loop reports these as not run
            device = sources.device
            with ExitStack() as stack:
                for _, config in chunk:
                    stack.enter_context(store.locked(config.id))
                chunk = [(label, c) for label, c in chunk if store.load(c, data.fingerprint) is None]
                if not chunk:
                    continue
                name = f"fused group of {len(chunk)} ({chunk[0][0]} ...)"
                started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                configs = [c for _, c in chunk]
                checkpointer = store.checkpointer(group_id(configs), settings.profile.checkpoint_every)
                try:
                    results = _with_compile_fallback(
                        _step_mode(settings, device, configs[0]) != "eager",
                        lambda compiled: train_fused(configs, data, device=device, precision=settings.precision,
                                                     progress=progress, description=name, checkpointer=checkpointer,
                                                     compile_model=compiled))
                except Exception as err:  # fall back to one-by-one training for these runs
                    print(f"{name}: fused training failed ({type(err).__name__}: {err}); training them one by one")
                    continue
                for (label, config), result in zip(chunk, results):
                    store.save(config, result.status, result.rows,
                               _info(settings, config, label, started, result, device, data,
                                     sources.source_of[config.data], result.step_mode))
                    final = result.rows[-1]
                    print(f"[fused] {label} seed {config.seed}: {result.status} after {final['step']} iterations, "
                          f"test accuracy {final['test_acc']:.2f}%")
                checkpointer.finish()
                count += len(chunk)
    return count


def _info(settings: Settings, config: RunConfig, label: str, started: str, result, device, data, source: str,
          step_mode: str) -> dict:
    info = {
        "label": label,
        "notebook": settings.experiment,  # stored records name it as they always have (one experiment = one notebook)
        "started_at": started,
        "precision": settings.precision,
        "diverged_at": result.diverged_at,
        "timings": result.timings,
        "environment": environment(device),
        # how the training step ran: "eager", "compiled", "reduce-overhead" (captured), "fused", "fused-compiled"
        "step_mode": step_mode,
        "data": {"source": public_source(source), **data.describe()},
    }
    if result.snapshots:
        info["snapshots"] = result.snapshots
    return info


def _train_one(config: RunConfig, data, source: str, device, settings: Settings, label: str, progress: bool,
               name: str, checkpointer=None):
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    mode = _step_mode(settings, device, config)
    result = _with_compile_fallback(
        mode != "eager",
        lambda compiled: train(config, data, device=device, precision=settings.precision, progress=progress,
                               description=name, checkpointer=checkpointer, step_mode=mode if compiled else "eager"))
    info = _info(settings, config, label, started, result, device, data, source, result.step_mode)
    return result.status, result.rows, info


def _step_mode(settings: Settings, device, config: RunConfig) -> str:
    """How a run's step runs (:data:`lrstudy.train.STEP_MODES`): compiled only on CUDA (on a CPU the
    Caffe net trains at 20.7 it/s compiled vs 22.2 eager with 2 threads, 10.7 vs 12.8 with 1;
    measured 2026-11-30) and only where torch.compile can build its kernels (else one warning, and
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


def public_source(source: str) -> str:
    """A data source as recorded: a name as given, a path by its last component only (where the
    files lay on one machine says nothing about what they were, and may be private)."""
    return Path(source).name if ("/" in source or "\\" in source) else source


def _relative(path) -> str:
    try:
        return str(path.relative_to(results_root().parent))
    except ValueError:
        return str(path)
