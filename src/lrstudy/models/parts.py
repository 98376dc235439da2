"""Pieces shared by networks of different origins: the zero-channel widening of parameter-free
shortcuts, CIFAR ResNets' depth rule, per-parameter (lr_mult, decay_mult) tables, and He-normal
convolutions."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["pad_channels", "parameter_multipliers", "blocks_per_stage", "he_normal_convs_"]


def pad_channels(x: torch.Tensor, extra: int) -> torch.Tensor:
    """Append ``extra`` all-zero channels: the parameter-free widening of "option A" shortcuts.
    F.pad keeps a channels_last input channels_last (torch.cat with fresh zeros does not)."""
    return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x


def parameter_multipliers(model: nn.Module, rule) -> dict[str, tuple[float, float]]:
    """``{name: rule(module, local_name)}`` for every parameter, named as ``named_parameters()`` does."""
    return {
        f"{prefix}.{local}" if prefix else local: rule(module, local)
        for prefix, module in model.named_modules()
        for local, _ in module.named_parameters(recurse=False)
    }


def blocks_per_stage(depth: int) -> int:
    """n of a CIFAR ResNet-(6n + 2): the blocks in each of its three stages."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (20, 32, 44, 56, 110, ...); got {depth}")
    return (depth - 2) // 6


def he_normal_convs_(model: nn.Module, batch_norm: Callable[[nn.BatchNorm2d], None]) -> None:
    """Every convolution N(0, 2 / fan_in) with a zero bias (Caffe's "msra" filler, Torch's nninit
    kaiming with gain "relu"), and every BN layer as ``batch_norm`` sets it -- in module order, the
    order the random draws are made in."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            batch_norm(module)
