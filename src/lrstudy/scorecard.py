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

from .archive import UNVERIFIED
from .config import load_profile
from .experiments import EXPERIMENTS
from .notebook import budget_span, percent
from .paths import fill_marked_block, results_root
from .stats import JUDGED, VERDICTS

__all__ = ["collect", "to_markdown", "summary", "write_index", "update_readme", "PAPERS", "finished_runs",
           "altered_records", "stored_labels"]

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
    """The paper's numbers behind a claim, from its cited table, e.g. ``81.4 vs 81.4``."""
    if hasattr(claim, "target"):
        return claim.shown or f"{claim.target:.3g}"
    if hasattr(claim, "threshold"):
        return f">= {claim.threshold:g}"
    if getattr(claim, "added", False):
        return "(not in the paper)"
    values = []
    for setting in (claim.a, claim.b):
        match = paper[paper.setting == setting] if len(paper) else paper
        values.append(f"{match.value.iloc[0]:g}" if len(match) else "-")
    return "-" if values == ["-", "-"] else " vs ".join(values)


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


def collect(profile: str, experiments: list[str] | None = None, **data: str | None) -> pd.DataFrame:
    """One row per claim across the study's experiments, judged on the stored runs of ``profile``.
    ``data`` holds the sources the runs were trained on, by parameter (``data=``, ``data_cifar100=``,
    ...; None: the profile's). The numbers stay numbers (``a``, ``b``, ``difference``, ``ci_low``,
    ``ci_high``, ``budget``, ``detectable``, read as ``kind`` says); ``ours``, ``difference [CI]``
    and ``paper's number`` are their printed forms."""
    rows = []
    finished: set[str] = set()
    for name in experiments or EXPERIMENTS:
        experiment = EXPERIMENTS[name]
        s = experiment.settings(profile, **experiment.sources_taken(data))
        results = experiment.run(s, progress=False, train_missing=False)
        verdicts = experiment.verdicts(s, results)
        paper = experiment.paper()
        runs = results.runs
        done = runs[runs.status.isin(["finished", "diverged"])]
        finished.update(done.run_id)
        for claim in experiment.claims:
            v = verdicts.loc[claim.id].to_dict()
            arms = {row for label in claim.labels for row in experiment.inputs(label)}
            rows.append({
                "paper": _paper_of(name),
                "notebook": name,
                "claim": claim.id,
                "statement": claim.text,
                "paper's number": _paper_numbers(paper, claim),
                "ours": _ours(v, claim),
                "difference [CI]": _difference(v, claim),
                "kind": _kind(claim),
                "a": v["a"],
                "b": v["b"],
                "difference": v["difference"],
                "ci_low": v["ci_low"],
                "ci_high": v["ci_high"],
                "n": int(v["n"]),
                "budget": v["budget"],
                "detectable": v["detectable"],
                "verdict": v["verdict"],
                "rule": claim.rule,
                "testable when": claim.testable.rule(),
                "rule changed": claim.changed,
                "basis": v["basis"],
                "profile": profile,
                "seeds": len(s.seeds),
                "data": _names(done, "data"),
                "devices": _names(done, "device"),
                "origin": _names(done[done.setting.isin(arms)], "origin"),
            })
    card = pd.DataFrame(rows)
    card.attrs["finished_runs"] = len(finished)
    return card


def finished_runs(card: pd.DataFrame) -> int:
    """How many distinct finished (or diverged) runs a card was judged on."""
    return int(card.attrs.get("finished_runs", 0))


def altered_records(profile: str, experiments: list[str] | None = None, **data: str | None) -> list[str]:
    """The ids of the runs of ``profile`` (under the sources ``data``) whose stored record fails
    verification (a CSV or JSON edited, a file missing): the card leaves them out."""
    from .runqueue import stored_status
    from .runs import RunStore

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


def to_markdown(card: pd.DataFrame) -> str:
    """The scorecard as a GitHub-flavoured markdown table (for the README)."""
    printed = _printed(card)
    lines = ["| " + " | ".join(READER_COLUMNS) + " |", "|" + "---|" * len(READER_COLUMNS)]
    for _, r in printed.iterrows():
        cells = [str(r[c]).replace("|", "/") for c in READER_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(card: pd.DataFrame) -> str:
    """One sentence on what the verdicts of a profile are worth: its budgets and seeds, how many
    claims they could judge, and how many rows compare at equal iterations."""
    counts = card.verdict.value_counts()
    judged = int(card.verdict.isin(JUDGED).sum())
    budgets = card.budget[card.budget > 0]
    equal = int(card.claim.str.endswith("@equal-iterations").sum())
    seeds = ", ".join(str(n) for n in sorted(set(card.seeds)))
    verdicts = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in VERDICTS if counts.get(v, 0))
    head = (f"At {budget_span(budgets)} of the papers' budgets (training images per arm) and {seeds} seed(s) "
            "planned (`n`: how many ran), "
            f"{judged} of {len(card)} claims can be judged")
    return f"{head}; {equal} rows compare the arms at equal iterations. Verdicts: {verdicts}."


def _distinct(cells: pd.Series) -> str:
    """Each name once, from a column whose cells each list one notebook's names (see `_names`);
    notebooks share devices and data, so the cells themselves repeat names."""
    names = sorted({name for cell in cells for name in cell.split(NAMES_SEPARATOR)} - {"-"})
    return NAMES_SEPARATOR.join(names) or "none yet"


def headline(card: pd.DataFrame, profile: str) -> str:
    """The scorecard page's first line, in markdown: the summary, then the data and devices behind it."""
    return (f"**{summary(card)}** Profile `{profile}`; data: {_distinct(card.data)}; "
            f"devices: {_distinct(card.devices)}.")


def write_index(profile: str, card: pd.DataFrame | None = None, root: Path | None = None) -> Path:
    """``results/<profile>/index.html``: a landing page -- what this profile can and cannot show, the
    scorecard with its verdicts in colour, and each notebook with its one-line subject."""
    folder = (root or results_root()) / profile
    pages = {p.stem for p in folder.glob("*.html") if p.name != "index.html"}
    description = load_profile(profile).description
    links = "\n".join(
        f'<li><a href="{html.escape(name)}.html">{html.escape(name)}</a> -- {html.escape(SUBJECTS.get(name, ""))}</li>'
        for name in NOTEBOOKS if name in pages)
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
<body><h1>Cyclical learning rates, SGDR and super-convergence: profile <code>{html.escape(profile)}</code></h1>
<p>{html.escape(description)}</p>
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
    fill_marked_block(readme, begin, end,
                      f"{_built_from(card)}\n_Generated by `python -m lrstudy scorecard --profile {profile} --readme` from the run store "
                      f"(profile `{profile}`). {summary(card)}_\n\n{to_markdown(card)}\n")
