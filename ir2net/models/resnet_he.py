"""The real-valued ResNet-20 of He et al. (2016, Sec. 4.2): the data calibration's network.

Not part of IR²Net.  It answers a question the paper cannot: how far a user's copy of
CIFAR-10 and software stack sit from canonical.  Its canonical figures are public --
91.25 % in the ResNet paper (Table 6) and 91.73 % (best epoch) with the recipe of
``akamaster/pytorch_resnet_cifar10``, the repository the authors' CIFAR trainer descends
from -- so a shortfall measured here is the data's and the stack's, not the method's
(:mod:`ir2net.calibration`).

Structure, as in both sources: a 3x3 stem of 16 channels + BN + ReLU; three stages of three
basic blocks (conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU) of 16, 32 and 64 channels,
the first block of stages 2 and 3 with stride 2; option-A shortcuts (stride-2 subsampling and
zero channel padding, no parameters); global average pooling; a linear classifier.  Kaiming
normal initialisation of conv and linear weights (akamaster's ``_weights_init``).
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import OptionAShortcut, resnet_stages
from .registry import register_model

__all__ = ["BasicBlock", "HeResNet", "resnet20"]


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + s(x))`` with real-valued 3x3 convolutions."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (OptionAShortcut(in_channels, out_channels, stride)
                         if stride != 1 or in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class HeResNet(nn.Module):
    """A CIFAR ResNet of He et al.: stem, ``layer1..3``, pooling, classifier."""

    def __init__(self, depths: tuple[int, int, int], num_classes: int = 10):
        super().__init__()
        widths = [16, 32, 64]
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, _ = resnet_stages(BasicBlock, widths, depths, widths[0])
        self.stages = nn.Sequential(*stages.values())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


@register_model(input_size=(3, 32, 32), recipe="cifar10_calibration_resnet20", binary=False)
def resnet20(num_classes: int = 10) -> HeResNet:
    """ResNet-20 of He et al. (2016), real-valued, ReLU: the data calibration's network."""
    return HeResNet((3, 3, 3), num_classes)
