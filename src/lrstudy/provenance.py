"""What produced a result: code version, packages, hardware. Stored with every run."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata

import torch

from .paths import project_root

__all__ = ["code_version", "environment", "device_name"]


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """The git commit of the project and whether the working tree differed from it.

    Where there is no git checkout (a copied tree on a remote GPU), ``LRSTUDY_COMMIT`` may name the
    commit the copy was made from; it is then marked ``"(reported)"``.
    """
    root = project_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "pyproject.toml"],
                                cwd=root, capture_output=True, text=True, check=True, timeout=10).stdout
        return {"commit": commit, "code_modified": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        reported = os.environ.get("LRSTUDY_COMMIT")
        return {"commit": f"{reported} (reported)" if reported else "unknown", "code_modified": None}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


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
    return f"CPU: {cpu} ({torch.get_num_threads()} threads)"


def environment(device: torch.device | str) -> dict:
    """Everything about the software and hardware a run used."""
    return {
        **code_version(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "numpy": _version("numpy"),
        "lrstudy": _version("lrstudy"),
        "platform": platform.platform(),
        "device": device_name(device),
        "cuda": torch.version.cuda if torch.device(device).type == "cuda" else None,
    }
