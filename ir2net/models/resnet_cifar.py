"""CIFAR-10 ResNets: ResNet-20 in the Bi-Real and the IR-Net structure, and ResNet-18.

Provenance: ``resnet20_bireal`` and ``resnet18_cifar`` follow the authors' public
``CIFAR-10/ResNet-20`` and ``CIFAR-10/ResNet-18`` models; ``resnet20_irnet`` is this
project's own construction (see ``docs/divergences.md``).  The first conv and the
classifier are real-valued (Sec. V-A2); Hardtanh is the nonlinearity on CIFAR-10.

* ``resnet20_bireal`` -- Table I's backbone and the "*" rows of Table III: every
  binary 3x3 conv has its own shortcut (Bi-Real Net).
* ``resnet20_irnet`` -- Table III's plain ResNet-20 row: one shortcut per basic block,
  as in IR-Net.  The authors published no such model; we build it from the Bi-Real
  model's parts (stem, widths, option-A shortcut, Hardtanh, Kaiming init, recovery taps)
  with IR-Net's basic block, so Table III's row compares the block structure only.
* ``resnet18_cifar`` -- Table III's ResNet-18 rows: IR-Net-structure blocks with a
  real 1x1 conv + BN shortcut when the shape changes, as in the authors' model.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..binarize import Binarization
from ..recovery_presets import RecoverySpec
from .layers import (FeatureBackbone, IR2NetClassifier, OptionAShortcut, ResidualBlock, hardtanh,
                     resnet_stages)
from .registry import register_model

__all__ = ["BiRealBlock", "IRNetBlock", "resnet20_bireal", "resnet20_irnet", "resnet18_cifar"]


class BiRealBlock(ResidualBlock):
    """Two binary convs, each wrapped by its own shortcut:
    ``y = act(bn1(conv1(x)) + s(x)); out = act(bn2(conv2(y)) + y)``."""

    residual_additions = 2  # read by ir2net.complexity

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 binarization: Binarization, act_layer: Callable[[int], nn.Module]):
        super().__init__()
        self.conv1 = binarization.conv(in_channels, out_channels, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = act_layer(out_channels)
        self.conv2 = binarization.conv(out_channels, out_channels, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = act_layer(out_channels)
        self.shortcut = (OptionAShortcut(in_channels, out_channels, stride)
                         if stride != 1 or in_channels != out_channels else nn.Identity())

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output before its final activation (the residual sum)."""
        y = self.act1(self.bn1(self.conv1(x)) + self.shortcut(x))
        return self.bn2(self.conv2(y)) + y


class IRNetBlock(ResidualBlock):
    """The basic block of IR-Net: ``act(bn2(conv2(act(bn1(conv1(x))))) + s(x))``."""

    residual_additions = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 binarization: Binarization, act_layer: Callable[[int], nn.Module],
                 shortcut: str = "A"):
        super().__init__()
        self.conv1 = binarization.conv(in_channels, out_channels, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = act_layer(out_channels)
        self.conv2 = binarization.conv(out_channels, out_channels, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = act_layer(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = OptionAShortcut(in_channels, out_channels, stride)
        else:  # real-valued projection, as in the authors' CIFAR ResNet-18
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output before its final activation (the residual sum)."""
        y = self.act1(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(y)) + self.shortcut(x)


def _cifar_resnet(block_fn, widths: list[int], depths: list[int], num_classes: int,
                  binarization: Binarization, recovery: Optional[RecoverySpec]) -> IR2NetClassifier:
    act = hardtanh
    stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
                         nn.BatchNorm2d(widths[0]), act(widths[0]))
    stages, channels = resnet_stages(
        lambda cin, cout, stride: block_fn(cin, cout, stride, binarization, act),
        widths, depths, widths[0])
    # Paper and authors agree for the CIFAR ResNets: the stem, the output of every stage
    # that precedes a downsampling, and the last stage.
    tap_names = ["stem"] + [f"layer{i + 1}" for i in range(len(widths) - 1)]
    model = IR2NetClassifier(FeatureBackbone(stem, stages, {"stem": widths[0], **channels}),
                             num_classes, recovery=recovery, taps=tap_names, act_layer=act)
    for module in model.modules():  # Kaiming normal for conv and linear (authors' code)
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight)
    return model


@register_model(input_size=(3, 32, 32), recipe="cifar10_resnet20_bireal")
def resnet20_bireal(num_classes: int = 10, precision: str = "binary", sign_zero: str = "plus_one",
                    scaling: str = "none",
                    recovery: Optional[RecoverySpec] = None) -> IR2NetClassifier:
    """ResNet-20 with the Bi-Real structure (Table I; Table III, rows marked *)."""
    return _cifar_resnet(BiRealBlock, [16, 32, 64], [3, 3, 3], num_classes,
                         Binarization(precision, sign_zero, scaling), recovery)


@register_model(input_size=(3, 32, 32), recipe="cifar10_resnet20_irnet")
def resnet20_irnet(num_classes: int = 10, precision: str = "binary", sign_zero: str = "plus_one",
                   scaling: str = "none",
                   recovery: Optional[RecoverySpec] = None) -> IR2NetClassifier:
    """ResNet-20 with the IR-Net structure, one shortcut per basic block (Table III).

    The project's own construction, not the authors' code (they published none): the
    Bi-Real ResNet-20 with :class:`IRNetBlock` in place of :class:`BiRealBlock`
    (docs/divergences.md)."""
    return _cifar_resnet(IRNetBlock, [16, 32, 64], [3, 3, 3], num_classes,
                         Binarization(precision, sign_zero, scaling), recovery)


@register_model(input_size=(3, 32, 32), recipe="cifar10_resnet18")
def resnet18_cifar(num_classes: int = 10, precision: str = "binary", sign_zero: str = "plus_one",
                   scaling: str = "none",
                   recovery: Optional[RecoverySpec] = None) -> IR2NetClassifier:
    """ResNet-18 for CIFAR-10: 3x3 stem, four stages of two blocks (Table III)."""
    def block(cin, cout, stride, binarization, act):
        return IRNetBlock(cin, cout, stride, binarization, act, shortcut="conv")
    return _cifar_resnet(block, [64, 128, 256, 512], [2, 2, 2, 2], num_classes,
                         Binarization(precision, sign_zero, scaling), recovery)
