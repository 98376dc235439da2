"""The scorecard: every claim of the three papers, the paper's number, ours, the rule, the verdict.

It reads only the run store (``results/<profile>/runs``) -- nothing is trained -- so it can be
rebuilt at any time, from any machine, once the experiments' runs exist. Each claim is judged as
its own notebook judges it (``experiment.verdicts``); claims whose runs are missing are "not run".
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from .experiments import EXPERIMENTS
from .history import ADDED, PAPER, RECAPS, SECONDARY
from .notebook import budget_span, percent, store_box, store_status
from .pages import index_navigation
from .paths import fill_marked_block, results_root
from .runs import UNVERIFIED, RunStore, stored_status
from .stats import JUDGED, VERDICTS, bh_qvalues

__all__ = ["collect", "to_markdown", "summary", "counts", "against_paper", "revised", "declared_after_data",
           "rule_changes", "write_index", "update_readme", "PAPERS", "finished_runs", "altered_records",
           "stored_labels"]

VERDICT_COLOURS = {"confirmed": "#c8e6c9", "not confirmed": "#ffcdd2", "inconclusive": "#fff3c4",
                   "inconclusive (n < 2)": "#ffe9b3", "not testable at this budget": "#e0e0e0", "not run": "#f5f5f5"}
# the notebooks in the order a reader meets them, each with what it reproduces
NOTEBOOKS = ("scorecard", "schedules", *EXPERIMENTS)
SUBJECTS = {
    "scorecard": "every claim, its evidence and its verdict (this page's table, with plots)",
    "schedules": "every schedule of the three papers, drawn next to PyTorch's built-ins",
    "clr_range_test": "CLR Fig. 3: the LR range test, and fastai's exponential sweep beside it",
    "clr_cifar10": "CLR Table 1 (CIFAR-10), exp_range's readings, windows, stepsize, the sigmoid+BN example",
    "clr_adaptive": "CLR Table 3: adaptive solvers with and without CLR",
    "clr_architectures": "CLR Table 4: ResNet, Stochastic Depth and DenseNet with CLR",
    "sgdr": "SGDR Table 1, the 2-4x claim, snapshot ensembles, stopping and restart practices",
    "super_convergence": "Super-convergence: Fig. 1a, range tests to LR 3, regularization, limited data, Table 2",
}

PAPERS = {"clr": "CLR", "sgdr": "SGDR", "super_convergence": "Super-convergence"}


def _paper_of(experiment: str) -> str:
    return next(v for k, v in PAPERS.items() if experiment.startswith(k))


def _paper_numbers(paper: pd.DataFrame, claim) -> str:
    """The paper's numbers behind a claim, from its cited table, e.g. ``81.4 vs 81.4``; marked where
    they come from a secondary transcription or the authors' logs rather than the paper's text."""
    if hasattr(claim, "target"):
        return claim.shown or f"{claim.target:.3g}"
    if hasattr(claim, "threshold"):
        return f">= {claim.threshold:g}"
    if getattr(claim, "added", False):
        return "(not in the paper)"
    if not hasattr(claim, "a"):  # a joint claim of several settings
        return "-"
    values, sources = [], set()
    for setting in (claim.a, claim.b):
        match = paper[paper.setting == setting] if len(paper) else paper
        values.append(f"{match.value.iloc[0]:g}" if len(match) else "-")
        if len(match) and "checked" in match:
            sources.add(str(match.checked.iloc[0]))
    if values == ["-", "-"]:
        return "-"
    mark = (" (secondary transcription)" if any(c.startswith("secondary") for c in sources) else
            " (authors' logs)" if any("logs" in c and not c.startswith("paper") for c in sources) else "")
    return " vs ".join(values) + mark


def _ours(row: dict, claim) -> str:
    """Our numbers in the units of the paper's column: "80.1 vs 79.6" for a comparison, the value
    for an agreement or a threshold."""
    if row["verdict"] == "not run" or row["a"] != row["a"]:
        return "-"
    if hasattr(claim, "target") or hasattr(claim, "threshold"):
        return f"{row['a']:.3g}"
    return f"{row['a']:.2f} vs {row['b']:.2f}"


def _difference(row: dict, claim) -> str:
    """The claim's difference with its 95% CI where there is one."""
    if row["difference"] != row["difference"]:
        return "-"
    if hasattr(claim, "target"):
        return f"x{row['difference']:.2f} of the paper's"
    if hasattr(claim, "threshold"):
        return f"{row['difference']:.2f} (threshold {claim.threshold:g})"
    ci = f" [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]" if row["ci_low"] == row["ci_low"] else ""
    return f"{row['difference']:+.2f}{ci}"


def _kind(claim) -> str:
    """What a claim's ``difference`` is: a paired difference of two settings in accuracy points, a
    ratio of our value to the paper's, or a measured value against a threshold."""
    return "ratio to paper" if hasattr(claim, "target") else "value" if hasattr(claim, "threshold") else "difference"


# the verdict table's columns that come from the rule history (see Experiment.verdicts)
HISTORY_COLUMNS = ["source", "declared", "first run", "declared before data", "pre-declared rule",
                   "pre-declared verdict", "revised after data", "rule history", "status", "planned", "hypothesis"]


def collect(profile: str, experiments: list[str] | None = None, **data: str | None) -> pd.DataFrame:
    """One row per claim across the study's experiments, judged on the stored runs of ``profile``.
    ``data`` holds the sources the runs were trained on, by parameter (``data=``, ``data_cifar100=``,
    ...; None: the profile's). The numbers stay numbers (``a``, ``b``, ``difference``, ``ci_low``,
    ``ci_high``, ``budget``, ``detectable``, ``p``, ``q``, read as ``kind`` says); ``ours``,
    ``difference [CI]`` and ``paper's number`` are their printed forms. ``verdict`` is the rule in
    force's, ``pre-declared verdict`` the rule's declared before the claim's first run (see
    :data:`HISTORY_COLUMNS` and :meth:`lrstudy.study.Experiment.verdicts`); ``q`` is the
    Benjamini-Hochberg q-value among each paper's own judged claims (:func:`q_values`)."""
    rows = []
    finished: set[str] = set()
    for name in experiments or EXPERIMENTS:
        experiment = EXPERIMENTS[name]
        s = experiment.settings(profile, **experiment.sources_taken(data))
        results = experiment.results(s)
        verdicts = experiment.verdicts(s, results)
        paper = experiment.paper()
        runs = results.runs
        done = runs[runs.status.isin(["finished", "diverged"])]
        finished.update(done.run_id)
        for claim in experiment.claims:
            v = verdicts.loc[claim.id].to_dict()
            rule = claim.in_force
            arms = {row for label in claim.labels for row in experiment.inputs(label)}
            rows.append({
                "paper": _paper_of(name),
                "notebook": name,
                "claim": claim.id,
                "statement": v["text"],
                "paper's number": _paper_numbers(paper, rule if hasattr(rule, "a") else claim),
                "ours": _ours(v, rule),
                "difference [CI]": _difference(v, rule),
                "kind": _kind(rule),
                "a": v["a"],
                "b": v["b"],
                "difference": v["difference"],
                "ci_low": v["ci_low"],
                "ci_high": v["ci_high"],
                "n": int(v["n"]),
                "budget": v["budget"],
                "detectable": v["detectable"],
                "p": v["p"],
                "against": int(v["against"]),
                "verdict": v["verdict"],
                **{column: v[column] for column in HISTORY_COLUMNS},
                "rule": v["rule"],
                "testable when": v["testable when"],
                "rule changed": claim.changed,
                "basis": v["basis"],
                "profile": profile,
                "seeds": len(s.seeds),
                "data": _names(done, "data"),
                "devices": _names(done, "device"),
                "origin": _names(done[done.setting.isin(arms)], "origin"),
            })
    card = pd.DataFrame(rows)
    card = card.assign(q=q_values(card)) if len(card) else card
    card.attrs["finished_runs"] = len(finished)
    return card


def finished_runs(card: pd.DataFrame) -> int:
    """How many distinct finished (or diverged) runs a card was judged on."""
    return int(card.attrs.get("finished_runs", 0))


def altered_records(profile: str, experiments: list[str] | None = None, **data: str | None) -> list[str]:
    """The ids of the runs of ``profile`` (under the sources ``data``) whose stored record fails
    verification (a CSV or JSON edited, a file missing): the card leaves them out."""
    store, out = RunStore(profile), []
    for name in experiments or EXPERIMENTS:
        experiment = EXPERIMENTS[name]
        s = experiment.settings(profile, **experiment.sources_taken(data))
        out += [c.id for _, c in experiment.run_configs(s) if stored_status(store, c) == "altered"]
    return list(dict.fromkeys(out))


def stored_labels(store) -> dict[str, int]:
    """``{data label: finished runs}`` of a store's records, most runs first."""
    import json

    counts: dict[str, int] = {}
    for path in store.root.glob("*.json"):
        try:
            meta = json.loads(path.read_text())
            label = meta["config"]["data"] if meta.get("status") in ("finished", "diverged") else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if isinstance(label, str):
            counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


PAPERS_OWN = (PAPER, SECONDARY)  # the sources that are a paper's own claims


def _hypotheses(card: pd.DataFrame) -> pd.DataFrame:
    """One row per hypothesis: claims judged jointly (the window shapes) share a rule in force and
    count once."""
    return card.drop_duplicates(subset=["notebook", "hypothesis"]) if "hypothesis" in card else card


def q_values(card: pd.DataFrame) -> list[float]:
    """Benjamini-Hochberg q-values within each paper's own judged claims (one per hypothesis; NaN
    for the study's added comparisons, recaps' advice, rules without a p-value, and claims not judged
    -- too few seeds, not testable, not run). Claims judged jointly share their hypothesis' q."""
    q = pd.Series(float("nan"), index=card.index)
    own = _hypotheses(card[card.source.isin(PAPERS_OWN) & card.verdict.isin(JUDGED) & card.p.notna()])
    for _, family in own.groupby("paper"):
        q[family.index] = bh_qvalues(family.p.tolist())
    shared = dict(zip(zip(own.notebook, own.hypothesis), q[own.index]))
    return [shared.get((nb, h), float("nan")) for nb, h in zip(card.notebook, card.hypothesis)]


GROUPS = {"paper claims": PAPERS_OWN, "the study's added comparisons": (ADDED,), "recaps' advice": (RECAPS,)}


def counts(card: pd.DataFrame) -> pd.DataFrame:
    """Verdict counts per group -- the papers' own claims, the study's added comparisons, recaps'
    advice -- one per hypothesis; ``interim`` counts the judged ones with fewer seeds than planned."""
    rows = {}
    for group, sources in GROUPS.items():
        part = _hypotheses(card[card.source.isin(sources)])
        row = {v: int((part.verdict == v).sum()) for v in VERDICTS}
        row["interim"] = int((part.verdict.isin(JUDGED) & part.status.str.startswith("interim")).sum())
        row["total"] = len(part)
        rows[group] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _counted(row: pd.Series) -> str:
    parts = [f"{row[v]} {v}" for v in VERDICTS if row[v]]
    interim = f" ({row['interim']} of the judged ones interim)" if row["interim"] else ""
    return (", ".join(parts) or "none") + interim


def against_paper(card: pd.DataFrame) -> str:
    """One sentence on where the evidence goes against the papers' own claims: claims not confirmed,
    and claims with two seeds or more whose every seed falls on the wrong side of the rule's
    threshold (``against`` = ``n``) whatever their verdict; or a sentence saying there are none."""
    own = _hypotheses(card[card.source.isin(PAPERS_OWN)])
    wrong = own[(own.verdict == "not confirmed") | ((own.n >= 2) & (own.against >= own.n))]
    if not len(wrong):
        return "No paper claim has evidence against it yet."
    items = [f"{r.claim} ({r.verdict}; {r['difference [CI]']}, {int(r.against)} of {int(r.n)} seeds against)"
             for _, r in wrong.iterrows()]
    return "The evidence goes against the paper in " + "; ".join(items) + "."


CHANGE_COLUMNS = ["paper", "claim", "pre-declared verdict", "verdict", "status", "rule history"]


def revised(card: pd.DataFrame) -> pd.DataFrame:
    """Every claim revised after its data whose verdict under the pre-declared rule differs from its
    verdict under the rule in force: claim, both verdicts, status and rule history."""
    changed = card[card["revised after data"].astype(bool) & (card["declared before data"] != "no")
                   & (card["pre-declared verdict"] != card.verdict)]
    return changed[CHANGE_COLUMNS].reset_index(drop=True)


def declared_after_data(card: pd.DataFrame) -> pd.DataFrame:
    """Every claim whose rule was first declared only after the first run it judges (so it has no
    pre-declared verdict at all)."""
    return card[card["declared before data"] == "no"][CHANGE_COLUMNS].reset_index(drop=True)


NAMES_SEPARATOR = ", "


def _names(runs: pd.DataFrame, column: str) -> str:
    """One notebook's distinct data sets or devices, as one card cell ("-" where none ran)."""
    if column not in runs or not len(runs):
        return "-"
    return NAMES_SEPARATOR.join(sorted(set(runs[column].dropna())))


def _printed(card: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader reads, numbers formatted: budget as a percentage, power in points."""
    out = card.copy()
    if "origin" in card:  # a claim resting on a run from elsewhere, of unverified origin, says so
        out["claim"] = [f"{c} [{UNVERIFIED}]" if UNVERIFIED in str(o) else c for c, o in zip(card.claim, card.origin)]
    out["budget"] = [percent(b) if b == b else "-" for b in card.budget]
    out["detectable"] = [f"{d:.2f}" if d == d else "-" for d in card.detectable]
    return out


READER_COLUMNS = ["paper", "claim", "statement", "paper's number", "ours", "difference [CI]", "n", "budget",
                  "detectable", "verdict"]


def _markdown_table(frame: pd.DataFrame, columns: list[str]) -> str:
    """A GitHub-flavoured markdown table of ``frame``'s ``columns`` ("none" when it has no rows)."""
    if not len(frame):
        return "none"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(str(r[c]).replace("|", "/") for c in columns) + " |")
    return "\n".join(lines)


def rule_changes(card: pd.DataFrame) -> str:
    """In markdown: the verdicts that differ between the pre-declared and the revised rule
    (:func:`revised`), then the claims declared only after their data (:func:`declared_after_data`)."""
    return (f"Verdicts that differ between the pre-declared and the revised rule:\n\n"
            f"{_markdown_table(revised(card), CHANGE_COLUMNS)}\n\n"
            f"Claims declared only after the first run they judge:\n\n"
            f"{_markdown_table(declared_after_data(card), CHANGE_COLUMNS)}\n")


def to_markdown(card: pd.DataFrame) -> str:
    """The scorecard as a GitHub-flavoured markdown table (for the README)."""
    return _markdown_table(_printed(card), READER_COLUMNS)


def summary(card: pd.DataFrame) -> str:
    """What the verdicts of a profile are worth: its budgets and seeds, how many claims they could
    judge, and the verdicts counted separately for the papers' own claims and the study's added
    comparisons (and recaps' advice), each hypothesis once."""
    judged = int(_hypotheses(card).verdict.isin(JUDGED).sum())
    budgets = card.budget[card.budget > 0]
    seeds = ", ".join(str(n) for n in sorted(set(card.seeds)))
    table = counts(card)
    groups = "; ".join(f"{group}: {_counted(row)}" for group, row in table.iterrows() if row["total"])
    head = (f"At {budget_span(budgets)} of the papers' budgets (training images per arm) and {seeds} seed(s) "
            "planned (`n`: how many ran), "
            f"{judged} of {len(_hypotheses(card))} claims can be judged")
    return f"{head}. Verdicts -- {groups}."


def _distinct(cells: pd.Series) -> str:
    """Each name once, from a column whose cells each list one notebook's names (see `_names`);
    notebooks share devices and data, so the cells themselves repeat names."""
    names = sorted({name for cell in cells for name in cell.split(NAMES_SEPARATOR)} - {"-"})
    return NAMES_SEPARATOR.join(names) or "none yet"


def headline(card: pd.DataFrame, profile: str) -> str:
    """The scorecard page's first line, in markdown: the summary, then the data and devices behind it."""
    return (f"**{summary(card)}** {against_paper(card)} Profile `{profile}`; data: {_distinct(card.data)}; "
            f"devices: {_distinct(card.devices)}.")


def write_index(profile: str, card: pd.DataFrame | None = None, root: Path | None = None) -> Path:
    """``results/<profile>/index.html``: a landing page -- what this profile can and cannot show, the
    scorecard with its verdicts in colour, and each notebook with its one-line subject."""
    folder = (root or results_root()) / profile
    pages = {p.stem for p in folder.glob("*.html") if p.name != "index.html"}
    links = "\n".join(
        f'<li><a href="{html.escape(name)}.html">{html.escape(name)}</a>'
        + (f' (<a href="{html.escape(name)}.reader.html">without code</a>)' if f"{name}.reader" in pages else "")
        + f' -- {html.escape(SUBJECTS.get(name, ""))}</li>'
        for name in NOTEBOOKS if name in pages)
    nav, box = index_navigation(folder, profile), store_box(folder, profile)
    table, head = "", ""
    if card is not None and len(card):
        head = f"<p><strong>{html.escape(summary(card))}</strong></p>"
        printed = _printed(card)
        cells = []
        for _, r in printed.iterrows():
            tds = "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in READER_COLUMNS if c != "verdict")
            colour = VERDICT_COLOURS.get(r.verdict, "#eee")
            cells.append(f'<tr>{tds}<td style="background:{colour}">{html.escape(r.verdict)}</td></tr>')
        header = "".join(f"<th>{html.escape(c)}</th>" for c in READER_COLUMNS)
        table = f"<table><thead><tr>{header}</tr></thead><tbody>\n" + "\n".join(cells) + "\n</tbody></table>"
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>lrstudy results: profile {html.escape(profile)}</title>
<style>
body {{font-family: system-ui, sans-serif; line-height: 1.45; max-width: 72em; margin: 1.5em auto; padding: 0 1em; color: #222}}
table {{border-collapse: collapse; font-size: 0.86em; width: 100%}}
th, td {{border-bottom: 1px solid #ddd; padding: 0.3em 0.5em; text-align: left; vertical-align: top}}
th {{background: #f4f4f4; position: sticky; top: 0}}
td:nth-child(5), td:nth-child(6), td:nth-child(7), td:nth-child(8), td:nth-child(9) {{white-space: nowrap}}
li {{margin: 0.2em 0}}
</style></head>
<body>{nav}<h1>Cyclical learning rates, SGDR and super-convergence: profile <code>{html.escape(profile)}</code></h1>
<p>What the profile planned, beside what its runs are from their records:</p>
{box}
{head}
<p>A claim is judged only when its testability rule, fixed before the runs, holds: enough of the paper's
budget, the longer arm levelled off where that matters, and at least two seeds for a yes or a no. Otherwise it
is <em>not testable at this budget</em> or <em>inconclusive (n &lt; 2)</em>, whatever its numbers say.
"detectable" is the smallest difference (points) the seeds could have detected; "budget" the share of the
paper's training images the claim's arms trained. Rows ending in <code>@equal-iterations</code> compare
the shorter arm with the longer one at the same iteration.</p>
<h2>Notebooks</h2>
<ul>
{links}
</ul>
<h2>Scorecard</h2>
{table}
</body></html>
"""
    path = folder / "index.html"
    if card is not None:
        _refuse_fewer_runs(path, card, "index.html")
        text = text.replace("<body>", f"<body>\n{_built_from(card)}", 1)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


_BUILT_FROM = re.compile(r"<!-- built from (\d+) finished runs -->")


def _built_from(card: pd.DataFrame) -> str:
    return f"<!-- built from {finished_runs(card)} finished runs -->"


def _refuse_fewer_runs(path: Path, card: pd.DataFrame, what: str, old_text: str | None = None) -> None:
    """Refuse to replace a table built from more finished runs than ``card`` (said in its
    ``built from`` marker; in a table from before the marker, by its count of claims not run)."""
    try:
        old = path.read_text() if old_text is None else old_text
    except OSError:
        return
    marker = _BUILT_FROM.search(old)
    new_runs = finished_runs(card)
    if marker and int(marker.group(1)) > new_runs:
        raise ValueError(f"{path} ({what}) was built from {marker.group(1)} finished runs, this card from {new_runs}: "
                         "not replaced (give the data those runs were trained on: --data / DATA=)")
    ran_now = int((card.verdict != "not run").sum())
    rows_before = len(re.findall(r"^\| (?!paper \|)", old, flags=re.M)) + old.count("<tr><td>")
    ran_before = rows_before - old.count("| not run |") - old.count(">not run</td>")
    if not marker and ran_now < ran_before:
        raise ValueError(f"{path} ({what}) has {ran_before} claims with runs, this card {ran_now}: not replaced "
                         "(give the data its runs were trained on: --data / DATA=)")


def update_readme(readme: Path, card: pd.DataFrame, profile: str) -> None:
    """Replace the block between the profile's scorecard markers in the README with the generated
    table (``<!-- scorecard:<profile>:begin -->`` ... ``end``)."""
    begin, end = f"<!-- scorecard:{profile}:begin -->", f"<!-- scorecard:{profile}:end -->"
    text = readme.read_text()
    if begin in text and end in text:
        _refuse_fewer_runs(readme, card, f"its {profile} scorecard block",
                           text[text.index(begin):text.index(end, text.index(begin))])
    folder = results_root() / profile
    status = store_status(folder, profile)
    fill_marked_block(readme, begin, end,
                      f"{_built_from(card)}\n_Generated by `python -m lrstudy scorecard --profile {profile} --readme` "
                      f"from the run store (profile `{profile}`). {status} {summary(card)}_\n\n{to_markdown(card)}\n")
    update_status(folder / "README.md", status)


STATUS_BEGIN, STATUS_END = "<!-- status:begin -->", "<!-- status:end -->"


def update_status(readme: Path, status: str) -> None:
    """Write the profile's status line (see ``notebook.store_status``) between the status markers of
    ``results/<profile>/README.md``, where it has them: one source for every status line."""
    if readme.exists() and STATUS_BEGIN in readme.read_text():
        fill_marked_block(readme, STATUS_BEGIN, STATUS_END, f"_{status}_\n")
