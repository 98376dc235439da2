"""Caffe's SGD rule, with per-layer multipliers, against a hand computation."""

import pytest
import torch

from lrstudy.models import CaffeCifar10Full
from lrstudy.optim import CaffeAdaptive, CaffeSGD, build_optimizer
from lrstudy.scheduler import set_lr_and_momentum


def test_caffe_update_with_changing_rate():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = CaffeSGD([{"params": [w], "lr_mult": 2.0, "weight_decay": 0.1}], momentum=0.9)
    ref_w, ref_v = w.detach().clone(), torch.zeros(2, dtype=torch.float64)
    for lr in (0.1, 0.5, 0.01):
        grad = torch.tensor([0.3, -0.7], dtype=torch.float64)
        w.grad = grad.clone()
        set_lr_and_momentum(opt, lr)
        opt.step()
        ref_v = 0.9 * ref_v + (2.0 * lr) * (grad + 0.1 * ref_w)
        ref_w = ref_w - ref_v
        assert torch.allclose(w.detach(), ref_w, rtol=0, atol=1e-15)


def test_differs_from_torch_sgd_when_the_rate_jumps():
    """Why the papers' rule is used: after a jump in the rate, torch's SGD rescales the whole
    velocity at once, Caffe's only the new gradient."""
    a = torch.nn.Parameter(torch.ones(1))
    b = torch.nn.Parameter(torch.ones(1))
    caffe = CaffeSGD([a], lr=0.1, momentum=0.9)
    torch_sgd = torch.optim.SGD([b], lr=0.1, momentum=0.9)
    for lr in (0.1, 1.0):
        for p, opt in ((a, caffe), (b, torch_sgd)):
            p.grad = torch.ones(1)
            opt.param_groups[0]["lr"] = lr
            opt.step()
    assert a.item() == pytest.approx(1 - 0.1 - (0.09 + 1.0))
    assert b.item() == pytest.approx(1 - 0.1 - 1.0 * 1.9)


def test_groups_follow_the_prototxt_multipliers():
    model = CaffeCifar10Full()
    opt = build_optimizer({"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004}, model)
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert by_param[id(model.ip1.weight)]["weight_decay"] == pytest.approx(1.0)
    assert by_param[id(model.ip1.bias)]["weight_decay"] == 0
    assert by_param[id(model.conv1.bias)]["lr_mult"] == 2.0
    set_lr_and_momentum(opt, 0.001)
    assert by_param[id(model.conv1.bias)]["lr"] == pytest.approx(0.002)
    assert by_param[id(model.conv3.bias)]["lr"] == pytest.approx(0.001)
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        build_optimizer({"name": "adam"}, model)


def _pair(rule, torch_opt, steps=6, **kw):
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    b = torch.nn.Parameter(a.detach().clone())
    ours = CaffeAdaptive([a], rule, **kw)
    theirs = torch_opt([b])
    for i in range(steps):
        grad = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
        for p, opt in ((a, ours), (b, theirs)):
            p.grad = grad.clone()
            opt.step()
    return a.detach(), b.detach()


@pytest.mark.parametrize("rule, make, kw", [
    ("adagrad", lambda p: torch.optim.Adagrad(p, lr=0.05, eps=1e-8), dict(lr=0.05)),
    ("rmsprop", lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8), dict(lr=0.01, rms_decay=0.99)),
    ("adadelta", lambda p: torch.optim.Adadelta(p, lr=0.5, rho=0.9, eps=1e-6), dict(lr=0.5, momentum=0.9, delta=1e-6)),
])
def test_caffe_adaptive_rules_match_torch_where_they_coincide(rule, make, kw):
    a, b = _pair(rule, make, **kw)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


def test_caffe_adam_and_nesterov_by_hand():
    # Adam: Caffe folds the bias corrections into the rate; with delta -> 0 it equals torch's Adam
    a, b = _pair("adam", lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-30),
                 lr=0.01, momentum=0.9, momentum2=0.999, delta=1e-30)
    assert torch.allclose(a, b, rtol=1e-10)
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = CaffeAdaptive([w], "nesterov", lr=0.1, momentum=0.9)
    v = 0.0
    ref = 1.0
    for g in (0.5, -0.2, 0.3):
        w.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        v_new = 0.9 * v + 0.1 * g
        ref -= (1 + 0.9) * v_new - 0.9 * v
        v = v_new
        assert w.item() == pytest.approx(ref, rel=1e-14)


def test_caffe_refuses_momentum_with_adagrad_and_rmsprop():
    for rule in ("adagrad", "rmsprop"):
        with pytest.raises(ValueError, match=f"{rule} takes no momentum"):
            CaffeAdaptive([torch.nn.Parameter(torch.zeros(1))], rule, momentum=0.9)
    model = CaffeCifar10Full()
    opt = build_optimizer({"name": "caffe_adam", "momentum": 0.9, "weight_decay": 0.004}, model)
    assert isinstance(opt, CaffeAdaptive) and opt.rule == "adam"
