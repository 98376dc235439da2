"""What the study's notebooks share, each one call: checking the parameters papermill injected,
the experiment's settings, its claims and deviations, the caveats of a cut budget, the verdicts.

A notebook tells one experiment's story (claim, method, setup, result, verdict); the cells that
every experiment's notebook has in common live here, so that they read the same everywhere.
"""

from __future__ import annotations

import ast
from typing import Sequence

import pandas as pd
from IPython.display import Markdown, display

from .study import DATA_PARAMETERS, Experiment, Settings, StudyResults

__all__ = ["NOTEBOOK_PARAMETERS", "check_injected_parameters", "setup", "settings", "claims", "budget_note",
           "verdicts", "deviations"]

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


def claims(experiment: Experiment) -> pd.DataFrame:
    """The claims and their verdict rules, as fixed before any run."""
    return pd.DataFrame([{"claim": c.id, "statement": c.text, "rule": c.rule} for c in experiment.claims]
                        ).set_index("claim")


def budget_note(s: Settings, what: str = "Final test accuracy (%)") -> Markdown:
    """What a results table holds: the data, profile and seeds, and -- under a cut budget -- that
    only the ordering of its numbers can be compared with the paper's."""
    text = (f"{what} on **{s.data_name}**, profile `{s.profile.name}`, {len(s.seeds)} seed(s); "
            "the paper's numbers are from CIFAR-10 at the paper's budgets.")
    if s.knobs.get("budget_scale", 1) != 1:
        text += (f" **This profile trains {s.knobs['budget_scale']:g} of the paper's iterations, so its"
                 " accuracies are not comparable with the paper's; only the ordering is of interest.**")
    return Markdown(text)


def verdicts(experiment: Experiment, s: Settings, results: StudyResults) -> pd.DataFrame:
    """Every claim judged by its rule (after a note, under a cut budget, that the verdicts describe
    that short training only)."""
    if s.knobs.get("budget_scale", 1) < 1:
        display(Markdown(f"**At {s.knobs['budget_scale']:g} of the paper's budget these verdicts describe this "
                         "short training only; they neither confirm nor refute the paper.**"))
    table = experiment.verdicts(s, results)
    return table[["text", "difference", "ci_low", "ci_high", "n", "verdict", "basis"]]


def deviations(experiment: Experiment) -> Markdown:
    """Where the experiment departs from the paper, and why."""
    return Markdown("\n".join(f"- {d}" for d in experiment.deviations))
