"""Every committed result says where it came from, and can be checked: a clean commit, a
configuration that re-hashes to its file name, a CSV and metadata that match their digests; every
committed notebook page is free of progress-bar clutter and of the paths of the machine that ran it."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from lrstudy.runs import RunConfig, record_digest

RESULTS = Path(__file__).resolve().parents[1] / "results"
RECORDS = sorted(RESULTS.glob("*/runs/*.json"))
PAGES = sorted(RESULTS.glob("*/*.ipynb")) + sorted(RESULTS.glob("*/*.html"))
# a path on a developer's or a CI machine, as it would appear in a rendered page
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|mnt|opt|Users|private)/[\w.-]+")
PROGRESS_BAR = re.compile(r"\|[#\u2588-\u258f ]*\| *\d+/\d+ \[")


@pytest.mark.parametrize("path", RECORDS, ids=[f"{p.parent.parent.name}/{p.stem}" for p in RECORDS])
def test_every_committed_record_is_clean_and_verifies(path):
    meta = json.loads(path.read_text())
    assert meta["environment"]["code_modified"] is False, "trained from a modified checkout"
    assert re.fullmatch(r"[0-9a-f]{40}", meta["environment"]["commit"]), "no commit named"
    assert RunConfig.from_dict(meta["config"]).id == path.stem, "its configuration does not hash to its name"
    assert hashlib.sha256(path.with_suffix(".csv").read_bytes()).hexdigest() == meta["csv_sha256"]
    assert meta.get("record_sha256") == record_digest(meta), "metadata edited after it was written"
    for key in ("device", "torch", "python"):
        assert meta["environment"].get(key), f"no {key} recorded"
    assert meta.get("precision") and meta["data"].get("data_fingerprint") and meta["data"].get("data_name")
    if meta["data"]["data_id"] == "cifar10-jpeg":  # the lossy copy is never called plain CIFAR-10
        assert "JPEG q75" in meta["data"]["data_name"]


@pytest.mark.parametrize("path", PAGES, ids=[f"{p.parent.name}/{p.name}" for p in PAGES])
def test_committed_pages_hold_no_progress_bars_or_machine_paths(path):
    text = path.read_text()
    found = MACHINE_PATH.search(text)
    assert not found, f"a path of the machine that ran it: {found.group(0)}"
    assert len(PROGRESS_BAR.findall(text)) == 0, "progress-bar lines: a rendered notebook keeps one line per run"


def test_the_checks_can_fail():
    assert MACHINE_PATH.search('"data = \\"/work/main/data/cifar10-jpeg.tar.xz\\""')
    assert not MACHINE_PATH.search('data = "../../shared/data/cifar10-jpeg.tar.xz"')
    assert PROGRESS_BAR.search("fixed seed 1:  11%|\u2588         | 440/4000 [00:53<07:06,  8.35it/s]")
