"""Caffe's SGD rule, with per-layer multipliers, against a hand computation."""

import pytest
import torch

from lrstudy.models import CaffeCifar10Full
from lrstudy.optim import CaffeSGD, build_optimizer, set_learning_rate


def test_caffe_update_with_changing_rate():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = CaffeSGD([{"params": [w], "lr_mult": 2.0, "weight_decay": 0.1}], momentum=0.9)
    ref_w, ref_v = w.detach().clone(), torch.zeros(2, dtype=torch.float64)
    for lr in (0.1, 0.5, 0.01):
        grad = torch.tensor([0.3, -0.7], dtype=torch.float64)
        w.grad = grad.clone()
        set_learning_rate(opt, lr)
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
    set_learning_rate(opt, 0.001)
    assert by_param[id(model.conv1.bias)]["lr"] == pytest.approx(0.002)
    assert by_param[id(model.conv3.bias)]["lr"] == pytest.approx(0.001)
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        build_optimizer({"name": "adam"}, model)
