"""Summaries over seeds, and the verdict rules fixed before any run.

Claims compare two settings of one experiment. Runs of different settings with the same seed share
their initial weights and data order, so differences are taken per seed (paired) and summarised by
a Student-t 95% confidence interval.

A verdict is one of :data:`VERDICTS`. Before a claim's rule is applied at all, its
:class:`Testability` is checked -- also declared before any run: whether the profile trained enough
of the paper's budget, and whether the arms that must have levelled off did. A claim that fails it
is "not testable at this budget", whatever its numbers say. One seed is never enough for a yes or a
no: with fewer than two seeds a testable claim is "inconclusive (n < 2)".

Every verdict row also gives ``p``, the one-sided p-value of the rule's test (the paired t-test
whose 95% interval decides it; :func:`bh_qvalues` turns a family of them into Benjamini-Hochberg
q-values), and ``detectable``: the smallest difference the *planned* seeds detect four times in
five, from the between-seed spread pooled over the experiment's runs of the same network and
budget (prospective power; never a row's own spread). Curves get the same t-interval per step as
the tables (:func:`curve_band`, :func:`difference_band`): bootstrap bands over three seeds cover
far less than 95%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

from .history import STUDY_RULES, History

__all__ = ["mean_ci", "Claim", "Control", "Agreement", "AtLeast", "AllEquivalent", "Testability", "VERDICTS", "JUDGED",
           "NOT_TESTABLE", "TOO_FEW", "detectable_difference", "seeds_needed", "binomial_se", "bh_qvalues",
           "pooled_sd", "curve_band", "difference_band", "interim"]

NOT_TESTABLE, TOO_FEW = "not testable at this budget", "inconclusive (n < 2)"
VERDICTS = ("confirmed", "not confirmed", "inconclusive", TOO_FEW, NOT_TESTABLE, "not run")
JUDGED = VERDICTS[:3]  # the verdicts of a claim whose rule could be applied
CONFIDENCE, POWER = 0.95, 0.80  # two-sided 95% intervals; "detectable" means found 80% of the time


def mean_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and the two ends of its Student-t confidence interval (NaN ends for fewer than 2)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    half = float(_st.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def curve_band(curves: pd.DataFrame, metric: str = "test_acc", by: str = "setting",
               confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per ``by`` value and step: the mean of ``metric`` over seeds and the ends of its Student-t
    interval (:func:`mean_ci`, the tables' method), with ``n`` seeds; NaN ends where n < 2.
    Columns: ``by``, ``step``, ``mean``, ``low``, ``high``, ``n``."""
    rows = []
    data = curves[curves[metric].notna()] if metric in curves else curves.iloc[0:0]
    for (key, step), group in data.groupby([by, "step"], sort=True):
        mean, low, high = mean_ci(group[metric].tolist(), confidence)
        rows.append({by: key, "step": step, "mean": mean, "low": low, "high": high, "n": len(group)})
    return pd.DataFrame(rows, columns=[by, "step", "mean", "low", "high", "n"])


def difference_band(curves: pd.DataFrame, a: str, b: str, metric: str = "test_acc", by: str = "setting",
                    confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per step both ``a`` and ``b`` were evaluated at: the paired (by seed) difference ``a - b`` of
    ``metric``, its mean and Student-t interval over the seeds that have both -- the interval a
    claim's verdict uses, along the curve. Columns: ``step``, ``mean``, ``low``, ``high``, ``n``."""
    data = curves[curves[metric].notna()] if metric in curves else curves.iloc[0:0]
    wide = data[data[by].isin([a, b])].pivot_table(index=["step", "seed"], columns=by, values=metric)
    rows = []
    if a in wide and b in wide:
        paired = (wide[a] - wide[b]).dropna()
        for step, diffs in paired.groupby(level="step"):
            mean, low, high = mean_ci(diffs.tolist(), confidence)
            rows.append({"step": step, "mean": mean, "low": low, "high": high, "n": len(diffs)})
    return pd.DataFrame(rows, columns=["step", "mean", "low", "high", "n"])


def bh_qvalues(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg q-values of a family of p-values (NaN entries stay NaN and are not counted
    in the family): the smallest false-discovery rate at which each would be declared."""
    p = np.asarray(pvalues, dtype=float)
    q = np.full(len(p), math.nan)
    finite = np.flatnonzero(~np.isnan(p))
    if not len(finite):
        return q.tolist()
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    ranked = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q.tolist()


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The between-seed standard deviation pooled over groups (each one setting's values over
    seeds), with its degrees of freedom; NaN and 0 where no group has two values."""
    ss, df = 0.0, 0
    for values in groups:
        v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
        if len(v) >= 2:
            ss += float(((v - v.mean()) ** 2).sum())
            df += len(v) - 1
    return (math.sqrt(ss / df), df) if df else (math.nan, 0)


def interim(n: int, planned: int) -> str:
    """A verdict's status: "interim (n of N)" while fewer seeds than planned ran, "final (n of N)"
    once they all did, "no runs" before any."""
    if n <= 0:
        return "no runs"
    return f"{'interim' if n < planned else 'final'} ({n} of {planned})"


def binomial_se(accuracy: float, images: int) -> float:
    """Standard error (points) of an accuracy measured on ``images`` test images: the test set's own
    sampling noise, the floor under any seed-to-seed spread."""
    p = min(max(accuracy / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / images)


def _multiplier(n: int) -> float:
    """t quantiles for a two-sided 95% test with 80% power, n paired seeds (normal for n = 1)."""
    if n < 2:
        return float(_st.norm.ppf(0.5 + CONFIDENCE / 2) + _st.norm.ppf(POWER))
    return float(_st.t.ppf(0.5 + CONFIDENCE / 2, n - 1) + _st.t.ppf(POWER, n - 1))


def detectable_difference(spread: float, n: int) -> float:
    """The smallest true difference that ``n`` paired seeds whose differences scatter by ``spread``
    (standard deviation, points) detect at 95% confidence four times in five."""
    return _multiplier(n) * spread / math.sqrt(max(n, 1))


def seeds_needed(effect: float, spread: float, most: int = 100) -> int | None:
    """The fewest seeds whose detectable difference is at most ``effect`` (None: more than ``most``,
    or no effect to detect)."""
    if not effect > 0 or not spread > 0:
        return None
    for n in range(2, most + 1):
        if detectable_difference(spread, n) <= effect:
            return n
    return None


@dataclass(frozen=True)
class Testability:
    """When a claim can be judged at all -- declared with the claim, before any run.

    * ``min_budget``: every arm must have trained at least this fraction of the paper's images
      (iterations x batch); a comparison of a 25k-iteration arm with a 70k one at 2% of both says
      nothing about the paper's.
    * ``levelled``: these arms' test accuracy must have levelled off -- over the last ``window`` of
      their evaluations, gained less than ``max_gain`` points (mean over seeds) -- so that a "fewer
      iterations match more" claim is not decided by the longer arm still rising.
    """

    __test__ = False  # (not a pytest test class, despite its name)

    min_budget: float = 0.5
    levelled: tuple[str, ...] = ()
    window: float = 0.2
    max_gain: float = 0.5

    def rule(self) -> str:
        parts = [f"every arm trains at least {self.min_budget:.0%} of the paper's images" if self.min_budget > 0
                 else "any budget"]
        if self.levelled:
            parts.append(f"{', '.join(self.levelled)} levelled off (its last {self.window:.0%} of evaluations "
                         f"gain < {self.max_gain:g} points)")
        return "; ".join(parts) + "; at least 2 seeds for a yes or a no"

    def reason(self, budget: float, gains: Mapping[str, float]) -> str | None:
        """Why the claim is not testable (None: it is): ``budget`` is the smallest fraction of the
        paper's images any arm trained, ``gains`` each levelled arm's late gain in points."""
        if budget < self.min_budget:
            return f"arms trained {budget:.2%} of the paper's images (needs {self.min_budget:.0%})"
        for label in self.levelled:
            gain = gains.get(label, math.nan)
            if not gain < self.max_gain:
                return (f"{label} still gained {gain:.2f} points over its last {self.window:.0%} of evaluations"
                        if gain == gain else f"{label} has too few evaluations to tell whether it levelled off")
        return None


EQUAL_BUDGET = Testability(min_budget=0.0)  # a comparison at equal iterations: any budget can make it


def _judged(verdict: str, n: int, testable: str | None) -> tuple[str, str]:
    """The verdict after the testability rule and the seed count, and what decided it."""
    if verdict == "not run":
        return verdict, ""
    if testable is not None:
        return NOT_TESTABLE, f"not testable: {testable}; "
    if n < 2:
        return TOO_FEW, "one seed decides nothing; "
    return verdict, ""


@dataclass(frozen=True)
class Control:
    """A trained control for a "fewer iterations match more" claim: ``row`` trains the longer arm's
    schedule compressed into the shorter arm's iterations, so that the equal-iterations row compares
    two finished schedules instead of reading the longer arm mid-run, before its rate has dropped.
    ``declared``: the date its rule was committed, before any of its runs trained."""

    row: str
    declared: str
    why: str = ""
    commit: str = ""


def _one_sided(diffs: Sequence[float], threshold: float, above: bool) -> float:
    """p-value of the paired t-test that the mean difference lies above (or below) ``threshold``."""
    n = len(diffs)
    if n < 2:
        return math.nan
    mean, sd = float(np.mean(diffs)), float(np.std(diffs, ddof=1))
    if sd == 0:
        return 0.0 if (mean > threshold if above else mean < threshold) else 1.0
    t = (mean - threshold) / (sd / math.sqrt(n))
    return float(_st.t.sf(t, n - 1) if above else _st.t.cdf(t, n - 1))


def _detectable(spread: float | None, planned: int | None) -> float:
    """The smallest difference the planned seeds detect, from the pooled spread (NaN without one)."""
    if spread is None or planned is None or not spread == spread:
        return math.nan
    return detectable_difference(spread, planned)


NO_RESULT = {"difference": math.nan, "ci_low": math.nan, "ci_high": math.nan, "verdict": "not run"}


def _comparison_head(rule, n: int, spread: float | None, planned: int | None) -> dict:
    """The columns a comparison's verdict row starts with, before its seeds are read."""
    return {"claim": rule.id, "text": rule.text, "rule": rule.rule, "testable when": rule.testable.rule(),
            "n": n, "a": math.nan, "b": math.nan, "p": math.nan, "against": 0,
            "detectable": _detectable(spread, planned)}


@dataclass(frozen=True)
class Claim(History):
    """A claim of a paper, as a comparison of two settings' values (final test accuracy, in points,
    unless the experiment reads a row otherwise).

    ``kind="better"``: ``a`` beats ``b`` by more than ``margin`` (default 0). Confirmed when the 95%
    CI of the paired difference ``a - b`` lies above ``margin``; not confirmed when it lies at or
    below it; inconclusive otherwise.

    ``kind="not_worse"``: ``a`` is at least as good as ``b`` up to ``margin`` points. Confirmed when
    the CI lies above ``-margin``; not confirmed when it lies below ``-margin``; inconclusive
    otherwise.

    ``kind="equivalent"``: ``a`` and ``b`` are equally good up to ``margin`` points. Confirmed when
    the CI lies inside ``(-margin, margin)``; not confirmed when it lies wholly outside
    ``[-margin, margin]``; inconclusive otherwise.

    ``relative``: instead of a fixed margin, a tolerance relative to ``b``'s error -- the margin in
    points is ``relative * (100 - mean of b)`` ("comparable" error within 10%, say).

    ``equal_iterations``: ``a`` and ``b`` train for different numbers of iterations; the experiment
    then also reports the shorter arm against the longer one at the same iteration, read from its
    curve (:meth:`lrstudy.study.Experiment.verdicts`).
    """

    id: str
    text: str
    a: str
    b: str
    kind: str = "better"
    margin: float = 0.0
    testable: Testability = field(default_factory=Testability)
    equal_iterations: bool = False
    control: Control | None = None  # a trained control for the equal-iterations row (see Control)
    relative: float = 0.0

    def __post_init__(self):
        if self.kind not in ("better", "not_worse", "equivalent"):
            raise ValueError(f"claim {self.id}: kind={self.kind!r}; allowed: 'better', 'not_worse', 'equivalent'")
        if self.kind != "better" and self.margin <= 0 and self.relative <= 0:
            raise ValueError(f"claim {self.id}: a {self.kind!r} claim needs a margin > 0")

    @property
    def labels(self) -> tuple[str, ...]:
        """The measures the claim reads (its experiment must declare them)."""
        return (self.a, self.b)

    @property
    def _margin_text(self) -> str:
        return f"{self.relative:.0%} of {self.b}'s error" if self.relative else f"{self.margin:g} points"

    @property
    def rule(self) -> str:
        m = self._margin_text
        if self.kind == "equivalent":
            return (f"confirmed if the 95% CI of {self.a} - {self.b} (paired by seed) lies within "
                    f"+/-{m}; not confirmed if it lies wholly outside; otherwise inconclusive")
        if self.kind == "better":
            above = f"{self.margin:g}" if not self.relative else m
            return (f"confirmed if the 95% CI of {self.a} - {self.b} (paired by seed) is above {above}; "
                    f"not confirmed if it is at or below {above}; otherwise inconclusive")
        return (f"confirmed if the 95% CI of {self.a} - {self.b} (paired by seed) is above "
                f"-{m}; not confirmed if it is below -{m}; otherwise inconclusive")

    def judge(self, values: Mapping[str, Mapping[int, float]], testable: str | None = None,
              spread: float | None = None, planned: int | None = None) -> dict:
        """``values[label][seed]``: each run's value. ``testable``: why the claim is not testable
        (None: it is). ``spread``: the planned standard deviation of one paired difference, and
        ``planned`` the seeds the profile plans, for the prospective ``detectable``."""
        a, b = values.get(self.a, {}), values.get(self.b, {})
        seeds = sorted(set(a) & set(b))
        diffs = [a[s] - b[s] for s in seeds]
        n = len(diffs)
        out = _comparison_head(self, n, spread, planned)
        if not diffs:
            return {**out, **NO_RESULT, "basis": "no pair of runs with results"}
        mean, low, high = mean_ci(diffs)
        mean_a, mean_b = float(np.mean([a[s] for s in seeds])), float(np.mean([b[s] for s in seeds]))
        m = self.relative * (100.0 - mean_b) if self.relative else self.margin
        if n >= 2:
            basis = f"95% t-interval over {n} paired seeds"
            verdict = self._verdict(low, high, m)
        else:
            basis = "one difference"
            verdict = self._verdict(mean, mean, m)
        if self.relative:
            basis += f"; margin {m:.2f} points ({self.relative:.0%} of {100 - mean_b:.2f}% error)"
        verdict, why = _judged(verdict, n, testable)
        return {**out, "a": mean_a, "b": mean_b, "difference": mean, "ci_low": low, "ci_high": high,
                "p": self._p(diffs, m), "against": sum(self._fails(d, m) for d in diffs),
                "verdict": verdict, "basis": why + basis}

    def _verdict(self, low: float, high: float, m: float) -> str:
        if self.kind == "equivalent":
            if -m < low and high < m:
                return "confirmed"
            return "not confirmed" if (low > m or high < -m) else "inconclusive"
        if self.kind == "better":
            return "confirmed" if low > m else "not confirmed" if high <= m else "inconclusive"
        return "confirmed" if low > -m else "not confirmed" if high < -m else "inconclusive"

    def _p(self, diffs: Sequence[float], m: float) -> float:
        """One-sided p-value of the rule's test (two one-sided tests for equivalence)."""
        if self.kind == "better":
            return _one_sided(diffs, m, above=True)
        if self.kind == "not_worse":
            return _one_sided(diffs, -m, above=True)
        return max(_one_sided(diffs, -m, above=True), _one_sided(diffs, m, above=False))

    def _fails(self, d: float, m: float) -> bool:
        """Whether one seed's difference is on the wrong side of the rule's threshold."""
        if self.kind == "better":
            return d <= m
        if self.kind == "not_worse":
            return d < -m
        return abs(d) >= m

    def effect_to_detect(self, paper_a: float, paper_b: float) -> float:
        """The true difference the seeds must resolve for the paper's numbers to pass this rule."""
        diff = paper_a - paper_b
        m = self.relative * (100.0 - paper_b) if self.relative else self.margin
        if self.kind == "better":
            return diff - m
        if self.kind == "not_worse":
            return diff + m
        return m - abs(diff)


@dataclass(frozen=True)
class AllEquivalent(History):
    """Several settings that are all equally good up to ``margin`` points, judged jointly.

    Confirmed when the 95% CI of every pairwise paired difference lies within ``(-margin, margin)``
    (an intersection-union test: each pair at the 5% level keeps the joint claim at 5%); not
    confirmed when the CI of any pair lies wholly outside ``[-margin, margin]``; inconclusive
    otherwise. The row reports the pair furthest apart.
    """

    id: str
    text: str
    members: tuple[str, ...]
    margin: float
    testable: Testability = field(default_factory=Testability)

    def __post_init__(self):
        if len(self.members) < 2 or self.margin <= 0:
            raise ValueError(f"claim {self.id}: needs two settings or more and a margin > 0")

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.members)

    @property
    def rule(self) -> str:
        return (f"confirmed if the 95% CI of every pairwise difference among {', '.join(self.members)} (paired by "
                f"seed) lies within +/-{self.margin:g} points; not confirmed if any pair's lies wholly outside; "
                "otherwise inconclusive")

    def judge(self, values: Mapping[str, Mapping[int, float]], testable: str | None = None,
              spread: float | None = None, planned: int | None = None) -> dict:
        got = [values.get(label, {}) for label in self.members]
        seeds = sorted(set.intersection(*(set(v) for v in got)))
        n = len(seeds)
        out = _comparison_head(self, n, spread, planned)
        if not seeds:
            return {**out, **NO_RESULT, "basis": "no set of runs with results"}
        common = {label: {s: v[s] for s in seeds} for label, v in zip(self.members, got)}
        pairs = [(pair, pair.judge(common)) for pair in self._pairs()]
        pair, widest = max(pairs, key=lambda pr: abs(pr[1]["difference"]))
        verdicts = [p._verdict(*((r["ci_low"], r["ci_high"]) if n >= 2 else (r["difference"],) * 2), self.margin)
                    for p, r in pairs]
        verdict = ("confirmed" if all(v == "confirmed" for v in verdicts) else
                   "not confirmed" if "not confirmed" in verdicts else "inconclusive")
        verdict, why = _judged(verdict, n, testable)
        against = sum(any(abs(v[s] - w[s]) >= self.margin for v, w in combinations(got, 2)) for s in seeds)
        means = [float(np.mean([v[s] for s in seeds])) for v in got]
        basis = (f"95% t-intervals of {len(pairs)} pairwise differences over {n} seeds; furthest apart: "
                 f"{pair.a} - {pair.b}")
        return {**out, "a": max(means), "b": min(means), "difference": widest["difference"],
                "ci_low": widest["ci_low"], "ci_high": widest["ci_high"],
                "p": max(r["p"] for _, r in pairs) if n >= 2 else math.nan, "against": against, "verdict": verdict,
                "basis": why + basis}

    def _pairs(self) -> list[Claim]:
        return [Claim(self.id, "", x, y, kind="equivalent", margin=self.margin)
                for x, y in combinations(self.members, 2)]


@dataclass(frozen=True)
class Agreement(History):
    """A value the paper reports (a suggested learning rate, say), to be matched within a factor.

    Confirmed when every seed's value lies within ``[target / factor, target * factor]``; not
    confirmed when none does; inconclusive otherwise.
    """

    id: str
    text: str
    measure: str
    target: float
    factor: float = 2.0
    shown: str = ""  # how the paper states it, where that is not one number (a range, say)
    testable: Testability = field(default_factory=Testability)

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.measure,)

    @property
    def rule(self) -> str:
        low, high = self.target / self.factor, self.target * self.factor
        return (f"confirmed if every seed's {self.measure} lies within [{low:.3g}, {high:.3g}] (a factor "
                f"{self.factor:.3g} around {self.target:.3g}); not confirmed if none does; otherwise inconclusive")

    def judge(self, values: Mapping[str, Mapping[int, float]], testable: str | None = None,
              spread: float | None = None, planned: int | None = None) -> dict:
        got = [v for v in values.get(self.measure, {}).values() if v is not None and not math.isnan(v)]
        out = {"claim": self.id, "text": self.text, "rule": self.rule, "testable when": self.testable.rule(),
               "n": len(got), "ci_low": math.nan, "ci_high": math.nan, "detectable": math.nan, "b": self.target,
               "p": math.nan}
        if not got:
            return {**out, "a": math.nan, "difference": math.nan, "against": 0, "verdict": "not run",
                    "basis": "no value measured"}
        inside = [self.target / self.factor <= v <= self.target * self.factor for v in got]
        verdict = "confirmed" if all(inside) else "not confirmed" if not any(inside) else "inconclusive"
        value = float(np.exp(np.mean(np.log(got))))
        verdict, why = _judged(verdict, len(got), testable)
        return {**out, "a": value, "difference": value / self.target, "verdict": verdict,
                "against": inside.count(False),
                "basis": why + f"ours / paper = {value / self.target:.2f} (geometric mean over {len(got)} seed(s))"}


@dataclass(frozen=True)
class AtLeast(History):
    """A measured quantity that should reach a threshold (e.g. a speedup of at least 2x).

    Confirmed when every seed's value reaches ``threshold``; not confirmed when none does;
    inconclusive otherwise. Seeds without a value (the target was never reached) count as below.
    """

    id: str
    text: str
    measure: str
    threshold: float
    testable: Testability = field(default_factory=Testability)

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.measure,)

    @property
    def rule(self) -> str:
        return (f"confirmed if every seed's {self.measure} is at least {self.threshold:g}; not confirmed if "
                "none is (a target never reached counts as below); otherwise inconclusive")

    def judge(self, values: Mapping[str, Mapping[int, float]], testable: str | None = None,
              spread: float | None = None, planned: int | None = None) -> dict:
        got = dict(values.get(self.measure, {}))
        out = {"claim": self.id, "text": self.text, "rule": self.rule, "testable when": self.testable.rule(),
               "n": len(got), "ci_low": math.nan, "ci_high": math.nan, "detectable": math.nan, "b": self.threshold,
               "p": math.nan}
        if not got:
            return {**out, "a": math.nan, "difference": math.nan, "against": 0, "verdict": "not run",
                    "basis": "no value measured"}
        reached = [v is not None and not math.isnan(v) and v >= self.threshold for v in got.values()]
        finite = [v for v in got.values() if v is not None and not math.isnan(v)]
        verdict = "confirmed" if all(reached) else "not confirmed" if not any(reached) else "inconclusive"
        mean = float(np.mean(finite)) if finite else math.nan
        missing = len(got) - len(finite)
        verdict, why = _judged(verdict, len(got), testable)
        basis = f"mean {mean:.2f} over {len(finite)} seed(s)" + (f"; {missing} never reached the target" if missing else "")
        return {**out, "a": mean, "difference": mean, "verdict": verdict, "against": reached.count(False),
                "basis": why + basis}


def companions_at_equal_iterations(claim: Claim, short: str, long: str, long_at_short_end: str) -> list[Claim]:
    """The extra rows of a "fewer iterations match more" claim: the comparison a short budget can
    make. Without a control, one row: the same rule, with the longer arm read mid-run at the shorter
    arm's last iteration. With a :class:`Control`, the ``@equal-iterations`` row compares the shorter
    arm with the trained control (it must beat it), and the mid-run reading is kept under its own
    name, ``@<long>-read-mid-run``. The rows carry the claim's declaration; where the claim's
    revision changes only its margin (the same arms, the same kind of rule), each row whose rule
    that changes gets the revised rule's row as its revision. A revision of another kind (the sign
    of an effect, say) is about the arms at their own budgets and leaves these rows as declared."""
    a, b = (claim.a, long_at_short_end) if claim.b == long else (long_at_short_end, claim.b)
    # the rows came with the study's rules (STUDY_RULES), or with their claim where that came later
    declared = max((claim.declared, claim.commit), (STUDY_RULES["declared"], STUDY_RULES["commit"]))
    mid_run = Claim(f"{claim.id}@equal-iterations",
                    f"{claim.text} -- at equal iterations ({long} read mid-run, at {short}'s end)",
                    a=a, b=b, kind=claim.kind, margin=claim.margin, relative=claim.relative, testable=EQUAL_BUDGET,
                    added=True, declared=declared[0], commit=declared[1], changed=claim.changed)
    if claim.control is None:
        rows = [mid_run]
    else:
        control = claim.control
        trained = Claim(f"{claim.id}@equal-iterations",
                        f"{short} beats {control.row}: {long}'s schedule with its drops compressed into {short}'s "
                        "iterations (a trained annealing control)", a=short, b=control.row, testable=EQUAL_BUDGET,
                        declared=control.declared, commit=control.commit, added=True,
                        changed=f"declared {control.declared[:10]}, before the control trained: {control.why}")
        slug = long.replace(" ", "-")
        rows = [trained, replace(mid_run, id=f"{claim.id}@{slug}-read-mid-run")]
    revision = claim.revision
    if revision is None or not isinstance(revision.rule, Claim) or \
            (revision.rule.a, revision.rule.b, revision.rule.kind) != (claim.a, claim.b, claim.kind):
        return rows
    revised = {row.id: row for row in companions_at_equal_iterations(replace(revision.rule, revision=None), short, long,
                                                                      long_at_short_end)}
    return [replace(row, revision=replace(revision, rule=replace(revised[row.id], declared=revision.declared,
                                                                 commit=revision.commit)))
            if row.id in revised and revised[row.id].rule != row.rule else row for row in rows]
