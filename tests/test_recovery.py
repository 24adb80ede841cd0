"""IRec (Eq. 11-13), CIRec (Eq. 14-16) and the Table II / V presets."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ir2net.models import create_model
from ir2net.recovery import (CIRec, IRec, InformationRecovery, RECOVERY_PRESETS, RecoverySpec,
                             build_fusion)


def hardtanh(channels):
    return nn.Hardtanh()


# (backbone, input size, tap channels summed with the last stage, C_n, H_n)
BACKBONES = {
    "resnet20_bireal": (32, 16 + 16 + 32 + 64, 64, 8),
    "vgg_small": (32, 128 + 512, 512, 4),  # authors' taps (the default)
    "resnet18_cifar": (32, 64 + 64 + 128 + 256 + 512, 512, 4),
    "resnet18_bireal_imagenet": (224, 64 + 64 + 128 + 256 + 512, 512, 7),
}


@pytest.mark.parametrize("name", sorted(RECOVERY_PRESETS))
def test_every_preset_builds_with_the_right_channels(name):
    preset = RECOVERY_PRESETS[name]
    size, c_in, c_n, h_n = BACKBONES[preset.backbone]
    model = create_model(preset.backbone, recovery=preset.spec)
    recovery = model.recovery
    assert recovery.in_channels == c_in
    fusion = recovery.fusion
    r, g = preset.spec.r, preset.spec.g
    if r == 1:
        assert isinstance(fusion, IRec)
        assert fusion[0].in_channels == c_in and fusion[0].out_channels == c_n
    else:
        primary = math.ceil(c_n / r)
        assert isinstance(fusion, CIRec)
        assert fusion.channel[0].out_channels == primary
        spatial = fusion.spatial[0]
        assert spatial.kernel_size == (3, 3)
        assert spatial.groups == (primary if g == "C_I" else g)
        assert spatial.out_channels == primary * (r - 1) >= c_n - primary
    taps = [torch.randn(2, c, h_n * 2, h_n * 2) for c in (c_in - c_n,)]
    out = recovery(taps, torch.randn(2, c_n, h_n, h_n))
    assert out.shape == (2, c_n, h_n, h_n)


def test_table_values_are_the_papers():
    specs = {name: (p.spec.r, p.spec.g) for name, p in RECOVERY_PRESETS.items()}
    assert specs == {"table2_vgg_small": (32, "C_I"), "table2_resnet20": (4, "C_I"),
                     "table2_resnet18": (20, "C_I"), "table5_ir2net_a": (1, "C_I"),
                     "table5_ir2net_b": (2, "C_I"), "table5_ir2net_c": (4, 8),
                     "table5_ir2net_d": (20, "C_I")}


def test_cirec_with_r_1_is_irec():
    assert isinstance(build_fusion(RecoverySpec(1), 128, 64, hardtanh), IRec)
    assert RecoverySpec(1).kind == "irec"
    with pytest.raises(ValueError, match="r = 1 is IRec"):
        CIRec(128, 64, 1, "C_I", hardtanh)


def test_cirec_forward_matches_eq14_to_16():
    torch.manual_seed(1)
    module = CIRec(40, 16, 4, "C_I", hardtanh).eval()
    x = torch.randn(2, 40, 5, 5)
    conv1, bn1 = module.channel[0], module.channel[1]
    conv2, bn2 = module.spatial[0], module.spatial[1]
    channel = F.hardtanh(bn1(F.conv2d(x, conv1.weight)))                         # Eq. 14
    spatial = F.hardtanh(bn2(F.conv2d(channel, conv2.weight, padding=1, groups=4)))  # Eq. 15
    expected = torch.cat([channel, spatial], 1)[:, :16]                          # Eq. 16
    torch.testing.assert_close(module(x), expected)


def test_irec_pools_and_concatenates_eq11_12():
    torch.manual_seed(2)
    module = InformationRecovery([3, 5], 4, RecoverySpec(1), hardtanh).eval()
    taps = [torch.randn(2, 3, 16, 16), torch.randn(2, 5, 8, 8)]
    last = torch.randn(2, 4, 4, 4)
    cat = torch.cat([F.adaptive_avg_pool2d(taps[0], 4), F.adaptive_avg_pool2d(taps[1], 4), last], 1)
    conv, bn = module.fusion[0], module.fusion[1]
    torch.testing.assert_close(module(taps, last), F.hardtanh(bn(F.conv2d(cat, conv.weight))))


def test_invalid_settings():
    with pytest.raises(ValueError, match="r must be"):
        RecoverySpec(0)
    with pytest.raises(ValueError, match="groups g"):
        RecoverySpec(4, "all")
    with pytest.raises(ValueError, match="must divide"):
        CIRec(64, 64, 4, 5, hardtanh)
