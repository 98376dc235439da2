"""Running an experiment's set of runs through the run store, and the tables notebooks show.

An experiment module (``lrstudy.experiments.*``) lists its runs as ``(label, RunConfig)`` pairs;
:func:`execute` trains the ones the store does not have yet and returns a :class:`StudyResults`.
When every run is already stored, nothing is loaded or trained: a re-executed notebook only reads.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from .config import Profile, check_section, load_profile, resolve_device
from .data import DataUnavailable, check_shape, describe_source, is_local, load_data, source_fingerprint
from .paths import results_root
from .schedules import rescale, scale_steps
from .provenance import environment
from .runs import RunConfig, RunRecord, RunStore
from .stats import Claim, mean_ci
from .train import train

__all__ = ["Settings", "Row", "Notebook", "StudyResults", "execute", "notebook_settings", "scaled_rows",
           "build_configs", "STANDARD_KNOBS", "BATCH_SCALE"]


@dataclass(frozen=True)
class Settings:
    """What one notebook runs under: the profile, its overrides, and the notebook's own knobs."""

    notebook: str
    profile: Profile
    data: str
    device: str
    precision: str
    seeds: tuple[int, ...]
    knobs: dict = field(default_factory=dict)
    other_data: dict = field(default_factory=dict)  # {"cifar100": source, "mnist": source}

    @property
    def sources(self) -> dict[str, str]:
        """Data source of each data set a row may name."""
        return {"cifar10": self.data, **self.other_data}

    @property
    def data_id(self) -> str:
        return describe_source(self.data)[0]

    @property
    def data_name(self) -> str:
        return describe_source(self.data)[1]

    def table(self) -> pd.DataFrame:
        rows = [
            ("profile", self.profile.name, self.profile.description),
            ("data", self.data_name, f"source: {_public_source(self.data)}"),
            *[(f"data ({key})", describe_source(src)[1], f"source: {_public_source(src)}")
              for key, src in self.other_data.items()],
            ("device", self.device, "where missing runs are trained"),
            ("precision", self.precision, "bf16 = bfloat16 autocast for forward passes (CUDA only)"),
            ("seeds", ", ".join(map(str, self.seeds)), "one run per setting and seed"),
        ]
        rows += [(k, f"{v:g}" if isinstance(v, float) else str(v), "notebook setting")
                 for k, v in self.knobs.items()]
        return pd.DataFrame(rows, columns=["setting", "value", "meaning"]).set_index("setting")


def make_settings(notebook: str, profile: Profile, knobs: dict, data=None, seeds=None, device=None,
                  datasets: tuple[str, ...] = (), **other_data) -> Settings:
    """Settings from a profile plus the notebook's overrides (``None`` keeps the profile's value).
    ``datasets`` names the data sets besides CIFAR-10 the notebook uses (``"cifar100"``,
    ``"mnist"``); ``data_cifar100=...`` / ``data_mnist=...`` override their sources."""
    if seeds is None:
        seeds = profile.seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be a whole number >= 1")
    device = profile.device if device in (None, "", "None") else device
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device={device!r}; choose one of ['cpu', 'cuda', 'auto']")
    data = profile.data if data in (None, "", "None") else str(data)
    unknown = sorted(set(other_data) - {f"data_{d}" for d in datasets})
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}; this notebook takes "
                         f"{['data', *(f'data_{d}' for d in datasets)]}")
    others = {}
    for name in datasets:
        given = other_data.get(f"data_{name}")
        others[name] = getattr(profile, f"data_{name}") if given in (None, "", "None") else str(given)
    return Settings(notebook, profile, data, device, profile.precision, tuple(range(1, seeds + 1)), knobs, others)


NOTEBOOK_PARAMETERS = ("profile", "data", "data_cifar100", "data_mnist", "seeds", "device")


def check_injected_parameters(history: Sequence[str]) -> None:
    """Refuse a parameter papermill injected that no notebook of the study knows (``-p seed 3`` for
    ``seeds``): papermill itself only warns, and the run would go on with the default. ``history``
    is the kernel's executed cell sources; papermill's injected cell is the one that starts with
    the line ``# Parameters`` alone."""
    import ast

    for source in history:
        if source.split("\n", 1)[0].strip() != "# Parameters":
            continue
        names = [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)]
        unknown = [name for name in names if name not in NOTEBOOK_PARAMETERS]
        if unknown:
            raise ValueError(f"unknown notebook parameter {', '.join(map(repr, unknown))} (given with papermill -p); "
                             f"the study's notebooks take {', '.join(NOTEBOOK_PARAMETERS)}")


def _kernel_history() -> list[str]:
    """The cells executed so far in the IPython kernel we run in (none outside one)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    shell = get_ipython()
    return list(shell.user_ns.get("In", [])) if shell is not None else []


def notebook_settings(notebook: str, knobs: dict, profile: str, data=None, seeds=None, device=None,
                      datasets: tuple[str, ...] = (), **other_data) -> Settings:
    """A notebook's settings: its section of the profile, checked against ``knobs`` (the spec of
    :func:`lrstudy.config.check_section`), then the notebook's overrides; in a notebook, after
    refusing any unknown parameter papermill injected."""
    check_injected_parameters(_kernel_history())
    prof = load_profile(profile)
    values = check_section(f"profile {profile!r}, notebook {notebook!r}", prof.section(notebook), knobs)
    return make_settings(notebook, prof, values, data=data, seeds=seeds, device=device, datasets=datasets,
                         **other_data)


@dataclass(frozen=True)
class Row:
    """One setting of a paper's table at the paper's own budget (profiles scale it)."""

    iterations: int
    schedule: dict
    model: dict
    optimizer: dict
    batch_size: int
    momentum: dict | None = None
    augment: dict = field(default_factory=dict)
    normalize: str = "mean_image"
    eval_every: int | None = None  # in paper iterations; None: the notebook's `eval_every` setting
    trace_every: int | None = None  # in paper iterations; None: no training trace
    dataset: str = "cifar10"  # which of the settings' sources it trains on
    train_subset: int | None = None  # training images (a fixed class-balanced subset); None: all
    test_subset: int | None = None  # test images likewise
    eval_at: tuple[int, ...] = ()  # further evaluation steps, in paper iterations
    snapshot_at: tuple[int, ...] = ()  # steps whose test-set outputs are kept, in paper iterations
    lr_estimate: str | None = None  # track the Hessian-free estimate of the best rate ("corrected", "authors")

    def scaled(self, scale: float) -> "Row":
        """The same row with every step count multiplied by ``scale`` (schedules stretched to match),
        and a network's BN moving-average weight (``bn_momentum``, where the row sets one) divided by
        it, capped at 1: the running statistics span ~1/momentum updates, and that span must stay the
        same fraction of a shortened run, or a short run is tested with statistics still at init."""
        if scale == 1:
            return self
        model = self.model
        if "bn_momentum" in model:
            model = {**model, "bn_momentum": min(1.0, model["bn_momentum"] / scale)}
        steps = lambda n: None if n is None else scale_steps(n, scale)  # noqa: E731
        iterations = scale_steps(self.iterations, scale)
        # a point such as a cycle's end falls after the update that crosses it: round up
        within = lambda points: tuple(sorted({min(iterations, max(1, math.ceil(p * scale - 1e-9))) for p in points}))  # noqa: E731
        return dataclasses.replace(
            self, iterations=iterations, model=model, schedule=rescale(self.schedule, scale),
            momentum=None if self.momentum is None else rescale(self.momentum, scale),
            eval_every=steps(self.eval_every), trace_every=steps(self.trace_every),
            eval_at=within(self.eval_at), snapshot_at=within(self.snapshot_at),
        )


def scaled_rows(s: Settings, rows: dict[str, Row]) -> dict[str, Row]:
    """The rows at this profile's budget (its ``budget_scale`` setting, 1 if it has none), with
    batches multiplied by its ``batch_scale`` setting where a notebook has one (cheap profiles) --
    and the learning rate by the same factor (the linear scaling rule), so that a rate that is
    large for the paper's batch stays as large for the smaller one."""
    scale, batch = s.knobs.get("budget_scale", 1.0), s.knobs.get("batch_scale", 1.0)
    out = {}
    for label, row in rows.items():
        row = row.scaled(scale)
        if batch != 1:
            new_batch = max(2, round(row.batch_size * batch))
            factor = {"name": "fixed", "lr": new_batch / row.batch_size}
            row = dataclasses.replace(row, batch_size=new_batch,
                                      schedule={"name": "product", "factors": [row.schedule, factor]})
        out[label] = row
    return out


def build_configs(s: Settings, rows: dict[str, Row]) -> list[tuple[str, RunConfig]]:
    """Every run of a notebook: each row at this profile's budget, once per seed (seeds outermost,
    so an interrupted study has complete seeds first)."""
    out = []
    for seed in s.seeds:
        for label, row in scaled_rows(s, rows).items():
            out.append((label, RunConfig(
                profile=s.profile.name, data=describe_source(s.sources[row.dataset])[0], model=row.model,
                optimizer=row.optimizer,
                schedule=row.schedule, iterations=row.iterations, batch_size=row.batch_size,
                eval_every=row.eval_every or s.knobs["eval_every"], seed=seed, normalize=row.normalize,
                augment=row.augment, momentum=row.momentum, trace_every=row.trace_every,
                train_subset=row.train_subset, test_subset=row.test_subset,
                eval_at=list(row.eval_at) or None, snapshot_at=list(row.snapshot_at) or None,
                lr_estimate=row.lr_estimate,
            )))
    return out


BATCH_SCALE = {"batch_scale": ((int, float), lambda v: 0 < v <= 1,
                              "factor on every run's batch size and learning rate (linear scaling rule), "
                              "in (0, 1]; below 1 only in the cheap profiles")}
STANDARD_KNOBS = {
    "budget_scale": ((int, float), lambda v: 0 < v <= 1,
                     "fraction of the paper's iterations, in (0, 1]; schedules are stretched to match"),
    "eval_every": (int, lambda v: v >= 1, "iterations between test-set evaluations, >= 1"),
}


class Notebook:
    """The plumbing every experiment module shares: its settings under a profile, its rows at that
    profile's budget, its runs. A module makes one and exposes its methods as functions."""

    def __init__(self, name: str, rows: dict[str, Row], knobs: dict = STANDARD_KNOBS):
        self.name, self.rows, self.knobs = name, rows, knobs
        self.datasets = tuple(sorted({row.dataset for row in rows.values()} - {"cifar10"}))

    def settings(self, profile: str = "smoke", data: str | None = None, seeds: int | None = None,
                 device: str | None = None, **other_data) -> Settings:
        """The notebook's settings: the profile's values, then any explicit overrides
        (``data_cifar100=``, ``data_mnist=`` for notebooks that use those sets)."""
        return notebook_settings(self.name, self.knobs, profile, data=data, seeds=seeds, device=device,
                                 datasets=self.datasets, **other_data)

    def rows_for(self, s: Settings) -> dict[str, Row]:
        """The rows under these settings (a notebook whose profile changes more than the budget,
        e.g. the networks' depth, overrides this)."""
        return self.rows

    def schedules(self, s: Settings, labels: list[str] | None = None) -> dict[str, tuple[int, dict]]:
        """Each row's iteration budget and schedule at this profile's budget."""
        rows = scaled_rows(s, self.rows_for(s))
        return {label: (rows[label].iterations, rows[label].schedule) for label in (labels or rows)}

    def run_configs(self, s: Settings) -> list[tuple[str, RunConfig]]:
        return build_configs(s, self.rows_for(s))

    def run(self, s: Settings, progress: bool = True, train_missing: bool = True,
            fuse: int | None = None) -> "StudyResults":
        """Train (or read back) every run of the notebook; ``train_missing=False`` only reads."""
        return execute(s, self.run_configs(s), progress=progress, train_missing=train_missing, fuse=fuse)


# the columns of StudyResults.runs, present even when no run has a result yet
RUN_COLUMNS = ("setting", "seed", "run_id", "iterations", "status", "error", "final_test_acc", "final_train_acc",
               "steps_done", "train_s", "device", "commit", "code_modified", "torch", "data", "precision")


@dataclass
class StudyResults:
    """The runs of one notebook: their records, and tables built from them."""

    settings: Settings
    labels: list[str]
    configs: list[RunConfig]
    records: list[RunRecord | None]  # None where a run failed
    errors: dict = field(default_factory=dict)

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run: setting, seed, status, final accuracy and where it came from."""
        rows = []
        for label, config, record in zip(self.labels, self.configs, self.records):
            row = {"setting": label, "seed": config.seed, "run_id": config.id, "iterations": config.iterations}
            if record is None:
                error = self.errors.get(config.id, "")
                row.update(status="not run" if error.startswith("not run") else "failed", error=error)
            else:
                meta = record.meta
                row.update(
                    status=record.status,
                    final_test_acc=record.final.get("test_acc", math.nan),
                    final_train_acc=record.final.get("train_acc", math.nan),
                    steps_done=int(record.final.get("step", 0)),
                    train_s=meta.get("timings", {}).get("wall_s"),
                    device=meta.get("environment", {}).get("device"),
                    commit=meta.get("environment", {}).get("commit"),
                    code_modified=meta.get("environment", {}).get("code_modified"),
                    torch=meta.get("environment", {}).get("torch"),
                    data=meta.get("data", {}).get("data_name"),
                    precision=meta.get("precision"),
                )
            rows.append(row)
        return pd.DataFrame(rows).reindex(columns=list(dict.fromkeys([*RUN_COLUMNS, *(k for r in rows for k in r)])))

    @property
    def curves(self) -> pd.DataFrame:
        """All evaluation rows of all runs, long format, with ``setting`` and ``seed`` columns."""
        frames = [
            record.rows.assign(setting=label, seed=config.seed)
            for label, config, record in zip(self.labels, self.configs, self.records)
            if record is not None
        ]
        if not frames:  # no run has results yet: an empty table with the usual columns
            return pd.DataFrame(columns=["step", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                                         "setting", "seed"])
        return pd.concat(frames, ignore_index=True)

    def final_accuracy(self) -> dict[str, dict[int, float]]:
        """``{setting: {seed: final test accuracy}}`` over runs that produced a result."""
        out: dict[str, dict[int, float]] = {}
        for label, config, record in zip(self.labels, self.configs, self.records):
            if record is not None and len(record.rows):
                out.setdefault(label, {})[config.seed] = float(record.final["test_acc"])
        return out

    def summary(self, paper: pd.DataFrame | None = None) -> pd.DataFrame:
        """Per setting: iterations, ours as mean and 95% CI over seeds with the per-seed values,
        and the paper's number where ``paper`` (rows of ``paper_tables.csv``) has one."""
        runs = self.runs
        rows = []
        for label in dict.fromkeys(self.labels):
            mine = runs[runs.setting == label]
            accs = mine.final_test_acc.dropna().tolist() if "final_test_acc" in mine else []
            mean, low, high = mean_ci(accs)
            row = {
                "setting": label,
                "iterations": int(mine.iterations.iloc[0]),
                "ours_mean": mean,
                "ours_ci95": (f"[{low:.1f}, {high:.1f}]" if not math.isnan(low) else "n/a (1 seed)") if accs else "",
                "per_seed": ", ".join(f"{a:.1f}" for a in accs),
                "status": ", ".join(sorted(set(mine.status))),
            }
            if paper is not None:
                match = paper[paper.setting == label]
                row["paper_iterations"] = match.iterations.iloc[0] if len(match) else math.nan
                row["paper"] = float(match.value.iloc[0]) if len(match) else math.nan
            rows.append(row)
        return pd.DataFrame(rows).set_index("setting")

    def verdicts(self, claims: Sequence[Claim], measures: dict | None = None) -> pd.DataFrame:
        """Each claim judged on ``measures`` (``{label: {seed: value}}``; default: final accuracies)."""
        values = self.final_accuracy() if measures is None else measures
        return pd.DataFrame([c.judge(values) for c in claims]).set_index("claim")


def execute(settings: Settings, labelled: Sequence[tuple[str, RunConfig]], progress: bool = True,
            train_missing: bool = True, fuse: int | None = None) -> StudyResults:
    """Make sure every run exists in the store (training the missing ones), then collect them.

    Runs are trained one after another on ``settings.device``. A stored run is reused only if the
    data at hand, where it is on this machine, has the fingerprint the run recorded
    (:class:`lrstudy.runs.OtherDataError` otherwise). A run that raises is recorded as failed and the
    others still run. If the main data set (``settings.data``) is needed and cannot be had, this
    stops at once with one message naming the remedies; runs on another data set that cannot be
    downloaded are reported as not run, with the reason. Data on this machine that cannot be read
    (a broken image, images of the wrong size) is an error naming the file. With
    ``train_missing=False`` nothing is trained: missing runs are reported as not run (the scorecard).
    Up to ``fuse`` runs of one small net train as one batched computation; by default the profile's
    ``fuse`` on a CUDA device and none elsewhere (on a CPU, K=4 fused runs train at 0.49x the rate of
    one: results/bench).
    """
    store = RunStore(settings.profile.name)
    sources = _Sources(settings)
    labels, configs = [label for label, _ in labelled], [c for _, c in labelled]
    stored = {c.id: store.load(c, sources.fingerprint(c.data)) for c in configs}  # each record read once
    if not train_missing:
        errors = {i: "not run: no stored result" for i, r in stored.items() if r is None}
        return StudyResults(settings, labels, configs, [stored[c.id] for c in configs], errors)
    records, errors = [], {}
    missing = [(label, c) for label, c in labelled if stored[c.id] is None]
    if missing:
        main_data = describe_source(settings.data)[0]
        if any(c.data == main_data for _, c in missing):
            unavailable = sources.get(main_data)
            if isinstance(unavailable, DataUnavailable):
                raise DataUnavailable(str(unavailable)) from None
        store.check_writable()
        print(f"{len(missing)} of {len(labelled)} runs to train (the rest are in {_rel(store.root)}).")
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
                print(f"{name}: {record.status} after {int(final['step'])} iterations, "
                      f"test accuracy {final['test_acc']:.2f}% ({record.meta['timings']['wall_s']:.0f} s)")
            except Exception as err:  # recorded as failed by the store; go on with the others
                errors[config.id] = f"{type(err).__name__}: {err}"
                print(f"{name}: FAILED ({errors[config.id]})")
                record = None
        records.append(record)
    return StudyResults(settings, labels, configs, records, errors)


class _Sources:
    """The data sets a study trains on, keyed by data id: loaded on first need, or the reason one
    cannot be had (a download that failed); and the device, resolved (and tuned) once, before the
    first training."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.source_of = {describe_source(src)[0]: src for src in settings.sources.values()}
        self.dataset_of = {describe_source(src)[0]: key for key, src in settings.sources.items()}
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
            check_shape(data, self.dataset_of[data_id], _public_source(source))
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
    from contextlib import ExitStack

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
                    results = train_fused(configs, data, device=device, precision=settings.precision,
                                          progress=progress, description=name, checkpointer=checkpointer)
                except Exception as err:  # fall back to one-by-one training for these runs
                    print(f"{name}: fused training failed ({type(err).__name__}: {err}); training them one by one")
                    continue
                for (label, config), result in zip(chunk, results):
                    store.save(config, result.status, result.rows,
                               _info(settings, config, label, started, result, device, data,
                                     sources.source_of[config.data], "fused"))
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
        "notebook": settings.notebook,
        "started_at": started,
        "precision": settings.precision,
        "diverged_at": result.diverged_at,
        "timings": result.timings,
        "environment": environment(device),
        "step_mode": step_mode,  # how the training step ran: "eager", "compiled" or "fused"
        "data": {"source": _public_source(source), **data.describe()},
    }
    if result.snapshots:
        info["snapshots"] = result.snapshots
    return info


def _train_one(config: RunConfig, data, source: str, device, settings: Settings, label: str, progress: bool,
               name: str, checkpointer=None):
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    compiled = _compiles(settings, device)
    result = train(config, data, device=device, precision=settings.precision, progress=progress, description=name,
                   checkpointer=checkpointer, compile_model=compiled)
    info = _info(settings, config, label, started, result, device, data, source, "compiled" if compiled else "eager")
    return result.status, result.rows, info


def _compiles(settings: Settings, device) -> bool:
    """Whether runs go through ``torch.compile``: only on CUDA (on a CPU the Caffe net trains at
    20.7 it/s compiled vs 22.2 eager with 2 threads, 10.7 vs 12.8 with 1; measured 2026-11-30)."""
    return settings.profile.compile and torch.device(device).type == "cuda"


def _public_source(source: str) -> str:
    """A data source as recorded: a name as given, a path by its last component only (where the
    files lay on one machine says nothing about what they were, and may be private)."""
    return Path(source).name if ("/" in source or "\\" in source) else source


def _rel(path) -> str:
    try:
        return str(path.relative_to(results_root().parent))
    except ValueError:
        return str(path)
