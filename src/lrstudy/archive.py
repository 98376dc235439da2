"""Moving runs between machines: one ``.tar.gz`` of finished records (and, if asked, the checkpoints
of unfinished runs), and its import into this machine's run store.

    python -m lrstudy export runs.tar.gz --profile fast all [--with-checkpoints]
    python -m lrstudy run all --profile fast --time-limit 8h --export runs.tar.gz
    python -m lrstudy import runs.tar.gz

An archive holds ``manifest.json`` (what it holds, each file's SHA-256), ``runs/<profile>/<id>.csv``,
``.json`` (and ``.snapshots.pt``), ``checkpoints/<profile>/<id>.pt`` and ``extra/...`` (a GPU
window's benchmark and logs). Import trusts none of it: every member must be a plain file or
folder under those names (no absolute path, no ``..``, no link); every record must verify as the
store verifies its own (metadata digest, CSV and snapshot checksums, a configuration that re-hashes
to the record's id, a final status); every checkpoint its digest and run id. A record whose id this
store already holds as a finished record with other rows is a conflict: a finished record is never
overwritten. Any problem refuses the whole archive, with every problem listed, and nothing is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

from .checkpoints import atomic_write, read_checkpoint
from .config import PROFILES
from .paths import results_root
from .runs import RunConfig, RunStore, verify_record

__all__ = ["export_runs", "import_archive", "ARCHIVE_FORMAT"]

ARCHIVE_FORMAT = 1
_RECORD = re.compile(r"runs/(?P<profile>[a-z]+)/(?P<id>[0-9a-f]{16})\.(?P<kind>csv|json|snapshots\.pt)")
_CHECKPOINT = re.compile(r"checkpoints/(?P<profile>[a-z]+)/(?P<id>(?:fused-)?[0-9a-f]{16})\.pt")
_EXTRA = re.compile(r"extra/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_NAME = re.compile(r"[A-Za-z0-9._-]+")


def export_runs(path: str | Path, runs: Sequence, with_checkpoints: bool = False, checkpoint_ids: Sequence[str] = (),
                extras: Mapping[str, bytes] | None = None, name: str | None = None,
                size_limit: int | None = None) -> str:
    """Write the finished records of ``runs`` (:class:`~lrstudy.runqueue.QueuedRun`) into the
    archive ``path``; with ``with_checkpoints`` also the checkpoints of those still unfinished (and
    of the fused groups ``checkpoint_ids`` names), as long as the archive stays under
    ``size_limit`` bytes (records are never left out: a record too large is an error). ``extras``
    (relative path: content) go under ``extra/``. Returns a one-line summary."""
    files: dict[str, bytes] = {f"extra/{k}": v for k, v in (extras or {}).items()}
    records = unsealed = 0
    waiting = []
    for run in runs:
        store = RunStore(run.config.profile)
        csv_path, json_path = store.paths(run.config.id)
        record, why = store.inspect(run.config)
        if record is not None:
            records += 1
            folder = f"runs/{run.config.profile}/{run.config.id}"
            files[f"{folder}.csv"], files[f"{folder}.json"] = csv_path.read_bytes(), json_path.read_bytes()
            if record.meta.get("snapshots_sha256"):
                files[f"{folder}.snapshots.pt"] = csv_path.with_suffix(".snapshots.pt").read_bytes()
            continue
        unsealed += why == "metadata altered" and _unsealed(json_path)
        waiting.append((run.config.profile, run.config.id))
    skipped = 0
    if with_checkpoints:
        groups = [(runs[0].config.profile, group) for group in checkpoint_ids] if runs else []
        for profile, run_id in [*waiting, *groups]:
            checkpoint = RunStore(profile).checkpointer(run_id, 1).path
            if not checkpoint.exists():
                continue
            blob = checkpoint.read_bytes()
            if size_limit is not None and _size(files) + len(blob) + 1024 > size_limit:
                skipped += 1
                continue
            files[f"checkpoints/{profile}/{run_id}.pt"] = blob
    if size_limit is not None and _size(files) > size_limit:
        raise ValueError(f"the records alone take {_size(files)} bytes, over the archive's limit of {size_limit}")
    manifest = {"format": ARCHIVE_FORMAT, "name": name or Path(path).name.split(".")[0],
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(files.items())}}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, data in [("manifest.json", json.dumps(manifest, indent=1).encode()), *sorted(files.items())]:
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
    atomic_write(Path(path), buffer.getvalue())
    checkpoints = sum(k.startswith("checkpoints/") for k in files)
    return (f"exported {records} records, {checkpoints} checkpoints and {len(extras or {})} other files to {path} "
            f"({len(buffer.getvalue()) / 2**20:.1f} MiB)"
            + (f"; {skipped} checkpoints left out to stay under {size_limit / 2**20:.0f} MiB" if skipped else "")
            + (f"; {unsealed} records have no digest yet: `python -m lrstudy seal --profile <profile>` first"
               if unsealed else ""))


def _size(files: Mapping[str, bytes]) -> int:
    return sum(len(v) + 1024 for v in files.values())  # (tar headers; gzip only shrinks what it keeps)


def _unsealed(json_path: Path) -> bool:
    try:
        return "record_sha256" not in json.loads(json_path.read_text())
    except (OSError, ValueError):
        return False


def import_archive(path: str | Path) -> str:
    """Merge an archive into this machine's run store (``results/``), after checking all of it;
    raises ValueError naming every problem, having written nothing, if any check fails.
    Returns a one-line summary."""
    files, manifest = _read_members(Path(path))
    problems: list[str] = []
    records, checkpoints, extras = _sort_members(files, problems)
    writes: list[tuple[Path, bytes]] = []  # in order: each record's JSON after its other files
    kept = replaced = 0
    for (profile, run_id), parts in sorted(records.items()):
        config = _verified_config(profile, run_id, parts, problems)
        if config is None:
            continue
        store = RunStore(profile)
        local, why = store.inspect(config)
        csv_path, json_path = store.paths(run_id)
        if local is not None:
            if csv_path.read_bytes() == parts["csv"]:
                kept += 1  # the same rows are already here
            else:
                problems.append(f"run {run_id} ({local.meta.get('label', '?')}): this store already holds it as "
                                f"{local.status}, with other rows; a finished record is never overwritten (move "
                                f"{csv_path.with_suffix('.*')} away to take the archive's)")
            continue
        replaced += why not in ("no record",)
        writes += [(csv_path, parts["csv"])]
        if "snapshots.pt" in parts:
            writes.append((csv_path.with_suffix(".snapshots.pt"), parts["snapshots.pt"]))
        writes.append((json_path, parts["json"]))
    for (profile, run_id), blob in sorted(checkpoints.items()):
        target = RunStore(profile).checkpointer(run_id, 1).path
        problem = read_checkpoint(blob, run_id)[1]
        if problem:
            problems.append(f"checkpoints/{profile}/{run_id}.pt: {problem}")
        elif (profile, run_id) in records or RunStore(profile).paths(run_id)[1].exists():
            continue  # the run has a record (here or in the archive): its checkpoint is of no use
        elif target.exists() and target.read_bytes() != blob:
            problems.append(f"checkpoint {run_id}: this machine has another checkpoint of it ({target}); "
                            "finish or remove that one first")
        elif not target.exists():
            writes.append((target, blob))
    name = manifest.get("name", "")
    if extras and not (isinstance(name, str) and _NAME.fullmatch(name)):
        problems.append(f"manifest.json: name {name!r} must be letters, digits, '.', '_' or '-'")
    for member, blob in sorted(extras.items()):
        target = results_root() / "imported" / str(name) / member.removeprefix("extra/")
        if target.exists() and target.read_bytes() != blob:
            problems.append(f"{member}: {target} exists with other content")
        elif not target.exists():
            writes.append((target, blob))
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ValueError(f"refused {path}, nothing was written:\n  {shown}")
    for target, blob in writes:
        atomic_write(target, blob)
    added = sum(t.suffix == ".json" and t.parent.name == "runs" for t, _ in writes)
    return (f"imported {added} records ({replaced} replacing failed or damaged ones), "
            f"{sum(t.suffix == '.pt' and t.parent.name == 'checkpoints' for t, _ in writes)} checkpoints and "
            f"{sum('imported' in t.parts for t, _ in writes)} other files"
            + (f" (under {results_root() / 'imported' / str(name)})" if extras else "")
            + (f"; {kept} records were already here" if kept else ""))


def _read_members(path: Path) -> tuple[dict[str, bytes], dict]:
    """Every member's bytes, after refusing any member that is not a plain file or folder with a
    relative name inside the archive (a link, a device, ``/etc/...``, ``../...``) or appears twice.
    A folder is a GPU window's output, read by :func:`lrstudy.gpu_window.read_output`."""
    if path.is_dir():
        from .gpu_window import read_output

        return read_output(path)
    problems, files = [], {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar.getmembers():
                name = member.name
                parts = PurePosixPath(name).parts
                if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
                    problems.append(f"{name}: an absolute path")
                elif ".." in parts or "\\" in name:
                    problems.append(f"{name}: a path out of the archive")
                elif member.issym() or member.islnk():
                    problems.append(f"{name}: a link (to {member.linkname})")
                elif member.isdir():
                    continue
                elif not member.isfile():
                    problems.append(f"{name}: not a plain file")
                elif name in files:
                    problems.append(f"{name}: given twice")
                else:
                    files[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"refused {path}: not a readable .tar.gz ({err})") from None
    if problems:
        raise ValueError(f"refused {path}, nothing was written:\n  " + "\n  ".join(problems))
    try:
        manifest = json.loads(files.pop("manifest.json"))
    except (KeyError, ValueError):
        raise ValueError(f"refused {path}: no readable manifest.json (not an archive of `python -m lrstudy export`)") \
            from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
        raise ValueError(f"refused {path}: manifest format {manifest.get('format') if isinstance(manifest, dict) else '?'}"
                         f" is not {ARCHIVE_FORMAT}")
    sums = manifest.get("files", {})
    altered = [k for k, v in files.items() if sums.get(k) != hashlib.sha256(v).hexdigest()]
    missing = [k for k in sums if k not in files]
    if altered or missing:
        raise ValueError(f"refused {path}, nothing was written: files differ from the manifest's checksums "
                         f"({', '.join((altered + missing)[:5])})")
    return files, manifest


def _sort_members(files: Mapping[str, bytes], problems: list[str]):
    """Records (their parts by kind), checkpoints and extras, by name; any other name is a problem."""
    records: dict[tuple[str, str], dict[str, bytes]] = {}
    checkpoints: dict[tuple[str, str], bytes] = {}
    extras: dict[str, bytes] = {}
    for name, blob in files.items():
        if match := _RECORD.fullmatch(name):
            records.setdefault((match["profile"], match["id"]), {})[match["kind"]] = blob
        elif match := _CHECKPOINT.fullmatch(name):
            checkpoints[match["profile"], match["id"]] = blob
        elif _EXTRA.fullmatch(name):
            extras[name] = blob
        else:
            problems.append(f"{name}: not a file an archive of runs holds")
    for profile, _ in [*records, *checkpoints]:
        if profile not in PROFILES:
            problems.append(f"profile {profile!r}: not one of {list(PROFILES)}")
    return records, checkpoints, extras


def _verified_config(profile: str, run_id: str, parts: Mapping[str, bytes], problems: list[str]) -> RunConfig | None:
    """The configuration of an archived record if the record verifies, else None (and why, in
    ``problems``)."""
    where = f"runs/{profile}/{run_id}"
    if "json" not in parts or "csv" not in parts:
        problems.append(f"{where}: the record needs both its .json and its .csv")
        return None
    try:
        meta = json.loads(parts["json"])
        config = RunConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as err:
        problems.append(f"{where}.json: not a record ({type(err).__name__}: {err})")
        return None
    if config.id != run_id or meta.get("id") != run_id or config.profile != profile:
        problems.append(f"{where}.json: its configuration hashes to {config.id} (profile {config.profile}), "
                        f"not to its name")
        return None
    if "record_sha256" not in meta:
        problems.append(f"{where}.json: no digest (a record from before digests): seal its store where it was "
                        "made (`python -m lrstudy seal`), then export again")
        return None

    def part(kind):
        if kind not in parts:
            raise FileNotFoundError(kind)
        return parts[kind]
    record, why = verify_record(config, meta, lambda: part("csv"), lambda: part("snapshots.pt"))
    if record is None:
        problems.append(f"{where}: {why}")
        return None
    return config


