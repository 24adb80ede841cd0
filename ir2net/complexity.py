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
from functools import lru_cache
from importlib import resources
from typing import Optional, Sequence

import torch
from torch import nn

from .binarize import BinaryConv2d, BinaryLinear
from .models import create_model
from .recovery import CIRec, IRec, InformationRecovery, RECOVERY_PRESETS, recovery_preset

__all__ = ["Convention", "CONVENTIONS", "LayerCount", "ComplexityReport", "count_complexity",
           "build_variant", "q_scale", "q_cirec_eq18", "q_cirec_built", "table2_rows",
           "table5_rows", "table6_rows", "paper_values", "default_input_size", "VARIANTS"]


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


def _macs(hook, module: nn.Module, inputs, output) -> int:
    """Run one of ptflops' counting hooks on a module and return what it counted."""
    saved = getattr(module, "__flops__", None)
    module.__flops__ = 0
    hook(module, inputs, output)
    count = module.__flops__
    if saved is None:
        del module.__flops__
    else:
        module.__flops__ = saved
    return int(count)


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
        parameter = next(model.parameters())
        model(torch.zeros(1, *input_size, dtype=parameter.dtype, device=parameter.device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


@torch.no_grad()
def count_complexity(model: nn.Module, input_size: Sequence[int] = (3, 224, 224),
                     convention="ir2net_table6", name: str = "") -> ComplexityReport:
    """Per-layer BOPs/FLOPs/params/bits of one forward pass of a single image."""
    from ptflops.pytorch_ops import conv_flops_counter_hook, linear_flops_counter_hook

    convention = _convention(convention)
    report = ComplexityReport(name or type(model).__name__, tuple(input_size), convention.name)
    rows: list[LayerCount] = []

    def record(module_name, module, kind, output, bops=0, flops=0.0, type_name=None,
               with_params=True):
        params, bits = _own_params(module) if with_params else (0, 0)
        shape = "x".join(str(d) for d in output.shape[1:]) if torch.is_tensor(output) else ""
        rows.append(LayerCount(module_name, type_name or type(module).__name__, kind, shape,
                               int(bops), float(flops), params, bits))

    def hook_for(module_name):
        def hook(module, inputs, output):
            if isinstance(module, (BinaryConv2d, nn.Conv2d)):
                macs = _macs(conv_flops_counter_hook, module, inputs, output)
                binary = isinstance(module, BinaryConv2d) and module.is_binary
                record(module_name, module, "binary" if binary else "real", output,
                       bops=macs if binary else 0, flops=0 if binary else macs)
            elif isinstance(module, (BinaryLinear, nn.Linear)):
                macs = _macs(linear_flops_counter_hook, module, inputs, output)
                binary = isinstance(module, BinaryLinear) and module.is_binary
                record(module_name, module, "binary" if binary else "real", output,
                       bops=macs if binary else 0, flops=0 if binary else macs)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                record(module_name, module, "real", output,
                       flops=convention.batchnorm * output.numel())
            elif isinstance(module, (nn.PReLU, nn.Hardtanh, nn.ReLU)):
                record(module_name, module, "real", output,
                       flops=convention.activation * output.numel())
            elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                record(module_name, module, "real", output,
                       flops=convention.pooling * inputs[0].numel())
            elif isinstance(module, InformationRecovery):
                taps, last = inputs
                pooled = sum(t.numel() for t in taps if t.shape[-2:] != last.shape[-2:])
                record(f"{module_name}.taps", module, "real", output,
                       flops=convention.tap_alignment * pooled, type_name="tap alignment",
                       with_params=False)
            additions = _residual_additions(module)
            if additions:
                record(f"{module_name}.add", module, "real", output,
                       flops=convention.residual_add * additions * output.numel(),
                       type_name="residual add", with_params=False)
        return hook

    _forward_once(model, input_size, [(module, hook_for(module_name))
                                      for module_name, module in model.named_modules()])
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


def default_input_size(model_name: str) -> tuple:
    return (3, 224, 224) if "imagenet" in model_name or model_name == "resnet34_teacher" \
        else (3, 32, 32)


def build_variant(model_name: str, variant: str = "baseline", taps: str = "authors",
                  num_classes: Optional[int] = None) -> nn.Module:
    """``baseline``: binary, no recovery; ``fp``: full precision; a preset name: IR²Net."""
    kwargs = {"num_classes": num_classes}
    if model_name == "resnet34_teacher":
        return create_model(model_name, **kwargs)
    if variant == "fp":
        return create_model(model_name, precision="fp", **kwargs)
    if variant == "baseline":
        return create_model(model_name, **kwargs)
    return create_model(model_name, recovery=recovery_preset(variant).spec, taps=taps, **kwargs)


# ----------------------------------------------------------------------------- Eq. 17 / 18
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


def _recovery_geometry(model: nn.Module, input_size) -> tuple[int, int, int, int]:
    found = {}

    def hook(module, inputs, output):
        taps, last = inputs
        found["c_in"] = module.in_channels
        found["c_n"], found["h"], found["w"] = last.shape[1], last.shape[2], last.shape[3]

    _forward_once(model, input_size, [(model.recovery, hook)])
    return found["c_in"], found["c_n"], found["h"], found["w"]


def table2_rows(taps: str = "authors") -> list[dict]:
    """Table II: r, g and the Eq. 17 / Eq. 18 costs for each CIFAR-10 preset."""
    rows = []
    for preset in RECOVERY_PRESETS.values():
        if preset.table != "II":
            continue
        size = default_input_size(preset.backbone)
        model = build_variant(preset.backbone, preset.name, taps=taps)
        c_in, c_n, h, w = _recovery_geometry(model, size)
        scale = q_scale(build_variant(preset.backbone, "baseline"), size)
        eq18 = q_cirec_eq18(c_in, c_n, h, w, preset.spec.r, preset.spec.g)
        rows.append({"backbone": preset.row, "model": preset.backbone, "r": preset.spec.r,
                     "g": preset.spec.g, "taps": taps, "c_in": c_in, "c_n": c_n,
                     "h_n": h, "w_n": w, "q_scale": scale, "q_cirec_eq18": eq18,
                     "q_cirec_built": q_cirec_built(model, size),
                     "eq18_within_q_scale": eq18 <= scale})
    return rows


def table5_rows() -> list[dict]:
    """Table V: the ImageNet variants' r and g, from the presets."""
    return [{"method": p.row, "r": p.spec.r, "g": "-" if p.spec.r == 1 else p.spec.g,
             "preset": p.name} for p in RECOVERY_PRESETS.values() if p.table == "V"]


# ----------------------------------------------------------------------------- Table VI
@lru_cache(maxsize=1)
def paper_values() -> dict:
    from .config import read_yaml_text
    return read_yaml_text(resources.files("ir2net").joinpath("paper_values.yaml").read_text())


_TABLE6_COMPUTED = {
    "IR²Net-A": ("resnet18_bireal_imagenet", "table5_ir2net_a"),
    "IR²Net-B": ("resnet18_bireal_imagenet", "table5_ir2net_b"),
    "IR²Net-C": ("resnet18_bireal_imagenet", "table5_ir2net_c"),
    "IR²Net-D": ("resnet18_bireal_imagenet", "table5_ir2net_d"),
    "Bi-Real Net": ("resnet18_bireal_imagenet", "baseline"),
    "FP": ("resnet18_bireal_imagenet", "fp"),
}


def table6_rows(convention="ir2net_table6") -> list[dict]:
    """Table VI in the paper's row order: computed rows for IR²Net-A..D, the Bi-Real
    baseline and the FP ResNet-18; the other methods quoted from the paper."""
    convention = _convention(convention)
    rows = []
    for paper_row in paper_values()["table6"]:
        method = paper_row["method"]
        row = {"method": method, "source": "quoted" if paper_row.get("quoted") else "computed",
               "bops": None, "flops": None, "ops": None,
               "paper_bops": paper_row["bops"], "paper_flops": paper_row["flops"],
               "paper_ops": paper_row["ops"], "convention": convention.name}
        if method in _TABLE6_COMPUTED:
            model_name, variant = _TABLE6_COMPUTED[method]
            report = count_complexity(build_variant(model_name, variant), (3, 224, 224),
                                      convention, name=f"{model_name}/{variant}")
            row.update(bops=report.bops, flops=report.flops, ops=report.ops)
        else:
            row.update(bops=paper_row["bops"], flops=paper_row["flops"], ops=paper_row["ops"])
        rows.append(row)
    return rows
