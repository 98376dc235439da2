"""The scorecard: every claim of the three papers, the paper's number, ours, the rule, the verdict.

It reads only the run store (``results/<profile>/runs``) -- nothing is trained -- so it can be
rebuilt at any time, from any machine, once the experiments' runs exist. Each claim is judged as
its own notebook judges it (``experiment.verdicts``); claims whose runs are missing are "not run".
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import pandas as pd

from .experiments import EXPERIMENTS
from .paths import results_root
from .study import DATA_PARAMETERS

__all__ = ["collect", "to_markdown", "write_index", "update_readme", "PAPERS"]

PAPERS = {"clr": "CLR", "sgdr": "SGDR", "super_convergence": "Super-convergence"}


def _paper_of(experiment: str) -> str:
    return next(v for k, v in PAPERS.items() if experiment.startswith(k))


def _paper_numbers(paper: pd.DataFrame, claim) -> str:
    """The paper's numbers behind a claim, from its cited table, e.g. ``81.4 vs 81.4``."""
    if hasattr(claim, "target"):
        return claim.shown or f"{claim.target:.3g}"
    if hasattr(claim, "threshold"):
        return f">= {claim.threshold:g}"
    values = []
    for setting in (claim.a, claim.b):
        match = paper[paper.setting == setting] if len(paper) else paper
        values.append(f"{match.value.iloc[0]:g}" if len(match) else "-")
    return "-" if values == ["-", "-"] else " vs ".join(values)


def _ours(row: dict, claim) -> str:
    if row["verdict"] == "not run" or row["difference"] != row["difference"]:
        return "-"
    if hasattr(claim, "target"):
        return f"x{row['difference']:.2f} of the paper's"
    if hasattr(claim, "threshold"):
        return f"{row['difference']:.2f}"
    ci = (f" [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]" if not math.isnan(row["ci_low"]) else "")
    return f"{row['difference']:+.2f}{ci}"


def _kind(claim) -> str:
    """What a claim's ``difference`` is: a paired difference of two settings in accuracy points, a
    ratio of our value to the paper's, or a measured value against a threshold."""
    return "ratio to paper" if hasattr(claim, "target") else "value" if hasattr(claim, "threshold") else "difference"


def collect(profile: str, experiments: list[str] | None = None, **data: str | None) -> pd.DataFrame:
    """One row per claim across the study's experiments, judged on the stored runs of ``profile``.
    ``data`` holds the sources the runs were trained on, by parameter (``data=``, ``data_cifar100=``,
    ...; None: the profile's). The numbers stay numbers (``difference``, ``ci_low``, ``ci_high``,
    read as ``kind`` says); ``ours`` and ``paper's number`` are their printed forms."""
    rows = []
    for name in experiments or EXPERIMENTS:
        experiment = EXPERIMENTS[name]
        taken = {DATA_PARAMETERS[d] for d in experiment.data_sets}
        s = experiment.settings(profile, **{k: v for k, v in data.items() if k in taken})
        results = experiment.run(s, progress=False, train_missing=False)
        verdicts = experiment.verdicts(s, results)
        paper = experiment.paper()
        runs = results.runs
        done = runs[runs.status.isin(["finished", "diverged"])]
        for claim in experiment.claims:
            v = verdicts.loc[claim.id].to_dict()
            rows.append({
                "paper": _paper_of(name),
                "notebook": name,
                "claim": claim.id,
                "statement": claim.text,
                "paper's number": _paper_numbers(paper, claim),
                "ours": _ours(v, claim),
                "kind": _kind(claim),
                "difference": v["difference"],
                "ci_low": v["ci_low"],
                "ci_high": v["ci_high"],
                "n": int(v["n"]),
                "verdict": v["verdict"],
                "rule": claim.rule,
                "basis": v["basis"],
                "budget": f"{s.knobs.get('budget_scale', 1):g} of the paper's",
                "profile": profile,
                "data": ", ".join(sorted(set(done.data.dropna()))) if "data" in done and len(done) else "-",
                "devices": ", ".join(sorted(set(done.device.dropna()))) if "device" in done and len(done) else "-",
            })
    return pd.DataFrame(rows)


def to_markdown(card: pd.DataFrame) -> str:
    """The scorecard as a GitHub-flavoured markdown table (for the README)."""
    columns = ["paper", "claim", "statement", "paper's number", "ours", "n", "verdict"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, r in card.iterrows():
        cells = [str(r[c]).replace("|", "/") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_index(profile: str, card: pd.DataFrame | None = None, root: Path | None = None) -> Path:
    """``results/<profile>/index.html``: the scorecard's counts and links to every rendered notebook,
    the scorecard first."""
    folder = (root or results_root()) / profile
    pages = sorted(p.name for p in folder.glob("*.html") if p.name != "index.html")
    first = [p for p in pages if p.startswith("scorecard")]
    links = "\n".join(f'<li><a href="{html.escape(p)}">{html.escape(p[:-5])}</a></li>'
                      for p in first + [p for p in pages if p not in first])
    counts = ""
    if card is not None and len(card):
        table = card.pivot_table(index="paper", columns="verdict", values="claim", aggfunc="count", fill_value=0)
        counts = table.to_html(border=0)
    text = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>lrstudy results: profile {html.escape(profile)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} td,th{{padding:0.2em 0.8em}}</style></head>
<body><h1>lrstudy: profile <code>{html.escape(profile)}</code></h1>
<p>Reproductions of Cyclical Learning Rates, SGDR and Super-Convergence. Open the scorecard first: one
row per claim, with the paper's number, ours, the rule fixed before the runs, and the verdict.</p>
{counts}
<ul>
{links}
</ul></body></html>
"""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    path.write_text(text)
    return path


BEGIN, END = "<!-- scorecard:begin -->", "<!-- scorecard:end -->"


def update_readme(readme: Path, card: pd.DataFrame, profile: str) -> None:
    """Replace the block between the scorecard markers in the README with the generated table."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme} has no {BEGIN} ... {END} block to fill")
    counts = card.verdict.value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in ("confirmed", "not confirmed", "inconclusive", "not run"))
    block = (f"{BEGIN}\n_Generated by `python -m lrstudy scorecard --profile {profile} --readme` from the run store; "
             f"profile `{profile}`: {summary}._\n\n{to_markdown(card)}\n{END}")
    readme.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))
