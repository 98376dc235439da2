"""Schedules against the papers' formulas, at the landmarks the papers describe."""

import math

import pytest
import torch

from lrstudy.schedule_specs import make_schedule, rescale, sample
from lrstudy.schedules import POLICIES

BASE, MAX, S = 0.001, 0.006, 2000


def caffe_triangular(iteration, base_lr, max_lr, stepsize, halve=False):
    """CLR Appendix A (Caffe), transcribed independently: integer cycle, then x."""
    cycle = iteration // (2 * stepsize)
    x = (iteration - (2 * cycle + 1) * stepsize) / stepsize
    height = max(0.0, 1 - abs(x))
    if halve:
        height = min(1.0, max(0.0, (1 - abs(x)) / 2**cycle))
    return base_lr + (max_lr - base_lr) * height


@pytest.mark.parametrize("t, expected", [(0, BASE), (S // 2, (BASE + MAX) / 2), (S, MAX),
                                         (2 * S, BASE), (3 * S, MAX), (4 * S, BASE), (5 * S, MAX)])
def test_triangular_landmarks(t, expected):
    assert make_schedule("triangular", base_lr=BASE, max_lr=MAX, step_size=S)(t) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("cycle", [0, 1, 2, 3])
def test_triangular2_halves_amplitude_each_cycle(cycle):
    sched = make_schedule("triangular2", base_lr=BASE, max_lr=MAX, step_size=S)
    peak = 2 * S * cycle + S
    assert sched(peak) == pytest.approx(BASE + (MAX - BASE) / 2**cycle, rel=1e-12)
    assert sched(2 * S * cycle) == pytest.approx(BASE, rel=1e-12)


@pytest.mark.parametrize("name, halve", [("triangular", False), ("triangular2", True)])
def test_matches_caffe_code_everywhere(name, halve):
    sched = make_schedule(name, base_lr=BASE, max_lr=MAX, step_size=S)
    for t in range(0, 20 * S, 37):
        assert sched(t) == pytest.approx(caffe_triangular(t, BASE, MAX, S, halve), rel=1e-12, abs=1e-15)


def test_exp_and_exp_range_readings():
    g = 0.99994
    assert make_schedule("exp", base_lr=BASE, gamma=g)(70_000) == pytest.approx(BASE * g**70_000, rel=1e-12)
    both = make_schedule("exp_range", base_lr=BASE, max_lr=MAX, step_size=S, gamma=g, bounds="both")
    amp = make_schedule("exp_range", base_lr=BASE, max_lr=MAX, step_size=S, gamma=g, bounds="amplitude")
    # at a cycle's peak: both bounds shrink vs only the amplitude shrinks
    assert both(S) == pytest.approx(MAX * g**S, rel=1e-12)
    assert amp(S) == pytest.approx(BASE + (MAX - BASE) * g**S, rel=1e-12)
    # at a cycle's end: the floor decays in the paper's reading and stays in the Keras/PyTorch one
    assert both(40_000) == pytest.approx(BASE * g**40_000, rel=1e-12)
    assert amp(40_000) == pytest.approx(BASE, rel=1e-12)


def test_exp_range_defaults_to_the_papers_text():
    sched = make_schedule("exp_range", base_lr=BASE, max_lr=MAX, step_size=S, gamma=0.9999)
    assert sched.spec()["bounds"] == "both"
    assert sched(4 * S) == pytest.approx(BASE * 0.9999 ** (4 * S))


def test_clr_decay_control():
    sched = make_schedule("clr_decay", base_lr=0.001, max_lr=0.007, step_size=4000)
    assert sched(0) == pytest.approx(0.007)
    assert sched(2000) == pytest.approx(0.004)
    assert sched(4000) == pytest.approx(0.001)
    assert sched(20_000) == pytest.approx(0.001)


def test_fixed_with_caffe_hand_stages():
    sched = make_schedule("piecewise", values=[1e-3, 1e-4, 1e-5], boundaries=[60_000, 65_000])
    assert [sched(t) for t in (0, 59_999, 60_000, 64_999, 65_000, 69_999)] == [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5]
    assert make_schedule("fixed", lr=0.01)(123) == 0.01


def test_table2_stages_restart_the_policy_at_each_start():
    sched = make_schedule("stages", stages=[
        {"start": 0, "name": "triangular2", "base_lr": 1e-3, "max_lr": 5e-3, "step_size": 2000},
        {"start": 16_000, "name": "triangular2", "base_lr": 1e-4, "max_lr": 5e-4, "step_size": 1000},
        {"start": 22_000, "name": "triangular2", "base_lr": 1e-5, "max_lr": 5e-5, "step_size": 500},
    ])
    assert sched(2000) == pytest.approx(5e-3)
    assert sched(6000) == pytest.approx(1e-3 + 4e-3 / 2)
    assert sched(16_000) == pytest.approx(1e-4)      # the second stage starts at its base
    assert sched(17_000) == pytest.approx(5e-4)      # and peaks a stepsize later, amplitude not yet halved
    assert sched(22_000) == pytest.approx(1e-5)
    assert sched(22_500) == pytest.approx(5e-5)
    assert make_schedule(**sched.spec()) == sched


def test_matches_torch_cycliclr():
    """Same numbers as PyTorch's CyclicLR where the two agree (triangular, triangular2,
    amplitude-only exp_range) -- with momentum cycling off, as the CLR paper kept momentum fixed."""
    for mode, ours in [("triangular", {"name": "triangular"}), ("triangular2", {"name": "triangular2"}),
                       ("exp_range", {"name": "exp_range", "gamma": 0.999, "bounds": "amplitude"})]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
        torch_sched = torch.optim.lr_scheduler.CyclicLR(opt, BASE, MAX, step_size_up=50, mode=mode,
                                                        gamma=0.999, cycle_momentum=False)
        sched = make_schedule(**ours, base_lr=BASE, max_lr=MAX, step_size=50)
        for t in range(500):
            assert sched(t) == pytest.approx(torch_sched.get_last_lr()[0], rel=1e-12), (mode, t)
            opt.step()
            torch_sched.step()


@pytest.mark.parametrize("name, params, message", [
    ("cosine", {}, "unknown schedule 'cosine'"),
    ("triangular", {"base_lr": 0.1, "max_lr": 0.2, "step_size": 0}, "step_size=0"),
    ("triangular", {"base_lr": 0.1, "max_lr": 0.2, "step_size": 2.5}, "whole number"),
    ("triangular", {"base_lr": 0.3, "max_lr": 0.2, "step_size": 10}, "max_lr=0.2"),
    ("triangular", {"base_lr": -0.1, "max_lr": 0.2, "step_size": 10}, "base_lr=-0.1"),
    ("triangular", {"base_lr": 0.1, "max_lr": 0.2}, "missing parameter 'step_size'"),
    ("triangular", {"base_lr": 0.1, "max_lr": 0.2, "step_size": 10, "gama": 1}, "gama"),
    ("exp", {"base_lr": 0.1, "gamma": 1.5}, "gamma=1.5"),
    ("exp_range", {"base_lr": 0.1, "max_lr": 0.2, "step_size": 10, "gamma": 0.9, "bounds": "lower"}, "bounds='lower'"),
    ("piecewise", {"values": [0.1, 0.01], "boundaries": [10, 5]}, "strictly increasing"),
    ("piecewise", {"values": [0.1], "boundaries": [10]}, "one more entry"),
    ("stages", {"stages": [{"start": 5, "name": "fixed", "lr": 0.1}]}, "must begin at 0"),
    ("fixed", {"lr": float("nan")}, "lr=nan"),
])
def test_bad_parameters_name_the_parameter(name, params, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        make_schedule(name, **params)


def test_every_policy_round_trips_through_its_spec():
    """Every registered policy: spec -> schedule -> spec, same values."""
    examples = {
        "fixed": {"lr": 0.1}, "piecewise": {"values": [0.1, 0.01], "boundaries": [5]},
        "triangular": {"base_lr": 0.1, "max_lr": 1, "step_size": 3},
        "triangular2": {"base_lr": 0.1, "max_lr": 1, "step_size": 3},
        "exp": {"base_lr": 0.1, "gamma": 0.9},
        "exp_range": {"base_lr": 0.1, "max_lr": 1, "step_size": 3, "gamma": 0.9},
        "clr_decay": {"base_lr": 0.1, "max_lr": 1, "step_size": 3},
        "step": {"base_lr": 0.1, "gamma": 0.5, "step_size": 4},
        "multistep": {"base_lr": 0.1, "gamma": 0.1, "milestones": [3, 7]},
        "exp_sweep": {"start_lr": 1e-5, "end_lr": 1.0, "total_steps": 10},
        "sgdr": {"eta_max": 0.1, "eta_min": 0.0, "T_0": 1, "T_mult": 2, "steps_per_epoch": 3},
        "one_cycle": {"base_lr": 0.1, "max_lr": 1, "step_size": 5, "total_steps": 15},
        "one_cycle_momentum": {"max_momentum": 0.95, "min_momentum": 0.85, "step_size": 5},
        "onecycle_torch": {"max_lr": 1.0, "total_steps": 15},
        "onecycle_torch_momentum": {"total_steps": 15, "three_phase": True},
    }
    assert set(examples) == set(POLICIES)
    for name, params in examples.items():
        sched = make_schedule(name, **params)
        again = make_schedule(**sched.spec())
        assert again == sched and [again(t) for t in range(20)] == [sched(t) for t in range(20)]


def test_rescale_keeps_the_shape_in_fractions_of_training():
    spec = {"name": "exp_range", "base_lr": 1e-3, "max_lr": 6e-3, "step_size": 2000, "gamma": 0.99994}
    small = make_schedule(**rescale(spec, 0.1))
    full = make_schedule(**spec)
    assert small.spec()["step_size"] == 200
    for t in (0, 100, 200, 1000, 4200):
        assert small(t) == pytest.approx(full(t * 10), rel=1e-9)
    staged = rescale({"name": "stages", "stages": [
        {"start": 0, "name": "triangular2", "base_lr": 1e-3, "max_lr": 5e-3, "step_size": 2000},
        {"start": 16_000, "name": "fixed", "lr": 1e-4}]}, 0.001)
    assert [s["start"] for s in staged["stages"]] == [0, 16]
    assert staged["stages"][0]["step_size"] == 2
    assert rescale({"name": "piecewise", "values": [1, 2, 3], "boundaries": [1000, 1100]}, 0.001)["boundaries"] == [1, 2]


def test_sample_includes_both_ends():
    pairs = sample(make_schedule("fixed", lr=1.0), 1000, points=7)
    assert pairs[0][0] == 0 and pairs[-1][0] == 999 and len(pairs) == 7
    assert not any(math.isnan(v) for _, v in pairs)


def test_step_and_multistep():
    assert make_schedule("step", base_lr=0.1, gamma=0.5, step_size=10)(25) == pytest.approx(0.025)
    multi = make_schedule("multistep", base_lr=0.35, gamma=0.1, milestones=[50_000, 70_000])
    assert [multi(t) for t in (49_999, 50_000, 70_000)] == pytest.approx([0.35, 0.035, 0.0035])


def test_a_new_policy_is_one_function_and_one_registry_entry(monkeypatch):
    """Declaring a policy's parameter kinds and relations is all it takes: specs, checks and
    rescaling follow from them."""
    from lrstudy.policy import RATE, STEPS, Policy, at_least

    def linear_warmup(step: float, lr: float, peak_lr: float, warmup_steps: int) -> float:
        return lr + (peak_lr - lr) * min(step / warmup_steps, 1.0)

    monkeypatch.setitem(POLICIES, "linear_warmup", Policy(
        linear_warmup, {"lr": RATE, "peak_lr": RATE, "warmup_steps": STEPS}, (at_least("peak_lr", "lr"),)))
    sched = make_schedule("linear_warmup", lr=0.0, peak_lr=1.0, warmup_steps=100)
    assert sched(50) == 0.5 and sched(500) == 1.0 and make_schedule(**sched.spec()) == sched
    assert rescale(sched.spec(), 0.1)["warmup_steps"] == 10
    with pytest.raises(ValueError, match="peak_lr=0.5 is invalid; must be >= lr"):
        make_schedule("linear_warmup", lr=1.0, peak_lr=0.5, warmup_steps=100)
    with pytest.raises(ValueError, match="warmup_steps=2.5"):
        make_schedule("linear_warmup", lr=0.0, peak_lr=1.0, warmup_steps=2.5)
    with pytest.raises(ValueError, match="warmup=3 is invalid; the parameters of 'linear_warmup'"):
        make_schedule("linear_warmup", lr=0.0, peak_lr=1.0, warmup_steps=5, warmup=3)
    with pytest.raises(TypeError, match="must name exactly its parameters"):
        Policy(linear_warmup, {"lr": RATE, "peak_lr": RATE})  # a parameter without a kind


def test_an_optional_parameter_may_be_left_unset_but_a_required_one_may_not():
    assert make_schedule("one_cycle", base_lr=0.1, max_lr=1.0, step_size=5, total_steps=20, final_lr=None)(25) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="lr=None"):
        make_schedule("fixed", lr=None)
