"""LR range tests (both forms), their suggestions, and the Hessian-free LR estimate."""


import numpy as np
import pytest
import torch

from lrstudy.range_test import (HessianFreeLR, lr_range_test, range_schedule, smoothed_sweep, suggest_fastai,
                                suggest_smith)
from lrstudy.schedule_specs import make_schedule


def problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 10, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    return model, opt, batches, x, y


def test_linear_sweep_restores_model_and_optimizer_exactly():
    model, opt, batches, x, y = problem()
    for xb, yb in batches[:3]:  # give the optimizer some momentum state first
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    before_model = {k: v.clone() for k, v in model.state_dict().items()}
    before_opt = {k: v["momentum_buffer"].clone() for k, v in opt.state_dict()["state"].items()}

    def accuracy(m):
        m.eval()
        with torch.no_grad():
            return (m(x).argmax(1) == y).float().mean().item() * 100

    table = lr_range_test(model, opt, torch.nn.functional.cross_entropy, batches, 0.0, 1.0, num_iter=40,
                          evaluate=accuracy, eval_every=5)
    assert len(table) == 40 and table.metric.notna().sum() == 8
    assert table.lr.iloc[0] == 0.0 and table.lr.iloc[-1] == pytest.approx(39 / 40)
    assert all(torch.equal(before_model[k], v) for k, v in model.state_dict().items())
    after_opt = {k: v["momentum_buffer"] for k, v in opt.state_dict()["state"].items()}
    assert all(torch.equal(before_opt[k], after_opt[k]) for k in before_opt)
    assert opt.param_groups[0]["lr"] == 0.01


def test_exponential_sweep_stops_on_divergence():
    model, opt, batches, *_ = problem()
    table = lr_range_test(model, opt, torch.nn.functional.cross_entropy, batches, 1e-4, 1e4, num_iter=200, mode="exp")
    assert len(table) < 200  # stopped once the smoothed loss passed 4x its best (or became NaN)
    lrs = table.lr.to_numpy()
    assert np.allclose(np.diff(np.log(lrs)), np.log(1e8) / 199)


def test_range_schedules():
    assert range_schedule(0, 3, 20000)["name"] == "triangular"
    exp = make_schedule(**range_schedule(1e-7, 10, 100, "exp"))
    assert exp(0) == pytest.approx(1e-7) and exp(99) == pytest.approx(10) and exp(500) == pytest.approx(10)
    with pytest.raises(ValueError, match="mode='cubic'"):
        range_schedule(0, 1, 10, "cubic")


def test_smith_suggestion_on_a_known_curve():
    lrs = np.linspace(0, 0.02, 41)
    # flat until 0.001, rises to a peak at 0.006, then falls: the CLR paper's Fig. 3 shape
    acc = np.where(lrs < 0.001, 10, np.where(lrs <= 0.006, 10 + (lrs - 0.001) / 0.005 * 50, 60 - (lrs - 0.006) * 2000))
    s = suggest_smith(lrs, acc, window=1)
    assert s["max_lr"] == pytest.approx(0.006) and s["base_lr"] == pytest.approx(0.0015)
    assert s["base_lr_third"] == pytest.approx(0.002) and "peak" in s["rule"]


def test_fastai_suggestions_on_a_known_curve():
    lrs = np.logspace(-6, 1, 100)
    loss = 2.3 - 1.5 / (1 + np.exp(-(np.log10(lrs) + 3) * 3))  # falls around 1e-3 ...
    loss = loss + np.where(lrs > 0.1, (np.log10(lrs) + 1) ** 2, 0)  # ... and blows up past 0.1
    s = suggest_fastai(lrs, loss)
    assert 1e-4 < s["valley"] < 0.1 and s["steep"] == pytest.approx(1e-3, rel=0.3)
    assert s["minimum"] == pytest.approx(lrs[np.argmin(loss[10:95]) + 10] / 10)


def test_hessian_free_estimate_is_inverse_curvature_on_a_quadratic():
    h = 4.0
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=0.05)
    tracker = HessianFreeLR([w], smoothing=1.0)
    estimates = []
    for _ in range(5):
        opt.zero_grad()
        (0.5 * h * (w ** 2).sum()).backward()
        opt.step()
        estimates.append(tracker.observe(0.05))
    assert estimates[0] is None
    assert all(e == pytest.approx(1 / h) for e in estimates[1:])
    assert list(tracker.table().columns) == ["update", "lr", "estimate", "smoothed"]


def test_hessian_free_bias_corrected_average_starts_at_the_first_estimate():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=0.05)
    tracker = HessianFreeLR([w], smoothing=0.1, initial=None)
    for _ in range(3):
        opt.zero_grad()
        (0.5 * 4.0 * (w ** 2).sum()).backward()
        opt.step()
        tracker.observe(0.05)
    assert tracker.average == pytest.approx(0.25)  # 1 / curvature from the first estimate on, no pull to a start value


def test_a_recorded_sweep_is_read_as_the_live_sweep_ran():
    """One smoothing and one stop rule: a stored sweep re-read offline (the notebook) gives the live
    sweep's smoothed loss and stops at the update where the live sweep stopped."""
    model, opt, batches, *_ = problem()
    live = lr_range_test(model, opt, torch.nn.functional.cross_entropy, batches, 1e-4, 1e4, num_iter=200, mode="exp")
    smooth, keep = smoothed_sweep(live.loss)
    assert np.array_equal(smooth, live.smooth_loss.to_numpy())
    assert keep == len(live) - 1  # the live table holds the update it stopped at; the recorded one is cut before it
