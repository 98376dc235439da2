"""CLR (Smith 2017) Table 1, CIFAR-10 rows: five learning-rate policies on Caffe's CIFAR-10 net.

Settings, from the paper (arXiv 1506.01186v6) and the Caffe files it used:

* network, data handling and solver: Caffe's "CIFAR-10 full" example (batch 100, momentum 0.9,
  weight decay 0.004, per-pixel mean subtraction, no augmentation) -- see ``lrstudy.models``;
* fixed: 0.001, stepped down by hand to 0.0001 at 60k and 0.00001 at 65k iterations (70k in all);
* triangular2: the three stages of Table 2 -- 0.001-0.005 with stepsize 2000 from 0, then
  0.0001-0.0005 / 1000 from 16k, then 0.00001-0.00005 / 500 from 22k to 25k;
* decay: from 0.007 down to 0.001 over 4000 iterations, then fixed (§4.1.1);
* exp: 0.001 * 0.99994^t for 70k iterations;
* exp_range: 0.001-0.006, stepsize 2000, gamma 0.99994, both bounds decaying (the paper's text),
  stopped at 42k iterations as in the table.

Where the paper is silent we chose, and say so in ``DEVIATIONS``.
"""

from __future__ import annotations

from ..paper import paper_table
from ..config import load_profile
from ..runs import RunConfig
from ..schedules import rescale, scale_steps
from ..stats import Claim
from ..study import Settings, StudyResults, execute, make_settings

NOTEBOOK = "clr_cifar10"
MODEL = {"name": "caffe_cifar10_full"}
OPTIMIZER = {"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004}
BATCH_SIZE = 100

# label -> (the paper's iteration budget, the schedule at that budget)
POLICIES = {
    "fixed": (70_000, {"name": "piecewise", "values": [1e-3, 1e-4, 1e-5], "boundaries": [60_000, 65_000]}),
    "triangular2": (25_000, {"name": "stages", "stages": [
        {"start": 0, "name": "triangular2", "base_lr": 1e-3, "max_lr": 5e-3, "step_size": 2000},
        {"start": 16_000, "name": "triangular2", "base_lr": 1e-4, "max_lr": 5e-4, "step_size": 1000},
        {"start": 22_000, "name": "triangular2", "base_lr": 1e-5, "max_lr": 5e-5, "step_size": 500},
    ]}),
    "decay": (25_000, {"name": "clr_decay", "base_lr": 1e-3, "max_lr": 7e-3, "step_size": 4000}),
    "exp": (70_000, {"name": "exp", "base_lr": 1e-3, "gamma": 0.99994}),
    "exp_range": (42_000, {"name": "exp_range", "base_lr": 1e-3, "max_lr": 6e-3, "step_size": 2000,
                           "gamma": 0.99994, "bounds": "both"}),
}

# Written before any run; the notebook shows them before it trains.
CLAIMS = [
    Claim("T1.tri2-vs-fixed",
          "triangular2 reaches the fixed policy's accuracy in 25k instead of 70k iterations",
          a="triangular2", b="fixed", kind="not_worse", margin=1.0),
    Claim("T1.exp_range-vs-exp",
          "exp_range in 42k iterations beats exp in 70k",
          a="exp_range", b="exp", kind="better"),
    Claim("T1.exp_range-vs-fixed",
          "exp_range in 42k iterations is at least as accurate as fixed in 70k",
          a="exp_range", b="fixed", kind="not_worse", margin=1.0),
    Claim("T1.tri2-vs-decay",
          "the gain comes from cycling, not from decreasing the rate: triangular2 beats decay at 25k",
          a="triangular2", b="decay", kind="better"),
]

DEVIATIONS = [
    "The training order is reshuffled every epoch (seeded); Caffe read its LMDB in one fixed order.",
    "triangular2 uses Table 2's max_lr 0.005; the text around it says 0.006.",
    "The paper does not give base_lr for exp and exp_range or stepsize for exp_range: we use "
    "0.001 (the fixed baseline's rate), 0.001-0.006 (its range test) and 2000 (its recommended stepsize).",
    "exp_range decays both bounds, as the paper's text says; the Keras code it cites decays only the "
    "amplitude (both readings are compared in a later notebook).",
    "Number of runs per row is not stated in the paper (one run assumed); we report several seeds.",
]

KNOBS = {
    "budget_scale": ((int, float), lambda v: 0 < v <= 1,
                     "fraction of the paper's iterations, in (0, 1]; schedules are stretched to match"),
    "eval_every": (int, lambda v: v >= 1, "iterations between test-set evaluations, >= 1"),
}


def settings(profile: str = "smoke", data: str | None = None, seeds: int | None = None,
             device: str | None = None) -> Settings:
    """The notebook's settings: the profile's values, then any explicit overrides."""
    from ..config import check_section

    prof = load_profile(profile)
    knobs = check_section(f"profile {profile!r}, notebook {NOTEBOOK!r}", prof.section(NOTEBOOK), KNOBS)
    return make_settings(NOTEBOOK, prof, knobs, data=data, seeds=seeds, device=device)


def schedules(s: Settings) -> dict[str, tuple[int, dict]]:
    """Each policy's iteration budget and schedule under these settings (rescaled if the profile
    cuts the budget)."""
    scale = s.knobs["budget_scale"]
    return {
        label: (scale_steps(iterations, scale), rescale(spec, scale) if scale != 1 else spec)
        for label, (iterations, spec) in POLICIES.items()
    }


def run_configs(s: Settings) -> list[tuple[str, RunConfig]]:
    return [
        (label, RunConfig(
            profile=s.profile.name, data=s.data_id, model=MODEL, optimizer=OPTIMIZER, schedule=spec,
            iterations=iterations, batch_size=BATCH_SIZE, eval_every=s.knobs["eval_every"], seed=seed,
        ))
        for seed in s.seeds
        for label, (iterations, spec) in schedules(s).items()
    ]


def paper() -> "pandas.DataFrame":  # noqa: F821
    return paper_table("CLR", "Table 1", "CIFAR-10")


def run(s: Settings, progress: bool = True) -> StudyResults:
    """Train (or read back) every run of the table."""
    return execute(s, run_configs(s), progress=progress)
