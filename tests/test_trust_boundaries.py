"""The study's trust boundaries, each case one a hostile pass found open: an archive is untrusted
input (confined, bounded, typed, and of unverified origin unless signed), a finished record is never
overwritten, however the writers race."""

import hashlib
import io
import json
import tarfile
import threading
import time
import tracemalloc

import pytest

from lrstudy.__main__ import main
from lrstudy.archive import export_runs, import_archive
from lrstudy.config import PROFILES
from lrstudy.queue_selection import select_runs
from lrstudy.runs import RunStore, origin_of, record_digest

ROWS = [{"step": s, "epoch": s / 10, "lr": 0.01, "train_loss": 2.0 - s / 100, "train_acc": 10.0 + s,
         "test_loss": 2.1, "test_acc": 11.0 + s} for s in (0, 10, 20)]
UNVERIFIED = "imported (unverified origin)"
OTHER_ROWS = [{**row, "test_acc": row["test_acc"] + 5} for row in ROWS]


def smoke_runs(n=1):
    return select_runs(["sgdr"], "smoke", only=["CIFAR-10: default, eta0=0.05", "CIFAR-10: default, eta0=0.1"])[:n]


@pytest.fixture
def exported(scratch, monkeypatch):
    """An archive of one finished record, made in a store of its own; the tests import into another."""
    return exported_from_elsewhere(scratch, monkeypatch, ROWS)


def exported_from_elsewhere(scratch, monkeypatch, rows):
    """``(archive, run)``: one finished record with ``rows``, exported from a store of its own;
    LRSTUDY_RESULTS then points at the (empty) store the tests import into."""
    run = smoke_runs()[0]
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "elsewhere"))
    RunStore("smoke").save(run.config, "finished", rows, {"label": run.label})
    path = scratch / "runs.tar.gz"
    export_runs(path, [run])
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "home"))
    return path, run


def members_of(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def write_archive(path, members, manifest=None, sizes=None):
    """A .tar.gz of ``members`` (name: bytes), with ``manifest`` (default: checksums of them all)."""
    if manifest is None:
        manifest = {"format": 1, "name": "test", "files": {k: hashlib.sha256(v).hexdigest() for k, v in members.items()}}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [("manifest.json", json.dumps(manifest).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_a_manifest_named_dotdot_cannot_write_into_the_results_root(exported, scratch, capsys):
    path, run = exported
    record = members_of(path)
    members = {f"extra/smoke/runs/{run.config.id}.json": record[f"runs/smoke/{run.config.id}.json"],
               f"extra/smoke/runs/{run.config.id}.csv": record[f"runs/smoke/{run.config.id}.csv"],
               "extra/smoke/index.html": b"<p>forged page</p>"}
    manifest = {"format": 1, "name": "..", "files": {k: hashlib.sha256(v).hexdigest() for k, v in members.items()}}
    bad = write_archive(scratch / "escape.tar.gz", members, manifest)
    assert main(["import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "name '..'" in err and "nothing was written" in err
    assert tree(scratch / "home") == []


@pytest.mark.parametrize("name", ["extra/./smoke/index.html", "extra/a/../../index.html"])
def test_dot_segments_in_a_member_are_refused(exported, scratch, name, capsys):
    path, _ = exported
    members = {**{k: v for k, v in members_of(path).items() if k != "manifest.json"}, name: b"x"}
    assert main(["import", str(write_archive(scratch / "dots.tar.gz", members))]) == 2
    assert f"{name}: a path out of the archive" in capsys.readouterr().err
    assert tree(scratch / "home") == []


def test_a_compression_bomb_is_refused_from_its_header_before_it_is_read(exported, scratch, capsys):
    path, _ = exported
    zeros = 80 * 2**20  # over extra/'s 64 MiB; gzip makes it 80 KiB
    bomb = scratch / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tar:
        info = tarfile.TarInfo("extra/zeros.bin")
        info.size = zeros
        tar.addfile(info, io.BytesIO(bytes(zeros)))
    del info
    tracemalloc.start()
    try:
        assert main(["import", str(bomb)]) == 2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert "extra/zeros.bin" in err and "over the" in err
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MiB used to refuse it"
    assert tree(scratch / "home") == []


MALFORMED = {
    "files is a list": lambda m: {**m, "files": ["a"]},
    "a digest that is a number": lambda m: {**m, "files": {k: 7 for k in m["files"]}},
    "the manifest is a list": lambda m: [m],
    "name is a number": lambda m: {**m, "name": 3},
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_manifest_is_one_line_naming_the_field(exported, scratch, case, capsys):
    path, _ = exported
    members = members_of(path)
    manifest = MALFORMED[case](json.loads(members.pop("manifest.json")))
    assert main(["import", str(write_archive(scratch / "bad.tar.gz", members, manifest))]) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and "Traceback" not in err
    assert tree(scratch / "home") == []


def test_a_record_that_is_not_an_object_is_named(exported, scratch, capsys):
    path, run = exported
    members = {k: v for k, v in members_of(path).items() if k != "manifest.json"}
    members[f"runs/smoke/{run.config.id}.json"] = b"[1, 2]"
    assert main(["import", str(write_archive(scratch / "list.tar.gz", members))]) == 2
    assert f"runs/smoke/{run.config.id}.json: not a record" in capsys.readouterr().err


def forge(path, out, edit_meta=None, edit_csv=None):
    """The archive with its record edited and every digest recomputed (record, CSV, manifest):
    what anyone can do to an unkeyed archive. ``edit_meta`` may change the config (the files are
    renamed to the id it hashes to)."""
    from lrstudy.runs import RunConfig

    members = {k: v for k, v in members_of(path).items() if k != "manifest.json"}
    (json_name,) = [k for k in members if k.endswith(".json")]
    meta = json.loads(members.pop(json_name))
    raw = members.pop(json_name.replace(".json", ".csv"))
    if edit_csv:
        raw = edit_csv(raw)
        meta["csv_sha256"] = hashlib.sha256(raw).hexdigest()
    if edit_meta:
        edit_meta(meta)
    meta["id"] = RunConfig.from_dict(meta["config"]).id
    meta["record_sha256"] = record_digest(meta)
    members[f"runs/smoke/{meta['id']}.json"] = json.dumps(meta).encode()
    members[f"runs/smoke/{meta['id']}.csv"] = raw
    return write_archive(out, members), meta["id"]


FORGERIES = {
    "an edited CSV": dict(edit_csv=lambda raw: raw.replace(b"31", b"99")),
    "a config moved to seed 7 and renamed": dict(edit_meta=lambda m: m["config"].update(seed=7)),
}


@pytest.mark.parametrize("case", FORGERIES)
def test_a_forged_record_is_imported_only_as_of_unverified_origin(exported, scratch, case):
    path, _ = exported
    forged, run_id = forge(path, scratch / "forged.tar.gz", **FORGERIES[case])
    assert "origin: imported (unverified origin)" in import_archive(forged, profiles=PROFILES)
    meta = json.loads((scratch / "home" / "smoke" / "runs" / f"{run_id}.json").read_text())
    assert meta["id"] == run_id and origin_of(meta) == UNVERIFIED
    assert meta["record_sha256"] == record_digest(meta)  # still a valid record, marked


def test_a_record_claiming_to_be_verified_is_marked_unverified_all_the_same(exported, scratch):
    path, _ = exported
    forged, run_id = forge(path, scratch / "claims.tar.gz",
                           edit_meta=lambda m: m.update(imported={"origin": "verified: trust me"}))
    import_archive(forged, profiles=PROFILES)
    meta = json.loads((scratch / "home" / "smoke" / "runs" / f"{run_id}.json").read_text())
    assert origin_of(meta) == UNVERIFIED


def test_a_signed_archive_is_verified_with_the_key_and_a_forged_one_refused(scratch, monkeypatch, capsys):
    key_file = scratch / "archive.key"
    key_file.write_text("a secret only this user holds\n")
    monkeypatch.setenv("LRSTUDY_ARCHIVE_KEY_FILE", str(key_file))
    run = smoke_runs()[0]
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "elsewhere"))
    RunStore("smoke").save(run.config, "finished", ROWS, {"label": run.label})
    path = scratch / "signed.tar.gz"
    assert "signed with this machine's key" in export_runs(path, [run])
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "home"))
    members = members_of(path)
    manifest = json.loads(members.pop("manifest.json"))
    forged, _ = forge(path, scratch / "forged.tar.gz", edit_meta=lambda m: m["config"].update(seed=7))
    forged_members = members_of(forged)
    forged_manifest = json.loads(forged_members.pop("manifest.json"))
    forged_manifest["signature"] = manifest["signature"]  # the old signature kept: it no longer matches
    write_archive(forged, forged_members, forged_manifest)
    assert main(["import", str(forged)]) == 2
    assert "signature does not match" in capsys.readouterr().err
    assert tree(scratch / "home") == []
    assert "origin: verified" in import_archive(path, profiles=PROFILES)
    meta = json.loads(RunStore("smoke").paths(run.config.id)[1].read_text())
    assert origin_of(meta).startswith("imported (verified")


def test_import_racing_a_training_queue_on_one_id_never_overwrites_either(scratch, monkeypatch):
    """The queue holds the run's lock while it trains; an import of the same id started meanwhile
    waits for it, then finds the queue's finished record and refuses, rather than being silently
    overwritten by the queue's save a moment later."""
    from lrstudy import execute

    path, run = exported_from_elsewhere(scratch, monkeypatch, OTHER_ROWS)
    training, outcome = threading.Event(), {}

    def slow_training(settings, task, sources, checkpoints, progress, names, stop=None):
        training.set()
        time.sleep(1.0)  # the import starts meanwhile
        return [("record", ("finished", ROWS, {"label": run.label, "timings": {"wall_s": 1.0}}))]

    def importing():
        training.wait()
        try:
            outcome["summary"] = import_archive(path, profiles=PROFILES)
        except ValueError as err:
            outcome["refused"] = str(err)

    monkeypatch.setattr(execute, "train_task", slow_training)
    other = threading.Thread(target=importing)
    other.start()
    store = RunStore("smoke")
    errors = execute.train_task_into_store(run.settings, [(run.label, run.config)], store,
                                           execute.Sources(run.settings), False, ["race"])
    other.join()
    assert errors == {}
    assert "never overwritten" in outcome.get("refused", ""), outcome
    assert store.load(run.config).rows.test_acc.tolist() == [r["test_acc"] for r in ROWS]


def test_saving_over_a_finished_record_is_refused_and_keeps_it(scratch):
    run = smoke_runs()[0]
    store = RunStore("smoke")
    store.save(run.config, "finished", ROWS, {"label": run.label})
    before = [p.read_bytes() for p in store.paths(run.config.id)]
    from lrstudy.runs import FinishedRecordExists

    with pytest.raises(FinishedRecordExists, match="never overwritten"):
        store.save(run.config, "finished", OTHER_ROWS, {"label": run.label})
    with pytest.raises(FinishedRecordExists):
        store.save_failure(run.config, "RuntimeError: late")
    assert [p.read_bytes() for p in store.paths(run.config.id)] == before
