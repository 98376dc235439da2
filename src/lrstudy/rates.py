"""The values schedules give over a chunk of training steps, held where the update reads them.

A training loop asks its schedules for every step of the coming chunk at once -- in Python, on the
host, as the schedules are pure functions -- and, where the update runs on a GPU, sends the whole
table to the device in one asynchronous copy. Each update then copies its step's row into one
fixed tensor (:attr:`RateTable.current`) that the optimizer's parameter groups hold: no host
value crosses to the device per step, and a captured step (CUDA graph) reads the same address
every time. Where results must keep their float rounding bit for bit (the CPU's eager and compile
modes), the update reads :meth:`RateTable.host` -- the schedule's own Python floats -- instead.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .data import to_device

__all__ = ["RateTable"]


class RateTable:
    """Values of ``columns`` (functions of the step) for the steps of one chunk, as rows.

    ``fill(start, stop)`` computes rows ``start .. stop-1``; ``host(step)`` is a row as Python floats;
    ``load(step)`` copies the row into :attr:`current` on the device and returns it.
    """

    def __init__(self, columns: Sequence[Callable[[int], float]], device: torch.device,
                 dtype: torch.dtype = torch.float32):
        self.columns, self.device, self.dtype = list(columns), torch.device(device), dtype
        self.current = torch.zeros(len(self.columns), device=self.device, dtype=dtype)
        self.start, self._rows, self._table = 0, [], None

    def fill(self, start: int, stop: int) -> None:
        self.start = start
        self._rows = [[column(step) for column in self.columns] for step in range(start, stop)]
        self._table = None  # sent to the device on the first load()

    def host(self, step: int) -> list[float]:
        return self._rows[step - self.start]

    def load(self, step: int) -> torch.Tensor:
        if self._table is None:
            self._table = to_device(torch.tensor(self._rows, dtype=self.dtype).view(-1, len(self.columns)),
                                    self.device)
        self.current.copy_(self._table[step - self.start])
        return self.current
