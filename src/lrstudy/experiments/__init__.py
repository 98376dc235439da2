"""The study's experiments, one module each, in the order a reader meets their notebooks. Each
module declares one :class:`~lrstudy.study.Experiment` (``EXPERIMENT``) with its runs, the paper's
settings, its claims and its deviations, plus the tables and figures its notebook draws."""

from .. import config
from ..models import MODELS
from . import clr_adaptive, clr_architectures, clr_cifar10, clr_range_test, sgdr, super_convergence

EXPERIMENTS = {module.EXPERIMENT.name: module.EXPERIMENT for module in (
    clr_range_test, clr_cifar10, clr_adaptive, clr_architectures, sgdr, super_convergence)}
# Each experiment learns every experiment's name, in this order: its settings check a profile's
# notebook sections against them, and the run queue lists a plan's experiments in it.
for _experiment in EXPERIMENTS.values():
    _experiment.registry_names = tuple(EXPERIMENTS)


def load_profile(name: str) -> config.Profile:
    """A profile, its notebook sections and captured networks checked against the experiments and
    models that exist."""
    return config.load_profile(name, notebooks=EXPERIMENTS, networks=MODELS)


def get_experiment(name: str):
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]
