"""The study's experiments, one module each, in the order a reader meets their notebooks. Each
module declares one :class:`~lrstudy.study.Experiment` (``EXPERIMENT``) with its runs, the paper's
settings, its claims and its deviations, plus the tables and figures its notebook draws."""

from . import clr_adaptive, clr_architectures, clr_cifar10, clr_range_test, sgdr, super_convergence

EXPERIMENTS = {module.EXPERIMENT.name: module.EXPERIMENT for module in (
    clr_range_test, clr_cifar10, clr_adaptive, clr_architectures, sgdr, super_convergence)}


def get_experiment(name: str):
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]
