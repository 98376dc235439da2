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

from .costs import network_label
from .data import BatchStream, Normalizer, synthetic
from .models import build_model
from .provenance import code_version, device_name, device_slug

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


def bench_model(device, timer, spec: dict, batch: int, mode: str, repeats: int) -> dict:
    """The study's training step for ``spec`` in step mode ``mode``: images/s, ms/step, MFU."""
    from .runs import RunConfig
    from .train import step_function

    mnist = spec["name"] == "lenet"
    data = synthetic(train=4 * batch, test=100, channels=1 if mnist else 3, size=28 if mnist else 32,
                     name="synthetic-mnist" if mnist else "synthetic")
    config = RunConfig(profile="bench", data=data.id, model=spec, normalize="scale" if mnist else "mean_image",
                       optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 1e-4},
                       schedule={"name": "triangular", "base_lr": 1e-4, "max_lr": 1e-3, "step_size": 50},
                       iterations=10**6, batch_size=batch, eval_every=10**6, seed=0)
    precision = "bf16" if device.type == "cuda" else "fp32"
    step = step_function(config, data, device, precision, mode)
    run = step.run
    x, y = next(run.stream)
    flops = _train_flops(run.model, x, y)
    counter = iter(range(10**9))
    seconds = timer(lambda: step(next(counter)), repeats, 3 if mode == "eager" else 10)
    peak = _peak(device)
    return {"what": f"{network_label(spec)} batch {batch} {mode}", "images_per_s": batch / seconds,
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

    from .runs import RunConfig
    from .train import step_function

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
    from .fused import train_fused
    from .runs import RunConfig

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrstudy.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller nets (the CPU default)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quick = args.quick or device.type == "cpu"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    timer = Timer(device)
    repeats = 3 if quick else 10
    rows = [bench_loader(device, timer, 10_000 if quick else 50_000, repeats)]
    for spec, batch, mode in model_rows(device.type == "cuda", quick):
        try:
            rows.append(bench_model(device, timer, spec, batch, mode, repeats))
        except Exception as err:  # (a compile that fails on this machine): a row that says so, and the rest
            rows.append({"what": f"{network_label(spec)} batch {batch} {mode}",
                         "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"})
    rows += bench_naive(device, timer, {"name": "resnet", "depth": 20 if quick else 56}, 2000 if quick else 20_000,
                        1 if quick else 3)
    fused = bench_fused(device, timer, [1, 4] if quick else [1, 8, 32], 10 if quick else 50, 1 if quick else 3)
    if device.type == "cuda" and not quick:
        compiled = bench_fused(device, timer, [32], 50, 3, compiled=True)[0]
        fused.append({**compiled, "ratio": compiled["images_per_s"] / fused[0]["images_per_s"]})  # (against K=1 eager)
    rows += fused

    table = pd.DataFrame(rows)
    name = device_name(device)
    slug = device_slug(name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.assign(device=name, date=str(date.today()), commit=code_version()["commit"]).to_csv(
        out / f"{slug}.csv", index=False)
    header = (f"Device: {name}; torch {torch.__version__}; {date.today()}; commit {code_version()['commit'][:10]}"
              f"{' (code modified)' if code_version()['code_modified'] else ''}; "
              f"the whole benchmark took {time.perf_counter() - started:.0f} s\n\n")
    (out / f"{slug}.md").write_text(header + _markdown(table) + "\n")
    print(header + table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
