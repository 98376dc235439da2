"""`make reproduce` never leaves the published study worse than it found it: without its data it
stops within seconds, before anything under results/ is touched; a notebook that fails leaves the
committed page in place; a page is replaced only by one that shows at least its runs."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from lrstudy.reproduce import claims_with_runs, publish
from lrstudy.runs import RunStore

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
needs_venv = pytest.mark.skipif(not (VENV / "bin" / "papermill").exists(), reason="needs the project's .venv")
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


def make(args, cwd, env, timeout=300):
    return subprocess.run(["make", "--no-print-directory", "-o", f"{VENV}/.installed", f"VENV={VENV}", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@needs_venv
def test_make_reproduce_on_a_fresh_clone_without_data_or_network_changes_nothing(tmp_path):
    """The committed study, cloned afresh; no data, no internet (a proxy on a closed port): one
    message within seconds, exit non-zero, and `git status` shows nothing changed."""
    clone = tmp_path / "clone"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", "--detach", head], cwd=clone, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRSTUDY_")}
    env.update(OFFLINE, LRSTUDY_DATA_ROOT=str(tmp_path / "data"), PYTHONPATH=str(clone / "src"))
    before = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=clone, capture_output=True, text=True).stdout
    started = time.monotonic()
    result = make(["reproduce", "PROFILE=cpu"], clone, env)
    took = time.monotonic() - started
    after = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=clone, capture_output=True, text=True).stdout
    assert result.returncode != 0
    assert "cannot be had" in result.stderr and "DATA=" in result.stderr, result.stdout + result.stderr
    assert after == before, after
    assert took < 30, f"{took:.0f} s"


@needs_venv
def test_a_notebook_that_fails_keeps_the_committed_page(tmp_path):
    """Data that exists but cannot be read passes the preflight and fails the notebook: its copy
    goes to build/failed/, the page in results/ stays byte for byte."""
    pages = tmp_path / "results" / "smoke"
    pages.mkdir(parents=True)
    (pages / "clr_range_test.ipynb").write_text('{"committed": "page"}')
    (pages / "clr_range_test.html").write_text("<p>committed page</p>")
    (tmp_path / "broken").mkdir()
    env = {**os.environ, **OFFLINE}
    result = make(["reproduce", "PROFILE=smoke", "NOTEBOOKS=clr_range_test", f"RESULTS={tmp_path / 'results'}",
                   f"BUILD={tmp_path / 'build'}", f"DATA={tmp_path / 'broken'}"], ROOT, env)
    assert result.returncode != 0
    assert "FAILED  clr_range_test" in result.stdout
    assert (tmp_path / "build" / "failed" / "smoke" / "clr_range_test.ipynb").exists()
    assert (pages / "clr_range_test.ipynb").read_text() == '{"committed": "page"}'
    assert (pages / "clr_range_test.html").read_text() == "<p>committed page</p>"
    assert not list(pages.glob("*.failed.ipynb"))


ROWS = [{"step": 10, "epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.1, "test_acc": 48.0}]


def test_a_page_is_replaced_only_by_one_showing_at_least_its_runs(scratch):
    from lrstudy.queue_selection import select_runs

    runs = select_runs(["sgdr"], "smoke")[:2]
    store = RunStore("smoke")
    for run in runs:
        store.save(run.config, "finished", ROWS, {"label": run.label})
    root = scratch / "results"
    staged = scratch / "build"
    staged.mkdir()
    (root / "smoke" / "sgdr.ipynb").write_text(f"{runs[0].config.id} {runs[1].config.id}")
    (root / "smoke" / "sgdr.html").write_text("old")
    (staged / "sgdr.ipynb").write_text(f"{runs[0].config.id} not run")
    (staged / "sgdr.html").write_text("new")
    assert publish("smoke", ["sgdr"], staged) == ([], [
        f"sgdr: the page in {root / 'smoke'} shows 1 finished runs the new one does not (e.g. {runs[1].config.id}); "
        "kept the page there"])
    assert (root / "smoke" / "sgdr.html").read_text() == "old"
    (staged / "sgdr.ipynb").write_text(f"{runs[1].config.id} {runs[0].config.id}")
    assert publish("smoke", ["sgdr"], staged) == (["sgdr"], [])
    assert (root / "smoke" / "sgdr.html").read_text() == "new"


def test_a_scorecard_page_is_replaced_only_by_one_with_as_many_claims_with_runs(scratch):
    root, staged = scratch / "results", scratch / "build"
    staged.mkdir()
    (root / "smoke").mkdir(parents=True)
    sentence = "{} of 70 claims can be judged; 14 rows compare. Verdicts: 5 confirmed, {} not run."
    (root / "smoke" / "scorecard.ipynb").write_text(sentence.format(5, 20))
    (root / "smoke" / "scorecard.html").write_text("old")
    (staged / "scorecard.ipynb").write_text(sentence.format(0, 70))
    (staged / "scorecard.html").write_text("new")
    assert publish("smoke", ["scorecard"], staged)[0] == []
    (staged / "scorecard.ipynb").write_text(sentence.format(5, 19))
    assert publish("smoke", ["scorecard"], staged)[0] == ["scorecard"]


def test_the_grouped_scorecard_sentence_counts_every_group_not_run(scratch):
    """The sentence that counts the papers' claims apart from the study's comparisons: a page whose
    groups leave 23 of 73 claims not run has 50 with runs (reading only the first group said 0)."""
    page = scratch / "scorecard.ipynb"
    page.write_text("0 of 73 claims can be judged. Verdicts -- paper claims: 39 not testable at this budget, 14 not "
                    "run; the study's added comparisons: 10 inconclusive (n < 2), 8 not run; recaps' advice: 1 not "
                    "testable at this budget, 1 not run.** No paper claim has evidence against it yet.")
    assert claims_with_runs(page) == 50
