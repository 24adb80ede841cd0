"""Complexity accounting: closed forms, Table VI, Eq. 17 / 18 (Table II)."""
import json

import pandas as pd
from ptflops import get_model_complexity_info
from torch import nn

from ir2net.binarize import ApproxSign, BinaryConv2d, BinaryLinear, WeightSign
from ir2net.cli import main
from ir2net.complexity import (Convention, count_complexity, build_variant, q_cirec_built,
                               q_cirec_eq18, q_scale)
from ir2net.reporting.complexity_tables import (table2_paragraph, table2_rows, table5_rows,
                                                 table6_rows)


def binary_conv(*args, **kwargs):
    return BinaryConv2d(*args, input_quantizer=ApproxSign(), weight_quantizer=WeightSign(), **kwargs)


def test_single_binary_conv_counts_bops_and_one_bit_weights():
    report = count_complexity(binary_conv(16, 32, 3, padding=1), (16, 10, 10))
    assert report.bops == 16 * 32 * 9 * 10 * 10
    assert report.flops == 0
    assert report.memory_bits == 16 * 32 * 9  # 1 bit per binary weight
    assert report.ops == report.bops / 64


def test_single_real_conv_counts_macs_and_32_bit_weights():
    report = count_complexity(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), (3, 16, 16))
    assert report.bops == 0
    assert report.flops == 3 * 8 * 9 * 8 * 8
    assert report.memory_bits == 32 * 3 * 8 * 9


def test_grouped_conv():
    report = count_complexity(nn.Conv2d(16, 48, 3, padding=1, groups=16, bias=False), (16, 7, 7))
    assert report.flops == (16 // 16) * 48 * 9 * 7 * 7
    binary = count_complexity(binary_conv(16, 48, 3, padding=1, groups=4), (16, 7, 7))
    assert binary.bops == (16 // 4) * 48 * 9 * 7 * 7


def test_linear_real_and_binary():
    assert count_complexity(nn.Linear(512, 1000), (512,)).flops == 512 * 1000 + 1000
    layer = BinaryLinear(256, 10, input_quantizer=ApproxSign(), weight_quantizer=WeightSign())
    report = count_complexity(layer, (256,))
    assert report.bops == 2560 and report.flops == 0


def test_elementwise_convention():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4), nn.PReLU(4),
                          nn.MaxPool2d(2))
    ours = count_complexity(model, (3, 8, 8), "ir2net_table6")
    conv = 3 * 4 * 64
    assert ours.flops == conv + 256 + 256 + 256  # BN, PReLU per output; pool per input
    assert count_complexity(model, (3, 8, 8), "reactnet").flops == conv


def test_our_hooks_agree_with_ptflops():
    """With ptflops' module rules and no residual additions, our per-layer sum is ptflops'
    total.  (ptflops' functional counting is off: it counts F.prelu and the pools a second
    time inside the modules that call them.)"""
    model = build_variant("resnet18_bireal_imagenet", "fp")
    rules = Convention("check", "", batchnorm=2, activation=1, residual_add=0, pooling=1,
                       tap_alignment=0)
    ours = count_complexity(model, (3, 224, 224), rules).flops
    macs, _ = get_model_complexity_info(model, (3, 224, 224), as_strings=False,
                                        print_per_layer_stat=False, backend="pytorch",
                                        backend_specific_config={"count_functional": False})
    assert ours == macs


def test_table6_reproduces_the_paper():
    rows = {row["method"]: row for row in table6_rows()}
    print("\nTable VI (ours vs paper, x1e8):")
    for method in ("IR²Net-A", "IR²Net-B", "IR²Net-C", "IR²Net-D", "Bi-Real Net", "FP"):
        row = rows[method]
        assert row["source"] == "computed"
        print(f"  {method:12s} FLOPs {row['flops'] / 1e8:.3f} vs {row['paper_flops'] / 1e8:.2f} "
              f"(delta {(row['flops'] - row['paper_flops']) / 1e8:+.3f})  OPs "
              f"{row['ops'] / 1e8:.3f} vs {row['paper_ops'] / 1e8:.2f} "
              f"(delta {(row['ops'] - row['paper_ops']) / 1e8:+.3f})")
    for method in ("IR²Net-A", "IR²Net-B", "IR²Net-C", "IR²Net-D"):
        row = rows[method]
        assert round(row["bops"] / 1e9, 2) == 1.68
        assert abs(row["flops"] - row["paper_flops"]) <= 0.015e8
        assert abs(row["ops"] - row["paper_ops"]) <= 0.015e8
    assert abs(rows["FP"]["flops"] - 18.3e8) <= 0.1e8
    assert rows["BNN"]["source"] == "quoted" and rows["BNN"]["flops"] == 1.31e8


def test_reactnet_convention_falls_short_by_the_elementwise_work():
    ours = {r["method"]: r for r in table6_rows("reactnet")}
    for method in ("IR²Net-A", "IR²Net-B", "IR²Net-C", "IR²Net-D"):
        gap = ours[method]["paper_flops"] - ours[method]["flops"]
        assert 0.06e8 < gap < 0.09e8


def test_eq17_and_eq18_by_hand_for_resnet20():
    # Eq. 17: 18 binary convs; 6 at 16x32x32, 6 at 32x16x16, 6 at 64x8x8.
    assert q_scale(build_variant("resnet20_bireal", "baseline"), (3, 32, 32)) == \
        6 * 16 * 32 * 32 + 6 * 32 * 16 * 16 + 6 * 64 * 8 * 8 == 172032
    # Eq. 18: C_in = 16+16+32+64 = 128, C_n = 64, 8x8, r = 4, g = C_I = 16.
    expected = 16 * 128 * 64 * 1 + 48 * (64 / (16 * 4)) * 64 * 9
    assert expected == 158720
    assert q_cirec_eq18(128, 64, 8, 8, 4, "C_I") == expected
    assert q_cirec_built(build_variant("resnet20_bireal", "table2_resnet20"), (3, 32, 32)) == expected


def test_table2_settings_keep_cirec_within_the_scaling_factor_budget():
    rows = table2_rows()
    assert [(r["backbone"], r["r"], r["g"]) for r in rows] == [
        ("VGG-Small", 32, "C_I"), ("ResNet-20", 4, "C_I"), ("ResNet-18", 20, "C_I")]
    for row in rows:
        assert row["q_cirec_eq18"] <= row["q_scale"], row
    vgg_paper_taps = [r for r in table2_rows("paper") if r["backbone"] == "VGG-Small"][0]
    assert vgg_paper_taps["q_cirec_eq18"] > vgg_paper_taps["q_scale"]


def test_table2_checks_the_built_module_apart_from_eq18():
    """ResNet-18's built CIRec (channel counts rounded up) breaks Q_CIRec ≤ Q_scale by 1.1 %
    where Eq. 18 keeps it; the table shows both checks and the paragraph names the row."""
    rows = {row["backbone"]: row for row in table2_rows()}
    assert [name for name, row in rows.items() if not row["built_within_q_scale"]] == ["ResNet-18"]
    resnet18 = rows["ResNet-18"]
    assert (resnet18["q_cirec_eq18"], resnet18["q_cirec_built"], resnet18["q_scale"]) == (
        489472, 497120, 491520)
    text = table2_paragraph(pd.DataFrame(list(rows.values())))
    assert "By Eq. 18 every row keeps the rule." in text
    assert "As built it breaks for ResNet-18 (497,120 > 491,520, +1.1 %)." in text
    assert "VGG-Small (" not in text


def test_table5_rows_come_from_the_presets():
    assert [(r["method"], r["r"], r["g"]) for r in table5_rows()] == [
        ("IR²Net-A", 1, "-"), ("IR²Net-B", 2, "C_I"), ("IR²Net-C", 4, 8), ("IR²Net-D", 20, "C_I")]


def test_cli_json(capsys):
    assert main(["complexity", "--model", "resnet20_bireal", "--variant", "table2_resnet20",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"bops", "flops", "ops", "params", "memory_bits", "layers"} <= set(data)
    assert data["bops"] > 0 and data["layers"][0]["kind"] == "real"
    assert main(["complexity", "--model", "vgg_small"]) == 0
    assert "OPs" in capsys.readouterr().out
