"""The networks of the study, as the papers' own files define them.

Every model carries ``param_multipliers``: for each parameter name, ``(lr_mult, decay_mult)`` -- the
factors by which that parameter's learning rate and weight decay differ from the solver's. Models
that come from Caffe prototxt files carry the file's multipliers (Caffe's default is 1 for both).
Models that come from Torch or Lasagne code carry the multipliers that reproduce what that code did:
Torch's ``optim.sgd`` decays every parameter, Lasagne's L2 penalty only the weights it tags
"regularizable". Each model's comments name the file it follows.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "MODELS",
    "build_model",
    "count_parameters",
    "WithinChannelLRN",
    "CaffeBatchNorm2d",
    "CaffeCifar10Full",
    "CaffeCifar10Quick",
    "CaffeCifar10SigmoidBN",
    "CaffeLeNet",
    "ResNetCifar",
    "CaffeResNetCifar",
    "resnet",
    "StochasticDepthResNet",
    "WideResNet",
    "DenseNet",
]


# ----------------------------------------------------------------------------------------------
# Helpers shared by several models
# ----------------------------------------------------------------------------------------------


def _caffe_pooled_side(side: int, kernel: int, stride: int) -> int:
    """Side of a Caffe pooling output (no padding): Caffe rounds up where PyTorch rounds down."""
    return -(-(side - kernel) // stride) + 1


def _caffe_xavier_(weight: torch.Tensor) -> None:
    """Caffe's "xavier" filler with its default FAN_IN norm: uniform on +-sqrt(3 / fan_in).
    (Not torch's xavier_uniform_, which averages fan-in and fan-out.)"""
    bound = math.sqrt(3.0 / weight[0].numel())
    nn.init.uniform_(weight, -bound, bound)


def _pad_channels(x: torch.Tensor, extra: int) -> torch.Tensor:
    """Append ``extra`` all-zero channels: the parameter-free widening of "option A" shortcuts.
    F.pad keeps a channels_last input channels_last (torch.cat with fresh zeros does not)."""
    return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x


def _multipliers(model: nn.Module, rule) -> dict[str, tuple[float, float]]:
    """``{name: rule(module, local_name)}`` for every parameter, named as ``named_parameters()`` does."""
    return {
        f"{prefix}.{local}" if prefix else local: rule(module, local)
        for prefix, module in model.named_modules()
        for local, _ in module.named_parameters(recurse=False)
    }


def _torch_resnet_init(model: nn.Module) -> None:
    """fb.resnet.torch's initialisation (DenseNet's Torch code shares it): He normal over fan-out
    for convolutions, BN scale 1 and shift 0, default linear weights with a zero bias."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    model.fc.reset_parameters()
    nn.init.zeros_(model.fc.bias)


def _decay_everything(module: nn.Module, local_name: str) -> tuple[float, float]:
    # Torch's optim.sgd adds weightDecay * w to the gradient of every parameter in the flattened
    # parameter vector -- biases and BN scale/shift included -- with one learning rate for all.
    return (1.0, 1.0)


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


# ----------------------------------------------------------------------------------------------
# Caffe example networks (BVLC/caffe examples/)
# ----------------------------------------------------------------------------------------------


class WithinChannelLRN(nn.Module):
    """Caffe's LRN with ``norm_region: WITHIN_CHANNEL``.

    Caffe builds it from its own layers: square, average-pool over a ``size x size`` window (zero
    padding counted in the average), then ``x * (1 + alpha * mean)**(-beta)``.
    """

    def __init__(self, size: int = 3, alpha: float = 5e-5, beta: float = 0.75):
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
        side = image_size
        for _ in range(3):
            side = -(-(side - 3) // 2) + 1  # Caffe: ceil((side - kernel) / stride) + 1
        self.ip1 = nn.Linear(64 * side * side, num_classes)
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


class CaffeCifar10Quick(nn.Module):
    """Caffe's "CIFAR-10 quick" network (``examples/cifar10/cifar10_quick_train_test.prototxt``).

    conv(32, 5x5) -> max-pool 3/2 -> ReLU -> conv(32) -> ReLU -> avg-pool 3/2 -> conv(64) -> ReLU ->
    avg-pool 3/2 -> linear(64) -> linear(10): the "full" trunk without LRN and with a 64-unit hidden
    layer. The prototxt puts no nonlinearity between ip1 and ip2, so neither do we. Pooling rounds
    up as in Caffe (32 -> 16 -> 8 -> 4).
    """

    # Every layer has `param { lr_mult: 1 } param { lr_mult: 2 }` and never sets decay_mult (Caffe default 1).
    PARAM_MULTIPLIERS = {
        f"{layer}.{kind}": (mult, 1.0)
        for layer in ("conv1", "conv2", "conv3", "ip1", "ip2")
        for kind, mult in (("weight", 1.0), ("bias", 2.0))
    }
    INIT_STD = {"conv1": 1e-4, "conv2": 1e-2, "conv3": 1e-2, "ip1": 0.1, "ip2": 0.1}

    def __init__(self, num_classes: int = 10, image_size: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)
        side = image_size
        for _ in range(3):
            side = _caffe_pooled_side(side, 3, 2)
        self.ip1 = nn.Linear(64 * side * side, 64)
        self.ip2 = nn.Linear(64, num_classes)
        self.param_multipliers = dict(self.PARAM_MULTIPLIERS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, std in self.INIT_STD.items():  # gaussian weights, constant-0 biases
            layer = getattr(self, name)
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 3, 2, ceil_mode=True))
        x = F.avg_pool2d(F.relu(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.avg_pool2d(F.relu(self.conv3(x)), 3, 2, ceil_mode=True)
        return self.ip2(self.ip1(x.flatten(1)))


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
        side = image_size
        for _ in range(3):
            side = _caffe_pooled_side(side, 3, 2)
        self.ip1 = nn.Linear(64 * side * side, num_classes)
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


# ----------------------------------------------------------------------------------------------
# CIFAR ResNets: fb.resnet.torch (CLR Table 4), the super-convergence Caffe files, stochastic depth
# ----------------------------------------------------------------------------------------------


def _blocks_per_stage(depth: int) -> int:
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (20, 32, 44, 56, 110, ...); got {depth}")
    return (depth - 2) // 6


class _OptionABlock(nn.Module):
    """Post-activation basic block, relu(conv-BN-ReLU-conv-BN (x) + shortcut(x)), with the
    parameter-free shortcut: where the block strides and widens, x is subsampled with stride 2
    (fb.resnet.torch's 1x1 average pool) and zero channels are appended after it (its
    Concat(Identity, MulConstant(0)))."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, bn_momentum: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, momentum=bn_momentum)
        self.stride, self.extra_channels = stride, out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = _pad_channels(x[:, :, :: self.stride, :: self.stride], self.extra_channels)
        return F.relu(branch + shortcut)


class ResNetCifar(nn.Module):
    """He et al. (2016)'s CIFAR ResNet-``depth`` (depth = 6n + 2) as fb.resnet.torch builds it
    (``models/resnet.lua``; ``opts.lua`` defaults CIFAR to shortcut type A) -- the "ResNet" of the
    CLR paper's Table 4.

    conv(16, 3x3) -> BN -> ReLU -> three stages of n basic blocks with 16, 32, 64 channels (the first
    block of stages 2 and 3 strides by 2) -> global average pool (8x8) -> linear.
    Parameters: ResNet-20 0.27M, ResNet-56 0.85M, ResNet-110 1.7M, as published.

    Initialisation as in resnet.lua: conv weights N(0, 2 / (3*3*out_channels)) -- He init over the
    fan-out -- and no conv biases (resnet.lua deletes them under cudnn >= 4); BN scale 1, shift 0;
    linear weights Torch's default uniform(+-1/sqrt(fan_in)) (PyTorch's default too), bias 0.
    BN momentum 0.1 is Torch's default (same convention as PyTorch's).
    """

    def __init__(self, num_classes: int = 10, depth: int = 56, bn_momentum: float = 0.1):
        super().__init__()
        n = _blocks_per_stage(depth)
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16, momentum=bn_momentum)
        blocks, width = [], 16
        for stage_width in (16, 32, 64):
            for i in range(n):
                stride = 2 if stage_width != 16 and i == 0 else 1
                blocks.append(_OptionABlock(width, stage_width, stride, bn_momentum))
                width = stage_width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        # fb.resnet.torch trains with optim.sgd, weightDecay 1e-4 on every parameter.
        self.param_multipliers = _multipliers(self, _decay_everything)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _torch_resnet_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))


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
        return _pad_channels(out, out.shape[1])


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
        n = _blocks_per_stage(depth)
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
        self.param_multipliers = _multipliers(self, self._caffe_multipliers)
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
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        _caffe_xavier_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))  # = the file's 8x8 average pool on 32x32 inputs


def resnet(num_classes: int = 10, depth: int = 56, variant: str = "option_a", **kwargs) -> nn.Module:
    """A CIFAR ResNet-``depth``: ``variant`` "option_a" is He et al.'s as fb.resnet.torch builds it
    (ResNetCifar), "caffe_sc" the super-convergence authors' Caffe file (CaffeResNetCifar)."""
    variants = {"option_a": ResNetCifar, "caffe_sc": CaffeResNetCifar}
    if variant not in variants:
        raise ValueError(f"unknown resnet variant {variant!r}; known variants: {sorted(variants)}")
    return variants[variant](num_classes=num_classes, depth=depth, **kwargs)


class _DropBlock(nn.Module):
    """A residual block of yueatsprograms/Stochastic_Depth (``ResidualDrop.lua``).

    Training: with probability ``death_rate`` the branch is skipped for the whole mini-batch (not
    even computed, so its BN statistics are not updated either); otherwise relu(branch(x) + skip(x)).
    Test: relu(survival * branch(x) + skip(x)) with survival = 1 - death_rate. The branch is
    conv-BN-ReLU-conv-BN; where the block strides and widens, skip(x) is a 2x2 average pool with
    stride 2 followed by appended zero channels (the code's SpatialAveragePooling(2, 2, 2, 2) +
    Padding).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, death_rate: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride, self.extra_channels = stride, out_channels - in_channels
        self.death_rate, self.survival = death_rate, 1.0 - death_rate

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.avg_pool2d(x, self.stride) if self.stride > 1 else x
        skip = _pad_channels(skip, self.extra_channels)
        if not self.training:
            return F.relu(skip + self.survival * self.branch(x))
        # One uniform draw per block per training forward, in block order, like the Lua code's
        # torch.rand(1) per block per mini-batch. It comes from torch's global CPU generator, so it
        # is seeded and checkpointed with it and needs no device sync; double precision like Torch7's.
        if torch.rand((), dtype=torch.float64, device="cpu").item() < self.death_rate:
            return F.relu(skip)
        return F.relu(skip + self.branch(x))


class StochasticDepthResNet(nn.Module):
    """Huang et al. (2016)'s ResNet with stochastic depth, as yueatsprograms/Stochastic_Depth builds
    it (``main.lua``, ``ResidualDrop.lua``) -- the "SD" of the CLR paper's Table 4.

    He et al.'s CIFAR ResNet-``depth`` (110 by default: the code's N = 18) whose L = 3n residual
    blocks are dropped during training. Block l = 1..L survives with probability
    p_l = 1 - l / L * (1 - p_last) (the code's "lin_decay": deathRate = l / L * deathRate_arg; the
    paper's p_L = 0.5 is ``-deathRate 0.5``), so the first block survives with 1 - (1 - p_last) / L,
    not exactly 1. See ``_DropBlock`` for the blocks.

    Initialisation as in the code: every conv (stem included) nninit.kaiming with gain "relu"
    (N(0, 2 / (in*3*3))) and a constant-0 bias; BN left at Torch's default reset -- scale
    uniform(0, 1), shift 0; the classifier at Torch's default (uniform +-1/sqrt(64) weight and
    bias, which is PyTorch's default too). BN momentum is Torch's default 0.1.
    """

    def __init__(self, num_classes: int = 10, depth: int = 110, p_last: float = 0.5):
        super().__init__()
        n = _blocks_per_stage(depth)
        self.conv = nn.Conv2d(3, 16, 3, 1, 1)
        self.bn = nn.BatchNorm2d(16)
        num_blocks = 3 * n
        blocks, width = [], 16
        for stage_width in (16, 32, 64):
            for i in range(n):
                stride = 2 if stage_width != 16 and i == 0 else 1
                death_rate = (len(blocks) + 1) / num_blocks * (1.0 - p_last)
                blocks.append(_DropBlock(width, stage_width, stride, death_rate))
                width = stage_width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        # main.lua: optim.sgd with weightDecay 1e-4 (and Nesterov momentum 0.9) on every parameter.
        self.param_multipliers = _multipliers(self, _decay_everything)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.weight, 0.0, 1.0)
                nn.init.zeros_(module.bias)
        self.fc.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))


# ----------------------------------------------------------------------------------------------
# Wide ResNet (SGDR) and DenseNet (CLR Table 4)
# ----------------------------------------------------------------------------------------------


def _lasagne_bn(channels: int) -> nn.BatchNorm2d:
    # Lasagne's BatchNormLayer defaults: epsilon 1e-4, running averages with alpha 0.1 (= momentum
    # 0.1). Lasagne averages 1 / sqrt(biased var + eps) where PyTorch averages the unbiased variance;
    # that small test-time difference is not modelled.
    return nn.BatchNorm2d(channels, eps=1e-4, momentum=0.1)


class _WideBlock(nn.Module):
    """A pre-activation block of SGDR's ``ResNet_FullPre_Wide`` (loshchil/SGDR ``SGDR_WRNs.py``):
    BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3, plus the shortcut.

    As in that code: the first block of the network skips the leading BN-ReLU (its input is the
    stem's BN-ReLU output); the first conv has no bias (Lasagne's batch_norm() helper removes it)
    and the second has one; the first block and each strided block get a 1x1 projection without
    bias -- applied to the block's raw input, not the pre-activated one -- and every other block
    the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float, first: bool):
        super().__init__()
        self.bn0 = None if first else _lasagne_bn(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = _lasagne_bn(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        projected = first or stride > 1
        self.projection = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False) if projected else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.bn0 is None else F.relu(self.bn0(x))
        h = self.conv2(self.dropout(F.relu(self.bn1(self.conv1(h)))))
        return h + (x if self.projection is None else self.projection(x))


class WideResNet(nn.Module):
    """Pre-activation wide ResNet WRN-``depth``-``width`` (Zagoruyko & Komodakis) as SGDR's Lasagne
    code builds it (``ResNet_FullPre_Wide`` in loshchil/SGDR ``SGDR_WRNs.py``; its n = (depth - 4) / 6).

    conv(16, 3x3) -> BN -> ReLU -> three stages of n blocks with 16k, 32k, 64k channels (see
    ``_WideBlock``; stages 2 and 3 stride by 2) -> BN -> ReLU -> global average pool -> linear.
    SGDR used no dropout (``dropoutrate = 0``). Parameters: WRN-28-10 36.5M, WRN-16-8 11.0M,
    WRN-16-4 2.75M, as published.

    Initialisation as in the code: 3x3 convs HeNormal(gain="relu") = N(0, 2 / (in*3*3)); the 1x1
    projections name no W, so Lasagne's default GlorotUniform (= torch's xavier_uniform_); the dense
    layer HeNormal() = N(0, 1 / 64k); biases 0; BN scale 1, shift 0.
    """

    def __init__(self, num_classes: int = 10, depth: int = 28, width: int = 10, dropout: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"a WRN has depth 6n + 4 (16, 22, 28, 40, ...); got {depth}")
        n = (depth - 4) // 6
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = _lasagne_bn(16)
        blocks, channels = [], 16
        for stage, stage_channels in enumerate((16 * width, 32 * width, 64 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(_WideBlock(channels, stage_channels, stride, dropout, first=not blocks))
                channels = stage_channels
        self.blocks = nn.Sequential(*blocks)
        self.bn_final = _lasagne_bn(channels)
        self.fc = nn.Linear(channels, num_classes)
        self.param_multipliers = _multipliers(self, self._lasagne_multipliers)
        self.reset_parameters()

    @staticmethod
    def _lasagne_multipliers(module: nn.Module, local_name: str) -> tuple[float, float]:
        # SGDR_WRNs.py adds regularize_layer_params(all_layers, l2) * 0.0005 to the loss. Lasagne tags
        # only conv and dense weights "regularizable"; biases and BN's beta/gamma are not, so they get
        # no decay. (That penalty is 0.0005 * sum(w^2): a decay gradient of 0.001 * w, so the
        # solver's weight_decay must be 1e-3 to match the code, 5e-4 to match the paper's wording.)
        decayed = isinstance(module, (nn.Conv2d, nn.Linear)) and local_name == "weight"
        return (1.0, 1.0 if decayed else 0.0)

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module.kernel_size == (1, 1):
                    nn.init.xavier_uniform_(module.weight)
                else:
                    nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.kaiming_normal_(self.fc.weight, mode="fan_in", nonlinearity="linear")
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.relu(self.bn_final(x)).mean((2, 3)))


class _DenseLayer(nn.Module):
    """One composite layer of a dense block: BN-ReLU-conv3x3(k), or with the bottleneck
    BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k); its k new channels are concatenated to its input.
    Dropout (off by default) follows each conv, as in the Torch code."""

    def __init__(self, in_channels: int, growth: int, bottleneck: bool, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        if bottleneck:
            self.conv1 = nn.Conv2d(in_channels, 4 * growth, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(4 * growth)
            self.conv2 = nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)
        else:
            self.conv1, self.bn2 = None, None
            self.conv2 = nn.Conv2d(in_channels, growth, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x))
        if self.conv1 is not None:
            h = F.relu(self.bn2(self.dropout(self.conv1(h))))
        return torch.cat([x, self.dropout(self.conv2(h))], dim=1)


class _Transition(nn.Module):
    """Between dense blocks: BN-ReLU-conv1x1-[dropout]-2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.dropout(self.conv(F.relu(self.bn(x)))), 2)


class DenseNet(nn.Module):
    """Huang et al.'s CIFAR DenseNet as liuzhuang13/DenseNet builds it (``densenet.lua`` and
    ``models/densenet.lua``) -- the "DenseNet" of the CLR paper's Table 4.

    conv3x3 -> three dense blocks of (depth - 4) / 3 composite layers ((depth - 4) / 6 with the
    bottleneck, whose layers hold two convs) joined by transitions that keep floor(compression * c)
    channels -> BN -> ReLU -> global average pool (8x8) -> linear. The defaults are the repository's
    DenseNet-BC (L = 100, k = 12; 0.8M parameters); DenseNet-40 is ``depth=40, bottleneck=False,
    compression=1`` (1.0M).

    The initial conv has 2k channels for DenseNet-BC and 16 otherwise, as the paper states; the Torch
    code uses 2k for every variant, which ``initial_channels`` can reproduce.

    Initialisation as in the Torch code ("following ResNet"): conv weights N(0, 2 / (k*k*out)),
    no conv biases, BN scale 1 / shift 0, linear Torch's default weights and a zero bias.
    """

    def __init__(
        self,
        num_classes: int = 10,
        depth: int = 100,
        growth: int = 12,
        bottleneck: bool = True,
        compression: float = 0.5,
        dropout: float = 0.0,
        initial_channels: int | None = None,
    ):
        super().__init__()
        convs_per_layer = 2 if bottleneck else 1
        if depth < 4 + 3 * convs_per_layer or (depth - 4) % (3 * convs_per_layer):
            per_block = 3 * convs_per_layer
            raise ValueError(f"a DenseNet here has depth 4 + a multiple of {per_block}; got {depth}")
        layers_per_block = (depth - 4) // (3 * convs_per_layer)
        if initial_channels is None:
            initial_channels = 2 * growth if bottleneck and compression < 1 else 16
        self.conv = nn.Conv2d(3, initial_channels, 3, 1, 1, bias=False)
        stages, channels = [], initial_channels
        for block in range(3):
            for _ in range(layers_per_block):
                stages.append(_DenseLayer(channels, growth, bottleneck, dropout))
                channels += growth
            if block < 2:
                out_channels = math.floor(channels * compression)
                stages.append(_Transition(channels, out_channels, dropout))
                channels = out_channels
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)
        # The repository trains with fb.resnet.torch's optim.sgd: weight decay 1e-4 on every parameter.
        self.param_multipliers = _multipliers(self, _decay_everything)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _torch_resnet_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.features(self.conv(x))))
        return self.fc(x.mean((2, 3)))


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

MODELS = {
    "caffe_cifar10_full": CaffeCifar10Full,
    "caffe_cifar10_quick": CaffeCifar10Quick,
    "caffe_cifar10_sigmoid_bn": CaffeCifar10SigmoidBN,
    "lenet": CaffeLeNet,
    "resnet": resnet,
    "resnet_sd": StochasticDepthResNet,
    "wrn": WideResNet,
    "densenet": DenseNet,
}


def build_model(spec: dict, num_classes: int) -> nn.Module:
    """A freshly initialised model from its spec, e.g. ``{"name": "caffe_cifar10_full"}``.
    Seed the global RNG first: initialisation draws from it."""
    spec = dict(spec)
    name = spec.pop("name")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    model = MODELS[name](num_classes=num_classes, **spec)
    if not hasattr(model, "param_multipliers"):
        model.param_multipliers = {n: (1.0, 1.0) for n, _ in model.named_parameters()}
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
