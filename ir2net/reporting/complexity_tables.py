"""The rows of Tables II, V and VI, counted on the models themselves (no run, no data):
Eq. 17 / 18 costs of the Table II presets, Table V's settings, and Table VI's BOPs / FLOPs /
OPs beside the paper's."""
from __future__ import annotations

import pandas as pd

from ..complexity import (_convention, build_variant, count_complexity, q_cirec_built,
                          q_cirec_eq18, q_scale, recovery_geometry)
from ..models import model_info
from ..paper import paper_values
from ..recovery_presets import table_presets

__all__ = ["table2_rows", "table2_paragraph", "table5_rows", "table6_rows"]


def table2_rows(taps: str = "authors") -> list[dict]:
    """Table II: r, g and the Eq. 17 / Eq. 18 costs for each CIFAR-10 preset."""
    rows = []
    for preset in table_presets("II"):
        size = model_info(preset.backbone).input_size
        model = build_variant(preset.backbone, preset.name, taps=taps)
        c_in, c_n, h, w = recovery_geometry(model, size)
        scale = q_scale(build_variant(preset.backbone, "baseline"), size)
        eq18 = q_cirec_eq18(c_in, c_n, h, w, preset.spec.r, preset.spec.g)
        built = q_cirec_built(model, size)
        rows.append({"backbone": preset.row, "model": preset.backbone, "r": preset.spec.r,
                     "g": preset.spec.g, "taps": taps, "c_in": c_in, "c_n": c_n,
                     "h_n": h, "w_n": w, "q_scale": scale, "q_cirec_eq18": eq18,
                     "q_cirec_built": built,
                     "eq18_within_q_scale": eq18 <= scale,
                     "built_within_q_scale": built <= scale})
    return rows


def table2_paragraph(table2: pd.DataFrame) -> str:
    """Which Table II rows keep Sec. V-C's design rule Q_CIRec ≤ Q_scale, by Eq. 18's count
    and by the module as built, in words computed from the table."""
    def breaking(check, count):
        return [f"{row['backbone']} ({row[count]:,} > {row['q_scale']:,}, "
                f"{100 * (row[count] / row['q_scale'] - 1):+.1f} %)"
                for _, row in table2[~table2[check].astype(bool)].iterrows()]
    eq18, built = breaking("eq18_within_q_scale", "q_cirec_eq18"), \
        breaking("built_within_q_scale", "q_cirec_built")
    text = ("Sec. V-C chooses r so that CIRec costs no more than the scaling factors it "
            "replaces (Q_CIRec ≤ Q_scale). Eq. 18 counts CIRec with C_n / r channels; the "
            "module as built rounds each channel count up to a whole number, as the authors' "
            "code does, so its count can be larger. ")
    text += ("By Eq. 18 every row keeps the rule. " if not eq18 else
             f"By Eq. 18 the rule breaks for {', '.join(eq18)}. ")
    text += ("As built, every row keeps it too." if not built else
             f"As built it breaks for {', '.join(built)}.")
    return text


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
