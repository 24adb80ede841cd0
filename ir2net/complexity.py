"""Complexity accounting: BOPs, FLOPs, OPs (Sec. V-A, Table VI), Eq. 17 and Eq. 18 (Table II).

* **BOPs** -- one per binary multiply-accumulate: ``Cin/g * Cout * k^2 * Hout * Wout`` for
  every convolution whose weights *and* inputs are binary.
* **FLOPs** -- every real-valued operation, one multiply-accumulate counting as one
  operation (Bi-Real Net, ReActNet, Real-to-Bin).  Convolutions and linear layers use
  ptflops' formulas; the element-wise work is weighted by a named :class:`Convention`.
* **OPs** = BOPs / 64 + FLOPs (ReActNet, Real-to-Bin; Sec. V-A).

Conventions (``CONVENTIONS``):

``ir2net_table6`` (default)
    Real convs and linears (MACs), plus one FLOP per output element for every
    BatchNorm (an inference-time scale-and-shift, one multiply-add), every PReLU /
    Hardtanh and every residual addition, plus one FLOP per input element for the
    backbone's pooling layers (ptflops' pooling rule).  The adaptive pooling that
    aligns the IRec/CIRec taps and their concatenation are not counted.  Of the
    conventions we tried, this is the simplest that puts every IR²Net row of Table VI
    within 0.012e8 of the paper (see ``docs/complexity.md``).
``reactnet``
    Only real convolutions and linear layers.
``ptflops``
    ptflops' own rules (BatchNorm 2 per element, pooling per input element, the tap
    pooling counted as a functional call) plus residual additions; for comparison.

Memory: 32 bits per real parameter, 1 bit per binary weight.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import torch
from torch import nn

from .binarize import BinaryConv2d, BinaryLinear
from .models import create_model, model_info
from .recovery import InformationRecovery, RECOVERY_PRESETS, recovery_preset

__all__ = ["Convention", "CONVENTIONS", "LayerCount", "ComplexityReport", "count_complexity",
           "build_variant", "q_scale", "q_cirec_eq18", "q_cirec_built", "recovery_geometry",
           "VARIANTS"]


@dataclass(frozen=True)
class Convention:
    name: str
    description: str
    batchnorm: float      # FLOPs per output element
    activation: float     # FLOPs per output element (PReLU, Hardtanh, ReLU)
    residual_add: float   # FLOPs per output element of each residual addition
    pooling: float        # FLOPs per input element of max/avg/global pooling layers
    tap_alignment: float  # FLOPs per input element of the IRec/CIRec tap pooling


CONVENTIONS = {c.name: c for c in (
    Convention("ir2net_table6", "real convs/linears (MACs); BN, activations and residual "
               "additions 1 per output element; backbone pooling 1 per input element; "
               "IRec tap alignment free", 1, 1, 1, 1, 0),
    Convention("reactnet", "real convolutions and linear layers only (MACs)", 0, 0, 0, 0, 0),
    Convention("ptflops", "ptflops' rules (BN 2 per element, pooling per input element) plus "
               "residual additions", 2, 1, 1, 1, 1),
)}


def _convention(name_or_convention) -> Convention:
    if isinstance(name_or_convention, Convention):
        return name_or_convention
    try:
        return CONVENTIONS[name_or_convention]
    except KeyError:
        raise ValueError(f"unknown convention {name_or_convention!r}; available: "
                         f"{', '.join(CONVENTIONS)}") from None


@dataclass
class LayerCount:
    name: str
    type: str
    kind: str  # "binary" or "real"
    output_shape: str
    bops: int = 0
    flops: float = 0.0
    params: int = 0
    bits: int = 0


@dataclass
class ComplexityReport:
    model: str
    input_size: tuple
    convention: str
    layers: list = field(default_factory=list)

    @property
    def bops(self) -> int:
        return sum(layer.bops for layer in self.layers)

    @property
    def flops(self) -> float:
        return sum(layer.flops for layer in self.layers)

    @property
    def ops(self) -> float:
        return self.bops / 64 + self.flops

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def memory_bits(self) -> int:
        return sum(layer.bits for layer in self.layers)

    def totals(self) -> dict:
        return {"bops": self.bops, "flops": self.flops, "ops": self.ops, "params": self.params,
                "memory_bits": self.memory_bits}

    def to_dict(self) -> dict:
        return {"model": self.model, "input_size": list(self.input_size),
                "convention": self.convention, **self.totals(),
                "layers": [asdict(layer) for layer in self.layers]}

    def table(self):
        import pandas as pd
        return pd.DataFrame([asdict(layer) for layer in self.layers])


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    """Multiply-accumulates of a convolution (ptflops' rule: one per kernel tap and output
    element, plus the bias)."""
    per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
    return output.numel() * per_output + (output.numel() if module.bias is not None else 0)


def _linear_macs(module: nn.Linear, inputs, output: torch.Tensor) -> int:
    """Multiply-accumulates of a linear layer (ptflops' rule)."""
    return inputs[0].numel() * output.shape[-1] + (output.shape[-1] if module.bias is not None
                                                   else 0)


#: The leaf layers counted through ptflops' custom hooks (it matches types exactly).
_LEAF_TYPES = (BinaryConv2d, nn.Conv2d, BinaryLinear, nn.Linear, nn.BatchNorm1d,
               nn.BatchNorm2d, nn.PReLU, nn.Hardtanh, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d,
               nn.AdaptiveAvgPool2d)


def _residual_additions(module: nn.Module) -> int:
    import torchvision.models.resnet as tv_resnet
    if isinstance(module, (tv_resnet.BasicBlock, tv_resnet.Bottleneck)):
        return 1
    return getattr(type(module), "residual_additions", 0)


def _own_params(module: nn.Module) -> tuple[int, int]:
    params, bits = 0, 0
    binary_weight = isinstance(module, (BinaryConv2d, BinaryLinear)) and \
        module.weight_quantizer is not None
    for name, parameter in module.named_parameters(recurse=False):
        params += parameter.numel()
        bits += parameter.numel() * (1 if binary_weight and name == "weight" else 32)
    return params, bits


@torch.no_grad()
def _forward_once(model: nn.Module, input_size: Sequence[int], hooks) -> None:
    """One eval-mode forward pass of a zero image with ``(module, hook)`` pairs attached;
    the hooks are removed and the model's training mode restored afterwards."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    was_training = model.training
    try:
        model.eval()
        model(_zero_image(model, input_size))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def _zero_image(model: nn.Module, input_size: Sequence[int]) -> torch.Tensor:
    parameter = next(model.parameters())
    return torch.zeros(1, *input_size, dtype=parameter.dtype, device=parameter.device)


@torch.no_grad()
def count_complexity(model: nn.Module, input_size: Sequence[int] = (3, 224, 224),
                     convention="ir2net_table6", name: str = "") -> ComplexityReport:
    """Per-layer BOPs/FLOPs/params/bits of one forward pass of a single image.

    The pass runs through ptflops' public API (``get_model_complexity_info``) with custom
    hooks for every counted layer type: binary convolutions and linears count BOPs and no
    FLOPs, real ones their MACs, and the element-wise layers what ``convention`` weighs
    them.  ptflops sums only leaf layers that way (it does not descend into a counted
    container), so the two container costs -- residual additions of a block and the
    recovery module's tap alignment -- are counted by plain forward hooks in the same pass.
    ptflops' total of the leaf layers is checked against the per-layer rows."""
    from ptflops import get_model_complexity_info

    convention = _convention(convention)
    report = ComplexityReport(name or type(model).__name__, tuple(input_size), convention.name)
    rows: list[LayerCount] = []
    names = {id(module): module_name for module_name, module in model.named_modules()}

    def record(module, kind, output, bops=0, flops=0.0, type_name=None, suffix="",
               with_params=True):
        params, bits = _own_params(module) if with_params else (0, 0)
        shape = "x".join(str(d) for d in output.shape[1:]) if torch.is_tensor(output) else ""
        rows.append(LayerCount(names[id(module)] + suffix, type_name or type(module).__name__,
                               kind, shape, int(bops), float(flops), params, bits))

    def leaf(module, inputs, output):
        """A ptflops custom hook: record the row, add its real FLOPs to ptflops' count."""
        flops, bops = 0.0, 0
        if isinstance(module, (BinaryConv2d, nn.Conv2d, BinaryLinear, nn.Linear)):
            macs = (_conv_macs(module, output) if isinstance(module, nn.Conv2d)
                    else _linear_macs(module, inputs, output))
            binary = isinstance(module, (BinaryConv2d, BinaryLinear)) and module.is_binary
            bops, flops = (macs, 0.0) if binary else (0, float(macs))
            record(module, "binary" if binary else "real", output, bops=bops, flops=flops)
        else:
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                flops = convention.batchnorm * output.numel()
            elif isinstance(module, (nn.PReLU, nn.Hardtanh, nn.ReLU)):
                flops = convention.activation * output.numel()
            else:  # pooling
                flops = convention.pooling * inputs[0].numel()
            record(module, "real", output, flops=flops)
        module.__flops__ += flops

    def container(module, inputs, output):
        if isinstance(module, InformationRecovery):
            taps, last = inputs
            pooled = sum(t.numel() for t in taps if t.shape[-2:] != last.shape[-2:])
            record(module, "real", output, flops=convention.tap_alignment * pooled,
                   type_name="tap alignment", suffix=".taps", with_params=False)
        additions = _residual_additions(module)
        if additions:
            record(module, "real", output, flops=convention.residual_add * additions *
                   output.numel(), type_name="residual add", suffix=".add", with_params=False)

    handles = [module.register_forward_hook(container) for module in model.modules()
               if isinstance(module, InformationRecovery) or _residual_additions(module)]
    was_training = model.training
    try:
        leaf_flops, _ = get_model_complexity_info(
            model, tuple(input_size), as_strings=False, print_per_layer_stat=False,
            input_constructor=lambda size: _zero_image(model, size),
            custom_modules_hooks={layer_type: leaf for layer_type in _LEAF_TYPES},
            backend="pytorch", backend_specific_config={"count_functional": False})
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if leaf_flops is None:
        raise RuntimeError(f"ptflops could not count {report.model} (its message is above)")
    counted_leaves = sum(row.flops for row in rows if row.type not in
                         ("tap alignment", "residual add"))
    if abs(leaf_flops - counted_leaves) > 1:
        raise RuntimeError(f"ptflops counted {leaf_flops} leaf FLOPs, the layers {counted_leaves}")
    counted = {row.name for row in rows}
    for module_name, module in model.named_modules():  # parameters of layers with no count
        params, bits = _own_params(module)
        if params and module_name not in counted:
            rows.append(LayerCount(module_name, type(module).__name__, "real", "", 0, 0.0,
                                   params, bits))
    report.layers = rows
    return report


# ----------------------------------------------------------------------------- model variants
VARIANTS = ("baseline", "fp", *RECOVERY_PRESETS)


def build_variant(model_name: str, variant: str = "baseline", taps: str = "authors",
                  num_classes: Optional[int] = None) -> nn.Module:
    """``baseline``: binary, no recovery; ``fp``: full precision; a preset name: IR²Net."""
    info = model_info(model_name)
    kwargs = {"num_classes": num_classes}
    if not info.binary:  # the teacher: one variant only
        return create_model(model_name, **kwargs)
    if variant == "fp":
        return create_model(model_name, precision="fp", **kwargs)
    if variant == "baseline":
        return create_model(model_name, **kwargs)
    if info.tap_styles:
        kwargs["taps"] = taps
    return create_model(model_name, recovery=recovery_preset(variant).spec, **kwargs)


def q_scale(model: nn.Module, input_size: Sequence[int]) -> int:
    """Eq. 17: sum of C_i * H_i * W_i over the outputs of the binary layers (layers 2 ..
    l_N - 1; the real first and last layers are excluded)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += output[0].numel()

    _forward_once(model, input_size, [(m, hook) for m in model.modules()
                                      if isinstance(m, (BinaryConv2d, BinaryLinear))
                                      and m.is_binary])
    return total


def q_cirec_eq18(c_in: int, c_n: int, h_n: int, w_n: int, r: int, g, k1: int = 1,
                 k2: int = 3) -> float:
    """Eq. 18, as printed: ``C_n/r * C_in * H_n W_n K1^2 + (C_n - C_n/r) * C_n/(g r) *
    H_n W_n K2^2``, with ``g = C_I`` meaning ``g = C_n / r`` (one input channel per group).
    Channel counts may be fractional, exactly as the formula reads."""
    primary = c_n / r
    groups = primary if g == "C_I" else g
    first = primary * c_in * h_n * w_n * k1 * k1
    if r == 1:
        return first
    return first + (c_n - primary) * (c_n / (groups * r)) * h_n * w_n * k2 * k2


def q_cirec_built(model: nn.Module, input_size: Sequence[int]) -> int:
    """The multiply-accumulates of the recovery module's convolutions as built."""
    report = count_complexity(model, input_size, "reactnet")
    return int(sum(layer.flops for layer in report.layers
                   if layer.name.startswith("recovery.") and layer.type == "Conv2d"))


def recovery_geometry(model: nn.Module, input_size) -> tuple[int, int, int, int]:
    found = {}

    def hook(module, inputs, output):
        taps, last = inputs
        found["c_in"] = module.in_channels
        found["c_n"], found["h"], found["w"] = last.shape[1], last.shape[2], last.shape[3]

    _forward_once(model, input_size, [(model.recovery, hook)])
    return found["c_in"], found["c_n"], found["h"], found["w"]
