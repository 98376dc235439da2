"""The Caffe CIFAR-10 "full" network: shapes, size, pooling and LRN arithmetic, initialisation."""

import pytest
import torch
from torch.nn import functional as F

from lrstudy.models import CaffeCifar10Full, WithinChannelLRN, build_model, count_parameters


def test_parameter_count_and_output_shape():
    model = CaffeCifar10Full()
    # conv1 3*32*25+32, conv2 32*32*25+32, conv3 32*64*25+64, ip1 64*4*4*10+10
    assert count_parameters(model) == 2432 + 25632 + 51264 + 10250 == 89578
    assert model(torch.randn(7, 3, 32, 32)).shape == (7, 10)
    assert build_model({"name": "caffe_cifar10_full"}, num_classes=100)(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_caffe_ceil_mode_pooling_sizes():
    model = CaffeCifar10Full()
    sizes = []
    for layer in ("conv1", "conv2", "conv3"):
        getattr(model, layer).register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    model(torch.randn(1, 3, 32, 32))
    assert sizes == [32, 16, 8]  # each conv sees the pooled output of the previous stage: 32 -> 16 -> 8 -> 4
    assert model.ip1.in_features == 64 * 4 * 4


def test_average_pool_divides_like_caffe_at_the_border():
    """Caffe's AVE pooling (pad 0, ceil mode) divides a window clipped by the image edge by the
    number of in-image pixels; PyTorch's ceil-mode avg_pool2d must do the same."""
    x = torch.arange(16 * 16, dtype=torch.float64).reshape(1, 1, 16, 16)
    out = F.avg_pool2d(x, 3, 2, ceil_mode=True)
    assert out.shape[-1] == 8
    # last window starts at 14 and covers rows/cols 14..15 only
    assert out[0, 0, 7, 7].item() == pytest.approx(x[0, 0, 14:16, 14:16].mean().item())
    assert out[0, 0, 0, 0].item() == pytest.approx(x[0, 0, 0:3, 0:3].mean().item())


def test_within_channel_lrn_formula():
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64) * 50
    y = WithinChannelLRN(size=3, alpha=5e-5, beta=0.75)(x)
    padded = F.pad(x * x, (1, 1, 1, 1))
    i, j = 0, 5  # a border pixel: its 3x3 window includes zero padding, still divided by 9
    window = padded[1, 2, i:i + 3, j:j + 3]
    expected = x[1, 2, i, j] * (1 + 5e-5 * window.sum() / 9) ** -0.75
    assert y[1, 2, i, j].item() == pytest.approx(expected.item(), rel=1e-12)


def test_gaussian_initialisation_and_multipliers():
    torch.manual_seed(0)
    model = CaffeCifar10Full()
    assert model.conv1.weight.std().item() == pytest.approx(1e-4, rel=0.1)
    assert model.conv2.weight.std().item() == pytest.approx(1e-2, rel=0.05)
    assert all(layer.bias.abs().sum() == 0 for layer in (model.conv1, model.conv2, model.conv3, model.ip1))
    assert set(model.param_multipliers) == {n for n, _ in model.named_parameters()}
    assert model.param_multipliers["ip1.weight"] == (1.0, 250.0)
    assert model.param_multipliers["ip1.bias"] == (2.0, 0.0)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'resnet9'"):
        build_model({"name": "resnet9"}, num_classes=10)
