"""What produced a result: code version, packages, hardware. Stored with every run."""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from .paths import project_root

__all__ = ["code_version", "archived_commit", "environment", "device_name", "names_a_cpu", "device_slug",
           "package_version"]


# In a git checkout this file holds a placeholder; `git archive` writes the commit into it
# (.gitattributes: export-subst), so an exported tree still says what it was exported from.
ARCHIVED_COMMIT_FILE = Path(__file__).with_name("COMMIT")


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """The git commit of the project and whether the working tree differed from it.

    Where there is no git checkout (a copied tree on a remote GPU), ``LRSTUDY_COMMIT`` may name the
    commit the copy was made from (it is then marked ``"(reported)"``); failing that, a tree made by
    ``git archive`` names its commit in ``src/lrstudy/COMMIT`` (marked ``"(archive)"``). Whether such
    a copy was modified afterwards is not known (``code_modified`` None).
    """
    root = project_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "pyproject.toml"],
                                cwd=root, capture_output=True, text=True, check=True, timeout=10).stdout
        return {"commit": commit, "code_modified": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        reported = os.environ.get("LRSTUDY_COMMIT", "").strip()
        if reported:
            return {"commit": f"{reported} (reported)", "code_modified": None}
        archived = archived_commit()
        return {"commit": f"{archived} (archive)" if archived else "unknown", "code_modified": None}


def archived_commit(path: Path | None = None) -> str | None:
    """The commit ``git archive`` wrote into ``path`` (by default :data:`ARCHIVED_COMMIT_FILE`);
    None in a checkout (where it holds a placeholder) or without the file."""
    try:
        text = (path or ARCHIVED_COMMIT_FILE).read_text().strip()
    except OSError:
        return None
    return text if re.fullmatch(r"[0-9a-f]{40}", text) else None


def package_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# how device_name marks a CPU; readers of stored names (the cost model, the pages) test for it here
CPU_PREFIX = "CPU: "


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{CPU_PREFIX}{cpu} ({torch.get_num_threads()} threads)"


def names_a_cpu(name: str) -> bool:
    """Whether a stored :func:`device_name` is a CPU's (else a GPU's)."""
    return name.startswith(CPU_PREFIX)


def device_slug(name: str) -> str:
    """A :func:`device_name` as a file name: ``make bench`` writes ``results/bench/<slug>.csv`` and
    the cost model looks for that name."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def environment(device: torch.device | str) -> dict:
    """Everything about the software and hardware a run used."""
    return {
        **code_version(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": package_version("torchvision"),
        "numpy": package_version("numpy"),
        "lrstudy": package_version("lrstudy"),
        "platform": platform.platform(),
        "device": device_name(device),
        "cuda": torch.version.cuda if torch.device(device).type == "cuda" else None,
    }
