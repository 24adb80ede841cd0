"""ImageNet models: Bi-Real ResNet-18 (the backbone of IR²Net-A..D, Table IV) and
the torchvision ResNet-34 teacher of the two-stage recipe.

Bi-Real ResNet-18, as in the authors' ``ImageNet/IR2Net-*/birealnet.py``: a real
7x7 stem conv + BN + PReLU + max-pool; four stages of four blocks, each block
``PReLU(BN(binary conv3x3(x)) + shortcut(x))``; when the shape changes the
shortcut is AvgPool(2) + real 1x1 conv + BN; global average pooling and a real
linear classifier.  Information-recovery taps (paper and code agree): the stem
output before max-pooling and the outputs of ``layer1``-``layer3``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torchvision
from torch import nn

from ..binarize import Binarization
from ..recovery_presets import RecoverySpec
from .layers import FeatureBackbone, IR2NetClassifier, ResidualBlock, prelu, resnet_stages
from .registry import register_model

__all__ = ["BiRealImageNetBlock", "resnet18_bireal_imagenet", "resnet34_teacher",
           "TeacherWeightsError"]


class TeacherWeightsError(RuntimeError):
    pass


class BiRealImageNetBlock(ResidualBlock):
    """``PReLU(BN(binary conv3x3(x)) + shortcut(x))``."""

    residual_additions = 1  # read by ir2net.complexity
    final_activation_name = "act"

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 binarization: Binarization):
        super().__init__()
        self.conv = binarization.conv(in_channels, out_channels, 3, stride, 1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = prelu(out_channels)
        self.downsample = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=stride),
                                            nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output before its PReLU (the residual sum)."""
        return self.bn(self.conv(x)) + self.downsample(x)


@register_model(input_size=(3, 224, 224), recipe="imagenet_stage2")
def resnet18_bireal_imagenet(num_classes: int = 1000, precision: str = "binary",
                             sign_zero: str = "plus_one", scaling: str = "none",
                             recovery: Optional[RecoverySpec] = None) -> IR2NetClassifier:
    """Bi-Real ResNet-18 for ImageNet (Table IV, VI); ``precision="fp"`` is the FP row."""
    binarization = Binarization(precision, sign_zero, scaling)
    stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), prelu(64))
    pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    stages, channels = resnet_stages(
        lambda cin, cout, stride: BiRealImageNetBlock(cin, cout, stride, binarization),
        [64, 128, 256, 512], [4, 4, 4, 4], 64)
    # paper and authors agree on the taps of this backbone
    return IR2NetClassifier(FeatureBackbone(stem, {"pool": pool, **stages},
                                            {"stem": 64, "pool": 64, **channels}), num_classes,
                            recovery=recovery, taps=("stem", "layer1", "layer2", "layer3"),
                            act_layer=prelu)


@register_model(input_size=(3, 224, 224), recipe="imagenet_teacher", binary=False)
def resnet34_teacher(num_classes: int = 1000, weights: Optional[str] = None) -> nn.Module:
    """torchvision ResNet-34, the distillation teacher of the ImageNet recipe.

    ``weights``: ``None`` (untrained, for tests), ``"imagenet"`` (torchvision's
    IMAGENET1K_V1 through its weights API; needs the network or a filled torch hub
    cache), or a path to a state_dict / an ``ir2net train`` output directory.
    """
    if weights == "imagenet":
        try:
            return torchvision.models.resnet34(
                weights=torchvision.models.ResNet34_Weights.IMAGENET1K_V1)
        except Exception as error:  # no network here: say how to provide the weights
            raise TeacherWeightsError(
                f"could not obtain torchvision's ImageNet ResNet-34 weights ({error}). "
                "Download resnet34-b627a593.pth on a machine with internet access and set "
                "train.teacher_weights to its path (`ir2net train --set "
                "train.teacher_weights=PATH`; in the workflow: imagenet.teacher_weights in the "
                "profile config)") from error
    model = torchvision.models.resnet34(num_classes=num_classes)
    if weights:
        from ..artifacts import load_state_dict
        model.load_state_dict(load_state_dict(weights))
    return model
