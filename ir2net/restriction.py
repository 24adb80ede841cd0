"""Information Restriction, IRes (Sec. IV-A, Eq. 5-10, Algorithm 1).

During training only, each mini-batch goes through the network twice: once as
it is, giving ``Loss_original`` and the last-stage features ``A_l``; once
masked by the network's own attention, giving ``Loss_masked``.  The two are
combined by Eq. 10.  Inference never touches this module.

How the mask is made is a :class:`RestrictionRule`: an attention function (Eq. 5) and
a comparison with the threshold (Eq. 8), looked up by name (``ires.variant``), the way
quantizers are looked up in Larq.  Two rules are registered:

``authors`` (default: the public code that produced the published numbers)
    ``F_A = normalize_H(mean_c A_l^2)`` (an L2 normalisation along the height axis of the
    (B, H, W) map, a side effect of ``F.normalize``'s default ``dim=1``) and a strict
    ``F'_A > tau``.
``paper``
    Eq. 5 ``F_A = sum_c |A_l|^2`` and Eq. 8 ``F_m = 1{F'_A >= tau}``.

A new rule is one :func:`register_rule` call here (and its test).  Both upsample
bilinearly with ``align_corners=True`` (Eq. 6; the paper does not say, the code uses
True) and use ``tau = lambda * mean(F'_A)`` per image (Eq. 9).  Every operation is
batched: there is no loop over the images of a batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["RestrictionRule", "register_rule", "get_rule", "list_rules", "attention_map",
           "upsample_attention", "restriction_onset", "restriction_mask", "InformationRestriction"]


@dataclass(frozen=True)
class RestrictionRule:
    """How IRes turns the last-stage features into a mask."""

    name: str
    attention: Callable[[torch.Tensor], torch.Tensor]  # Eq. 5: (B, C, H, W) -> (B, H, W)
    keep: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # Eq. 8: (F'_A, tau) -> bool
    description: str


_RULES: dict[str, RestrictionRule] = {}


def register_rule(rule: RestrictionRule) -> RestrictionRule:
    if rule.name in _RULES:
        raise ValueError(f"restriction rule {rule.name!r} is registered twice")
    _RULES[rule.name] = rule
    return rule


def list_rules() -> list[str]:
    return sorted(_RULES)


def get_rule(rule: str | RestrictionRule) -> RestrictionRule:
    if isinstance(rule, RestrictionRule):
        return rule
    try:
        return _RULES[rule]
    except KeyError:
        raise ValueError(f"unknown IRes variant {rule!r}; expected one of "
                         f"{', '.join(list_rules())}") from None


register_rule(RestrictionRule(
    "authors", lambda features: F.normalize(features.pow(2).mean(dim=1), dim=1), torch.gt,
    "the authors' code: mean of squares over channels, L2-normalised along the height axis; "
    "keep F'_A > tau"))
register_rule(RestrictionRule(
    "paper", lambda features: features.pow(2).sum(dim=1), torch.ge,
    "Eq. 5 (sum of squares over channels) and Eq. 8 (keep F'_A >= tau)"))


def attention_map(features: torch.Tensor, variant: str | RestrictionRule = "paper") -> torch.Tensor:
    """Eq. 5: the (B, H, W) attention map of the last-stage features ``A_l`` (B, C, H, W)."""
    return get_rule(variant).attention(features)


def upsample_attention(attention: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Eq. 6: the (B, h, w) attention map upsampled to the input's (B, 1, H_in, W_in),
    bilinearly with ``align_corners=True`` (authors' code)."""
    return F.interpolate(attention.unsqueeze(1), size=size, mode="bilinear", align_corners=True)


def restriction_onset(attention: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per image, the λ below which Eq. 9's threshold removes no pixel: the smallest value
    of the upsampled map over its mean (``(B,)``).  Below it Algorithm 1's masked pass sees
    the original image."""
    return _onset(upsample_attention(attention, size))


def _onset(upsampled: torch.Tensor) -> torch.Tensor:
    """Per image of an upsampled (B, 1, H, W) map: its smallest value over its mean."""
    return upsampled.amin(dim=(1, 2, 3)) / upsampled.mean(dim=(1, 2, 3))


def restriction_mask(attention: torch.Tensor, size: tuple[int, int], lam: float,
                     variant: str | RestrictionRule = "paper") -> torch.Tensor:
    """Eq. 6-9: the binary (B, 1, H_in, W_in) mask ``F_m`` from a (B, h, w) attention map.

    ``lam = 0`` keeps every pixel (no restriction) whatever the rule; the strict
    comparison of the ``authors`` rule would otherwise drop pixels whose attention is
    exactly zero.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"IRes lambda must lie in [0, 1], got {lam}")
    rule = get_rule(variant)
    batch = attention.shape[0]
    if lam == 0.0:
        return attention.new_ones(batch, 1, *size)
    return _mask(upsample_attention(attention, size), lam, rule)


def _mask(upsampled: torch.Tensor, lam: float, rule: RestrictionRule) -> torch.Tensor:
    """Eq. 8-9 on an upsampled (B, 1, H, W) map."""
    threshold = lam * upsampled.mean(dim=(2, 3), keepdim=True)
    return rule.keep(upsampled, threshold).to(upsampled.dtype)


@dataclass(frozen=True)
class InformationRestriction:
    """Algorithm 1 as a training-loss wrapper.

    ``lam`` is Eq. 9's lambda (0.15 in every experiment of the paper, Sec. V-B2);
    ``mu`` is Eq. 10's trade-off (0.5 in all experiments, Sec. IV-A).
    """

    lam: float = 0.15
    mu: float = 0.5
    variant: str | RestrictionRule = "authors"  # what produced the published numbers

    def __post_init__(self):
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"IRes lambda must lie in [0, 1], got {self.lam}")
        if not 0.0 <= self.mu <= 1.0:
            raise ValueError(f"IRes mu must lie in [0, 1], got {self.mu}")
        object.__setattr__(self, "variant", get_rule(self.variant))

    @property
    def active(self) -> bool:
        """lambda = 0 means no restriction (Sec. V-B2): the masked pass would repeat the
        original one, so it is skipped rather than computed twice."""
        return self.lam > 0.0

    @torch.no_grad()
    def mask_images(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Eq. 7: ``D_m = F_m (.) D``, from the features of the first pass (no gradient)."""
        return self.restrict(images, features)[0]

    @torch.no_grad()
    def restrict(self, images: torch.Tensor,
                 features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(D_m, removed, onset)``: Eq. 7's masked images, the fraction of input pixels the
        mask ``F_m`` removed from the batch, and the batch's onset -- the smallest over its
        images of :func:`restriction_onset`, so that no λ below it would have removed a
        pixel of this batch.  The last two are 0-dim tensors on the device, so that
        training records when restriction acts, and how far from acting it is, without a
        host synchronisation or another pass."""
        attention = attention_map(features.float(), self.variant)
        upsampled = upsample_attention(attention, tuple(images.shape[-2:]))
        mask = (_mask(upsampled, self.lam, self.variant) if self.lam > 0.0
                else torch.ones_like(upsampled))
        onset = _onset(upsampled).min()
        return images * mask.to(images.dtype), 1.0 - mask.mean(), onset

    def combine(self, loss_original: torch.Tensor, loss_masked: torch.Tensor) -> torch.Tensor:
        """Eq. 10: ``Loss_total = mu * Loss_original + (1 - mu) * Loss_masked``."""
        return self.mu * loss_original + (1.0 - self.mu) * loss_masked
