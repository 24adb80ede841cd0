"""How each table is printed: the columns a reader needs (numbers right-aligned, standard
deviations over seeds beside their means), one caption, and the three files of every table:
``.csv`` with every column of the frame (for machines), ``.md`` through ``to_markdown`` and
``.tex`` through ``Styler.to_latex`` with booktabs."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from .. import artifacts
from .ires_evidence import COVERAGE_LAMBDAS
from .latency_tables import BREAKDOWN_CATEGORIES

__all__ = ["CAPTIONS", "PRINTED", "Column", "printed", "to_markdown", "to_latex",
           "write_tables"]

CAPTIONS = {
    "published": "Tables I and III at the published schedule (500 epochs, all 50,000 training "
                 "images; results/longruns), top-1 %. Best is the best epoch's test score, as the "
                 "authors report it (selected on the test set); final is the last epoch's",
    "calibration": "Data calibration: the real-valued ResNet-20 of He et al. with the recipe of "
                   "akamaster/pytorch_resnet_cifar10 (200 epochs) on this copy of CIFAR-10, "
                   "against that recipe's canonical figure; the shortfall is given for a complete "
                   "run only",
    "gap": "Where the distance to the paper goes, per published-schedule row: ours (best epoch, "
           "mean ± std over the completed seeds), the gap to the paper, the data's estimated "
           "share (the calibration's shortfall) and the remainder (method, harness and chance)",
    "paired": "Each complete published-schedule run against the Baseline of its seed, image "
              "by image on the 10,000 CIFAR-10 test images (JPEG copy), final weights of both: "
              "the images only one of them gets right, the difference with its 95 % interval "
              "from the test set's sampling alone, and McNemar's exact p; "
              "`ir2net evaluate --per-image`",
    "matched": "The published-schedule runs against their references at matched epochs: each "
               "run against the Baseline of its seed, and IRes + a recovery against the same "
               "recovery without IRes (IRes the only difference); mean test (and train, under "
               "augmentation) top-1 % over each 50 epochs both have trained, and the difference "
               "beside the paper's (its final scores' difference)",
    "coverage": "What IRes's mask would remove on the weights of the published-schedule runs, "
                "on the 10,000 CIFAR-10 test images (JPEG copy) in evaluation mode: the onset "
                "(below it no pixel of any image is removed) and the % of pixels removed at "
                "Figure 7's λ, per restriction rule and attention source (output: after the "
                "last stage's Hardtanh, the authors' code; pre_activation: before it, this "
                "project's extension); `ir2net ires-coverage`",
    "bn_momentum": "What BatchNorm's running-statistics momentum does to the test top-1 of "
                   "the same weights (the one thing IRes that removes nothing changes: 0.1 -> "
                   "0.19): a run trained on from its checkpoint, or its final weights frozen, "
                   "with statistics kept at its own momentum, at 0.19, and lag-free (the "
                   "weights' own, averaged over 100 training batches), each the mean over the points "
                   "scored 100 steps apart (± their standard deviation); `ir2net bn-momentum`",
    "shared_trajectory": "Each published-schedule run with IRes beside the same run without "
                         "IRes (same seed): the leading epochs in which both trained the same "
                         "bits (steps, training loss and top-1 equal to the last bit), the epoch "
                         "where they parted and the machines that trained it (run / run without "
                         "IRes), and the test top-1 difference (run − run without IRes, CIFAR-10 "
                         "JPEG copy) over the shared epochs (mean ± std, smallest, largest, in "
                         "how many it was positive) and over the matched epochs after, with the "
                         "training top-1 difference there",
    "figure7_sweep": "Figure 7 at the published schedule (results/longruns), point by point: "
                     "how each λ of both series is obtained, the state of the run that trains "
                     "its bits, the smallest onset recorded in training that decides a planned "
                     "point (its λ = 0.15 run's; a trained run's own) over how many steps, and "
                     "the best top-1 so far of the run that trains it (CIFAR-10 JPEG copy); "
                     "`ir2net longrun status`",
    "segments": "Training segments of the published-schedule runs (results/longruns): when, "
                "on which machine and step each trained which epochs, its wall time and "
                "training img/s (CPU segments often beside other work)",
    "table1": "Table I: ablation on CIFAR-10, ResNet-20 (Bi-Real structure), top-1 %",
    "table2": "Table II: r and g on CIFAR-10 with the Eq. 17 / Eq. 18 costs",
    "table3": "Table III: CIFAR-10 comparison, top-1 % (* = Bi-Real structure)",
    "table4": "Table IV: ImageNet comparison, top-1 / top-5 %",
    "table5": "Table V: r and g on ImageNet with the computed FLOPs / OPs",
    "table6": "Table VI: computational complexity on ImageNet, with the latency measured on a "
              "real binary engine (batch 1, one thread, OpenVINO's XNOR-popcount kernel; "
              "`ir2net latency`) and its speed-up over torchvision's real-valued ResNet-18 in "
              "OpenVINO float32, measured beside it",
    "engine": "The published-schedule runs' final weights on a real binary engine: the 10,000 "
              "CIFAR-10 test images (JPEG copy) through OpenVINO with every binary convolution "
              "on its XNOR-popcount kernel, beside PyTorch as the run evaluates and with "
              "float32 binary convolutions (exact sums, as the engine's); "
              "`ir2net evaluate --engine openvino`",
    "latency": "Batch-1 latency, ms (the median and the 10th percentile of the timed runs), "
               "of Table VI's models (224×224) and Table III's CIFAR-10 models (32×32): "
               "openvino-xnor runs the binary convolutions on OpenVINO's XNOR-popcount kernel, "
               "openvino-f32 the same graph with float32 convolutions of the ±1 values, pytorch "
               "is PyTorch eager float32; speed-up over the real-valued ResNet-18 (OpenVINO "
               "float32) at the same thread count",
    "latency_layers": "Where the time goes: OpenVINO's per-layer counters at one thread, ms per "
                      "inference by part of the network (the stem includes the max-pooling; "
                      "other: layout reorders)",
}


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _accuracy(value) -> str:
    return "" if _missing(value) else f"{value:.2f}"


def _signed(value) -> str:
    return "" if _missing(value) else f"{value:+.2f}"


def _scaled(power: int, digits: int = 2) -> Callable:
    return lambda value: "" if _missing(value) else f"{value / 10 ** power:.{digits}f}"


def _plain(value) -> str:
    if _missing(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _formatted(spec: str) -> Callable:
    """A number written with the format ``spec``; a missing one as an empty cell."""
    return lambda value: "" if _missing(value) else format(value, spec)


def _step_name(value) -> str:
    """The step's name without the why (the why, often long, stays in the .csv); segments
    recorded before the step was, say so."""
    return "not recorded" if _missing(value) else str(value).split(" (", 1)[0]


@dataclass(frozen=True)
class Column:
    """One printed column: the frame's column, its header, how a value is written, and
    (optional) the frame's column of its standard deviation over seeds."""

    source: str
    header: str
    format: Callable = _plain
    numeric: bool = False
    std: Optional[str] = None


def _acc(source: str, header: str, std: bool = True) -> Column:
    return Column(source, header, _accuracy, True, f"{source}_std" if std else None)


PRINTED = {
    "published": [Column("table", "Table"), Column("method", "Method"),
                  Column("seed", "Seed", _plain, True), Column("state", "State"),
                  _acc("paper_top1", "Paper", False), _acc("final_top1", "Last", False),
                  Column("final_epoch", "Last epoch", _plain, True),
                  Column("final_minus_paper_top1", "Last − paper", _signed, True),
                  _acc("best_top1", "Best", False), Column("best_epoch", "Best epoch", _plain, True),
                  Column("best_minus_paper_top1", "Best − paper", _signed, True),
                  Column("wall_hours", "Wall h", _formatted(".1f"), True),
                  Column("ires_mask", "IRes mask"),
                  Column("hardware", "Hardware, precision")],
    "calibration": [Column("model", "Model"), Column("seed", "Seed", _plain, True),
                    Column("state", "State"), _acc("best_top1", "Best", False),
                    Column("best_epoch", "Best epoch", _plain, True),
                    _acc("final_top1", "Last", False),
                    _acc("canonical_top1", "Canonical (akamaster)", False),
                    Column("shortfall", "Shortfall", _signed, True),
                    _acc("resnet_paper_top1", "He et al. 2016", False),
                    Column("wall_hours", "Wall h", _formatted(".1f"), True)],
    "gap": [Column("table", "Table"), Column("method", "Method"),
            _acc("paper_top1", "Paper", False), _acc("ours_top1", "Ours"),
            Column("basis", "Ours is"), Column("seeds", "Seeds done", _plain, True),
            Column("per_seed", "Per seed"), Column("gap", "Paper − ours", _signed, True),
            Column("data_share", "Data (est.)", _signed, True),
            Column("remainder", "Remainder (est.)", _signed, True),
            Column("split", "Note")],
    "paired": [Column("method", "Method"), Column("seed", "Seed", _plain, True),
               Column("images", "Images", _formatted(","), True),
               Column("only_first", "Only it right", _formatted(","), True),
               Column("only_second", "Only Baseline right", _formatted(","), True),
               _acc("first_top1", "Top-1", False), _acc("second_top1", "Baseline top-1", False),
               Column("difference", "Difference", _signed, True),
               Column("ci_low", "95 % from", _signed, True),
               Column("ci_high", "95 % to", _signed, True),
               Column("p_value", "McNemar p", _formatted(".2g"), True),
               Column("paper_difference", "Paper's difference", _signed, True)],
    "matched": [Column("method", "Method"), Column("reference", "Against"),
                Column("seed", "Seed", _plain, True), Column("epochs", "Epochs"),
                _acc("test_top1", "Test", False),
                _acc("reference_test_top1", "Its test", False),
                Column("test_top1_difference", "Difference", _signed, True),
                Column("paper_difference", "Paper's difference", _signed, True),
                _acc("train_top1", "Train", False),
                _acc("reference_train_top1", "Its train", False)],
    "segments": [Column("method", "Method"), Column("segment", "#", _plain, True),
                 Column("when", "UTC"), Column("machine", "Machine"),
                 Column("train_step", "Step", _step_name),
                 Column("binary_dtype", "Binary convs"),
                 Column("start_epoch", "From epoch", _formatted(".1f"), True),
                 Column("end_epoch", "To epoch", _formatted(".1f"), True),
                 Column("wall_seconds", "Wall s", _formatted(",.0f"), True),
                 Column("images_per_s", "img/s", _formatted(",.0f"), True),
                 Column("commit", "Commit")],
    "table1": [Column("method", "Method"), Column("bits", "W/A"), _acc("paper_top1", "Paper", False),
               _acc("final_top1", "Final"), _acc("best_top1", "Best"),
               Column("best_minus_paper_top1", "Best − paper", _signed, True),
               Column("seeds", "Seeds", _plain, True), Column("ires_mask", "IRes mask")],
    "coverage": [Column("method", "Run"), Column("weights", "Weights"),
                 Column("variant", "Rule"), Column("source", "Attention source"),
                 Column("onset_min", "Onset", _formatted(".3f"), True),
                 Column("onset_median", "Median image onset", _formatted(".3f"), True),
                 *(Column(f"removed_{lam:g}", f"% removed, λ = {lam:g}", _formatted(".2f"), True)
                   for lam in COVERAGE_LAMBDAS)],
    "bn_momentum": [Column("method", "Run"), Column("weights", "Weights"),
                    Column("lr", "lr", _formatted(".4f"), True),
                    Column("points", "Points", _plain, True),
                    Column("updates_per_step", "BN updates per step", _plain, True),
                    Column("own_momentum", "Own momentum", _plain, True),
                    _acc("own_top1", "Own", False), _acc("ires_top1", "0.19", False),
                    _acc("frozen_top1", "Lag-free", False),
                    Column("ires_difference", "0.19 − own", _signed, True,
                           "ires_difference_std"),
                    Column("frozen_difference", "Lag-free − own", _signed, True,
                           "frozen_difference_std"),
                    Column("agreement", "Kept vs BN's own", _formatted(".1e"), True)],
    "shared_trajectory": [Column("method", "Run"), Column("reference", "Without IRes"),
                          Column("seed", "Seed", _plain, True),
                          Column("shared_epochs", "Same bits, epochs", _plain, True),
                          Column("compared_epochs", "Compared epochs", _plain, True),
                          Column("parted_epoch", "Parted at epoch", _plain, True),
                          Column("machines", "Machines there"),
                          Column("shared_difference", "Test diff., same bits", _signed, True,
                                 "shared_difference_std"),
                          Column("shared_min", "Smallest", _signed, True),
                          Column("shared_max", "Largest", _signed, True),
                          Column("shared_higher", "Positive in", _plain, True),
                          Column("after_difference", "Test diff. after", _signed, True),
                          Column("after_train_difference", "Train diff. after", _signed, True)],
    "figure7_sweep": [Column("series", "Series"), Column("lambda", "λ", _plain, True),
                      Column("run", "Run"), Column("point", "Point"),
                      Column("state", "State of the run that trains it"),
                      Column("onset", "Onset in training", _formatted(".3f"), True),
                      Column("onset_steps", "Over steps", _formatted(",.0f"), True),
                      _acc("best_top1", "Best so far", False)],
    "table2": [Column("backbone", "Backbone"), Column("r", "r", _plain, True), Column("g", "g"),
               Column("c_in", "C_in", _plain, True), Column("c_n", "C_n", _plain, True),
               Column("q_scale", "Q_scale (Eq. 17)", _plain, True),
               Column("q_cirec_eq18", "Q_CIRec (Eq. 18)", _plain, True),
               Column("eq18_within_q_scale", "Eq. 18 ≤ Q_scale"),
               Column("q_cirec_built", "Q_CIRec (built)", _plain, True),
               Column("built_within_q_scale", "Built ≤ Q_scale")],
    "table3": [Column("backbone", "Backbone"), Column("method", "Method"), Column("bits", "W/A"),
               Column("source", "Source"), _acc("paper_top1", "Paper", False),
               _acc("final_top1", "Final"), _acc("best_top1", "Best"),
               Column("best_minus_paper_top1", "Best − paper", _signed, True)],
    "table4": [Column("method", "Method"), Column("bits", "W/A"), Column("source", "Source"),
               _acc("paper_top1", "Top-1 paper", False), _acc("final_top1", "Top-1 final"),
               _acc("best_top1", "Top-1 best"),
               Column("best_minus_paper_top1", "Best − paper", _signed, True),
               _acc("paper_top5", "Top-5 paper", False), _acc("best_top5", "Top-5 at best")],
    "table5": [Column("method", "Method"), Column("r", "r", _plain, True), Column("g", "g"),
               Column("flops", "FLOPs (×10⁸)", _scaled(8), True),
               Column("ops", "OPs (×10⁸)", _scaled(8), True),
               Column("paper_ops", "Paper OPs (×10⁸)", _scaled(8), True)],
    "table6": [Column("method", "Method"), Column("source", "Source"),
               Column("bops", "BOPs (×10⁹)", _scaled(9), True),
               Column("flops", "FLOPs (×10⁸)", _scaled(8), True),
               Column("ops", "OPs (×10⁸)", _scaled(8), True),
               Column("paper_bops", "Paper BOPs (×10⁹)", _scaled(9), True),
               Column("paper_flops", "Paper FLOPs (×10⁸)", _scaled(8), True),
               Column("paper_ops", "Paper OPs (×10⁸)", _scaled(8), True),
               Column("latency_ms", "Latency ms", _formatted(".2f"), True),
               Column("speedup_vs_resnet18", "× ResNet-18", _formatted(".2f"), True)],
    "engine": [Column("method", "Method"), Column("seed", "Seed", _plain, True),
               _acc("pytorch_top1", "PyTorch", False),
               Column("pytorch_binary_dtype", "PyTorch binary convs"),
               _acc("openvino_top1", "OpenVINO", False),
               Column("openvino_minus_pytorch", "OpenVINO − PyTorch", _signed, True),
               Column("differs_from_pytorch", "% predictions differ", _formatted(".2f"), True),
               Column("differs_from_pytorch_float32", "% differ from float32 sums",
                      _formatted(".2f"), True),
               Column("largest_logit_difference", "Largest logit difference",
                      _formatted(".3g"), True),
               Column("binary_primitives", "Binary kernel"), Column("openvino", "OpenVINO version")],
    "latency": [Column("table", "Table"), Column("model", "Model"), Column("engine", "Engine"),
                Column("threads", "Threads", _plain, True),
                Column("median_ms", "Median ms", _formatted(".2f"), True),
                Column("p10_ms", "P10 ms", _formatted(".2f"), True),
                Column("speedup_vs_resnet18", "× ResNet-18", _formatted(".2f"), True),
                Column("ops", "OPs (×10⁸)", _scaled(8, 3), True),
                Column("binary_primitives", "Binary kernel")],
    "latency_layers": [Column("model", "Model"), Column("engine", "Engine"),
                       Column("total_ms", "Total ms", _formatted(".2f"), True),
                       *(Column(f"{category}_ms", category.capitalize(), _formatted(".2f"), True)
                         for category in BREAKDOWN_CATEGORIES)],
}


def printed(name: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[bool]]:
    """The table as printed: its columns' text, and which columns are numeric."""
    columns = PRINTED[name]
    if len({column.header for column in columns}) != len(columns):
        raise ValueError(f"{name}: two printed columns share a header")
    cells = {}
    for column in columns:
        text = frame[column.source].map(column.format)
        if column.std and column.std in frame:
            std = frame[column.std].map(_accuracy)
            text = text.where(std == "", text + " ± " + std)
        cells[column.header] = text.astype(str)
    return pd.DataFrame(cells), [column.numeric for column in columns]


def to_markdown(frame: pd.DataFrame, numeric: Optional[list[bool]] = None) -> str:
    numeric = numeric or [False] * len(frame.columns)
    return frame.to_markdown(index=False, disable_numparse=True,
                             colalign=["right" if n else "left" for n in numeric]) + "\n"


_LATEX_TEXT = (("²", r"\textsuperscript{2}"), ("±", r"$\pm$"), ("−", r"$-$"), ("≤", r"$\leq$"),
               ("×10⁸", r"$\times 10^8$"), ("×10⁹", r"$\times 10^9$"), ("λ", r"$\lambda$"),
               ("×", r"$\times$"))


def to_latex(frame: pd.DataFrame, numeric: list[bool], caption: str, label: str) -> str:
    styler = frame.style.hide(axis="index").format(escape="latex").format_index(
        escape="latex", axis=1)
    latex = styler.to_latex(column_format="".join("r" if n else "l" for n in numeric),
                            hrules=True, caption=caption.replace("%", r"\%"),
                            label=f"tab:{label}", position="t", position_float="centering")
    for text, command in _LATEX_TEXT:
        latex = latex.replace(text, command)
    return latex


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """``NAME.csv`` (every column), ``.md`` and ``.tex`` (booktabs; the printed columns) for
    each table, written atomically."""
    out_dir = Path(out_dir)
    written = []
    for name, frame in tables.items():
        csv = frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")
        written.append(artifacts.write_text(out_dir / f"{name}.csv", csv))
        text, numeric = printed(name, frame)
        written.append(artifacts.write_text(out_dir / f"{name}.md", to_markdown(text, numeric)))
        written.append(artifacts.write_text(out_dir / f"{name}.tex",
                                            to_latex(text, numeric, CAPTIONS[name], name)))
    return written
