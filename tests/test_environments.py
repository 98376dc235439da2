"""A machine that lacks something the study can do without: it says so once and goes on.

* no C compiler (or no ``Python.h``): ``torch.compile`` is switched off with one warning per
  process, and a compiled run that fails while compiling is trained again eagerly, its record saying
  so -- not one failed run after another;
* no network: a data set that needs a download is one fast, clear "not available", reported as
  not run;
* no ``.git``: the commit comes from ``LRSTUDY_COMMIT`` or from the file ``git archive`` fills in;
* the command line names every data set's source; profiles choose which networks' steps are
  captured without moving any run id.
"""

import dataclasses
import socket
import time
import warnings

import pytest
import torch

from lrstudy import compiling, data as data_mod, provenance, train as train_module
from lrstudy.__main__ import main
from lrstudy.runqueue import run_in_order
from lrstudy.experiments import EXPERIMENTS, clr_cifar10


@pytest.fixture
def fresh_compiling():
    compiling.reset()
    yield
    compiling.reset()


def test_without_a_compiler_compile_is_off_with_one_warning(monkeypatch, fresh_compiling):
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    monkeypatch.delenv("CC", raising=False)
    assert "no C compiler" in compiling.problem()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [compiling.available() for _ in range(3)] == [False] * 3
    assert len(caught) == 1 and "switched off" in str(caught[0].message)


def test_without_python_headers_compile_is_off(monkeypatch, fresh_compiling):
    monkeypatch.setattr(compiling.sysconfig, "get_paths", lambda: {"include": "/nonexistent/include"})
    assert "Python.h" in compiling.problem()


def test_a_run_that_fails_to_compile_is_trained_eagerly_and_says_so(scratch, monkeypatch, fresh_compiling):
    """The profile compiles on CUDA; here the device check is bypassed and the compiler fails as a
    machine without one does, at the first compiled forward pass."""
    import lrstudy.execute as execute_module

    class CompilerMissing(RuntimeError):
        pass

    CompilerMissing.__module__ = "torch._inductor.exc"  # where torch's own build errors come from
    real_train, modes = train_module.train, []

    def train(*args, step_mode=None, **kw):
        modes.append(step_mode)
        if step_mode != "eager":
            raise CompilerMissing("fatal error: Python.h: No such file or directory")
        return real_train(*args, step_mode=step_mode, **kw)

    monkeypatch.setattr(execute_module, "train", train)
    monkeypatch.setattr(execute_module, "_step_mode",
                        lambda settings, device, config: "eager" if not compiling.available() else "compile")
    s = clr_cifar10.EXPERIMENT.settings("smoke")
    # two short runs: the first fails to compile and is trained eagerly, the second never compiles
    labelled = [(label, dataclasses.replace(c, iterations=20, eval_every=10))
                for label, c in clr_cifar10.EXPERIMENT.run_configs(s)[:2]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records, errors = run_in_order(s, labelled, progress=False)
    assert not errors and all(r.status == "finished" and r.meta["step_mode"] == "eager" for r in records)
    assert modes == ["compile", "eager", "eager"]  # one failure, then never compiled again
    assert sum("switched off" in str(w.message) for w in caught) == 1


def test_a_download_without_network_is_one_fast_not_available(scratch, monkeypatch):
    def hangs(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(socket, "create_connection", hangs)
    monkeypatch.setattr(data_mod, "DOWNLOAD_TIMEOUT_S", 0.5)
    started = time.perf_counter()
    with pytest.raises(data_mod.DataUnavailable, match="CIFAR-100 is not in .* could not be downloaded"):
        data_mod.load_data("cifar100")
    assert time.perf_counter() - started < 10


def test_a_notebook_reports_runs_on_unreachable_data_as_not_run(scratch, monkeypatch):
    monkeypatch.setattr(data_mod, "_reachable", lambda url, timeout: "no network here")
    from lrstudy.experiments import sgdr

    s = sgdr.EXPERIMENT.settings("smoke", data_cifar100="cifar100")
    labelled = [(label, c) for label, c in sgdr.EXPERIMENT.run_configs(s) if c.data == "cifar100"]
    records, errors = run_in_order(s, labelled, progress=False)
    assert records == [None] * len(labelled)
    assert all(e.startswith("not run:") and "no network here" in e for e in errors.values())


def test_the_commit_of_a_copy_without_git(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "project_root", lambda: tmp_path)  # no .git there
    commit = "0123456789abcdef0123456789abcdef01234567"
    archived = tmp_path / "COMMIT"
    for text, env, expected in [("$Format:%H$\n", None, "unknown"), (commit + "\n", None, f"{commit} (archive)"),
                                (commit + "\n", "feedbeef", "feedbeef (reported)")]:
        archived.write_text(text)
        monkeypatch.setattr(provenance, "ARCHIVED_COMMIT_FILE", archived)
        if env:
            monkeypatch.setenv("LRSTUDY_COMMIT", env)
        provenance.code_version.cache_clear()
        try:
            assert provenance.code_version() == {"commit": expected, "code_modified": None}
        finally:
            provenance.code_version.cache_clear()


def test_the_checkout_keeps_a_placeholder_for_git_archive():
    assert provenance.ARCHIVED_COMMIT_FILE.read_text().strip() == "$Format:%H$"
    assert provenance.archived_commit() is None


def test_the_command_line_names_each_data_set(scratch, capsys):
    assert main(["status", "--profile", "smoke", "--missing-ok", "--data-mnist", "/nonexistent/mnist",
                 "--data-cifar100", "/nonexistent/c100", "super_convergence", "sgdr", "clr_cifar10"]) == 0
    out = capsys.readouterr().out
    assert "/nonexistent/mnist: not on this machine" in out and "/nonexistent/c100: not on this machine" in out


def test_capture_is_a_profile_choice_that_moves_no_run_id():
    from lrstudy.config import load_profile, parse_profile
    from lrstudy.models import MODELS

    for name, experiment in EXPERIMENTS.items():
        s = experiment.settings("fast", device="cpu")
        captured = dataclasses.replace(s, profile=dataclasses.replace(s.profile, capture=("caffe_cifar10_full", "resnet")))
        assert [c.id for _, c in experiment.run_configs(s)] == [c.id for _, c in experiment.run_configs(captured)], name
    text = (load_profile.__globals__["resources"].files("lrstudy") / "profiles" / "smoke.yaml").read_text()
    with pytest.raises(ValueError, match="capture names an unknown network 'alexnet'"):
        parse_profile("smoke", text + "capture: [alexnet]\n", notebooks=EXPERIMENTS,
                      networks=MODELS)


def test_a_captured_network_runs_reduce_overhead_where_compile_works(fresh_compiling, monkeypatch):  # (undone first)
    import lrstudy.execute as execute_module

    s = clr_cifar10.EXPERIMENT.settings("fast", device="cpu")
    s = dataclasses.replace(s, profile=dataclasses.replace(s.profile, capture=("caffe_cifar10_full",)))
    config = clr_cifar10.EXPERIMENT.run_configs(s)[0][1]
    cuda = torch.device("cuda")
    monkeypatch.setattr(compiling, "problem", lambda: None)
    assert execute_module._step_mode(s, cuda, config) == "reduce-overhead"
    other = dataclasses.replace(config, model={"name": "resnet", "depth": 20})
    assert execute_module._step_mode(s, cuda, other) == "compile"
    assert execute_module._step_mode(s, torch.device("cpu"), config) == "eager"


@pytest.mark.parametrize("version, accepted", [("2.3.1", False), ("2.4.0+cu121", True), ("2.14.1+cu130", True)])
def test_gpu_check_names_the_oldest_torch_it_accepts(monkeypatch, version, accepted):
    """torch 2.4 is the oldest the study's code is written for (``torch._foreach_*`` with a tensor
    factor, ``torch.compiler``, ``torch.utils.flop_counter``); gpu-check's environment row says so."""
    from lrstudy import gpucheck

    monkeypatch.setattr(gpucheck.torch, "__version__", version)
    if accepted:
        assert version in gpucheck._environment(torch.device("cpu"))
    else:
        with pytest.raises(RuntimeError, match="older than 2.4"):
            gpucheck._environment(torch.device("cpu"))
