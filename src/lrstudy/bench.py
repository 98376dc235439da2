"""The speed benchmark: what one device does with the study's pipeline, as ratios measured in one run.

    python -m lrstudy.bench [--quick] [--out results/bench]

Measures, on whatever device is present (CUDA if available, else the CPU):

* the device-resident loader (shuffle, crop, flip, normalise as batched tensor ops): images/s;
* a naive baseline in the same run: torchvision's ``DataLoader`` with per-sample CPU transforms,
  float32, eager -- the usual first PyTorch CIFAR script -- and the study's pipeline on the same
  network, and their ratio;
* training throughput (forward, backward, update) per network at batch 128 and 512, eager and,
  on CUDA, ``torch.compile``d with bf16 autocast and channels_last; images/s and, on CUDA, model
  FLOP utilisation against the device's dense bf16 peak (when known);
* fused runs (:mod:`lrstudy.fused`): the aggregate throughput of K = 1, 8, 32 Caffe-net runs
  trained as one computation, and its ratio to K = 1.

Timing: warm-up steps first, then the median over repeats of CUDA-event (or wall-clock) timings.
Writes ``<out>/<device>.csv`` and ``<out>/<device>.md`` (a table with device, date and commit).
No timed assertions anywhere in the tests: speed claims come from this file's output.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from datetime import date
from pathlib import Path

import pandas as pd
import torch
from torch.nn import functional as F

from .data import BatchStream, Normalizer, synthetic
from .models import build_model
from .optim import build_optimizer
from .provenance import code_version, device_name
from .scheduler import set_lr_and_momentum

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


def _train_step(model, optimizer, x, y, device: torch.device) -> None:
    """One forward, backward and update, as the study trains: bf16 autocast on CUDA, fp32 elsewhere."""
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
    else:
        loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


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
    torch.manual_seed(0)
    in_channels = 1 if spec["name"] == "lenet" else 3
    side = 28 if spec["name"] == "lenet" else 32
    model = build_model(spec, num_classes=10).to(device=device, memory_format=torch.channels_last)
    optimizer = build_optimizer({"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 1e-4}, model)
    set_lr_and_momentum(optimizer, 1e-3)
    x = torch.randn(batch, in_channels, side, side, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    flops = _train_flops(model, x, y)
    step_model = torch.compile(model) if mode == "compile" else model
    seconds = timer(lambda: _train_step(step_model, optimizer, x, y, device), repeats, 3 if mode == "eager" else 10)
    peak = _peak(device)
    return {"what": f"{_name(spec)} batch {batch} {mode}", "images_per_s": batch / seconds,
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

    on_device = data.on(device)
    stream = BatchStream(on_device, 128, 0, Normalizer("mean_image", on_device, device), flip=True, crop=4)
    ours_model = build_model(spec, num_classes=10).to(device=device, memory_format=torch.channels_last)
    ours_opt = build_optimizer({"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 1e-4}, ours_model)
    set_lr_and_momentum(ours_opt, 1e-3)

    def our_epoch():
        for _ in range(stream.batches_per_epoch):
            _train_step(ours_model, ours_opt, *next(stream), device)
    ours = timer(our_epoch, repeats, 1)
    n = stream.batches_per_epoch * 128
    return [
        {"what": f"naive: DataLoader + CPU transforms + fp32 eager, {_name(spec)}", "images_per_s": n / naive},
        {"what": f"study pipeline, {_name(spec)}", "images_per_s": n / ours, "ratio": naive / ours},
    ]


def bench_fused(device, timer, ks: list[int], steps: int, repeats: int) -> list[dict]:
    from .fused import train_fused
    from .runs import RunConfig

    data = synthetic(train=2000, test=100)
    rows, single = [], None
    for k in ks:
        configs = [RunConfig(profile="bench", data="synthetic", model={"name": "caffe_cifar10_full"},
                             optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004},
                             schedule={"name": "fixed", "lr": 0.001}, iterations=steps, batch_size=100,
                             eval_every=10 * steps, seed=s) for s in range(k)]
        train_fused(configs, data, device=device, progress=False)  # warm-up (allocations, kernels)
        seconds = timer(lambda: train_fused(configs, data, device=device, progress=False), repeats, 0)
        rate = k * steps * 100 / seconds
        single = single or rate
        rows.append({"what": f"fused Caffe-net runs, K={k}", "images_per_s": rate, "ratio": rate / single})
    return rows


def _markdown(table: pd.DataFrame) -> str:
    def cell(v):
        return "" if v is None or v != v else f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _name(spec: dict) -> str:
    extras = "-".join(str(v) for k, v in spec.items() if k not in ("name", "variant"))
    return f"{spec['name']}{'-' + extras if extras else ''}"


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
    nets = ([{"name": "caffe_cifar10_full"}, {"name": "resnet", "depth": 20}] if quick else
            [{"name": "caffe_cifar10_full"}, {"name": "resnet", "depth": 56, "variant": "caffe_sc"},
             {"name": "resnet", "depth": 110}, {"name": "wrn", "depth": 28, "width": 10},
             {"name": "densenet", "depth": 100}, {"name": "lenet"}])
    modes = ["eager"] + (["compile"] if device.type == "cuda" else [])
    for spec in nets:
        for batch in ((100, 128) if spec["name"] == "caffe_cifar10_full" else (128, 512)) if not quick else (128,):
            for mode in modes:
                rows.append(bench_model(device, timer, spec, batch, mode, repeats))
    rows += bench_naive(device, timer, {"name": "resnet", "depth": 20 if quick else 56}, 2000 if quick else 20_000,
                        1 if quick else 3)
    rows += bench_fused(device, timer, [1, 4] if quick else [1, 8, 32], 10 if quick else 50, 1 if quick else 3)

    table = pd.DataFrame(rows)
    name = device_name(device)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
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
