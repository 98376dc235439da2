"""``python -m lrstudy gpu-check``: can this machine run the study? One row per check, within a time budget.

    python -m lrstudy gpu-check [--out check.md] [--budget 110]

Checks, in order (a check that needs CUDA is *skipped* on a machine without it, so the command
itself is tested on any CPU; a check that would not fit the time budget is skipped too):

* **environment** -- torch (>= 2.4), CUDA and the device, whether ``torch.compile`` can build its
  kernels (C compiler, ``Python.h``, Triton), optional packages;
* **data pipeline** -- the device-resident batches (shuffle, crop, flip, normalise): on CUDA the
  same batches as the CPU's, with no host synchronisation;
* **optimizers** -- every optimizer of the study, its rate and momentum as Python floats and as
  device tensors: the same update;
* **host syncs** -- a lone run with every per-step feature, and a fused group: nothing read back
  between evaluations (:mod:`lrstudy.syncs`);
* **models** -- every network the study trains, at the fast profile's sizes: forward and backward
  with bf16 autocast and channels_last (fp32 on a CPU), finite loss and gradients;
* **determinism** -- with ``CUBLAS_WORKSPACE_CONFIG`` set and deterministic algorithms, two runs
  write the same rows;
* **resume** -- a run stopped after a checkpoint and resumed writes the rows of one that was not;
* **fused bf16** -- a fused group of Caffe-net runs with bf16 autocast, compiled where compile works;
* **compiled models** -- each network through ``torch.compile`` (static shapes): the loss of eager;
* **step modes** -- the Caffe net's and ResNet-56's training step, eager vs compile vs whole-step
  capture (``reduce-overhead``): milliseconds per step and their ratios, measured in one run.

Exits 1 if any check failed, 0 otherwise; ``--out`` writes the table (Markdown; ``.csv``/``.json``
by suffix) for a GPU session to bring home, and ``--append`` adds each row to a CSV the moment its
check ends (a GPU window's ``gpu-check.csv``: whatever kills the check, the rows before stay).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

# cuBLAS reads it when its first handle is made: before any CUDA work of this process
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from . import compiling
from .bench import Timer
from .checkpoints import Checkpointer
from .config import DEVICES, resolve_device
from .data import DATASET_CLASSES, DATASET_SHAPES, BatchStream, Normalizer, synthetic
from .experiments import EXPERIMENTS
from .fused import train_fused
from .models import build_model
from .optim import OPTIMIZERS, build_optimizer
from .provenance import code_version, device_name, package_version
from .runs import RunConfig
from .scheduler import hold_rates, set_lr_and_momentum
from .syncs import HostReads, describe
from .train import autocast_for, step_function, train

__all__ = ["main", "Row", "run_checks"]

MINIMUM_TORCH = (2, 4)
OPTIONAL_PACKAGES = ("torchvision", "triton", "papermill", "nbconvert", "jupyterlab", "nbval", "matplotlib", "pandas")


@dataclass
class Row:
    check: str
    status: str  # "pass", "fail" or "skipped"
    seconds: float
    message: str


class _Skip(Exception):
    """A check that does not apply here (its message says why)."""


class _Checks:
    def __init__(self, device: torch.device, budget_s: float, only: tuple[str, ...] = (),
                 on_row: Callable[[Row], None] | None = None):
        self.device, self.cuda = device, device.type == "cuda"
        self.deadline = time.perf_counter() + budget_s
        self.rows: list[Row] = []
        self.only, self.on_row = only, on_row

    def run(self, name: str, check: Callable[[], str], needs_cuda: bool = False, needs_s: float = 0.0) -> None:
        if self.only and not name.startswith(self.only):
            return
        started = time.perf_counter()
        if needs_cuda and not self.cuda:
            row = Row(name, "skipped", 0.0, "needs CUDA")
        elif needs_s and started + needs_s > self.deadline:  # (the cheap checks always run)
            row = Row(name, "skipped", 0.0, f"not started: it needs about {needs_s:.0f} s and the time budget is spent")
        else:
            try:
                row = Row(name, "pass", 0.0, check())
            except _Skip as why:
                row = Row(name, "skipped", 0.0, str(why))
            except Exception as err:  # a failed check is a row, not the end of the command
                row = Row(name, "fail", 0.0, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        row.seconds = time.perf_counter() - started
        self.rows.append(row)
        print(_line(row), flush=True)
        if self.on_row is not None:
            self.on_row(row)


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


def _environment(device: torch.device) -> str:
    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    facts = [f"torch {torch.__version__}", f"python {platform.python_version()}"]
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        facts.append(f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(device)} (sm_{major}{minor}, "
                     f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'})")
    else:
        facts.append(f"no CUDA device (torch built for CUDA {torch.version.cuda})")
    compiler = next((shutil.which(c) for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    facts.append(f"C compiler {compiler or 'none'}")
    problem = compiling.problem()
    facts.append("torch.compile can build kernels" if problem is None else f"torch.compile off: {problem}")
    facts.append("packages: " + ", ".join(f"{name} {package_version(name) or 'absent'}" for name in OPTIONAL_PACKAGES))
    if version < MINIMUM_TORCH:
        raise RuntimeError(f"torch {torch.__version__} is older than {'.'.join(map(str, MINIMUM_TORCH))}; "
                           + "; ".join(facts))
    return "; ".join(facts)


def _data_pipeline(device: torch.device) -> str:
    data = synthetic(train=1000, test=100)
    here = data.on(device)
    stream = BatchStream(here, 100, 3, Normalizer("mean_image", here, device), flip=True, crop=4)
    reference = BatchStream(data, 100, 3, Normalizer("mean_image", data, torch.device("cpu")), flip=True, crop=4)
    with HostReads(cuda=device.type == "cuda") as reads:
        batches = [next(stream) for _ in range(25)]  # two and a half epochs
    for (x, y), (x0, y0) in zip(batches, (next(reference) for _ in range(25))):
        if not (torch.equal(y.cpu(), y0) and torch.equal(x.cpu(), x0)):
            raise AssertionError("the device's batches differ from the CPU's")
        if not x.is_contiguous(memory_format=torch.channels_last):
            raise AssertionError("a batch is not channels_last")
    if reads.calls:
        raise AssertionError(f"host reads while batching: {reads.calls[:3]}")
    return f"25 batches of 100 ({x.dtype}, {tuple(x.shape)}, channels_last) equal to the CPU's; no host sync"


def _optimizers(device: torch.device) -> str:
    settings = {"caffe_sgd": dict(momentum=0.9), "torch_sgd": dict(momentum=0.9, nesterov=True),
                "caffe_nesterov": dict(momentum=0.9), "caffe_adadelta": dict(momentum=0.95, delta=1e-6),
                "caffe_adam": dict(momentum=0.9)}
    # In float64, so that the two paths' different roundings (a tensor rate rounds once more than a
    # float's fused multiply-add) stay far below what an adaptive rule's division by sqrt(h) + delta
    # could amplify into a visible difference: what is compared is the rule, not its rounding.
    worst = {}
    for name in OPTIMIZERS:
        finals = []
        for as_tensors in (False, True):
            torch.manual_seed(0)
            model = build_model({"name": "lenet"}, num_classes=10).to(device=device, dtype=torch.float64)
            optimizer = build_optimizer({"name": name, "weight_decay": 5e-4, **settings.get(name, {})}, model)
            rates = torch.zeros(len(optimizer.param_groups), device=device, dtype=torch.float64)
            if as_tensors:
                hold_rates(optimizer, rates)
            for step in range(4):
                torch.manual_seed(10 + step)
                x = torch.randn(8, 1, 28, 28, dtype=torch.float64).to(device)
                y = torch.randint(0, 10, (8,)).to(device)
                lr = 0.01 * (1 + step)
                if as_tensors:
                    rates.copy_(torch.tensor([lr * g["lr_mult"] for g in optimizer.param_groups],
                                             dtype=torch.float64))
                else:
                    set_lr_and_momentum(optimizer, lr)
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                optimizer.step()
            finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        if not torch.isfinite(finals[1]).all():
            raise AssertionError(f"{name}: weights not finite")
        worst[name] = ((finals[0] - finals[1]).abs().max() / finals[0].abs().max()).item()
        if worst[name] > 1e-9:
            raise AssertionError(f"{name}: tensor rates give other weights than float rates (relative {worst[name]:.2g})")
    return f"{len(worst)} optimizers, float vs tensor rates within {max(worst.values()):.1g} (relative) after 4 steps"


def _small_data():
    """CIFAR-10-shaped synthetic images, few enough that evaluating is cheap on any CPU."""
    return synthetic(train=400, test=100)


def _tiny(**overrides):
    base = dict(profile="smoke", data="synthetic", model={"name": "caffe_cifar10_full"},
                optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004},
                schedule={"name": "triangular", "base_lr": 0.001, "max_lr": 0.006, "step_size": 5},
                iterations=20, batch_size=20, eval_every=10, seed=1)
    return RunConfig(**{**base, **overrides})


def _host_syncs(device: torch.device, precision: str) -> str:
    data = _small_data()
    busy = _tiny(trace_every=1, lr_estimate="corrected",
                 momentum={"name": "one_cycle_momentum", "max_momentum": 0.95, "min_momentum": 0.85, "step_size": 10})
    with HostReads(cuda=device.type == "cuda") as reads:
        lone = train(busy, data, device=device, precision=precision, progress=False)
        fused = train_fused([_tiny(seed=s) for s in (1, 2)], data, device=device, precision=precision, progress=False)
    if reads.calls:
        raise AssertionError(f"{len(reads.calls)} host reads between evaluations: {describe(reads.calls)}")
    if lone.status != "finished" or any(r.status != "finished" for r in fused):
        raise AssertionError("a run did not finish")
    return f"a lone run (trace every update, LR estimate, momentum schedule) and a fused pair: 0 reads in {20 + 20} updates"


def study_networks() -> list[tuple[dict, tuple[int, int, int], int]]:
    """Every network the study trains under the fast profile: ``(model spec, input shape, classes)``."""
    seen = {}
    for experiment in EXPERIMENTS.values():
        settings = experiment.settings("fast", device="cpu")
        dataset_of = {source.id: name for name, source in settings.data.items()}
        for _, config in experiment.run_configs(settings):
            dataset = dataset_of.get(config.data, "cifar10")
            key = json.dumps(config.model, sort_keys=True) + dataset
            seen.setdefault(key, (dict(config.model), DATASET_SHAPES[dataset], DATASET_CLASSES[dataset]))
    return list(seen.values())


def _name(spec: dict) -> str:
    return spec["name"] + "".join(f"-{v}" for k, v in sorted(spec.items()) if k != "name")


def network_label(spec: dict, classes: int) -> str:
    """A network's row name: its spec, and its head where that is not CIFAR-10's or MNIST's 10 classes."""
    return _name(spec) + (f" ({classes} classes)" if classes != 10 else "")


def _forward_backward(model, x, y, autocast) -> float:
    model.zero_grad(set_to_none=True)
    with autocast():
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    if not all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None):
        raise AssertionError("gradients not finite")
    value = loss.item()
    if not math.isfinite(value):
        raise AssertionError("loss not finite")
    return value


def _model_check(device: torch.device, spec: dict, shape, classes: int, compiled: bool) -> str:
    batch = 32 if device.type == "cuda" else 2
    torch.manual_seed(0)
    model = build_model(spec, num_classes=classes).to(device=device, memory_format=torch.channels_last)
    x = torch.randn(batch, *shape, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)
    autocast = autocast_for("bf16", device)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    eager = _forward_backward(model, x, y, autocast)
    if not compiled:
        precision = "bf16 autocast" if device.type == "cuda" else "fp32"
        return f"forward+backward, batch {batch}, {precision}, channels_last: loss {eager:.3f}"

    if compiling.problem():
        raise _Skip(f"torch.compile cannot build kernels here: {compiling.problem()}")
    model.load_state_dict(state)
    network = torch.compile(model, dynamic=False)
    started = time.perf_counter()
    loss = _forward_backward(network, x, y, autocast)
    if abs(loss - eager) > 0.05 * max(1.0, abs(eager)):
        raise AssertionError(f"compiled loss {loss:.4f} vs eager {eager:.4f}")
    return f"compiled in {time.perf_counter() - started:.0f} s; loss {loss:.4f} vs eager {eager:.4f}"


def _same_rows(a, b) -> bool:
    import pandas as pd

    try:
        pd.testing.assert_frame_equal(pd.DataFrame(a.rows), pd.DataFrame(b.rows))
        return True
    except AssertionError:
        return False


def _determinism(device: torch.device, precision: str) -> str:
    data = _small_data()
    torch.use_deterministic_algorithms(True)
    try:
        first = train(_tiny(), data, device=device, precision=precision, progress=False)
        second = train(_tiny(), data, device=device, precision=precision, progress=False)
    finally:
        torch.use_deterministic_algorithms(False)
    if not _same_rows(first, second):
        raise AssertionError("two deterministic runs wrote different rows")
    return f"CUBLAS_WORKSPACE_CONFIG={os.environ.get('CUBLAS_WORKSPACE_CONFIG')}: two runs, identical rows"


def _resume(device: torch.device, precision: str) -> str:
    data, config = _small_data(), _tiny(iterations=30)
    torch.use_deterministic_algorithms(True)
    try:
        with tempfile.TemporaryDirectory() as folder:
            # kept after the run: the checkpoint of step 24, which a second run resumes from
            kept = Checkpointer(Path(folder) / "run.pt", config.id, 12, keep=True)
            straight = train(config, data, device=device, precision=precision, progress=False, checkpointer=kept)
            resumed = train(config, data, device=device, precision=precision, progress=False, checkpointer=kept)
    finally:
        torch.use_deterministic_algorithms(False)
    if resumed.timings["resumed_from_step"] != 24:
        raise AssertionError(f"resumed from {resumed.timings['resumed_from_step']}, not 24")
    if not _same_rows(straight, resumed):
        raise AssertionError("the resumed run's rows differ from the uninterrupted run's")
    return "resumed from the checkpoint of step 24: the same rows as the run that went straight through"


def _fused(device: torch.device, precision: str) -> str:
    compiled = device.type == "cuda" and compiling.problem() is None
    results = train_fused([_tiny(seed=s) for s in range(1, 5)], _small_data(), device=device,
                          precision=precision, progress=False, compile_model=compiled)
    accuracy = [r.rows[-1]["test_acc"] for r in results]
    if any(r.status != "finished" or not math.isfinite(r.rows[-1]["train_loss"]) for r in results):
        raise AssertionError("a member did not finish with a finite loss")
    return (f"4 Caffe-net runs, {precision}{', compiled' if compiled else ''}: "
            f"test accuracy {min(accuracy):.0f}-{max(accuracy):.0f}%")


def _step_modes(device: torch.device, specs: list[dict]) -> str:
    if compiling.problem():
        raise _Skip(f"torch.compile cannot build kernels here: {compiling.problem()}")
    data, timer, parts = synthetic(train=5000, test=100), Timer(device), []
    for spec in specs:
        ms = {}
        for mode in ("eager", "compile", "reduce-overhead"):
            step = step_function(_tiny(model=spec, batch_size=128), data, device, "bf16", mode)
            counter = iter(range(10**6))
            ms[mode] = 1000 * timer(lambda: step(next(counter)), repeats=30, warmup=10)
        parts.append(f"{_name(spec)} ms/step eager {ms['eager']:.2f}, compile {ms['compile']:.2f} "
                     f"({ms['eager'] / ms['compile']:.2f}x), reduce-overhead {ms['reduce-overhead']:.2f} "
                     f"({ms['eager'] / ms['reduce-overhead']:.2f}x)")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def run_checks(device: torch.device, budget_s: float = 110.0, only: tuple[str, ...] = (),
               on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Every check on ``device`` (or those whose names start with one of ``only``), in order, within
    ``budget_s`` seconds (checks that would not fit are skipped); ``on_row`` gets each row as it ends."""
    checks = _Checks(device, budget_s, only, on_row)
    precision = "bf16" if device.type == "cuda" else "fp32"
    checks.run("environment", lambda: _environment(device))
    checks.run("data pipeline", lambda: _data_pipeline(device))
    checks.run("optimizers", lambda: _optimizers(device))
    checks.run("host syncs", lambda: _host_syncs(device, precision))
    networks = study_networks()
    for spec, shape, classes in networks:
        checks.run(f"model {network_label(spec, classes)}",
                   lambda s=spec, sh=shape, c=classes: _model_check(device, s, sh, c, False))
    checks.run("determinism", lambda: _determinism(device, precision))
    checks.run("resume", lambda: _resume(device, precision))
    checks.run("fused bf16", lambda: _fused(device, precision), needs_cuda=True)
    checks.run("step modes", lambda: _step_modes(device, [{"name": "caffe_cifar10_full"},
                                                          {"name": "resnet", "depth": 56, "variant": "caffe_sc"}]),
               needs_cuda=True, needs_s=40)
    for spec, shape, classes in networks:
        checks.run(f"compiled {network_label(spec, classes)}",
                   lambda s=spec, sh=shape, c=classes: _model_check(device, s, sh, c, True),
                   needs_cuda=True, needs_s=15)
    return checks.rows


def _line(row: Row) -> str:
    return f"{row.status:8} {row.seconds:6.1f} s  {row.check:32} {row.message}"


def markdown(rows: list[Row], header: str) -> str:
    lines = [header, "", "| check | status | seconds | message |", "|---|---|---|---|"]
    lines += [f"| {r.check} | {r.status} | {r.seconds:.1f} | {r.message.replace('|', '/')} |" for r in rows]
    return "\n".join(lines) + "\n"


def _write(path: Path, rows: list[Row], header: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps({"header": header, "rows": [asdict(r) for r in rows]}, indent=1) + "\n")
    elif path.suffix == ".csv":
        import pandas as pd

        pd.DataFrame([asdict(r) for r in rows]).to_csv(path, index=False)
    else:
        path.write_text(markdown(rows, header))


def append_row(path: Path, row: Row, header: str) -> None:
    """Add ``row`` to the CSV ``path`` (its header line first if the file is new) and fsync it: a
    check killed later keeps the rows before it."""
    import csv
    import io

    line = io.StringIO()
    writer = csv.writer(line)
    if not path.exists() or path.stat().st_size == 0:
        writer.writerow(["check", "status", "seconds", "message", "run"])
    writer.writerow([row.check, row.status, f"{row.seconds:.1f}", row.message, header])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(line.getvalue())
        f.flush()
        os.fsync(f.fileno())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrstudy gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (.md, .csv or .json)")
    parser.add_argument("--budget", type=float, default=110.0,
                        help="seconds the checks may take; later checks that would not fit are skipped")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--append", type=Path, default=None, metavar="CSV",
                        help="append each row to this CSV as its check ends (a GPU window's gpu-check.csv)")
    parser.add_argument("--only", default="", metavar="NAME[,NAME...]",
                        help="only the checks whose names start with these (e.g. environment)")
    args = parser.parse_args(argv)
    device = resolve_device("auto") if args.device == "auto" else torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    started = time.perf_counter()
    version = code_version()
    header = (f"gpu-check on {device_name(device)}; torch {torch.__version__}; commit {version['commit']}"
              f"{' (code modified)' if version['code_modified'] else ''}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(header, flush=True)
    on_row = (lambda row: append_row(args.append, row, header)) if args.append is not None else None
    rows = run_checks(device, args.budget, tuple(n.strip() for n in args.only.split(",") if n.strip()), on_row)
    failed = [r for r in rows if r.status == "fail"]
    skipped = sum(r.status == "skipped" for r in rows)
    summary = (f"gpu-check: {len(rows) - len(failed) - skipped} pass, {len(failed)} fail, {skipped} skipped "
               f"({time.perf_counter() - started:.0f} s)")
    print(summary)
    if args.out is not None:
        _write(args.out, rows, f"{header}; {summary}")
        print("wrote", args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
