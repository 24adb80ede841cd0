"""Eq. 2-4: sign, the two straight-through estimators, binary layers."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ir2net.binarize import (SIGN_ZERO_MODES, ApproxSign, Binarization, BinaryConv2d,
                             BinaryLinear, WeightSign, sign)


def approx_sign_polynomial(x):
    """Bi-Real Net's piecewise polynomial, written out case by case."""
    return torch.where(x < -1, -torch.ones_like(x),
           torch.where(x < 0, x * x + 2 * x,
           torch.where(x < 1, -x * x + 2 * x, torch.ones_like(x))))


def test_sign_follows_eq3_with_zero_mapped_to_plus_one():
    x = torch.tensor([-2.0, -1e-6, 0.0, 1e-6, 3.0])
    assert sign(x).tolist() == [-1, -1, 1, 1, 1]
    assert sign(x, "zero").tolist() == [-1, -1, 0, 1, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sign_equals_the_comparison_form_of_eq3(dtype):
    """-0.0 >= 0 holds, so Eq. 3 maps both zeros to +1; the smallest subnormals keep their sign."""
    x = torch.cat([torch.randn(4096), torch.tensor([0.0, -0.0, 1e-45, -1e-45, 1.0, -1.0])]).to(dtype)
    expected = torch.where(x >= 0, 1.0, -1.0).to(dtype)
    assert torch.equal(sign(x), expected)
    assert torch.equal(ApproxSign()(x), expected)          # the fused kernel on the CPU


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_pointwise_kernels_match_the_eager_expressions(monkeypatch, channels_last):
    x = torch.randn(4, 8, 6, 6) * 1.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    upstream = torch.randn_like(x)
    results = {}
    for fused in ("1", "0"):
        monkeypatch.setenv("IR2NET_FUSED_POINTWISE", fused)
        leaf = x.clone().requires_grad_()
        out = ApproxSign()(leaf)
        (out * upstream).sum().backward()
        results[fused] = (out, leaf.grad)
    assert torch.equal(results["1"][0], results["0"][0])
    torch.testing.assert_close(results["1"][1], results["0"][1], rtol=1e-6, atol=1e-6)


def test_fused_pointwise_falls_back_to_eager_when_compilation_fails(monkeypatch):
    from ir2net import binarize

    def broken_compile(*args, **kwargs):
        raise RuntimeError("no C++ compiler")
    kernel = binarize._FusedPointwise(binarize._approx_sign_grad)
    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setenv("IR2NET_FUSED_POINTWISE", "1")
    g, x = torch.randn(10), torch.randn(10)
    with pytest.warns(UserWarning, match="eager version runs instead"):
        out = kernel(g, x)
    assert torch.equal(out, binarize._approx_sign_grad(g, x)) and kernel.failed


def test_weight_ste_gradient_equals_clamp_gradient():
    w = torch.linspace(-2, 2, 401, dtype=torch.float64)
    upstream = torch.randn_like(w)
    ours = w.clone().requires_grad_()
    (WeightSign()(ours) * upstream).sum().backward()
    ref = w.clone().requires_grad_()
    (torch.clamp(ref, -1, 1) * upstream).sum().backward()
    torch.testing.assert_close(ours.grad, ref.grad)
    assert torch.equal(WeightSign()(w), sign(w))


def test_weight_quantizer_is_exactly_sign_forward_and_masked_gradient_backward():
    """Written with plain tensor operations (torch.compile on CUDA dropped a custom
    autograd.Function's backward for the weights): still sign(w) exactly, and exactly
    grad * 1{|w| < 1}, at 0, at +-1 and at the smallest magnitudes too."""
    w = torch.tensor([-2.0, -1.0, -0.999, -1e-38, -0.0, 0.0, 1e-38, 0.5, 1.0, 3.0])
    upstream = torch.randn_like(w)
    for sign_zero in SIGN_ZERO_MODES:
        latent = w.clone().requires_grad_()
        out = WeightSign(sign_zero)(latent)
        assert torch.equal(out, sign(w, sign_zero))
        (out * upstream).sum().backward()
        assert torch.equal(latent.grad, upstream * (w.abs() < 1).float())


def test_weight_quantizer_gradient_survives_torch_compile():
    torch.manual_seed(0)
    conv = BinaryConv2d(4, 4, 3, padding=1, input_quantizer=ApproxSign(),
                        weight_quantizer=WeightSign())
    x = torch.randn(2, 4, 6, 6)
    grads = []
    for module in (conv, torch.compile(conv)):
        conv.weight.grad = None
        module(x).square().mean().backward()
        grads.append(conv.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0])


def test_approx_sign_gradient_equals_autograd_of_polynomial():
    x = torch.linspace(-1.5, 1.5, 601, dtype=torch.float64)
    upstream = torch.randn_like(x)
    ours = x.clone().requires_grad_()
    (ApproxSign()(ours) * upstream).sum().backward()
    ref = x.clone().requires_grad_()
    (approx_sign_polynomial(ref) * upstream).sum().backward()
    torch.testing.assert_close(ours.grad, ref.grad)
    assert torch.equal(ApproxSign()(x), sign(x))


def test_binary_conv_is_conv_of_signs():
    conv = BinaryConv2d(4, 6, 3, padding=1, input_quantizer=ApproxSign(),
                        weight_quantizer=WeightSign())
    x = torch.randn(2, 4, 5, 5)
    expected = F.conv2d(sign(x), sign(conv.weight), padding=1)
    torch.testing.assert_close(conv(x), expected)
    assert conv.is_binary


def test_binary_conv_without_quantizers_is_plain_conv():
    conv = BinaryConv2d(3, 5, 3, padding=1)
    plain = nn.Conv2d(3, 5, 3, padding=1, bias=False)
    plain.weight.data.copy_(conv.weight.data)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(conv(x), plain(x))
    assert not conv.is_binary


def test_eq4_channel_mean_scaling():
    conv = BinaryConv2d(3, 4, 1, input_quantizer=ApproxSign(), weight_quantizer=WeightSign(),
                        scaling="channel_mean")
    x = torch.randn(2, 3, 4, 4)
    alpha = conv.weight.abs().mean(dim=(1, 2, 3))
    expected = F.conv2d(sign(x), sign(conv.weight)) * alpha.view(1, -1, 1, 1)
    torch.testing.assert_close(conv(x), expected)


def test_binary_linear():
    layer = BinaryLinear(6, 3, input_quantizer=ApproxSign(), weight_quantizer=WeightSign())
    x = torch.randn(4, 6)
    torch.testing.assert_close(layer(x), sign(x) @ sign(layer.weight).T)


@pytest.mark.parametrize("precision,binary_weights", [("binary", True),
                                                      ("binary_activations", False)])
def test_binarization_builds_the_requested_layer(precision, binary_weights):
    conv = Binarization(precision).conv(4, 4, 3, padding=1)
    assert isinstance(conv, BinaryConv2d)
    assert isinstance(conv.input_quantizer, ApproxSign)
    assert (conv.weight_quantizer is not None) == binary_weights
    assert type(Binarization("fp").conv(4, 4, 3)) is nn.Conv2d


def test_unknown_choices_fail_loudly():
    with pytest.raises(ValueError, match="precision"):
        Binarization("ternary")
    with pytest.raises(ValueError, match="sign_zero"):
        WeightSign("minus_one")


def test_bfloat16_binary_conv_is_exact_while_sums_fit_8_mantissa_bits():
    from ir2net.binarize import set_binary_compute_dtype
    conv = BinaryConv2d(16, 8, 3, padding=1, input_quantizer=ApproxSign(),
                        weight_quantizer=WeightSign())
    x = torch.randn(2, 16, 6, 6)
    expected = conv(x)                       # |sums| <= 16 * 9 = 144 < 256
    set_binary_compute_dtype(conv, torch.bfloat16)
    out = conv(x)
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    x.requires_grad_()
    conv(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
