"""Our schedules against PyTorch's built-in schedulers, step for step, for randomly drawn
parameters -- and the places where the papers and PyTorch differ, shown rather than hidden."""

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from lrstudy.schedule_specs import make_schedule

RTOL = 1e-12
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def optimizer(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def close(a, b):
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-18)


lrs = st.floats(1e-5, 1.0)


@FAST
@given(base=lrs, extra=lrs, up=st.integers(1, 300), down=st.one_of(st.none(), st.integers(1, 300)),
       mode=st.sampled_from(["triangular", "triangular2", "exp_range"]), gamma=st.floats(0.99, 1.0))
def test_cycliclr(base, extra, up, down, mode, gamma):
    maxlr = base + extra
    opt = optimizer()
    ref = torch.optim.lr_scheduler.CyclicLR(opt, base, maxlr, step_size_up=up, step_size_down=down, mode=mode,
                                            gamma=gamma, cycle_momentum=False)
    params = dict(base_lr=base, max_lr=maxlr, step_size=up, step_size_down=down)
    if mode == "exp_range":
        params.update(gamma=gamma, bounds="amplitude")  # PyTorch's reading; the paper's text is "both"
    ours = make_schedule(mode, **params)
    for t in range(1500):
        assert close(ours(t), ref.get_last_lr()[0]), (t, ours(t), ref.get_last_lr()[0])
        opt.step()
        ref.step()


@FAST
@given(max_lr=st.floats(1e-3, 5.0), total=st.integers(20, 2000), pct=st.floats(0.05, 0.45),
       div=st.floats(1.0, 100.0), final_div=st.floats(1.0, 1e5), anneal=st.sampled_from(["cos", "linear"]),
       three_phase=st.booleans())
def test_onecyclelr(max_lr, total, pct, div, final_div, anneal, three_phase):
    assume(pct * total > 1.5)  # shorter first phases make PyTorch divide by zero (ours refuses them)
    opt = optimizer()
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr, total_steps=total, pct_start=pct, div_factor=div,
                                              final_div_factor=final_div, anneal_strategy=anneal,
                                              three_phase=three_phase, base_momentum=0.85, max_momentum=0.95)
    common = dict(total_steps=total, pct_start=pct, anneal=anneal, three_phase=three_phase)
    lr = make_schedule("onecycle_torch", max_lr=max_lr, div_factor=div, final_div_factor=final_div, **common)
    mom = make_schedule("onecycle_torch_momentum", base_momentum=0.85, max_momentum=0.95, **common)
    for t in range(total):
        assert close(lr(t), ref.get_last_lr()[0]), t
        assert close(mom(t), opt.param_groups[0]["momentum"]), t
        opt.step()
        if t < total - 1:
            ref.step()
    # past the end, PyTorch raises "Tried to step"; ours holds the last value
    assert lr(total + 10) == lr(total - 1)


@FAST
@given(eta_max=st.floats(1e-3, 1.0), eta_min=st.floats(0.0, 1e-3), T_0=st.integers(1, 5),
       T_mult=st.integers(1, 3), steps_per_epoch=st.integers(1, 40))
def test_cosine_warm_restarts_fractional_epochs(eta_max, eta_min, T_0, T_mult, steps_per_epoch):
    """PyTorch's documented per-batch use, ``scheduler.step(epoch + i / iters)``, equals our SGDR
    with ``sample="start"``."""
    opt = optimizer(eta_max)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=T_0, T_mult=T_mult, eta_min=eta_min)
    ours = make_schedule("sgdr", eta_max=eta_max, eta_min=eta_min, T_0=T_0, T_mult=T_mult,
                         steps_per_epoch=steps_per_epoch, sample="start")
    for t in range(min(40 * steps_per_epoch, 1200)):
        epoch = t // steps_per_epoch + (t % steps_per_epoch) / steps_per_epoch
        ref.step(epoch)
        expected = opt.param_groups[0]["lr"]
        assert math.isclose(ours(t), expected, rel_tol=1e-9, abs_tol=1e-15), (t, ours(t), expected)


def test_where_the_papers_and_pytorch_differ():
    # 1. SGDR: with integer steps PyTorch never reaches eta_min; the paper's eta_min at T_cur = T_i
    #    is reached by our default (the last update of each cycle).
    opt = optimizer(0.05)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=10)
    torch_values = []
    for _ in range(10):
        torch_values.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    ours = make_schedule("sgdr", eta_max=0.05, eta_min=0.0, T_0=10, steps_per_epoch=1)
    assert min(torch_values) > 0 and ours(9) == 0.0 and ours(10) > 0.04
    # 2. exp_range: PyTorch keeps the floor at base_lr, the CLR paper's text decays it too.
    both = make_schedule("exp_range", base_lr=0.001, max_lr=0.006, step_size=2000, gamma=0.99994)
    amplitude = make_schedule("exp_range", base_lr=0.001, max_lr=0.006, step_size=2000, gamma=0.99994,
                              bounds="amplitude")
    assert both(40_000) < 1e-4 and amplitude(40_000) == pytest.approx(0.001)
    # 3. 1cycle: the paper's form is linear with an annihilation tail to base/1000; PyTorch's
    #    default is a two-phase cosine ending at max_lr / 2.5e5.
    paper = make_schedule("one_cycle", base_lr=0.1, max_lr=1.0, step_size=45, total_steps=100)
    torch_form = make_schedule("onecycle_torch", max_lr=1.0, total_steps=100)
    assert paper(99) == pytest.approx(0.1 / 1000 + (0.1 - 0.1 / 1000) / 10)
    assert torch_form(99) == pytest.approx(1.0 / 25 / 1e4)
    # 4. CLR's momentum is fixed; CyclicLR cycles SGD's momentum unless cycle_momentum=False.
    opt = optimizer()
    cyclic = torch.optim.lr_scheduler.CyclicLR(opt, 0.001, 0.006, step_size_up=10)
    opt.step()
    cyclic.step()
    assert opt.param_groups[0]["momentum"] < 0.9  # default cycle_momentum=True: 0.9 -> 0.8 -> 0.9
