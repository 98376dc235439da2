"""``python -m lrstudy gpu-check`` on a machine without CUDA: every check that can run here passes,
the CUDA ones are skipped (not failed), and the table goes to a file a GPU session can bring home."""

import json

from lrstudy import gpucheck
from lrstudy.__main__ import main


def test_gpu_check_runs_on_a_cpu_and_skips_what_needs_cuda(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert main(["gpu-check", "--device", "cpu", "--budget", "900", "--out", str(out)]) == 0
    rows = {row["check"]: row for row in json.loads(out.read_text())["rows"]}
    printed = capsys.readouterr().out
    networks = gpucheck.study_networks()
    assert len(networks) >= 8  # every network of the fast profile, CIFAR-100 and MNIST ones included
    for check in ["environment", "data pipeline", "optimizers", "host syncs", "determinism", "resume",
                  *(f"model {gpucheck.network_label(spec, classes)}" for spec, _, classes in networks)]:
        assert rows[check]["status"] == "pass", (check, rows[check]["message"])
    for check in ["fused bf16", "step modes", *(f"compiled {gpucheck.network_label(spec, classes)}" for spec, _, classes in networks)]:
        assert rows[check]["status"] == "skipped" and rows[check]["message"] == "needs CUDA"
    assert "gpu-check:" in printed and " 0 fail" in printed


def test_a_failing_check_is_a_row_and_the_exit_code(tmp_path, monkeypatch):
    def broken(device):
        raise RuntimeError("no such kernel")

    for check in ("_data_pipeline", "_host_syncs", "_determinism", "_resume"):
        monkeypatch.setattr(gpucheck, check, lambda *args: "fine")
    monkeypatch.setattr(gpucheck, "_optimizers", broken)
    monkeypatch.setattr(gpucheck, "study_networks", lambda: [])
    out = tmp_path / "check.md"
    assert gpucheck.main(["--device", "cpu", "--out", str(out)]) == 1
    table = out.read_text()
    assert "| optimizers | fail |" in table and "RuntimeError: no such kernel" in table
    assert "| resume | pass |" in table  # the checks after a failure still run
