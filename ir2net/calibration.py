"""Data calibration: how far a copy of CIFAR-10 and a software stack sit from canonical.

The paper's own full-precision row cannot serve (its 90.8 % is IR-Net's published 1/32
figure, docs/divergences.md), so the project trains a network whose canonical accuracy is
public and well reproduced -- the real-valued ResNet-20 of He et al. (2016),
:mod:`ir2net.models.resnet_he`, with the recipe of ``akamaster/pytorch_resnet_cifar10``
(``cifar10_calibration_resnet20``) -- and reads the difference from that figure as what the
data and the stack cost.  A real-valued network's cost is a lower bound for a binary one's:
a BNN with one bit per activation has less headroom to absorb degraded inputs (JPEG's 4:2:0
chroma keeps colour at 16x16 on a 32x32 image).

``ir2net calibrate --data DIR`` trains it and prints the shortfall; the report's "Data
calibration" section shows the published-schedule run's (results/longruns/).
"""
from __future__ import annotations

from typing import Optional

__all__ = ["RECIPE", "REFERENCE", "ALSO_REPORTED", "shortfall", "summary_line"]

RECIPE = "cifar10_calibration_resnet20"

#: The figure a calibration is held against: ResNet-20 trained with the recipe above on
#: canonical CIFAR-10, best test top-1 over the 200 epochs, as that repository's README
#: reports it (its table: ResNet-20, 8.27 % error).
REFERENCE = {"top1": 91.73, "model": "ResNet-20 (He et al. 2016), real-valued",
             "source": "akamaster/pytorch_resnet_cifar10, README (best epoch, canonical "
                       "CIFAR-10, 200 epochs)"}
#: The same network in the ResNet paper (He et al. 2016, Table 6: 8.75 % error).
ALSO_REPORTED = {"top1": 91.25, "source": "He et al. 2016, Table 6"}


def shortfall(best_top1: Optional[float], reference: float = REFERENCE["top1"]) -> Optional[float]:
    """Points under the canonical figure (positive: this copy scores less)."""
    return None if best_top1 is None else round(reference - best_top1, 2)


def summary_line(best: Optional[dict], final: Optional[dict], epochs_done: float,
                 epochs: int) -> str:
    """One sentence a user reads after ``ir2net calibrate`` (or a segment of it)."""
    if not best:
        return "calibration: no epoch evaluated yet"
    state = ("complete" if epochs_done >= epochs
             else f"in progress, epoch {epochs_done:g} of {epochs}: not yet comparable")
    gap = shortfall(best["top1"])
    return (f"calibration ({state}): best top-1 {best['top1']:.2f}% at epoch {best['epoch']}"
            + (f", final {final['top1']:.2f}%" if final else "")
            + f"; canonical {REFERENCE['top1']:.2f}% ({REFERENCE['source']}); "
              f"shortfall {gap:+.2f} points")
