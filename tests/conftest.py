"""Test-wide setup: keep every run store and data cache of the tests (notebooks included) out of
the project's own results/ and data/ folders."""

import os
import tempfile

import pytest

# Set at import, before nbval starts any kernel: kernels inherit this process's environment.
_SCRATCH = tempfile.mkdtemp(prefix="lrstudy-tests-")
os.environ["LRSTUDY_RESULTS"] = os.path.join(_SCRATCH, "results")
os.environ["LRSTUDY_DATA_ROOT"] = os.path.join(_SCRATCH, "data")
os.environ["LRSTUDY_DETERMINISTIC"] = "1"


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Fresh, empty results and data folders for one test."""
    monkeypatch.setenv("LRSTUDY_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LRSTUDY_DATA_ROOT", str(tmp_path / "data"))
    return tmp_path
