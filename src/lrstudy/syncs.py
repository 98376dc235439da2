"""Counting the times a training loop makes the host wait for the device, between evaluations.

A value read back to the host (``.item()``, ``.tolist()``, ``.cpu()``, ``bool(tensor)``, ...) makes
the CPU wait until the GPU has caught up: on small networks, where one step is a few hundred tiny
kernels, each such wait costs more than the step. :class:`HostReads` counts those reads made inside
:func:`lrstudy.ledger.run_steps` but outside what may read -- an evaluation, the rows it flushes, a
checkpoint -- with a ``TorchFunctionMode`` (on any device, so the CPU's tests see them) and, on
CUDA, torch's own sync debug mode as well (which also sees waits no Python call shows, such as a
copy from pageable host memory).
"""

from __future__ import annotations

import sys
import warnings

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["HostReads", "describe"]

# What reads a tensor's value on the host (Tensor methods as the function mode sees them)
READS = frozenset({"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__"})
# Frames of run_steps' work that may read: evaluating, writing rows, saving or loading a checkpoint
ALLOWED = frozenset({"flush", "evaluate", "record", "state", "save", "load", "load_state", "restore"})


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
        if name in READS:
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


def _between_evaluations(frame) -> str | None:
    """The innermost lrstudy frame of a read made inside ``run_steps`` but outside what may read
    (None if the read is allowed or not in a training loop)."""
    inside, innermost = False, None
    while frame is not None:
        code = frame.f_code
        if "lrstudy" in code.co_filename:
            if code.co_name in ALLOWED:
                return None
            if innermost is None:
                innermost = f"{code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {code.co_name}"
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

