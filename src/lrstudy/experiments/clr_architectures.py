"""CLR (Smith 2017) Table 4: ResNet, Stochastic Depth and DenseNet with fixed rates 0.1/0.2/0.3
against a cyclical rate, on CIFAR-10 and CIFAR-100.

The paper ran each network's original Torch code, changing only the learning rate: the fixed rate
0.1 (the original), 0.2, 0.3, or CLR between 0.1 and 0.3 (DenseNet 0.1-0.2) with a cycle a tenth of
the original epoch budget; "both the fixed learning rate and the range are reduced ... according to
the same schedule used in the original implementation". Average of 5 runs. The originals (their
repositories' CIFAR defaults; the depths are ours to choose, as the paper does not name them):

==================  =========================  ======  =====  ================  ====  ==========
network             code                       epochs  batch  rate x0.1 at      wd    data
==================  =========================  ======  =====  ================  ====  ==========
ResNet-56           fb.resnet.torch            164     128    epochs 81, 122    1e-4  50k
ResNet-110 + SD     yueatsprograms/Stoch...    500     128    epochs 250, 375   1e-4  45k (5k val)
DenseNet-BC-100     liuzhuang13/DenseNet       300     64     epochs 150, 225   1e-4  50k
==================  =========================  ======  =====  ================  ====  ==========

All three use Nesterov momentum 0.9 (Torch's ``optim.sgd``: the rate outside the velocity),
random 32x32 crops of images zero-padded by 4, horizontal flips, and per-channel mean/std
normalisation. The cycle is applied as a triangular wave multiplied by the original step schedule,
so cycles keep their phase across the drops.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from ..config import Settings
from ..history import FIRST_OTHERS, REVISED, Revision
from ..paper import paper_table
from ..stats import Claim
from ..study import BATCH_SCALE, STANDARD_KNOBS, Experiment, Row, StudyResults

AUGMENT = {"flip": True, "crop": 4, "pad_mode": "zeros"}
TRAIN_IMAGES = 50_000

# name: (model spec, epochs, batch, drop epochs, training images, CLR bounds)
NETWORKS = {
    "ResNet": ({"name": "resnet", "depth": 56, "variant": "option_a"}, 164, 128, (81, 122), 50_000, (0.1, 0.3)),
    "Stochastic Depth": ({"name": "resnet_sd", "depth": 110}, 500, 128, (250, 375), 45_000, (0.1, 0.3)),
    "DenseNet": ({"name": "densenet", "depth": 100, "growth": 12, "bottleneck": True, "compression": 0.5},
                 300, 64, (150, 225), 50_000, (0.1, 0.2)),
}
DATASETS = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100"}
FIXED_RATES = (0.1, 0.2, 0.3)


def label(network: str, dataset: str, setting: str) -> str:
    return f"{network}, {dataset}, {setting}"


def rows(knobs: Mapping) -> dict[str, Row]:
    """Every network with each fixed rate and with CLR, on both data sets, at the originals' budgets.
    A profile's knobs may set other depths (``depths``) and train and test on subsets; absent, the
    originals' settings."""
    depths = knobs.get("depths", {})
    out = {}
    for network, (model, epochs, batch, drops, images, (low, high)) in NETWORKS.items():
        if model["name"] in depths:
            model = {**model, "depth": depths[model["name"]]}
        per_epoch = images // batch
        iterations = epochs * per_epoch
        milestones = [e * per_epoch for e in drops]
        optimizer = {"name": "torch_sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}
        train = images if images < TRAIN_IMAGES else None
        if knobs.get("train_subset") is not None:
            train = min(knobs["train_subset"], train or TRAIN_IMAGES)
        common = dict(model=model, optimizer=optimizer, batch_size=batch, augment=AUGMENT, normalize="channel_stats",
                      train_subset=train, test_subset=knobs.get("test_subset"))
        for dataset, key in DATASETS.items():
            for rate in FIXED_RATES:
                schedule = {"name": "multistep", "base_lr": rate, "gamma": 0.1, "milestones": milestones}
                out[label(network, dataset, f"fixed {rate:g}")] = Row(iterations, schedule, dataset=key, **common)
            cycle = {"name": "triangular", "base_lr": low, "max_lr": high, "step_size": round(iterations / 20)}
            drops_only = {"name": "multistep", "base_lr": 1.0, "gamma": 0.1, "milestones": milestones}
            out[label(network, dataset, f"CLR {low:g}-{high:g}")] = Row(
                iterations, {"name": "product", "factors": [cycle, drops_only]}, dataset=key, **common)
    return out


def best_fixed(network: str, dataset: str) -> str:
    """The measure "the best of the fixed rates the paper tried" for one network and data set."""
    return label(network, dataset, "best fixed rate (" + "/".join(f"{r:g}" for r in FIXED_RATES) + ")")


CLAIMS = [
    Claim(f"CLR-T4.{network.split()[0].lower()}.{dataset.lower()}",
          f"{network} on {dataset}: CLR {low:g}-{high:g} at least matches the original fixed rate 0.1",
          a=label(network, dataset, f"CLR {low:g}-{high:g}"), b=label(network, dataset, "fixed 0.1"),
          kind="not_worse", margin=0.5, **FIRST_OTHERS, revision=Revision(
              Claim(f"CLR-T4.{network.split()[0].lower()}.{dataset.lower()}",
                    f"{network} on {dataset}: CLR {low:g}-{high:g} at least matches the best of the fixed rates "
                    f"{', '.join(f'{r:g}' for r in FIXED_RATES)}", a=label(network, dataset, f"CLR {low:g}-{high:g}"),
                    b=best_fixed(network, dataset), kind="not_worse", margin=0.5),
              reason="the paper tried three fixed rates beside CLR: CLR must match the best of them (highest mean "
                     "over seeds), not only the original 0.1", **REVISED))
    for network, (*_, (low, high)) in NETWORKS.items() for dataset in DATASETS
]
DERIVED = {best_fixed(network, dataset): tuple(label(network, dataset, f"fixed {r:g}") for r in FIXED_RATES)
           for network in NETWORKS for dataset in DATASETS}


def derive(s: Settings, results: StudyResults) -> dict[str, dict[int, float]]:
    """Per network and data set: the fixed rate with the highest mean final accuracy over seeds,
    its per-seed values (empty until a fixed rate has run)."""
    final = results.final_accuracy()
    out: dict[str, dict[int, float]] = {}
    for measure, rows_ in DERIVED.items():
        means = {row: sum(final[row].values()) / len(final[row]) for row in rows_ if final.get(row)}
        out[measure] = dict(final[max(means, key=means.get)]) if means else {}
    return out


DEVIATIONS = [
    "The paper does not name the depths: ResNet-56, ResNet-110 (the Stochastic Depth code's default) "
    "and DenseNet-BC-100 (k=12) are our choices; the epoch budgets and schedules are those repositories' "
    "CIFAR defaults.",
    "The cycle is a triangular wave multiplied by the original step schedule (phase kept across the "
    "drops); the paper only says the range was reduced by the same schedule.",
    "Stochastic Depth trains on a fixed 45,000-image subset, as its code holds 5,000 images out for "
    "validation; we report test accuracy at the end of training, as the paper does.",
    "Normalisation uses each data set's own per-channel mean and standard deviation computed from its "
    "training images (the Torch code hard-codes the same statistics for CIFAR).",
]

KNOBS = {
    **STANDARD_KNOBS,
    **BATCH_SCALE,
    "depths": (dict, lambda v: set(v) <= {"resnet", "resnet_sd", "densenet"} and all(
        isinstance(d, int) and d > 0 for d in v.values()),
        "network depths to use instead of the originals' (keys resnet, resnet_sd, densenet), e.g. smaller "
        "nets on a CPU; {} keeps 56 / 110 / 100"),
    "train_subset": ((int, type(None)), lambda v: v is None or v > 0,
                     "training images per run (a fixed class-balanced subset); null: the original's"),
    "test_subset": ((int, type(None)), lambda v: v is None or v > 0,
                    "test images per evaluation (a fixed class-balanced subset); null: all"),
}


def paper() -> pd.DataFrame:
    """Table 4 with each row's setting named as this experiment names it."""
    table = paper_table("CLR", table="Table 4").copy()
    table["setting"] = [label(m, d, s) for m, d, s in zip(table.model, table.dataset, table.setting)]
    return table


EXPERIMENT = Experiment("clr_architectures", rows, CLAIMS, DEVIATIONS, paper, knobs=KNOBS, derived=DERIVED,
                        derive=derive)
