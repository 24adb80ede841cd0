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

The presets below are the paper's Tables II and V.  They are the single place
these settings are written down: the report renders the tables from them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RecoverySpec", "RECOVERY_PRESETS", "recovery_preset", "IRec", "CIRec",
           "InformationRecovery", "build_fusion"]

GroupSetting = Union[int, str]  # an integer, or "C_I": one group per input channel


@dataclass(frozen=True)
class RecoverySpec:
    """A recovery module's settings.  ``r = 1`` is plain IRec (Table V, note)."""

    r: int = 1
    g: GroupSetting = "C_I"

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"CIRec reduction ratio r must be an integer >= 1, got {self.r!r}")
        if not (self.g == "C_I" or (isinstance(self.g, int) and self.g >= 1)):
            raise ValueError(f"CIRec groups g must be a positive integer or 'C_I', got {self.g!r}")

    @property
    def kind(self) -> str:
        return "irec" if self.r == 1 else "cirec"


@dataclass(frozen=True)
class RecoveryPreset:
    name: str
    table: str
    row: str
    backbone: str
    spec: RecoverySpec
    source: str


RECOVERY_PRESETS: dict[str, RecoveryPreset] = {p.name: p for p in (
    RecoveryPreset("table2_vgg_small", "II", "VGG-Small", "vgg_small", RecoverySpec(32, "C_I"),
                   "Table II"),
    RecoveryPreset("table2_resnet20", "II", "ResNet-20", "resnet20_bireal", RecoverySpec(4, "C_I"),
                   "Table II; also Table I's CIRec rows (Sec. V-B1)"),
    RecoveryPreset("table2_resnet18", "II", "ResNet-18", "resnet18_cifar", RecoverySpec(20, "C_I"),
                   "Table II"),
    RecoveryPreset("table5_ir2net_a", "V", "IR²Net-A", "resnet18_bireal_imagenet",
                   RecoverySpec(1), "Table V (r = 1: plain IRec, g not applicable)"),
    RecoveryPreset("table5_ir2net_b", "V", "IR²Net-B", "resnet18_bireal_imagenet",
                   RecoverySpec(2, "C_I"), "Table V"),
    RecoveryPreset("table5_ir2net_c", "V", "IR²Net-C", "resnet18_bireal_imagenet",
                   RecoverySpec(4, 8), "Table V"),
    RecoveryPreset("table5_ir2net_d", "V", "IR²Net-D", "resnet18_bireal_imagenet",
                   RecoverySpec(20, "C_I"), "Table V"),
)}


def recovery_preset(name: str) -> RecoveryPreset:
    try:
        return RECOVERY_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown recovery preset {name!r}; known: "
                         f"{', '.join(RECOVERY_PRESETS)}") from None


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
