"""Backbones: shapes, which layers are binary, the registry, the teacher."""
import pytest
import torch
from torch import nn

from ir2net.binarize import BinaryConv2d
from ir2net.models import IR2NetClassifier, create_model, list_models, model_info
from ir2net.recovery import RecoverySpec

# name -> (input size, classes, binary 3x3 convs)
BACKBONES = {
    "resnet20_bireal": (32, 10, 18),
    "resnet20_irnet": (32, 10, 18),
    "vgg_small": (32, 10, 5),
    "resnet18_cifar": (32, 10, 16),
    "resnet18_bireal_imagenet": (64, 1000, 16),
}


def binary_convs(model):
    return [m for m in model.modules() if isinstance(m, BinaryConv2d)]


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("recovery", [None, RecoverySpec(4, "C_I")])
def test_forward_shapes(name, recovery):
    size, classes, _ = BACKBONES[name]
    model = create_model(name, recovery=recovery).eval()
    x = torch.randn(2, 3, size, size)
    logits, source = model(x, return_attention_source=True)
    assert logits.shape == (2, classes)
    assert source.shape[1] == model.backbone.last_channels
    assert torch.equal(model(x), logits)  # IRes never changes inference outputs


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_pre_activation_attention_source_is_the_input_of_the_final_activation(name):
    size, _, _ = BACKBONES[name]
    model = create_model(name, recovery=RecoverySpec(4, "C_I")).eval()
    x = torch.randn(2, 3, size, size)
    logits, output = model(x, return_attention_source=True)
    sources = model.attention_sources(x)
    assert torch.equal(sources["output"], output)
    last_stage = list(model.backbone.stages.values())[-1]
    final = last_stage[-1]
    activation = final.final_activation if hasattr(final, "final_activation") else final
    before = sources["pre_activation"]
    assert torch.equal(activation(before), output)
    assert not torch.equal(before, output)  # the activation clips or bends something
    model.set_attention_source("pre_activation")
    logits_pre, source = model(x, return_attention_source=True)
    assert torch.equal(logits_pre, logits) and torch.equal(source, before)
    with pytest.raises(ValueError, match="unknown attention source"):
        model.set_attention_source("residual")


def test_pre_activation_source_is_refused_where_the_last_stage_has_none():
    model = create_model("resnet20_bireal")
    model.backbone.stages["layer3"].append(nn.Identity())
    with pytest.raises(ValueError, match="Identity ends the last stage"):
        model.set_attention_source("pre_activation")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_first_and_last_layers_stay_real(name):
    _, _, count = BACKBONES[name]
    model = create_model(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert not isinstance(convs[0], BinaryConv2d)          # first conv
    assert type(model.classifier) is nn.Linear              # last linear
    binary = binary_convs(model)
    assert len(binary) == count
    assert all(m.is_binary and m.kernel_size == (3, 3) for m in binary)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_full_precision_counterpart_has_no_binary_layer(name):
    assert binary_convs(create_model(name, precision="fp")) == []


def test_stage1_binarizes_only_activations():
    model = create_model("resnet18_bireal_imagenet", precision="binary_activations")
    assert all(m.input_quantizer is not None and m.weight_quantizer is None
               for m in binary_convs(model))


def test_hardtanh_on_cifar_prelu_on_imagenet():
    cifar = create_model("resnet20_bireal")
    imagenet = create_model("resnet18_bireal_imagenet")
    assert any(isinstance(m, nn.Hardtanh) for m in cifar.modules())
    assert not any(isinstance(m, nn.PReLU) for m in cifar.modules())
    assert any(isinstance(m, nn.PReLU) for m in imagenet.modules())


def test_bireal_imagenet_downsample_is_avgpool_and_real_1x1():
    model = create_model("resnet18_bireal_imagenet")
    block = model.backbone.stages["layer2"][0]
    pool, conv, bn = block.downsample
    assert isinstance(pool, nn.AvgPool2d) and type(conv) is nn.Conv2d
    assert conv.kernel_size == (1, 1)


def test_vgg_small_tap_styles():
    paper = create_model("vgg_small", recovery=RecoverySpec(32), taps="paper")
    authors = create_model("vgg_small", recovery=RecoverySpec(32), taps="authors")
    assert paper.recovery.in_channels == 1408
    assert authors.recovery.in_channels == 640


def test_bireal_block_has_a_shortcut_per_conv():
    model = create_model("resnet20_bireal").eval()
    block = model.backbone.stages["layer1"][0]
    x = torch.randn(1, 16, 8, 8)
    y = block.act1(block.bn1(block.conv1(x)) + x)
    torch.testing.assert_close(block(x), block.act2(block.bn2(block.conv2(y)) + y))


def test_registry():
    assert set(BACKBONES) | {"resnet34_teacher", "resnet20"} == set(list_models())
    with pytest.raises(ValueError, match="available: .*resnet20_bireal"):
        create_model("resnet21")
    assert isinstance(create_model("resnet20_bireal"), IR2NetClassifier)


def test_calibration_resnet20_is_he_et_al():
    """The data calibration's network: 0.27 M parameters as in He et al. (2016, Table 6) and
    akamaster's 269,722; ReLU, nothing binary, option-A shortcuts without parameters."""
    model = create_model("resnet20")
    assert sum(p.numel() for p in model.parameters()) == 269_722
    assert not binary_convs(model)
    assert any(isinstance(m, nn.ReLU) for m in model.modules())
    assert not any(isinstance(m, (nn.Hardtanh, nn.PReLU)) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and all(c.kernel_size == (3, 3) for c in convs)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model_info("resnet20").binary is False
    assert model_info("resnet20").recipe == "cifar10_calibration_resnet20"


def test_untrained_teacher_and_teacher_from_file(tmp_path):
    teacher = create_model("resnet34_teacher", num_classes=7)
    assert teacher(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    torch.save(teacher.state_dict(), tmp_path / "t.pt")
    loaded = create_model("resnet34_teacher", num_classes=7, weights=str(tmp_path / "t.pt"))
    assert torch.equal(loaded.fc.weight, teacher.fc.weight)


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("recovery", [None, RecoverySpec(4, "C_I")])
def test_channels_last_gradients_stay_channels_last(name, recovery):
    """With train.channels_last every BatchNorm receives its gradient channels-last; a mixed
    layout (from the option-A shortcut, pooling or flattening) is up to 10x slower on the CPU."""
    size = BACKBONES[name][0]
    model = create_model(name, recovery=recovery).to(memory_format=torch.channels_last)
    layouts = []
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.register_full_backward_hook(lambda m, gin, gout: layouts.append(
                gout[0].is_contiguous(memory_format=torch.channels_last)))
    x = torch.randn(4, 3, size, size).contiguous(memory_format=torch.channels_last)
    model(x).sum().backward()
    assert layouts and all(layouts)
    # the same function in either layout (full precision: in a BNN, rounding differences
    # between two convolution algorithms flip signs and compound)
    torch.manual_seed(0)
    fp_last = create_model(name, precision="fp", recovery=recovery)
    fp_nchw = create_model(name, precision="fp", recovery=recovery)
    fp_nchw.load_state_dict(fp_last.state_dict())
    fp_last = fp_last.to(memory_format=torch.channels_last)
    outputs, grads = [], []
    for net, images in ((fp_last, x), (fp_nchw, x.contiguous())):
        images = images.clone().requires_grad_()
        out = net(images)
        out.square().sum().backward()
        outputs.append(out)
        grads.append(images.grad)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)
    # max-pooling and Hardtanh route gradients by comparisons, which rounding can tip
    relative = (grads[0] - grads[1]).norm() / grads[1].norm()
    assert relative < 0.05, relative


def test_every_model_carries_its_defaults():
    """No caller guesses from a name: input size, recipe and presets come with the entry."""
    from ir2net.config import list_recipes, load_config
    from ir2net.models import list_models, model_info

    for name in list_models():
        info = model_info(name)
        assert info.recipe in list_recipes(), name
        assert info.input_size == ((3, 224, 224) if info.recipe.startswith("imagenet")
                                   else (3, 32, 32)), name
        if info.binary:
            recipe = load_config(info.recipe, ["data.root=x"])
            assert recipe["model"]["name"] in list_models()
    assert model_info("resnet18_bireal_imagenet").presets == [
        "table5_ir2net_a", "table5_ir2net_b", "table5_ir2net_c", "table5_ir2net_d"]
    assert model_info("resnet20_bireal").presets == ["table2_resnet20"]
    assert not model_info("resnet34_teacher").binary
    assert model_info("vgg_small").tap_styles == ("paper", "authors")
    with pytest.raises(ValueError, match="unknown model 'resnet21'; available"):
        model_info("resnet21")


def test_one_stage_builder_serves_both_resnets():
    from ir2net.models import create_model

    cifar = create_model("resnet20_bireal")
    imagenet = create_model("resnet18_bireal_imagenet")
    for model, depth, widths in ((cifar, 3, [16, 32, 64]), (imagenet, 4, [64, 128, 256, 512])):
        stages = model.backbone.stages
        for index, width in enumerate(widths):
            layer = stages[f"layer{index + 1}"]
            assert len(layer) == depth
            first = layer[0].conv1 if hasattr(layer[0], "conv1") else layer[0].conv
            assert first.stride == ((2, 2) if index else (1, 1)) and first.out_channels == width
