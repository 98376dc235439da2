"""Exit codes and messages that tell the truth: the data's identity is its content in every command;
the committed results are found without their files; a wrong or partial answer never exits 0; bad
input is one line, never a traceback, and within bounds."""

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from lrstudy import data as data_module, folders
from lrstudy.__main__ import main
from lrstudy.archive import export_runs, import_archive
from lrstudy.config import PROFILES
from lrstudy.data import source_fingerprint
from lrstudy.queue_selection import select_runs
from lrstudy.runs import RunConfig, RunStore
from lrstudy.schedule_specs import make_schedule

ROOT = Path(__file__).resolve().parents[1]
ROWS = [{"step": 10, "epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.1, "test_acc": 48.0}]


def image_tree(root: Path, seed: int) -> Path:
    """A tiny folder-per-class tree of 32x32 PNGs; another ``seed`` gives other images."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def stored_on(tree: Path, experiment="clr_range_test"):
    """The smoke runs of ``experiment`` on ``tree``, stored as finished with its fingerprint."""
    runs = select_runs([experiment], "smoke", sources={"data": str(tree)})
    store = RunStore("smoke")
    for run in runs:
        store.save(run.config, "finished", ROWS, {"label": run.label,
                                                   "data": {"data_fingerprint": source_fingerprint(str(tree))}})
    return runs


def test_run_and_status_refuse_a_same_named_tree_of_other_images(scratch, capsys):
    mini = image_tree(scratch / "mini" / "cifar10-jpeg", seed=1)
    other = image_tree(scratch / "miniB" / "cifar10-jpeg", seed=2)
    runs = stored_on(mini)
    assert main(["run", "clr_range_test", "--profile", "smoke", "--data", str(other), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "other images" in err and "nothing was trained" in err
    assert main(["status", "--profile", "smoke", "--data", str(other), "clr_range_test"]) == 1
    assert f"{len(runs)} other data" in capsys.readouterr().out
    assert main(["status", "--profile", "smoke", "--data", str(mini), "clr_range_test"]) == 0
    # named by its label alone, the data set is the one that label stands for: not these images
    assert main(["status", "--profile", "smoke", "--data", "cifar10-jpeg", "clr_range_test"]) == 1


def test_import_refuses_runs_of_other_images_under_a_label_the_store_holds(scratch, monkeypatch, capsys):
    ours = image_tree(scratch / "a" / "minitree", seed=1)
    theirs = image_tree(scratch / "b" / "minitree", seed=2)
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "elsewhere"))
    runs = stored_on(theirs)
    export_runs(scratch / "theirs.tar.gz", runs)
    monkeypatch.setenv("LRSTUDY_RESULTS", str(scratch / "home"))
    stored_on(ours, "sgdr")  # this store's runs of 'folder:minitree' are of our images
    with pytest.raises(ValueError, match="other images under the same name"):
        import_archive(scratch / "theirs.tar.gz", profiles=PROFILES)


def test_a_tree_is_hashed_once_not_once_per_check(scratch, monkeypatch):
    tree = image_tree(scratch / "minitree", seed=1)
    calls = []
    original = folders.content_key
    monkeypatch.setattr(data_module, "content_key", lambda *a: calls.append(1) or original(*a))
    data_module.load_data(str(tree))  # decoded once: from then on its key is kept
    first = data_module._cache_key(str(tree), download=False)[0]
    calls.clear()
    for _ in range(3):
        assert data_module._cache_key(str(tree), download=False)[0] == first
    assert calls == []
    (tree / "test" / "dog" / "0.png").write_bytes((tree / "test" / "dog" / "1.png").read_bytes())  # edited
    assert data_module._cache_key(str(tree), download=False)[0] != first and len(calls) == 1


@pytest.fixture
def committed(tmp_path, monkeypatch):
    """A copy of the committed run stores, as the store to read."""
    for profile in ("cpu", "full"):
        shutil.copytree(ROOT / "results" / profile / "runs", tmp_path / "results" / profile / "runs")
    monkeypatch.setenv("LRSTUDY_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def test_committed_runs_are_found_without_data(committed, capsys):
    assert main(["status", "--profile", "cpu", "clr_range_test", "super_convergence"]) == 0
    out = capsys.readouterr().out
    # (each run once: 21 settings, two of them the same runs as others)
    assert "clr_range_test: 2 finished" in out and "super_convergence: 19 finished" in out
    assert main(["scorecard", "--profile", "full"]) == 0
    table = capsys.readouterr().out
    assert "| confirmed |" in table


def campaign_commands() -> list[list[str]]:
    """The ``python -m lrstudy run`` lines of the campaign block in results/full/README.md, each as
    the arguments after ``run``."""
    text = (ROOT / "results" / "full" / "README.md").read_text()
    block = text.split("The campaign is these run-queue commands", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line)[4:] for line in block.splitlines() if line.startswith("python -m lrstudy run ")]


def test_the_campaign_commands_results_full_states_select_runs(committed, capsys):
    """What results/full/README.md says the campaign runs is a valid selection of the profile's runs
    (every claim id known, every label a row), in either precision the check may decide."""
    commands = campaign_commands()
    assert len(commands) >= 6 and any("--claims" in argv for argv in commands)
    for argv in commands:
        for precision in ("fp32", "bf16") if "$PRECISION" in argv else (None,):
            args = [precision if arg == "$PRECISION" else arg for arg in argv]
            assert main(["plan", *args, "--profile", "full", "--device", "cpu"]) == 0, args
            assert re.search(r"; [1-9][0-9]* runs", capsys.readouterr().out), args


def test_plan_without_data_says_the_committed_runs_need_their_data(committed, capsys):
    assert main(["plan", "clr_range_test", "--profile", "cpu"]) == 0
    assert "2 runs of this selection are stored as trained on cifar10-jpeg" in capsys.readouterr().out
    assert main(["plan", "clr_range_test", "--profile", "cpu", "--data", "cifar10-jpeg"]) == 0
    out = capsys.readouterr().out
    assert "stored as trained" not in out and out.count("finished") >= 2


def test_scorecard_exits_non_zero_when_a_committed_record_is_altered(committed, capsys):
    csv = sorted((committed / "full" / "runs").glob("*.csv"))[0]
    csv.write_text(_one_accuracy_changed(csv.read_text()))
    assert main(["scorecard", "--profile", "full"]) == 1
    err = capsys.readouterr().err
    assert f"{csv.stem}" in err and "fail verification" in err


def _one_accuracy_changed(text: str) -> str:
    lines = text.splitlines()
    header, last = lines[0].split(","), lines[-1].split(",")
    column = header.index("test_acc")
    last[column] = str(float(last[column]) + 1)
    return "\n".join([*lines[:-1], ",".join(last)]) + "\n"


def test_scorecard_on_data_nothing_was_trained_on_exits_2_with_the_hint(committed, capsys):
    assert main(["scorecard", "--profile", "full", "--data", "cifar10"]) == 2
    assert "give --data cifar10-jpeg" in capsys.readouterr().err


def test_readme_block_is_never_replaced_by_one_from_fewer_runs(committed, tmp_path, capsys):
    from lrstudy import scorecard

    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    before = readme.read_text()
    card = scorecard.collect("cpu", data="cifar10")  # other data: every claim not run
    with pytest.raises(ValueError, match="not replaced"):
        scorecard.update_readme(readme, card, "cpu")
    assert readme.read_text() == before
    scorecard.update_readme(readme, scorecard.collect("cpu", data="cifar10-jpeg"), "cpu")  # its committed runs
    assert "<!-- built from 66 finished runs -->" in readme.read_text()
    with pytest.raises(ValueError, match="built from 66 finished runs, this card from 0"):
        scorecard.update_readme(readme, card, "cpu")


@pytest.mark.parametrize("minutes", ["0", "-1", "nan"])
def test_gpu_window_refuses_minutes_that_are_not_above_zero(minutes, tmp_path, capsys):
    assert main(["gpu-window", "--minutes", minutes, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "--minutes" in error and not (tmp_path / "out").exists()


def test_gpu_window_without_a_usable_gpu_exits_non_zero_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gpu-window", "--minutes", "9", "--out", str(tmp_path / "out"), "--profile", "fast"]) == 1
    # one line, having run no training (its gpu-check rows may be there: issue 29 keeps them)
    assert "no usable CUDA GPU" in capsys.readouterr().err and not (tmp_path / "out" / "records.jsonl").exists()


def test_make_gpu_window_with_a_python_without_torch_is_one_line(tmp_path):
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    result = subprocess.run(["make", "--no-print-directory", "gpu-window", "MINUTES=1", f"OUT={tmp_path / 'out'}",
                             f"GPU_PYTHON={fake}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "cannot import torch" in result.stdout
    assert "ModuleNotFoundError" not in result.stdout + result.stderr


def test_seeds_steps_iterations_and_step_sizes_are_bounded(scratch, capsys):
    assert main(["plan", "all", "--profile", "cpu", "--seeds", "100000000"]) == 2
    assert "seeds=100000000 must be a whole number in [1, 1000]" in capsys.readouterr().err
    assert main(["plan", "all", "--profile", "cpu", "--seed-range", "1-100000000"]) == 2
    assert "seeds go up to 1000" in capsys.readouterr().err
    with pytest.raises(ValueError, match="step_size=1e\\+300 is invalid; must be a whole number of steps in"):
        make_schedule("triangular", base_lr=0.001, max_lr=0.006, step_size=1e300)
    config = select_runs(["clr_range_test"], "smoke")[0].config.to_dict()
    with pytest.raises(ValueError, match="iterations=.* must be in \\[1, 1e\\+09\\]"):
        RunConfig.from_dict({**config, "iterations": 1e300, "schedule": {"name": "fixed", "lr": 0.1}})


def test_ray_missing_is_one_line_with_the_install_hint(scratch, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert main(["run", "clr_range_test", "--profile", "smoke", "--executor", "ray", "--no-progress"]) == 2
    assert "pip install '.[cluster]'" in capsys.readouterr().err


def test_seal_on_a_store_with_junk_json_is_one_line(scratch, capsys):
    folder = scratch / "results" / "smoke" / "runs"
    folder.mkdir(parents=True)
    (folder / "junk.json").write_text(json.dumps({"not": "a record"}))
    assert main(["seal", "--profile", "smoke"]) == 2
    assert "junk.json: not a run record (KeyError" in capsys.readouterr().err
