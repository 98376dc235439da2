"""Moving runs between machines: one ``.tar.gz`` of finished records (and, if asked, the checkpoints
of unfinished runs), and its import into this machine's run store.

    python -m lrstudy export runs.tar.gz --profile fast all [--with-checkpoints]
    python -m lrstudy run all --profile fast --time-limit 8h --export runs.tar.gz
    python -m lrstudy import runs.tar.gz

An archive holds ``manifest.json`` (what it holds, each file's SHA-256, and an HMAC signature where
the exporter held a key), ``runs/<profile>/<id>.csv``, ``.json`` (and ``.snapshots.pt``),
``checkpoints/<profile>/<id>.pt`` and ``extra/...`` (a GPU window's benchmark and logs).

Import treats the archive as untrusted input. Before anything is read into memory, every member must
be a plain file or folder under those names (no absolute path, no ``.`` or ``..``, no link) and
within its kind's size limit (:data:`MEMBER_LIMITS`, :data:`TOTAL_LIMIT`); the manifest must have
the expected types; its name must be a plain folder name, and every extra file must land inside
``imported/<name>/``. Every record must verify as the store verifies its own (metadata digest, CSV
and snapshot checksums, a configuration that re-hashes to the record's id -- recomputed from the
configuration, not taken from the file name -- and a final status); every checkpoint its digest and
run id. A record whose id this store already holds as a finished record with other rows is a
conflict: a finished record is never overwritten. Any problem refuses the whole archive, naming every
member at fault, and nothing is written. Records are written holding each run's lock, the lock
training takes, and re-checked under it.

The checksums catch accidents, not forgery: anyone can edit a record and recompute them. So every
imported record is marked in its metadata (``imported``) as of *unverified origin* -- and pages and
the scorecard say so -- unless the archive's manifest carries an HMAC-SHA256 signature made with a
key this machine holds (:data:`KEY_ENV` or :data:`KEY_FILE_ENV`); a signature that does not match
that key refuses the archive.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import tarfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Collection, Mapping, Sequence

from .checkpoints import read_checkpoint
from .data import KNOWN_TREES
from .files import atomic_write
from .gpu_window import read_output
from .paths import results_root
from .runs import FINAL_STATUSES, UNVERIFIED, RunConfig, RunStore, record_digest, verify_record

__all__ = ["export_runs", "import_archive", "ARCHIVE_FORMAT", "MEMBER_LIMITS", "TOTAL_LIMIT", "KEY_ENV",
           "KEY_FILE_ENV"]

ARCHIVE_FORMAT = 1
_RECORD = re.compile(r"runs/(?P<profile>[a-z]+)/(?P<id>[0-9a-f]{16})\.(?P<kind>csv|json|snapshots\.pt)")
_CHECKPOINT = re.compile(r"checkpoints/(?P<profile>[a-z]+)/(?P<id>(?:fused-)?[0-9a-f]{16})\.pt")
_EXTRA = re.compile(r"extra/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_NAME = re.compile(r"[A-Za-z0-9._-]+")
# The most bytes one member of each kind may hold, and the whole archive unpacked: checked on the tar
# headers, before a member is read (a few MiB of gzip can claim gigabytes of zeros).
MEMBER_LIMITS = {"manifest.json": 16 * 2**20, ".json": 16 * 2**20, ".csv": 64 * 2**20,
                 ".snapshots.pt": 512 * 2**20, "checkpoints/": 1024 * 2**20, "extra/": 64 * 2**20}
TOTAL_LIMIT = 4 * 2**30
# The key that signs and verifies archives: the key itself, or a file holding it
KEY_ENV, KEY_FILE_ENV = "LRSTUDY_ARCHIVE_KEY", "LRSTUDY_ARCHIVE_KEY_FILE"


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
    key = archive_key()
    if key is not None:
        manifest["signature"] = _signature(manifest, key)
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
            + ("; signed with this machine's key" if key is not None else "")
            + (f"; {unsealed} records have no digest yet: `python -m lrstudy seal --profile <profile>` first"
               if unsealed else ""))


def _size(files: Mapping[str, bytes]) -> int:
    return sum(len(v) + 1024 for v in files.values())  # (tar headers; gzip only shrinks what it keeps)


def _unsealed(json_path: Path) -> bool:
    try:
        return "record_sha256" not in json.loads(json_path.read_text())
    except (OSError, ValueError):
        return False


def archive_key() -> bytes | None:
    """The signing key this machine holds: ``$LRSTUDY_ARCHIVE_KEY``, else the contents of the file
    ``$LRSTUDY_ARCHIVE_KEY_FILE``; None if neither is set."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    path = os.environ.get(KEY_FILE_ENV)
    if not path:
        return None
    try:
        key = Path(path).expanduser().read_bytes().strip()
    except OSError as err:
        raise ValueError(f"{KEY_FILE_ENV}={path}: cannot read the key ({err.strerror or err})") from None
    if not key:
        raise ValueError(f"{KEY_FILE_ENV}={path}: the file is empty")
    return key


def _signature(manifest: Mapping, key: bytes) -> str:
    """HMAC-SHA256 of the manifest's canonical JSON without its signature: the manifest names every
    member's SHA-256, so this signs the whole archive."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def _origin(path: Path, manifest: Mapping) -> dict:
    """What import records about where a record came from: the archive, and whether a key this
    machine holds vouches for it (else the origin is unverified). A signature that does not match
    the key held refuses the archive."""
    key, signature = archive_key(), manifest.get("signature")
    if key is not None and signature is not None:
        if not hmac.compare_digest(str(signature), _signature(manifest, key)):
            raise ValueError(f"refused {path}, nothing was written: manifest.json: its signature does not match "
                             f"the key in ${KEY_ENV if os.environ.get(KEY_ENV) else KEY_FILE_ENV} (altered, or "
                             "signed with another key)")
        verified = "verified: HMAC-SHA256 with the key this machine holds"
    else:
        verified = None
    return {"archive": path.name, "archive_name": manifest["name"], "archive_created": manifest.get("created"),
            "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "origin": verified or UNVERIFIED}


def _marked(meta_bytes: bytes, origin: dict) -> bytes:
    """A record's JSON with ``imported`` set to ``origin`` (whatever the archive claimed there) and
    its digest recomputed; its configuration, and so its run id, do not change."""
    meta = json.loads(meta_bytes)
    meta["imported"] = origin
    meta["record_sha256"] = record_digest(meta)
    return (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode()


def import_archive(path: str | Path, *, profiles: Collection[str]) -> str:
    """Merge an archive into this machine's run store (``results/``), after checking all of it --
    among other things that every record belongs to one of ``profiles`` (the profiles that exist);
    raises ValueError naming every problem, having written nothing, if any check fails.
    Returns a one-line summary."""
    path = Path(path)
    files, manifest = _read_members(path)
    origin = _origin(path, manifest)
    problems: list[str] = []
    records, checkpoints, extras = _sort_members(files, problems, profiles)
    configs = {key: _verified_config(*key, parts, problems, profiles) for key, parts in sorted(records.items())}
    writes = [*_record_writes(records, configs, origin, problems)[0], *_checkpoint_writes(records, checkpoints, problems),
              *_extra_writes(extras, manifest["name"], problems)]
    _refuse_if(problems, path)
    with ExitStack() as locks:
        # Then again holding every record's lock, in one order (two imports never wait on each other
        # in a cycle): the lock training takes, so that no run is trained and imported at once, and
        # what is checked here stays true until it is written.
        for profile, run_id in sorted(configs):
            locks.enter_context(RunStore(profile).locked(run_id))
        record_writes, kept, replaced = _record_writes(records, configs, origin, problems)
        writes = [*record_writes, *_checkpoint_writes(records, checkpoints, problems),
                  *_extra_writes(extras, manifest["name"], problems)]
        _refuse_if(problems, path)
        for target, blob in writes:
            atomic_write(target, blob)
    added = sum(t.suffix == ".json" and t.parent.name == "runs" for t, _ in writes)
    name = manifest["name"]
    return (f"imported {added} records ({replaced} replacing failed or damaged ones), "
            f"{sum(t.suffix == '.pt' and t.parent.name == 'checkpoints' for t, _ in writes)} checkpoints and "
            f"{sum('imported' in t.parts for t, _ in writes)} other files"
            + (f" (under {results_root() / 'imported' / name})" if extras else "")
            + (f"; {kept} records were already here" if kept else "")
            + (f"; origin: {origin['origin']}" if added else ""))


def _refuse_if(problems: list[str], path: Path) -> None:
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ValueError(f"refused {path}, nothing was written:\n  {shown}")


def _record_writes(records, configs, origin: dict, problems: list[str]):
    """The files of each verified record that this store lacks, each record's JSON after its other
    files (marked with its ``origin``); a finished record here with other rows is a problem."""
    writes: list[tuple[Path, bytes]] = []
    kept = replaced = 0
    prints: dict[str, dict[str, set]] = {}
    for (profile, run_id), parts in sorted(records.items()):
        config = configs[profile, run_id]
        if config is None:
            continue
        store = RunStore(profile)
        if profile not in prints:
            prints[profile] = _fingerprints_by_label(store)
        other = _other_data(config, json.loads(parts["json"]), prints[profile])
        if other:
            problems.append(f"runs/{profile}/{run_id}: {other}")
            continue
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
        writes.append((csv_path, parts["csv"]))
        if "snapshots.pt" in parts:
            writes.append((csv_path.with_suffix(".snapshots.pt"), parts["snapshots.pt"]))
        writes.append((json_path, _marked(parts["json"], origin)))
    return writes, kept, replaced


def _fingerprints_by_label(store: RunStore) -> dict[str, set]:
    """``{data label: the fingerprints its finished records here name}``."""
    out: dict[str, set] = {}
    for path in store.root.glob("*.json"):
        try:
            meta = json.loads(path.read_text())
            label, print_ = meta["config"]["data"], meta["data"]["data_fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if meta.get("status") in FINAL_STATUSES and isinstance(label, str) and isinstance(print_, str):
            out.setdefault(label, set()).add(print_)
    return out


def _other_data(config: RunConfig, meta: Mapping, prints: Mapping[str, set]) -> str | None:
    """Why a record was trained on other images than its data label names -- the images a label
    we know stands for, or those this store's records of that label were trained on -- or None."""
    data = meta.get("data")
    recorded = data.get("data_fingerprint") if isinstance(data, Mapping) else None
    if not isinstance(recorded, str):
        return None
    known = KNOWN_TREES.get(config.data)
    if known and recorded != known[1]:
        return (f"trained on images with fingerprint {recorded}, not on the {known[0]} ({known[1]}) its data label "
                f"{config.data!r} names; a result is never filed under other data")
    here = prints.get(config.data, set())
    if here and recorded not in here:
        return (f"trained on images with fingerprint {recorded}; this store's runs of {config.data!r} were trained on "
                f"{', '.join(sorted(here))}: other images under the same name, never mixed")
    return None


def _checkpoint_writes(records, checkpoints, problems: list[str]) -> list[tuple[Path, bytes]]:
    writes = []
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
    return writes


def _extra_writes(extras: Mapping[str, bytes], name: str, problems: list[str]) -> list[tuple[Path, bytes]]:
    """Where each extra file goes: under ``imported/<name>/``, and nowhere else (the path resolved)."""
    writes = []
    folder = (results_root() / "imported" / name).resolve()
    for member, blob in sorted(extras.items()):
        target = (folder / member.removeprefix("extra/")).resolve()
        if not target.is_relative_to(folder) or target == folder:
            problems.append(f"{member}: would be written outside {folder}")
        elif target.exists() and (not target.is_file() or target.read_bytes() != blob):
            problems.append(f"{member}: {target} exists with other content")
        elif not target.exists():
            writes.append((target, blob))
    return writes


def _member_limit(name: str) -> int:
    for kind, limit in MEMBER_LIMITS.items():
        if name == kind or (name.startswith(kind) if kind.endswith("/") else name.endswith(kind)):
            return limit
    return MEMBER_LIMITS["extra/"]


def _name_problem(name: str) -> str | None:
    """Why a member's name is unsafe, or None."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if "\\" in name or any(part in (".", "..") for part in name.split("/")):
        return "a path out of the archive (a '.' or '..' in it)"
    return None


def _read_members(path: Path) -> tuple[dict[str, bytes], dict]:
    """Every member's bytes, after refusing any member that is not a plain file or folder with a
    relative name inside the archive (a link, a device, ``/etc/...``, ``../...``), appears twice, or
    is larger than its kind may be -- all checked on the headers, before a member is read. A folder
    is a GPU window's output, read by :func:`lrstudy.gpu_window.read_output`."""
    if path.is_dir():
        return read_output(path)
    problems, members, total = [], {}, 0
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name
                if why := _name_problem(name):
                    problems.append(f"{name}: {why}")
                elif member.issym() or member.islnk():
                    problems.append(f"{name}: a link (to {member.linkname})")
                elif member.isdir():
                    continue
                elif not member.isfile():
                    problems.append(f"{name}: not a plain file")
                elif name in members:
                    problems.append(f"{name}: given twice")
                elif member.size > _member_limit(name):
                    problems.append(f"{name}: {member.size} bytes, over the {_member_limit(name)} a member of "
                                    "its kind may hold")
                elif total + member.size > TOTAL_LIMIT:
                    problems.append(f"{name}: the archive holds more than {TOTAL_LIMIT} bytes unpacked")
                else:
                    total += member.size
                    members[name] = member
            if problems:
                raise ValueError(f"refused {path}, nothing was written:\n  " + "\n  ".join(problems))
            files = {name: tar.extractfile(member).read() for name, member in members.items()}
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"refused {path}: not a readable .tar.gz ({err})") from None
    try:
        manifest = json.loads(files.pop("manifest.json"))
    except (KeyError, ValueError):
        raise ValueError(f"refused {path}: no readable manifest.json (not an archive of `python -m lrstudy export`)") \
            from None
    _check_manifest(path, manifest)
    sums = manifest["files"]
    altered = [k for k, v in files.items() if sums.get(k) != hashlib.sha256(v).hexdigest()]
    missing = [k for k in sums if k not in files]
    if altered or missing:
        raise ValueError(f"refused {path}, nothing was written: files differ from the manifest's checksums "
                         f"({', '.join((altered + missing)[:5])})")
    return files, manifest


def _check_manifest(path: Path, manifest) -> None:
    """The manifest's fields have the types import relies on, or one message names the field."""
    def refuse(why: str):
        raise ValueError(f"refused {path}, nothing was written: manifest.json: {why}")

    if not isinstance(manifest, dict):
        refuse(f"a JSON {type(manifest).__name__}, not an object")
    if manifest.get("format") != ARCHIVE_FORMAT:
        refuse(f"format {manifest.get('format')!r} is not {ARCHIVE_FORMAT}")
    name = manifest.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        refuse(f"name {name!r} must be a folder name of letters, digits, '.', '_' or '-' (not '.' or '..')")
    files = manifest.get("files")
    if not isinstance(files, dict):
        refuse(f"'files' is a {type(files).__name__}, not an object of file names and SHA-256 digests")
    for member, digest in files.items():
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            refuse(f"'files' gives {member!r} the digest {digest!r}, not a SHA-256 in hex")
    for field in ("created", "signature"):
        if field in manifest and not isinstance(manifest[field], str):
            refuse(f"'{field}' is a {type(manifest[field]).__name__}, not a string")


def _sort_members(files: Mapping[str, bytes], problems: list[str], profiles: Collection[str]):
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
        if profile not in profiles:
            problems.append(f"profile {profile!r}: not one of {list(profiles)}")
    return records, checkpoints, extras


def _verified_config(profile: str, run_id: str, parts: Mapping[str, bytes], problems: list[str],
                     profiles: Collection[str]) -> RunConfig | None:
    """The configuration of an archived record if the record verifies, else None (and why, in
    ``problems``). The id is recomputed from the configuration: a record renamed after its
    configuration was edited names another id than its own."""
    where = f"runs/{profile}/{run_id}"
    if profile not in profiles:
        return None
    if "json" not in parts or "csv" not in parts:
        problems.append(f"{where}: the record needs both its .json and its .csv")
        return None
    try:
        meta = json.loads(parts["json"])
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
            raise TypeError("its metadata must be an object holding a 'config' object")
        config = RunConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:
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
    if record.status not in FINAL_STATUSES:
        problems.append(f"{where}: status {record.status!r} is not a result")
        return None
    return config
