"""Choosing part of the study's runs: some experiments (or ``all``), some of their settings
(``--only``) or the runs some claims need (``--claims``), some seeds (``--seeds N`` /
``--seed-range A-B``). The command line and Python share these functions."""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from .runs import MAX_SEEDS, RunConfig

__all__ = ["parse_seed_range", "parse_labels", "select", "experiment_names", "claims_by_experiment"]


def parse_seed_range(text: str) -> tuple[int, ...]:
    """``"2-3"`` -> ``(2, 3)``; ``"4"`` -> ``(4,)``. Seeds are whole numbers >= 1."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
    if not match:
        raise ValueError(f"seed range {text!r}: write A-B (e.g. 2-3) or one seed (e.g. 4)")
    low, high = int(match[1]), int(match[2] or match[1])
    if low < 1 or high < low:
        raise ValueError(f"seed range {text!r}: seeds start at 1 and A-B needs A <= B")
    if high > MAX_SEEDS:
        raise ValueError(f"seed range {text!r}: seeds go up to {MAX_SEEDS}")
    return tuple(range(low, high + 1))


def parse_labels(texts: Iterable[str] | None, known: Sequence[str]) -> list[str] | None:
    """Setting labels from ``--only`` values: each value is one label, or several joined by commas
    (``"fixed,exp"``); a value that is itself a label (some hold a comma) is taken whole.
    None stays None: every setting."""
    if texts is None:
        return None
    labels = []
    for text in texts:
        labels += [text.strip()] if text.strip() in known else [t.strip() for t in text.split(",") if t.strip()]
    if not labels:
        raise ValueError("--only needs at least one setting label")
    return labels


def select(labelled: Sequence[tuple[str, RunConfig]], only: Iterable[str] | None = None,
           seeds: Iterable[int] | None = None) -> list[tuple[str, RunConfig]]:
    """The ``(label, config)`` pairs whose label is in ``only`` (values as :func:`parse_labels`
    reads them) and whose seed is in ``seeds`` (None: no restriction), in their original order.
    An unknown label is an error that lists the known ones."""
    known = list(dict.fromkeys(label for label, _ in labelled))
    only = parse_labels(only, known)
    if only is not None:
        unknown = [label for label in only if label not in known]
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}; this experiment's settings are: "
                             + ", ".join(repr(k) for k in known))
    wanted = None if seeds is None else set(seeds)
    return [(label, config) for label, config in labelled
            if (only is None or label in only) and (wanted is None or config.seed in wanted)]


def experiment_names(names: Iterable[str], known: Sequence[str]) -> list[str]:
    """Experiment names as given, ``all`` standing for every experiment (in ``known``'s order);
    an unknown name is an error that lists the known ones."""
    out: list[str] = []
    for name in names:
        if name == "all":
            out += [k for k in known if k not in out]
        elif name not in known:
            raise ValueError(f"unknown experiment {name!r}; known: all, {', '.join(known)}")
        elif name not in out:
            out.append(name)
    return out


def claims_by_experiment(texts: Iterable[str], experiments: Sequence) -> dict[str, list[str]]:
    """``--claims`` values (ids, several joined by commas) grouped by the experiment that declares
    each, over ``experiments``; an id none of them declares is an error listing those they do."""
    wanted = [t.strip() for text in texts for t in text.split(",") if t.strip()]
    if not wanted:
        raise ValueError("--claims needs at least one claim id")
    owner = {claim.id: experiment.name for experiment in experiments for claim in experiment.claims}
    unknown = [claim_id for claim_id in wanted if claim_id not in owner]
    if unknown:
        raise ValueError(f"unknown claim {unknown[0]!r}; the claims of {', '.join(e.name for e in experiments)} are: "
                         + ", ".join(owner))
    out: dict[str, list[str]] = {}
    for claim_id in dict.fromkeys(wanted):
        out.setdefault(owner[claim_id], []).append(claim_id)
    return out
