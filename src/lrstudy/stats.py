"""Summaries over seeds and the pre-declared verdict rules.

Claims compare two settings of one experiment. Runs of different settings with the same seed share
their initial weights and data order, so differences are taken per seed (paired) and summarised by
a Student-t 95% confidence interval. With one seed there is no interval: the verdict then rests on
the sign of the single difference and says so in its ``basis``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import stats as _st

__all__ = ["mean_ci", "Claim", "Agreement", "AtLeast"]


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two ends of its Student-t confidence interval (NaN ends for fewer than 2)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    half = float(_st.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Claim:
    """A claim of a paper, as a comparison of two settings' final test accuracy (in points).

    ``kind="better"``: ``a`` beats ``b``. Confirmed when the 95% CI of the paired difference
    ``a - b`` lies above 0; not confirmed when it lies at or below 0; inconclusive otherwise.

    ``kind="not_worse"``: ``a`` is at least as good as ``b`` up to ``margin`` points. Confirmed when
    the CI lies above ``-margin``; not confirmed when it lies below ``-margin``; inconclusive
    otherwise.

    ``kind="equivalent"``: ``a`` and ``b`` are equally good up to ``margin`` points. Confirmed when
    the CI lies inside ``(-margin, margin)``; not confirmed when it lies wholly outside
    ``[-margin, margin]``; inconclusive otherwise.
    """

    id: str
    text: str
    a: str
    b: str
    kind: str = "better"
    margin: float = 0.0

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
            return (f"confirmed if the 95% CI of {self.a} - {self.b} (paired by seed) is above 0; "
                    "not confirmed if it is at or below 0; otherwise inconclusive")
        return (f"confirmed if the 95% CI of {self.a} - {self.b} (paired by seed) is above "
                f"-{self.margin:g} points; not confirmed if it is below -{self.margin:g}; otherwise inconclusive")

    def judge(self, final: Mapping[str, Mapping[int, float]]) -> dict:
        """``final[label][seed]`` = final test accuracy of each run that produced a result."""
        a, b = final.get(self.a, {}), final.get(self.b, {})
        seeds = sorted(set(a) & set(b))
        diffs = [a[s] - b[s] for s in seeds]
        out = {"claim": self.id, "text": self.text, "rule": self.rule, "n": len(diffs)}
        if not diffs:
            return {**out, "difference": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                    "verdict": "not run", "basis": "no pair of runs with results"}
        mean, low, high = mean_ci(diffs)
        if len(diffs) == 1:
            basis = "one seed: a single difference, no confidence interval"
            low = high = mean
        else:
            basis = f"95% t-interval over {len(diffs)} paired seeds"
        verdict = self._verdict(low, high)
        if len(diffs) == 1:
            low = high = math.nan
        return {**out, "difference": mean, "ci_low": low, "ci_high": high, "verdict": verdict, "basis": basis}

    def _verdict(self, low: float, high: float) -> str:
        m = self.margin
        if self.kind == "equivalent":
            if -m < low and high < m:
                return "confirmed"
            return "not confirmed" if (low > m or high < -m) else "inconclusive"
        if self.kind == "better":
            return "confirmed" if low > 0 else "not confirmed" if high <= 0 else "inconclusive"
        return "confirmed" if low > -m else "not confirmed" if high < -m else "inconclusive"


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

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.measure,)

    @property
    def rule(self) -> str:
        low, high = self.target / self.factor, self.target * self.factor
        return (f"confirmed if every seed's {self.measure} lies within [{low:.3g}, {high:.3g}] (a factor "
                f"{self.factor:.3g} around {self.target:.3g}); not confirmed if none does; otherwise inconclusive")

    def judge(self, values: Mapping[str, Mapping[int, float]]) -> dict:
        got = [v for v in values.get(self.measure, {}).values() if v is not None and not math.isnan(v)]
        out = {"claim": self.id, "text": self.text, "rule": self.rule, "n": len(got),
               "ci_low": math.nan, "ci_high": math.nan}
        if not got:
            return {**out, "difference": math.nan, "verdict": "not run", "basis": "no value measured"}
        inside = [self.target / self.factor <= v <= self.target * self.factor for v in got]
        verdict = "confirmed" if all(inside) else "not confirmed" if not any(inside) else "inconclusive"
        ratio = float(np.exp(np.mean(np.log(got)))) / self.target
        return {**out, "difference": ratio, "verdict": verdict,
                "basis": f"ours / paper = {ratio:.2f} (geometric mean over {len(got)} seed(s))"}


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

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.measure,)

    @property
    def rule(self) -> str:
        return (f"confirmed if every seed's {self.measure} is at least {self.threshold:g}; not confirmed if "
                "none is (a target never reached counts as below); otherwise inconclusive")

    def judge(self, values: Mapping[str, Mapping[int, float]]) -> dict:
        got = dict(values.get(self.measure, {}))
        out = {"claim": self.id, "text": self.text, "rule": self.rule, "n": len(got), "ci_low": math.nan,
               "ci_high": math.nan}
        if not got:
            return {**out, "difference": math.nan, "verdict": "not run", "basis": "no value measured"}
        reached = [v is not None and not math.isnan(v) and v >= self.threshold for v in got.values()]
        finite = [v for v in got.values() if v is not None and not math.isnan(v)]
        verdict = "confirmed" if all(reached) else "not confirmed" if not any(reached) else "inconclusive"
        mean = float(np.mean(finite)) if finite else math.nan
        missing = len(got) - len(finite)
        basis = f"mean {mean:.2f} over {len(finite)} seed(s)" + (f"; {missing} never reached the target" if missing else "")
        return {**out, "difference": mean, "verdict": verdict, "basis": basis}
