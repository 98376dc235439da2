"""The PyTorch adapter: drop-in use, per-group schedules, momentum, exact resume, no known traps."""

import io
import pickle
import warnings

import pytest
import torch

from lrstudy.scheduler import ScheduledLR, apply
from lrstudy.schedule_specs import make_schedule

TRI = {"name": "triangular", "base_lr": 0.001, "max_lr": 0.006, "step_size": 5}


def model_and_sgd():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=0.1, momentum=0.9)
    return model, opt


def train_steps(model, opt, sched, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    lrs = []
    for _ in range(n):
        x = torch.randn(16, 4, generator=g)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        lrs.append([group["lr"] for group in opt.param_groups])
        opt.step()
        sched.step()
    return lrs


def test_standard_loop_uses_step_k_for_update_k():
    model, opt = model_and_sgd()
    sched = ScheduledLR(opt, TRI)
    assert opt.param_groups[0]["lr"] == 0.001  # ready for update 0 right after construction
    lrs = train_steps(model, opt, sched, 12)
    assert [row[0] for row in lrs] == pytest.approx([make_schedule(**TRI)(t) for t in range(12)])
    assert sched.get_last_lr()[0] == pytest.approx(make_schedule(**TRI)(12))


def test_per_group_schedules_and_lr_mult():
    model, opt = model_and_sgd()
    opt.param_groups[1]["lr_mult"] = 2.0
    sched = ScheduledLR(opt, [TRI, {"name": "fixed", "lr": 0.5}])
    train_steps(model, opt, sched, 5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.006) and opt.param_groups[1]["lr"] == 1.0
    with pytest.raises(ValueError, match="3 schedules for 2 parameter groups"):
        ScheduledLR(opt, [TRI, TRI, TRI])


def test_momentum_for_sgd_and_adam_beta1():
    mom = {"name": "one_cycle_momentum", "max_momentum": 0.95, "min_momentum": 0.85, "step_size": 4}
    model, opt = model_and_sgd()
    sched = ScheduledLR(opt, TRI, momentum=mom)
    train_steps(model, opt, sched, 4)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.85)
    adam = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.99))
    apply(adam, 2, TRI, momentum=mom)
    assert adam.param_groups[0]["betas"] == pytest.approx((0.9, 0.99))
    rms = torch.optim.Adagrad(model.parameters())
    with pytest.raises(ValueError, match="neither 'momentum'"):
        ScheduledLR(rms, TRI, momentum=mom)


def test_resume_is_exact_and_state_pickles():
    model, opt = model_and_sgd()
    sched = ScheduledLR(opt, TRI, momentum={"name": "fixed", "lr": 0.9})
    train_steps(model, opt, sched, 7)
    blob = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, blob)
    pickle.dumps(sched.state_dict())
    rest_straight = train_steps(model, opt, sched, 9, seed=1)

    blob.seek(0)
    saved = torch.load(blob, weights_only=True)  # plain data only: no lambdas, no bound methods
    model2, opt2 = model_and_sgd()
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    sched2 = ScheduledLR(opt2, TRI, momentum={"name": "fixed", "lr": 0.9})
    sched2.load_state_dict(saved["sched"])
    rest_resumed = train_steps(model2, opt2, sched2, 9, seed=1)
    assert rest_resumed == rest_straight
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))


def test_resume_from_last_epoch_without_initial_lr():
    """PyTorch's own schedulers raise KeyError('initial_lr') here."""
    _, opt = model_and_sgd()
    sched = ScheduledLR(opt, TRI, last_epoch=4)
    assert opt.param_groups[0]["lr"] == pytest.approx(make_schedule(**TRI)(4))
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(make_schedule(**TRI)(5))


def test_no_error_past_the_end():
    """OneCycleLR raises 'Tried to step' one step too far; a schedule with an end holds its value."""
    model, opt = model_and_sgd()
    spec = {"name": "onecycle_torch", "max_lr": 1.0, "total_steps": 10}
    sched = ScheduledLR(opt, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        lrs = train_steps(model, opt, sched, 15)
    assert lrs[-1] == lrs[-5]


def test_apply_is_stateless():
    _, opt = model_and_sgd()
    assert apply(opt, 5, TRI) == [pytest.approx(0.006)] * 2
    assert apply(opt, 0, make_schedule(**TRI)) == [0.001, 0.001]


def test_one_setter_for_rates_momenta_and_betas():
    from lrstudy.scheduler import set_lr_and_momentum

    _, opt = model_and_sgd()
    opt.param_groups[1]["lr_mult"] = 2.0
    assert set_lr_and_momentum(opt, 0.01, 0.8) == [0.01, 0.02]
    assert [g["momentum"] for g in opt.param_groups] == [0.8, 0.8]
    assert set_lr_and_momentum(opt, [0.1, 0.2], [0.9, 0.7]) == [0.1, 0.4]
    adam = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), betas=(0.9, 0.99))
    set_lr_and_momentum(adam, 0.001, 0.85)
    assert adam.param_groups[0]["betas"] == (0.85, 0.99)
    with pytest.raises(ValueError, match="3 schedules for 2 parameter groups"):
        set_lr_and_momentum(opt, [0.1, 0.2, 0.3])


def test_apply_uses_schedule_objects_as_they_are(monkeypatch):
    from lrstudy import schedule_specs

    sched = make_schedule(**TRI)
    monkeypatch.setattr(schedule_specs, "make_schedule", lambda **k: pytest.fail("rebuilt from its spec"))
    _, opt = model_and_sgd()
    product = schedule_specs.Product((sched, sched))
    assert apply(opt, 5, product) == [pytest.approx(0.006**2)] * 2
