"""The rest of the schedule library: windows, asymmetric cycles, SGDR, 1cycle, composition."""

import math

import pytest

from lrstudy.schedule_specs import make_schedule, then
from lrstudy.schedules import sgdr_cycle_ends, sgdr_stop_budget


@pytest.mark.parametrize("window", ["triangle", "welch", "hann"])
def test_windows_share_their_landmarks(window):
    sched = make_schedule("triangular", base_lr=1.0, max_lr=3.0, step_size=100, window=window)
    assert sched(0) == 1.0 and sched(100) == pytest.approx(3.0) and sched(200) == pytest.approx(1.0)
    quarter = {"triangle": 1.5, "welch": 1 + 2 * (1 - 0.75**2), "hann": 1 + 2 * (1 - math.cos(math.pi / 4)) / 2}
    assert sched(25) == pytest.approx(quarter[window])


def test_asymmetric_cycle():
    sched = make_schedule("triangular", base_lr=0.0, max_lr=1.0, step_size=30, step_size_down=70)
    assert sched(30) == 1.0 and sched(65) == pytest.approx(0.5) and sched(100) == 0.0 and sched(130) == 1.0


def test_window_and_asymmetry_stay_out_of_specs_at_their_defaults():
    """Runs stored before these parameters existed keep their ids."""
    spec = make_schedule("triangular2", base_lr=0.1, max_lr=0.2, step_size=5).spec()
    assert "window" not in spec and "step_size_down" not in spec
    assert make_schedule("triangular2", base_lr=0.1, max_lr=0.2, step_size=5, window="hann").spec()["window"] == "hann"


@pytest.mark.parametrize("T_0, T_mult, ends", [(1, 2, [1, 3, 7, 15, 31, 63, 127]), (10, 2, [10, 30, 70, 150]),
                                              (50, 1, [50, 100, 150, 200]), (2, 1.5, [2, 5, 9.5, 16.25])])
def test_sgdr_restart_epochs(T_0, T_mult, ends):
    budget = 200 if T_mult != 1.5 else 20
    assert sgdr_cycle_ends(T_0, T_mult, budget) == pytest.approx(ends)
    assert sgdr_stop_budget(T_0, T_mult, budget) == pytest.approx(ends[-1])


def test_sgdr_hits_eta_min_at_each_cycle_end_and_restarts_at_eta_max():
    spe = 391  # CIFAR with batch 128
    sched = make_schedule("sgdr", eta_max=0.05, eta_min=0.001, T_0=1, T_mult=2, steps_per_epoch=spe)
    for end in (1, 3, 7, 15):
        assert sched(end * spe - 1) == 0.001  # the last update of the cycle: T_cur = T_i
        assert sched(end * spe) == pytest.approx(0.05, rel=1e-4)  # first update after the restart
    assert sched(1.5 * spe - 1) == pytest.approx(0.001 + 0.049 * (1 + math.cos(math.pi * 0.25)) / 2)


def test_sgdr_fractional_steps_per_epoch_and_restart_decay():
    sched = make_schedule("sgdr", eta_max=1.0, eta_min=0.1, T_0=2, T_mult=1.5, steps_per_epoch=781.25,
                          restart_decay=0.5)
    assert sched(0) == pytest.approx(1.0, rel=1e-5)
    first_of_second = math.ceil(2 * 781.25)
    assert sched(first_of_second) == pytest.approx(0.5, rel=1e-3)  # both bounds halved after a restart
    assert min(sched(t) for t in range(first_of_second, first_of_second + 3 * 782)) == pytest.approx(0.05)


def test_one_cycle_paper_form():
    sched = make_schedule("one_cycle", base_lr=0.1, max_lr=3.0, step_size=5000, total_steps=12000)
    assert sched(0) == 0.1 and sched(5000) == 3.0 and sched(10000) == pytest.approx(0.1)
    assert sched(12000) == pytest.approx(1e-4) and sched(50_000) == pytest.approx(1e-4)
    assert sched(11000) == pytest.approx((0.1 + 1e-4) / 2)
    triangle = make_schedule("one_cycle", base_lr=0.1, max_lr=3.0, step_size=5000, total_steps=10000)
    assert triangle(9900) == pytest.approx(0.1 + 2.9 * 100 / 5000)  # Fig. 1a's single triangle
    logs = make_schedule("one_cycle", base_lr=0.05, max_lr=1.0, step_size=95, total_steps=200, tail="constant")
    assert logs(195) == pytest.approx(5e-5)
    mom = make_schedule("one_cycle_momentum", max_momentum=0.95, min_momentum=0.85, step_size=5000)
    assert [mom(0), mom(5000), mom(10000), mom(11000)] == pytest.approx([0.95, 0.85, 0.95, 0.95])


def test_composition():
    warm = make_schedule("triangular", base_lr=0.1, max_lr=1.0, step_size=10)
    tail = make_schedule("fixed", lr=0.01)
    sched = warm.then(tail, at=20)
    assert sched(10) == 1.0 and sched(19) == pytest.approx(0.19) and sched(20) == 0.01
    longer = then(sched, {"name": "exp", "base_lr": 0.01, "gamma": 0.5}, at=30)
    assert longer(31) == 0.005 and make_schedule(**longer.spec()) == longer
    with pytest.raises(ValueError, match="at=5"):
        then(sched, tail, at=5)


@pytest.mark.parametrize("name, params, message", [
    ("sgdr", dict(eta_max=0.1, eta_min=0.0, T_0=1, steps_per_epoch=10, T_mult=0.5), "T_mult=0.5"),
    ("sgdr", dict(eta_max=0.1, eta_min=0.2, T_0=1, steps_per_epoch=10), "eta_max=0.1"),
    ("sgdr", dict(eta_max=0.1, eta_min=0.0, T_0=0, steps_per_epoch=10), "T_0=0"),
    ("onecycle_torch", dict(max_lr=1.0, total_steps=100, pct_start=1.5), "pct_start=1.5"),
    ("onecycle_torch", dict(max_lr=1.0, total_steps=2, pct_start=0.5), "a phase would have no steps"),
    ("one_cycle", dict(base_lr=0.1, max_lr=1.0, step_size=60, total_steps=100), "total_steps=100"),
    ("one_cycle_momentum", dict(max_momentum=0.85, min_momentum=0.95, step_size=5), "min_momentum=0.95"),
    ("one_cycle_momentum", dict(max_momentum=1.5, min_momentum=0.85, step_size=5), "max_momentum=1.5"),
    ("triangular", dict(base_lr=0.1, max_lr=0.2, step_size=5, window="square"), "window='square'"),
    ("onecycle_torch", dict(max_lr=1.0, total_steps=100, three_phase="yes"), "three_phase='yes'"),
])
def test_more_bad_parameters(name, params, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(name, **params)
