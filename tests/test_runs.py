"""The run store: stable ids, atomic records, reuse of finished runs, redo of everything else,
and divergence recorded as a result."""

import json
import os

import pytest

from lrstudy.data import load_data
from lrstudy.runs import RunConfig, RunStore
from lrstudy.train import train

BASE = dict(
    profile="smoke", data="synthetic", model={"name": "caffe_cifar10_full"},
    optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004},
    schedule={"name": "fixed", "lr": 0.001}, iterations=30, batch_size=50, eval_every=10, seed=1,
)


def config(**changes) -> RunConfig:
    return RunConfig(**{**BASE, **changes})


def row(step, acc):
    return {"step": step, "epoch": step / 40, "lr": 0.001, "train_loss": 2.0, "train_acc": acc,
            "test_loss": 2.0, "test_acc": acc}


def fake_run(config):
    return "finished", [row(0, 10.0), row(config.iterations, 50.0)], {"timings": {"wall_s": 1.0}}


def test_id_is_stable_and_canonical():
    # A change of this literal means every stored result is orphaned: bump FORMAT_VERSION on purpose.
    assert config().id == "1b640957c6a8ee1c"
    assert config(schedule={"name": "fixed", "lr": 1e-3}).id == config().id
    assert config(iterations=30.0).id == config().id
    assert config(seed=2).id != config().id
    assert config(profile="cpu").id != config().id


def test_momentum_schedule_is_part_of_the_config_only_when_given():
    assert "momentum" not in config().to_dict()
    cyclical = config(momentum={"name": "one_cycle_momentum", "max_momentum": 0.95, "min_momentum": 0.85, "step_size": 10})
    assert cyclical.id != config().id and cyclical.to_dict()["momentum"]["min_momentum"] == 0.85
    result = train(cyclical, load_data("synthetic"), progress=False)
    # each row holds the momentum of the update just before it (steps 0, 9, 19, 29)
    assert [round(r["momentum"], 6) for r in result.rows] == [0.95, 0.86, 0.94, 0.95]


def test_precision_is_part_of_the_identity_and_fp32_hashes_as_before():
    plain = config()
    assert config(precision="fp32").id == plain.id  # every fp32 run stored before keeps its id
    assert "precision" not in plain.to_dict()
    bf16 = config(precision="bf16")
    assert bf16.id != plain.id and bf16.to_dict()["precision"] == "bf16" and bf16.precision_name == "bf16"
    with pytest.raises(ValueError, match="precision"):
        config(precision="fp16")


def test_finished_run_is_reused(tmp_path):
    store = RunStore("smoke", tmp_path)
    first = store.get_or_run(config(), fake_run)
    again = store.get_or_run(config(), lambda c: pytest.fail("trained again"))
    assert again.meta["id"] == first.meta["id"] and again.final["test_acc"] == 50.0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{config().id}.csv", f"{config().id}.json"]


@pytest.mark.parametrize("damage", ["no json", "failed", "csv altered", "csv missing", "json garbage", "other config"])
def test_incomplete_or_damaged_records_are_redone(tmp_path, damage):
    store = RunStore("smoke", tmp_path)
    store.get_or_run(config(), fake_run)
    csv_path, json_path = store.paths(config().id)
    meta = json.loads(json_path.read_text())
    if damage == "no json":
        json_path.unlink()
    elif damage == "failed":
        json_path.write_text(json.dumps({**meta, "status": "failed"}))
    elif damage == "csv altered":
        csv_path.write_text(csv_path.read_text() + "60,99\n")
    elif damage == "csv missing":
        csv_path.unlink()
    elif damage == "json garbage":
        json_path.write_text(json_path.read_text()[:20])
    elif damage == "other config":
        json_path.write_text(json.dumps({**meta, "config": {**meta["config"], "seed": 7}}))
    calls = []
    store.get_or_run(config(), lambda c: calls.append(c) or fake_run(c))
    assert len(calls) == 1
    assert store.load(config()) is not None


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    store = RunStore("smoke", tmp_path)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.save(config(), "finished", [row(0, 10.0)], {})
    assert list(tmp_path.iterdir()) == []


def test_a_failing_run_is_recorded_and_tried_again(tmp_path):
    store = RunStore("smoke", tmp_path)

    def boom(c):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        store.get_or_run(config(), boom)
    meta = json.loads(store.paths(config().id)[1].read_text())
    assert meta["status"] == "failed" and "out of memory" in meta["error"]
    assert store.get_or_run(config(), fake_run).status == "finished"


def test_diverging_run_is_recorded_as_diverged(tmp_path):
    store = RunStore("smoke", tmp_path)
    data = load_data("synthetic")
    diverging = config(schedule={"name": "fixed", "lr": 100.0}, iterations=60)

    def run(c):
        result = train(c, data, progress=False)
        return result.status, result.rows, {"diverged_at": result.diverged_at}

    record = store.get_or_run(diverging, run)
    assert record.status == "diverged" and record.meta["diverged_at"] <= 60
    assert store.get_or_run(diverging, lambda c: pytest.fail("a diverged run is a result")).status == "diverged"
    healthy = store.get_or_run(config(), run)
    assert healthy.status == "finished" and healthy.final["step"] == 30


def test_training_rows_and_determinism():
    data = load_data("synthetic")
    a = train(config(), data, progress=False)
    b = train(config(), data, progress=False)
    assert [r["step"] for r in a.rows] == [0, 10, 20, 30]
    assert a.rows[-1]["test_acc"] == b.rows[-1]["test_acc"]
    assert a.rows[-1]["train_loss"] == b.rows[-1]["train_loss"]
    assert a.rows[1]["lr"] == 0.001 and a.status == "finished"


@pytest.mark.parametrize("field, value, message", [
    ("iterations", 0, "iterations=0"), ("batch_size", 2.5, "batch_size=2.5"), ("seed", -1, "seed=-1"),
    ("schedule", {"name": "cosine"}, "unknown schedule 'cosine'"),
])
def test_bad_config_is_refused_before_anything_is_written(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        RunStore("smoke", tmp_path).get_or_run(config(**{field: value}), fake_run)
    assert list(tmp_path.iterdir()) == []
