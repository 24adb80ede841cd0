"""Binary convolutions on OpenVINO's XNOR-popcount kernel equal PyTorch's exactly, at every
shape of every binary backbone the package trains (ir2net.openvino_engine, issue 25)."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

ov = pytest.importorskip("openvino", reason="OpenVINO is the optional extra .[deploy]")

from ir2net.binarize import BinaryConv2d, sign  # noqa: E402
from ir2net.models import create_model, model_info  # noqa: E402
from ir2net.openvino_engine import (EngineError, binary_conv2d, binary_primitives,  # noqa: E402
                                    compile_for_cpu)

BINARY_BACKBONES = ("resnet20_bireal", "resnet20_irnet", "vgg_small", "resnet18_cifar",
                    "resnet18_bireal_imagenet")


def binary_conv_shapes() -> list[tuple]:
    """(in, out, kernel, stride, padding, H, W) of every binary convolution of the backbones,
    read off a forward pass (the backbones' own layers, not a list typed here)."""
    shapes = set()
    for name in BINARY_BACKBONES:
        model = create_model(name).eval()
        hooks = [module.register_forward_hook(
            lambda module, inputs, output: shapes.add(
                (module.in_channels, module.out_channels, module.kernel_size[0],
                 module.stride[0], module.padding[0], *inputs[0].shape[2:])))
            for module in model.modules()
            if isinstance(module, BinaryConv2d) and module.is_binary]
        with torch.no_grad():
            model(torch.zeros(1, *model_info(name).input_size))
        for hook in hooks:
            hook.remove()
    return sorted(shapes)


SHAPES = binary_conv_shapes()


def engine_conv(weight, x, stride, padding):
    import openvino.opset13 as ops

    source = ops.parameter(list(x.shape), ov.Type.f32, name="x")
    conv = binary_conv2d(source, weight, stride=stride, padding=padding, name="conv")
    compiled = compile_for_cpu(ov.Model([conv], [source]))
    return compiled(x.numpy())[0], binary_primitives(compiled, require_binary=False)


def test_backbones_have_binary_convolutions_at_both_strides():
    assert {shape[3] for shape in SHAPES} == {1, 2}
    assert len(SHAPES) >= 8


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "{}-{}-k{}-s{}-p{}-{}x{}".format(*s))
def test_binary_convolution_equals_pytorch_exactly(shape):
    in_channels, out_channels, kernel, stride, padding, height, width = shape
    generator = torch.Generator().manual_seed(sum(shape))
    weight = torch.randn(out_channels, in_channels, kernel, kernel, generator=generator)
    weight.view(-1)[::97] = 0.0  # weights exactly 0: +1, as Eq. 3
    x = torch.randn(1, in_channels, height, width, generator=generator)
    x[x.abs() < 0.1] = 0.0  # exact zeros (and -0.0): Eq. 3 maps them to +1
    x[0, 0, 0, : min(width, 3)] = -0.0
    x[0, -1, -1, :2] = torch.tensor([1e-40, -1e-40])[: min(width, 2)]  # subnormals
    out, primitives = engine_conv(weight, x, stride, padding)
    expected = torch.nn.functional.conv2d(sign(x), sign(weight), stride=stride, padding=padding)
    np.testing.assert_array_equal(out, expected.numpy())
    assert list(primitives) == ["conv"]


def test_bit_packed_kernel_runs_where_the_cpu_has_avx512():
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.is_file() else ""
    _, primitives = engine_conv(torch.randn(64, 64, 3, 3), torch.randn(1, 64, 8, 8), 1, 1)
    if " avx512f" not in flags:
        pytest.skip(f"no AVX-512 here; the plugin ran {primitives['conv']}")
    assert primitives == {"conv": "jit_avx512_u1"}


@pytest.mark.parametrize("change,message", [
    (dict(in_channels=12), "12 input channels, not a multiple of 8"),
    (dict(sign_zero="zero"), "has no binary code"),
])
def test_what_the_engine_cannot_run_exactly_is_refused_by_name(change, message):
    import openvino.opset13 as ops

    in_channels = change.get("in_channels", 16)
    weight = torch.randn(16, in_channels, 3, 3)
    source = ops.parameter([1, in_channels, 8, 8], ov.Type.f32, name="x")
    with pytest.raises(EngineError, match=f"layer4.0.conv1: .*{re.escape(message)}"):
        binary_conv2d(source, weight, name="layer4.0.conv1",
                      sign_zero=change.get("sign_zero", "plus_one"))
