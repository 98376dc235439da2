"""``make bench``: what it measures is the study's own step, in a bounded number of compiles.

On a GPU every compile costs tens of seconds, so the benchmark's length is set by its list of rows:
one batch size per network (a second one would recompile), every step mode only for the networks
whose steps are short enough for launch overhead to matter. The list is checked here; one row is
measured on the CPU to show the measuring runs.
"""

import torch

from lrstudy import bench

EVERY_MODE = {"eager", "compile", "reduce-overhead"}


def _modes_by_network(rows):
    modes, batches = {}, {}
    for spec, batch, mode in rows:
        key = bench.network_label(spec)
        modes.setdefault(key, set()).add(mode)
        batches.setdefault(key, set()).add(batch)
    return modes, batches


def test_on_cuda_the_caffe_net_and_resnet56_get_a_row_per_step_mode_and_one_batch_size():
    modes, batches = _modes_by_network(bench.model_rows(cuda=True, quick=False))
    assert modes["caffe_cifar10_full"] == modes["resnet-56"] == EVERY_MODE
    assert all(len(b) == 1 for b in batches.values())
    compiles = sum(mode != "eager" for _, _, mode in bench.model_rows(cuda=True, quick=False))
    assert compiles <= 6  # what bounds make bench's minutes on a GPU
    quick, _ = _modes_by_network(bench.model_rows(cuda=True, quick=True))
    assert quick["caffe_cifar10_full"] == EVERY_MODE and sum(len(m) for m in quick.values()) <= 4


def test_on_a_cpu_every_row_is_eager():
    assert {mode for _, _, mode in bench.model_rows(cuda=False, quick=True)} == {"eager"}


def test_a_training_step_row_is_measured():
    row = bench.bench_model(torch.device("cpu"), bench.Timer(torch.device("cpu")), {"name": "caffe_cifar10_full"},
                            8, "eager", repeats=1)
    assert row["what"] == "caffe_cifar10_full batch 8 eager" and row["images_per_s"] > 0 and row["mfu"] is None
