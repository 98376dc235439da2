"""The run store: every training run, keyed by its full configuration, kept on disk.

A run is identified by a hash of everything that decides what it computes (model, data, schedule,
optimizer, budget, batch size, augmentation, evaluation cadence, seed, profile). Its results are two
files under ``results/<profile>/runs/``:

* ``<id>.csv``  -- the evaluation rows (see :mod:`lrstudy.train`);
* ``<id>.json`` -- the configuration, status, timings, code version, package versions, device and
  data source, plus the CSV's SHA-256.

Both are written atomically (temporary file, fsync, rename), the JSON last, so a run either has a
complete record or none. The JSON verifies itself (``record_sha256``, a digest of its canonical form
without that field) and the CSV (``csv_sha256``): a record edited by hand counts as altered.

A stored run is reused only for the data it was trained on: where the data at hand is known, its
fingerprint must equal the one the record names, or the store refuses (:class:`OtherDataError`)
rather than mix results of two data sets under one id or overwrite either. Asking for a run that has a valid record returns it from disk; anything
else (no record, a record whose CSV is missing, altered or malformed, a run that failed) is trained
again -- from its last checkpoint (``results/<profile>/checkpoints/<id>.pt``) if it has one.

Training a run holds a lock on it (``results/<profile>/locks/<id>.lock``), so two processes working
on the same store (two ``make reproduce`` at once) never train or write the same run together: the
second waits and then reads the first one's result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
import torch

from .checkpoints import Checkpointer
from .files import atomic_write, file_lock
from .models import MODELS
from .optim import OPTIMIZERS
from .paths import results_root
from .policy import MAX_STEPS
from .schedule_specs import make_schedule

__all__ = ["RunConfig", "RunRecord", "RunStore", "FINAL_STATUSES", "OtherDataError", "FinishedRecordExists",
           "record_digest", "verify_record", "origin_of", "stored_status", "UNVERIFIED", "MAX_SEEDS"]

MAX_SEEDS = 1000  # seeds per setting: far above any profile's; more is a typo that would plan forever
FORMAT_VERSION = 1  # bump when the meaning of a stored run changes, so old records are not reused
FINAL_STATUSES = ("finished", "diverged")  # records that are results; "failed" ones are redone
# RunConfig fields added after the first results were stored (left out of the id while unset)
_ADDED_LATER = ("momentum", "trace_every", "train_subset", "test_subset", "eval_at", "snapshot_at", "lr_estimate",
                "precision")
MAX_BATCH = 10**6  # images per batch: above any data set the study reads
TINY_RATE = 1e-12  # a peak learning rate below this trains nothing (a warning, not an error)
REQUIRED_COLUMNS = {"step", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"}  # of every run's CSV


class OtherDataError(RuntimeError):
    """A stored run was trained on other images than the data given now; it is never reused."""


class FinishedRecordExists(RuntimeError):
    """A save found a finished record of the run already stored (another writer got there first):
    a finished record is never overwritten, so the new result is not saved."""


def record_digest(meta: dict) -> str:
    """SHA-256 of a record's metadata in canonical JSON, without the digest field itself."""
    body = {k: v for k, v in meta.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


UNVERIFIED = "imported (unverified origin)"  # the origin of a record imported without a key that vouches for it


def origin_of(meta: Mapping) -> str:
    """A stored record's origin as pages show it: "here" (trained into this store), "imported
    (unverified origin)", or "imported (verified: ...)"."""
    imported = meta.get("imported") if isinstance(meta, Mapping) else None
    if not isinstance(imported, Mapping):
        return "here"
    origin = str(imported.get("origin", UNVERIFIED))
    return origin if origin == UNVERIFIED else f"imported ({origin})"


def verify_record(config: "RunConfig", meta, read_csv: Callable[[], bytes], read_snapshots: Callable[[], bytes],
                  path: Path | None = None) -> tuple["RunRecord | None", str]:
    """Check a record -- its metadata, and its CSV and snapshot files as ``read_*`` give them (an
    OSError: missing) -- against ``config``: ``(record, "ok")``, or ``(None, why)`` as
    :meth:`RunStore.inspect` says it."""
    if not isinstance(meta, dict):
        return None, "unreadable"
    if meta.get("status") == "failed":
        return None, "failed"
    if meta.get("config") != config.to_dict():
        return None, "other configuration"
    try:
        intact = meta.get("record_sha256") == record_digest(meta)
    except ValueError:  # NaN or infinity edited into the metadata
        intact = False
    if not intact or meta.get("status") not in FINAL_STATUSES:
        return None, "metadata altered"
    try:
        raw = read_csv()
    except OSError:
        return None, "csv altered"
    if meta.get("csv_sha256") != hashlib.sha256(raw).hexdigest():
        return None, "csv altered"
    try:
        rows = pd.read_csv(io.BytesIO(raw))
    except ValueError:
        return None, "csv malformed"
    if len(rows) == 0 or not REQUIRED_COLUMNS <= set(rows.columns):
        return None, "csv malformed"
    if config.snapshot_at and meta.get("status") == "finished":
        try:
            blob = read_snapshots()
        except OSError:
            return None, "snapshots altered"
        if hashlib.sha256(blob).hexdigest() != meta.get("snapshots_sha256"):
            return None, "snapshots altered"
    return RunRecord(meta, rows, path), "ok"


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's results."""

    profile: str
    data: str  # the data source's id (lrstudy.data.DataSource.id), not a machine-specific path
    model: dict
    optimizer: dict
    schedule: dict
    iterations: int
    batch_size: int
    eval_every: int
    seed: int
    normalize: str = "mean_image"
    augment: dict = field(default_factory=dict)
    momentum: dict | None = None  # a momentum schedule's spec; None: the optimizer's fixed momentum
    trace_every: int | None = None  # also record training loss/accuracy every this many updates
    train_subset: int | None = None  # train on this many images of a fixed class-balanced subset
    test_subset: int | None = None  # evaluate on this many images of a fixed class-balanced subset
    eval_at: list[int] | None = None  # further steps to evaluate at (e.g. the ends of SGDR's cycles)
    snapshot_at: list[int] | None = None  # steps at which the test-set softmax outputs are kept
    # track super-convergence's Hessian-free estimate of the best rate: "authors" (their smoothing,
    # started at 0.1) or "corrected" (started at 0 with a bias correction); None: not tracked
    lr_estimate: str | None = None
    # the forward passes' precision: None is float32 (so fp32 runs keep the ids they had before
    # precision was part of a run's identity); "bf16" is bfloat16 autocast. A bf16 run is another
    # run than its fp32 twin, never taken for it.
    precision: str | None = None

    def __post_init__(self):
        # Canonical forms, so that equal runs hash equally (0.001 vs 1e-3, 2000 vs 2000.0).
        object.__setattr__(self, "schedule", make_schedule(**self.schedule).spec())
        if self.momentum is not None:
            object.__setattr__(self, "momentum", make_schedule(**self.momentum).spec())
        for name in ("trace_every", "train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"run config: {name}={value!r} must be a whole number >= 1 or None")
        if self.precision == "fp32":
            object.__setattr__(self, "precision", None)
        if self.precision not in (None, "bf16"):
            raise ValueError(f"run config: precision={self.precision!r} must be 'fp32' or 'bf16'")
        if self.lr_estimate not in (None, "authors", "corrected"):
            raise ValueError(f"run config: lr_estimate={self.lr_estimate!r} must be 'authors', 'corrected' or None")
        for name in ("eval_at", "snapshot_at"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, (list, tuple)) or any(
                    isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= self.iterations for v in value):
                raise ValueError(f"run config: {name}={value!r} must be a list of steps in [1, iterations]")
            object.__setattr__(self, name, sorted(set(value)))
        for name in ("iterations", "batch_size", "eval_every", "seed"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or value != int(value)):
                raise ValueError(f"run config: {name}={value!r} must be a whole number")
            object.__setattr__(self, name, int(value))
        for name, low, high in (("iterations", 1, MAX_STEPS), ("batch_size", 1, MAX_BATCH), ("eval_every", 1, MAX_STEPS),
                                ("seed", 0, MAX_SEEDS)):
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"run config: {name}={getattr(self, name)} must be in [{low}, {high:g}]")

        for what, spec, known in (("model", self.model, MODELS), ("optimizer", self.optimizer, OPTIMIZERS)):
            if not isinstance(spec, dict) or spec.get("name") not in known:
                name = spec.get("name") if isinstance(spec, dict) else spec
                raise ValueError(f"run config: unknown {what} {name!r}; known: {sorted(known)}")
        self._warn_if_extreme()

    def _warn_if_extreme(self) -> None:
        """Legal values can still make a run that shows nothing (a budget scaled to one update, a
        rate scaled towards zero): say so once, before it trains."""
        if self.iterations == 1:
            warnings.warn("run config: iterations=1 -- a single update shows nothing of a schedule", stacklevel=3)
        schedule = make_schedule(**self.schedule)
        peak = max(schedule(step) for step in range(0, self.iterations, max(1, self.iterations // 64)))
        if 0 <= peak < TINY_RATE:
            warnings.warn(f"run config: the schedule's largest rate is {peak:.3g}; at rates this small the "
                          "network does not train", stacklevel=3)

    def to_dict(self) -> dict:
        d = {"format": FORMAT_VERSION, **dataclasses.asdict(self)}
        for key in _ADDED_LATER:  # absent at their default, so runs stored before them keep their ids
            if d[key] is None:
                del d[key]
        return d

    @property
    def precision_name(self) -> str:
        """The precision as records and pages name it: "fp32" or "bf16"."""
        return self.precision or "fp32"

    @property
    def id(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        d.pop("format", None)
        return cls(**d)


@dataclass
class RunRecord:
    """A stored run: its metadata (the JSON) and its evaluation rows."""

    meta: dict
    rows: pd.DataFrame

    @property
    def status(self) -> str:
        return self.meta["status"]

    path: Path | None = None  # the CSV's path, to find side files (snapshots)

    @property
    def final(self) -> dict:
        """The last evaluation row (the result at the end of the run's budget)."""
        return self.rows.iloc[-1].to_dict() if len(self.rows) else {}

    def snapshots(self) -> dict:
        """The test-set softmax outputs kept at ``snapshot_at``: ``{"steps", "probs", "labels"}``
        (``probs`` is steps x images x classes, float16)."""
        if not self.meta.get("snapshots_sha256") or self.path is None:
            return {}
        return torch.load(self.path.with_suffix(".snapshots.pt"), weights_only=True)


class RunStore:
    """Runs of one profile, under ``<results>/<profile>/runs`` unless ``root`` is given."""

    def __init__(self, profile: str, root: str | os.PathLike | None = None):
        self.profile = profile
        self.root = Path(root) if root is not None else results_root() / profile / "runs"

    def paths(self, run_id: str) -> tuple[Path, Path]:
        return self.root / f"{run_id}.csv", self.root / f"{run_id}.json"

    def checkpointer(self, config: RunConfig | str, every: int, keep: bool = False) -> Checkpointer:
        """Where a run's checkpoints go (next to the store, never committed); ``config`` may also be
        the id of a group of runs trained together (:func:`lrstudy.fused.group_id`)."""
        run_id = config if isinstance(config, str) else config.id
        return Checkpointer(self.root.parent / "checkpoints" / f"{run_id}.pt", run_id, every, keep)

    def locked(self, run_id: str):
        """Hold the run's lock (a file lock shared by every process using this store)."""
        return file_lock(self.root.parent / "locks" / f"{run_id}.lock",
                         f"run {run_id} is being trained by another process; waiting for it")

    def load(self, config: RunConfig, fingerprint: str | None = None) -> RunRecord | None:
        """The stored record of this run if it is complete and intact, else None. With the
        ``fingerprint`` of the data at hand, a record of a run on other images raises
        :class:`OtherDataError` instead of being reused."""
        record, _ = self.inspect(config)
        if record is not None and fingerprint is not None:
            recorded = record.meta.get("data", {}).get("data_fingerprint")
            if recorded is not None and recorded != fingerprint:
                raise OtherDataError(
                    f"run {config.id} ({record.meta.get('label', 'no label')}) in {self.root} was trained on other "
                    f"data: its images have fingerprint {recorded}, the data given now has {fingerprint}. "
                    "A result is never reused for other data, nor overwritten: give the data it was trained on, "
                    "keep the new results apart (make RESULTS=<folder>, or LRSTUDY_RESULTS), or move that "
                    "record's files away to train it again.")
        return record

    def inspect(self, config: RunConfig) -> tuple[RunRecord | None, str]:
        """``(record, "ok")`` for a complete, intact record; else ``(None, why)``: "no record",
        "failed", "unreadable", "other configuration", "metadata altered", "csv altered",
        "csv malformed" or "snapshots altered"."""
        csv_path, json_path = self.paths(config.id)
        try:
            meta = json.loads(json_path.read_text())
        except FileNotFoundError:
            return None, "no record"
        except (OSError, ValueError):
            return None, "unreadable"
        return verify_record(config, meta, csv_path.read_bytes, csv_path.with_suffix(".snapshots.pt").read_bytes,
                             csv_path)

    def check_writable(self) -> None:
        """Fail now, before any training, if results could not be saved here."""
        probe = self.root / f".write-test-{os.getpid()}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise OSError(err.errno, f"the run store {self.root} is not writable ({err.strerror or err}); "
                          "nothing was trained. Make it writable, or point RESULTS= (LRSTUDY_RESULTS) "
                          "at another folder") from None

    def seal(self) -> list[str]:
        """Add the metadata digest to records written before records carried one, after checking
        each: its configuration re-hashes to its file name and its CSV matches its checksum.
        Returns the ids sealed; a record that fails a check is left as it is and named."""
        sealed = []
        for json_path in sorted(self.root.glob("*.json")):
            try:
                meta = json.loads(json_path.read_text())
                if not isinstance(meta, dict):
                    raise TypeError(f"a JSON {type(meta).__name__}, not an object")
                if "record_sha256" in meta:
                    continue
                config = RunConfig.from_dict(meta["config"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                raise ValueError(f"{json_path}: not a run record ({type(err).__name__}: {err}); move it out of the "
                                 f"store; {len(sealed)} records were sealed before it") from None
            raw = json_path.with_suffix(".csv").read_bytes()
            if config.id != json_path.stem or hashlib.sha256(raw).hexdigest() != meta.get("csv_sha256"):
                raise ValueError(f"{json_path}: its configuration or CSV does not match its record; not sealed")
            meta["record_sha256"] = record_digest(meta)
            atomic_write(json_path, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
            sealed.append(config.id)
        return sealed

    def has_failed(self, config: RunConfig) -> bool:
        """Whether the last attempt at this run raised (its record says "failed")."""
        try:
            return json.loads(self.paths(config.id)[1].read_text()).get("status") == "failed"
        except (OSError, ValueError, AttributeError):
            return False

    def save(self, config: RunConfig, status: str, rows: list[dict], info: dict) -> RunRecord:
        """Write a run's rows, its snapshots if any (``info["snapshots"]``), and its metadata last.
        The caller holds the run's lock (:meth:`locked`); a finished record found here even so (a
        writer that took no lock) is never overwritten: :class:`FinishedRecordExists`."""
        csv_path, json_path = self.paths(config.id)
        existing, _ = self.inspect(config)
        if existing is not None:
            raise FinishedRecordExists(
                f"run {config.id} ({existing.meta.get('label', 'no label')}) already has a {existing.status} record in "
                f"{self.root}, saved {existing.meta.get('saved_at', 'at an unknown time')}; a finished record is never "
                "overwritten, so this result was not saved")
        frame = pd.DataFrame(rows)
        raw = frame.to_csv(index=False, float_format="%.10g").encode()
        atomic_write(csv_path, raw)
        info = dict(info)
        snapshots = info.pop("snapshots", None)
        if snapshots:
            buffer = io.BytesIO()
            torch.save(snapshots, buffer)
            atomic_write(csv_path.with_suffix(".snapshots.pt"), buffer.getvalue())
            info["snapshots_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
        meta = {
            "id": config.id,
            "status": status,
            "config": config.to_dict(),
            **info,
            "csv_sha256": hashlib.sha256(raw).hexdigest(),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        meta = _finite(meta)
        meta["record_sha256"] = record_digest(meta)
        atomic_write(json_path, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
        return RunRecord(meta, frame, csv_path)

    def save_failure(self, config: RunConfig, error: str) -> RunRecord:
        """Record that a run raised ``error``: it is tried again the next time it is asked for."""
        return self.save(config, "failed", [], {"error": error})

    def get_or_run(self, config: RunConfig, run: Callable[[RunConfig], tuple[str, list[dict], dict]],
                   checkpointer: Checkpointer | None = None, fingerprint: str | None = None) -> RunRecord:
        """The stored run, or the result of ``run(config)`` -- ``(status, rows, info)`` -- saved.

        An exception inside ``run`` is stored as a ``"failed"`` record (with the error) and
        re-raised; failed runs are tried again the next time they are asked for. The run's
        checkpoint (if ``checkpointer`` is given) is removed only once its record is saved.
        """
        record = self.load(config, fingerprint)
        if record is not None:
            return record
        with self.locked(config.id):
            record = self.load(config, fingerprint)  # another process may have finished it while we waited
            if record is not None:
                return record
            try:
                status, rows, info = run(config)
            except Exception as err:
                self.save_failure(config, f"{type(err).__name__}: {err}")
                raise
            record = self.save(config, status, rows, info)
            if checkpointer is not None:
                checkpointer.finish()
            return record


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def stored_status(store: RunStore, config: RunConfig, fingerprint: str | None = None) -> str:
    """A run's state in the store: finished, diverged, failed, altered (a record that no longer
    matches its checksums: it will be trained again), missing -- or, given the ``fingerprint`` of
    the data at hand, "other data": a result trained on other images under the same data label,
    which is neither reused nor overwritten."""
    record, why = store.inspect(config)
    if record is not None:
        data = record.meta.get("data")
        recorded = data.get("data_fingerprint") if isinstance(data, dict) else None
        if fingerprint is not None and recorded is not None and recorded != fingerprint:
            return "other data"
        return record.status
    return why if why == "failed" else "missing" if why in ("no record", "other configuration") else "altered"
