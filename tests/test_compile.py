"""The compiled trainer: ``torch.compile`` is paid once per network shape, not once per run.

The rate and momentum live in the optimizer, outside the compiled graph, so runs that differ in
seed or schedule reuse the first run's graphs. Checked with Dynamo's own counters, not with a clock.
"""

import math
import shutil

import pytest
import torch

from lrstudy.data import load_data
from lrstudy.runs import RunConfig
from lrstudy.train import train

pytestmark = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                                reason="torch.compile on the CPU needs a C compiler")

RUN = dict(profile="smoke", data="synthetic", model={"name": "resnet", "depth": 8},
           optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 1e-4},
           schedule={"name": "triangular", "base_lr": 0.001, "max_lr": 0.006, "step_size": 5},
           iterations=20, batch_size=20, eval_every=10, seed=1)


def test_a_second_run_with_another_seed_and_schedule_compiles_nothing_new():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    data = load_data("synthetic")
    first = train(RunConfig(**RUN), data, progress=False, compile_model=True)
    graphs = counters["stats"]["unique_graphs"]
    assert first.status == "finished" and graphs >= 1
    other = RunConfig(**{**RUN, "seed": 2, "schedule": {"name": "exp", "base_lr": 0.01, "gamma": 0.9}})
    second = train(other, data, progress=False, compile_model=True)
    assert second.status == "finished"
    assert counters["stats"]["unique_graphs"] == graphs  # no recompile for a new schedule or new weights
    eager = train(RunConfig(**RUN), data, progress=False)
    assert [r["step"] for r in first.rows] == [r["step"] for r in eager.rows]
    assert all(math.isfinite(r["train_loss"]) for r in first.rows[1:])


def test_past_the_recompile_limit_a_compiled_step_raises_instead_of_running_eagerly_unsaid():
    """Dynamo's default (8 versions per code object, then eager without a word) would let a fused
    group's record say "fused-compiled" for a step that ran eagerly; inside recompile_scope it raises
    an error that is_compile_failure() recognises, so the run is trained again eagerly and says so."""
    import pytest
    import torch

    from lrstudy import compiling

    scale = torch.compile(lambda x, k: x * k, backend="eager", dynamic=False)  # (one version per k)
    x = torch.ones(2)
    with compiling.recompile_scope(limit=2):
        scale(x, 1), scale(x, 2)
        with pytest.raises(Exception) as raised:
            scale(x, 3)
    assert compiling.is_compile_failure(raised.value)
    import torch._dynamo.config as dynamo

    assert not getattr(dynamo, "fail_on_recompile_limit_hit", False)  # torch's own setting again, outside
