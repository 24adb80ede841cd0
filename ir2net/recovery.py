"""Information Recovery, IRec (Eq. 11-13), and its compact form CIRec (Eq. 14-16).

Shallow feature maps ``F_i`` are pooled to the last stage's size (Eq. 11),
concatenated with ``F_last`` (Eq. 12) and fused back to ``C_n`` channels:

* IRec (Eq. 13): ``NL(BN(Conv1x1(F_cat)))``.
* CIRec (Eq. 14-16): ``F_channel = NL(BN(Conv1x1(F_cat)))`` with ``C_n / r``
  channels, ``F_spatial = NL(BN(GroupConv3x3(F_channel, g)))`` with the rest,
  and ``F_fused = Concatenate(F_channel, F_spatial)``.

Channel split, as in the authors' code: the primary conv has ``ceil(C_n / r)``
channels, the group conv ``ceil(C_n / r) * (r - 1)``, and the concatenation is
cut to ``C_n``.  This equals the paper's ``C_n / r`` and ``C_n - C_n / r``
whenever ``r`` divides ``C_n``; otherwise (r = 20 on 512 channels) the paper's
split cannot be built with ``g = C_I`` groups (486 is not a multiple of 26).

The settings (``RecoverySpec``) and the paper's Tables II and V as presets live in
:mod:`ir2net.recovery_presets` (pure Python: the workflow reads them without torch).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .recovery_presets import (RECOVERY_PRESETS, GroupSetting, RecoveryPreset, RecoverySpec,
                               recovery_preset)

__all__ = ["RecoverySpec", "RecoveryPreset", "RECOVERY_PRESETS", "recovery_preset", "IRec",
           "CIRec", "InformationRecovery", "build_fusion"]

ActLayer = Callable[[int], nn.Module]


class IRec(nn.Sequential):
    """Eq. 13: 1x1 conv + BN + nonlinearity from ``sum C_i`` to ``C_n`` channels."""

    def __init__(self, in_channels: int, out_channels: int, act_layer: ActLayer):
        super().__init__(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.BatchNorm2d(out_channels), act_layer(out_channels))


class CIRec(nn.Module):
    """Eq. 14-16: 1x1 reduction to ``C_n / r`` channels, then a 3x3 group conv."""

    def __init__(self, in_channels: int, out_channels: int, r: int, g: GroupSetting,
                 act_layer: ActLayer):
        super().__init__()
        if r < 2:
            raise ValueError("CIRec needs r >= 2; r = 1 is IRec")
        primary = math.ceil(out_channels / r)
        spatial = primary * (r - 1)
        groups = primary if g == "C_I" else int(g)
        if primary % groups or spatial % groups:
            raise ValueError(f"CIRec: g={groups} groups must divide both {primary} input and "
                             f"{spatial} output channels of the group conv (r={r})")
        self.out_channels = out_channels
        self.channel = nn.Sequential(nn.Conv2d(in_channels, primary, 1, bias=False),
                                     nn.BatchNorm2d(primary), act_layer(primary))
        self.spatial = nn.Sequential(nn.Conv2d(primary, spatial, 3, padding=1, groups=groups,
                                               bias=False),
                                     nn.BatchNorm2d(spatial), act_layer(spatial))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = self.channel(x)
        fused = torch.cat([channel, self.spatial(channel)], dim=1)
        return fused[:, :self.out_channels]


def build_fusion(spec: RecoverySpec, in_channels: int, out_channels: int,
                 act_layer: ActLayer) -> nn.Module:
    if spec.r == 1:
        return IRec(in_channels, out_channels, act_layer)
    return CIRec(in_channels, out_channels, spec.r, spec.g, act_layer)


class InformationRecovery(nn.Module):
    """Eq. 11-12 (pool and concatenate the taps) followed by the fusion of Eq. 13 or 14-16."""

    def __init__(self, tap_channels: Sequence[int], last_channels: int, spec: RecoverySpec,
                 act_layer: ActLayer):
        super().__init__()
        self.spec = spec
        self.in_channels = sum(tap_channels) + last_channels
        self.fusion = build_fusion(spec, self.in_channels, last_channels, act_layer)

    def forward(self, taps: Sequence[torch.Tensor], last: torch.Tensor) -> torch.Tensor:
        size = last.shape[-2:]
        pooled = [F.adaptive_avg_pool2d(t, size) if t.shape[-2:] != size else t for t in taps]
        return self.fusion(torch.cat([*pooled, last], dim=1))
