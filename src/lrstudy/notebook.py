"""What the study's notebooks share, each one call: checking the parameters papermill injected,
the experiment's settings, its claims and deviations, the caveats of a cut budget, the verdicts.

A notebook tells one experiment's story (claim, method, setup, result, verdict); the cells that
every experiment's notebook has in common live here, so that they read the same everywhere.
"""

from __future__ import annotations

import ast
import math
from typing import Sequence

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from .provenance import names_a_cpu
from .stats import JUDGED, Claim, binomial_se, seeds_needed
from .study import DATA_PARAMETERS, Experiment, Settings, StudyResults, model_name

__all__ = ["NOTEBOOK_PARAMETERS", "check_injected_parameters", "setup", "settings", "claims", "what_ran", "title",
           "budget_note", "trained_on", "verdicts", "worth", "power", "deviations"]

# Every parameter a notebook of the study declares (papermill's -p, `make reproduce`'s variables).
NOTEBOOK_PARAMETERS = ("profile", *DATA_PARAMETERS.values(), "seeds", "device")


def check_injected_parameters(history: Sequence[str] | None = None) -> None:
    """Refuse a parameter papermill injected that no notebook of the study knows (``-p seed 3`` for
    ``seeds``): papermill itself only warns, and the run would go on with the default. ``history``
    is the kernel's executed cell sources (by default, this kernel's); papermill's injected cell is
    the one that starts with the line ``# Parameters`` alone."""
    for source in _kernel_history() if history is None else history:
        if source.split("\n", 1)[0].strip() != "# Parameters":
            continue
        names = [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)]
        unknown = [name for name in names if name not in NOTEBOOK_PARAMETERS]
        if unknown:
            raise ValueError(f"unknown notebook parameter {', '.join(map(repr, unknown))} (given with papermill -p); "
                             f"the study's notebooks take {', '.join(NOTEBOOK_PARAMETERS)}")


def _kernel_history() -> list[str]:
    """The cells executed so far in the IPython kernel we run in (none outside one)."""
    from IPython import get_ipython

    shell = get_ipython()
    return list(shell.user_ns.get("In", [])) if shell is not None else []


def setup() -> None:
    """A notebook's first call: refuse unknown injected parameters, and show whole table cells
    with three significant decimals."""
    check_injected_parameters()
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_colwidth", None)


def settings(experiment: Experiment, profile: str, seeds: int | None = None, device: str | None = None,
             **data: str | None) -> Settings:
    """:func:`setup`, then the experiment's settings under the notebook's parameters."""
    setup()
    return experiment.settings(profile, seeds=seeds, device=device, **data)


def claims(experiment: Experiment, s: Settings | None = None) -> pd.DataFrame:
    """The claims, their verdict rules and their testability rules, as fixed before any run; with
    settings, also what each claim's arms train under this profile."""
    rows = []
    for c in experiment.claims:
        row = {"claim": c.id, "statement": c.text, "rule": c.rule, "testable when": c.testable.rule()}
        if s is not None:
            arms = dict.fromkeys(r for label in c.labels for r in experiment.inputs(label))
            row["what runs here"] = "; ".join(f"{arm}: {experiment.what_ran(s, arm)}" for arm in arms)
        row["rule changed"] = c.changed
        rows.append(row)
    return pd.DataFrame(rows).set_index("claim")


def what_ran(experiment: Experiment, s: Settings, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Each row's setting as it trains under this profile, next to the paper's where they differ."""
    labels = list(labels or experiment.scaled_rows(s))
    return pd.DataFrame({"setting": labels, "what runs here": [experiment.what_ran(s, label) for label in labels]}
                        ).set_index("setting")


def title(experiment: Experiment, s: Settings, labels: Sequence[str]) -> str:
    """A figure's title saying what ran: each setting's iterations here against the paper's, and
    the network where the profile changed it ("ResNet-20 (paper: ResNet-56); one cycle: 40
    iterations (paper: 10,000); ...")."""
    paper, ran = experiment.rows(), experiment.scaled_rows(s)
    shown = [label for label in labels if label in ran]
    networks = {model_name(ran[label].model): model_name(paper[label].model) for label in shown}
    head = "; ".join(f"{here} (paper: {there})" if here != there else here for here, there in networks.items())
    lengths = "; ".join(f"{label}: {ran[label].iterations:,} it." + (
        f" (paper: {paper[label].iterations:,})" if ran[label].iterations != paper[label].iterations else "")
        for label in shown)
    return f"{head}\n{lengths}" if head else lengths


def budget_note(s: Settings, what: str = "Final test accuracy (%)", runs: pd.DataFrame | None = None) -> Markdown:
    """What a results table holds: the data, profile and seeds, where its runs were trained (given
    ``runs``), and -- under a cut budget -- that only the ordering of its numbers can be compared
    with the paper's."""
    # a profile's seeds are what it plans; a store filled in part (a campaign under way) holds fewer
    text = (f"{what} on **{s.data_name}**, profile `{s.profile.name}`, {len(s.seeds)} seed(s) planned "
            "(the table says how many ran); "
            "the paper's numbers are from CIFAR-10 at the paper's budgets.")
    if runs is not None:
        text += " " + trained_on(runs, s)
    if s.knobs.get("budget_scale", 1) != 1:
        text += (f" **This profile trains {s.knobs['budget_scale']:g} of the paper's iterations, so its"
                 " accuracies are not comparable with the paper's; only the ordering is of interest.**")
    return Markdown(text)


def trained_on(runs: pd.DataFrame, s: Settings) -> str:
    """Where the stored runs were trained, as one sentence. The settings name the device that
    *missing* runs would train on; a store can hold runs from another machine (the `full` profile
    plans a GPU, and its first runs came from a CPU), and a reader must not take one for the other."""
    ran = runs.dropna(subset=["device"])
    if ran.empty:
        return "No run has been trained yet."
    groups = ran.groupby(["device", "precision"], sort=False).size()
    where = "; ".join(f"{device}, {precision} ({count} run{'s' if count > 1 else ''})"
                      for (device, precision), count in groups.items())
    text = f"Trained on: {where}."
    on_cpu = ran.device.map(names_a_cpu)
    if s.device == "cuda" and on_cpu.any():
        text += f" The profile plans a CUDA GPU; {int(on_cpu.sum())} of these runs were trained on a CPU instead."
    return text


VERDICT_COLUMNS = ["text", "a", "b", "difference", "ci_low", "ci_high", "n", "budget", "detectable", "verdict",
                   "basis"]


def verdicts(experiment: Experiment, s: Settings, results: StudyResults) -> pd.DataFrame:
    """Every claim judged by its rules, after one line saying what these verdicts are worth here:
    how many claims this profile's budget and seeds can test at all."""
    table = experiment.verdicts(s, results)
    display(Markdown(worth(table, s)))
    return table[VERDICT_COLUMNS]


def worth(table: pd.DataFrame, s: Settings) -> str:
    """One sentence on what a table of verdicts can show: how many claims were judged, and why the
    others were not."""
    counts = table.verdict.value_counts()
    judged = int(table.verdict.isin(JUDGED).sum())
    budgets = table.budget[table.budget > 0]
    span = budget_span(budgets)
    equal = table.index.str.endswith("@equal-iterations").sum()
    return (f"**What these verdicts are worth:** profile `{s.profile.name}` trains {span} of the paper's images per arm, "
            f"with {len(s.seeds)} seed(s) planned (`n`: how many ran). {judged} of {len(table)} claims could be judged; "
            f"{counts.get('not testable at this budget', 0)} are not testable at this budget, "
            f"{counts.get('inconclusive (n < 2)', 0)} have one seed (never enough for a yes or a no), and "
            f"{counts.get('not run', 0)} are not run. {equal} rows compare arms at equal iterations: the comparison "
            "a short budget can make.")


def percent(fraction: float) -> str:
    """A budget fraction as a reader wants it: two significant digits, never in exponent form
    (0.0004 -> "0.04%", 0.25 -> "25%", 1.0 -> "100%")."""
    return f"{float(f'{fraction * 100:.2g}'):g}%"


def budget_span(budgets: pd.Series) -> str:
    """The range of budget fractions, as a reader wants it: "2%", "0.04%-0.5%"."""
    if not len(budgets):
        return "none"
    low, high = percent(budgets.min()), percent(budgets.max())
    return low if low == high else f"{low}-{high}"


def power(experiment: Experiment, s: Settings, results: StudyResults) -> pd.DataFrame:
    """Per claim with the paper's numbers for both arms: the effect the seeds must resolve for those
    numbers to pass the rule, the spread of paired differences (observed here with two seeds or
    more, else planned from the test set's binomial error), and the seeds the fast and full profiles
    (full test set) would need to detect it at 95% confidence four times in five."""
    paper = experiment.paper().set_index("setting").value.astype(float)
    table = experiment.verdicts(s, results)
    values = experiment.measures(s, results)
    rows = []
    for c in experiment.claims:
        if not isinstance(c, Claim) or c.a not in paper or c.b not in paper:
            continue
        effect = c.effect_to_detect(paper[c.a], paper[c.b])
        seeds = sorted(set(values.get(c.a, {})) & set(values.get(c.b, {})))
        if len(seeds) >= 2:
            spread = float(np.std([values[c.a][k] - values[c.b][k] for k in seeds], ddof=1))
            basis = f"observed over {len(seeds)} seeds"
        else:
            spread = math.hypot(binomial_se(paper[c.a], 10_000), binomial_se(paper[c.b], 10_000))
            basis = "planned: binomial error of 10,000 test images"
        need = seeds_needed(effect, spread)
        rows.append({"claim": c.id, "paper": f"{paper[c.a]:g} vs {paper[c.b]:g}", "effect to resolve": effect,
                     "spread of differences": spread, "spread from": basis,
                     "seeds needed": need if need is not None else "more than 100 (or no effect to resolve)",
                     "detectable with this profile's seeds": table.loc[c.id, "detectable"]})
    return pd.DataFrame(rows).set_index("claim") if rows else pd.DataFrame()


def deviations(experiment: Experiment, s: Settings | None = None) -> Markdown:
    """Where the experiment departs from the paper, and why -- with the profile's own departures
    (a cut budget, bf16 arithmetic) when settings are given."""
    lines = list(experiment.deviations)
    if s is not None:
        if s.precision == "bf16":
            lines.append(f"Profile `{s.profile.name}` runs forward passes under bfloat16 autocast (weights and updates "
                         "in float32); the papers trained in float32.")
        if s.knobs.get("budget_scale", 1) != 1 or s.knobs.get("batch_scale", 1) != 1:
            lines.append(f"Profile `{s.profile.name}` trains {s.knobs.get('budget_scale', 1):g} of the paper's "
                         f"iterations at {s.knobs.get('batch_scale', 1):g} of its batch (rates scaled with the "
                         "batch); what each row trains is listed with the claims.")
    return Markdown("\n".join(f"- {d}" for d in lines))
