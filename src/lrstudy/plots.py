"""Figures the notebooks share: schedules, and accuracy curves with the learning rate beneath."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .schedule_specs import make_schedule, sample

__all__ = ["schedule_frame", "plot_schedules", "plot_curves", "plot_final", "describe_schedule"]

BOOTSTRAP_SEED = 0  # CI bands are bootstrapped; a fixed seed keeps re-rendered figures identical


def schedule_frame(schedules: dict[str, tuple[int, dict]], points: int = 2000) -> pd.DataFrame:
    """``setting, step, lr`` for each ``{label: (iterations, spec)}``, from the closed form."""
    frames = []
    for label, (iterations, spec) in schedules.items():
        pairs = sample(make_schedule(**spec), iterations + 1, points)
        frames.append(pd.DataFrame(pairs, columns=["step", "lr"]).assign(setting=label))
    return pd.concat(frames, ignore_index=True)


def plot_schedules(schedules: dict[str, tuple[int, dict]], log: bool = True, col_wrap: int = 3):
    """One small panel per policy: learning rate against iteration."""
    df = schedule_frame(schedules)
    grid = sns.relplot(data=df, x="step", y="lr", col="setting", kind="line", col_wrap=col_wrap,
                       height=2.4, aspect=1.5, facet_kws={"sharex": False})
    grid.set_titles("{col_name}")
    grid.set_axis_labels("iteration", "learning rate")
    if log:
        grid.set(yscale="log")
    return grid


def _nothing_yet(ax) -> None:
    ax.text(0.5, 0.5, "no runs with results under this profile", ha="center", va="center", transform=ax.transAxes)


def plot_curves(curves: pd.DataFrame, schedules: dict[str, tuple[int, dict]], metric: str = "test_acc",
                ylabel: str = "test accuracy (%)", log_lr: bool = True, title: str | None = None,
                marks: dict[str, list[int]] | None = None):
    """Accuracy against iteration (mean over seeds, 95% bootstrap band) above the learning rate
    of each policy, sharing the iteration axis; ``title`` says what ran, ``marks`` puts a marker on
    a setting's mean curve at chosen steps (the ends of SGDR's cycles, say)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, height_ratios=[3, 1.4])
    curves = curves[curves[metric].notna()] if metric in curves else curves.iloc[0:0]  # traces have no test metrics
    order = list(schedules)
    palette = dict(zip(order, sns.color_palette(n_colors=len(order))))
    if len(curves):
        sns.lineplot(data=curves, x="step", y=metric, hue="setting", hue_order=order, palette=palette,
                     errorbar=("ci", 95), n_boot=1000, seed=BOOTSTRAP_SEED, ax=top)
    else:
        _nothing_yet(top)
    for label, steps in (marks or {}).items():
        mean = curves[curves.setting == label].groupby("step")[metric].mean()
        at = mean[mean.index.isin(steps)]
        top.scatter(at.index, at.values, marker="v", s=36, color=palette.get(label, "k"), zorder=5)
    top.set_ylabel(ylabel)
    top.grid(alpha=0.3)
    if title:
        top.set_title(title, fontsize="medium")
    lr = schedule_frame(schedules)
    sns.lineplot(data=lr, x="step", y="lr", hue="setting", hue_order=order, palette=palette, ax=bottom,
                 legend=False, linewidth=1)
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel("iteration")
    if log_lr:
        bottom.set_yscale("log")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def describe_schedule(spec: dict) -> str:
    """A one-line, readable form of a schedule spec (``triangular(base_lr=0.001, ...)``)."""
    return repr(make_schedule(**spec))


def plot_final(runs: pd.DataFrame, paper: pd.DataFrame | None = None, metric: str = "final_test_acc"):
    """Final accuracy per setting: each seed as a dot, the mean with its 95% t-interval, and the
    paper's number as a cross."""
    fig, ax = plt.subplots(figsize=(7, 0.55 * runs.setting.nunique() + 1.2))
    done = runs[runs.status.isin(["finished", "diverged"])] if metric in runs else runs.iloc[0:0]
    if not len(done):
        _nothing_yet(ax)
        return fig
    order = list(dict.fromkeys(runs.setting))
    sns.stripplot(data=done, x=metric, y="setting", order=order, color="0.4", size=5, jitter=0.1, ax=ax)
    sns.pointplot(data=done, x=metric, y="setting", order=order, errorbar=("ci", 95), n_boot=1000,
                  seed=BOOTSTRAP_SEED, linestyle="none", color="C0", markers="D", ax=ax, label="ours: mean, 95% CI")
    if paper is not None:
        match = paper.set_index("setting").reindex(order)
        ax.scatter(match.value, range(len(order)), marker="X", s=80, color="C3", zorder=5, label="paper")
    ax.set_xlabel("final test accuracy (%)")
    ax.set_ylabel("")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig
