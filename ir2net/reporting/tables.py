"""Tables I-VI of the paper, and the published-schedule rows, from run records and models.

Each table is built once as a pandas frame with every column (written as ``.csv``, for
machines) and printed as the paper would print it (``.md`` through ``to_markdown``,
``.tex`` through ``Styler.to_latex`` with booktabs): the columns a reader needs, numbers
right-aligned, one caption.  Tables II, V and VI come from the models alone
(:func:`complexity_tables`); Tables I, III and IV from the runs that fill them
(:func:`accuracy_tables`).

Accuracy columns: *final* is the last epoch's test top-1; *best* the best epoch's, which is
what the authors' scripts report (selected on the test set, so optimistic).  The paper is
compared with *best*, the like-for-like figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from .. import artifacts
from ..paper import paper_values
from .complexity_tables import table2_rows, table5_rows, table6_rows
from ..experiments import role_label
from .evidence import (PAPER_TABLES, calibration_table, gap_table, mean_std, paper_top1,
                       run_state, seed_of)
from .ires_evidence import COVERAGE_LAMBDAS, coverage_table, mask_label, published_mask_label
from .records import roles

__all__ = ["TABLE_NAMES", "COMPLEXITY_TABLES", "ACCURACY_TABLES", "CAPTIONS", "build_tables",
           "accuracy_tables", "complexity_tables", "published_table", "matched_epochs_table",
           "segments_table", "write_tables", "printed", "to_markdown", "segments_hardware"]

ACCURACY_TABLES = ("published", "calibration", "gap", "matched", "coverage", "segments", "table1",
                   "table3", "table4")
COMPLEXITY_TABLES = ("table2", "table5", "table6")
TABLE_NAMES = ("published", "calibration", "gap", "matched", "coverage", "segments", "table1",
               "table2", "table3", "table4", "table5", "table6")
ROMAN_TABLES = PAPER_TABLES

CAPTIONS = {
    "published": "Tables I and III at the published schedule (500 epochs, all 50,000 training "
                 "images; results/longruns), top-1 %. Best is the best epoch's test score, as the "
                 "authors report it (selected on the test set); final is the last epoch's",
    "calibration": "Data calibration: the real-valued ResNet-20 of He et al. with the recipe of "
                   "akamaster/pytorch_resnet_cifar10 (200 epochs) on this copy of CIFAR-10, "
                   "against that recipe's canonical figure; the shortfall is filled once the run "
                   "is complete",
    "gap": "Where the distance to the paper goes, per published-schedule row: ours (best epoch, "
           "mean ± std over the completed seeds), the gap to the paper, the data's estimated "
           "share (the calibration's shortfall) and the remainder (method, harness and chance)",
    "matched": "The published-schedule runs against the Baseline at matched epochs: mean test "
               "(and train, under augmentation) top-1 % over each 50 epochs a run has trained, "
               "the Baseline's over the very same epochs, and the difference beside the "
               "paper's (its final scores' difference)",
    "coverage": "What IRes's mask would remove on the weights of the published-schedule runs, "
                "on the 10,000 CIFAR-10 test images (JPEG copy) in evaluation mode: the onset "
                "(below it no pixel of any image is removed) and the % of pixels removed at "
                "Figure 7's λ, per restriction rule and attention source (output: after the "
                "last stage's Hardtanh, the authors' code; pre_activation: before it, this "
                "project's extension); `ir2net ires-coverage`",
    "segments": "Training segments of the published-schedule runs (results/longruns): when, "
                "on which machine and step each trained which epochs, its wall time and "
                "training img/s (CPU segments often beside other work)",
    "table1": "Table I: ablation on CIFAR-10, ResNet-20 (Bi-Real structure), top-1 %",
    "table2": "Table II: r and g on CIFAR-10 with the Eq. 17 / Eq. 18 costs",
    "table3": "Table III: CIFAR-10 comparison, top-1 % (* = Bi-Real structure)",
    "table4": "Table IV: ImageNet comparison, top-1 / top-5 %",
    "table5": "Table V: r and g on ImageNet with the computed FLOPs / OPs",
    "table6": "Table VI: computational complexity on ImageNet",
}


# ----------------------------------------------------------------------------- accuracy
def _role_values(plan: dict, records: dict, table: str, metric: str = "top1") -> dict:
    """{row label: {"final": [value per finished seed], "best": [...]}} for one table;
    ``best`` is the score at the epoch with the best test top-1."""
    values: dict[str, dict] = {}
    for run, role in roles(plan, table):
        row_values = values.setdefault(role_label(role), {"final": [], "best": []})
        record = records.get(run["id"])
        if record is not None:
            metrics = record["metrics"]
            row_values["final"].append(metrics["final"][metric])
            row_values["best"].append((metrics.get("best") or metrics["final"])[metric])
    return values


def _role_histories(plan: dict, records: dict, table: str) -> dict[str, list[list[dict]]]:
    """{row label: [the history of each finished run of the row]}."""
    histories: dict[str, list] = {}
    for run, role in roles(plan, table):
        record = records.get(run["id"])
        if record is not None:
            histories.setdefault(role_label(role), []).append(record["metrics"]["history"])
    return histories


def _accuracy_columns(values: Optional[dict], paper: Optional[float], prefix: str = "top1") -> dict:
    """Final and best (each mean and std over seeds) beside the paper's figure."""
    values = values or {"final": [], "best": []}
    final, final_std = mean_std(values["final"])
    best, best_std = mean_std(values["best"])
    return {f"paper_{prefix}": paper, f"final_{prefix}": final, f"final_{prefix}_std": final_std,
            f"best_{prefix}": best, f"best_{prefix}_std": best_std,
            f"best_minus_paper_{prefix}": None if best is None or paper is None else best - paper,
            "seeds": len(values["final"])}


def _machine(segment: dict) -> str:
    hardware = segment.get("hardware", {})
    threads = hardware.get("torch_threads")
    return hardware.get("gpu") or \
        f"{hardware.get('cpu')} ({threads} thread{'' if threads == 1 else 's'})"


def segments_hardware(segments: list[dict], binary: bool = True) -> str:
    """Each distinct machine and precision that trained a run, in order (a full-precision
    model has no binary convolutions, so their dtype is not named)."""
    seen = []
    for segment in segments:
        name = _machine(segment)
        precision = segment.get("precision", {})
        if binary:
            name += f", binary convs {precision.get('binary_dtype')}"
        if precision.get("mixed_precision", "none") != "none":
            name += f", mixed {precision['mixed_precision']}"
        if name not in seen:
            seen.append(name)
    return "; ".join(seen)


def _utc_span(started: Optional[str], ended: Optional[str]) -> str:
    """``2026-11-26 09:14-12:13`` (UTC), or both dates where a segment ran past midnight."""
    if not started or not ended:
        return ""
    start_day, start_time = started[:10], started[11:16]
    end_day, end_time = ended[:10], ended[11:16]
    if start_day == end_day:
        return f"{start_day} {start_time}-{end_time}"
    return f"{start_day} {start_time} - {end_day} {end_time}"


def _method(entry: dict) -> str:
    rows = entry.get("rows", {})
    return (rows.get("table1") or next(iter(rows.values()), entry["run"])).replace("|", " ")


def segments_table(progress: list[dict]) -> pd.DataFrame:
    """One row per training segment of each published-schedule run (``progress.json``'s
    ``segments``), in the order they trained: the record of which hardware trained which
    epochs and for how long, that the closing of a run cites."""
    rows = []
    for entry in progress:
        for number, segment in enumerate(entry.get("segments") or [], start=1):
            ranks = segment.get("world_size") or 1
            machine = _machine(segment) + (f", {ranks} ranks ({segment.get('data_parallel')})"
                                           if ranks > 1 else "")
            rows.append({"method": _method(entry), "run": entry["run"], "segment": number,
                         "when": _utc_span(segment.get("started_at"), segment.get("ended_at")),
                         "started_at": segment.get("started_at"),
                         "ended_at": segment.get("ended_at"), "machine": machine,
                         "world_size": ranks, "data_parallel": segment.get("data_parallel"),
                         "train_step": segment.get("train_step"),
                         "binary_dtype": (segment.get("precision") or {}).get("binary_dtype")
                         if entry.get("model_precision") != "fp" else None,
                         "start_epoch": segment.get("start_epoch"),
                         "end_epoch": segment.get("end_epoch"), "steps": segment.get("steps"),
                         "wall_seconds": segment.get("wall_seconds"),
                         "images_per_s": segment.get("images_per_s"),
                         "ended_by": segment.get("ended_by"), "commit": segment.get("commit"),
                         "torch": segment.get("torch")})
    return pd.DataFrame(rows, columns=["method", "run", "segment", "when", "started_at",
                                       "ended_at", "machine", "world_size", "data_parallel",
                                       "train_step", "binary_dtype", "start_epoch", "end_epoch",
                                       "steps", "wall_seconds", "images_per_s", "ended_by",
                                       "commit", "torch"])


#: epochs per window of the matched-epochs table: ten windows over the 500-epoch schedule
MATCHED_WINDOW = 50


def matched_epochs_table(progress: list[dict], window: int = MATCHED_WINDOW) -> pd.DataFrame:
    """Each published-schedule run beside the Baseline over the same epochs, ``window`` at a
    time: how far ahead or behind a method is while it trains, long before its final epoch.
    A window the run has only partly trained compares just the epochs it has (column
    ``epochs``); the paper's difference is its Table I (or III) top-1 minus the Baseline's."""
    columns = ["method", "run", "epochs", "epoch_count", "test_top1", "baseline_test_top1",
               "test_top1_difference", "paper_difference", "train_top1", "baseline_train_top1"]
    baseline = next((entry for entry in progress
                     if entry.get("rows", {}).get("table1") == "Baseline"), None)
    if baseline is None or not baseline.get("history"):
        return pd.DataFrame([], columns=columns)
    paper = paper_values()
    base = {record["epoch"]: record for record in baseline["history"]}
    base_paper = paper_top1(paper, "table1", "Baseline")
    rows = []
    for entry in progress:
        if entry is baseline or not entry.get("history"):
            continue
        table, row = next(iter(entry["rows"].items()))
        if table not in ROMAN_TABLES:
            continue
        reference = paper_top1(paper, table, row)
        history = [record for record in entry["history"] if record["epoch"] in base]
        if not history:
            continue
        for start in range(1, max(record["epoch"] for record in history) + 1, window):
            records = [r for r in history if start <= r["epoch"] < start + window]
            if not records:
                continue
            epochs = [r["epoch"] for r in records]
            test = sum(r["test"]["top1"] for r in records) / len(records)
            base_test = sum(base[e]["test"]["top1"] for e in epochs) / len(epochs)
            rows.append({"method": _method(entry), "run": entry["run"],
                         "epochs": f"{epochs[0]}-{epochs[-1]}", "epoch_count": len(epochs),
                         "test_top1": test, "baseline_test_top1": base_test,
                         "test_top1_difference": test - base_test,
                         "paper_difference": (None if reference is None or base_paper is None
                                              else reference - base_paper),
                         "train_top1": sum(r["train_top1"] for r in records) / len(records),
                         "baseline_train_top1": sum(base[e]["train_top1"] for e in epochs)
                         / len(epochs)})
    return pd.DataFrame(rows, columns=columns)


def published_table(progress: list[dict]) -> pd.DataFrame:
    """Table I / III rows at the published schedule (results/longruns/): each run's state
    (epoch k of 500, or complete), its last and best test top-1 so far, and the paper's."""
    paper = paper_values()
    rows = []
    for entry in progress:
        for table, row in entry.get("rows", {}).items():
            if table not in ROMAN_TABLES:  # the calibration has a table of its own
                continue
            final, best = entry.get("final") or {}, entry.get("best") or {}
            reference = paper_top1(paper, table, row)
            state = run_state(entry)
            rows.append({"table": ROMAN_TABLES[table], "method": row.replace("|", " "),
                         "seed": seed_of(entry["run"]), "paper_top1": reference, "state": state,
                         "final_top1": final.get("top1"), "final_epoch": final.get("epoch"),
                         "best_top1": best.get("top1"), "best_epoch": best.get("epoch"),
                         "final_minus_paper_top1": (None if final.get("top1") is None
                                                    else final["top1"] - reference),
                         "best_minus_paper_top1": (None if best.get("top1") is None
                                                   else best["top1"] - reference),
                         "wall_hours": entry.get("wall_hours"),
                         "ires_mask": published_mask_label(entry),
                         "hardware": segments_hardware(entry.get("segments", []),
                                                          entry.get("model_precision") != "fp")})
    return pd.DataFrame(rows, columns=["table", "method", "seed", "paper_top1", "state", "final_top1",
                                       "final_epoch", "best_top1", "best_epoch",
                                       "final_minus_paper_top1", "best_minus_paper_top1",
                                       "wall_hours", "ires_mask", "hardware"])


def accuracy_tables(plan: dict, records: dict,
                    longruns: Optional[list[dict]] = None) -> dict[str, pd.DataFrame]:
    """Tables I, III and IV of a profile's finished runs (``plan``: its run table); with
    ``longruns`` (:func:`ir2net.longruns.read_progress`) also the published-schedule rows."""
    paper = paper_values()
    tables = {}
    if longruns is not None:
        tables["published"] = published_table(longruns)
        tables["calibration"] = calibration_table(longruns)
        tables["gap"] = gap_table(longruns)
        tables["matched"] = matched_epochs_table(longruns)
        tables["coverage"] = coverage_table(longruns)
        tables["segments"] = segments_table(longruns)

    top1 = _role_values(plan, records, "table1")
    histories = _role_histories(plan, records, "table1")
    tables["table1"] = pd.DataFrame([
        {"method": row["method"], "bits": row["bits"],
         **_accuracy_columns(top1.get(row["method"]), row["top1"]),
         "ires_mask": mask_label(histories.get(row["method"], []))}
        for row in paper["table1"]])

    top1 = _role_values(plan, records, "table3")
    rows = []
    for row in paper["table3"]:
        key = f"{row['backbone']}|{row['method']}"
        quoted = bool(row.get("quoted"))
        rows.append({"backbone": row["backbone"], "method": row["method"], "bits": row["bits"],
                     "source": "quoted" if quoted else ("ours" if key in top1 else "not run"),
                     **_accuracy_columns(None if quoted else top1.get(key), row["top1"])})
    tables["table3"] = pd.DataFrame(rows)

    top1 = _role_values(plan, records, "table4")
    top5 = _role_values(plan, records, "table4", "top5")
    rows = []
    for row in paper["table4"]:
        quoted = bool(row.get("quoted"))
        method = row["method"]
        entry = {"method": method, "bits": row["bits"], "source": "quoted" if quoted else "ours"}
        entry.update(_accuracy_columns(None if quoted else top1.get(method), row["top1"], "top1"))
        entry.update(_accuracy_columns(None if quoted else top5.get(method), row["top5"], "top5"))
        rows.append(entry)
    tables["table4"] = pd.DataFrame(rows)
    return tables


# ----------------------------------------------------------------------------- complexity
def complexity_tables() -> dict[str, pd.DataFrame]:
    """Tables II, V and VI: counted on the models themselves, no run or dataset needed."""
    table6 = {row["method"]: row for row in table6_rows()}
    tables = {"table2": pd.DataFrame(table2_rows())}
    tables["table5"] = pd.DataFrame([
        {**row, "flops": table6[row["method"]]["flops"], "ops": table6[row["method"]]["ops"],
         "paper_ops": table6[row["method"]]["paper_ops"]} for row in table5_rows()])
    frame = pd.DataFrame(list(table6.values()))
    for column in ("bops", "flops", "ops"):
        frame[f"delta_{column}"] = frame[column] - frame[f"paper_{column}"]
        frame.loc[frame["source"] == "quoted", f"delta_{column}"] = None
    tables["table6"] = frame[["method", "source", "bops", "flops", "ops", "paper_bops",
                              "paper_flops", "paper_ops", "delta_bops", "delta_flops",
                              "delta_ops", "convention"]]
    return tables


def build_tables(plan: dict, records: dict,
                 longruns: Optional[list[dict]] = None) -> dict[str, pd.DataFrame]:
    """Every table, in the paper's order."""
    tables = {**accuracy_tables(plan, records, longruns), **complexity_tables()}
    return {name: tables[name] for name in TABLE_NAMES if name in tables}


# ----------------------------------------------------------------------------- printing
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
    "matched": [Column("method", "Method"), Column("epochs", "Epochs"),
                _acc("test_top1", "Test", False),
                _acc("baseline_test_top1", "Baseline test", False),
                Column("test_top1_difference", "Difference", _signed, True),
                Column("paper_difference", "Paper's difference", _signed, True),
                _acc("train_top1", "Train", False),
                _acc("baseline_train_top1", "Baseline train", False)],
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
               Column("paper_ops", "Paper OPs (×10⁸)", _scaled(8), True)],
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
               ("×10⁸", r"$\times 10^8$"), ("×10⁹", r"$\times 10^9$"), ("λ", r"$\lambda$"))


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
