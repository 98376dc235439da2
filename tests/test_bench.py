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


def test_the_campaign_bench_measures_the_networks_and_batches_the_campaign_trains():
    from lrstudy.experiments import get_experiment

    trained = {(bench.network_label(row.model), row.batch_size)
               for name in ("clr_cifar10", "clr_adaptive") for row in get_experiment(name).rows().values()}
    resnet_range = get_experiment("super_convergence").rows()["range test 0-3: ResNet-56"]
    trained.add((bench.network_label(resnet_range.model), resnet_range.batch_size))
    benched = {(bench.network_label(spec), batch) for spec, batch in bench.CAMPAIGN_NETWORKS}
    # (the experiments' ResNet names its batch-norm momentum, which does not change a step's cost)
    assert {(label.replace("-0.001", ""), batch) for label, batch in trained} == benched


def test_a_named_precision_is_measured_and_named_in_the_row():
    row = bench.bench_model(torch.device("cpu"), bench.Timer(torch.device("cpu")), {"name": "caffe_cifar10_full"},
                            8, "eager", repeats=1, precision="bf16", warmup=1)
    assert row["what"] == "caffe_cifar10_full batch 8 eager, bf16" and row["images_per_s"] > 0


def test_a_plan_reads_the_campaign_bench_rows_of_its_own_precision(tmp_path):
    from lrstudy.costs import measured_throughput

    csv = tmp_path / "cpu-campaign.csv"
    csv.write_text("what,images_per_s,ms_per_step,mfu,ratio,device\n"
                   "\"caffe_cifar10_full batch 100 eager, fp32\",1000,100,,,CPU: Some CPU (1 threads)\n"
                   "\"caffe_cifar10_full batch 100 eager, bf16\",4000,25,,4.0,CPU: Some CPU (1 threads)\n")
    fp32_only = tmp_path / "cpu.csv"
    fp32_only.write_text("what,images_per_s,ms_per_step,mfu,ratio,device\n"
                         "caffe_cifar10_full batch 100 eager,1000,100,,,CPU: Some CPU (1 threads)\n")
    rate = measured_throughput(csv).tflops["caffe_cifar10_full"]
    assert rate == measured_throughput(fp32_only).tflops["caffe_cifar10_full"] > 0
    assert measured_throughput(csv, "bf16").tflops["caffe_cifar10_full"] == 4 * rate
    assert "in bf16" in measured_throughput(csv, "bf16").basis
