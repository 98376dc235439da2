"""The run queue: any part of a profile's runs, in priority order, time-boxed, on this machine or a
Ray cluster.

    runs = select_runs(["all"], "fast", claims=["CLR-T1.tri2-vs-fixed"])   # what to train (lrstudy.queue_selection)
    plan = make_plan(runs)                      # in which order, with FLOPs and estimated time
    print(plan.render())                        # `python -m lrstudy plan ...`
    result = run_queue(plan, time_limit=45 * 60)   # `python -m lrstudy run ... --time-limit 45m`

**Order.** By default the queue completes claims, not experiments: it first trains the runs (all
arms x seeds) of the claims that give the most evidence per GPU-minute -- greedily, the claim whose
missing runs complete the most claims per estimated second -- so that a queue stopped early leaves
whole claims judged rather than many half-claims. Runs no claim needs come last. ``order="notebook"``
keeps the experiments' own order (seeds outermost).

**Time box.** Runs start while time is left. No run starts that the estimate says cannot finish
unless it can checkpoint, and every run can: at the limit the run in progress saves its complete
state at that very step and stops (:class:`~lrstudy.checkpoints.StopRequested`), and the next call
continues it, with results byte-identical to a run that went straight through (on a CPU). SIGTERM
-- a batch system's warning before it kills a job -- stops the queue the same way.

**Tasks.** The unit of training is one run, or on CUDA a group of up to the profile's ``fuse``
runs of one small network trained as one computation (:func:`lrstudy.execute.group_tasks`; on a
CPU fusing is slower, so there it happens only when asked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .checkpoints import StopRequested
from .config import Settings
from .costs import PESSIMISTIC_FLOOR_MS, RunCost, Throughput, run_cost, step_flops, throughput_for
from .data import DATASET_CLASSES, DATASET_SHAPES
from .execute import Sources, default_fuse, group_tasks, prepare_store, train_task_into_store
from .fused import group_id
from .paths import results_root
from .queue_types import QueueResult, TimeBox, planned_device, queued_name
from .ray_executor import run_on_ray
from .runs import RunConfig, RunRecord, RunStore, stored_status

__all__ = ["QueuedRun", "Task", "Plan", "make_plan", "run_queue", "run_in_order", "train_in_order",
           "EXIT_STOPPED", "ORDERS"]

EXIT_STOPPED = 3  # the command's exit status when the time limit (or SIGTERM) stopped the queue
ORDERS = ("claims", "notebook")


@dataclass(frozen=True)
class QueuedRun:
    """One run of the queue: its experiment's settings, its setting's label, its configuration, the
    data set its row trains on, and the experiment that declares it (a :class:`lrstudy.study.Experiment`:
    its rows and claims order the queue; typed loosely, as the experiments sit above the queue)."""

    settings: Settings
    label: str
    config: RunConfig
    dataset: str
    declared_by: Any = field(compare=False, repr=False)

    @property
    def experiment(self) -> str:
        return self.settings.experiment


@dataclass
class Task:
    """What trains as one unit: a run, or a fused group of runs of one experiment."""

    runs: list[QueuedRun]
    seconds: float  # estimated wall time

    @property
    def settings(self) -> Settings:
        return self.runs[0].settings

    @property
    def labelled(self) -> list[tuple[str, RunConfig]]:
        return [(r.label, r.config) for r in self.runs]


@dataclass
class Plan:
    """The runs of a selection in queue order, each with its state in the store, its cost and its
    estimated time (0 for a stored run), and what still trains, as tasks in order."""

    runs: list[QueuedRun]
    status: dict[str, str]
    costs: dict[str, RunCost]
    seconds: dict[str, float]
    tasks: list[Task]
    throughput: Throughput
    compile_seconds: float
    order: str
    command: str = ""
    fused_in: dict[str, int] = field(default_factory=dict)  # run id -> size of the fused group it trains in
    aliases: dict[str, list[str]] = field(default_factory=dict)  # run id -> other settings that are the same run

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values()) + self.compile_seconds

    def upper_seconds(self) -> float:
        """The estimate's upper bound (:meth:`~lrstudy.costs.Throughput.pessimistic`), with a compile for
        every distinct network, batch and group size, and one more for each compiled network's evaluation."""
        slow = self.throughput.pessimistic()
        training = sum(slow.seconds([self.costs[r.config.id] for r in t.runs], fused=len(t.runs) > 1) for t in self.tasks)
        if not self.compile_seconds:
            return training
        steps = {(self.costs[t.runs[0].config.id].network, t.runs[0].config.batch_size, len(t.runs)) for t in self.tasks}
        evaluations = {network for network, _, _ in steps}
        return training + slow.compile_s * (len(steps) + len(evaluations))

    def group_ids(self) -> list[str]:
        """The ids of the fused groups among the tasks (their checkpoints are named so)."""
        return [group_id([r.config for r in t.runs]) for t in self.tasks if len(t.runs) > 1]

    def totals(self) -> list[tuple[str, list[str], tuple[float, float] | None]]:
        """Per experiment, then ``all``: its run ids and its share of the paper's budget
        (:func:`paper_share`; None for ``all``)."""
        registry = self.runs[0].declared_by.registry_names if self.runs else ()
        groups: dict[str, list[QueuedRun]] = {name: [] for name in registry or ()}  # in the experiments' order
        for run in self.runs:
            groups.setdefault(run.experiment, []).append(run)
        groups = {name: runs for name, runs in groups.items() if runs}
        return [*[(name, [r.config.id for r in runs], paper_share(runs, self.costs)) for name, runs in groups.items()],
                ("all", [r.config.id for r in self.runs], None)]

    def render(self) -> str:
        """The plan as text: one line per run, totals per experiment, and the estimate's basis."""
        lines = []
        if self.command:
            lines.append(f"# {self.command}")
        lines.append(f"# order: {self.order}; {len(self.runs)} runs, {len(self.tasks)} tasks to train")
        header = f"{'#':>4}  {'run id':<16}  {'experiment':<17}  {'seed':>4}  {'steps':>8}  {'FLOPs':>9}  {'min':>6}  " \
                 f"{'status':<8}  setting"
        lines += [header, "-" * len(header)]
        for number, run in enumerate(self.runs, 1):
            i = run.config.id
            fused = f"  [fused x{self.fused_in[i]}]" if self.fused_in.get(i, 1) > 1 else ""
            same = f"  (= {'; '.join(self.aliases[i])})" if self.aliases.get(i) else ""
            lines.append(f"{number:>4}  {i:<16}  {run.experiment:<17}  {run.config.seed:>4}  {run.config.iterations:>8}  "
                         f"{self.costs[i].flops:>9.3g}  {self.seconds[i] / 60:>6.2f}  {self.status[i]:<8}  "
                         f"{run.label}{same}{fused}")
        lines += ["", "totals (min: estimated minutes to train what the store lacks; paper: this selection's steps and "
                      "training FLOPs per seed as a fraction of the same rows at the paper's budget and networks)",
                  f"{'experiment':<17}  {'runs':>5}  {'to train':>8}  {'steps':>10}  {'FLOPs':>9}  {'min':>7}  "
                  f"{'paper steps':>11}  {'paper FLOPs':>11}"]
        for name, ids, share in self.totals():
            steps, flops = share if share else ("", "")
            lines.append(f"{name:<17}  {len(ids):>5}  {sum(self.status[i] not in ('finished', 'diverged') for i in ids):>8}  "
                         f"{sum(self.costs[i].steps for i in ids):>10}  {sum(self.costs[i].flops for i in ids):>9.3g}  "
                         f"{sum(self.seconds[i] for i in ids) / 60:>7.1f}  {_percent(steps):>11}  {_percent(flops):>11}")
        compiled = ""
        if self.compile_seconds:
            compiled = (f" ({self.compile_seconds / 60:.1f} of them compiling "
                        f"{self.compile_seconds / self.throughput.compile_s:.0f} networks)")
        if self.throughput.measured:
            lines += ["", f"estimated time: {self.total_seconds / 60:.1f} min{compiled}, on {self.throughput.describe()}"]
        else:  # assumptions, not measurements: a range
            lines += ["", f"estimated time: {self.total_seconds / 60:.1f} to {self.upper_seconds() / 60:.1f} min "
                          f"(best case{compiled}; upper bound at a {PESSIMISTIC_FLOOR_MS:g} ms per-step floor, fused "
                          "groups no faster than their runs, every fused and evaluation compile counted), on "
                          f"{self.throughput.describe()}"]
        if self.aliases:
            lines.append("(= ...): other settings of the experiment that are the same run, trained once")
        return "\n".join(lines) + "\n"


def make_plan(runs: Sequence[QueuedRun], order: str = "claims", bench: str | None = None, command: str = "",
              fresh: bool = False) -> Plan:
    """The queue for ``runs``: their state in the store, their costs, tasks and estimated times,
    in ``order`` ("claims" or "notebook"); ``bench`` names a ``make bench`` CSV to estimate with
    (default: this machine's for the profile's device, else the stated assumptions). ``fresh``
    plans as if the store held none of them (a profile's whole cost)."""
    if order not in ORDERS:
        raise ValueError(f"order {order!r}; choose one of {list(ORDERS)}")
    if not runs:
        raise ValueError("the selection holds no run")
    aliases: dict[str, list[str]] = {}
    unique: dict[str, QueuedRun] = {}
    for run in runs:  # settings that are the same configuration are one run, trained once
        if run.config.id in unique:
            aliases.setdefault(run.config.id, []).append(run.label)
        else:
            unique[run.config.id] = run
    runs = list(unique.values())
    settings = runs[0].settings
    device = planned_device(settings)
    precisions = {r.config.precision_name for r in runs}  # (a bench row that names a precision is for that one)
    throughput = throughput_for(device, bench, precisions.pop() if len(precisions) == 1 else "fp32")
    store = RunStore(settings.profile.name)
    status = {r.config.id: "missing" if fresh else
              stored_status(store, r.config, r.settings.source_of(r.config.data).fingerprint) for r in runs}
    costs = {r.config.id: run_cost(r.config, r.dataset) for r in runs}
    fuse = settings.profile.fuse if device == "cuda" else 1
    stored = {i for i, s in status.items() if s in ("finished", "diverged", "other data")}  # (the last: never trained over)

    def tasks_in(ordered):
        missing = [r for r in ordered if r.config.id not in stored]
        groups = group_tasks(missing, fuse, config=lambda r: r.config, scope=lambda r: r.experiment)
        return [Task(group, throughput.seconds([costs[r.config.id] for r in group], fused=len(group) > 1))
                for group in groups]

    def seconds_of(tasks):
        out = dict.fromkeys(status, 0.0)
        for task in tasks:
            flops = sum(costs[r.config.id].flops for r in task.runs)
            for r in task.runs:  # a fused group's time is shared by its members in proportion to their work
                out[r.config.id] = task.seconds * costs[r.config.id].flops / flops
        return out

    ordered = list(runs)
    if order == "claims":
        ordered = _claims_first(ordered, seconds_of(tasks_in(ordered)), stored, aliases)
    tasks = tasks_in(ordered)
    compiled = {(costs[t.runs[0].config.id].network, t.runs[0].config.batch_size) for t in tasks if len(t.runs) == 1}
    compile_seconds = throughput.compile_s * len(compiled) if device == "cuda" and settings.profile.compile else 0.0
    return Plan(ordered, status, costs, seconds_of(tasks), tasks, throughput, compile_seconds, order, command,
                {r.config.id: len(t.runs) for t in tasks for r in t.runs}, aliases)


def paper_share(runs: Sequence[QueuedRun], costs: Mapping[str, RunCost]) -> tuple[float, float]:
    """One experiment's runs per seed -- their optimizer steps and training FLOPs -- as fractions of
    the same rows at the paper's budget, with the paper's networks and batches."""
    paper = runs[0].declared_by.rows()
    ours = {r.label: costs[r.config.id] for r in runs}  # one seed's worth: the rows are the same for every seed
    steps = sum(c.steps for c in ours.values())
    flops = sum(c.train_flops for c in ours.values())
    paper_steps = sum(paper[label].iterations for label in ours)
    paper_flops = 0.0
    for label in ours:
        row = paper[label]
        classes, shape = DATASET_CLASSES[row.dataset], DATASET_SHAPES[row.dataset]
        paper_flops += step_flops(row.model, row.batch_size, classes, shape)[0] * row.iterations
    return steps / paper_steps, flops / paper_flops


def _percent(fraction) -> str:
    if fraction == "":
        return ""
    return f"{100 * fraction:.3g}%"


def _claims_first(runs: list[QueuedRun], seconds: Mapping[str, float], stored: set[str],
                  aliases: Mapping[str, list[str]]) -> list[QueuedRun]:
    """Runs in the order that completes the most claims per estimated second: repeatedly the
    claim whose still-missing runs complete the most claims (itself and any other they finish) per
    second of training, all its arms and seeds at once -- first among the claims of the profile's
    ``priority`` notebooks, then among the others; then the runs no claim needs."""
    first = set(runs[0].settings.profile.priority)
    tiers: list[list] = [[], []]  # (claim id, ids of the runs it needs): the profile's priority notebooks, the rest
    experiments = {r.experiment: r.declared_by for r in runs}
    for name, experiment in experiments.items():
        for claim in experiment.claims:
            rows = set(experiment.rows_for([claim.id]))
            ids = frozenset(r.config.id for r in runs if r.experiment == name
                            and rows & {r.label, *aliases.get(r.config.id, ())})
            if ids:
                tiers[name not in first].append((claim.id, ids))
    scheduled, chosen = set(stored), []
    place = {r.config.id: n for n, r in enumerate(runs)}
    for units in tiers:
        while units:
            def value(unit):
                # (fsum: exact whatever the set's order, which varies between processes, so ties break alike)
                cost = math.fsum(seconds[i] for i in unit[1] - scheduled)
                done = sum(1 for other in units if other[1] <= scheduled | unit[1])
                return math.inf if cost == 0 else done / cost
            best = max(units, key=value)  # (max keeps the first of equals: the experiments' own order)
            chosen += sorted(best[1] - scheduled, key=place.get)
            scheduled |= best[1]
            units = [u for u in units if not u[1] <= scheduled]
    position = {i: n for n, i in enumerate(chosen)}
    return sorted(runs, key=lambda r: position.get(r.config.id, len(position)))


def run_queue(plan: Plan, executor: str = "local", time_limit: float | None = None, progress: bool = True,
              box: TimeBox | None = None, **ray_options) -> QueueResult:
    """Train the plan's tasks in order with ``executor`` ("local" or "ray"; ``ray_options`` go to
    :func:`lrstudy.ray_executor.run_on_ray`), stopping at ``time_limit`` seconds from now (or at
    ``box``'s limit, a box started earlier) or on SIGTERM."""
    box = box or TimeBox(time_limit)
    if not plan.tasks:
        return QueueResult()
    with box.on_sigterm():
        if executor == "local":
            return _run_locally(plan, box, progress)
        if executor == "ray":
            return run_on_ray(plan, box, progress=progress, **ray_options)
    raise ValueError(f"executor {executor!r}; choose 'local' or 'ray'")


def _run_locally(plan: Plan, box: TimeBox, progress: bool) -> QueueResult:
    """The tasks one after another in this process, each written to the store as it ends."""
    return train_in_order(
        plan.tasks, box, progress, name=lambda r: queued_name(r.experiment, r.label, r.config.seed),
        headline=lambda total: f"{total} of {len(plan.runs)} runs to train, in {plan.order} order "
                               f"(estimated {plan.total_seconds / 60:.1f} min on {plan.throughput.device})")


def run_in_order(settings: Settings, labelled: Sequence[tuple[str, RunConfig]], progress: bool = True,
                 fuse: int | None = None) -> tuple[list[RunRecord | None], dict[str, str]]:
    """A notebook's queue: each run's record, in order (None where there is none), and the reason
    for each missing one, by run id -- after training, in their own order, the runs the store lacks.

    They train on ``settings.device``, up to ``fuse`` runs of one small net as one computation
    (default: :func:`~lrstudy.execute.default_fuse`: on a CPU, K=4 fused runs train at 0.49x the
    rate of one, results/bench). A stored run is reused only if the data at hand, where it is on
    this machine, has the fingerprint the run recorded (:class:`lrstudy.runs.OtherDataError`
    otherwise). If CIFAR-10 is needed and cannot be had this stops at once, with one message naming
    the remedies; runs on another data set that cannot be downloaded are reported as not run, with
    the reason; a run that raises is recorded as failed and the others still run."""
    store = RunStore(settings.profile.name)
    records = [store.load(c, settings.source_of(c.data).fingerprint) for _, c in labelled]
    missing = [i for i, record in enumerate(records) if record is None]
    if not missing:
        return records, {}
    dataset_of = {source.id: name for name, source in settings.data.items()}
    # (declared_by: only planning asks the experiment, and a notebook's queue keeps the notebook's order)
    runs = [QueuedRun(settings, labelled[i][0], labelled[i][1], dataset_of[labelled[i][1].data], declared_by=None)
            for i in missing]
    groups = group_tasks(runs, default_fuse(settings) if fuse is None else fuse, config=lambda r: r.config)
    result = train_in_order(
        [Task(group, 0.0) for group in groups], TimeBox(), progress, name=lambda r: f"{r.label} seed {r.config.seed}",
        headline=lambda total: f"{total} of {len(labelled)} runs to train (the rest are in {_relative(store.root)}).")
    for i in missing:
        config = labelled[i][1]
        if config.id not in result.errors:
            records[i] = store.load(config, settings.source_of(config.data).fingerprint)
    return records, result.errors


def train_in_order(tasks: Sequence[Task], box: TimeBox, progress: bool, name, headline) -> QueueResult:
    """The one loop that trains runs: with the store checked and each experiment's main data at
    hand first (:func:`~lrstudy.execute.prepare_store`), each task in turn, its runs named
    ``[i/n] name(run)`` and stored as they end, until ``box`` says stop. ``headline(n)`` is printed
    once the checks have passed."""
    loaded: dict = {}  # data sets by id, shared by every experiment's Sources: each is loaded once
    sources: dict[str, Sources] = {}
    for task in tasks:
        experiment = task.settings.experiment
        if experiment not in sources:
            sources[experiment] = Sources(task.settings, loaded)
            missing = [pair for t in tasks if t.settings.experiment == experiment for pair in t.labelled]
            prepare_store(task.settings, RunStore(task.settings.profile.name), sources[experiment], missing)
    total = sum(len(t.runs) for t in tasks)
    print(headline(total))
    result, done = QueueResult(), 0
    try:
        for task in tasks:
            if box():
                raise StopRequested("time limit")
            if task.seconds > box.left():
                print(f"{task.runs[0].label}: estimated {task.seconds / 60:.1f} min, {box.left() / 60:.1f} left; "
                      "it saves a checkpoint at the limit and the next call continues it")
            names = [f"[{done + i + 1}/{total}] {name(r)}" for i, r in enumerate(task.runs)]
            store = RunStore(task.settings.profile.name)
            errors = train_task_into_store(task.settings, task.labelled, store, sources[task.settings.experiment],
                                           progress, names, stop=box)
            result.errors.update(errors)
            done += len(task.runs)
    except StopRequested:
        result.stopped = True
        print(f"stopped ({'SIGTERM' if box.signalled else 'time limit'}): {done} of {total} runs done; "
              "the same command continues from the checkpoints")
    return result


def _relative(path) -> str:
    try:
        return str(path.relative_to(results_root().parent))
    except ValueError:
        return str(path)
