"""Building blocks shared by the backbones: activations by channel count, the
option-A shortcut, and the classifier that carries IRec/CIRec."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..recovery import InformationRecovery, RecoverySpec

__all__ = ["hardtanh", "prelu", "OptionAShortcut", "FeatureBackbone", "IR2NetClassifier",
           "ResidualBlock", "resnet_stages", "ATTENTION_SOURCES"]

# What IRes's attention map (Eq. 5) is computed from (``ires.source``, docs/divergences.md):
ATTENTION_SOURCES = {
    "output": "the last stage's output, after its final activation (the authors' code)",
    "pre_activation": "the last stage's output before its final activation (the residual sum "
                      "of the last block): this project's extension, not the paper's method",
}


def hardtanh(channels: int) -> nn.Module:
    """CIFAR-10 nonlinearity (Sec. V-A2, following IR-Net)."""
    return nn.Hardtanh()


def prelu(channels: int) -> nn.Module:
    """ImageNet nonlinearity (Sec. V-A2, following Real-to-Bin and ReActNet)."""
    return nn.PReLU(channels)


def resnet_stages(block: Callable[[int, int, int], nn.Module], widths: Sequence[int],
                  depths: Sequence[int], in_channels: int) -> tuple[dict, dict]:
    """The residual stages of a ResNet: ``layer1`` ... ``layerN``, ``depths[i]`` blocks of
    width ``widths[i]`` each, the first block of every stage after the first with stride 2.
    ``block(in_channels, out_channels, stride)`` builds one block.  Returns the stages and
    their output channels, in the order :class:`FeatureBackbone` takes them."""
    stages, channels = {}, {}
    for index, (width, depth) in enumerate(zip(widths, depths)):
        blocks = []
        for number in range(depth):
            blocks.append(block(in_channels, width, 2 if index > 0 and number == 0 else 1))
            in_channels = width
        stages[f"layer{index + 1}"] = nn.Sequential(*blocks)
        channels[f"layer{index + 1}"] = width
    return stages, channels


class _GradientInInputLayout(torch.autograd.Function):
    """Identity whose backward hands the gradient over in the input's memory format.

    Strided slicing, padding, global pooling and flattening send their gradient back
    NCHW-contiguous even when the network runs channels-last; every BatchNorm/Hardtanh
    backward behind them would then mix layouts, which on the CPU runs up to 10x slower
    (the stage-1 BatchNorm backward of ResNet-20 without recovery: 17 ms instead of 1.5 ms).
    One copy of the gradient avoids that."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.channels_last = (x.dim() == 4 and not x.is_contiguous()
                             and x.is_contiguous(memory_format=torch.channels_last))
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last) if ctx.channels_last else grad


def gradient_in_input_layout(x: torch.Tensor) -> torch.Tensor:
    """``x``, with its gradient returned in ``x``'s memory format (see above)."""
    return _GradientInInputLayout.apply(x)


class OptionAShortcut(nn.Module):
    """Parameter-free shortcut of the CIFAR ResNets: stride-2 subsampling and zero
    channel padding (He et al., option A)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        extra = out_channels - in_channels
        self.pad = (0, 0, 0, 0, extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(gradient_in_input_layout(x)[:, :, ::self.stride, ::self.stride], self.pad)


class ResidualBlock(nn.Module):
    """A block computing ``final_activation(pre_activation(x))``: ``pre_activation`` is its
    residual sum, which the attention source ``pre_activation`` reads (ATTENTION_SOURCES)."""

    final_activation_name = "act2"  # the attribute holding the block's last activation

    @property
    def final_activation(self) -> nn.Module:
        return getattr(self, self.final_activation_name)

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_activation(self.pre_activation(x))


class FeatureBackbone(nn.Module):
    """A stem followed by named stages.  ``forward_features`` returns the last
    stage's output, whichever intermediate outputs (taps) are asked for, and, when asked,
    the last stage's output before its final activation."""

    def __init__(self, stem: nn.Module, stages: dict[str, nn.Module],
                 channels: dict[str, int]):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleDict(stages)
        self.channels = channels  # output channels of "stem" and of each stage

    @property
    def last_channels(self) -> int:
        return self.channels[next(reversed(self.stages.keys()))]

    def forward_features(self, x: torch.Tensor, taps: Sequence[str] = (),
                         pre_activation: bool = False):
        found = {}
        x = self.stem(x)
        if "stem" in taps:
            found["stem"] = x
        last_name = next(reversed(self.stages.keys()))
        before = None
        for name, stage in self.stages.items():
            if pre_activation and name == last_name:
                x, before = _through_final_activation(stage, x)
            else:
                x = stage(x)
            if name in taps:
                found[name] = x
        return x, [found[name] for name in taps], before


_ACTIVATIONS = (nn.Hardtanh, nn.PReLU, nn.ReLU)


def _final_module(stage: nn.Module) -> nn.Module:
    """The module that ends ``stage``: an activation (VGG-Small) or a block with
    ``pre_activation`` and ``final_activation`` (the residual blocks)."""
    final = stage[-1] if isinstance(stage, nn.Sequential) and len(stage) else stage
    if isinstance(final, _ACTIVATIONS) or hasattr(final, "pre_activation"):
        return final
    raise ValueError(f"{type(final).__name__} ends the last stage and has no pre-activation "
                     "output: the attention source 'pre_activation' is unavailable for this model")


def _through_final_activation(stage: nn.Module, x: torch.Tensor):
    """Run ``stage``; return its output and the input of its final activation."""
    final = _final_module(stage)
    for module in stage[:-1]:
        x = module(x)
    if isinstance(final, _ACTIVATIONS):
        return final(x), x
    before = final.pre_activation(x)
    return final.final_activation(before), before


class IR2NetClassifier(nn.Module):
    """Backbone -> optional information recovery -> classifier.

    ``forward(x)`` returns the logits; ``forward(x, return_attention_source=True)``
    also returns ``A_l``, which IRes turns into the attention mask (Eq. 5): by default
    the last stage's output before recovery (``attention_source = "output"``, the
    authors' code), or its input to the final activation (``"pre_activation"``, see
    :data:`ATTENTION_SOURCES`).  The head is ``pool``: global average
    pooling (+ BatchNorm1d when recovery is used, as in the authors' code) and a
    real linear layer; or ``flatten``: the VGG-Small classifier on the flattened map.
    """

    def __init__(self, backbone: FeatureBackbone, num_classes: int, *,
                 recovery: RecoverySpec | None, taps: Sequence[str],
                 act_layer: Callable[[int], nn.Module], head: str = "pool",
                 flatten_size: int = 1):
        super().__init__()
        self.backbone = backbone
        self.tap_names = tuple(taps) if recovery is not None else ()
        self.attention_source = "output"
        channels = backbone.last_channels
        self.recovery = None
        if recovery is not None:
            self.recovery = InformationRecovery([backbone.channels[t] for t in self.tap_names],
                                                channels, recovery, act_layer)
        if head == "pool":
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head_norm = nn.BatchNorm1d(channels) if recovery is not None else nn.Identity()
            self.classifier = nn.Linear(channels, num_classes)
        elif head == "flatten":
            self.pool = nn.Identity()
            self.head_norm = nn.Identity()
            self.classifier = nn.Linear(channels * flatten_size, num_classes)
        else:
            raise ValueError(f"unknown head {head!r}; expected 'pool' or 'flatten'")

    def set_attention_source(self, source: str) -> "IR2NetClassifier":
        if source not in ATTENTION_SOURCES:
            raise ValueError(f"unknown attention source {source!r}; expected one of "
                             f"{', '.join(ATTENTION_SOURCES)}")
        if source == "pre_activation":  # fail when the model is built, not at the first step
            _final_module(next(reversed(self.backbone.stages.values())))
        self.attention_source = source
        return self

    def attention_sources(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every attention source of :data:`ATTENTION_SOURCES` for ``x``, from one pass."""
        last, _, before = self.backbone.forward_features(x, (), pre_activation=True)
        return {"output": last, "pre_activation": before}

    def forward(self, x: torch.Tensor, return_attention_source: bool = False):
        pre_activation = return_attention_source and self.attention_source == "pre_activation"
        last, taps, before = self.backbone.forward_features(x, self.tap_names, pre_activation)
        fused = self.recovery(taps, last) if self.recovery is not None else last
        fused = gradient_in_input_layout(fused)
        logits = self.classifier(self.head_norm(torch.flatten(self.pool(fused), 1)))
        if not return_attention_source:
            return logits
        return logits, (before if pre_activation else last)
