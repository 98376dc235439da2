"""Checkpoints of runs in progress: written atomically, verified on load, loaded without pickle.

A checkpoint file is the SHA-256 digest (32 bytes) of its payload followed by the payload, which is
``torch.save`` of plain data and tensors: the run's id, a format number and the training state. On
load, a file whose digest, format or run id does not match is set aside (renamed ``*.corrupt``) and
the run starts over; loading uses ``torch.load(..., weights_only=True)``, so a checkpoint can never
execute code.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Callable

import torch

from .files import atomic_write

__all__ = ["Checkpointer", "StopRequested", "read_checkpoint"]

FORMAT = 2  # 2: one layout for lone and fused runs (lrstudy.ledger); a format-1 file is set aside
_DIGEST = 32


def read_checkpoint(raw: bytes, run_id: str) -> tuple[dict | None, str | None]:
    """A checkpoint file's bytes to ``(saved state, None)``, or ``(None, why it cannot be trusted)``:
    its digest, its format or its run id does not match, or torch cannot read it."""
    digest, payload = raw[:_DIGEST], raw[_DIGEST:]
    if hashlib.sha256(payload).digest() != digest:
        return None, "checksum mismatch (truncated or altered)"
    try:
        # onto the CPU: a checkpoint written on a GPU must load on a machine without one (the
        # training state is copied onto the run's device when it is restored)
        blob = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 (unreadable despite the digest: treated as corrupt too)
        return None, f"unreadable ({type(err).__name__})"
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("run_id") != run_id:
        found = (blob.get("run_id"), blob.get("format")) if isinstance(blob, dict) else type(blob).__name__
        return None, f"written for another run or format {found}"
    return blob["state"], None


class StopRequested(BaseException):
    """Training was asked to stop (a time limit, SIGTERM): the run saved its checkpoint and the
    next call resumes it. A BaseException, like KeyboardInterrupt, so that no handler that records
    a run as failed catches it."""


class Checkpointer:
    """Saves and restores one run's training state at ``path`` every ``every`` updates, and at once
    when ``stop()`` (if set) turns true: the training loop then saves and raises
    :class:`StopRequested`."""

    def __init__(self, path: str | os.PathLike, run_id: str, every: int, keep: bool = False,
                 stop: Callable[[], bool] | None = None):
        if every < 1:
            raise ValueError(f"checkpoint every={every} must be >= 1 updates")
        self.path, self.run_id, self.every, self.keep, self.stop = Path(path), run_id, every, keep, stop

    def stop_requested(self) -> bool:
        return self.stop is not None and self.stop()

    def save(self, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "run_id": self.run_id, "state": state}, buffer)
        payload = buffer.getvalue()
        atomic_write(self.path, hashlib.sha256(payload).digest() + payload)

    def load(self) -> dict | None:
        """The saved state, or None if there is none or it cannot be trusted."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        state, problem = read_checkpoint(raw, self.run_id)
        if problem:
            warnings.warn(f"ignoring checkpoint {self.path}: {problem}; the run starts over", stacklevel=2)
            os.replace(self.path, self.path.with_suffix(".corrupt"))
        return state

    def finish(self) -> None:
        """The run is complete: remove its checkpoint unless asked to keep it."""
        if not self.keep:
            self.path.unlink(missing_ok=True)
