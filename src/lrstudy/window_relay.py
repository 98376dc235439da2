"""A GPU window's runs stage: ``python -m lrstudy.window_relay RECORDS.jsonl <lrstudy command...>``
runs the command line (:mod:`lrstudy.__main__`) in this process with every finished or diverged
record appended to ``RECORDS.jsonl`` the moment the store saves it, so a window killed at any moment
has handed back every run it finished (see :mod:`lrstudy.gpu_window`, which starts this stage)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import __main__ as cli
from .gpu_window import FINAL_STATUSES, PROFILE_NAME, STOP_AT, append_line, files_entry
from .runs import RunStore

__all__ = ["relay"]


def relay(sink: str, argv: list[str]) -> int:
    """``python -m lrstudy <argv>`` (the runs stage), with each finished or diverged record appended
    to ``sink`` the moment the store has saved it, before the next run starts."""
    save = RunStore.save

    def save_and_relay(store, config, status, rows, info):
        record = save(store, config, status, rows, info)
        if status in FINAL_STATUSES and PROFILE_NAME.fullmatch(store.profile):
            csv_path, json_path = store.paths(config.id)
            parts = {f"runs/{store.profile}/{config.id}.csv": csv_path.read_bytes()}
            snapshots = csv_path.with_suffix(".snapshots.pt")
            if record.meta.get("snapshots_sha256") and snapshots.exists():
                parts[f"runs/{store.profile}/{config.id}.snapshots.pt"] = snapshots.read_bytes()
            parts[f"runs/{store.profile}/{config.id}.json"] = json_path.read_bytes()
            if append_line(Path(sink), files_entry("record", parts)):
                print(f"gpu-window: record {config.id} ({status}) written to {Path(sink).name}", flush=True)
            else:
                print(f"gpu-window: record {config.id} left out: {Path(sink).name} would pass 16 MiB", flush=True)
        return record

    RunStore.save = save_and_relay
    if STOP_AT in argv:  # the limit counts from now, after the imports, which a loaded machine makes slow
        at = argv.index(STOP_AT)
        argv = [*argv[:at], "--time-limit", f"{max(float(argv[at + 1]) - time.time(), 1):.0f}s", *argv[at + 2:]]
    return cli.main(argv)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python -m lrstudy.window_relay RECORDS.jsonl <lrstudy command...> (the window's runs stage)")
    sys.exit(relay(sys.argv[1], sys.argv[2:]))
