"""When each verdict rule was declared, and how it changed: a claim's rule history.

A claim records when its rule was committed (``declared``, an ISO date or date-time, and the short
``commit``) and, where the study revised it, one :class:`Revision`: the rule judged instead, the
date it was declared and a one-line reason. Whether a rule came before the data it judges is then
computed from the run records (their ``started_at``), so that pages rendered without git still say
it. A revision declared after the first run it judges is "revised after data": its claim keeps the
pre-declared verdict beside the revised one.

Dates are compared as text in ISO form. A bare date is only known to the day: a rule declared on
the day of the first run is not counted as before it (the conservative reading).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["History", "Revision", "PAPER", "SECONDARY", "ADDED", "RECAPS", "SOURCES", "declared_before",
           "rule_in_force", "rule_before", "history_text", "FIRST_CLR", "FIRST_OTHERS", "STUDY_RULES", "REVISED"]

PAPER, ADDED, RECAPS = "the paper", "the study's own comparison", "recaps' advice (not in the paper)"
SECONDARY = "the paper, as secondary sources transcribe it"  # a paper whose own text was not read
SOURCES = (PAPER, SECONDARY, ADDED, RECAPS)

# The commits that declared the study's rules (``git log -S<claim id> --reverse -- src/``), as data,
# since pages are rendered without git: {"declared": ISO time, "commit": short hash}.
FIRST_CLR = {"declared": "2026-11-25T18:35:54+00:00", "commit": "edff632"}  # CLR Table 1, 3, §3, Fig. 3
FIRST_OTHERS = {"declared": "2026-11-25T19:18:51+00:00", "commit": "9764b5c"}  # CLR Table 4, SGDR, super-convergence
# every claim's testability rule, the equal-iterations rows, and the rule changes noted in `changed`
STUDY_RULES = {"declared": "2026-11-30T15:02:21+00:00", "commit": "57f7d2f"}
# the statistical review's revisions (issue 27), declared before the runs that follow them trained
REVISED = {"declared": "2026-12-06T17:56:56+00:00", "commit": "bb17fa5"}


@dataclass(frozen=True)
class Revision:
    """A rule that replaces a claim's declared rule: ``rule`` is judged instead (a claim object of
    the same id), declared on ``declared`` (in ``commit``), for the one-line ``reason``."""

    rule: Any
    declared: str
    reason: str
    commit: str = ""


@dataclass(frozen=True, kw_only=True)
class History:
    """What every kind of claim carries besides its rule: when the rule was declared, how it changed
    before (``changed``, text only) and since (``revision``), and whose claim it is (``source``; a
    comparison the study added also sets ``added``)."""

    declared: str = ""
    commit: str = ""
    changed: str = ""
    revision: Revision | None = None
    added: bool = False
    source: str = ""

    @property
    def origin(self) -> str:
        """Whose claim this is: the paper's, the study's own comparison, or recaps' advice."""
        return self.source or (ADDED if self.added else PAPER)

    @property
    def in_force(self):
        """The rule judged now: the revision's where there is one."""
        return self.revision.rule if self.revision is not None else self


def declared_before(declared: str, first_run: str | None) -> bool | None:
    """Whether a rule declared at ``declared`` came before a run started at ``first_run`` (None: no
    run yet, or no declaration recorded). Only a bare date's day is known: the same day is not before."""
    if not declared or not first_run:
        return None
    if len(declared) == 10:  # a date without a time
        return declared < first_run[:10]
    return declared < first_run


def rule_in_force(claim):
    """The rule a claim is judged by now."""
    return claim.in_force


def rule_before(claim, first_run: str | None):
    """The rule in force when the claim's first run started (None: no rule was declared by then).
    With no run yet, the rule in force: a revision before any run is simply the declared rule."""
    if first_run is None:
        return claim.in_force
    revision = claim.revision
    if revision is not None and declared_before(revision.declared, first_run):
        return revision.rule
    return claim if declared_before(claim.declared, first_run) is not False else None


def _when(date: str, commit: str) -> str:
    return f"{date[:10]}" + (f" ({commit})" if commit else "")


def history_text(claim, first_run: str | None) -> str:
    """The claim's rule history in one line, e.g. "declared 2026-11-25 (edff632), before its first
    run (2026-11-25); revised 2026-12-06 after data: <reason>"."""
    parts = []
    before = declared_before(claim.declared, first_run)
    head = f"declared {_when(claim.declared, claim.commit)}" if claim.declared else "declaration not recorded"
    if first_run:
        head += (", before its first run" if before else ", after its first run" if before is False
                 else ", its first run") + f" ({first_run[:10]})"
    else:
        head += ", no run yet"
    parts.append(head)
    if claim.changed:
        parts.append(f"earlier change: {claim.changed}")
    revision = claim.revision
    if revision is not None:
        after = declared_before(revision.declared, first_run) is False
        parts.append(f"revised {_when(revision.declared, revision.commit)}"
                     + (" after data" if after else " before data" if first_run else "") + f": {revision.reason}")
    return "; ".join(parts)
