"""The network of SGDR's Lasagne code (loshchil/SGDR ``SGDR_WRNs.py``): a pre-activation wide
ResNet, with Lasagne's batch-norm defaults and its L2 penalty on the weights it tags regularizable."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .parts import parameter_multipliers

__all__ = ["WideResNet"]


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
        self.param_multipliers = parameter_multipliers(self, self._lasagne_multipliers)
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
