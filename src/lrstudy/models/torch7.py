"""Networks from Torch7 code, as the CLR paper's Table 4 ran them: He et al.'s CIFAR ResNet
(facebook/fb.resnet.torch), the ResNet with stochastic depth (yueatsprograms/Stochastic_Depth) and
DenseNet (liuzhuang13/DenseNet). All three train with Torch's ``optim.sgd``, which decays every
parameter, and initialise "following ResNet"."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .parts import blocks_per_stage, he_normal_convs_, pad_channels, parameter_multipliers

__all__ = ["ResNetCifar", "StochasticDepthResNet", "DenseNet"]


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


def _three_stages(n: int, block: Callable[[int, int, int, int], nn.Module]) -> nn.Sequential:
    """He et al.'s CIFAR trunk: three stages of ``n`` blocks with 16, 32 and 64 channels, the first
    block of stages 2 and 3 striding by 2; ``block(index, in_channels, out_channels, stride)`` makes
    each, in order (the order the weights are drawn in)."""
    blocks, width = [], 16
    for stage_width in (16, 32, 64):
        for i in range(n):
            stride = 2 if stage_width != 16 and i == 0 else 1
            blocks.append(block(len(blocks), width, stage_width, stride))
            width = stage_width
    return nn.Sequential(*blocks)


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
        shortcut = pad_channels(x[:, :, :: self.stride, :: self.stride], self.extra_channels)
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

    reset_parameters = _torch_resnet_init

    def __init__(self, num_classes: int = 10, depth: int = 56, bn_momentum: float = 0.1):
        super().__init__()
        n = blocks_per_stage(depth)
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16, momentum=bn_momentum)
        self.blocks = _three_stages(n, lambda index, width, out, stride: _OptionABlock(width, out, stride, bn_momentum))
        self.fc = nn.Linear(64, num_classes)
        # fb.resnet.torch trains with optim.sgd, weightDecay 1e-4 on every parameter.
        self.param_multipliers = parameter_multipliers(self, _decay_everything)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))


class _DropBlock(nn.Module):
    """A residual block of yueatsprograms/Stochastic_Depth (``ResidualDrop.lua``).

    Training: with probability ``death_rate`` the branch is dropped for the whole mini-batch (its
    output is not added and its BN statistics are not updated; its parameters get zero gradients,
    so Torch's ``optim.sgd``, which moves the whole flattened parameter vector, still applies
    momentum and weight decay to them); otherwise relu(branch(x) + skip(x)).
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

    def forward(self, x: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
        """``alive``: in training, whether the block survives this mini-batch (a 0-dim bool tensor,
        drawn by the network)."""
        skip = F.avg_pool2d(x, self.stride) if self.stride > 1 else x
        skip = pad_channels(skip, self.extra_channels)
        if not self.training:
            return F.relu(skip + self.survival * self.branch(x))
        # The decision stays a tensor (reading it would wait for the device, and a compiled network
        # would recompile for it), so the branch is computed either way and then chosen or not: the
        # output is exactly skip + branch or skip, and a dead branch's parameters get zero gradients.
        # Its BN layers update copies of their statistics, kept only if the block survives (the Lua
        # code does not run a dead branch, so its statistics stay as they were).
        bns = (self.bn1, self.bn2)
        kept = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
        out = torch.where(alive, skip + self._branch_updating(x, kept), skip)
        for bn, (mean, var) in zip(bns, kept):
            bn.running_mean.copy_(torch.where(alive, mean, bn.running_mean))
            bn.running_var.copy_(torch.where(alive, var, bn.running_var))
            bn.num_batches_tracked.add_(alive)
        return F.relu(out)

    def _branch_updating(self, x: torch.Tensor, statistics) -> torch.Tensor:
        """:meth:`branch` in training, with BN's running statistics updated in ``statistics`` (pairs
        of mean and variance) instead of the layers' own: what ``nn.BatchNorm2d`` computes."""
        def norm(bn: nn.BatchNorm2d, h: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
            return F.batch_norm(h, mean, var, bn.weight, bn.bias, True, bn.momentum, bn.eps)

        (mean1, var1), (mean2, var2) = statistics
        h = F.relu(norm(self.bn1, self.conv1(x), mean1, var1))
        return norm(self.bn2, self.conv2(h), mean2, var2)


def _torch_default_bn(bn: nn.BatchNorm2d) -> None:
    """Torch7's BN reset: scale uniform(0, 1), shift 0."""
    nn.init.uniform_(bn.weight, 0.0, 1.0)
    nn.init.zeros_(bn.bias)


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
        n = blocks_per_stage(depth)
        self.conv = nn.Conv2d(3, 16, 3, 1, 1)
        self.bn = nn.BatchNorm2d(16)
        # block l = index + 1 of L = 3n dies with probability l / L * (1 - p_last)
        self.blocks = _three_stages(n, lambda index, width, out, stride: _DropBlock(
            width, out, stride, (index + 1) / (3 * n) * (1.0 - p_last)))
        self.fc = nn.Linear(64, num_classes)
        # main.lua: optim.sgd with weightDecay 1e-4 (and Nesterov momentum 0.9) on every parameter.
        self.param_multipliers = parameter_multipliers(self, _decay_everything)
        # (a buffer, so it moves with the network; not saved: it is the architecture, not state)
        self.register_buffer("death_rates", torch.tensor([b.death_rate for b in self.blocks], dtype=torch.float64),
                             persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        he_normal_convs_(self, _torch_default_bn)
        self.fc.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        if not self.training:
            return self.fc(self.blocks(x).mean((2, 3)))
        # One uniform draw per block per training forward, in block order, like the Lua code's
        # torch.rand(1) per block per mini-batch, in double precision like Torch7's; all drawn at once
        # (the same numbers as one at a time) from the generator of the device the input is on.
        alive = torch.rand(len(self.blocks), dtype=torch.float64, device=x.device) >= self.death_rates
        for block, survives in zip(self.blocks, alive):
            x = block(x, survives)
        return self.fc(x.mean((2, 3)))


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

    reset_parameters = _torch_resnet_init

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
        self.param_multipliers = parameter_multipliers(self, _decay_everything)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.features(self.conv(x))))
        return self.fc(x.mean((2, 3)))
