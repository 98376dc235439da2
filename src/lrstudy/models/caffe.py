"""Networks from Caffe prototxt files: the BVLC examples the CLR paper trained (CIFAR-10 "full", its
sigmoid + batch-norm variant, MNIST LeNet) and the super-convergence authors' CIFAR ResNets
(lnsmith54/super-convergence). Each carries its file's per-parameter multipliers and fillers, and
pools with Caffe's rounding."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from torch.nn import functional as F

from .parts import blocks_per_stage, he_normal_convs_, pad_channels, parameter_multipliers

__all__ = ["CaffeBatchNorm2d", "WithinChannelLRN", "CaffeCifar10Full", "CaffeCifar10SigmoidBN", "CaffeLeNet",
           "CaffeResNetCifar"]


def _caffe_pooled_side(side: int, kernel: int, stride: int) -> int:
    """Side of a Caffe pooling output (no padding): Caffe rounds up where PyTorch rounds down."""
    return -(-(side - kernel) // stride) + 1


def _three_pools(side: int) -> int:
    """Side after the CIFAR-10 nets' three 3x3 poolings with stride 2 (32 -> 16 -> 8 -> 4)."""
    for _ in range(3):
        side = _caffe_pooled_side(side, 3, 2)
    return side


def _caffe_xavier_(weight: torch.Tensor) -> None:
    """Caffe's "xavier" filler with its default FAN_IN norm: uniform on +-sqrt(3 / fan_in).
    (Not torch's xavier_uniform_, which averages fan-in and fan-out.)"""
    bound = math.sqrt(3.0 / weight[0].numel())
    nn.init.uniform_(weight, -bound, bound)


class CaffeBatchNorm2d(nn.BatchNorm2d):
    """Batch norm with Caffe's test-time statistics.

    Caffe's BatchNorm keeps running sums ``S_t = f * S_{t-1} + x_t`` and a normaliser
    ``Z_t = f * Z_{t-1} + 1`` (``f`` = ``moving_average_fraction``) and normalises test inputs with
    ``S_t / Z_t``: an exponential average without start-up bias. PyTorch's running average with
    ``momentum = 1 - f`` starts from mean 0 / variance 1 and after ``t`` updates holds
    ``f**t * start + (1 - f**t) * (Caffe's average)``, so dividing that start-up weight back out in
    eval mode gives Caffe's statistics. This matters for the test accuracy logged early in a run
    (with f = 0.999 PyTorch's plain average is still 90% "start" after 100 iterations).

    Training mode, parameters and state_dict are exactly nn.BatchNorm2d's; ``momentum`` is
    ``1 - moving_average_fraction``. Both average the unbiased (n / (n - 1)) batch variance.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.momentum is None or not self.track_running_stats:
            return super().forward(x)
        steps = self.num_batches_tracked.to(torch.float64)
        # Share of each running buffer that is still its initial value (mean 0, var 1): f**t after t
        # updates. Before the first update it is taken as 0, so the buffers are used as they are.
        start_weight = torch.where(steps > 0, (1.0 - self.momentum) ** steps, 0.0)
        mean = self.running_mean.double() / (1.0 - start_weight)
        var = (self.running_var.double() - start_weight) / (1.0 - start_weight)
        dtype = self.running_mean.dtype
        return F.batch_norm(x, mean.to(dtype), var.to(dtype), self.weight, self.bias, False, 0.0, self.eps)


class WithinChannelLRN(nn.Module):
    """Caffe's LRN with ``norm_region: WITHIN_CHANNEL``.

    Caffe builds it from its own layers: square, average-pool over a ``size x size`` window (zero
    padding counted in the average), then ``x * (1 + alpha * mean)**(-beta)``.
    """

    def __init__(self, size: int = 3, alpha: float = 5e-5, beta: float = 0.75):
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Always in float32, also under bf16 autocast: 1 + 5e-5 * mean_sq in bfloat16 moves in steps
        # of 2^-7, which would flatten the normalisation (and make eager and compiled bf16 differ).
        kind = x.device.type
        with torch.autocast(kind, enabled=False) if kind in ("cpu", "cuda") else contextlib.nullcontext():
            x = x.to(torch.promote_types(x.dtype, torch.float32))  # (a float64 input stays float64)
            mean_sq = F.avg_pool2d(x * x, self.size, stride=1, padding=self.size // 2, count_include_pad=True)
            return x * (1 + self.alpha * mean_sq).pow(-self.beta)


class CaffeCifar10Full(nn.Module):
    """Caffe's "CIFAR-10 full" network (``examples/cifar10/cifar10_full_train_test.prototxt``),
    the baseline net of the CLR paper's CIFAR-10 experiments.

    conv(32, 5x5) -> max-pool 3/2 -> ReLU -> LRN -> conv(32) -> ReLU -> avg-pool 3/2 -> LRN ->
    conv(64) -> ReLU -> avg-pool 3/2 -> linear(10). Caffe rounds pooled sizes up (32 -> 16 -> 8 -> 4),
    which PyTorch reproduces with ``ceil_mode=True``; both average over the in-image part of a
    window clipped at the border. Inputs are raw 0-255 pixels minus the per-pixel mean image.
    """

    # (lr_mult, decay_mult) as the prototxt sets them: conv1/conv2 give their biases lr x2 (decay
    # left at Caffe's default 1); conv3 names no multipliers; ip1 has weight decay x250 and a bias
    # with lr x2 and no decay.
    PARAM_MULTIPLIERS = {
        "conv1.weight": (1.0, 1.0), "conv1.bias": (2.0, 1.0),
        "conv2.weight": (1.0, 1.0), "conv2.bias": (2.0, 1.0),
        "conv3.weight": (1.0, 1.0), "conv3.bias": (1.0, 1.0),
        "ip1.weight": (1.0, 250.0), "ip1.bias": (2.0, 0.0),
    }  # fmt: skip
    INIT_STD = {"conv1": 1e-4, "conv2": 1e-2, "conv3": 1e-2, "ip1": 1e-2}

    def __init__(self, num_classes: int = 10, image_size: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)
        self.norm = WithinChannelLRN(size=3, alpha=5e-5, beta=0.75)
        self.ip1 = nn.Linear(64 * _three_pools(image_size) ** 2, num_classes)
        self.param_multipliers = dict(self.PARAM_MULTIPLIERS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, std in self.INIT_STD.items():
            layer = getattr(self, name)
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(F.relu(F.max_pool2d(self.conv1(x), 3, 2, ceil_mode=True)))
        x = self.norm(F.avg_pool2d(F.relu(self.conv2(x)), 3, 2, ceil_mode=True))
        x = F.avg_pool2d(F.relu(self.conv3(x)), 3, 2, ceil_mode=True)
        return self.ip1(x.flatten(1))


class CaffeCifar10SigmoidBN(nn.Module):
    """Caffe's batch-normalised sigmoid CIFAR-10 network
    (``examples/cifar10/cifar10_full_sigmoid_train_test_bn.prototxt``, BVLC master), the CLR paper's
    sigmoid + BN example (Fig. 6).

    conv1(32, 5x5) -> max-pool 3/2 -> BN -> sigmoid -> conv2(32) -> BN -> sigmoid -> avg-pool 3/2 ->
    conv3(64) -> BN -> sigmoid -> avg-pool 3/2 -> linear(10). As in the file, the first stage pools
    before BN and the other two after the sigmoid. The convolutions have ``bias_term: false``, and
    BVLC's BatchNorm layer only holds statistics (its three blobs are frozen with lr_mult 0) and the
    file adds no Scale layer, so BN here has no learnable scale or shift.

    ``bn_momentum`` is 1 - Caffe's ``moving_average_fraction``; the file leaves that at its
    default 0.999.
    """

    # conv1-3: `param { lr_mult: 1 }` only (decay_mult defaults to 1). ip1: weight lr 1 / decay 1,
    # bias lr 1 / decay 0. (Forks of Caffe ship other versions of this file, e.g. with learnable
    # "BN" layers and a decay x250 ip1; we follow BVLC's.)
    PARAM_MULTIPLIERS = {
        "conv1.weight": (1.0, 1.0), "conv2.weight": (1.0, 1.0), "conv3.weight": (1.0, 1.0),
        "ip1.weight": (1.0, 1.0), "ip1.bias": (1.0, 0.0),
    }  # fmt: skip
    INIT_STD = {"conv1": 1e-4, "conv2": 1e-2, "conv3": 1e-2, "ip1": 1e-2}

    def __init__(self, num_classes: int = 10, image_size: int = 32, bn_momentum: float = 0.001):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, padding=2, bias=False)
        self.bn1 = CaffeBatchNorm2d(32, momentum=bn_momentum, affine=False)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2, bias=False)
        self.bn2 = CaffeBatchNorm2d(32, momentum=bn_momentum, affine=False)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2, bias=False)
        self.bn3 = CaffeBatchNorm2d(64, momentum=bn_momentum, affine=False)
        self.ip1 = nn.Linear(64 * _three_pools(image_size) ** 2, num_classes)
        self.param_multipliers = dict(self.PARAM_MULTIPLIERS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, std in self.INIT_STD.items():
            nn.init.normal_(getattr(self, name).weight, mean=0.0, std=std)
        nn.init.zeros_(self.ip1.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.bn1(F.max_pool2d(self.conv1(x), 3, 2, ceil_mode=True)))
        x = F.avg_pool2d(torch.sigmoid(self.bn2(self.conv2(x))), 3, 2, ceil_mode=True)
        x = F.avg_pool2d(torch.sigmoid(self.bn3(self.conv3(x))), 3, 2, ceil_mode=True)
        return self.ip1(x.flatten(1))


class CaffeLeNet(nn.Module):
    """Caffe's MNIST LeNet (``examples/mnist/lenet_train_test.prototxt``), the LeNet of the
    super-convergence paper's MNIST rows.

    conv(20, 5x5) -> max-pool 2/2 -> conv(50, 5x5) -> max-pool 2/2 -> linear(500) -> ReLU -> linear(10):
    no padding and no nonlinearity after the convolutions, as in the file (28 -> 24 -> 12 -> 8 -> 4).
    Caffe scales the pixels by 1/256 in its data layer; that belongs to the data pipeline.
    """

    # Every layer: weights lr x1, biases lr x2; decay_mult never set (default 1).
    PARAM_MULTIPLIERS = {
        f"{layer}.{kind}": (mult, 1.0)
        for layer in ("conv1", "conv2", "ip1", "ip2")
        for kind, mult in (("weight", 1.0), ("bias", 2.0))
    }

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        side = _caffe_pooled_side(_caffe_pooled_side(image_size - 4, 2, 2) - 4, 2, 2)
        self.ip1 = nn.Linear(50 * side * side, 500)
        self.ip2 = nn.Linear(500, num_classes)
        self.param_multipliers = dict(self.PARAM_MULTIPLIERS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.conv1, self.conv2, self.ip1, self.ip2):  # xavier weights, constant-0 biases
            _caffe_xavier_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), 2, 2, ceil_mode=True)
        x = F.max_pool2d(self.conv2(x), 2, 2, ceil_mode=True)
        return self.ip2(F.relu(self.ip1(x.flatten(1))))


class _CaffeBlock(nn.Module):
    """A block of the super-convergence Caffe ResNets.

    Ordinary block: relu(conv-BN-Scale-ReLU-conv-BN-Scale (x) + x). A downsampling block keeps its
    input width: its first conv has stride 2, its shortcut is a 3x3 average pool with stride 2
    (Caffe rounds the pooled size up: ceil mode, border windows averaged over in-image pixels), and
    the width is doubled only after the sum and ReLU, by concatenating zero channels (the file's
    DummyData + Concat).
    """

    def __init__(self, channels: int, downsample: bool, bn_momentum: float):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 2 if downsample else 1, 1)
        self.bn1 = CaffeBatchNorm2d(channels, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.bn2 = CaffeBatchNorm2d(channels, momentum=bn_momentum)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if not self.downsample:
            return F.relu(branch + x)
        out = F.relu(branch + F.avg_pool2d(x, 3, 2, ceil_mode=True))
        return pad_channels(out, out.shape[1])


def _unit_scale(bn: nn.BatchNorm2d) -> None:
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)


class CaffeResNetCifar(nn.Module):
    """The super-convergence authors' Caffe CIFAR ResNet (lnsmith54/super-convergence,
    ``architectures/Resnet56Cifar.prototxt``; ``Resnet20Cifar`` / ``Resnet110Cifar`` have the same
    blocks with n = 3 / 18).

    conv(16, 3x3, stride 1) -> BN -> Scale -> ReLU -> three stages of n post-activation blocks
    (16, 32, 64 channels; see ``_CaffeBlock`` for the downsampling blocks) -> 8x8 average pool ->
    linear. Because a downsampling block's convs keep the input width, ResNet-56 has 0.81M
    parameters, not the 0.85M of He et al.'s. PyTorch's affine BN plays Caffe's BatchNorm + Scale.

    ``bn_momentum`` is 1 - ``moving_average_fraction``: 0.999 in the file (momentum 0.001); the
    authors' ``x.sh`` sets 0.95 (momentum 0.05) for the CLR runs. Test-time statistics follow
    Caffe's (see CaffeBatchNorm2d).

    Initialisation as in the file: convs "msra" (Caffe's default FAN_IN: N(0, 2 / (in*3*3))) with
    constant-0 biases; Scale layers unset, so scale 1 and shift 0; the classifier "xavier"
    (uniform +-sqrt(3 / 64)) with a constant-0 bias.
    """

    def __init__(self, num_classes: int = 10, depth: int = 56, bn_momentum: float = 0.001):
        super().__init__()
        n = blocks_per_stage(depth)
        self.conv = nn.Conv2d(3, 16, 3, 1, 1)
        self.bn = CaffeBatchNorm2d(16, momentum=bn_momentum)
        blocks, width = [], 16
        for stage in range(3):
            for i in range(n):
                downsample = stage > 0 and i == 0
                blocks.append(_CaffeBlock(width, downsample, bn_momentum))
                width *= 2 if downsample else 1
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        self.param_multipliers = parameter_multipliers(self, self._caffe_multipliers)
        self.reset_parameters()

    @staticmethod
    def _caffe_multipliers(module: nn.Module, local_name: str) -> tuple[float, float]:
        if isinstance(module, nn.Conv2d):
            # Every Convolution: `param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }`
            # in Resnet56Cifar.prototxt. (Resnet110Cifar and one version of Resnet20Cifar give the
            # bias decay_mult 1; a conv bias that feeds BN gets no gradient, so it makes no difference.)
            return (1.0, 1.0) if local_name == "weight" else (2.0, 0.0)
        if isinstance(module, nn.Linear):
            # post_FC: `param { lr_mult: 1 } param { lr_mult: 2 }`, decay_mult left at 1.
            return (1.0, 1.0) if local_name == "weight" else (2.0, 1.0)
        # BN's affine = Caffe's Scale layer, which names no param: lr_mult 1, decay_mult 1 on both.
        # (The BatchNorm layers' own blobs are statistics with lr_mult 0: buffers here.)
        return (1.0, 1.0)

    def reset_parameters(self) -> None:
        he_normal_convs_(self, _unit_scale)  # "msra" convs with constant-0 biases; Scale layers left unset
        _caffe_xavier_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))  # = the file's 8x8 average pool on 32x32 inputs
