"""Whole trained models as OpenVINO graphs whose binary convolutions run on bits (issue 25).

``ov.convert_model`` of a PyTorch module turns Eq. 2's ``conv(sign(a), sign(w))`` into a
``Sign`` and a float ``Convolution``, and its module-replacement extensions fail to trace
with this project's torch; so the graph is written here with the ``openvino.opset13`` API,
one emitter per layer type (a registry, like the model registry):

* every binary convolution becomes the binarising FakeQuantize + BinaryConvolution pair of
  :func:`ir2net.openvino_engine.binary_conv2d`, with its weights packed to one bit;
* everything real-valued stays float32: the stem, BatchNorm (folded to a multiply-add with
  the running statistics, as eval mode computes it), Hardtanh / PReLU / ReLU, the option-A
  and 1x1-conv shortcuts, IRec / CIRec (Eq. 11-16), pooling and the classifier;
* IRes (Eq. 5-10) exists only in training (Algorithm 1's second pass), so it has no node.

``binary_kernel=False`` writes the same network with float convolutions of the +-1 values:
the float32 baseline the latency measurement sets beside the binary kernel.  A layer the
engine cannot run exactly is refused with an :class:`~ir2net.openvino_engine.EngineError`
naming it (never silently wrong): a sign that maps 0 to 0, binary convolutions with input
channels that are not a multiple of 8 or with groups, binary activations with real weights
(stage 1 of the ImageNet recipe), a module type without an emitter.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .binarize import BinaryConv2d
from .models.layers import IR2NetClassifier, OptionAShortcut
from .models.resnet_cifar import BiRealBlock, IRNetBlock
from .models.resnet_he import BasicBlock, HeResNet
from .models.resnet_imagenet import BiRealImageNetBlock
from .openvino_engine import SIGN_THRESHOLD, EngineError, binary_conv2d, openvino_ops
from .recovery import CIRec, InformationRecovery

__all__ = ["to_openvino", "save_openvino", "EMITTERS", "binary_layer_count"]

Emitter = Callable[["GraphBuilder", nn.Module, object, str], object]
#: module type -> the function that writes it into the graph
EMITTERS: dict[type, Emitter] = {}


def emits(*types: type):
    def register(function: Emitter) -> Emitter:
        for kind in types:
            EMITTERS[kind] = function
        return function
    return register


class GraphBuilder:
    """Writes modules into an OpenVINO graph; each node is named after its module's path
    (what OpenVINO's per-layer counters report)."""

    def __init__(self, binary_kernel: bool = True):
        self.binary_kernel = binary_kernel
        self.ops = openvino_ops()

    def __call__(self, module: nn.Module, node, name: str):
        for kind in type(module).__mro__:
            if kind in EMITTERS:
                return EMITTERS[kind](self, module, node, name)
        raise EngineError(f"{name}: no OpenVINO emitter for {type(module).__name__}")

    def child(self, parent: nn.Module, attribute: str, node, name: str):
        return self(getattr(parent, attribute), node, _path(name, attribute))

    def constant(self, values, shape=None):
        array = torch.as_tensor(values).detach().to("cpu", torch.float32).numpy()
        return self.ops.constant(array if shape is None else array.reshape(shape))

    def add(self, a, b, name: str):
        return self.ops.add(a, b, name=name)


def _path(parent: str, child: str) -> str:
    """A module's dotted path (the top-level model's own name is empty)."""
    return f"{parent}.{child}" if parent else child


def _pair(value) -> list[int]:
    return list(value) if isinstance(value, (tuple, list)) else [value, value]


def _padding(module: nn.Conv2d, name: str) -> list[int]:
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        raise EngineError(f"{name}: padding {module.padding!r} ({module.padding_mode}) is not "
                          "exported; explicit zero padding only")
    return _pair(module.padding)


def _with_bias(builder: GraphBuilder, module: nn.Module, node, name: str):
    if module.bias is None:
        return node
    return builder.add(node, builder.constant(module.bias, (1, -1, 1, 1)), _path(name, "bias"))


def _float_conv(builder: GraphBuilder, module: nn.Conv2d, node, weight: torch.Tensor,
                name: str):
    ops, padding = builder.ops, _padding(module, name)
    arguments = (_pair(module.stride), padding, padding, _pair(module.dilation))
    if module.groups == 1:
        return ops.convolution(node, builder.constant(weight), *arguments, name=name)
    out_channels = weight.shape[0]
    grouped = weight.reshape(module.groups, out_channels // module.groups, *weight.shape[1:])
    return ops.group_convolution(node, builder.constant(grouped), *arguments, name=name)


@emits(nn.Conv2d)
def _conv(builder, module, node, name):
    return _with_bias(builder, module, _float_conv(builder, module, node, module.weight, name),
                      name)


def _plus_minus_one(builder: GraphBuilder, node, name: str):
    """Eq. 3 in float: +1 where x >= 0 (-0.0 included), else -1: the float baseline's
    binarisation.  (The binarising FakeQuantize of :func:`binary_conv2d` does not serve here:
    with equal input bounds and no binary convolution behind it, the plugin gave NaN.)"""
    ops = builder.ops
    return ops.select(ops.greater_equal(node, builder.constant(0.0, (1, 1, 1, 1))),
                      builder.constant(1.0, (1, 1, 1, 1)), builder.constant(-1.0, (1, 1, 1, 1)),
                      name=_path(name, "sign"))


@emits(BinaryConv2d)
def _binary_conv(builder, module, node, name):
    """Eq. 2-4: ``conv(sign(a), sign(w))``, times Eq. 4's scaling factor where one is set."""
    if module.input_quantizer is None and module.weight_quantizer is None:
        return _conv(builder, module, node, name)
    if not module.is_binary:
        raise EngineError(f"{name}: binary activations with real-valued weights (stage 1 of "
                          "the ImageNet recipe) have no XNOR-popcount form; export the stage-2 "
                          "model")
    for quantizer in (module.input_quantizer, module.weight_quantizer):
        if getattr(quantizer, "sign_zero", "plus_one") != "plus_one":
            raise EngineError(f"{name}: sign_zero={quantizer.sign_zero!r} maps 0 to 0, which "
                              "has no binary code; only Eq. 3's sign runs on the engine")
    if module.groups != 1:
        raise EngineError(f"{name}: a grouped binary convolution is not exported")
    weight = module.weight.detach().float()
    if builder.binary_kernel:
        padding = _padding(module, name)
        if padding[0] != padding[1]:
            raise EngineError(f"{name}: asymmetric padding {padding} is not exported")
        out = binary_conv2d(node, weight, stride=_pair(module.stride), padding=padding[0],
                            dilation=_pair(module.dilation)[0], name=name)
    else:
        signs = torch.where(weight >= 0, 1.0, -1.0)
        out = _float_conv(builder, module, _plus_minus_one(builder, node, name), signs, name)
    if module.scaling == "channel_mean":
        out = builder.ops.multiply(out, builder.constant(weight.abs().mean(dim=(1, 2, 3)),
                                                         (1, -1, 1, 1)), name=_path(name, "alpha"))
    elif module.scaling == "learned":
        out = builder.ops.multiply(out, builder.constant(module.alpha, (1, -1, 1, 1)),
                                   name=_path(name, "alpha"))
    return _with_bias(builder, module, out, name)


@emits(nn.BatchNorm2d, nn.BatchNorm1d)
def _batchnorm(builder, module, node, name):
    """Eval-mode BatchNorm as one multiply-add: ``x * g / sqrt(var + eps) + (b - mean * that)``."""
    if module.running_var is None:
        raise EngineError(f"{name}: BatchNorm without running statistics is not exported")
    scale = torch.rsqrt(module.running_var.double() + module.eps)
    if module.weight is not None:
        scale = scale * module.weight.double()
    shift = -module.running_mean.double() * scale
    if module.bias is not None:
        shift = shift + module.bias.double()
    shape = (1, -1, 1, 1) if isinstance(module, nn.BatchNorm2d) else (1, -1)
    scaled = builder.ops.multiply(node, builder.constant(scale, shape), name=_path(name, "scale"))
    return builder.add(scaled, builder.constant(shift, shape), name)


@emits(nn.Hardtanh)
def _hardtanh(builder, module, node, name):
    return builder.ops.clamp(node, module.min_val, module.max_val, name=name)


@emits(nn.ReLU)
def _relu(builder, module, node, name):
    return builder.ops.relu(node, name=name)


@emits(nn.PReLU)
def _prelu(builder, module, node, name):
    return builder.ops.prelu(node, builder.constant(module.weight), name=name)


@emits(nn.Identity)
def _identity(builder, module, node, name):
    return node


@emits(nn.Sequential)
def _sequential(builder, module, node, name):
    for child_name, child in module.named_children():
        node = builder(child, node, _path(name, child_name))
    return node


@emits(nn.MaxPool2d)
def _max_pool(builder, module, node, name):
    padding = _pair(module.padding)
    return builder.ops.max_pool(node, _pair(module.stride), _pair(module.dilation), padding,
                                padding, _pair(module.kernel_size),
                                "ceil" if module.ceil_mode else "floor", name=name).output(0)


@emits(nn.AvgPool2d)
def _avg_pool(builder, module, node, name):
    if module.divisor_override is not None:
        raise EngineError(f"{name}: AvgPool2d's divisor_override is not exported")
    padding = _pair(module.padding)
    return builder.ops.avg_pool(node, _pair(module.stride), padding, padding,
                                _pair(module.kernel_size), not module.count_include_pad,
                                "ceil" if module.ceil_mode else "floor", name=name)


def _adaptive_average(builder: GraphBuilder, node, size: list[int], name: str):
    """Adaptive average pooling to ``size``: a global mean, or, where the input's size is a
    multiple of ``size`` (every tap of every backbone), the plain average pooling it then
    equals (the CPU plugin runs AdaptiveAvgPool with a generic kernel, several times slower)."""
    if list(size) == [1, 1]:
        return builder.ops.reduce_mean(node, np.array([2, 3], dtype=np.int64), True, name=name)
    source = _spatial_size(node)
    if all(have % want == 0 for have, want in zip(source, size)):
        window = [have // want for have, want in zip(source, size)]
        return builder.ops.avg_pool(node, window, [0, 0], [0, 0], window, True, name=name)
    return builder.ops.adaptive_avg_pool(node, np.array(size, dtype=np.int64), name=name)


def _spatial_size(node) -> list[int]:
    return [dimension.get_length() for dimension in list(node.get_output_partial_shape(0))[2:]]


@emits(nn.AdaptiveAvgPool2d)
def _adaptive_avg_pool(builder, module, node, name):
    return _adaptive_average(builder, node, _pair(module.output_size), name)


@emits(nn.Linear)
def _linear(builder, module, node, name):
    out = builder.ops.matmul(node, builder.constant(module.weight), False, True, name=name)
    if module.bias is None:
        return out
    return builder.add(out, builder.constant(module.bias, (1, -1)), _path(name, "bias"))


def _flatten(builder: GraphBuilder, node, name: str):
    return builder.ops.reshape(node, np.array([0, -1], dtype=np.int64), True, name=name)


@emits(OptionAShortcut)
def _option_a(builder, module, node, name):
    """He et al.'s option A: every ``stride``-th pixel, zero channels padded on both sides."""
    ops = builder.ops
    if module.stride != 1:
        step = np.array([module.stride, module.stride], dtype=np.int64)
        node = ops.slice(node, np.zeros(2, np.int64), np.full(2, np.iinfo(np.int64).max),
                         step, np.array([2, 3], dtype=np.int64), name=_path(name, "subsample"))
    _, _, _, _, before, after = module.pad
    return ops.pad(node, np.array([0, before, 0, 0], np.int64),
                   np.array([0, after, 0, 0], np.int64), "constant",
                   np.array(0.0, np.float32), name=name)


@emits(BiRealBlock)
def _bireal_block(builder, module, node, name):
    """``y = act1(bn1(conv1(x)) + s(x)); act2(bn2(conv2(y)) + y)``."""
    def conv_bn(index, x):
        return builder.child(module, f"bn{index}",
                             builder.child(module, f"conv{index}", x, name), name)
    shortcut = builder.child(module, "shortcut", node, name)
    y = builder.child(module, "act1", builder.add(conv_bn(1, node), shortcut, _path(name, "add1")),
                      name)
    return builder.child(module, "act2", builder.add(conv_bn(2, y), y, _path(name, "add2")), name)


@emits(IRNetBlock)
def _irnet_block(builder, module, node, name):
    """``act2(bn2(conv2(act1(bn1(conv1(x))))) + s(x))``."""
    y = node
    for index in (1, 2):
        y = builder.child(module, f"bn{index}", builder.child(module, f"conv{index}", y, name),
                          name)
        if index == 1:
            y = builder.child(module, "act1", y, name)
    shortcut = builder.child(module, "shortcut", node, name)
    return builder.child(module, "act2", builder.add(y, shortcut, _path(name, "add")), name)


@emits(BiRealImageNetBlock)
def _bireal_imagenet_block(builder, module, node, name):
    """``PReLU(BN(binary conv(x)) + downsample(x))``."""
    y = builder.child(module, "bn", builder.child(module, "conv", node, name), name)
    shortcut = builder.child(module, "downsample", node, name)
    return builder.child(module, "act", builder.add(y, shortcut, _path(name, "add")), name)


@emits(BasicBlock)
def _he_block(builder, module, node, name):
    """The calibration's real-valued block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + s(x))``."""
    y = builder.child(module, "relu", builder.child(
        module, "bn1", builder.child(module, "conv1", node, name), name), name)
    y = builder.child(module, "bn2", builder.child(module, "conv2", y, name), name)
    shortcut = builder.child(module, "shortcut", node, name)
    return builder.child(module, "relu", builder.add(y, shortcut, _path(name, "add")), name)


@emits(HeResNet)
def _he_resnet(builder, module, node, name):
    for part in ("stem", "stages", "pool"):
        node = builder.child(module, part, node, name)
    node = _flatten(builder, node, _path(name, "flatten"))
    return builder.child(module, "classifier", node, name)


@emits(CIRec)
def _cirec(builder, module, node, name):
    """Eq. 14-16: the 1x1 reduction, the group conv on it, both concatenated (cut to C_n)."""
    channel = builder.child(module, "channel", node, name)
    spatial = builder.child(module, "spatial", channel, name)
    fused = builder.ops.concat([channel, spatial], 1, name=_path(name, "concat"))
    width = channel.get_output_partial_shape(0)[1].get_length() + \
        spatial.get_output_partial_shape(0)[1].get_length()
    if width == module.out_channels:
        return fused
    return builder.ops.slice(fused, np.array([0], np.int64),
                             np.array([module.out_channels], np.int64), np.array([1], np.int64),
                             np.array([1], np.int64), name=_path(name, "cut"))


def _recovery(builder: GraphBuilder, module: InformationRecovery, taps: list, last,
              name: str):
    """Eq. 11-12: every tap average-pooled to the last stage's size and concatenated with
    it, then fused (Eq. 13, or 14-16)."""
    size = _spatial_size(last)
    pooled = [tap if _spatial_size(tap) == size
              else _adaptive_average(builder, tap, size, _path(name, f"pool{index}"))
              for index, tap in enumerate(taps)]
    joined = builder.ops.concat([*pooled, last], 1, name=_path(name, "concat"))
    return builder.child(module, "fusion", joined, name)


@emits(IR2NetClassifier)
def _ir2net_classifier(builder, module, node, name):
    """Backbone (taps kept for recovery) -> IRec/CIRec -> pooling -> head."""
    backbone = _path(name, "backbone")
    node = builder.child(module.backbone, "stem", node, backbone)
    found = {"stem": node}
    for stage_name, stage in module.backbone.stages.items():
        node = builder(stage, node, _path(_path(backbone, "stages"), stage_name))
        found[stage_name] = node
    if module.recovery is not None:
        node = _recovery(builder, module.recovery, [found[tap] for tap in module.tap_names],
                         node, _path(name, "recovery"))
    node = _flatten(builder, builder.child(module, "pool", node, name), _path(name, "flatten"))
    node = builder.child(module, "head_norm", node, name)
    return builder.child(module, "classifier", node, name)


def binary_layer_count(model: nn.Module) -> int:
    return sum(1 for module in model.modules()
               if isinstance(module, BinaryConv2d) and module.is_binary)


def to_openvino(model: nn.Module, input_size: tuple[int, int, int], *, batch: int = 1,
                binary_kernel: bool = True):
    """``model`` (eval mode) as an ``ov.Model`` taking a float32 NCHW batch of
    ``input_size`` and returning the logits.  The batch size is fixed (the CPU plugin's
    binary convolution takes no dynamic shape): ``ov.Model.reshape`` changes it."""
    import openvino as ov

    if model.training:
        raise EngineError("export a model in eval mode (BatchNorm uses its running statistics)")
    builder = GraphBuilder(binary_kernel)
    images = builder.ops.parameter([batch, *input_size], ov.Type.f32, name="images")
    with torch.no_grad():
        logits = builder(model, images, "")
    logits.set_friendly_name("logits")
    result = ov.Model([logits], [images], "ir2net")
    result.outputs[0].get_tensor().set_names({"logits"})
    return result


def save_openvino(graph, out: str | Path) -> Path:
    """Write ``graph`` as OpenVINO IR (``out`` = ``NAME.xml``, beside it ``NAME.bin``), float32
    weights kept as they are (no fp16 compression), both files replaced together."""
    import openvino as ov

    out = Path(out)
    if out.suffix != ".xml":
        raise EngineError(f"{out}: an OpenVINO IR is written as NAME.xml (+ NAME.bin)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    try:
        ov.save_model(graph, str(staging / out.name), compress_to_fp16=False)
        os.replace(staging / out.with_suffix(".bin").name, out.with_suffix(".bin"))
        os.replace(staging / out.name, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
