"""What a run costs: its forward+backward FLOPs, counted by ``torch.utils.flop_counter`` on the real
network, and the time a device needs for them, from that device's measured throughput (``make
bench``, ``results/bench/<device>.csv``) or, where there is none, from assumptions stated with
every estimate.

FLOPs: one training step (forward and backward at the run's batch) and one evaluation forward pass
per test image are counted once per network and batch, on the ``meta`` device (no arithmetic is
done), and multiplied by the run's steps and by its evaluations times its test images.

Time (the cost model): a step takes its FLOPs over the network's achieved training rate, but never
less than the device's per-step floor (kernel launches: small networks are launch-bound on a GPU);
a fused group's step is all its members' FLOPs at the better of the fused rate and the network's
own, with the same floor; evaluations take their FLOPs at the same rate. Each network a CUDA
profile compiles adds a one-time compile cost. Until a GPU window has measured them (its
``measure.csv``, read back once imported), the floor and the fused gain are assumptions, so a plan
states a range: this best case, and :meth:`Throughput.pessimistic` (a 1.5 ms floor, no fused gain,
a compile for every fused group's size and for every compiled network's evaluation pass).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from .data import DATASET_CLASSES, DATASET_SHAPES, DATASET_SPLITS, SYNTHETIC
from .ledger import eval_steps
from .models import build_model
from .paths import project_root, results_root
from .provenance import device_name, device_slug, names_a_cpu

__all__ = ["RunCost", "run_cost", "step_flops", "network_label", "Throughput", "ASSUMED_H100", "ASSUMED_CPU",
           "measured_throughput", "throughput_for", "window_throughput", "PESSIMISTIC_FLOOR_MS"]

# (training images, test images) of the synthetic stand-ins: lrstudy.data.synthetic's defaults
SYNTHETIC_SPLITS = (2000, 500)


def network_label(spec: Mapping) -> str:
    """A network as the benchmark names it: its name, then its other settings' values (``resnet-56``)."""
    extras = "-".join(str(v) for k, v in spec.items() if k not in ("name", "variant"))
    return f"{spec['name']}{'-' + extras if extras else ''}"


@functools.lru_cache(maxsize=None)
def _counted(model: str, batch: int, classes: int, shape: tuple[int, ...]) -> tuple[int, int]:
    spec = json.loads(model)
    # stochastic depth draws which blocks to skip from torch's generator: count one seeded draw
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with torch.device("meta"):
            network = build_model(spec, num_classes=classes)
            x, y = torch.empty(batch, *shape), torch.zeros(batch, dtype=torch.long)
        with FlopCounterMode(display=False) as training:
            F.cross_entropy(network(x), y).backward()
        network.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as testing:
            network(torch.empty(1, *shape, device="meta"))
    return training.get_total_flops(), testing.get_total_flops()


def step_flops(model: Mapping, batch: int, classes: int = 10, shape: Sequence[int] = (3, 32, 32)) -> tuple[int, int]:
    """``(FLOPs of one training step, FLOPs of one test image's forward pass)`` of this network,
    counted once per network, batch and input shape."""
    return _counted(json.dumps(dict(model), sort_keys=True), int(batch), int(classes), tuple(shape))


@dataclass(frozen=True)
class RunCost:
    """A run's work: its optimizer steps, and the FLOPs of its training and its evaluations."""

    steps: int
    train_flops: float
    eval_flops: float
    network: str  # network_label of its model
    family: str  # its model's name (resnet, wrn, ...)

    @property
    def flops(self) -> float:
        return self.train_flops + self.eval_flops


def run_cost(config, dataset: str = "cifar10") -> RunCost:
    """The cost of a :class:`~lrstudy.runs.RunConfig` whose row trains on ``dataset`` (cifar10,
    cifar100, mnist): synthetic data has its own sizes, a folder tree the named data set's."""
    if config.data in SYNTHETIC:
        classes, channels, side = SYNTHETIC[config.data]
        shape, test_images = (channels, side, side), SYNTHETIC_SPLITS[1]
    else:
        classes, shape = DATASET_CLASSES[dataset], DATASET_SHAPES[dataset]
        test_images = DATASET_SPLITS[dataset][1]
    test_images = min(config.test_subset or test_images, test_images)
    per_step, per_image = step_flops(config.model, config.batch_size, classes, shape)
    evaluations = len(eval_steps(config.iterations, config.eval_every,
                                 [*(config.eval_at or ()), *(config.snapshot_at or ())]))
    return RunCost(config.iterations, float(per_step) * config.iterations, float(per_image) * test_images * evaluations,
                   network_label(config.model), config.model["name"])


@dataclass(frozen=True)
class Throughput:
    """What one device achieves, as the cost model reads it; ``basis`` says where the numbers come
    from and is printed with every estimate."""

    device: str
    basis: str
    tflops: Mapping[str, float]  # achieved training TFLOP/s by network label, else by family, else "default"
    step_floor_ms: float  # the least time one training step takes
    fused_tflops: float  # achieved TFLOP/s of a fused group of small networks
    compile_s: float = 0.0  # one-time cost of each network compiled (CUDA profiles with compile: true)
    fused_gain: bool = True  # False: a fused group takes as long as its runs one after another
    measured: bool = True  # False: the numbers are assumptions (a plan then states a range)

    def rate(self, cost: RunCost) -> float:
        """Achieved FLOP/s for this run's network."""
        tflops = self.tflops.get(cost.network) or self.tflops.get(cost.family) or self.tflops["default"]
        return tflops * 1e12

    def seconds(self, costs: Sequence[RunCost], fused: bool = False) -> float:
        """Wall time of a task: one run, or a fused group (whose members share their step count)."""
        # a fused group shares the per-step floor; its arithmetic runs at the fused rate (measured on
        # groups of Caffe nets), or at its network's own rate where that is better (wide networks)
        if fused and not self.fused_gain:
            return sum(self.seconds([cost]) for cost in costs)
        rate = max(self.fused_tflops * 1e12, self.rate(costs[0])) if fused else self.rate(costs[0])
        steps = max(c.steps for c in costs)
        per_step = max(self.step_floor_ms / 1000, sum(c.train_flops / c.steps for c in costs) / rate)
        return steps * per_step + sum(c.eval_flops for c in costs) / rate

    def pessimistic(self) -> "Throughput":
        """The same device at the plan's upper bound: every step at least :data:`PESSIMISTIC_FLOOR_MS`
        (what the assumed floor would be if one eager Caffe step's 100-150 launches, ResNet-56's 540 or
        SD-56's 1,027 are not all hidden) and a fused group no faster than its runs one by one."""
        return replace(self, basis=f"{self.basis}; upper bound: at least {PESSIMISTIC_FLOOR_MS:g} ms per step, "
                                   "fused groups no faster than their runs alone",
                       step_floor_ms=max(self.step_floor_ms, PESSIMISTIC_FLOOR_MS), fused_tflops=0.0,
                       fused_gain=False)

    def describe(self) -> str:
        rates = ", ".join(f"{k} {v:.3g}" for k, v in self.tflops.items())
        return (f"{self.device} ({self.basis}): achieved training TFLOP/s {rates}; fused groups {self.fused_tflops:.3g}"
                + (f"; at least {self.step_floor_ms:.3g} ms per step" if self.step_floor_ms else "")
                + (f"; {self.compile_s:g} s to compile each network" if self.compile_s else ""))


# Performance anchors: /work/shared/reference/performance.md, section 5 ("Must" targets, H100, bf16,
# channels_last, compiled), turned into achieved rates: rate = images/s x training FLOPs per image.
ASSUMED_H100 = Throughput(
    device="one NVIDIA H100",
    basis="assumed, not measured: the 'Must' targets of the project's performance anchors",
    tflops={
        "default": 37.6,  # narrow nets (Caffe nets, LeNet, ResNets): ResNet-56 at 50k img/s x 0.75 GFLOP (T4)
        "densenet": 43.0,  # DenseNet-BC-100 at 25k img/s x 1.73 GFLOP (T8)
        "wrn-28-10": 247.0,  # 25% of the 989 TFLOP/s bf16 peak (T7)
        # other WRNs: a third of WRN-16-4's eager memory floor (143k img/s x 2.35 GFLOP), the fraction
        # T4 takes of ResNet-56's floor (50k of 157k img/s)
        "wrn": 113.0,
    },
    step_floor_ms=0.5,  # the Caffe net's compiled step, launch-bound (T1)
    fused_tflops=37.6,  # fused groups at the narrow nets' rate: 2.7x one run at K=32, below T2's 10x target
    compile_s=30.0,  # per network and batch: an estimate, never measured here
    measured=False,
)
PESSIMISTIC_FLOOR_MS = 1.5  # the plan's upper bound, until a GPU window has measured the floor

# A 2-core Xeon as measured by `make bench` (results/bench/cpu-intel-r-xeon-r-processor-2-threads.md):
# the Caffe net at 2,750 img/s and ResNet-20 at 700 img/s, about 0.18 TFLOP/s either way.
ASSUMED_CPU = Throughput(device="a 2-core CPU", basis="assumed: the committed benchmark of a 2-core Xeon",
                         tflops={"default": 0.18}, step_floor_ms=0.0, fused_tflops=0.09, measured=False)

# A row may name its precision (``bench --campaign``: fp32 and bf16 side by side); one that does not
# is the device's default (bf16 on CUDA, fp32 on a CPU).
_BENCH_ROW = re.compile(r"(?P<network>\S+) batch (?P<batch>\d+) (?P<mode>[^\s,]+)(, (?P<precision>fp32|bf16))?")
_FUSED_ROW = re.compile(r"fused Caffe-net runs, K=(?P<k>\d+)")


def _spec_from_label(label: str) -> dict:
    """The network a benchmark row names (``resnet-56``, ``wrn-28-10``, ``caffe_cifar10_full``)."""
    name, *values = label.split("-")
    keys = ["depth", "width"] if name == "wrn" else ["depth"]
    return {"name": name, **{k: int(v) for k, v in zip(keys, values)}}


def measured_throughput(path: str | Path, precision: str = "fp32") -> Throughput:
    """The throughput ``make bench`` measured (its CSV): each network's best training rate over the
    batch sizes and step modes it timed, the best fused rate, and on CUDA the fastest step it saw
    as the per-step floor. Networks it did not time take the assumed rates (and say so). A row that
    names a precision counts only for plans in that ``precision``."""
    import pandas as pd

    table = pd.read_csv(path)
    if "measure" in table.columns:  # a GPU window's measure.csv
        return window_throughput(path)
    device = str(table.device.iloc[0])
    cuda = not names_a_cpu(device)
    assumed = ASSUMED_H100 if cuda else ASSUMED_CPU
    rates: dict[str, float] = {}
    floor, fused, named = None, None, False
    for row in table.itertuples(index=False):
        what = str(row.what)
        match = _BENCH_ROW.fullmatch(what)
        named = named or bool(match and match["precision"])
        if match and row.ms_per_step == row.ms_per_step and match["precision"] in (None, precision):
            spec = _spec_from_label(match["network"])
            shape = (1, 28, 28) if spec["name"] == "lenet" else (3, 32, 32)
            tflops = step_flops(spec, int(match["batch"]), 10, shape)[0] / (row.ms_per_step / 1000) / 1e12
            for key in (match["network"], spec["name"]):
                rates[key] = max(rates.get(key, 0.0), tflops)
            floor = row.ms_per_step if floor is None else min(floor, row.ms_per_step)
        elif match := _FUSED_ROW.fullmatch(what):
            per_image = step_flops({"name": "caffe_cifar10_full"}, 100)[0] / 100
            fused = max(fused or 0.0, row.images_per_s * per_image / 1e12)
    timed = sorted(k for k in rates if "-" not in k)
    return Throughput(
        device=device, basis=f"measured by make bench ({Path(path).name}) for {', '.join(timed) or 'no network'}"
                             f"{f' in {precision}' if named else ''}; "
                             "assumed for the others",
        tflops={**assumed.tflops, **rates}, step_floor_ms=floor if cuda and floor else 0.0,
        fused_tflops=fused or assumed.fused_tflops, compile_s=assumed.compile_s)


def window_throughput(path: str | Path) -> Throughput:
    """The throughput a GPU window measured (its ``measure.csv``, :func:`lrstudy.bench.measure_window`):
    the Caffe net's rate from its fastest lone step, that step as the per-step floor, the best fused
    group's rate, and the compile time of the compiled step. A row a kill cut off is left out; what
    the window did not measure keeps the assumptions (and says so)."""
    import io

    import pandas as pd

    raw = Path(path).read_bytes()
    table = pd.read_csv(io.BytesIO(raw[:raw.rfind(b"\n") + 1]))
    device = str(table.device.dropna().iloc[0]) if table.device.notna().any() else "unknown device"
    assumed = ASSUMED_H100 if not names_a_cpu(device) else ASSUMED_CPU
    batch = 100 if not names_a_cpu(device) else 10  # (lrstudy.bench.BATCH)
    per_image = step_flops({"name": "caffe_cifar10_full"}, batch)[0] / batch
    lone = table[(table.measure == "lone step") & table.value.notna()]
    fused = table[(table.measure == "fused step") & table.value.notna()]
    floor = float(lone.value.min()) if len(lone) else None
    rates = {"caffe_cifar10_full": batch * per_image / (floor / 1000) / 1e12} if floor else {}
    best_fused = max((int(str(r.mode).removeprefix("K=")) * batch * per_image / (r.value / 1000) / 1e12
                      for r in fused.itertuples()), default=None)
    compiled = lone[lone["mode"] == "compile"]
    measured = [what for what, found in (("the Caffe net's step", floor), ("fused groups", best_fused),
                                         ("compiling", len(compiled))) if found]
    return replace(assumed, device=device, basis=f"measured by a GPU window ({Path(path).parent.name}) for "
                                                 f"{', '.join(measured) or 'nothing'}; assumed for the rest",
                   tflops={**assumed.tflops, **rates}, step_floor_ms=floor if floor else assumed.step_floor_ms,
                   fused_tflops=best_fused or assumed.fused_tflops,
                   compile_s=float(compiled.seconds.iloc[0]) if len(compiled) else assumed.compile_s,
                   measured=floor is not None)


def imported_window(results: Path) -> Path | None:
    """The newest ``measure.csv`` of a CUDA window imported into this store (``python -m lrstudy import``)."""
    found = [p for p in (results / "imported").glob("*/measure.csv") if "-cpu-" not in p.parent.name]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def throughput_for(device_type: str, bench: str | Path | None = None, precision: str = "fp32") -> Throughput:
    """The throughput table for a profile's device type (``cuda`` or ``cpu``): ``bench`` if given (a
    ``make bench`` CSV or a window's ``measure.csv``), else for CUDA the measurements of the newest GPU
    window imported here, else this machine's own ``make bench`` result for that device type if there
    is one, else the stated assumptions (one H100; a 2-core CPU). A measured row that names a precision
    counts only for plans in that ``precision``."""
    if bench is not None:
        return measured_throughput(bench, precision)

    if device_type == "cuda" and (window := imported_window(results_root())) is not None:
        return window_throughput(window)

    if device_type == "cpu" or torch.cuda.is_available():
        slug = device_slug(device_name("cuda" if device_type == "cuda" else "cpu"))
        for folder in (results_root() / "bench", project_root() / "results" / "bench"):
            if (folder / f"{slug}.csv").exists():
                return measured_throughput(folder / f"{slug}.csv", precision)
    return ASSUMED_H100 if device_type == "cuda" else ASSUMED_CPU
