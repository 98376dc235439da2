"""Command line: train an experiment's runs into the run store without Jupyter.

    python -m lrstudy run clr_cifar10 --profile fast --data path/to/tree
    python -m lrstudy run clr_cifar10 --profile full --only fixed,exp --seed-range 2-3
    python -m lrstudy run super_convergence --profile fast --data cifar10.tar.xz --data-mnist mnist-tree/
    python -m lrstudy status --profile fast clr_cifar10    # which runs are finished, diverged, failed
    python -m lrstudy seal --profile cpu                   # add digests to records stored before they had one
    python -m lrstudy gpu-check --out check.md             # can this machine run the study? (110 s budget)
    python -m lrstudy list

Useful on a GPU machine without papermill: the notebooks later read the same run store.
A bad input (an unknown notebook, a bad seed count, data that cannot be had or read, a profile that
needs a GPU on a machine without one) prints one message and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from .config import PROFILES, DeviceUnavailable
from .data import DataUnavailable
from .experiments import EXPERIMENTS, get_experiment
from .runs import OtherDataError
from .study import DATA_PARAMETERS

# Notebooks of the study that train nothing (make passes every notebook's name to `status`)
NOTEBOOKS_WITHOUT_RUNS = ("schedules", "scorecard")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except (ValueError, DataUnavailable, OtherDataError, DeviceUnavailable, OSError) as err:
        print(f"lrstudy: {err}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["gpu-check"]:  # its own options (argparse's REMAINDER would not pass --device on)
        from . import gpucheck

        return gpucheck.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m lrstudy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train (or find) every run of one or more notebooks")
    run.add_argument("notebooks", nargs="+", help=f"notebook names: {sorted(EXPERIMENTS)}")
    run.add_argument("--profile", required=True, choices=PROFILES)
    _data_options(run)
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=None, help="number of seeds, 1..N (default: the profile's)")
    seeds.add_argument("--seed-range", default=None, metavar="A-B", help="only seeds A to B (e.g. 2-3)")
    run.add_argument("--only", action="append", default=None, metavar="SETTING[,SETTING...]",
                     help="only these settings (the experiment's row labels; repeat for labels with commas)")
    run.add_argument("--device", default=None, choices=["cpu", "cuda", "auto"])
    run.add_argument("--no-progress", action="store_true", help="no per-iteration progress bar")
    status = sub.add_parser("status", help="count each notebook's runs by status in the run store")
    status.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    status.add_argument("--profile", required=True, choices=PROFILES)
    _data_options(status)
    status.add_argument("--seeds", type=int, default=None)
    status.add_argument("--missing-ok", action="store_true",
                        help="missing runs do not fail the command (rendering runs trained elsewhere: make TRAIN=no)")
    card = sub.add_parser("scorecard", help="judge every claim on the stored runs (trains nothing)")
    card.add_argument("--profile", required=True, choices=PROFILES)
    _data_options(card)
    card.add_argument("--readme", action="store_true", help="write the table into README.md's scorecard block")
    card.add_argument("--index", action="store_true", help="write results/<profile>/index.html")
    seal = sub.add_parser("seal", help="check the records of a store written before records carried a digest, "
                                       "and add it")
    seal.add_argument("--profile", required=True, choices=PROFILES)
    sub.add_parser("list", help="list notebooks and profiles")
    # (listed for --help; its arguments are parsed by lrstudy.gpucheck, above)
    sub.add_parser("gpu-check", help="check that this machine can run the study (CUDA, compile, every network "
                                     "and optimizer): gpu-check --help for its options")
    args = parser.parse_args(argv)

    if args.command == "status":
        return _status(args)
    if args.command == "seal":
        from .runs import RunStore

        sealed = RunStore(args.profile).seal()
        print(f"sealed {len(sealed)} records" + (f": {', '.join(sealed)}" if sealed else ""))
        return 0
    if args.command == "scorecard":
        return _scorecard(args)
    if args.command == "list":
        print("notebooks:", ", ".join(sorted(EXPERIMENTS)))
        print("profiles: ", ", ".join(PROFILES))
        return 0
    return _run(args)


def _data_options(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--data-cifar100``, ``--data-mnist``: a source for each data set (default: the profile's)."""
    for dataset, parameter in DATA_PARAMETERS.items():
        parser.add_argument(f"--{parameter.replace('_', '-')}", default=None, metavar="SOURCE",
                            help=f"{dataset} source: {dataset}, a folder-per-class tree or a .tar.xz of one "
                                 "(default: the profile's); used by the notebooks that train on it")


def _sources(args, experiment) -> dict:
    """The data sources given on the command line that ``experiment`` trains on."""
    given = {DATA_PARAMETERS[name]: getattr(args, DATA_PARAMETERS[name]) for name in experiment.data_sets}
    return {parameter: source for parameter, source in given.items() if source is not None}


def _run(args) -> int:
    from .selection import parse_seed_range

    seed_range = parse_seed_range(args.seed_range) if args.seed_range else None
    failed = 0
    for name in args.notebooks:
        experiment = get_experiment(name)
        seeds = max(seed_range) if seed_range else args.seeds
        settings = experiment.settings(args.profile, seeds=seeds, device=args.device, **_sources(args, experiment))
        results = experiment.run(settings, only=args.only, seeds=seed_range, progress=not args.no_progress)
        runs = results.runs
        print(runs.groupby(["setting", "status"]).size().to_string())
        failed += int(runs.status.isin(["failed", "not run"]).sum())
    return 1 if failed else 0


def _scorecard(args) -> int:
    from . import scorecard
    from .paths import project_root

    card = scorecard.collect(args.profile, **{p: getattr(args, p) for p in DATA_PARAMETERS.values()})
    print(scorecard.to_markdown(card))
    if args.readme:
        scorecard.update_readme(project_root() / "README.md", card, args.profile)
    if args.index:
        print("wrote", scorecard.write_index(args.profile, card))
    return 0


def _status(args) -> int:
    """One line per notebook: how many of its runs are finished, diverged, failed, altered (a record
    whose files no longer match their checksums: it will be trained again) or missing. Missing runs
    whose data is not on this machine are counted apart ("data unavailable"), with one line saying
    how to provide it, and do not make the command fail: the notebook reports them as not run."""
    from .data import describe_source, is_local
    from .runs import RunStore

    store = RunStore(args.profile)
    bad = 0
    names = args.notebooks or sorted(EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS and n not in NOTEBOOKS_WITHOUT_RUNS]
    if unknown:
        raise ValueError(f"unknown notebook {unknown[0]!r}; known: {sorted(EXPERIMENTS) + list(NOTEBOOKS_WITHOUT_RUNS)}")
    unavailable = {}
    for name in [n for n in names if n in EXPERIMENTS]:
        experiment = get_experiment(name)
        settings = experiment.settings(args.profile, seeds=args.seeds, device="cpu", **_sources(args, experiment))
        counts = dict.fromkeys(["finished", "diverged", "failed", "altered", "missing", "data unavailable"], 0)
        local = {describe_source(src)[0]: (src, is_local(src)) for src in settings.data.values()}
        for _, config in experiment.run_configs(settings):
            record, why = store.inspect(config)
            if record is not None:
                counts[record.status] += 1
            elif why == "failed":
                counts["failed"] += 1
            elif why not in ("no record", "other configuration"):
                counts["altered"] += 1
            elif local.get(config.data, (None, True))[1]:
                counts["missing"] += 1
            else:
                counts["data unavailable"] += 1
                unavailable[config.data] = local[config.data][0]
        bad += counts["failed"] + counts["altered"] + (0 if args.missing_ok else counts["missing"])
        print(f"  runs    {name}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v or k == "finished"))
    for source in unavailable.values():
        print(f"  data    {source}: not on this machine; give DATA=<folder-per-class tree or .tar.xz of one> "
              "(DATA_CIFAR100=, DATA_MNIST= for those sets), or let torchvision download it (needs internet)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
