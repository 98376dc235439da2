"""Export and import of runs: the round trip gives the same records, and an archive that is tampered
with, unsafe, or in conflict with the local store is refused with a message and writes nothing."""

import hashlib
import io
import json
import tarfile

import pytest
import torch

from lrstudy.__main__ import main
from lrstudy.archive import export_runs, import_archive
from lrstudy.config import PROFILES
from lrstudy.queue_selection import select_runs
from lrstudy.runs import RunStore, record_digest

ROWS = [{"step": s, "epoch": s / 10, "lr": 0.01, "train_loss": 2.0 - s / 100, "train_acc": 10.0 + s,
         "test_loss": 2.1, "test_acc": 11.0 + s} for s in (0, 10, 20)]


@pytest.fixture
def archive(scratch):
    """An archive of two finished records (one with snapshots) and one unfinished run's checkpoint."""
    runs = select_runs(["sgdr"], "smoke", only=["CIFAR-10: SGDR T0=10, Tmult=2", "CIFAR-10: default, eta0=0.05",
                                                  "CIFAR-10: default, eta0=0.1"])
    runs = sorted(runs, key=lambda r: not r.config.snapshot_at)  # the run that keeps snapshots first
    store = RunStore("smoke")
    snapshots = {"steps": [5], "probs": torch.ones(1, 4, 10, dtype=torch.float16), "labels": torch.arange(4)}
    for run in runs[:2]:
        info = {"label": run.label, "timings": {"wall_s": 1.0}}
        if run.config.snapshot_at:
            info["snapshots"] = snapshots
        store.save(run.config, "finished", ROWS, info)
    store.checkpointer(runs[2].config, 1).save({"step": 3})
    path = scratch / "runs.tar.gz"
    summary = export_runs(path, runs, with_checkpoints=True)
    assert "exported 2 records, 1 checkpoints" in summary
    return path, runs


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_export_then_import_into_an_empty_store_gives_the_same_records(archive, scratch, monkeypatch, capsys):
    path, runs = archive
    before = files(scratch / "results" / "smoke")
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "home"))
    assert main(["import", str(path)]) == 0
    assert "imported 2 records (0 replacing failed or damaged ones), 1 checkpoints" in capsys.readouterr().out
    after = files(scratch / "home" / "smoke")
    kept = {k: v for k, v in after.items() if "locks" not in str(k)}
    assert kept.keys() == before.keys()
    for name, blob in kept.items():  # the same files; each record's JSON marked with its origin, re-digested
        if name.suffix == ".json":
            meta, original = json.loads(blob), json.loads(before[name])
            assert meta.pop("imported")["origin"] == "imported (unverified origin)"
            assert meta.pop("record_sha256") == record_digest({**meta, "imported": json.loads(blob)["imported"]})
            original.pop("record_sha256")
            assert meta == original
        else:
            assert blob == before[name]
    store = RunStore("smoke")
    assert store.load(runs[0].config).snapshots()["steps"] == [5] and store.load(runs[1].config) is not None
    assert "2 records were already here" in import_archive(path, profiles=PROFILES)  # again: nothing changes
    assert files(scratch / "home" / "smoke") == after


def rewrite(path, change=None, add=(), fix_manifest=True):
    """The archive again with ``change(name, bytes) -> bytes`` applied and ``add`` (TarInfo, bytes)
    members added; the manifest's checksums follow the change, so only the record checks can tell."""
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = json.loads(members.pop("manifest.json"))
    if change:
        members = {k: change(k, v) for k, v in members.items()}
    if fix_manifest:
        manifest["files"] = {k: hashlib.sha256(v).hexdigest()
                             for k, v in [*members.items(), *((i.name, d) for i, d in add if d is not None)]}
    out = path.with_name("tampered.tar.gz")
    with tarfile.open(out, "w:gz") as tar:
        for name, data in [("manifest.json", json.dumps(manifest).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in add:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def edited_json(edit):
    def change(name, data):
        if not name.endswith(".json") or not name.startswith("runs/"):
            return data
        meta = json.loads(data)
        edit(meta)
        return json.dumps(meta).encode()
    return change


def reseal(meta):
    meta["record_sha256"] = record_digest(meta)


def link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def plain(name):
    info = tarfile.TarInfo(name)
    info.size = 2
    return info, b"hi"


TAMPERED = {
    "a changed CSV": (dict(change=lambda n, d: d.replace(b"11", b"99") if n.endswith(".csv") else d), "csv altered"),
    "a config that does not re-hash": (
        dict(change=edited_json(lambda m: (m["config"].update(seed=7), reseal(m)))), "hashes to"),
    "an edited record": (dict(change=edited_json(lambda m: m.update(label="other"))), "metadata altered"),
    "a record without digest": (dict(change=edited_json(lambda m: m.pop("record_sha256"))), "seal its store"),
    "a ../ path": (dict(add=[plain("runs/../../evil.txt")]), "a path out of the archive"),
    "an absolute path": (dict(add=[plain("/tmp/evil.txt")]), "an absolute path"),
    "a symlink": (dict(add=[link("extra/passwd", "/etc/passwd")]), "a link"),
    "a hard link": (dict(add=[link("extra/shadow", "/etc/shadow", tarfile.LNKTYPE)]), "a link"),
    "a stray file": (dict(add=[plain("notes.txt")]), "not a file an archive of runs holds"),
    "a manifest that does not match": (dict(change=lambda n, d: d + b" " if n.endswith(".csv") else d,
                                            fix_manifest=False), "differ from the manifest"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_tampered_or_unsafe_archives_are_refused_and_write_nothing(archive, scratch, monkeypatch, case, capsys):
    path, _ = archive
    how, message = TAMPERED[case]
    bad = rewrite(path, **how)
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "home"))
    assert main(["import", str(bad)]) == 2
    assert message in capsys.readouterr().err
    assert not (scratch / "home").exists() and not (scratch / "evil.txt").exists()


def test_a_finished_record_is_never_overwritten(archive, scratch, monkeypatch, capsys):
    path, runs = archive
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "home"))
    RunStore("smoke").save(runs[1].config, "finished", ROWS[:2], {"label": runs[1].label})
    before = files(scratch / "home")
    assert main(["import", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"run {runs[1].config.id}" in err and "never overwritten" in err and "nothing was written" in err
    assert files(scratch / "home") == before
