"""Whether ``torch.compile`` can work in this process, decided once and said once.

``torch.compile`` generates C++ (CPU) or Triton (CUDA) code and builds it with the machine's C
compiler against ``Python.h``. A GPU box without either fails every compiled run at its first
forward pass; a study of a hundred runs would store a hundred failures. So before the first run
:func:`problem` looks for what the build needs (cheap: no compilation), and a run that still fails
while compiling (:func:`is_compile_failure`) switches compile off for the rest of the process
(:func:`give_up`). Either way the study trains eagerly, with one warning per process, and each run
records the step mode it actually ran in.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sysconfig
import warnings

__all__ = ["problem", "available", "give_up", "is_compile_failure", "reset", "recompile_scope", "RECOMPILE_LIMIT"]

# Dynamo keeps at most `recompile_limit` (default 8) compiled versions of one code object and past
# that runs it eagerly, silently. A process that trains many fused groups sends every variant (network,
# K, ...) through one code object, _FusedRuns._losses_and_hits: thirteen for the fast profile. So
# while a run compiles, the limit is raised on purpose, and hitting it raises instead -- which
# is_compile_failure() sees, so the run is trained again eagerly and its record says so.
RECOMPILE_LIMIT = 64

_given_up: str | None = None  # why compile was switched off after a failure in this process
_warned = False


@functools.lru_cache(maxsize=1)
def problem() -> str | None:
    """Why ``torch.compile`` cannot build its kernels here (None if nothing is missing): no C
    compiler (``$CC``, ``cc``, ``gcc`` or ``clang`` on PATH), or no ``Python.h``."""
    compilers = [os.environ.get("CC", "").split(" ")[0], "cc", "gcc", "clang"]
    if not any(name and shutil.which(name) for name in compilers):
        return "no C compiler (cc, gcc or clang) on PATH"
    include = sysconfig.get_paths().get("include") or ""
    if not os.path.exists(os.path.join(include, "Python.h")):
        return f"no Python.h in {include or 'the interpreter'} (install the Python development headers)"
    return None


def available() -> bool:
    """Whether runs may compile; the first time it is not, warn (once per process)."""
    reason = _given_up or problem()
    if reason is not None:
        _warn_once(reason)
    return reason is None


def give_up(err: BaseException) -> None:
    """A compiled run failed while compiling: no run of this process compiles again."""
    global _given_up
    _given_up = f"a run failed to compile ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    _warn_once(_given_up)


def is_compile_failure(err: BaseException) -> bool:
    """Whether an error came from building compiled code rather than from training itself."""
    for cause in _chain(err):
        module = type(cause).__module__ or ""
        if module.startswith(("torch._dynamo", "torch._inductor", "triton")):
            return True
        if type(cause).__name__ in ("BackendCompilerFailed", "InductorError", "CalledProcessError", "CppCompileError"):
            return True
        if "Python.h" in str(cause):
            return True
    return False


@contextlib.contextmanager
def recompile_scope(limit: int = RECOMPILE_LIMIT):
    """While inside: up to ``limit`` compiled versions per code object, and an error past it (torch
    >= 2.4 names these settings in two ways; those this torch has are set)."""
    import torch._dynamo.config as dynamo

    limit_name = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
    fail_name = next((n for n in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit") if hasattr(dynamo, n)), None)
    with dynamo.patch(**{limit_name: limit, **({fail_name: True} if fail_name else {})}):
        yield


def reset() -> None:
    """Forget a failure and the warning (tests)."""
    global _given_up, _warned
    _given_up, _warned = None, False
    problem.cache_clear()


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _warn_once(reason: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"torch.compile is switched off for this process: {reason}. Runs train eagerly "
                      "(slower, same results); each run records its step mode.", RuntimeWarning, stacklevel=3)
