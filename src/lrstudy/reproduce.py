"""What ``make reproduce`` does around the notebooks, so that it never leaves the published study
worse than it found it:

* before any notebook runs, :func:`preflight` checks that every data source the missing runs need
  can be had (on this machine, or a download whose host answers) and stops, with one message,
  within seconds when one cannot -- nothing under ``results/`` has been touched then;
* the notebooks render into a staging folder (``build/pages/<profile>/``; a failed one goes to
  ``build/failed/<profile>/``), and :func:`publish` copies a rendered page into
  ``results/<profile>/`` only if it shows every finished run the page there shows -- with the
  files it links (its figures in ``<notebook>_files/``, the folder's style sheet), copied before
  the page, so that no published page ever links a file that is not there.

    python -m lrstudy preflight --profile cpu [--data ...] [--no-train] clr_cifar10 ...
    python -m lrstudy publish --profile cpu --from build/pages/cpu clr_cifar10 ...
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Mapping, Sequence

from .data import DataSource, DataUnavailable, download_problem, missing_message
from .experiments import EXPERIMENTS
from .pages import page_assets, prune_assets
from .paths import results_root
from .runs import FINAL_STATUSES, RunStore, stored_status

__all__ = ["needed_sources", "preflight", "runs_shown", "claims_with_runs", "publish"]

_RUN_ID = re.compile(r"\b[0-9a-f]{16}\b")


def needed_sources(profile: str, notebooks: Sequence[str],
                   sources: Mapping[str, str | None]) -> dict[DataSource, list[str]]:
    """``{source: [notebook, ...]}``: the data sources that the runs the store lacks would train on."""
    store = RunStore(profile)
    needed: dict[str, list[str]] = {}
    for name in [n for n in notebooks if n in EXPERIMENTS]:
        experiment = EXPERIMENTS[name]
        settings = experiment.settings(profile, **experiment.sources_taken(sources))
        for _, config in experiment.run_configs(settings):
            if stored_status(store, config) not in FINAL_STATUSES:
                users = needed.setdefault(settings.source_of(config.data), [])
                if name not in users:
                    users.append(name)
    return needed


def preflight(profile: str, notebooks: Sequence[str], sources: Mapping[str, str | None], train: bool = True) -> str:
    """A one-line summary if every source the missing runs need can be had (nothing is needed
    with ``train=False``); else :class:`DataUnavailable` naming each missing source, the notebooks
    that need it, and the remedies."""
    if not train:
        return "preflight: nothing is trained (TRAIN=no): pages show the runs the store holds"
    needed = needed_sources(profile, notebooks, sources)
    missing = []
    for source, users in needed.items():
        if source.local:
            continue
        why = download_problem(source.source)
        if why:
            missing.append(f"{source.source} (needed by {', '.join(users)}): {why}")
    if missing:
        raise DataUnavailable(missing_message("the data that the missing runs need cannot be had; nothing was "
                                              "rendered and results/ is untouched:\n  " + "\n  ".join(missing)))
    return f"preflight: every data source the missing runs need can be had ({', '.join(s.source for s in needed) or 'none needed'})"


def runs_shown(page: Path, store: RunStore) -> set[str]:
    """The ids of the store's finished runs a rendered notebook names."""
    try:
        text = page.read_text(errors="replace")
    except OSError:
        return set()
    return {run_id for run_id in set(_RUN_ID.findall(text)) if _finished(store, run_id)}


def _finished(store: RunStore, run_id: str) -> bool:
    import json

    try:
        return json.loads(store.paths(run_id)[1].read_text()).get("status") in FINAL_STATUSES
    except (OSError, ValueError, AttributeError):
        return False


# scorecard.summary's sentence: "... N of M claims can be judged. Verdicts -- <group>: <counts>; ...."
# (or, before the groups, "Verdicts: <counts>.")
_SUMMARY = re.compile(r"(\d+) of (\d+) claims can be judged.*?Verdicts(?::| --) ([^.]*)\.", re.S)


def claims_with_runs(page: Path) -> int | None:
    """How many claims a scorecard page's summary sentence says have runs (all but those "not
    run"); None for a page without one."""
    try:
        match = _SUMMARY.search(page.read_text(errors="replace"))
    except OSError:
        return None
    if not match:
        return None
    return int(match[2]) - sum(int(n) for n in re.findall(r"(\d+) not run", match[3]))  # every group's


def publish(profile: str, notebooks: Sequence[str], staged: Path, root: Path | None = None) -> tuple[list[str], list[str]]:
    """Copy each staged page (``<notebook>.ipynb``, ``.html`` and ``.reader.html``) into
    ``<results>/<profile>/`` if it shows every finished run the page there shows (and, for the
    scorecard, whose pages name claims rather than runs, at least as many claims with runs), and
    if every file its renders link was rendered with it. Those files are copied first, then the
    pages, each by a rename; then the figures and style sheets no page links any more go (only
    files render names so: :func:`lrstudy.pages.prune_assets`). Returns ``(published, kept)``: the
    notebooks copied, and those whose committed page was kept, each with why."""
    target = (root or results_root()) / profile
    store = RunStore(profile, target / "runs")
    published, kept = [], []
    for name in notebooks:
        new_page, old_page = staged / f"{name}.ipynb", target / f"{name}.ipynb"
        if not (new_page.exists() and (staged / f"{name}.html").exists()):
            continue
        new, old = runs_shown(new_page, store), runs_shown(old_page, store)
        if not old <= new:
            kept.append(f"{name}: the page in {target} shows {len(old - new)} finished runs the new one does not "
                        f"(e.g. {sorted(old - new)[0]}); kept the page there")
            continue
        judged_new, judged_old = claims_with_runs(new_page), claims_with_runs(old_page)
        if judged_old is not None and (judged_new or 0) < judged_old:
            kept.append(f"{name}: the page in {target} has {judged_old} claims with runs, the new one "
                        f"{judged_new or 0}; kept the page there")
            continue
        renders = (staged / f"{name}.html", staged / f"{name}.reader.html")
        assets = sorted({asset for render in renders for asset in page_assets(render)})
        unusable = [a for a in assets if not _inside(staged, a) or not (staged / a).is_file()]
        if unusable:
            kept.append(f"{name}: the new page links {unusable[0]}, which is not a file rendered beside it; kept the "
                        f"page there")
            continue
        target.mkdir(parents=True, exist_ok=True)
        for asset in assets:  # before the pages that link them
            _copy_into_place(staged / asset, target / asset)
        for suffix in (".ipynb", ".html", ".reader.html"):
            if (staged / f"{name}{suffix}").exists():  # (a reader's render is made where pages render it)
                _copy_into_place(staged / f"{name}{suffix}", target / f"{name}{suffix}")
        prune_assets(target, name)
        published.append(name)
    return published, kept


def _inside(folder: Path, relative: str) -> bool:
    """Whether a page's relative link stays inside its folder (publish copies nothing from elsewhere)."""
    return (folder / relative).resolve().is_relative_to(folder.resolve())


def _copy_into_place(source: Path, destination: Path) -> None:
    """Copy a file by a rename, so that a reader sees the old file or the new one, never a part; a
    file already there with the same bytes (a figure named by its content) is left alone."""
    if destination.is_file() and destination.read_bytes() == source.read_bytes():
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.publishing")
    shutil.copyfile(source, partial)
    partial.replace(destination)
