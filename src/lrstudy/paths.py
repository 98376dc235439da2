"""Where the study keeps data and results.

Defaults are ``data/`` and ``results/`` at the project root (the folder holding ``pyproject.toml``);
``LRSTUDY_DATA_ROOT`` and ``LRSTUDY_RESULTS`` move them (the tests point both at temporary folders).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["project_root", "data_root", "results_root", "fill_marked_block"]


def project_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "src" / "lrstudy").is_dir():
            return parent
    return Path.cwd()  # installed as a plain package: work relative to where we are


def data_root() -> Path:
    return Path(os.environ.get("LRSTUDY_DATA_ROOT") or project_root() / "data")


def results_root() -> Path:
    return Path(os.environ.get("LRSTUDY_RESULTS") or project_root() / "results")


def fill_marked_block(path: Path, begin: str, end: str, body: str) -> None:
    """Replace what lies between the markers ``begin`` and ``end`` in ``path`` with ``body``,
    keeping the markers: the README's generated tables."""
    text = path.read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{path} has no {begin} ... {end} block to fill")
    block = f"{begin}\n{body}{end}"
    path.write_text(re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S))
