"""Figures the notebooks share: schedules, accuracy curves with the learning rate beneath, final
accuracies against the paper's, and the scorecard's forest plot. Every figure takes a one-line
``caption`` (what to notice, which paper figure it reproduces); legends sit outside the data."""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from .schedule_specs import make_schedule, sample
from .stats import mean_ci

__all__ = ["schedule_frame", "plot_schedules", "plot_curves", "plot_final", "plot_forest", "plot_verdicts",
           "plot_range_test", "describe_schedule", "captioned", "legend_outside", "ran_legend", "t_interval"]


def t_interval(values) -> tuple[float, float]:
    """A curve band's ends: the Student-t 95% interval of the mean over seeds, as the tables give it
    (the band closes to the mean with one seed)."""
    mean, low, high = mean_ci(list(values))
    return (mean, mean) if math.isnan(low) else (low, high)


def captioned(fig, caption: str | None):
    """Write a one-line caption under a figure (wrapped to its width)."""
    if caption:
        width = int(fig.get_figwidth() * 13)
        fig.text(0.01, 0.0, textwrap.fill(caption, width), ha="left", va="top", fontsize="small", style="italic")
    return fig


def ran_legend(label: str, iterations: int, spec: dict) -> str:
    """A legend entry that says what ran: the setting's name (the paper's), then the iterations and
    the learning-rate range it trained with here."""
    rates = schedule_frame({label: (iterations, spec)}, points=400).lr
    low, high = float(rates.min()), float(rates.max())
    low = 0.0 if low < high * 1e-5 else low  # a cosine or annealing that reaches (nearly) zero
    span = _rate(high) if low == high else f"{_rate(low)}-{_rate(high)}"
    return f"{label}\n  ran: {iterations:,} it., LR {span}"


def _rate(value: float) -> str:
    """A learning rate in plain decimals, two significant digits (0.0004, 0.05, 3)."""
    return "0" if value == 0 else np.format_float_positional(value, precision=2, unique=True, fractional=False,
                                                             trim="-")


def legend_outside(ax, title: str | None = None) -> None:
    """Move an axis's legend to the right of the plot, where it covers no data."""
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False, title=title)


def schedule_frame(schedules: dict[str, tuple[int, dict]], points: int = 2000) -> pd.DataFrame:
    """``setting, step, lr`` for each ``{label: (iterations, spec)}``, from the closed form."""
    frames = []
    for label, (iterations, spec) in schedules.items():
        pairs = sample(make_schedule(**spec), iterations + 1, points)
        frames.append(pd.DataFrame(pairs, columns=["step", "lr"]).assign(setting=label))
    return pd.concat(frames, ignore_index=True)


def plot_schedules(schedules: dict[str, tuple[int, dict]], log: bool = True, col_wrap: int = 3,
                   caption: str | None = None):
    """One small panel per policy: learning rate against iteration."""
    df = schedule_frame(schedules)
    grid = sns.relplot(data=df, x="step", y="lr", col="setting", kind="line", col_wrap=col_wrap,
                       height=2.4, aspect=1.5, facet_kws={"sharex": False})
    grid.set_titles("{col_name}")
    grid.set_axis_labels("iteration", "learning rate")
    if log:
        grid.set(yscale="log")
    captioned(grid.figure, caption)
    return grid


def _nothing_yet(ax) -> None:
    ax.text(0.5, 0.5, "no runs with results under this profile", ha="center", va="center", transform=ax.transAxes)


def plot_curves(curves: pd.DataFrame, schedules: dict[str, tuple[int, dict]], metric: str = "test_acc",
                ylabel: str = "test accuracy (%)", log_lr: bool = True, title: str | None = None,
                marks: dict[str, list[int]] | None = None, caption: str | None = None,
                steps_per_epoch: int | None = None, error: bool = False):
    """Accuracy against iteration (mean over seeds, 95% t-interval band) above the learning rate of
    each policy, sharing the iteration axis; ``title`` says what ran, ``marks`` puts a marker on a
    setting's mean curve at chosen steps (the ends of SGDR's cycles, say). ``steps_per_epoch`` puts
    epochs on the horizontal axis, ``error`` plots the error (100 - accuracy) on a log axis, as SGDR's
    paper does."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, height_ratios=[3, 1.4])
    curves = curves[curves[metric].notna()] if metric in curves else curves.iloc[0:0]  # traces have no test metrics
    scale = steps_per_epoch or 1
    x_label = "epoch" if steps_per_epoch else "iteration"
    curves = curves.assign(x=curves.step / scale, y=100 - curves[metric] if error else curves[metric])
    order = list(schedules)
    palette = dict(zip(order, sns.color_palette(n_colors=len(order))))
    if len(curves):
        sns.lineplot(data=curves, x="x", y="y", hue="setting", hue_order=order, palette=palette,
                     errorbar=t_interval, ax=top)
        legend_outside(top, "setting (what ran)")
        for text in top.get_legend().get_texts():  # a setting's name is the paper's; say what ran
            if text.get_text() in schedules:
                text.set_text(ran_legend(text.get_text(), *schedules[text.get_text()]))
    else:
        _nothing_yet(top)
    for label, steps in (marks or {}).items():
        mean = curves[curves.setting == label].groupby("step").y.mean()
        at = mean[mean.index.isin(steps)]
        top.scatter(at.index / scale, at.values, marker="v", s=36, color=palette.get(label, "k"), zorder=5)
    top.set_ylabel(ylabel.replace("accuracy", "error") if error else ylabel)
    if error:  # plain numbers on the log axis (20, 30, 50), not 2 x 10^1
        top.set_yscale("log")
        top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        top.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    top.grid(alpha=0.3)
    if title:
        top.set_title(title, fontsize="medium")
    lr = schedule_frame(schedules)
    lr["x"] = lr.step / scale
    sns.lineplot(data=lr, x="x", y="lr", hue="setting", hue_order=order, palette=palette, ax=bottom,
                 legend=False, linewidth=1)
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel(x_label)
    if log_lr:
        bottom.set_yscale("log")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return captioned(fig, caption)


def plot_final(runs: pd.DataFrame, paper: pd.DataFrame | None = None, metric: str = "final_test_acc",
               caption: str | None = None):
    """Final accuracy per setting, zoomed to the values: each seed as a dot, the mean with its 95%
    t-interval (as the tables give it), and the paper's number as a cross."""
    fig, ax = plt.subplots(figsize=(9, 0.55 * runs.setting.nunique() + 1.2))
    done = runs[runs.status.isin(["finished", "diverged"])] if metric in runs else runs.iloc[0:0]
    if not len(done):
        _nothing_yet(ax)
        return fig
    order = list(dict.fromkeys(runs.setting))
    # seaborn jitters with numpy's global generator: a fixed seed draws the same figure on every
    # render (a page re-rendered from the same runs stays byte-identical), the caller's state kept
    state = np.random.get_state()
    np.random.seed(0)
    try:
        sns.stripplot(data=done, x=metric, y="setting", order=order, color="0.45", size=5, jitter=0.1, ax=ax)
    finally:
        np.random.set_state(state)
    for i, label in enumerate(order):
        mean, low, high = mean_ci(done[done.setting == label][metric].tolist())
        if math.isnan(mean):
            continue
        ax.plot(mean, i, "D", color="C0", zorder=4)
        if not math.isnan(low):
            ax.plot([low, high], [i, i], color="C0", linewidth=2, zorder=3)
    handles = [Line2D([], [], marker="o", color="0.45", linestyle="none", label="ours: one seed"),
               Line2D([], [], marker="D", color="C0", label="ours: mean, 95% t-interval")]
    if paper is not None:
        match = paper.set_index("setting").reindex(order)
        ax.scatter(match.value, range(len(order)), marker="X", s=80, color="C3", zorder=5)
        handles.append(Line2D([], [], marker="X", color="C3", linestyle="none", markersize=9, label="paper"))
    ax.set_xlabel("final test accuracy (%)" if metric == "final_test_acc" else metric.replace("_", " "))
    ax.set_ylabel("")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize="small")
    fig.tight_layout()
    return captioned(fig, caption)


# How the forest plot marks each verdict: (marker, colour, filled)
VERDICT_MARKS = {
    "confirmed": ("o", "#2e7d32", True),
    "not confirmed": ("s", "#c62828", True),
    "inconclusive": ("D", "#ef6c00", True),
    "inconclusive (n < 2)": ("o", "#ef6c00", False),
    "interim": ("^", "#6a1b9a", True),
    "not testable at this budget": ("s", "#757575", False),
    "not run": ("x", "#9e9e9e", True),
}


def _verdict_mark(row) -> str:
    """The forest plot's category of a scorecard row: an interim verdict (fewer seeds than planned)
    is marked as interim, whatever it reads; otherwise the verdict itself."""
    status = str(row.get("status", "") or "")
    if status.startswith("interim"):
        return "interim"
    verdict = str(row.get("verdict", ""))
    return verdict if verdict in VERDICT_MARKS else ("inconclusive" if verdict.startswith("inconclusive") else verdict)


def _confirming_region(claim) -> tuple[float, float] | None:
    """Where a claim's difference must lie (its whole interval) to be confirmed: above the margin,
    above minus the margin, or inside plus/minus the margin."""
    kind, margin = getattr(claim, "kind", None), getattr(claim, "margin", None)
    if kind is None or margin is None:
        return None
    return {"better": (margin, math.inf), "not_worse": (-margin, math.inf),
            "equivalent": (-margin, margin)}.get(kind)


def plot_forest(card: pd.DataFrame, claims: dict | None = None, caption: str | None = None):
    """The scorecard's comparisons as (a - b) in accuracy points: each claim's difference with its
    95% interval, marked by verdict (confirmed, not confirmed, inconclusive, n < 2, interim, not
    testable, not run: distinct marks, with a legend), over the region its rule confirms (its
    margin, shaded). ``claims`` maps a claim id to its claim object (for the margins)."""
    pairs = card[card.kind == "difference"] if "kind" in card else card
    claims = claims or {}
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(pairs) + 1.6))
    if not len(pairs):
        _nothing_yet(ax)
        return captioned(fig, caption)
    finite = pd.concat([pairs.difference, pairs.ci_low, pairs.ci_high]).dropna()
    span = (float(finite.min()) - 1, float(finite.max()) + 1) if len(finite) else (-3.0, 3.0)
    for i, (_, r) in enumerate(pairs.iterrows()):
        region = _confirming_region(claims.get(r.claim))
        if region is not None:
            low, high = max(region[0], span[0] - 10), min(region[1], span[1] + 10)
            ax.fill_betweenx([i - 0.42, i + 0.42], low, high, color="#a5d6a7", alpha=0.35, linewidth=0)
        category = _verdict_mark(r)
        marker, colour, filled = VERDICT_MARKS.get(category, ("o", "k", True))
        if r.difference != r.difference:  # not run: no number, a mark at zero
            ax.plot(0, i, marker, color=colour)
            continue
        if r.ci_low == r.ci_low:
            ax.plot([r.ci_low, r.ci_high], [i, i], color=colour, linewidth=2)
        ax.plot(r.difference, i, marker, color=colour, markersize=7,
                markerfacecolor=colour if filled else "white", markeredgewidth=1.5)
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_xlim(*span)
    added = pairs["added"].fillna(False).astype(bool) if "added" in pairs else pd.Series(False, index=pairs.index)
    ax.set_yticks(range(len(pairs)), [f"{c} (added)" if a else c for c, a in zip(pairs.claim, added)],
                  fontsize="small")
    for tick, is_added in zip(ax.get_yticklabels(), added):
        if is_added:  # the study's own comparisons, not the paper's claims
            tick.set_style("italic")
    ax.set_ylim(len(pairs) - 0.5, -0.5)
    ax.set_xlabel("difference a - b (accuracy points), 95% interval")
    ax.grid(axis="x", alpha=0.3)
    shown = [_verdict_mark(r) for _, r in pairs.iterrows()]
    handles = [Line2D([], [], marker=m, color=c, markerfacecolor=c if f else "white", markeredgewidth=1.5,
                      linestyle="none", label=name) for name, (m, c, f) in VERDICT_MARKS.items() if name in shown]
    handles.append(Patch(color="#a5d6a7", alpha=0.6, label="where the rule confirms\n(beyond its margin)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize="small",
              title="verdict")
    fig.tight_layout()
    return captioned(fig, caption)


def plot_verdicts(card: pd.DataFrame, claims: dict | None = None, caption: str | None = None):
    """The scorecard's forest plot of the comparisons that ran (claims "not run" have no interval
    to draw, so they are left out); nothing is drawn when none ran. Shown at once, so that a
    notebook cell is this one call."""
    ran = card[(card.kind == "difference") & card.verdict.ne("not run")]
    if not len(ran):
        return None
    fig = plot_forest(ran, claims, caption=caption)
    plt.show()
    return fig


def plot_range_test(linear: pd.DataFrame, exponential: pd.DataFrame, suggestions: pd.DataFrame,
                    paper_bounds: tuple[float, float], title: str, caption: str | None = None):
    """CLR's range test, side by side: test accuracy while the rate rises linearly (Smith's sweep,
    left) with the paper's bounds (red, dashed) and the bounds Smith's rule reads from our sweep
    (green: max_lr solid, base_lr dotted), and -- where it ran -- fastai's smoothed training loss
    while the rate rises exponentially (right, log rate axis). ``paper_bounds`` is the paper's
    (base_lr, max_lr); ``suggestions`` is the table of bounds each rule suggests, by ``method``."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2))
    sns.lineplot(data=linear, x="lr", y="test_acc", hue="seed", marker="o", ax=left, legend=False)
    for name, value in zip(("paper base_lr", "paper max_lr"), paper_bounds):
        left.axvline(value, color="C3", linestyle="--", linewidth=1)
        left.text(value, left.get_ylim()[0], " " + name, color="C3", rotation=90, va="bottom")
    for _, r in suggestions[suggestions.method.str.startswith("Smith")].iterrows():
        left.axvline(r.max_lr, color="C2", linewidth=1)
        left.axvline(r.base_lr, color="C2", linewidth=1, linestyle=":")
    left.set(title="Smith: test accuracy while the rate rises linearly (red: paper's bounds, green: ours)\n" + title,
             xlabel="learning rate", ylabel="test accuracy (%)")
    if len(exponential):
        sns.lineplot(data=exponential, x="lr", y="smooth_loss", hue="seed", ax=right, legend=False)
        right.set(xscale="log", title="fastai: smoothed training loss, rate rising exponentially",
                  xlabel="learning rate", ylabel="smoothed training loss")
    fig.tight_layout()
    return captioned(fig, caption)


def describe_schedule(spec: dict) -> str:
    """A one-line, readable form of a schedule spec (``triangular(base_lr=0.001, ...)``)."""
    return repr(make_schedule(**spec))
