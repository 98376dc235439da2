"""Command line: train any part of the study's runs into the run store without Jupyter.

    python -m lrstudy run clr_cifar10 --profile fast --data path/to/tree
    python -m lrstudy run all --profile fast --claims CLR-T1.tri2-vs-fixed --time-limit 45m
    python -m lrstudy run clr_cifar10 --profile full --only fixed,exp --seed-range 2-3
    python -m lrstudy run all --profile fast --executor ray          # every GPU of this machine
    python -m lrstudy plan all --profile fast      # what would run: steps, FLOPs, estimated time
    python -m lrstudy export runs.tar.gz --profile fast all           # finished records, for elsewhere
    python -m lrstudy import runs.tar.gz           # merge records trained elsewhere into this store
    python -m lrstudy gpu-window --minutes 8 --out dir --data cifar10-jpeg.tar.xz   # a lent GPU's one command
    python -m lrstudy status --profile fast clr_cifar10    # which runs are finished, diverged, failed
    python -m lrstudy seal --profile cpu                   # add digests to records stored before they had one
    python -m lrstudy run super_convergence --profile fast --data cifar10.tar.xz --data-mnist mnist-tree/
    python -m lrstudy gpu-check --out check.md             # can this machine run the study? (110 s budget)
    python -m lrstudy budgets --readme              # each profile's budgets and estimated times, into README.md
    python -m lrstudy list

Useful on a GPU machine without papermill: the notebooks later read the same run store.
Exit status: 0 done; 1 some run failed or could not run (its data missing); 2 a bad input (an
unknown experiment, a bad seed count, data that cannot be had or read, a profile that needs a GPU
on a machine without one), with one message; 3 stopped by the time limit or SIGTERM, with the run in
progress checkpointed: the same command continues it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .archive import export_runs, import_archive
from .budgets import budgets_table, update_readme_budgets
from .config import DATA_PARAMETERS, DEVICES, PRECISIONS, PROFILES, DeviceUnavailable
from .data import DataUnavailable
from .experiments import EXPERIMENTS, get_experiment, load_profile
from .gpu_window import gpu_window
from .paths import project_root
from .queue_selection import select_runs
from .queue_types import TimeBox, parse_duration
from .reproduce import preflight, publish as publish_pages  # (publish names the subcommand's parser in _main)
from .runqueue import EXIT_STOPPED, ORDERS, make_plan, run_queue
from .runs import OtherDataError, RunStore, stored_status

# Notebooks of the study that train nothing (make passes every notebook's name to `status`)
NOTEBOOKS_WITHOUT_RUNS = ("schedules", "scorecard")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except (ValueError, DataUnavailable, OtherDataError, DeviceUnavailable, OSError) as err:
        print(f"lrstudy: {err}", file=sys.stderr)
        return 2


def _add_selection(parser: argparse.ArgumentParser) -> None:
    """The arguments that choose runs, shared by run, plan and export."""
    parser.add_argument("notebooks", nargs="+", help=f"experiment names, or all: {list(EXPERIMENTS)}")
    parser.add_argument("--profile", required=True, choices=PROFILES)
    _data_options(parser)
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=None, help="number of seeds, 1..N (default: the profile's)")
    seeds.add_argument("--seed-range", default=None, metavar="A-B", help="only seeds A to B (e.g. 2-3)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--only", action="append", default=None, metavar="SETTING[,SETTING...]",
                       help="only these settings (the experiment's row labels; repeat for labels with commas)")
    which.add_argument("--claims", action="append", default=None, metavar="ID[,ID...]",
                       help="only the runs these claims need (all their arms and seeds)")
    parser.add_argument("--device", default=None, choices=DEVICES)
    parser.add_argument("--precision", default=None, choices=PRECISIONS,
                        help="forward passes in fp32 or under bf16 autocast (default: the profile's; part of a run's id)")
    parser.add_argument("--order", default="claims", choices=ORDERS,
                        help="claims: complete the claims with the most evidence per GPU-minute first (default); "
                             "notebook: the experiments' own order")
    parser.add_argument("--bench", default=None, metavar="CSV",
                        help="estimate times from this `make bench` result (default: this machine's, else assumptions)")


def _selected_plan(args):
    runs = select_runs(args.notebooks, args.profile, seeds=args.seeds, seed_range=args.seed_range, only=args.only,
                       claims=args.claims, device=args.device, precision=args.precision,
                       sources=_given_sources(args))
    if not runs:
        raise ValueError("the selection holds no run (a profile may leave the rows of a claim out)")
    return make_plan(runs, order=args.order, bench=args.bench, command="python -m lrstudy " + shlex.join(args.argv))


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["gpu-check"]:  # its own options (argparse's REMAINDER would not pass --device on)
        from . import gpucheck  # (here: importing it sets CUBLAS_WORKSPACE_CONFIG, for the check's process alone)

        return gpucheck.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m lrstudy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train (or find) the selected runs, in priority order")
    _add_selection(run)
    run.add_argument("--no-progress", action="store_true", help="no per-iteration progress bar")
    run.add_argument("--time-limit", default=None, metavar="DURATION",
                     help="stop by then (45m, 8h, 1h30m): the run in progress saves a checkpoint; exit status 3")
    run.add_argument("--executor", default="local", choices=["local", "ray"],
                     help="local: this process (default); ray: each run or fused group a Ray task")
    run.add_argument("--address", default=None,
                     help="a running Ray cluster to join (auto, or HOST:PORT); default: start one on this machine")
    per_run = run.add_mutually_exclusive_group()
    per_run.add_argument("--gpus-per-run", type=float, default=None, help="GPUs each Ray task takes (default 1 on CUDA)")
    per_run.add_argument("--cpus-per-run", type=int, default=None, help="CPUs each Ray task takes (CPU profiles; default 1)")
    run.add_argument("--export", default=None, metavar="FILE.tar.gz", help="afterwards, write the selection's records there")
    run.add_argument("--with-checkpoints", action="store_true", help="also export the checkpoints of unfinished runs")
    plan = sub.add_parser("plan", help="what `run` would train: one line per run, totals, estimated time")
    _add_selection(plan)
    export = sub.add_parser("export", help="write the selection's finished records into one archive")
    export.add_argument("archive", metavar="FILE.tar.gz")
    _add_selection(export)
    export.add_argument("--with-checkpoints", action="store_true", help="also the checkpoints of unfinished runs")
    merge = sub.add_parser("import", help="merge an archive of records (from `export`), or a GPU window's output "
                                          "folder, into this machine's store")
    merge.add_argument("archive", metavar="FILE.tar.gz|WINDOW-FOLDER")
    window = sub.add_parser("gpu-window", help="a lent GPU's one command: check, measure, train the profile in "
                                               "priority order until the time is up; kill-safe output folder")
    window.add_argument("--minutes", type=float, required=True,
                        help="the whole window; it ends at least 60 s before (more than 1.17 minutes)")
    window.add_argument("--out", required=True, help="an empty folder for its output (at most 8 files of 16 MiB)")
    window.add_argument("--profile", default="fast", choices=PROFILES)
    window.add_argument("--skip", default="", metavar="STAGE[,STAGE]",
                        help="gpu-check and/or measure: for a later window on a device already measured")
    for parameter in DATA_PARAMETERS.values():
        window.add_argument(f"--{parameter.replace('_', '-')}", default=None)
    budgets = sub.add_parser("budgets", help="each profile's budget per experiment, as a fraction of the paper's, "
                                             "and its estimated minutes")
    budgets.add_argument("--readme", action="store_true", help="write the table into README.md's budgets block")
    status = sub.add_parser("status", help="count each notebook's runs by status in the run store")
    status.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    status.add_argument("--profile", required=True, choices=PROFILES)
    _data_options(status)
    _training_data_option(status)
    status.add_argument("--seeds", type=int, default=None)
    status.add_argument("--missing-ok", action="store_true",
                        help="missing runs do not fail the command (rendering runs trained elsewhere: make TRAIN=no)")
    card = sub.add_parser("scorecard", help="judge every claim on the stored runs (trains nothing)")
    card.add_argument("--profile", required=True, choices=PROFILES)
    _data_options(card)
    _training_data_option(card)
    card.add_argument("--readme", action="store_true", help="write the table into README.md's scorecard block")
    card.add_argument("--index", action="store_true", help="write results/<profile>/index.html")
    card.add_argument("--rule-changes", action="store_true",
                      help="print, instead of the table, every verdict that differs between the pre-declared and "
                           "the revised rule, and every claim declared only after its data")
    ready = sub.add_parser("preflight", help="before make reproduce renders anything: can every data source the "
                                             "missing runs need be had? (exit 2 with the remedy if not)")
    ready.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    ready.add_argument("--profile", required=True, choices=PROFILES)
    _data_options(ready)
    ready.add_argument("--no-train", action="store_true", help="nothing will be trained (make TRAIN=no)")
    publish = sub.add_parser("publish", help="copy rendered pages into results/<profile>/, each only if it shows at "
                                             "least the finished runs of the page it replaces")
    publish.add_argument("notebooks", nargs="+")
    publish.add_argument("--profile", required=True, choices=PROFILES)
    publish.add_argument("--from", dest="staged", required=True, metavar="FOLDER", help="where the pages were rendered")
    seal = sub.add_parser("seal", help="check the records of a store written before records carried a digest, "
                                       "and add it")
    seal.add_argument("--profile", required=True, choices=PROFILES)
    sub.add_parser("list", help="list notebooks and profiles")
    # (listed for --help; its arguments are parsed by lrstudy.gpucheck, above)
    sub.add_parser("gpu-check", help="check that this machine can run the study (CUDA, compile, every network "
                                     "and optimizer): gpu-check --help for its options")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    if args.command == "status":
        return _status(args)
    if args.command == "seal":
        sealed = RunStore(args.profile).seal()
        print(f"sealed {len(sealed)} records" + (f": {', '.join(sealed)}" if sealed else ""))
        return 0
    if args.command == "scorecard":
        return _scorecard(args)
    if args.command == "preflight":
        print(preflight(args.profile, args.notebooks or sorted(EXPERIMENTS), _given_sources(args), not args.no_train))
        return 0
    if args.command == "publish":
        published, kept = publish_pages(args.profile, args.notebooks, Path(args.staged))
        for name in published:
            print(f"  published {name}")
        for line in kept:
            print(f"  kept      {line}")
        return 1 if kept else 0
    if args.command == "list":
        print("notebooks:", ", ".join(sorted(EXPERIMENTS)))
        print("profiles: ", ", ".join(PROFILES))
        return 0
    if args.command == "plan":
        plan = _selected_plan(args)
        print(plan.render(), end="")
        _hint_committed_runs(args, plan)
        return 0
    if args.command == "export":
        plan = _selected_plan(args)
        print(export_runs(args.archive, plan.runs, with_checkpoints=args.with_checkpoints,
                          checkpoint_ids=plan.group_ids()))
        return 0
    if args.command == "import":
        print(import_archive(args.archive, profiles=PROFILES))
        return 0
    if args.command == "gpu-window":
        return gpu_window(args.minutes, args.out, args.profile, _given_sources(args),
                          tuple(stage for stage in args.skip.split(",") if stage))
    if args.command == "budgets":
        table = budgets_table()
        print(table)
        if args.readme:
            update_readme_budgets(project_root() / "README.md", table)
        return 0
    return _run(args)



def _training_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--training-data", action="store_true",
                        help="without --data, read the runs of the profile's training data (`data`, what the notebooks "
                             "train on) rather than those its committed results were trained on (`results_data`)")


def _data_options(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--data-cifar100``, ``--data-mnist``: a source for each data set (default: the profile's)."""
    for dataset, parameter in DATA_PARAMETERS.items():
        parser.add_argument(f"--{parameter.replace('_', '-')}", default=None, metavar="SOURCE",
                            help=f"{dataset} source: {dataset}, a folder-per-class tree or a .tar.xz of one "
                                 "(default: the profile's); used by the notebooks that train on it")


def _given_sources(args) -> dict:
    """The data source given on the command line for each data parameter (None: not given)."""
    return {parameter: getattr(args, parameter) for parameter in DATA_PARAMETERS.values()}


def _hint_committed_runs(args, plan) -> None:
    """Without --data, `plan` shows what `run` would train on the profile's `data`; where the profile's
    committed runs were trained on other data (its results_data), say how many of them this
    selection would reuse with that data given."""
    profile = load_profile(args.profile)
    if args.data is not None or not profile.results_data or profile.results_data == profile.data:
        return
    runs = select_runs(args.notebooks, args.profile, seeds=args.seeds, seed_range=args.seed_range, only=args.only,
                       claims=args.claims, device=args.device,
                       sources={**_given_sources(args), "data": profile.results_data})
    stored = sum(state in ("finished", "diverged") for state in make_plan(runs, bench=args.bench).status.values())
    if stored:
        print(f"# {stored} runs of this selection are stored as trained on {profile.results_data} (the profile's "
              f"committed results): --data {profile.results_data} plans against them; without --data, `run` trains "
              f"on {profile.data}, other images, and so trains every run")


def _reading_sources(args) -> dict:
    """The sources a command that only reads the store judges: those given, and for CIFAR-10 without
    --data the label the profile's committed runs were trained on (its ``results_data``), said on
    stderr. Its content is still checked: a record of other images under that label is refused."""
    sources = _given_sources(args)
    label = load_profile(args.profile).results_data
    if sources.get("data") is None and label and not getattr(args, "training_data", False):
        sources["data"] = label
        print(f"lrstudy: reading the runs trained on {label} (profile {args.profile}'s committed results; "
              "--data to choose other data)", file=sys.stderr)
    return sources


def _run(args) -> int:
    """Train the selection; the exit status says whether all of it is stored (0), some failed or
    could not run (1), or the time limit or SIGTERM stopped it (3)."""
    box = TimeBox(parse_duration(args.time_limit) if args.time_limit else None)  # the limit counts from now
    plan = _selected_plan(args)
    options = {}
    if args.executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ValueError("--executor ray needs Ray, which this Python does not have: pip install '.[cluster]' "
                             "(or --executor local)")
        options = dict(address=args.address, gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run)
    elif args.address or args.gpus_per_run or args.cpus_per_run:
        raise ValueError("--address, --gpus-per-run and --cpus-per-run go with --executor ray")
    other = [i for i, state in plan.status.items() if state == "other data"]
    if other:
        raise OtherDataError(f"{len(other)} of the selected runs (e.g. {other[0]}) are stored as trained on other images "
                             "under the same data label than the data given now; nothing was trained. A result is "
                             "never reused for other data, nor overwritten: give the data they were trained on, or "
                             "keep the new results apart (LRSTUDY_RESULTS / make RESULTS=<folder>)")
    result = run_queue(plan, executor=args.executor, box=box, progress=not args.no_progress, **options)

    store = RunStore(args.profile)
    counts: dict[tuple[str, str], int] = {}
    for run in plan.runs:
        state = stored_status(store, run.config, run.settings.source_of(run.config.data).fingerprint)
        state = "not run" if state == "missing" and run.config.id in result.errors else state
        counts[run.experiment, state] = counts.get((run.experiment, state), 0) + 1
    for (experiment, state), n in counts.items():
        print(f"  {experiment}: {n} {state}")
    if args.export:
        print(export_runs(args.export, plan.runs, with_checkpoints=args.with_checkpoints,
                          checkpoint_ids=plan.group_ids()))
    if result.stopped:
        return EXIT_STOPPED
    return 1 if any(state in ("failed", "not run", "missing", "altered", "other data") for _, state in counts) else 0


def _scorecard(args) -> int:
    """Print the card; exit 1 if a stored record of its runs fails verification, 2 if no run of the
    data judged is stored while runs of other data are (the hint names them); --readme and --index
    then write nothing, and never replace a table built from more finished runs."""
    from . import scorecard  # (here: it needs IPython, of the notebooks extra, which a bare GPU machine lacks)

    sources = _reading_sources(args)
    card = scorecard.collect(args.profile, **sources)
    print(scorecard.rule_changes(card) if args.rule_changes else scorecard.to_markdown(card))
    altered = scorecard.altered_records(args.profile, **sources)
    if altered:
        print(f"lrstudy: {len(altered)} stored records fail verification and were left out of this card "
              f"({', '.join(altered[:3])}{' ...' if len(altered) > 3 else ''}): restore them from version control, "
              "or move them away to train them again; nothing was written", file=sys.stderr)
        return 1
    if scorecard.finished_runs(card) == 0:
        labels = scorecard.stored_labels(RunStore(args.profile))
        if labels:
            given = sources.get("data") or "the profile's default"
            print(f"lrstudy: no finished run of {given} is stored for profile {args.profile}; the store holds "
                  + ", ".join(f"{n} trained on {label}" for label, n in labels.items())
                  + f": give --data {next(iter(labels))} (DATA= for make) to judge those; nothing was written",
                  file=sys.stderr)
            return 2
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
    sources = _reading_sources(args)
    store = RunStore(args.profile)
    bad = 0
    names = args.notebooks or sorted(EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS and n not in NOTEBOOKS_WITHOUT_RUNS]
    if unknown:
        raise ValueError(f"unknown notebook {unknown[0]!r}; known: {sorted(EXPERIMENTS) + list(NOTEBOOKS_WITHOUT_RUNS)}")
    unavailable = {}
    for name in [n for n in names if n in EXPERIMENTS]:
        experiment = get_experiment(name)
        settings = experiment.settings(args.profile, seeds=args.seeds, device="cpu",
                                       **experiment.sources_taken(sources))
        counts = dict.fromkeys(["finished", "diverged", "failed", "altered", "other data", "missing",
                                "data unavailable"], 0)
        # each run once: settings that are the same run ("fixed" and "fixed (fp32)") share one record
        runs = {config.id: config for _, config in experiment.run_configs(settings)}
        for config in runs.values():
            source = settings.source_of(config.data)
            state = stored_status(store, config, source.fingerprint)
            if state == "missing" and not source.local:
                state = "data unavailable"
                unavailable[source.id] = source.source
            counts[state] += 1
        bad += counts["failed"] + counts["altered"] + counts["other data"] + (0 if args.missing_ok else counts["missing"])
        print(f"  runs    {name}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v or k == "finished"))
    for source in unavailable.values():
        print(f"  data    {source}: not on this machine; give DATA=<folder-per-class tree or .tar.xz of one> "
              "(DATA_CIFAR100=, DATA_MNIST= for those sets), or let torchvision download it (needs internet)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
