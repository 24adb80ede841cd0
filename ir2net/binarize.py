"""Binarization of weights and activations (Sec. III, Eq. 2-4).

Quantizers are small modules handed to layers (the Larq pattern): a
:class:`BinaryConv2d` with neither quantizer is exactly ``nn.Conv2d``.

* Eq. 3 -- ``sign(x) = +1 if x >= 0 else -1``.  The authors' code uses
  ``torch.sign`` which maps 0 to 0; ``sign_zero="zero"`` selects that.
* Weights (Eq. 2): forward ``sign(w)``; backward is the straight-through
  estimator of ``clamp(w, -1, 1)``: ``dL/dw = dL/dw_b * 1{|w| < 1}`` (at |w| = 1
  exactly, ``torch.clamp``'s gradient -- the authors' code -- is 0, and so is ours).
* Activations (Eq. 2): forward ``sign(a)``; backward is Bi-Real Net's
  ApproxSign, the derivative of the piecewise polynomial
  ``F(a) = -1 (a < -1); a^2 + 2a (-1 <= a < 0); -a^2 + 2a (0 <= a < 1); 1``,
  i.e. ``dF/da = max(0, 2 - 2|a|)``.
* Eq. 4 -- optional real-valued scaling factors ``z = alpha (w_b (+) A_b)``.
  Off by default: IR²Net removes them (Sec. III).

The backward passes are written as ``torch.autograd.Function`` so that one
element-wise kernel computes each gradient instead of the three float masks
of the straight-through "detach trick".
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .compilation import CompiledOrEager

__all__ = [
    "SIGN_ZERO_MODES",
    "SCALING_MODES",
    "PRECISIONS",
    "sign",
    "WeightSign",
    "ApproxSign",
    "BinaryConv2d",
    "BinaryLinear",
    "Binarization",
    "set_binary_compute_dtype",
    "fused_pointwise_enabled",
]

#: ``plus_one``: Eq. 3 of the paper; ``zero``: ``torch.sign`` as in the authors' code.
SIGN_ZERO_MODES = ("plus_one", "zero")
#: ``none``: no factor (paper default); ``channel_mean``: alpha_c = mean|w_c| (XNOR-Net);
#: ``learned``: a trained per-output-channel alpha (XNOR-Net++).
SCALING_MODES = ("none", "channel_mean", "learned")
#: ``binary``: 1-bit weights and activations; ``binary_activations``: stage 1 of the
#: ImageNet two-stage recipe (real weights); ``fp``: the full-precision counterpart.
PRECISIONS = ("binary", "binary_activations", "fp")


def _check_choice(value: str, choices: tuple, what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")


def sign(x: torch.Tensor, sign_zero: str = "plus_one") -> torch.Tensor:
    """Eq. 3: +1 where ``x >= 0`` and -1 elsewhere (never 0 in ``plus_one`` mode)."""
    if sign_zero == "zero":
        return torch.sign(x)
    # sign(x) + 1/2 lies in {-1/2, 1/2, 3/2}: a second sign maps x = 0 (and -0.0) to +1.
    # Two cheap vectorised passes; torch.where on a bool mask is ~20x slower on the CPU.
    return torch.sign(x).add_(0.5).sign_()


def _sign_as(x: torch.Tensor, sign_zero: str, dtype: torch.dtype) -> torch.Tensor:
    """:func:`sign` of ``x`` written in ``dtype`` (+-1 and 0 are exact in every float type)."""
    return sign(x, sign_zero).to(dtype)


def _approx_sign_grad(grad_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bi-Real's ApproxSign derivative applied to ``grad_output``: ``g * max(0, 2 - 2|x|)``,
    in the dtype of ``x``."""
    return grad_output.to(x.dtype) * (2.0 - 2.0 * x.abs()).clamp(min=0.0)


class _FusedPointwise:
    """An element-wise function compiled into one loop on the CPU, eager elsewhere.

    In eager mode each of the few arithmetic operations above is a separate pass over a
    tensor that does not fit in the cache; on the 2-core CPU these passes, not the
    convolutions, were the largest cost of a training step after bfloat16 (see
    docs/performance.md).  ``torch.compile`` (Inductor) fuses them into one C++ loop.  On
    CUDA the eager kernels are cheap and the step is replayed as a CUDA graph, so nothing
    is compiled there.  When compilation fails (no C++ compiler), or when
    ``IR2NET_FUSED_POINTWISE=0``, the eager function runs; both compute the same values.
    """

    def __init__(self, function):
        self.function = function
        self.kernel = CompiledOrEager(function, function.__name__, dynamic=True)

    @property
    def failed(self) -> bool:
        return self.kernel.failed

    def __call__(self, tensor: torch.Tensor, *args):
        if (tensor.device.type != "cpu" or torch.compiler.is_compiling()
                or not fused_pointwise_enabled()):
            return self.function(tensor, *args)  # inside torch.compile the caller fuses it
        return self.kernel(tensor, *args)


def fused_pointwise_enabled() -> bool:
    """False when the environment sets ``IR2NET_FUSED_POINTWISE=0``."""
    return os.environ.get("IR2NET_FUSED_POINTWISE", "1") != "0"


_fused_sign_as = _FusedPointwise(_sign_as)
_fused_approx_sign_grad = _FusedPointwise(_approx_sign_grad)


class _ApproxSignSTE(torch.autograd.Function):
    """``sign`` forward (written in ``output_dtype``), ApproxSign backward (in x's dtype)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sign_zero: str, output_dtype: torch.dtype) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _fused_sign_as(x, sign_zero, output_dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        return _fused_approx_sign_grad(grad_output, x), None, None


class WeightSign(nn.Module):
    """Weight quantizer: ``sign(w)`` forward, STE of ``clamp(w, -1, 1)`` backward."""

    def __init__(self, sign_zero: str = "plus_one"):
        super().__init__()
        _check_choice(sign_zero, SIGN_ZERO_MODES, "sign_zero mode")
        self.sign_zero = sign_zero

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # sign(w) + (m*w - m*w), m = 1{|w| < 1} held constant: the value is sign(w) exactly
        # (x - x is 0) and the gradient is grad * m, bit for bit what a custom
        # autograd.Function's backward gives.  Plain tensor operations because on CUDA
        # (torch 2.11) torch.compile dropped such a Function's backward for a parameter, and
        # the latent weights trained with a zero gradient (results/longruns/README.md).
        with torch.no_grad():
            binary = sign(weight, self.sign_zero)
            inside = (weight.abs() < 1).to(weight.dtype)
        passed = weight * inside
        return binary + (passed - passed.detach())

    def extra_repr(self) -> str:
        return f"sign_zero={self.sign_zero}"


class ApproxSign(nn.Module):
    """Activation quantizer: ``sign(a)`` forward, Bi-Real ``max(0, 2 - 2|a|)`` backward."""

    def __init__(self, sign_zero: str = "plus_one"):
        super().__init__()
        _check_choice(sign_zero, SIGN_ZERO_MODES, "sign_zero mode")
        self.sign_zero = sign_zero
        #: write the +-1 output in this dtype (bfloat16 for bfloat16 binary convolutions:
        #: saves a conversion pass each way); None keeps the input's dtype
        self.output_dtype: Optional[torch.dtype] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ApproxSignSTE.apply(x, self.sign_zero, self.output_dtype or x.dtype)

    def extra_repr(self) -> str:
        return f"sign_zero={self.sign_zero}"


class BinaryConv2d(nn.Conv2d):
    """Convolution whose input and/or weights pass through quantizers (Eq. 2, 4).

    With both quantizers the multiply-accumulates are XNOR/bitcount operations
    (counted as BOPs by :mod:`ir2net.complexity`); with neither it is ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = False, *,
                 input_quantizer: Optional[nn.Module] = None,
                 weight_quantizer: Optional[nn.Module] = None,
                 scaling: str = "none"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding,
                         dilation, groups, bias)
        _check_choice(scaling, SCALING_MODES, "scaling mode")
        self.input_quantizer = input_quantizer
        self.weight_quantizer = weight_quantizer
        self.scaling = scaling
        self.compute_dtype: Optional[torch.dtype] = None  # see set_binary_compute_dtype
        if scaling == "learned":
            self.alpha = nn.Parameter(torch.ones(out_channels, 1, 1, 1))

    @property
    def is_binary(self) -> bool:
        """True when every multiply-accumulate has 1-bit operands (a BOP)."""
        return self.input_quantizer is not None and self.weight_quantizer is not None

    def quantized_weight(self) -> torch.Tensor:
        weight = self.weight
        if self.weight_quantizer is not None:
            weight = self.weight_quantizer(weight)
        if self.scaling == "channel_mean":
            weight = weight * self.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        elif self.scaling == "learned":
            weight = weight * self.alpha
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_dtype = x.dtype
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        weight = self.quantized_weight()
        if self.compute_dtype is not None and self.is_binary and self.scaling == "none":
            # +-1 operands are exact in bfloat16; accumulation is fp32 inside the kernel and
            # only the output is rounded (8-bit mantissa) before it returns to fp32
            out = self._conv_forward(x.to(self.compute_dtype), weight.to(self.compute_dtype), None)
            out = out.to(input_dtype)
            return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)
        return self._conv_forward(x, weight, self.bias)


def set_binary_compute_dtype(model: nn.Module, dtype: Optional[torch.dtype]) -> nn.Module:
    """Run the fully binary convolutions of ``model`` in ``dtype`` (``torch.bfloat16``) or
    in the input's precision (``None``).  A reduced-precision switch: the sums of +-1
    products are rounded to bfloat16 on output."""
    for module in model.modules():
        if isinstance(module, BinaryConv2d):
            module.compute_dtype = dtype
            if isinstance(module.input_quantizer, ApproxSign):
                exact = module.is_binary and module.scaling == "none"
                module.input_quantizer.output_dtype = dtype if exact else None
    return model


class BinaryLinear(nn.Linear):
    """Fully connected layer with the same quantizer slots as :class:`BinaryConv2d`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, *,
                 input_quantizer: Optional[nn.Module] = None,
                 weight_quantizer: Optional[nn.Module] = None):
        super().__init__(in_features, out_features, bias)
        self.input_quantizer = input_quantizer
        self.weight_quantizer = weight_quantizer

    @property
    def is_binary(self) -> bool:
        return self.input_quantizer is not None and self.weight_quantizer is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        weight = self.weight if self.weight_quantizer is None else self.weight_quantizer(self.weight)
        return F.linear(x, weight, self.bias)


@dataclass(frozen=True)
class Binarization:
    """How the inner convolutions of a backbone are quantized.

    Backbones ask this object for their inner convolutions; the first convolution
    and the classifier are always plain real-valued layers (Sec. V-A).
    """

    precision: str = "binary"
    sign_zero: str = "plus_one"
    scaling: str = "none"

    def __post_init__(self):
        _check_choice(self.precision, PRECISIONS, "precision")
        _check_choice(self.sign_zero, SIGN_ZERO_MODES, "sign_zero mode")
        _check_choice(self.scaling, SCALING_MODES, "scaling mode")

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0, groups: int = 1) -> nn.Conv2d:
        if self.precision == "fp":
            return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                             groups=groups, bias=False)
        weight_quantizer = WeightSign(self.sign_zero) if self.precision == "binary" else None
        return BinaryConv2d(in_channels, out_channels, kernel_size, stride, padding,
                            groups=groups, input_quantizer=ApproxSign(self.sign_zero),
                            weight_quantizer=weight_quantizer, scaling=self.scaling)
