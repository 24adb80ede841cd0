"""The settings of an information-recovery module and the paper's Tables II and V as presets.

The single place these settings are written down: the models are built from them, the
report renders Tables II and V from them, the workflow maps Table IV's IR²Net-A..D to
them.  Pure Python (no torch), so the workflow can read them while it parses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = ["GroupSetting", "RecoverySpec", "RecoveryPreset", "RECOVERY_PRESETS",
           "recovery_preset", "presets_for", "table_presets"]

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


def presets_for(backbone: str) -> list[RecoveryPreset]:
    """The presets that apply to a registered backbone."""
    return [preset for preset in RECOVERY_PRESETS.values() if preset.backbone == backbone]


def table_presets(table: str) -> list[RecoveryPreset]:
    """The presets of one paper table ("II" or "V"), in the table's order."""
    return [preset for preset in RECOVERY_PRESETS.values() if preset.table == table]
