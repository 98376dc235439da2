"""Where the study keeps data and results.

Defaults are ``data/`` and ``results/`` at the project root (the folder holding ``pyproject.toml``);
``LRSTUDY_DATA_ROOT`` and ``LRSTUDY_RESULTS`` move them (the tests point both at temporary folders).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_root", "data_root", "results_root"]


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
