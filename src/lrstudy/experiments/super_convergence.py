"""Smith & Topin, Super-Convergence (arXiv 1708.07120): one cycle to a very large rate against a
piecewise-constant schedule, the range test to LR 3, the Hessian-free estimate of the best rate,
regularization and momentum, limited data, and the 1cycle table at batch 512.

The paper's text could not be read for this study (see ``shared/reference/papers.md`` §3): settings
come from the authors' repository (``lnsmith54/super-convergence``: ``Resnet56Cifar.prototxt``,
``clrsolver.prototxt``, ``solver.prototxt``, ``x.sh``) and the numbers from secondary sources that
quote the paper or from the authors' released logs; ``paper_tables.csv`` marks which.

ResNet-56 as the Caffe file defines it (``resnet`` variant ``caffe_sc``); Caffe's SGD, momentum 0.9,
weight decay 1e-4; batch 1000 (8 GPUs x 125); horizontal flips only; per-pixel mean subtracted.
BN moving-average fraction 0.95 for the cyclical runs and 0.999 for the baseline (PyTorch momentum
0.05 / 0.001). Test every 100 iterations.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import pandas as pd

from ..config import Settings
from ..history import FIRST_OTHERS, SECONDARY, STUDY_RULES
from ..paper import paper_table, paper_value
from ..stats import Agreement, AtLeast, Claim
from ..study import BATCH_SCALE, STANDARD_KNOBS, Experiment, Row, StudyResults

FLIPS = {"flip": True}
OPT = {"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 1e-4}


def _resnet(depth: int, bn_momentum: float) -> dict:
    return {"name": "resnet", "depth": depth, "variant": "caffe_sc", "bn_momentum": bn_momentum}


ONE_CYCLE = {"name": "triangular", "base_lr": 0.1, "max_lr": 3.0, "step_size": 5000}  # clrsolver.prototxt
PC_LR = {"name": "multistep", "base_lr": 0.35, "gamma": 0.1, "milestones": [50_000, 70_000]}  # solver.prototxt
RANGE = {"name": "triangular", "base_lr": 0.0, "max_lr": 3.0, "step_size": 5000}  # lrRangeSolver, 5k variant
SIZES = (10_000, 20_000, 30_000, 40_000)  # limited training data (50,000 is the full set)
TRAIN_IMAGES = 50_000
CLASSES = 10  # CIFAR-10, for the range tests' chance level
BATCH = 1000  # the authors' total batch (8 GPUs x 125)

# "one cycle": one CLR cycle 0.1-3-0.1 with no annihilation and fixed momentum (Fig. 1a, the
# regularization, momentum and limited-data runs); "1cycle": the policy with annihilation and
# cyclical momentum (CM_CYCLE, Table 2)
FIG1A_CLR, FIG1A_PC = "one cycle 0.1-3, 10k iterations", "PC-LR 0.35, 80k iterations"
SHALLOW = 20  # the shallower ResNet of the depth comparison (the paper's Fig. 6b: ResNet-20)
SHALLOW_CLR, SHALLOW_PC = f"{FIG1A_CLR}, ResNet-{SHALLOW}", f"{FIG1A_PC}, ResNet-{SHALLOW}"
RANGE_RESNET, RANGE_CAFFE = "range test 0-3: ResNet-56", "range test 0-3: Caffe CIFAR-10 net"
CM_CYCLE = "1cycle + cyclical momentum 0.95-0.85 + annihilation"
# measures derived from the runs (see derive())
RETAINED_RESNET, RETAINED_CAFFE = "retained accuracy: ResNet-56", "retained accuracy: Caffe CIFAR-10 net"
HF_EARLY = "Hessian-free estimate, first tenth of the one-cycle run"
GAP_SHALLOW = f"one cycle - PC-LR gap, ResNet-{SHALLOW}"


def gap(images: int) -> str:
    """The one cycle - PC-LR difference in final accuracy with this many training images."""
    return f"gap, {images} training images"


def _paper_rows(depth: int) -> dict[str, Row]:
    """Every setting at the paper's budgets, with a Caffe ResNet of ``depth`` (the paper's: 56)."""
    # the estimate of the best rate is recorded every 100 iterations (a training trace), not only
    # at test evaluations, so that its early values are seen even in short runs
    clr = Row(10_000, ONE_CYCLE, _resnet(depth, 0.05), OPT, BATCH, augment=FLIPS, lr_estimate="corrected", trace_every=100)
    pc = Row(80_000, PC_LR, _resnet(depth, 0.001), OPT, BATCH, augment=FLIPS)
    rows = {
        FIG1A_CLR: clr,
        FIG1A_PC: pc,
        # range tests: accuracy at 20 points along the sweep
        RANGE_RESNET: Row(5000, RANGE, _resnet(depth, 0.001), OPT, BATCH, augment=FLIPS, eval_every=250),
        RANGE_CAFFE: Row(5000, RANGE, {"name": "caffe_cifar10_full"},
                         {"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004}, 100, eval_every=250),
    }
    for wd in (1e-3, 1e-4, 1e-5, 1e-6):
        rows[f"one cycle, weight decay {wd:g}"] = dataclasses.replace(clr, optimizer={**OPT, "weight_decay": wd})
    for m in (0.95, 0.9, 0.85, 0.8):
        rows[f"one cycle, momentum {m:g}"] = dataclasses.replace(clr, optimizer={**OPT, "momentum": m})
    rows[CM_CYCLE] = dataclasses.replace(
        clr, schedule={"name": "one_cycle", "base_lr": 0.1, "max_lr": 3.0, "step_size": 4500, "total_steps": 10_000},
        momentum={"name": "one_cycle_momentum", "max_momentum": 0.95, "min_momentum": 0.85, "step_size": 4500})
    for n in SIZES:
        rows[f"one cycle, {n} training images"] = dataclasses.replace(clr, train_subset=n)
        rows[f"PC-LR, {n} training images"] = dataclasses.replace(pc, train_subset=n)
    if depth != SHALLOW:  # the depth comparison: the same pair with the shallower net
        rows[SHALLOW_CLR] = dataclasses.replace(clr, model=_resnet(SHALLOW, 0.05), lr_estimate=None, trace_every=None)
        rows[SHALLOW_PC] = dataclasses.replace(pc, model=_resnet(SHALLOW, 0.001))
    rows.update(_table2(depth))
    return rows


def _epochs(epochs: float, batch: int, images: int = TRAIN_IMAGES) -> int:
    return round(epochs * (images // batch))


def _table2(depth: int) -> dict[str, Row]:
    """Table 2 (total batch 512), one step row and one 1cycle row per network: the 1cycle row of the
    fewest epochs against the step row the table compares it with -- the step budget whose accuracy
    it matches or beats (wide ResNet: 800 epochs; ResNet-56 on CIFAR-100: 200, the best step result;
    DenseNet-40: 100; LeNet: 85). Step = x0.1 at 50% and 75% (assumed)."""
    out = {}
    nets = {  # name: (model, dataset, images, step (lr, epochs, wd), 1cycle (low, high, SS, epochs, wd, momenta))
        "wide ResNet, CIFAR-10": ({"name": "wrn", "depth": 34, "width": 4}, "cifar10", 50_000,
                                  (0.1, 800, 1e-4), (0.1, 1.0, 23, 50, 1e-4, (0.95, 0.85))),
        "DenseNet-40, CIFAR-10": ({"name": "densenet", "depth": 40, "growth": 12, "bottleneck": False,
                                   "compression": 1.0}, "cifar10", 50_000,
                                  (0.1, 100, 1e-4), (0.1, 4.0, 22, 50, 1e-6, (0.9, 0.85))),
        "ResNet-56, CIFAR-100": (_resnet(depth, 0.05), "cifar100", 50_000,
                                 (0.005, 200, 1e-4), (0.1, 0.5, 12, 25, 1e-4, (0.95, 0.85))),
        "LeNet, MNIST": ({"name": "lenet"}, "mnist", 60_000, (0.01, 85, 5e-4), (0.01, 0.1, 5, 12, 5e-4, (0.95, 0.8))),
    }
    for name, (model, dataset, images, (lr, epochs, wd), (low, high, ss, cycle_epochs, cycle_wd, (m_hi, m_lo))) in nets.items():
        batch = 512
        total = _epochs(epochs, batch, images)
        step = {"name": "multistep", "base_lr": lr, "gamma": 0.1, "milestones": [total // 2, total * 3 // 4]}
        normalize, augment = ("scale", {}) if dataset == "mnist" else ("mean_image", FLIPS)
        common = dict(model=model, batch_size=batch, augment=augment, normalize=normalize, dataset=dataset)
        out[f"Table 2: {name}, step {lr:g}, {epochs} epochs"] = Row(
            total, step, optimizer={**OPT, "weight_decay": wd}, **common)
        cycle_total, ss_steps = _epochs(cycle_epochs, batch, images), _epochs(ss, batch, images)
        out[f"Table 2: {name}, 1cycle {low:g}-{high:g}, {cycle_epochs} epochs"] = Row(
            cycle_total, {"name": "one_cycle", "base_lr": low, "max_lr": high, "step_size": ss_steps,
                          "total_steps": cycle_total},
            optimizer={**OPT, "weight_decay": cycle_wd},
            momentum={"name": "one_cycle_momentum", "max_momentum": m_hi, "min_momentum": m_lo, "step_size": ss_steps},
            **common)
    return out


def rows(knobs: Mapping) -> dict[str, Row]:
    """The paper's settings. A profile's knobs may shrink the ResNet (``depth``), train on a subset
    (the limited-data rows keep their fraction of it), test on a subset, leave Table 2 out, and give
    the range tests their own share of the budget (``range_test_scale``); absent, the paper's."""
    subset = knobs.get("train_subset")
    fraction = (subset or TRAIN_IMAGES) / TRAIN_IMAGES
    out = {}
    for name, row in _paper_rows(knobs.get("depth", 56)).items():
        if name.startswith("Table 2") and not knobs.get("table2", True):
            continue
        train = row.train_subset
        if train is not None:  # a limited-data row: keep its fraction of the (possibly reduced) set
            train = max(row.batch_size, round(train * fraction))
        elif subset is not None and row.dataset == "cifar10":
            train = subset
        if name in (RANGE_RESNET, RANGE_CAFFE) and knobs.get("range_test_scale") is not None:
            # every row is scaled by budget_scale afterwards: stretch these first, so that the sweep
            # ends up at range_test_scale of its length (a sweep of a few dozen steps shows nothing)
            row = row.scaled(knobs["range_test_scale"] / knobs["budget_scale"])
        out[name] = dataclasses.replace(row, train_subset=train, test_subset=knobs.get("test_subset"))
    return out


TABLE2 = list(_table2(56))

_HF_LOW, _HF_HIGH = paper_value("SC", "Hessian-free estimate low"), paper_value("SC", "Hessian-free estimate high")
CLAIMS = [
    Claim("SC-1a", "one cycle to LR 3 in 10k iterations beats the piecewise-constant schedule in 80k",
          a=FIG1A_CLR, b=FIG1A_PC, equal_iterations=True, source=SECONDARY, **FIRST_OTHERS),
    Claim("SC-2b", "ResNet-56 keeps its test accuracy up to LR 3 in the range test, unlike the Caffe net",
          a=RETAINED_RESNET, b=RETAINED_CAFFE,
          changed="retained accuracy now subtracts chance, (acc - 10) / (peak - 10): a net sitting at chance "
                  "scored 0.75 before", source=SECONDARY, **STUDY_RULES),
    AtLeast("SC-2b.resnet", "in ResNet-56's range test, accuracy at the top of the sweep keeps 80% of its peak's "
            "gain over chance", measure=RETAINED_RESNET, threshold=0.8, changed=(
                "retained accuracy now subtracts chance (see SC-2b)"), source=SECONDARY, **STUDY_RULES),
    Agreement("SC-HF", "the Hessian-free estimate of the best rate lies in the paper's range early in training",
              measure=HF_EARLY, target=math.sqrt(_HF_LOW * _HF_HIGH),
              factor=math.sqrt(_HF_HIGH / _HF_LOW), shown=f"{_HF_LOW:g}-{_HF_HIGH:g}", source=SECONDARY,
              **FIRST_OTHERS),
    Claim("SC-wd.1e-3", "weight decay 1e-3 eliminates training at such large rates (1e-4 is far better)",
          a="one cycle, weight decay 0.0001", b="one cycle, weight decay 0.001", margin=10.0,
          changed="'far better' now needs more than 10 points (a diverged run sits at chance, far below); "
                  "before, any positive difference passed", source=SECONDARY, **STUDY_RULES),
    Claim("SC-wd.1e-5", "regularization must be balanced: 1e-4 also beats less of it (1e-5)",
          a="one cycle, weight decay 0.0001", b="one cycle, weight decay 1e-05", source=SECONDARY, **FIRST_OTHERS),
    Claim("SC-momentum", "momentum 0.9 beats 0.95 under the large-rate cycle", a="one cycle, momentum 0.9",
          b="one cycle, momentum 0.95", source=SECONDARY, **FIRST_OTHERS),
    Claim("SC-1cycle", "the 1cycle policy (cyclical momentum, annihilation) is at least as good as one plain cycle",
          a=CM_CYCLE, b=FIG1A_CLR, kind="not_worse", margin=0.5, source=SECONDARY, **FIRST_OTHERS),
    Claim("SC-data.10k", "with 10k training images one cycle still beats PC-LR", a="one cycle, 10000 training images",
          b="PC-LR, 10000 training images", equal_iterations=True, source=SECONDARY, **FIRST_OTHERS),
    Claim("SC-data.gap", "the gap between one cycle and PC-LR grows as the training data shrinks (10k vs 50k)",
          a=gap(10_000), b=gap(TRAIN_IMAGES), source=SECONDARY, **FIRST_OTHERS),
    Claim("SC-depth", f"the gain from super-convergence is larger for a shallower net (ResNet-{SHALLOW} against "
          "the main ResNet)", a=GAP_SHALLOW, b=gap(TRAIN_IMAGES),
          changed="added in this version of the study (the paper's depth comparison, not judged before)",
          source=SECONDARY, **STUDY_RULES),
]
for _step, _cycle in zip(TABLE2[::2], TABLE2[1::2]):
    _net = _step.split(": ", 1)[1].rsplit(", step", 1)[0]
    CLAIMS.append(Claim(f"SC-T2.{_net.split(',')[0].replace(' ', '-')}",
                        f"{_net}: 1cycle in fewer epochs at least matches the step schedule the table compares it with",
                        a=_cycle, b=_step, kind="not_worse", margin=0.5, equal_iterations=True, source=SECONDARY,
                        changed="paired with the step row the table compares it with (not the shortest step budget)",
                        **STUDY_RULES))

# each derived measure and the rows it is computed from
DERIVED = {RETAINED_RESNET: (RANGE_RESNET,), RETAINED_CAFFE: (RANGE_CAFFE,), HF_EARLY: (FIG1A_CLR,),
           **{gap(n): (f"one cycle, {n} training images", f"PC-LR, {n} training images") for n in SIZES},
           gap(TRAIN_IMAGES): (FIG1A_CLR, FIG1A_PC), GAP_SHALLOW: (SHALLOW_CLR, SHALLOW_PC)}

DEVIATIONS = [
    "The super-convergence paper's full text was not available; settings follow the authors' Caffe "
    "files, numbers the secondary sources and logs named in paper_tables.csv ('reported').",
    "Batch statistics: the authors' 8 GPUs each normalised 125 images; we normalise the whole batch of 1000.",
    "Table 2's 'step' schedule is not specified: we divide the rate by 10 at 50% and 75% of training. Its "
    "'wide resnet' (a 32-layer ResNet made 4x wider) is approximated by WRN-34-4 (5 blocks per stage, as "
    "ResNet-32); Table 2 rows use horizontal flips and the per-pixel mean as the ResNet-56 runs do.",
    "Profiles that shorten the runs (budget_scale < 1) divide BN's moving-average weight by the same "
    "factor, so that the running statistics average over the same fraction of training as the authors' "
    "0.95 / 0.999 moving-average fractions do at full length -- capped at 0.1 (a span of at least ~10 "
    "updates), so that no arm tests with one batch's statistics and both arms of a comparison keep "
    "comparable spans.",
    "The range tests use the 5,000-iteration variant of the authors' sweep (they also ran 20k and 100k); "
    "the Caffe net's sweep runs at that net's own batch of 100 (times the profile's batch_scale, like "
    "every row), the ResNet's at the authors' 1000.",
    f"The depth comparison trains ResNet-{SHALLOW} alongside the profile's ResNet with the same two "
    "schedules (the paper's ResNet-20 runs used the same solvers); a profile whose ResNet is already "
    f"ResNet-{SHALLOW} has no deeper net to compare it with, so that claim is not run there.",
    "Limited-data runs use the first n images of a fixed class-balanced shuffle (the authors' subsets are "
    "unspecified).",
    "The Hessian-free estimate follows the authors' script: eps * sum|dw_1| / sum|dw_1 - dw_2| with "
    "consecutive weight changes, smoothed with weight 0.1 -- but the average starts at 0 with a bias "
    "correction, where the script started it at 0.1 (which dominates a short run's first values); it is "
    "recorded every 100 iterations.",
]

KNOBS = {
    **STANDARD_KNOBS,
    **BATCH_SCALE,
    "depth": (int, lambda v: v in (20, 56, 110), "depth of the Caffe ResNet: 56 (the paper's), 20 or 110"),
    "train_subset": ((int, type(None)), lambda v: v is None or v > 0,
                     "training images of the full-data runs (limited-data sizes scale with it); null: all 50,000"),
    "test_subset": ((int, type(None)), lambda v: v is None or v > 0, "test images per evaluation; null: all"),
    "table2": (bool, None, "whether to run Table 2's networks (true in every profile but the cheapest)"),
    "range_test_scale": ((int, float, type(None)), lambda v: v is None or 0 < v <= 1,
                         "fraction of the range tests' 5000 iterations, in (0, 1]; null: budget_scale"),
}


def paper() -> pd.DataFrame:
    return paper_table("SC")


def range_tests(results: StudyResults) -> pd.DataFrame:
    curves = results.curves
    if not len(curves):
        return curves
    out = curves[curves.setting.isin([RANGE_RESNET, RANGE_CAFFE]) & curves.test_acc.notna()]
    return out[["setting", "seed", "step", "lr", "test_acc"]].reset_index(drop=True)


def derive(s: Settings, results: StudyResults) -> dict[str, dict[int, float]]:
    """The accuracy retained at the top of each range test above chance -- (mean test accuracy over
    the evaluations in the last tenth of the sweep - chance) / (the sweep's peak - chance), chance
    being 100 / classes, so that a net that never leaves chance retains nothing -- the Hessian-free
    estimate early in the one-cycle run (median over the first tenth, in the rate units of the
    paper's batch of 1000), and the one cycle - PC-LR gap in final accuracy per training-set size and
    for the shallower ResNet."""
    out: dict[str, dict[int, float]] = {name: {} for name in DERIVED}
    sweeps = range_tests(results)
    chance = 100.0 / CLASSES
    for name, key in ((RANGE_RESNET, RETAINED_RESNET), (RANGE_CAFFE, RETAINED_CAFFE)):
        for seed, sweep in sweeps[sweeps.setting == name].groupby("seed") if len(sweeps) else []:
            top = sweep[sweep.step >= 0.9 * sweep.step.max()]
            peak = sweep.test_acc.max()
            out[key][int(seed)] = float((top.test_acc.mean() - chance) / (peak - chance)) if peak > chance else 0.0
    curves = results.curves
    if len(curves) and "lr_estimate" in curves:
        # A profile with smaller batches scales every rate by the batch ratio (linear scaling rule);
        # the estimate is a rate too, so it is divided by that ratio to compare with the paper's.
        batch = next((c.batch_size for label, c in zip(results.labels, results.configs) if label == FIG1A_CLR), BATCH)
        to_paper_units = BATCH / batch
        run_ = curves[(curves.setting == FIG1A_CLR) & curves.lr_estimate.notna()]
        for seed, one in run_.groupby("seed"):
            early = one[one.step <= 0.1 * one.step.max()]
            if len(early):
                out[HF_EARLY][int(seed)] = float(early.lr_estimate.median() * to_paper_units)
    final = results.final_accuracy()
    for measure, (clr, pc) in ((m, DERIVED[m]) for m in (*(gap(n) for n in (*SIZES, TRAIN_IMAGES)), GAP_SHALLOW)):
        for seed in set(final.get(clr, {})) & set(final.get(pc, {})):
            out[measure][seed] = final[clr][seed] - final[pc][seed]
    return out


EXPERIMENT = Experiment("super_convergence", rows, CLAIMS, DEVIATIONS, paper, knobs=KNOBS, derived=DERIVED,
                        derive=derive, unitless=(RETAINED_RESNET, RETAINED_CAFFE, HF_EARLY))
