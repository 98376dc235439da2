"""Which runs the run queue trains: experiments named on the command line (or ``all``), their
settings, claims and seeds, resolved against the registry of experiments into
:class:`~lrstudy.runqueue.QueuedRun` objects, which :func:`lrstudy.runqueue.make_plan` orders."""

from __future__ import annotations

from typing import Iterable, Mapping

from .experiments import EXPERIMENTS
from .runqueue import QueuedRun
from .selection import claims_by_experiment, experiment_names, parse_seed_range

__all__ = ["select_runs"]


def select_runs(names: Iterable[str], profile: str, *, seeds: int | None = None, seed_range: str | None = None,
                only: Iterable[str] | None = None, claims: Iterable[str] | None = None, device: str | None = None,
                precision: str | None = None, sources: Mapping[str, str | None] | None = None) -> list[QueuedRun]:
    """The runs of the named experiments (``all``: every one) under ``profile``, in the
    experiments' order: those of the settings in ``only``, or those the ``claims`` need (ids; an
    experiment none of whose claims is named contributes none); ``seeds`` of them (1..N) or the seeds
    of ``seed_range`` ("A-B"). ``sources`` names data sources by parameter (``data``,
    ``data_cifar100``, ``data_mnist``; None keeps the profile's)."""
    experiments = [EXPERIMENTS[name] for name in experiment_names(names, list(EXPERIMENTS))]
    wanted = None if claims is None else claims_by_experiment(claims, experiments)
    chosen_seeds = parse_seed_range(seed_range) if seed_range else None
    if chosen_seeds and seeds is not None:
        raise ValueError("give --seeds or --seed-range, not both")
    out = []
    for experiment in experiments:
        if wanted is not None and experiment.name not in wanted:
            continue
        settings = experiment.settings(profile, seeds=max(chosen_seeds) if chosen_seeds else seeds, device=device,
                                       precision=precision, **experiment.sources_taken(sources))
        rows = experiment.scaled_rows(settings)
        for label, config in experiment.selected(settings, only=only, seeds=chosen_seeds,
                                                 claims=None if wanted is None else wanted[experiment.name]):
            out.append(QueuedRun(settings, label, config, rows[label].dataset, experiment))
    return out
