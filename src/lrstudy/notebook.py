"""What the study's notebooks share, each one call: checking the parameters papermill injected,
the experiment's settings, its claims and deviations, the caveats of a cut budget, the verdicts.

A notebook tells one experiment's story (claim, method, setup, result, verdict); the cells that
every experiment's notebook has in common live here, so that they read the same everywhere.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import html
import math
import os
import re
from typing import Sequence

import numpy as np
import pandas as pd
from IPython.display import HTML, Markdown, display
from pandas.io.formats.style import Styler

from .config import DATA_PARAMETERS, Settings, quoted_rows_by_precision
from .experiments import EXPERIMENTS, load_profile
from .pages import stored_records
from .paths import results_root
from .plots import schedule_frame
from .provenance import names_a_cpu
from .stats import JUDGED, Claim, binomial_se, seeds_needed
from .study import Experiment, StudyResults, model_name

__all__ = ["NOTEBOOK_PARAMETERS", "check_injected_parameters", "setup", "settings", "claims", "what_ran", "title",
           "budget_note", "trained_on", "verdicts", "worth", "power", "deviations", "readable", "ran", "header",
           "plan_and_ran", "takeaway", "caption", "ran_label", "model_name"]

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
    """A notebook's first call: refuse unknown injected parameters, and show every table whole
    (all rows, whole cells) and readable (see :func:`readable`)."""
    check_injected_parameters()
    pd.set_option("display.precision", 2)
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.max_rows", None)
    pd.set_option("display.max_columns", None)
    pd.set_option("display.width", 250)
    pd.set_option("display.multi_sparse", False)  # every row names its group: a long table is read row by row
    pd.set_option("styler.sparse.index", False)
    _show_tables_readable()


def _show_tables_readable() -> None:
    """Make the kernel draw every DataFrame and Series through :func:`readable`, so that no table of
    a page is cut to ten rows or shows NaN, 1.149e-02 or a dict's repr (nothing outside a kernel)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    html = shell.display_formatter.formatters["text/html"]
    html.for_type(pd.DataFrame, table_html)
    html.for_type(pd.Series, lambda series: table_html(series.to_frame()))


def table_html(table: pd.DataFrame) -> str:
    """A table as a page draws it: :func:`readable`, with its text columns aligned left (the lab
    template right-aligns every cell, which makes sentences hard to read)."""
    shown = readable(table)
    text = [i for i in range(table.shape[1]) if not pd.api.types.is_numeric_dtype(table.iloc[:, i])
            and not all(_numeric_text(v) for v in shown.iloc[:, i])]
    styles = [{"selector": f"td.col{i}, th.col_heading.col{i}", "props": "text-align: left"} for i in text]
    # an id from the content, not a random one: a page re-rendered from the same runs stays the same
    uuid = hashlib.sha256(shown.to_csv().encode()).hexdigest()[:10]
    # no id on every data cell (cell_ids=False): the styles select columns by class, and the ids were
    # a fifth of a page's bytes
    return Styler(shown, uuid=uuid, cell_ids=False).set_table_styles(styles).to_html()


def _numeric_text(cell: str) -> bool:
    return bool(re.fullmatch(r"[-+–]?[\d,.]*%?|–", cell))


# column names as a reader says them
READABLE_NAMES = {"final_test_acc": "final test accuracy (%)", "final_train_acc": "final train accuracy (%)",
                  "test_acc": "test accuracy (%)", "train_acc": "train accuracy (%)", "ci_low": "95% CI low",
                  "ci_high": "95% CI high", "ours_mean": "ours (mean)", "ours_ci95": "ours, 95% CI",
                  "per_seed": "per seed", "paper_iterations": "paper's iterations", "train_s": "training time (s)",
                  "steps_done": "updates done", "code_modified": "code modified", "run_id": "run id",
                  "recommended_epoch": "recommended epoch", "recommended_acc": "recommended accuracy (%)"}
MISSING = "–"  # what an empty cell shows: never NaN, <NA> or None


def readable_name(name) -> str:
    """A column or index name as a reader says it (``ours_mean`` -> "ours (mean)")."""
    if not isinstance(name, str):
        return name
    return READABLE_NAMES.get(name, name.replace("_", " "))


def _is_missing(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(isinstance(value, (float, np.floating)) and math.isnan(value))
    except TypeError:
        return False


def format_number(value: float, whole: bool = False) -> str:
    """A number as a page prints it: whole numbers with thousands separators; otherwise two decimals,
    or two significant digits below 0.1 -- in exponent form only below a millionth (80.34, 0.011,
    0.0004, 4.5e-15)."""
    if whole or float(value).is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    if abs(value) >= 0.1:
        return f"{value:.2f}"
    if abs(value) < 1e-6:  # rounding noise (4.5e-15): its order of magnitude is all there is to read
        return f"{value:.1e}"
    return np.format_float_positional(float(value), precision=2, unique=True, fractional=False, trim="-")


def format_cell(value, whole: bool = False) -> str:
    """One table cell as text: numbers by :func:`format_number`, a dict as ``key=value`` pairs, a list
    joined by commas, a missing value as a dash."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_cell(v)}" for k, v in value.items()) or MISSING
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(format_cell(v) for v in value) or MISSING
    if _is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, (float, np.floating)):
        return format_number(float(value), whole)
    text = str(value)
    return text if text not in ("nan", "NaN", "<NA>", "None", "") else MISSING


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """A table as a page shows it: every cell text (see :func:`format_cell`), a float column that
    holds only whole numbers printed as whole numbers, names without underscores."""
    columns = {}
    for i in range(table.shape[1]):
        values = table.iloc[:, i]
        numeric = values.dtype.kind in "fiu" or str(values.dtype) in ("Int64", "Float64")
        present = pd.to_numeric(values, errors="coerce").dropna() if numeric else pd.Series(dtype=float)
        whole = len(present) > 0 and all(float(v).is_integer() for v in present)
        columns[i] = [format_cell(v, whole) for v in values]
    out = pd.DataFrame(columns, index=table.index)
    out.columns = table.columns
    out.columns = [readable_name(c) for c in out.columns] if not isinstance(out.columns, pd.MultiIndex) else out.columns
    out.columns.name = readable_name(table.columns.name)
    if not isinstance(out.index, pd.MultiIndex):
        out.index = [format_cell(v) if not isinstance(v, str) else v for v in out.index]
        out.index.name = readable_name(table.index.name)
    else:
        out.index.names = [readable_name(n) for n in table.index.names]
    return out


def settings(experiment: Experiment, profile: str, seeds: int | None = None, device: str | None = None,
             **data: str | None) -> Settings:
    """:func:`setup`, then the experiment's settings under the notebook's parameters; they train
    the runs the store lacks unless ``LRSTUDY_TRAIN=no`` (``make reproduce TRAIN=no``: pages are
    rendered from the store alone, on a machine that should not train the rest)."""
    setup()
    s = experiment.settings(profile, seeds=seeds, device=device, **data)
    return dataclasses.replace(s, train=os.environ.get("LRSTUDY_TRAIN", "yes") != "no")


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
    if s.knobs.budget_scale != 1:
        text += (f" **This profile trains {s.knobs.budget_scale:g} of the paper's iterations, so its"
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
        text += f" The profile plans a GPU; {int(on_cpu.sum())} of these runs were trained on a CPU instead."
    return text


VERDICT_COLUMNS = ["text", "a", "b", "difference", "ci_low", "ci_high", "n", "budget", "detectable", "verdict",
                   "basis"]


def verdicts(experiment: Experiment, s: Settings, results: StudyResults) -> pd.DataFrame:
    """Every claim judged by its rules, after one line saying what these verdicts are worth here:
    how many claims this profile's budget and seeds can test at all."""
    table = experiment.verdicts(s, results)
    display(Markdown(worth(table, s)))
    shown = table[[c for c in VERDICT_COLUMNS if c in table] + [c for c in table if c not in VERDICT_COLUMNS
                                                               and c not in ("changed", "rule", "testable when")]]
    return shown.assign(budget=[percent(b) if b == b else None for b in shown.budget])


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
        others = quoted_rows_by_precision(s.row_precision, besides=s.precision)  # rows unlike the notebook
        if s.precision == "bf16":  # the whole notebook, less the rows the profile keeps in float32
            which = f"runs every row but {', '.join(others['fp32'])} with" if "fp32" in others else "runs"
        else:
            which = f"runs the rows {', '.join(others['bf16'])} with" if "bf16" in others else ""
        if which:
            lines.append(f"Profile `{s.profile.name}` {which} forward passes under bfloat16 autocast (weights and "
                         "updates in float32); the papers trained in float32.")
        batch_scale = getattr(s.knobs, "batch_scale", 1)
        if s.knobs.budget_scale != 1 or batch_scale != 1:
            lines.append(f"Profile `{s.profile.name}` trains {s.knobs.budget_scale:g} of the paper's "
                         f"iterations at {batch_scale:g} of its batch (rates scaled with the "
                         "batch); what each row trains is listed with the claims.")
    return Markdown("\n".join(f"- {d}" for d in lines))


def _device_kind(device: str) -> str:
    """A planned device (cpu, cuda, auto) or a stored device name, as a reader says it."""
    planned = {"cpu": "a CPU", "cuda": "a GPU", "auto": "a GPU where there is one, else a CPU"}
    return planned.get(device) or _devices_text([device])


def _devices_text(devices: Sequence[str]) -> str:
    """Stored device names as a reader says them: "a CPU (AMD EPYC, 1 thread)", "CPUs (AMD EPYC, 1
    thread; Intel Xeon, 1 thread)", "a GPU (NVIDIA H100)"."""
    cpus = [_cpu_name(d) for d in devices if names_a_cpu(d)]
    gpus = [d for d in devices if not names_a_cpu(d)]
    parts = []
    if cpus:
        parts.append(("a CPU" if len(cpus) == 1 else "CPUs") + f" ({'; '.join(cpus)})")
    if gpus:
        parts.append(("a GPU" if len(gpus) == 1 else "GPUs") + f" ({'; '.join(gpus)})")
    return " and ".join(parts) or "no device yet"


def _cpu_name(device: str) -> str:
    """``CPU: AMD EPYC (1 threads)`` -> ``AMD EPYC, 1 thread``."""
    match = re.fullmatch(r"\S+ (.*) \((\d+) threads?\)", device)
    if not match:
        return device.split(" ", 1)[-1]
    name, threads = match.groups()
    return f"{name}, {threads} thread{'s' if threads != '1' else ''}"


def _seeds_text(seeds: Sequence[int]) -> str:
    """``[1, 2, 3]`` -> "seeds 1-3", ``[1, 3]`` -> "seeds 1, 3", ``[1]`` -> "seed 1"."""
    seeds = sorted(seeds)
    if not seeds:
        return "no seed"
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def _span(values: Sequence[float], fmt=lambda v: f"{v:,}") -> str:
    low, high = min(values), max(values)
    return fmt(low) if low == high else f"{fmt(low)}-{fmt(high)}"


def ran(results: StudyResults) -> dict:
    """What the stored runs of a notebook are, from their records only: run ids, devices, precisions,
    data, seeds (and how many per setting), iterations, networks, learning-rate range, compute hours
    and commits. Profile defaults never stand in for any of these."""
    runs = results.runs
    done = runs[runs.status.isin(["finished", "diverged"])] if len(runs) else runs
    by_id = {config.id: config for config in results.configs}
    configs = [by_id[i] for i in done.run_id] if len(done) else []
    curves = results.curves
    lrs = curves.lr.dropna() if "lr" in curves else pd.Series(dtype=float)
    lrs = lrs[lrs > 0]
    per_setting = done.groupby("setting").seed.nunique() if len(done) else pd.Series(dtype=int)
    return {
        "run_ids": list(done.run_id),
        "devices": sorted(set(done.device.dropna())) if len(done) else [],
        "precisions": sorted(set(done.precision.dropna())) if len(done) else [],
        "data": sorted(set(done.data.dropna())) if len(done) else [],
        "seeds": sorted({int(s) for s in done.seed}) if len(done) else [],
        "seeds_per_setting": (int(per_setting.min()), int(per_setting.max())) if len(per_setting) else (0, 0),
        "iterations": sorted({int(c.iterations) for c in configs}),
        "networks": sorted({model_name(c.model) for c in configs}),
        "lr": (float(lrs.min()), float(lrs.max())) if len(lrs) else None,
        "hours": float(pd.to_numeric(done.train_s, errors="coerce").sum() / 3600) if len(done) else 0.0,
        "commits": sorted({str(c)[:7] for c in done.commit.dropna()}) if len(done) else [],
        "runs": len(done),
        "planned_runs": len(runs),
    }


def _ran_sentence(r: dict) -> str:
    if not r["runs"]:
        return "nothing yet: no run of this notebook is in the store"
    low, high = r["seeds_per_setting"]
    per = f"{low}" if low == high else f"{low}-{high}"
    devices = _devices_text(r["devices"])
    return (f"{r['runs']} runs, {_seeds_text(r['seeds'])} ({per} per setting), on {devices}, "
            f"{', '.join(r['precisions'])}")


def _plan_sentence(s: Settings, planned_runs: int) -> str:
    # no device: a header says where runs trained only from their records (the settings table and the
    # deviations set the profile's planned device beside them)
    return f"{planned_runs} runs, {len(s.seeds)} seed(s) per setting, {s.precision_text}"


def plan_and_ran(experiment: Experiment, s: Settings, results: StudyResults) -> pd.DataFrame:
    """The settings table: what the profile plans beside what the stored runs are, one row per
    setting a reader asks about (device, precision, data, seeds, iterations, network, ...)."""
    r = ran(results)
    plan_rows = experiment.scaled_rows(s)
    planned_iterations = sorted({row.iterations for row in plan_rows.values()}) or [0]
    paper_iterations = sorted({row.iterations for row in experiment.rows().values()}) or [0]
    none = "none yet"
    rows = [
        ("profile", s.profile.name, s.profile.name),
        ("device", _device_kind(s.device), "; ".join(r["devices"]) or none),
        ("precision", s.precision_text, ", ".join(r["precisions"]) or none),
        ("data", "; ".join(describe for describe in _data_labels(s)), "; ".join(r["data"]) or none),
        ("seeds", _seeds_text(list(s.seeds)), _seeds_text(r["seeds"]) if r["runs"] else none),
        ("runs", f"{r['planned_runs']:,}", f"{r['runs']:,}"),
        ("iterations per run", _span(planned_iterations) + f" (paper: {_span(paper_iterations)})",
         _span(r["iterations"]) if r["iterations"] else none),
        ("networks", ", ".join(sorted({model_name(row.model) for row in plan_rows.values()})),
         ", ".join(r["networks"]) or none),
        ("learning rates", "as each setting's schedule",
         _span(r["lr"], format_number) if r["lr"] else none),
        ("compute", "", f"{r['hours']:.1f} hours of training" if r["runs"] else none),
        ("commit", "", ", ".join(r["commits"]) or none),
    ]
    return pd.DataFrame(rows, columns=["", "planned (profile)", "ran (run records)"]).set_index("")


def _data_labels(s: Settings) -> list[str]:
    return [source.label for source in s.data.values()]


def header(experiment: Experiment, s: Settings, results: StudyResults, claim: str) -> pd.DataFrame:
    """The page's summary box, in the style of a reproducibility report -- the claim, the setup
    that ran beside the plan, the results in three lines, the deviations -- then the settings table
    (:func:`plan_and_ran`). Every number in it comes from the run records; the box carries the ids
    of the runs it describes, so that the page test can check its devices and seeds against them."""
    r = ran(results)
    table = experiment.verdicts(s, results)
    plan, did = _plan_sentence(s, r["planned_runs"]), _ran_sentence(r)
    setup_line = f"planned: {plan}; ran: {did}." if plan != did else f"ran as planned: {did}."
    lines = _result_lines(table, _added(experiment), {c.id: c for c in experiment.claims})
    budget = s.knobs.budget_scale
    deviations = [f"{len(experiment.deviations)} listed under Deviations from the paper"]
    if budget != 1:
        deviations.append(f"this profile trains {budget:g} of the paper's iterations")
    if r["runs"] and len(r["seeds"]) < len(s.seeds):
        deviations.append(f"{len(r['seeds'])} of {len(s.seeds)} planned seeds ran")
    if r["devices"] and not all(_same_kind(s.device, d) for d in r["devices"]):
        deviations.append(f"trained on {_devices_text(r['devices'])}, not on {_device_kind(s.device)} as the profile plans")
    data = "; ".join(r["data"]) or "; ".join(_data_labels(s))
    box = f"""<div class="lrstudy-summary" style="border:1px solid #9ab;border-radius:6px;padding:0.6em 1em;background:#f5f9fc"
 data-ran-devices="{_attr('|'.join(r['devices']))}" data-ran-seeds="{','.join(map(str, r['seeds']))}"
 data-run-ids="{' '.join(r['run_ids'])}">
<p><strong>Claim.</strong> {_esc(claim)}</p>
<p><strong>Setup.</strong> {_esc(setup_line)} Data: {_esc(data)}. Iterations per run:
{_esc(_span(r['iterations']) if r['iterations'] else 'none yet')}; networks: {_esc(', '.join(r['networks']) or 'none yet')};
{_esc(f"{r['hours']:.1f}")} compute hours; commit {_esc(', '.join(r['commits']) or '-')}.</p>
<p><strong>Results.</strong><br>{'<br>'.join(_esc(line) for line in lines)}</p>
<p><strong>Deviations.</strong> {_esc('; '.join(deviations))}.</p>
</div>"""
    display(HTML(box))
    return plan_and_ran(experiment, s, results)


def _same_kind(planned: str, stored: str) -> bool:
    return planned == "auto" or (planned == "cpu") == names_a_cpu(stored)


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


def _verdicts_of(table: pd.DataFrame) -> pd.Series:
    """The verdict each claim stands at (the revised one where a table has both)."""
    return table["verdict"].astype(str) if "verdict" in table else pd.Series(dtype=str)


def _result_lines(table: pd.DataFrame, added: set[str] = frozenset(), claims: dict | None = None) -> list[str]:
    """Three lines: how the paper's claims came out (the study's added comparisons counted apart);
    which were confirmed; which went against the paper -- not confirmed, or inconclusive with the
    estimate on the wrong side of the rule's line -- and which stay open."""
    verdicts = _verdicts_of(table)
    paper = verdicts[~verdicts.index.isin(list(added))]
    extra = verdicts[verdicts.index.isin(list(added))]

    def counts(part: pd.Series) -> str:
        return ", ".join(f"{n} {v}" for v, n in part.value_counts().items()) or "none"

    def named(ids) -> str:
        return ", ".join(c + (" (added)" if c in added else "") for c in ids) or "none"

    first = f"The paper's claims: {int(paper.isin(JUDGED).sum())} of {len(paper)} judged ({counts(paper)})"
    if len(extra):
        first += f"; the study's added comparisons: {int(extra.isin(JUDGED).sum())} of {len(extra)} judged ({counts(extra)})"
    against = list(verdicts.index[verdicts == "not confirmed"])
    leaning, open_ = [], []
    for claim_id in verdicts.index[verdicts.str.startswith("inconclusive")]:
        difference = table.loc[claim_id, "difference"] if "difference" in table else math.nan
        if _leans_against((claims or {}).get(claim_id), difference):
            leaning.append(f"{claim_id} ({difference:+.2f})")
        else:
            open_.append(claim_id)
    third = (f"Against the paper: not confirmed: {named(against)}; inconclusive with the estimate on the wrong side "
             f"of the rule: {', '.join(leaning) or 'none'}. Still open: {named(open_)}.")
    return [first + ".", f"Confirmed: {named(verdicts.index[verdicts == 'confirmed'])}.", third]


def _leans_against(claim, difference: float) -> bool:
    """Whether a comparison's estimate lies where its rule would not confirm it (below the margin
    of a "better" or "not worse" claim, outside that of an "equivalent" one)."""
    kind, margin = getattr(claim, "kind", None), getattr(claim, "margin", None)
    if kind is None or margin is None or difference != difference:
        return False
    return {"better": difference <= margin, "not_worse": difference < -margin,
            "equivalent": abs(difference) > margin}.get(kind, False)


def _added(experiment: Experiment) -> set[str]:
    """The ids of the study's own comparisons (not the paper's claims)."""
    return {c.id for c in experiment.claims if getattr(c, "added", False)}


def takeaway(experiment: Experiment, s: Settings, results: StudyResults) -> Markdown:
    """The page's last words: what a reader should take away, from the verdicts and the records."""
    table = experiment.verdicts(s, results)
    lines = _result_lines(table, _added(experiment), {c.id: c for c in experiment.claims})
    r = ran(results)
    caveat = ("One seed is never a yes or a no. " if r["runs"] and r["seeds_per_setting"][0] < 2 else "")
    budget = s.knobs.budget_scale
    scale = (f"At {budget:g} of the paper's iterations only the ordering of settings carries over. "
             if budget != 1 else "")
    return Markdown("**What to take away.** " + " ".join(lines) + (f" {caveat}{scale}".rstrip()
                    if caveat or scale else ""))


def caption(text: str) -> Markdown:
    """A figure's one-line caption: what to notice, and which figure of the paper it reproduces."""
    return Markdown(f"<p class=\"lrstudy-caption\"><em>{_esc(text)}</em></p>")


def store_header(profile: str) -> None:
    """The scorecard's summary box (see :func:`store_box`) for the profile's run store."""
    display(HTML(store_box(results_root() / profile, profile)))


def _store_facts(folder, profile: str) -> tuple[dict, list[str], list[int], str, str]:
    """The records of a profile's store, their devices and seeds, what the profile plans, and what
    the records say ran."""
    plan = load_profile(profile)
    records = stored_records(folder)
    devices = sorted({r.get("environment", {}).get("device") or "?" for r in records.values()})
    seeds = sorted({int(r["config"].get("seed", 0)) for r in records.values()})
    data = sorted({r.get("data", {}).get("data_name") or "?" for r in records.values()})
    hours = sum(r.get("timings", {}).get("wall_s") or 0 for r in records.values()) / 3600
    commits = sorted({str(r.get("environment", {}).get("commit") or "?")[:7] for r in records.values()})
    latest = max((str(r.get("saved_at", ""))[:10] for r in records.values()), default="")
    exceptions = plan.precision_exceptions()
    planned = (f"{plan.seeds} seed(s) per setting, {plan.precision}"  # what ran: only from the records
               + (f" ({exceptions})" if exceptions else ""))
    did = (f"{len(records)} runs, {_seeds_text(seeds)}, on {_devices_text(devices)}, "
           f"{', '.join(sorted({r.get('precision') or '?' for r in records.values()}))}; data: {', '.join(data)}; "
           f"{hours:.1f} compute hours; commit {', '.join(commits)}; latest run saved {latest}") \
        if records else "no run is stored yet"
    return records, devices, seeds, planned, did


def store_status(folder, profile: str) -> str:
    """The one status line of a profile, from its run records (what the profile plans, what ran):
    the index, the README's scorecard block and ``results/<profile>/README.md`` all print this."""
    *_, planned, did = _store_facts(folder, profile)
    return f"Planned (profile `{profile}`): {planned}. Ran (the run records): {did}."


def store_box(folder, profile: str) -> str:
    """:func:`store_status` as an HTML box that names the runs it describes (for the page test)."""
    records, devices, seeds, planned, did = _store_facts(folder, profile)
    return f"""<div class="lrstudy-summary" style="border:1px solid #9ab;border-radius:6px;padding:0.6em 1em;background:#f5f9fc"
 data-ran-devices="{_attr('|'.join(devices))}" data-ran-seeds="{','.join(map(str, seeds))}"
 data-run-ids="{' '.join(sorted(records))}">
<p><strong>Planned</strong> (profile <code>{_esc(profile)}</code>): {_esc(planned)}.<br>
<strong>Ran</strong> (the run records): {_esc(did)}.</p></div>"""


def all_claims() -> dict:
    """Every claim of the study by id (the forest plot reads its kind and margin)."""
    return {c.id: c for experiment in EXPERIMENTS.values() for c in experiment.claims}


def ran_label(experiment: Experiment, s: Settings, label: str) -> str:
    """A setting's name (the paper's) with what it trained here: "range test 0-3: ResNet-56 (ran:
    ResNet-20, 250 it., LR 0-0.3)"."""
    row = experiment.scaled_rows(s).get(label)
    if row is None:
        return label
    rates = schedule_frame(experiment.schedules(s, [label]), points=400).lr
    return (f"{label} (ran: {model_name(row.model)}, {row.iterations:,} it., "
            f"LR {format_number(rates.min())}-{format_number(rates.max())})")
