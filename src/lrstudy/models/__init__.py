"""The networks of the study, as the papers' own files define them.

Every model carries ``param_multipliers``: for each parameter name, ``(lr_mult, decay_mult)`` -- the
factors by which that parameter's learning rate and weight decay differ from the solver's. Models
that come from Caffe prototxt files carry the file's multipliers (Caffe's default is 1 for both).
Models that come from Torch or Lasagne code carry the multipliers that reproduce what that code did:
Torch's ``optim.sgd`` decays every parameter, Lasagne's L2 penalty only the weights it tags
"regularizable". Each model's comments name the file it follows.
"""

from __future__ import annotations

from torch import nn

from .caffe import CaffeBatchNorm2d, CaffeCifar10Full, CaffeCifar10SigmoidBN, CaffeLeNet, CaffeResNetCifar, WithinChannelLRN
from .lasagne import WideResNet
from .torch7 import DenseNet, ResNetCifar, StochasticDepthResNet

__all__ = [
    "MODELS",
    "build_model",
    "count_parameters",
    "WithinChannelLRN",
    "CaffeBatchNorm2d",
    "CaffeCifar10Full",
    "CaffeCifar10SigmoidBN",
    "CaffeLeNet",
    "ResNetCifar",
    "CaffeResNetCifar",
    "resnet",
    "StochasticDepthResNet",
    "WideResNet",
    "DenseNet",
]


def resnet(num_classes: int = 10, depth: int = 56, variant: str = "option_a", **kwargs) -> nn.Module:
    """A CIFAR ResNet-``depth``: ``variant`` "option_a" is He et al.'s as fb.resnet.torch builds it
    (ResNetCifar), "caffe_sc" the super-convergence authors' Caffe file (CaffeResNetCifar)."""
    variants = {"option_a": ResNetCifar, "caffe_sc": CaffeResNetCifar}
    if variant not in variants:
        raise ValueError(f"unknown resnet variant {variant!r}; known variants: {sorted(variants)}")
    return variants[variant](num_classes=num_classes, depth=depth, **kwargs)


MODELS = {
    "caffe_cifar10_full": CaffeCifar10Full,
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
