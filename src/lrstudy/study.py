"""What an experiment is, and what its runs give.

Every experiment module (``lrstudy.experiments.*``; one experiment = one notebook) declares one
:class:`Experiment`: its rows -- the settings of a paper's table at the paper's budget, as
:class:`Row` objects -- its claims and the measures they may name, its deviations from the paper,
the paper's own table and the knobs a profile sets. Notebooks, the command line and the scorecard
all use it the same way::

    settings = experiment.settings("cpu")               # the profile's section, checked
    results = experiment.run(settings)                  # train what the store lacks (lrstudy.runqueue)
    results = experiment.results(settings)              # or only read the store (the scorecard)
    verdicts = experiment.verdicts(settings, results)   # every claim, judged by its rule

When every run is already stored, nothing is loaded or trained: a re-executed notebook only reads.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .config import DATA_PARAMETERS, Settings, load_profile, resolve_settings
from .models import MODELS
from .policy import scale_steps
from .runs import RunConfig, RunRecord, RunStore, origin_of
from .schedule_specs import rescale
from .selection import select
from .history import declared_before, history_text, rule_before
from .knobs import Knobs, read_knobs
from .stats import companions_at_equal_iterations, interim, mean_ci, pooled_sd

__all__ = ["Row", "Experiment", "StudyResults", "NOT_RUN_YET", "model_name"]

NOT_RUN_YET = "not run yet: no stored result (nothing is trained here)"

BN_MOMENTUM_CAP = 0.1  # the largest BN moving-average weight a shortened run gets (see Row.scaled)


@dataclass(frozen=True)
class Row:
    """One setting of a paper's table at the paper's own budget (profiles scale it)."""

    iterations: int
    schedule: dict
    model: dict
    optimizer: dict
    batch_size: int
    momentum: dict | None = None
    augment: dict = field(default_factory=dict)
    normalize: str = "mean_image"
    eval_every: int | None = None  # in paper iterations; None: the experiment's `eval_every` setting
    trace_every: int | None = None  # in paper iterations; None: no training trace
    dataset: str = "cifar10"  # which of the settings' data sets it trains on
    train_subset: int | None = None  # training images (a fixed class-balanced subset); None: all
    test_subset: int | None = None  # test images likewise
    eval_at: tuple[int, ...] = ()  # further evaluation steps, in paper iterations
    snapshot_at: tuple[int, ...] = ()  # steps whose test-set outputs are kept, in paper iterations
    lr_estimate: str | None = None  # track the Hessian-free estimate of the best rate ("corrected", "authors")
    precision: str | None = None  # this row's precision ("fp32", "bf16"); None: the profile's

    def scaled(self, scale: float) -> "Row":
        """The same row with every step count multiplied by ``scale`` (schedules stretched to match),
        and a network's BN moving-average weight (``bn_momentum``, where the row sets one) divided by
        it: the running statistics span ~1/momentum updates, and that span must stay the same fraction
        of a shortened run, or a short run is tested with statistics still at init. The weight is
        capped at :data:`BN_MOMENTUM_CAP` (a span of at least ~10 updates): uncapped, a very short run
        would test with the last batch's statistics alone, and two arms of one comparison with
        different weights would test with spans of 1 and of several updates."""
        if scale == 1:
            return self
        model = self.model
        if "bn_momentum" in model:
            m = model["bn_momentum"]
            model = {**model, "bn_momentum": min(max(BN_MOMENTUM_CAP, m), m / scale)}
        steps = lambda n: None if n is None else scale_steps(n, scale)  # noqa: E731
        iterations = scale_steps(self.iterations, scale)
        # a point such as a cycle's end falls after the update that crosses it: round up
        within = lambda points: tuple(sorted({min(iterations, max(1, math.ceil(p * scale - 1e-9))) for p in points}))  # noqa: E731
        return dataclasses.replace(
            self, iterations=iterations, model=model, schedule=rescale(self.schedule, scale),
            momentum=None if self.momentum is None else rescale(self.momentum, scale),
            eval_every=steps(self.eval_every), trace_every=steps(self.trace_every),
            eval_at=within(self.eval_at), snapshot_at=within(self.snapshot_at),
        )


Measures = dict[str, dict[int, float]]  # {label: {seed: value}}


class Experiment:
    """One experiment of the study (and its notebook).

    ``rows`` are its settings at the paper's budget: a mapping, or a function of the profile's knobs
    (an instance of ``knobs``, a :class:`~lrstudy.knobs.Knobs` dataclass) for experiments whose profiles
    change more than the budget (networks' depth, data subsets); under the default knobs it must give
    the paper's own rows. ``claims`` may name a row's label or one of the
    ``derived`` measures -- a mapping from each to the rows it is computed from -- which
    ``derive(settings, results)`` computes, exactly those, every time. A row's own value is its runs'
    final test accuracy, unless ``row_values(settings, results)`` reads it otherwise. A claim that
    names anything else is an error here, when its module is imported. The rows a claim needs, and
    so the runs ``--claims`` trains, are those it names and those its derived measures read
    (:meth:`rows_for`).

    A claim with ``equal_iterations`` gets a second row, judged here: the shorter arm against the
    longer one read off its curve at the shorter arm's last iteration (:meth:`at_equal_iterations`).
    """

    def __init__(self, name: str, rows: Mapping[str, Row] | Callable[[Mapping], dict[str, Row]],
                 claims: Sequence, deviations: Sequence[str], paper: Callable[[], pd.DataFrame],
                 knobs: type[Knobs] = Knobs, derived: Mapping[str, Sequence[str]] | None = None,
                 derive: Callable[[Settings, StudyResults], Measures] | None = None,
                 row_values: Callable[[Settings, StudyResults], Measures] | None = None,
                 unitless: Sequence[str] = ()):
        self.name, self.deviations, self.paper, self.knobs = name, list(deviations), paper, knobs
        # every experiment's name, in the registry's order (lrstudy.experiments sets it): a profile's
        # notebook sections must be among them, and the run queue lists experiments in that order;
        # None (an experiment outside the registry) leaves the check out
        self.registry_names: tuple[str, ...] | None = None
        self.unitless = frozenset(unitless)  # derived measures not in accuracy points: no pooled power for them
        self._rows = rows if callable(rows) else (lambda knobs: dict(rows))
        self.derived, self._derive, self._row_values = dict(derived or {}), derive, row_values
        paper_rows = self.rows()
        self.data_sets = ("cifar10", *sorted({row.dataset for row in paper_rows.values()} - {"cifar10"}))
        if bool(self.derived) != (derive is not None):
            raise ValueError(f"experiment {name!r}: derived measures need a derive function, and it needs them")
        for measure, inputs in self.derived.items():
            unknown = [label for label in inputs if label not in paper_rows]
            if unknown or not inputs:
                raise ValueError(f"experiment {name!r}: derived measure {measure!r} must name the rows it reads "
                                 f"({unknown[0]!r} is not one)" if unknown else "(it names none)")
        self.claims, self.equal_iterations = [], {}  # {measure: (short arm, long arm)}
        for claim in claims:
            self.claims.append(claim)
            if getattr(claim, "equal_iterations", False):
                short, long = sorted((claim.a, claim.b), key=lambda label: paper_rows[label].iterations)
                measure = f"{long} at {short}'s last iteration"
                self.equal_iterations[measure] = (short, long)
                self.claims.extend(companions_at_equal_iterations(claim, short, long, measure))
        self.labels = (*paper_rows, *self.derived, *self.equal_iterations)
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"experiment {name!r}: a derived measure has a row's label")
        for claim in self.claims:
            unknown = [label for label in _all_labels(claim) if label not in self.labels]
            if unknown:
                raise ValueError(f"experiment {name!r}: claim {claim.id} names {unknown[0]!r}, which is neither "
                                 "one of its rows nor a declared derived measure")

    def claim(self, claim_id: str):
        """The claim with this id (an error listing this experiment's claims otherwise)."""
        for claim in self.claims:
            if claim.id == claim_id:
                return claim
        raise ValueError(f"experiment {self.name!r} has no claim {claim_id!r}; its claims: "
                         + ", ".join(c.id for c in self.claims))

    def rows_for(self, claim_ids: Iterable[str]) -> list[str]:
        """The rows whose runs these claims need -- the rows they name, and the rows each derived
        measure they name reads -- in the experiment's row order."""
        needed = set()
        for claim_id in claim_ids:
            for label in _all_labels(self.claim(claim_id)):
                needed.update(self.inputs(label))
        return [label for label in self.rows() if label in needed]

    def rows(self, knobs: Knobs | None = None) -> dict[str, Row]:
        """The rows at the paper's budget under a profile's ``knobs`` (None: the paper's own)."""
        return self._rows(self.knobs() if knobs is None else knobs)

    def settings(self, profile: str = "smoke", seeds: int | None = None, device: str | None = None,
                 precision: str | None = None, **data: str | None) -> Settings:
        """The settings under ``profile``: its section for this experiment, checked against the
        experiment's knobs, then any overrides -- ``seeds``, ``device``, and a source for each data set
        the experiment trains on, by its parameter (``data=`` for CIFAR-10, ``data_cifar100=``, ...), and
        ``precision`` for the rows that name none. None keeps the profile's value (for precision, its
        ``precision_of`` entry for this notebook or for the row, else its ``precision``)."""
        prof = load_profile(profile, notebooks=self.registry_names, networks=MODELS)
        knobs = read_knobs(self.knobs, prof.section(self.name),
                           f"profile file lrstudy/profiles/{profile}.yaml, notebook {self.name!r}")
        labels = sorted(self.rows(knobs))
        unknown = sorted(set(prof.row_precisions(self.name)) - set(labels))
        if unknown:
            raise ValueError(f"profile file lrstudy/profiles/{profile}.yaml: precision_of.{self.name} names unknown row "
                             f"{unknown[0]!r} (rows: {labels})")
        return resolve_settings(self.name, prof, knobs, seeds, device, self.data_sets, data, precision)

    def sources_taken(self, sources: Mapping[str, str | None] | None) -> dict[str, str]:
        """The sources among ``sources`` (by parameter: ``data``, ``data_cifar100``, ...; None and a
        missing one keep the profile's) for the data sets this experiment trains on: what
        :meth:`settings` accepts, from sources given for a whole study."""
        given = {DATA_PARAMETERS[name]: (sources or {}).get(DATA_PARAMETERS[name]) for name in self.data_sets}
        return {parameter: source for parameter, source in given.items() if source is not None}

    def scaled_rows(self, s: Settings) -> dict[str, Row]:
        """The rows at this profile's budget (each row's share of its paper iterations, from the knobs'
        :meth:`~lrstudy.knobs.Knobs.scale_of`: ``budget_scale`` unless an experiment says otherwise), with
        batches multiplied by its ``batch_scale`` knob where an experiment has one (cheap profiles) --
        and the learning rate by the same factor (the linear scaling rule), so that a rate that is
        large for the paper's batch stays as large for the smaller one."""
        batch = getattr(s.knobs, "batch_scale", 1.0)
        out = {}
        for label, row in self.rows(s.knobs).items():
            row = row.scaled(s.knobs.scale_of(label))
            if batch != 1:
                new_batch = max(2, round(row.batch_size * batch))
                factor = {"name": "fixed", "lr": new_batch / row.batch_size}
                row = dataclasses.replace(row, batch_size=new_batch,
                                          schedule={"name": "product", "factors": [row.schedule, factor]})
            out[label] = row
        return out

    def schedules(self, s: Settings, labels: Sequence[str] | None = None) -> dict[str, tuple[int, dict]]:
        """Each row's iteration budget and schedule at this profile's budget."""
        rows = self.scaled_rows(s)
        return {label: (rows[label].iterations, rows[label].schedule) for label in (labels or rows)}

    def run_configs(self, s: Settings) -> list[tuple[str, RunConfig]]:
        """Every run: each row at this profile's budget, once per seed (seeds outermost, so an
        interrupted study has complete seeds first)."""
        out = []
        for seed in s.seeds:
            for label, row in self.scaled_rows(s).items():
                out.append((label, RunConfig(
                    profile=s.profile.name, data=s.data[row.dataset].id, model=row.model,
                    optimizer=row.optimizer,
                    schedule=row.schedule, iterations=row.iterations, batch_size=row.batch_size,
                    eval_every=row.eval_every or s.knobs.eval_every, seed=seed, normalize=row.normalize,
                    augment=row.augment, momentum=row.momentum, trace_every=row.trace_every,
                    train_subset=row.train_subset, test_subset=row.test_subset,
                    eval_at=list(row.eval_at) or None, snapshot_at=list(row.snapshot_at) or None,
                    lr_estimate=row.lr_estimate, precision=row.precision or s.precision_of_row(label),
                )))
        return out

    def selected(self, s: Settings, only: Iterable[str] | None = None, seeds: Iterable[int] | None = None,
                 claims: Iterable[str] | None = None) -> list[tuple[str, RunConfig]]:
        """The ``(label, config)`` of the runs of the settings in ``only`` -- or of the rows the
        ``claims`` need -- and of the seeds in ``seeds`` (None: no restriction), in run order."""
        if claims is not None:
            if only is not None:
                raise ValueError("choose runs by settings (--only) or by claims (--claims), not both")
            only = self.rows_for(claims)
            present = set(self.scaled_rows(s))
            only = [label for label in only if label in present]  # a profile may leave rows out (table2: false)
            if not only:
                return []
        return select(self.run_configs(s), only=only, seeds=seeds)

    def run(self, s: Settings, only: Iterable[str] | None = None, seeds: Iterable[int] | None = None,
            progress: bool = True, fuse: int | None = None, claims: Iterable[str] | None = None) -> StudyResults:
        """The runs -- all of them, or those of the settings in ``only`` (or those the ``claims``
        need) and the seeds in ``seeds`` -- after training, in this order, those the store lacks
        (:func:`lrstudy.runqueue.run_in_order`); under settings that do not train (``s.train``
        false) only :meth:`results`."""
        if not s.train:
            return self.results(s, only=only, seeds=seeds, claims=claims)
        from .runqueue import run_in_order  # (here: reading results must not load the training code)

        labelled = self.selected(s, only=only, seeds=seeds, claims=claims)
        records, errors = run_in_order(s, labelled, progress=progress, fuse=fuse)
        return StudyResults(s, [label for label, _ in labelled], [c for _, c in labelled], records, errors)

    def results(self, s: Settings, only: Iterable[str] | None = None, seeds: Iterable[int] | None = None,
                claims: Iterable[str] | None = None) -> StudyResults:
        """The stored runs (chosen as :meth:`run` chooses them), read from the store: nothing is
        trained or downloaded. A run the store lacks is "not run yet". A stored run is read only for
        data with the fingerprint it recorded, where that data is on this machine
        (:class:`lrstudy.runs.OtherDataError` otherwise)."""
        labelled = self.selected(s, only=only, seeds=seeds, claims=claims)
        store = RunStore(s.profile.name)
        records = [store.load(config, s.source_of(config.data).fingerprint) for _, config in labelled]
        errors = {config.id: NOT_RUN_YET for (_, config), record in zip(labelled, records) if record is None}
        return StudyResults(s, [label for label, _ in labelled], [c for _, c in labelled], records, errors)

    def inputs(self, label: str) -> tuple[str, ...]:
        """The rows a measure is read from: a row itself, a derived measure's declared rows, or an
        equal-iteration measure's two arms."""
        if label in self.derived:
            return tuple(self.derived[label])
        return self.equal_iterations.get(label, (label,))

    def budgets(self, s: Settings) -> dict[str, float]:
        """Per row: the fraction of the paper's training images (iterations x batch) it trains under
        this profile; 0 for a row the profile leaves out."""
        paper, ran = self.rows(), self.scaled_rows(s)
        return {label: (ran[label].iterations * ran[label].batch_size / (row.iterations * row.batch_size)
                        if label in ran else 0.0) for label, row in paper.items()}

    def at_equal_iterations(self, s: Settings, results: StudyResults) -> Measures:
        """Each equal-iteration measure: the longer arm's test accuracy at the shorter arm's last
        iteration, per seed, interpolated linearly between the evaluations around it."""
        rows = self.scaled_rows(s)
        curves = results.curves
        out: Measures = {}
        for measure, (short, long) in self.equal_iterations.items():
            out[measure] = {}
            if short not in rows or not len(curves):
                continue
            step = rows[short].iterations
            long_curves = curves[(curves.setting == long) & curves.test_acc.notna()]
            for seed, one in long_curves.groupby("seed"):
                one = one.sort_values("step")
                if one.step.min() <= step <= one.step.max():
                    out[measure][int(seed)] = float(np.interp(step, one.step, one.test_acc))
        return out

    def measures(self, s: Settings, results: StudyResults) -> Measures:
        """Every value a claim may name, ``{label: {seed: value}}``: each row's, the derived ones and
        the equal-iteration ones."""
        values = self._row_values(s, results) if self._row_values else results.final_accuracy()
        derived = self._derive(s, results) if self._derive else {}
        if set(derived) != set(self.derived):
            raise ValueError(f"experiment {self.name!r}: derive() gave {sorted(set(derived) ^ set(self.derived))} "
                             "besides or instead of the declared derived measures")
        return {**values, **derived, **self.at_equal_iterations(s, results)}

    def late_gain(self, results: StudyResults, label: str, window: float) -> float:
        """How many points a row's test accuracy gained over the last ``window`` of its evaluations
        (mean over seeds; NaN with fewer than two evaluations in the window)."""
        curves = results.curves
        gains = []
        for _, one in curves[(curves.setting == label) & curves.test_acc.notna()].groupby("seed"):
            one = one.sort_values("step")
            late = one[one.step >= (1 - window) * one.step.max()]
            if len(late) >= 2:
                gains.append(float(late.test_acc.iloc[-1] - late.test_acc.iloc[0]))
        return float(np.mean(gains)) if gains else math.nan

    def spreads(self, s: Settings, results: StudyResults) -> dict[str, float]:
        """Per measure in accuracy points: the between-seed standard deviation of final test accuracy,
        pooled over every row of this profile that trains the same network on the same data set as
        the measure's first input row -- the planning spread for prospective power, never a row's
        own. NaN where no such row has two seeds yet, and for the ``unitless`` measures."""
        rows, final = self.scaled_rows(s), results.final_accuracy()
        network = {label: (model_name(row.model), row.dataset) for label, row in rows.items()}
        pooled = {key: pooled_sd([list(final.get(label, {}).values()) for label, k in network.items() if k == key])[0]
                  for key in set(network.values())}
        out = {}
        for label in self.labels:
            first = self.inputs(label)[0]
            out[label] = math.nan if label in self.unitless or first not in network else pooled[network[first]]
        return out

    def first_runs(self, results: StudyResults) -> dict[str, str]:
        """Per row: when its earliest stored run started (ISO time, from the records)."""
        out: dict[str, str] = {}
        for label, record in zip(results.labels, results.records):
            started = record.meta.get("started_at") if record is not None else None
            if started and (label not in out or started < out[label]):
                out[label] = started
        return out

    def first_judged(self, claim, started: Mapping[str, str]) -> str | None:
        """When the first run a claim judges started: the moment its evidence existed, i.e. when the
        last of its measures got its first run (a measure read from several rows, when the first of
        them did). None while a measure has no run."""
        firsts = []
        for label in claim.labels:
            times = [started[row] for row in self.inputs(label) if row in started]
            if not times:
                return None
            firsts.append(min(times))
        return max(firsts)

    def verdicts(self, s: Settings, results: StudyResults) -> pd.DataFrame:
        """Each claim judged by the rule in force on :meth:`measures` -- once its testability rule
        holds (budget, levelled arms), and with a yes or a no only from two seeds or more -- beside
        the verdict of the rule declared before its first run where a revision came after the data.

        Columns besides each rule's own (``a``, ``b``, ``difference``, ``ci_low``, ``ci_high``, ``n``,
        ``p``, ``against``, ``verdict``, ``basis``): ``budget`` (the smallest share of the paper's
        images an arm trained), ``detectable`` (prospective: the planned seeds, the pooled spread),
        ``planned`` (seeds), ``status`` ("interim (n of N)"), ``source`` (whose claim),
        ``declared``, ``first run``, ``declared before data``, ``pre-declared rule``,
        ``pre-declared verdict``, ``revised after data``, ``rule history``, ``hypothesis`` (the id of
        the rule in force: claims judged jointly share it) and ``changed``."""
        values, budgets = self.measures(s, results), self.budgets(s)
        spreads, started, planned = self.spreads(s, results), self.first_runs(results), len(s.seeds)

        def judged(rule) -> dict:
            arms = [row for label in rule.labels for row in self.inputs(label)]
            budget = min(budgets.get(row, 0.0) for row in arms)
            gains = {label: self.late_gain(results, label, rule.testable.window) for label in rule.testable.levelled}
            spread = math.hypot(*(spreads.get(label, math.nan) for label in rule.labels[:2])) \
                if len(rule.labels) >= 2 else math.nan
            return {**rule.judge(values, rule.testable.reason(budget, gains), spread, planned), "budget": budget}

        rows = []
        for claim in self.claims:
            in_force = claim.in_force
            first = self.first_judged(claim, started)
            row = judged(in_force)
            before = rule_before(claim, first)
            if before is None:
                pre_rule, pre_verdict = "", "no rule before its first run"
            elif before is in_force:
                pre_rule, pre_verdict = in_force.rule, row["verdict"]
            else:
                pre_rule, pre_verdict = before.rule, judged(before)["verdict"]
            declared_first = declared_before(claim.declared, first)
            rows.append({**row, "claim": claim.id, "text": in_force.text, "planned": planned,
                         "status": interim(row["n"], planned), "source": claim.origin,
                         "declared": f"{claim.declared[:10]} ({claim.commit})" if claim.commit else claim.declared[:10],
                         "first run": first[:10] if first else "",
                         "declared before data": {True: "yes", False: "no", None: "no run yet"}[declared_first],
                         "pre-declared rule": pre_rule, "pre-declared verdict": pre_verdict,
                         "revised after data": claim.revision is not None and before is not in_force,
                         "rule history": history_text(claim, first), "hypothesis": in_force.id,
                         "changed": claim.changed})
        return pd.DataFrame(rows).set_index("claim")

    def what_ran(self, s: Settings, label: str) -> str:
        """What a row trained under this profile, next to the paper's setting where they differ:
        "ResNet-20 (paper: ResNet-56), 40 iterations (paper: 10,000), ..."."""
        paper, ran = self.rows()[label], self.scaled_rows(s).get(label)
        if ran is None:
            return "not in this profile"
        parts = []
        if model_name(ran.model) != model_name(paper.model):
            parts.append(f"{model_name(ran.model)} (paper: {model_name(paper.model)})")
        parts.append(f"{ran.iterations:,} iterations" + (f" (paper: {paper.iterations:,})"
                                                          if ran.iterations != paper.iterations else ""))
        if ran.batch_size != paper.batch_size:
            parts.append(f"batch {ran.batch_size} (paper: {paper.batch_size}; rates x{ran.batch_size / paper.batch_size:g})")
        full = TRAIN_IMAGES[ran.dataset]
        if (ran.train_subset or full) != (paper.train_subset or full):
            parts.append(f"{ran.train_subset or full:,} training images (paper: {paper.train_subset or full:,})")
        if ran.test_subset:
            parts.append(f"{ran.test_subset:,} test images (paper: all)")
        return ", ".join(parts)


def _all_labels(claim) -> tuple[str, ...]:
    """The measures a claim reads under its declared rule and under its revision."""
    return tuple(dict.fromkeys((*claim.labels, *claim.in_force.labels)))


def model_name(model: Mapping) -> str:
    """A network's usual name from its spec ("ResNet-56", "WRN-28-10", "DenseNet-BC-100")."""
    name = model["name"]
    if name == "resnet":
        return f"ResNet-{model['depth']}"
    if name == "resnet_sd":
        return f"stochastic-depth ResNet-{model['depth']}"
    if name == "wrn":
        return f"WRN-{model['depth']}-{model['width']}"
    if name == "densenet":
        return f"DenseNet{'-BC' if model.get('bottleneck', True) else ''}-{model['depth']}"
    return {"caffe_cifar10_full": "Caffe CIFAR-10 net", "caffe_cifar10_sigmoid_bn": "Caffe CIFAR-10 sigmoid+BN net",
            "lenet": "LeNet"}.get(name, name)


TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "mnist": 60_000}


# the columns of StudyResults.runs, present even when no run has a result yet
RUN_COLUMNS = ("setting", "seed", "run_id", "iterations", "status", "error", "final_test_acc", "final_train_acc",
               "steps_done", "train_s", "device", "commit", "code_modified", "torch", "data", "precision", "origin")


def _status_counts(statuses: pd.Series) -> str:
    """A setting's runs by status: "finished" when all agree, else "3 finished, 2 not run yet"."""
    counts = statuses.value_counts().sort_index()
    return counts.index[0] if len(counts) == 1 else ", ".join(f"{n} {status}" for status, n in counts.items())


@dataclass
class StudyResults:
    """The runs of one experiment: their records, and tables built from them."""

    settings: Settings
    labels: list[str]
    configs: list[RunConfig]
    records: list[RunRecord | None]  # None where a run failed
    errors: dict = field(default_factory=dict)

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run: setting, seed, status, final accuracy and where it came from."""
        rows = []
        for label, config, record in zip(self.labels, self.configs, self.records):
            row = {"setting": label, "seed": config.seed, "run_id": config.id, "iterations": config.iterations}
            if record is None:
                error = self.errors.get(config.id, "")
                # "not run" (data that cannot be had), "not run yet" (nothing trained here), or "failed"
                row.update(status=error.split(":")[0] if error.startswith("not run") else "failed", error=error)
            else:
                meta = record.meta
                row.update(
                    status=record.status,
                    final_test_acc=record.final.get("test_acc", math.nan),
                    final_train_acc=record.final.get("train_acc", math.nan),
                    steps_done=int(record.final.get("step", 0)),
                    train_s=meta.get("timings", {}).get("wall_s"),
                    device=meta.get("environment", {}).get("device"),
                    commit=meta.get("environment", {}).get("commit"),
                    code_modified=meta.get("environment", {}).get("code_modified"),
                    torch=meta.get("environment", {}).get("torch"),
                    data=meta.get("data", {}).get("data_name"),
                    precision=meta.get("precision"),
                    origin=origin_of(meta),
                )
            rows.append(row)
        return pd.DataFrame(rows).reindex(columns=list(dict.fromkeys([*RUN_COLUMNS, *(k for r in rows for k in r)])))

    @property
    def curves(self) -> pd.DataFrame:
        """All evaluation rows of all runs, long format, with ``setting`` and ``seed`` columns."""
        frames = [
            record.rows.assign(setting=label, seed=config.seed)
            for label, config, record in zip(self.labels, self.configs, self.records)
            if record is not None
        ]
        if not frames:  # no run has results yet: an empty table with the usual columns
            return pd.DataFrame(columns=["step", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                                         "setting", "seed"])
        return pd.concat(frames, ignore_index=True)

    def final_accuracy(self) -> Measures:
        """``{setting: {seed: final test accuracy}}`` over runs that produced a result."""
        out: Measures = {}
        for label, config, record in zip(self.labels, self.configs, self.records):
            if record is not None and len(record.rows):
                out.setdefault(label, {})[config.seed] = float(record.final["test_acc"])
        return out

    def summary(self, paper: pd.DataFrame | None = None) -> pd.DataFrame:
        """Per setting: iterations, ours as mean and 95% CI over seeds with the per-seed values,
        and the paper's number where ``paper`` (rows of ``paper_tables.csv``) has one."""
        runs = self.runs
        rows = []
        for label in dict.fromkeys(self.labels):
            mine = runs[runs.setting == label]
            accs = mine.final_test_acc.dropna().tolist() if "final_test_acc" in mine else []
            mean, low, high = mean_ci(accs)
            row = {
                "setting": label,
                "iterations": int(mine.iterations.iloc[0]),
                "ours_mean": mean,
                "ours_ci95": (f"[{low:.1f}, {high:.1f}]" if not math.isnan(low) else "n/a (1 seed)") if accs else "",
                "per_seed": ", ".join(f"{a:.1f}" for a in accs),
                "status": _status_counts(mine.status),
            }
            if paper is not None:
                match = paper[paper.setting == label]
                row["paper_iterations"] = match.iterations.iloc[0] if len(match) else math.nan
                row["paper"] = float(match.value.iloc[0]) if len(match) else math.nan
            rows.append(row)
        table = pd.DataFrame(rows).set_index("setting")
        if "paper_iterations" in table:  # whole numbers, <NA> where the paper has no such row
            table["paper_iterations"] = table.paper_iterations.astype("Int64")
        return table
