"""Summaries over seeds, and the verdict rules fixed before any run.

Claims compare two settings of one experiment. Runs of different settings with the same seed share
their initial weights and data order, so differences are taken per seed (paired) and summarised by
a Student-t 95% confidence interval.

A verdict is one of :data:`VERDICTS`. Before a claim's rule is applied at all, its
:class:`Testability` is checked -- also declared before any run: whether the profile trained enough
of the paper's budget, and whether the arms that must have levelled off did. A claim that fails it
is "not testable at this budget", whatever its numbers say. One seed is never enough for a yes or a
no: with fewer than two seeds a testable claim is "inconclusive (n < 2)". Every verdict row also
gives the smallest difference its seeds could have detected (:func:`detectable_difference`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np
from scipy import stats as _st

__all__ = ["mean_ci", "Claim", "Control", "Agreement", "AtLeast", "Testability", "VERDICTS", "JUDGED", "NOT_TESTABLE", "TOO_FEW",
           "detectable_difference", "seeds_needed", "binomial_se"]

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


@dataclass(frozen=True)
class Claim:
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
    changed: str = ""  # how and why the rule changed since an earlier version of the study
    declared: str = ""  # when the rule was committed (a date), where it came after the study's first rules
    control: Control | None = None  # a trained control for the equal-iterations row (see Control)
    added: bool = False  # a comparison the study added (a control, an equal-iterations reading), not the paper's

    def __post_init__(self):
        if self.kind not in ("better", "not_worse", "equivalent"):
            raise ValueError(f"claim {self.id}: kind={self.kind!r}; allowed: 'better', 'not_worse', 'equivalent'")
        if self.kind != "better" and self.margin <= 0:
            raise ValueError(f"claim {self.id}: a {self.kind!r} claim needs a margin > 0")

    @property
    def labels(self) -> tuple[str, ...]:
        """The measures the claim reads (its experiment must declare them)."""
        return (self.a, self.b)

    @property
    def rule(self) -> str:
        if self.kind == "equivalent":
            return (f"confirmed if the 95% CI of {self.a} - {self.b} (paired by seed) lies within "
                    f"+/-{self.margin:g} points; not confirmed if it lies wholly outside; otherwise inconclusive")
        if self.kind == "better":
            return (f"confirmed if the 95% CI of {self.a} - {self.b} (paired by seed) is above {self.margin:g}; "
                    f"not confirmed if it is at or below {self.margin:g}; otherwise inconclusive")
        return (f"confirmed if the 95% CI of {self.a} - {self.b} (paired by seed) is above "
                f"-{self.margin:g} points; not confirmed if it is below -{self.margin:g}; otherwise inconclusive")

    def judge(self, values: Mapping[str, Mapping[int, float]], testable: str | None = None,
              test_images: int | None = None) -> dict:
        """``values[label][seed]``: each run's value. ``testable``: why the claim is not testable
        (None: it is). ``test_images``: the test-set size, for the power of a single seed."""
        a, b = values.get(self.a, {}), values.get(self.b, {})
        seeds = sorted(set(a) & set(b))
        diffs = [a[s] - b[s] for s in seeds]
        n = len(diffs)
        out = {"claim": self.id, "text": self.text, "rule": self.rule, "testable when": self.testable.rule(),
               "n": n, "a": math.nan, "b": math.nan}
        if not diffs:
            return {**out, "difference": math.nan, "ci_low": math.nan, "ci_high": math.nan, "detectable": math.nan,
                    "verdict": "not run", "basis": "no pair of runs with results"}
        mean, low, high = mean_ci(diffs)
        mean_a, mean_b = float(np.mean([a[s] for s in seeds])), float(np.mean([b[s] for s in seeds]))
        if n >= 2:
            spread = float(np.std(diffs, ddof=1))
            detectable = detectable_difference(spread, n)
            basis = f"95% t-interval over {n} paired seeds"
            verdict = self._verdict(low, high)
        else:
            images = test_images or 10_000
            spread = math.hypot(binomial_se(mean_a, images), binomial_se(mean_b, images))
            detectable = detectable_difference(spread, 1)
            basis = f"one difference; detectable from the test set's binomial error ({images} images)"
            verdict = self._verdict(mean, mean)
        verdict, why = _judged(verdict, n, testable)
        return {**out, "a": mean_a, "b": mean_b, "difference": mean, "ci_low": low, "ci_high": high,
                "detectable": detectable, "verdict": verdict, "basis": why + basis}

    def _verdict(self, low: float, high: float) -> str:
        m = self.margin
        if self.kind == "equivalent":
            if -m < low and high < m:
                return "confirmed"
            return "not confirmed" if (low > m or high < -m) else "inconclusive"
        if self.kind == "better":
            return "confirmed" if low > m else "not confirmed" if high <= m else "inconclusive"
        return "confirmed" if low > -m else "not confirmed" if high < -m else "inconclusive"

    def effect_to_detect(self, paper_a: float, paper_b: float) -> float:
        """The true difference the seeds must resolve for the paper's numbers to pass this rule."""
        diff = paper_a - paper_b
        if self.kind == "better":
            return diff - self.margin
        if self.kind == "not_worse":
            return diff + self.margin
        return self.margin - abs(diff)


@dataclass(frozen=True)
class Agreement:
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
    changed: str = ""

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.measure,)

    @property
    def rule(self) -> str:
        low, high = self.target / self.factor, self.target * self.factor
        return (f"confirmed if every seed's {self.measure} lies within [{low:.3g}, {high:.3g}] (a factor "
                f"{self.factor:.3g} around {self.target:.3g}); not confirmed if none does; otherwise inconclusive")

    def judge(self, values: Mapping[str, Mapping[int, float]], testable: str | None = None,
              test_images: int | None = None) -> dict:
        got = [v for v in values.get(self.measure, {}).values() if v is not None and not math.isnan(v)]
        out = {"claim": self.id, "text": self.text, "rule": self.rule, "testable when": self.testable.rule(),
               "n": len(got), "ci_low": math.nan, "ci_high": math.nan, "detectable": math.nan, "b": self.target}
        if not got:
            return {**out, "a": math.nan, "difference": math.nan, "verdict": "not run", "basis": "no value measured"}
        inside = [self.target / self.factor <= v <= self.target * self.factor for v in got]
        verdict = "confirmed" if all(inside) else "not confirmed" if not any(inside) else "inconclusive"
        value = float(np.exp(np.mean(np.log(got))))
        verdict, why = _judged(verdict, len(got), testable)
        return {**out, "a": value, "difference": value / self.target, "verdict": verdict,
                "basis": why + f"ours / paper = {value / self.target:.2f} (geometric mean over {len(got)} seed(s))"}


@dataclass(frozen=True)
class AtLeast:
    """A measured quantity that should reach a threshold (e.g. a speedup of at least 2x).

    Confirmed when every seed's value reaches ``threshold``; not confirmed when none does;
    inconclusive otherwise. Seeds without a value (the target was never reached) count as below.
    """

    id: str
    text: str
    measure: str
    threshold: float
    testable: Testability = field(default_factory=Testability)
    changed: str = ""

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.measure,)

    @property
    def rule(self) -> str:
        return (f"confirmed if every seed's {self.measure} is at least {self.threshold:g}; not confirmed if "
                "none is (a target never reached counts as below); otherwise inconclusive")

    def judge(self, values: Mapping[str, Mapping[int, float]], testable: str | None = None,
              test_images: int | None = None) -> dict:
        got = dict(values.get(self.measure, {}))
        out = {"claim": self.id, "text": self.text, "rule": self.rule, "testable when": self.testable.rule(),
               "n": len(got), "ci_low": math.nan, "ci_high": math.nan, "detectable": math.nan, "b": self.threshold}
        if not got:
            return {**out, "a": math.nan, "difference": math.nan, "verdict": "not run", "basis": "no value measured"}
        reached = [v is not None and not math.isnan(v) and v >= self.threshold for v in got.values()]
        finite = [v for v in got.values() if v is not None and not math.isnan(v)]
        verdict = "confirmed" if all(reached) else "not confirmed" if not any(reached) else "inconclusive"
        mean = float(np.mean(finite)) if finite else math.nan
        missing = len(got) - len(finite)
        verdict, why = _judged(verdict, len(got), testable)
        basis = f"mean {mean:.2f} over {len(finite)} seed(s)" + (f"; {missing} never reached the target" if missing else "")
        return {**out, "a": mean, "difference": mean, "verdict": verdict, "basis": why + basis}


def companions_at_equal_iterations(claim: Claim, short: str, long: str, long_at_short_end: str) -> list[Claim]:
    """The extra rows of a "fewer iterations match more" claim: the comparison a short budget can
    make. Without a control, one row: the same rule, with the longer arm read mid-run at the shorter
    arm's last iteration. With a :class:`Control`, the ``@equal-iterations`` row compares the shorter
    arm with the trained control (it must beat it), and the mid-run reading is kept under its own
    name, ``@<long>-read-mid-run``."""
    a, b = (claim.a, long_at_short_end) if claim.b == long else (long_at_short_end, claim.b)
    mid_run = Claim(f"{claim.id}@equal-iterations",
                    f"{claim.text} -- at equal iterations ({long} read mid-run, at {short}'s end)",
                    a=a, b=b, kind=claim.kind, margin=claim.margin, testable=EQUAL_BUDGET, added=True)
    if claim.control is None:
        return [mid_run]
    control = claim.control
    trained = Claim(f"{claim.id}@equal-iterations",
                    f"{short} beats {control.row}: {long}'s schedule with its drops compressed into {short}'s "
                    "iterations (a trained annealing control)", a=short, b=control.row, testable=EQUAL_BUDGET,
                    declared=control.declared, added=True,
                    changed=f"declared {control.declared}, before the control trained: {control.why}")
    slug = long.replace(" ", "-")
    return [trained, replace(mid_run, id=f"{claim.id}@{slug}-read-mid-run")]
