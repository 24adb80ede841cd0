"""Binary convolutions on a real XNOR-popcount engine: OpenVINO's CPU plugin (issue 25).

The first building block of ``ir2net export --format openvino``: one binary convolution of
the package (Eq. 2: ``conv(sign(a), sign(w))``) as an OpenVINO graph node that runs the
plugin's bit-packed kernel (``jit_avx512_u1`` on a CPU with AVX-512), with exactly PyTorch's
result.  Facts this rests on, each checked by tests/test_openvino_engine.py:

* The kernel is reached only through ``FakeQuantize(levels=2)`` feeding
  ``BinaryConvolution(mode="xnor-popcount")``; ``ov.convert_model`` of the PyTorch module
  gives ``Sign`` + a float ``Convolution`` instead.
* FakeQuantize with equal input bounds ``t`` and outputs 0 / 1 gives the bit ``x > t``.
  Eq. 3 maps ``x >= 0`` (and -0.0) to +1, so ``t`` is minus the smallest positive float32
  (a subnormal): ``x > -2**-149`` holds exactly for ``x >= 0``.  The authors' ``torch.sign``
  (``sign_zero="zero"``) maps 0 to 0, which has no binary code: refused.  Weights use the
  same rule (bit 1 where ``w >= 0``).
* ``pad_value = 0.0`` skips padded taps, which is PyTorch's zero padding of a +-1 tensor.
* Weights are a u1 constant, packed least-significant bit first into the buffer of an
  ``ov.Tensor`` allocated with type u1 (``numpy.packbits(..., bitorder="little")``); building
  the tensor from a packed numpy array instead gave wrong results.
* Input channels that are not a multiple of 8 were reported to give wrong results: refused.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["EngineError", "SIGN_THRESHOLD", "binary_conv2d", "binary_primitives",
           "compile_for_cpu", "openvino_ops"]

#: FakeQuantize's threshold: bit = x > t.  Minus the smallest positive float32, so that the
#: bit is 1 exactly where Eq. 3 gives +1 (x >= 0, -0.0 included).
SIGN_THRESHOLD = -float(np.nextafter(np.float32(0), np.float32(1)))


class EngineError(ValueError):
    """A model the engine cannot run exactly; the message names the layer and why."""


def openvino_ops():
    """``openvino.opset13``, or a clear error where the optional extra is missing."""
    try:
        import openvino.opset13 as ops
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise EngineError("OpenVINO is not installed: pip install -e '.[deploy]'") from error
    return ops


def _scalar(value: float):
    return openvino_ops().constant(np.array(value, dtype=np.float32).reshape(1, 1, 1, 1))


def _packed_weights(weight: torch.Tensor, name: str):
    """Eq. 3's sign(w) of an OIHW weight as a u1 constant, bit 1 = +1 (w >= 0, so a weight
    exactly 0 is +1 as in PyTorch), least-significant bit first."""
    import openvino as ov

    bits = (weight.detach().cpu() >= 0).numpy().astype(np.uint8).reshape(-1)
    tensor = ov.Tensor(ov.Type.u1, ov.Shape(list(weight.shape)))
    tensor.data.view(np.uint8).reshape(-1)[:] = np.packbits(bits, bitorder="little")
    return openvino_ops().constant(tensor)


def binary_conv2d(node, weight: torch.Tensor, *, stride: int | Sequence[int] = 1,
                  padding: int = 1, dilation: int = 1, sign_zero: str = "plus_one",
                  name: str = "binary_conv"):
    """``conv2d(sign(node), sign(weight), stride, padding)`` (Eq. 2, 3) as FakeQuantize +
    BinaryConvolution on ``node`` (float32, NCHW).  Refuses what the engine cannot run exactly
    with an :class:`EngineError` naming ``name``."""
    ops = openvino_ops()
    if sign_zero != "plus_one":
        raise EngineError(f"{name}: sign_zero={sign_zero!r} maps 0 to 0, which has no binary "
                          "code; only Eq. 3's sign (sign_zero='plus_one') runs on the engine")
    out_channels, in_channels, _, _ = weight.shape
    if in_channels % 8:
        raise EngineError(f"{name}: {in_channels} input channels, not a multiple of 8; "
                          "OpenVINO's binary convolution gives wrong results there")
    strides = [stride, stride] if isinstance(stride, int) else list(stride)
    bits = ops.fake_quantize(node, _scalar(SIGN_THRESHOLD), _scalar(SIGN_THRESHOLD),
                             _scalar(0.0), _scalar(1.0), 2)
    conv = ops.binary_convolution(bits, _packed_weights(weight, name), strides,
                                  [padding, padding], [padding, padding], [dilation, dilation],
                                  "xnor-popcount", 0.0)
    conv.set_friendly_name(name)
    return conv


def compile_for_cpu(model, threads: int = 1, counters: bool = True):
    """Compile for the CPU plugin with float32 for the real-valued layers (unset, an AVX-512
    bf16 CPU runs them in bfloat16) and, with ``counters``, per-layer counters on (they cost
    time: off for latency)."""
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                  "INFERENCE_PRECISION_HINT": "f32",
                                                  "PERF_COUNT": counters})


def binary_primitives(compiled, *, require_binary: bool = True) -> dict[str, str]:
    """The primitive that runs each binary convolution of a compiled model (its runtime
    info); with ``require_binary``, fail unless every one runs on bits (``*_u1``)."""
    primitives = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "BinaryConvolution":
            primitives[op.get_friendly_name()] = info["primitiveType"].astype(str)
    slow = {name: kind for name, kind in primitives.items() if not kind.endswith("_u1")}
    if require_binary and slow:
        raise EngineError("binary convolutions not on the bit-packed kernel: "
                          + ", ".join(f"{name} ({kind})" for name, kind in slow.items()))
    return primitives
