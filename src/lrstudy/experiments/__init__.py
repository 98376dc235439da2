"""One module per notebook: its runs, the paper's settings, its claims and verdict rules."""

from . import clr_adaptive, clr_cifar10, clr_range_test

EXPERIMENTS = {"clr_range_test": clr_range_test, "clr_cifar10": clr_cifar10, "clr_adaptive": clr_adaptive}


def get_experiment(name: str):
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown notebook/experiment {name!r}; known: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]
