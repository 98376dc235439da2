"""Counting the times a training loop makes the host wait for the device, between evaluations.

A value read back to the host (``.item()``, ``.tolist()``, ``.cpu()``, ``bool(tensor)``, ...) makes
the CPU wait until the GPU has caught up: on small networks, where one step is a few hundred tiny
kernels, each such wait costs more than the step. Some reads are implicit: a boolean mask
(``x[x > 0]``), ``nonzero``, ``unique``, ``torch.equal``, ``.to("cpu")`` of a device tensor must
know values before they can return. :class:`HostReads` counts those reads made inside
:func:`lrstudy.ledger.run_steps` but outside what may read -- an evaluation, the rows it flushes, a
checkpoint, named as (file, function) pairs -- with a ``TorchFunctionMode`` (on any device, so the
CPU's tests see them) and, on CUDA, torch's own sync debug mode as well (which also sees waits no
Python call shows, such as a copy from pageable host memory). The debug mode is "warn", not
"error": an evaluation between the steps may read, and only the frames tell which syncs are its.
"""

from __future__ import annotations

import sys
import warnings

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["HostReads", "describe"]

# What reads a tensor's value on the host (Tensor methods and torch functions as the function mode
# sees them): explicitly, or implicitly because the size of the result depends on the values
# (nonzero, unique, a boolean mask...) or the answer is a Python value (equal, allclose)
READS = frozenset({"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__",
                   "nonzero", "argwhere", "unique", "unique_consecutive", "masked_select", "equal", "allclose",
                   "bincount", "repeat_interleave"})
INDEXING = frozenset({"__getitem__", "__setitem__", "index_put", "index_put_"})  # a read when the index is a mask
# The frames of run_steps' work that may read, as (file, function): evaluating, writing rows,
# saving or restoring a checkpoint. A bare function name would not do: RateTable.load, which runs
# every step, must not pass for a checkpoint's load.
ALLOWED = frozenset({
    ("ledger.py", "flush"), ("ledger.py", "record"), ("ledger.py", "evaluate"), ("ledger.py", "state"),
    ("ledger.py", "load"), ("train.py", "evaluate"), ("train.py", "state"), ("train.py", "load"),
    ("fused.py", "evaluate"), ("fused.py", "state"), ("fused.py", "load"), ("checkpoints.py", "save"),
    ("checkpoints.py", "load"), ("range_test.py", "state"), ("range_test.py", "load_state"),
    ("data.py", "state"), ("data.py", "restore"),
})


class HostReads(TorchFunctionMode):
    """``with HostReads() as reads: train(...)``; then ``reads.calls`` lists each read made between
    evaluations: ``(what, where)`` with ``where`` the innermost frame of lrstudy that made it."""

    def __init__(self, cuda: bool | None = None):
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.cuda = torch.cuda.is_available() if cuda is None else cuda
        self._warnings = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS or _implicit_read(name, args, kwargs or {}):
            where = _between_evaluations(sys._getframe(1))
            if where:
                self.calls.append((name, where))
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        if self.cuda:
            self._warnings = warnings.catch_warnings()
            self._warnings.__enter__()
            warnings.simplefilter("always")
            previous = warnings.showwarning

            def shown(message, category, filename, lineno, file=None, line=None):
                if "synchroniz" in str(message).lower():
                    where = _between_evaluations(sys._getframe(1))
                    if where:
                        self.calls.append(("cuda sync", where))
                    return
                previous(message, category, filename, lineno, file, line)

            warnings.showwarning = shown
            torch.cuda.set_sync_debug_mode("warn")
        return super().__enter__()

    def __exit__(self, *exc):
        out = super().__exit__(*exc)
        if self.cuda:
            torch.cuda.set_sync_debug_mode("default")
            self._warnings.__exit__(*exc)
        return out


def _implicit_read(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether a call that is not a read by name reads all the same: indexing with a boolean mask
    (``x[x > 0]``), or ``.to()`` from a device to the CPU."""
    if name in INDEXING and len(args) > 1:
        index = args[1] if isinstance(args[1], (tuple, list)) else (args[1],)
        return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in index)
    if name == "to" and args and isinstance(args[0], torch.Tensor) and args[0].device.type != "cpu":
        targets = [*args[1:], kwargs.get("device")]
        return any(_is_cpu(t) for t in targets)
    return False


def _is_cpu(target) -> bool:
    if isinstance(target, torch.Tensor):
        return target.device.type == "cpu"
    if isinstance(target, (str, torch.device)):
        try:
            return torch.device(target).type == "cpu"
        except RuntimeError:  # (a dtype given as a string)
            return False
    return False


def _between_evaluations(frame) -> str | None:
    """The innermost lrstudy frame of a read made inside ``run_steps`` but outside what may read
    (None if the read is allowed or not in a training loop)."""
    inside, innermost = False, None
    while frame is not None:
        code = frame.f_code
        if "lrstudy" in code.co_filename:
            file = code.co_filename.replace("\\", "/").rsplit("/", 1)[-1]
            if (file, code.co_name) in ALLOWED:
                return None
            if innermost is None:
                innermost = f"{file}:{frame.f_lineno} {code.co_name}"
            if code.co_name == "run_steps":
                inside = True
        frame = frame.f_back
    return innermost if inside else None


def describe(calls: list[tuple[str, str]]) -> str:
    """The reads counted, grouped: ``3 x item at train.py:120 update, ...``."""
    counts: dict[tuple[str, str], int] = {}
    for call in calls:
        counts[call] = counts.get(call, 0) + 1
    return ", ".join(f"{n} x {what} at {where}" for (what, where), n in counts.items()) or "none"

