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

import functools
import os
import shutil
import sysconfig
import warnings

__all__ = ["problem", "available", "give_up", "is_compile_failure", "reset"]

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
