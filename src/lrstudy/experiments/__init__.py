"""One module per notebook: its runs, the paper's settings, its claims and verdict rules."""

from . import clr_adaptive, clr_architectures, clr_cifar10, clr_range_test, sgdr, super_convergence

EXPERIMENTS = {
    "clr_range_test": clr_range_test,
    "clr_cifar10": clr_cifar10,
    "clr_adaptive": clr_adaptive,
    "clr_architectures": clr_architectures,
    "sgdr": sgdr,
    "super_convergence": super_convergence,
}


def get_experiment(name: str):
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown notebook/experiment {name!r}; known: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]
