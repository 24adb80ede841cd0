"""VGG-Small for CIFAR-10 (LQ-Nets' variant, used by IR-Net and by the authors).

``conv0`` (real) -> [conv1, pool] -> conv2 -> [conv3, pool] -> conv4 -> [conv5, pool],
each conv followed by BN and Hardtanh, then a real linear layer on the flattened
512x4x4 map.  Taps for information recovery:

* ``authors`` -- the stem output only (the public code): 128 + 512 = 640 channels in.
* ``paper`` -- the stem output plus the last activated map at each resolution before
  a downsampling (``block2`` at 16x16, ``block4`` at 8x8): 128+256+512+512 = 1408 in.
"""
from __future__ import annotations

import math
from typing import Optional

from torch import nn

from ..binarize import Binarization
from ..recovery_presets import RecoverySpec
from .layers import FeatureBackbone, IR2NetClassifier, hardtanh
from .registry import register_model

__all__ = ["vgg_small"]

_TAPS = {"paper": ("stem", "block2", "block4"), "authors": ("stem",)}


@register_model(input_size=(3, 32, 32), recipe="cifar10_vgg_small", tap_styles=tuple(_TAPS),
                sized_classifier=True)
def vgg_small(num_classes: int = 10, precision: str = "binary", sign_zero: str = "plus_one",
              scaling: str = "none", recovery: Optional[RecoverySpec] = None,
              taps: str = "authors", image_size: int = 32) -> IR2NetClassifier:
    """VGG-Small (Table III)."""
    if taps not in _TAPS:
        raise ValueError(f"unknown tap style {taps!r}; expected one of {', '.join(_TAPS)}")
    binarization = Binarization(precision, sign_zero, scaling)
    act = hardtanh
    stem = nn.Sequential(nn.Conv2d(3, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128),
                         act(128))
    plan = [("block1", 128, 128, True), ("block2", 128, 256, False), ("block3", 256, 256, True),
            ("block4", 256, 512, False), ("block5", 512, 512, True)]
    stages, channels = {}, {"stem": 128}
    for name, cin, cout, pool in plan:
        layers = [binarization.conv(cin, cout, 3, 1, 1)]
        if pool:  # the authors pool before BN: conv -> pool -> BN -> act
            layers.append(nn.MaxPool2d(2, 2))
        layers += [nn.BatchNorm2d(cout), act(cout)]
        stages[name] = nn.Sequential(*layers)
        channels[name] = cout
    final_size = image_size // 8
    model = IR2NetClassifier(FeatureBackbone(stem, stages, channels), num_classes,
                             recovery=recovery, taps=_TAPS[taps], act_layer=act,
                             head="flatten", flatten_size=final_size * final_size)
    for module in model.modules():  # initialisation of the authors' VGG-Small
        if isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)
    return model
