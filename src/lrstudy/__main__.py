"""Command line: train an experiment's runs into the run store without Jupyter.

    python -m lrstudy run clr_cifar10 --profile fast --data path/to/tree
    python -m lrstudy list

Useful on a GPU machine without papermill: the notebooks later read the same run store.
"""

from __future__ import annotations

import argparse
import sys

from .experiments import EXPERIMENTS, get_experiment
from .config import PROFILES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrstudy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train (or find) every run of one or more notebooks")
    run.add_argument("notebooks", nargs="+", help=f"notebook names: {sorted(EXPERIMENTS)}")
    run.add_argument("--profile", required=True, choices=PROFILES)
    run.add_argument("--data", default=None, help="data source: cifar10, cifar100, synthetic or a path")
    run.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the profile's)")
    run.add_argument("--device", default=None, choices=["cpu", "cuda", "auto"])
    run.add_argument("--no-progress", action="store_true", help="no per-iteration progress bar")
    sub.add_parser("list", help="list notebooks and profiles")
    args = parser.parse_args(argv)

    if args.command == "list":
        print("notebooks:", ", ".join(sorted(EXPERIMENTS)))
        print("profiles: ", ", ".join(PROFILES))
        return 0
    failed = 0
    for name in args.notebooks:
        experiment = get_experiment(name)
        settings = experiment.settings(args.profile, data=args.data, seeds=args.seeds, device=args.device)
        results = experiment.run(settings, progress=not args.no_progress)
        runs = results.runs
        print(runs.groupby(["setting", "status"]).size().to_string())
        failed += int((runs.status == "failed").sum())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
