"""The rows of Tables II, V and VI, counted on the models themselves (no run, no data):
Eq. 17 / 18 costs of the Table II presets, Table V's settings, and Table VI's BOPs / FLOPs /
OPs beside the paper's."""
from __future__ import annotations

from ..complexity import (_convention, build_variant, count_complexity, q_cirec_built,
                          q_cirec_eq18, q_scale, recovery_geometry)
from ..models import model_info
from ..paper import paper_values
from ..recovery_presets import table_presets

__all__ = ["table2_rows", "table5_rows", "table6_rows"]


def table2_rows(taps: str = "authors") -> list[dict]:
    """Table II: r, g and the Eq. 17 / Eq. 18 costs for each CIFAR-10 preset."""
    rows = []
    for preset in table_presets("II"):
        size = model_info(preset.backbone).input_size
        model = build_variant(preset.backbone, preset.name, taps=taps)
        c_in, c_n, h, w = recovery_geometry(model, size)
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
             "preset": p.name} for p in table_presets("V")]


#: Table VI's computed rows: IR²Net-A..D (the Table V presets), the Bi-Real baseline, FP
_TABLE6_COMPUTED = {
    **{preset.row: (preset.backbone, preset.name) for preset in table_presets("V")},
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
