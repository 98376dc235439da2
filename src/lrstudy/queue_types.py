"""What the run queue (:mod:`lrstudy.runqueue`) and its Ray executor (:mod:`lrstudy.ray_executor`)
share: the time box that says when to stop, the result a queue hands back, the device a plan is made
for, and the reading of a time limit such as ``45m``."""

from __future__ import annotations

import math
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from .config import Settings, resolve_device

__all__ = ["TimeBox", "QueueResult", "planned_device", "parse_duration", "queued_name"]


def queued_name(experiment: str, label: str, seed: int) -> str:
    """A queued run as its progress lines and messages name it, whichever executor trains it."""
    return f"{experiment}: {label} seed {seed}"


def planned_device(settings: Settings) -> str:
    """The device a profile trains on, as planned (a CUDA profile is planned for CUDA on any machine)."""
    return resolve_device("auto").type if settings.device == "auto" else settings.device


def parse_duration(text: str) -> float:
    """Seconds in ``"45m"``, ``"8h"``, ``"90s"`` or ``"1h30m"``."""
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*", str(text))
    if not parts or not any(parts.groups()):
        raise ValueError(f"time limit {text!r}: write a duration such as 45m, 8h, 90s or 1h30m")
    hours, minutes, seconds = (float(g or 0) for g in parts.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"time limit {text!r} must be longer than zero")
    return total


class TimeBox:
    """When the queue must stop: at its time limit (None: never), or once SIGTERM has arrived.
    Calling it says whether to stop now; training checks it every step."""

    clock = staticmethod(time.monotonic)

    def __init__(self, seconds: float | None = None):
        self.deadline = None if seconds is None else self.clock() + seconds
        self.signalled = False

    def __call__(self) -> bool:
        return self.signalled or (self.deadline is not None and self.clock() >= self.deadline)

    def left(self) -> float:
        return math.inf if self.deadline is None else max(0.0, self.deadline - self.clock())

    def wall_deadline(self) -> float | None:
        """The limit as a wall-clock time (``time.time()``), for workers in other processes."""
        return None if self.deadline is None else time.time() + self.left()

    @contextmanager
    def on_sigterm(self):
        """While inside, SIGTERM stops the queue as the time limit does (main thread only: Python
        delivers signals there)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            self.signalled = True
            print("SIGTERM: the run in progress saves its checkpoint and the queue stops", flush=True)
        previous = signal.signal(signal.SIGTERM, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)


@dataclass
class QueueResult:
    """What a queue did: the reason each run still has no record (by run id), and whether the time
    limit or SIGTERM stopped it."""

    errors: dict[str, str] = field(default_factory=dict)
    stopped: bool = False
