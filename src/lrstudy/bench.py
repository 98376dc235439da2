"""The speed benchmark: what one device does with the study's pipeline, as ratios measured in one run.

    python -m lrstudy.bench [--quick] [--out results/bench]

Measures, on whatever device is present (CUDA if available, else the CPU):

* the device-resident loader (shuffle, crop, flip, normalise as batched tensor ops): images/s;
* a naive baseline in the same run: torchvision's ``DataLoader`` with per-sample CPU transforms,
  float32, eager -- the usual first PyTorch CIFAR script -- and the study's pipeline on the same
  network, and their ratio;
* training throughput per network: the study's own training step (:func:`lrstudy.train.step_function`:
  batches from the device-resident stream, forward, backward, update with the rate from the device),
  at one batch size per network (so nothing recompiles), with bf16 autocast and channels_last on
  CUDA; one row per step mode -- eager, ``torch.compile`` and whole-step capture
  (``reduce-overhead``) -- for the Caffe net, ResNet-56 and LeNet, eager for the larger networks
  (whose compile would take minutes); images/s and, on CUDA, model FLOP utilisation against the
  device's dense bf16 peak (when known);
* fused runs (:mod:`lrstudy.fused`): the aggregate throughput of K = 1, 8, 32 Caffe-net runs
  trained as one computation (bf16 on CUDA), and its ratio to K = 1.

On a GPU the compiles dominate its length, so :func:`model_rows` bounds them (6 step compiles, 2 with
``--quick``); the targets of under 5 minutes (``--quick``: 2) on an H100/H200 are not measured yet.
On a CPU it is the quick set, eager only.

Timing: warm-up steps first, then the median over repeats of CUDA-event (or wall-clock) timings.
Writes ``<out>/<device>.csv`` and ``<out>/<device>.md`` (a table with device, date and commit).

``--campaign [--threads N] [--tag T]``: instead, each network the paper-budget CPU campaign trains, at
its experiment's batch, eager, in fp32 and in bf16 autocast back to back (the ratio measured in one
run), into ``<out>/<device>-campaign[-T].{csv,md}``. Two such processes started together with
``--threads 1`` measure the campaign's two-worker layout.
No timed assertions anywhere in the tests: speed claims come from this file's output.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

import pandas as pd
import torch
from torch.nn import functional as F

from . import compiling
from .costs import network_label
from .data import BatchStream, Normalizer, synthetic
from .files import atomic_write
from .fused import _FusedRuns, train_fused
from .models import build_model
from .optim import OPTIMIZERS
from .provenance import code_version, device_name, device_slug
from .runs import RunConfig
from .syncs import HostReads, describe
from .train import WARMUP_STEPS, step_function, train

# Dense bf16 tensor-core peaks (TFLOP/s) for MFU; devices not listed get no MFU.
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


class Timer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn, repeats: int, warmup: int) -> float:
        """Median seconds of ``fn()`` over ``repeats`` after ``warmup`` calls."""
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return statistics.median(times)


def _peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v * 1e12 for k, v in PEAK_TFLOPS.items() if k in name), None)


def _train_flops(model, x, y) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def bench_loader(device, timer, images: int, repeats: int) -> dict:
    data = synthetic(train=images, test=100).on(device)
    stream = BatchStream(data, 512, 0, Normalizer("mean_image", data, device), flip=True, crop=4)
    per_epoch = stream.batches_per_epoch

    def epoch():
        for _ in range(per_epoch):
            next(stream)
    seconds = timer(epoch, repeats, 1)
    return {"what": "loader (crop+flip+normalise, device-resident)", "images_per_s": per_epoch * 512 / seconds}


def bench_model(device, timer, spec: dict, batch: int, mode: str, repeats: int, precision: str | None = None,
                warmup: int | None = None) -> dict:
    """The study's training step for ``spec`` in step mode ``mode``: images/s, ms/step, MFU. ``precision``:
    the device's default (bf16 on CUDA, fp32 on a CPU) unless named, and then named in the row."""
    mnist = spec["name"] == "lenet"
    data = synthetic(train=4 * batch, test=100, channels=1 if mnist else 3, size=28 if mnist else 32,
                     name="synthetic-mnist" if mnist else "synthetic")
    config = RunConfig(profile="bench", data=data.id, model=spec, normalize="scale" if mnist else "mean_image",
                       optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 1e-4},
                       schedule={"name": "triangular", "base_lr": 1e-4, "max_lr": 1e-3, "step_size": 50},
                       iterations=10**6, batch_size=batch, eval_every=10**6, seed=0)
    named = precision
    precision = precision or ("bf16" if device.type == "cuda" else "fp32")
    step = step_function(config, data, device, precision, mode)
    run = step.run
    x, y = next(run.stream)
    flops = _train_flops(run.model, x, y)
    counter = iter(range(10**9))
    seconds = timer(lambda: step(next(counter)), repeats, warmup if warmup is not None else 3 if mode == "eager" else 10)
    peak = _peak(device)
    return {"what": f"{network_label(spec)} batch {batch} {mode}{', ' + named if named else ''}",
            "images_per_s": batch / seconds,
            "ms_per_step": 1000 * seconds, "mfu": flops / seconds / peak if peak else None}


def bench_naive(device, timer, spec: dict, images: int, repeats: int) -> list[dict]:
    """torchvision DataLoader + CPU transforms + fp32 eager, against the study's pipeline."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Dataset

    data = synthetic(train=images, test=100)

    class Images(Dataset):
        transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                               T.ConvertImageDtype(torch.float32), T.Normalize((0.5,) * 3, (0.25,) * 3)])

        def __len__(self):
            return len(data.train_y)

        def __getitem__(self, i):
            return self.transform(data.train_x[i]), data.train_y[i]

    torch.manual_seed(0)
    model = build_model(spec, num_classes=10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loader = DataLoader(Images(), batch_size=128, shuffle=True, num_workers=2, drop_last=True,
                        pin_memory=device.type == "cuda", persistent_workers=True)

    def naive_epoch():
        for x, y in loader:
            loss = F.cross_entropy(model(x.to(device, non_blocking=True)), y.to(device, non_blocking=True))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    naive = timer(naive_epoch, repeats, 1)

    config = RunConfig(profile="bench", data="synthetic", model=spec, augment={"flip": True, "crop": 4},
                       optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 1e-4},
                       schedule={"name": "fixed", "lr": 1e-3}, iterations=10**6, batch_size=128,
                       eval_every=10**6, seed=0)
    step = step_function(config, data, device, "fp32", "eager")
    stream = step.run.stream
    counter = iter(range(10**9))

    def our_epoch():
        for _ in range(stream.batches_per_epoch):
            step(next(counter))
    ours = timer(our_epoch, repeats, 1)
    n = stream.batches_per_epoch * 128
    return [
        {"what": f"naive: DataLoader + CPU transforms + fp32 eager, {network_label(spec)}", "images_per_s": n / naive},
        {"what": f"study pipeline, {network_label(spec)}", "images_per_s": n / ours, "ratio": naive / ours},
    ]


def bench_fused(device, timer, ks: list[int], steps: int, repeats: int, compiled: bool = False) -> list[dict]:
    data = synthetic(train=2000, test=100)
    rows, single = [], None
    for k in ks:
        configs = [RunConfig(profile="bench", data="synthetic", model={"name": "caffe_cifar10_full"},
                             optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004},
                             schedule={"name": "fixed", "lr": 0.001}, iterations=steps, batch_size=100,
                             eval_every=10 * steps, seed=s) for s in range(k)]
        precision = "bf16" if device.type == "cuda" else "fp32"
        fused = lambda: train_fused(configs, data, device=device, precision=precision, progress=False,  # noqa: E731
                                    compile_model=compiled)
        fused()  # warm-up (allocations, kernels, compiling)
        seconds = timer(fused, repeats, 0)
        rate = k * steps * 100 / seconds
        single = single or rate
        rows.append({"what": f"fused Caffe-net runs, K={k}, {precision}{', compiled' if compiled else ''}",
                     "images_per_s": rate, "ratio": rate / single})
    return rows


def _markdown(table: pd.DataFrame) -> str:
    def cell(v):
        return "" if v is None or v != v else f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def model_rows(cuda: bool, quick: bool) -> list[tuple[dict, int, str]]:
    """The training-step rows: ``(network, batch size, step mode)``. One batch size per network, so
    that nothing recompiles; every step mode (on CUDA) for the small networks whose steps are short
    enough for launch overhead to matter, eager only for the large ones (their compiles would take
    minutes). ``quick``: the Caffe net in every mode and ResNet-20 eager."""
    modes = ("eager", "compile", "reduce-overhead") if cuda else ("eager",)
    every_mode = [{"name": "caffe_cifar10_full"}]
    eager_only = [{"name": "resnet", "depth": 20}]
    if not quick:
        every_mode += [{"name": "resnet", "depth": 56, "variant": "caffe_sc"}, {"name": "lenet"}]
        eager_only = [{"name": "resnet", "depth": 110}, {"name": "wrn", "depth": 28, "width": 10},
                      {"name": "densenet", "depth": 100}]
    rows = []
    for spec in every_mode + eager_only:
        batch = 100 if spec["name"] == "caffe_cifar10_full" else 128  # the batch the study trains it at
        rows += [(spec, batch, mode) for mode in (modes if spec in every_mode else ("eager",))]
    return rows


# ---------------------------------------------------------------------------------------------
# The CPU campaign (issue 26): fp32 against bf16 autocast for each network it trains
# ---------------------------------------------------------------------------------------------

# Each network the paper-budget CPU campaign trains, at the batch its experiment trains it at.
CAMPAIGN_NETWORKS = (
    ({"name": "caffe_cifar10_full"}, 100),  # CLR Tables 1 and 3, the annealing controls
    ({"name": "caffe_cifar10_sigmoid_bn"}, 100),  # CLR section 4.1.1
    ({"name": "resnet", "depth": 56, "variant": "caffe_sc"}, 1000),  # super-convergence's range test (Fig. 2b)
)


def bench_campaign(device, timer, repeats: int, save) -> None:
    """For each campaign network: its eager training step in fp32, then in bf16 autocast (Caffe's LRN
    stays float32), measured back to back in this one process, and their ratio (bf16 over fp32)."""
    for spec, batch in CAMPAIGN_NETWORKS:
        warmup = 1 if batch >= 1000 else 3  # (a ResNet-56 step at batch 1000 takes seconds on a CPU)
        fp32 = bench_model(device, timer, spec, batch, "eager", repeats, precision="fp32", warmup=warmup)
        bf16 = bench_model(device, timer, spec, batch, "eager", repeats, precision="bf16", warmup=warmup)
        save(fp32, {**bf16, "ratio": bf16["images_per_s"] / fp32["images_per_s"]})


# ---------------------------------------------------------------------------------------------
# A GPU window's first minutes: what the plan assumes, measured (python -m lrstudy.bench --window)
# ---------------------------------------------------------------------------------------------

MEASURE_COLUMNS = ("measure", "mode", "value", "unit", "detail", "seconds", "device")
PAIR_ITERATIONS = {"cuda": 1000, "cpu": 20}  # the precision and compile pairs, per device type
BATCH = {"cuda": 100, "cpu": 10}  # the Caffe net's batch (the study's 100; on a CPU, where only tests run it, 10)
CAFFE = {"name": "caffe_cifar10_full"}


def _caffe_config(device, **overrides):
    base = dict(profile="bench", data="synthetic", model=CAFFE,
                optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004},
                schedule={"name": "triangular", "base_lr": 0.001, "max_lr": 0.006, "step_size": 2000},
                iterations=10**6, batch_size=BATCH[device.type], eval_every=10**6, seed=1)
    return RunConfig(**{**base, **overrides})


def _synced(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_lone_step(device, timer, data, mode: str, repeats: int) -> dict:
    """A lone Caffe-net training step in step mode ``mode``: ms per step after warm-up, and the
    seconds its first steps took (the compile, for compiled modes)."""
    precision = "bf16" if device.type == "cuda" else "fp32"
    t0 = time.perf_counter()
    step = step_function(_caffe_config(device), data, device, precision, mode)
    counter = iter(range(10**9))
    for _ in range(WARMUP_STEPS + 2):  # (a captured step compiles after its eager warm-up steps)
        step(next(counter))
    _synced(device)
    first = time.perf_counter() - t0
    seconds = timer(lambda: step(next(counter)), repeats, 1)
    return {"measure": "lone step", "mode": mode, "value": 1000 * seconds, "unit": "ms/step",
            "detail": f"Caffe net, batch {BATCH[device.type]}, {precision}; first {WARMUP_STEPS + 2} steps incl. building/compiling "
                      f"{first:.1f} s", "seconds": first}


def measure_fused_step(device, timer, data, k: int, repeats: int) -> dict:
    """One update of a fused group of ``k`` Caffe-net runs (eager): ms per group step."""
    precision = "bf16" if device.type == "cuda" else "fp32"
    t0 = time.perf_counter()
    runs = _FusedRuns([_caffe_config(device, seed=s) for s in range(1, k + 1)], data, device, precision)
    runs.prepare(0, 10**4)
    counter = iter(range(10**4))
    seconds = timer(lambda: runs.update(next(counter)), repeats, 1)
    return {"measure": "fused step", "mode": f"K={k}", "value": 1000 * seconds, "unit": "ms/group step",
            "detail": f"{k} Caffe-net runs, batch {BATCH[device.type]} each, {precision}, eager: {1000 * seconds / k:.3g} ms per run-step",
            "seconds": time.perf_counter() - t0}


def measure_syncs(device, data, optimizer: str, mode: str) -> dict:
    """Host syncs between evaluations of a short lone run (:class:`lrstudy.syncs.HostReads`; on CUDA
    with torch's sync debug mode as well): 0 is the target."""
    settings = {"caffe_sgd": dict(momentum=0.9), "torch_sgd": dict(momentum=0.9, nesterov=True),
                "caffe_nesterov": dict(momentum=0.9), "caffe_adadelta": dict(momentum=0.95, delta=1e-6),
                "caffe_adam": dict(momentum=0.9)}
    config = _caffe_config(device, optimizer={"name": optimizer, "weight_decay": 0.004, **settings.get(optimizer, {})},
                           schedule={"name": "triangular", "base_lr": 0.001, "max_lr": 0.006, "step_size": 5},
                           iterations=20, eval_every=10)
    t0 = time.perf_counter()
    with HostReads(cuda=device.type == "cuda") as reads:
        train(config, data, device=device, precision="bf16" if device.type == "cuda" else "fp32",
              progress=False, step_mode=mode)
    return {"measure": "host syncs", "mode": f"{optimizer} {mode}", "value": len(reads.calls), "unit": "syncs/20 steps",
            "detail": describe(reads.calls)[:300], "seconds": time.perf_counter() - t0}


def measure_pair(device, data, what: str, iterations: int) -> dict:
    """Two Caffe-net runs that differ only in precision (``fp32-bf16``) or step mode
    (``eager-compile``, both bf16), trained ``iterations`` steps: their final losses and accuracies."""
    config = _caffe_config(device, iterations=iterations, eval_every=iterations)
    arms = {"fp32-bf16": [("fp32", "eager"), ("bf16", "eager")],
            "eager-compile": [("bf16", "eager"), ("bf16", "compile")]}[what]
    t0 = time.perf_counter()
    finals = [train(config, data, device=device, precision=p, progress=False, step_mode=m).rows[-1] for p, m in arms]
    (a, b), names = finals, [f"{p} {m}" for p, m in arms]
    return {"measure": "pair", "mode": what, "value": b["test_acc"] - a["test_acc"], "unit": "test-acc points",
            "detail": f"{iterations} iterations, Caffe net, synthetic data: {names[0]} loss {a['train_loss']:.4f} acc "
                      f"{a['test_acc']:.2f}; {names[1]} loss {b['train_loss']:.4f} acc {b['test_acc']:.2f}"
                      + ("; on a CPU bf16 autocast is off, so the arms are the same computation"
                         if device.type != "cuda" and what == "fp32-bf16" else ""),
            "seconds": time.perf_counter() - t0}


def window_measurements(device: torch.device) -> list[tuple[str, float, object]]:
    """The measurements, cheapest and most needed first: ``(name, seconds it needs, thunk)``. On a
    CPU (tests) only what runs there, at sizes that take seconds."""
    cuda = device.type == "cuda"
    data = synthetic(train=2000 if cuda else 400, test=500 if cuda else 100).on(device)
    timer, repeats = Timer(device), 30 if cuda else 1
    compiles = cuda and compiling.problem() is None
    plan = [("lone step eager", 5, lambda: measure_lone_step(device, timer, data, "eager", repeats))]
    plan += [(f"fused step K={k}", 5, lambda k=k: measure_fused_step(device, timer, data, k, repeats))
             for k in (3, 6, 12)]
    plan += [(f"host syncs {name} eager", 3, lambda n=name: measure_syncs(device, data, n, "eager"))
             for name in OPTIMIZERS]
    iterations = PAIR_ITERATIONS["cuda" if cuda else "cpu"]
    plan.append(("pair fp32-bf16", 10, lambda: measure_pair(device, data, "fp32-bf16", iterations)))
    if compiles:
        plan += [("lone step compile", 60, lambda: measure_lone_step(device, timer, data, "compile", repeats)),
                 ("pair eager-compile", 60, lambda: measure_pair(device, data, "eager-compile", iterations)),
                 ("lone step reduce-overhead", 60,
                  lambda: measure_lone_step(device, timer, data, "reduce-overhead", repeats)),
                 ("host syncs caffe_sgd compile", 30, lambda: measure_syncs(device, data, "caffe_sgd", "compile")),
                 ("host syncs caffe_sgd reduce-overhead", 30,
                  lambda: measure_syncs(device, data, "caffe_sgd", "reduce-overhead"))]
    return plan


def append_measure(path: Path, row: dict, device: str) -> None:
    """One measurement appended to the CSV ``path`` (header first if new), fsynced."""
    import csv
    import io
    import os

    line = io.StringIO()
    writer = csv.writer(line)
    if not path.exists() or path.stat().st_size == 0:
        writer.writerow(MEASURE_COLUMNS)
    row = {**row, "device": device}
    writer.writerow(["" if row.get(c) is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c])
                     for c in MEASURE_COLUMNS])
    with open(path, "a") as f:
        f.write(line.getvalue())
        f.flush()
        os.fsync(f.fileno())


def measure_window(path: Path, budget_s: float) -> int:
    """Every measurement of :func:`window_measurements` that fits ``budget_s``, each row appended to
    ``path`` as it ends (a failure is a row too)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = device_name(device)
    deadline = time.perf_counter() + budget_s
    path.parent.mkdir(parents=True, exist_ok=True)
    for what, needs_s, thunk in window_measurements(device):
        if time.perf_counter() + needs_s > deadline:
            append_measure(path, {"measure": what, "detail": f"not started: it needs about {needs_s} s and the "
                                                             "budget is spent"}, name)
            continue
        t0 = time.perf_counter()
        try:
            row = thunk()
        except Exception as err:  # a measurement that fails here is a row that says so, and the rest go on
            row = {"measure": what, "detail": f"error {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                   "seconds": time.perf_counter() - t0}
        append_measure(path, row, name)
        print(f"measure: {row.get('measure')} {row.get('mode') or ''}: {row.get('value', '')} {row.get('unit') or ''} "
              f"({row.get('detail', '')})", flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrstudy.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller nets (the CPU default)")
    parser.add_argument("--window", action="store_true",
                        help="a GPU window's measurements instead (lone step modes, fused K, syncs, pairs), "
                             "each row appended to --append as it ends")
    parser.add_argument("--append", type=Path, default=None, metavar="CSV")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds (--window)")
    parser.add_argument("--campaign", action="store_true",
                        help="instead: each network of the CPU campaign at its training batch, fp32 against bf16 "
                             "autocast, eager; writes <device>-campaign[-TAG].{csv,md}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for this process (default: torch's)")
    parser.add_argument("--tag", default="", help="appended to the output's name (two processes measured side by side)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.window:
        if args.append is None:
            parser.error("--window needs --append CSV")
        return measure_window(args.append, args.budget)
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quick = args.quick or device.type == "cpu"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    timer = Timer(device)
    repeats = 3 if quick else 10
    name = device_name(device)
    slug = device_slug(name) + ("-campaign" if args.campaign else "") + (f"-{args.tag}" if args.tag else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def save(*new: dict) -> None:
        """Rows so far into the CSV and the Markdown table (rewritten atomically after each row, so
        a benchmark cut off by a time limit keeps what it measured)."""
        rows.extend(new)
        table = pd.DataFrame(rows)
        atomic_write(out / f"{slug}.csv", table.assign(device=name, date=str(date.today()),
                                                       commit=code_version()["commit"]).to_csv(index=False).encode())
        header = (f"Device: {name}; torch {torch.__version__}; {date.today()}; commit {code_version()['commit'][:10]}"
                  f"{' (code modified)' if code_version()['code_modified'] else ''}; "
                  f"the whole benchmark took {time.perf_counter() - started:.0f} s\n\n")
        atomic_write(out / f"{slug}.md", (header + _markdown(table) + "\n").encode())

    if args.campaign:
        bench_campaign(device, timer, repeats, save)
        print((out / f"{slug}.md").read_text())
        return 0
    save(bench_loader(device, timer, 10_000 if quick else 50_000, repeats))
    for spec, batch, mode in model_rows(device.type == "cuda", quick):
        try:
            save(bench_model(device, timer, spec, batch, mode, repeats))
        except Exception as err:  # (a compile that fails on this machine): a row that says so, and the rest
            save({"what": f"{network_label(spec)} batch {batch} {mode}",
                  "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"})
    save(*bench_naive(device, timer, {"name": "resnet", "depth": 20 if quick else 56}, 2000 if quick else 20_000,
                      1 if quick else 3))
    fused = bench_fused(device, timer, [1, 4] if quick else [1, 8, 32], 10 if quick else 50, 1 if quick else 3)
    save(*fused)
    if device.type == "cuda" and not quick:
        compiled = bench_fused(device, timer, [32], 50, 3, compiled=True)[0]
        save({**compiled, "ratio": compiled["images_per_s"] / fused[0]["images_per_s"]})  # (against K=1 eager)
    print((out / f"{slug}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
