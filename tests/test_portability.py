"""A run's records and checkpoints travel: a checkpoint written on a GPU loads on a CPU machine
(``map_location``), and what a run sets in torch (deterministic kernels, TF32) is set for that run
only and said in its record."""

import io
import zipfile

import torch

from lrstudy import train as train_module
from lrstudy.checkpoints import FORMAT, read_checkpoint
from lrstudy.data import synthetic
from lrstudy.runs import RunConfig
from lrstudy.train import train


def _as_if_saved_on_cuda(blob: dict) -> bytes:
    """``torch.save(blob)`` with every storage tagged as a CUDA device's, as a GPU machine writes it."""
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    source, out = zipfile.ZipFile(io.BytesIO(buffer.getvalue())), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            target.writestr(info.filename, data)
    return out.getvalue()


def test_a_checkpoint_written_on_a_gpu_loads_on_a_cpu():
    import hashlib

    payload = _as_if_saved_on_cuda({"format": FORMAT, "run_id": "abc", "state": {"w": torch.arange(3.0)}})
    if not torch.cuda.is_available():  # (the bytes really do name a CUDA device)
        try:
            torch.load(io.BytesIO(payload), weights_only=True)
            raise AssertionError("a CUDA checkpoint loaded without map_location on a machine without CUDA")
        except RuntimeError:
            pass
    state, problem = read_checkpoint(hashlib.sha256(payload).digest() + payload, "abc")
    assert problem is None and torch.equal(state["w"], torch.arange(3.0)) and state["w"].device.type == "cpu"


TINY = dict(profile="smoke", data="synthetic", model={"name": "lenet"},
            optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.0},
            schedule={"name": "fixed", "lr": 0.01}, iterations=2, batch_size=10, eval_every=2, seed=1,
            normalize="scale")


def test_a_run_sets_determinism_and_tf32_for_itself_only(monkeypatch):
    monkeypatch.setenv("LRSTUDY_DETERMINISTIC", "1")
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.allow_tf32)
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.allow_tf32 = True  # (torch's default, which the study does not keep)
    seen = {}
    run_steps = train_module.run_steps

    def watching(*args, **kwargs):
        seen.update(deterministic=torch.are_deterministic_algorithms_enabled(),
                    tf32=(torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return run_steps(*args, **kwargs)

    monkeypatch.setattr(train_module, "run_steps", watching)
    data = synthetic(train=40, test=10, channels=1, size=28, name="synthetic-mnist")
    try:
        assert train(RunConfig(**TINY), data, progress=False).status == "finished"
        assert seen == {"deterministic": True, "tf32": (False, False)}
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.allow_tf32  # as before
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.allow_tf32 = before[2]
