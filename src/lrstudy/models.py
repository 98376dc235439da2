"""The networks of the study, as the papers' own files define them.

Every model carries ``param_multipliers``: for each parameter name, Caffe's ``(lr_mult, decay_mult)``
-- the factors by which that parameter's learning rate and weight decay differ from the solver's.
Models that come from PyTorch-style code use ``(1, 1)`` everywhere.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MODELS", "build_model", "CaffeCifar10Full", "WithinChannelLRN", "count_parameters"]


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


MODELS = {"caffe_cifar10_full": CaffeCifar10Full}


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
