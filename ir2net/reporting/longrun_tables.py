"""Published-schedule tables (results/longruns): each Table I / III row at the paper's own
schedule beside the paper's figure, each run against the Baseline at matched epochs, and the
final weights scored through a real binary engine (OpenVINO) beside PyTorch.  The
data calibration and the gap split are in :mod:`.evidence`, IRes's coverage in
:mod:`.ires_evidence`."""
from __future__ import annotations

import pandas as pd

from ..paper import paper_values
from .evidence import PAPER_TABLES, paper_top1, run_state, seed_of
from .ires_evidence import published_mask_label
from .run_tables import method_label, segments_hardware

__all__ = ["published_table", "matched_epochs_table", "engine_table", "MATCHED_WINDOW"]


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
        if table not in PAPER_TABLES:
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
            rows.append({"method": method_label(entry), "run": entry["run"],
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
            if table not in PAPER_TABLES:  # the calibration has a table of its own
                continue
            final, best = entry.get("final") or {}, entry.get("best") or {}
            reference = paper_top1(paper, table, row)
            state = run_state(entry)
            rows.append({"table": PAPER_TABLES[table], "method": row.replace("|", " "),
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


def engine_table(progress: list[dict]) -> pd.DataFrame:
    """The finished runs' weights on the whole test set through OpenVINO's XNOR-popcount
    kernel (``openvino_evaluation.json``) beside PyTorch: as the run evaluates (its binary
    convolutions' dtype) and with float32 binary convolutions (exact sums, as the engine's)."""
    rows = []
    for entry in progress:
        result = entry.get("openvino_evaluation")
        if not result:
            continue
        run_pytorch, exact = result["pytorch"], result["pytorch_float32"]
        rows.append({"method": method_label(entry), "seed": seed_of(entry["run"]),
                     "images": result["images"], "pytorch_top1": run_pytorch["top1"],
                     "pytorch_binary_dtype": run_pytorch["binary_dtype"],
                     "openvino_top1": result["top1"],
                     "openvino_minus_pytorch": result["top1"] - run_pytorch["top1"],
                     "differs_from_pytorch": 100 * run_pytorch["prediction_differs"],
                     "pytorch_float32_top1": exact["top1"],
                     "differs_from_pytorch_float32": 100 * exact["prediction_differs"],
                     "largest_logit_difference": exact["largest_logit_difference"],
                     "binary_primitives": ", ".join(result["binary_primitives"]),
                     "openvino": result["openvino"].split("-")[0]})
    return pd.DataFrame(rows, columns=[
        "method", "seed", "images", "pytorch_top1", "pytorch_binary_dtype", "openvino_top1",
        "openvino_minus_pytorch", "differs_from_pytorch", "pytorch_float32_top1",
        "differs_from_pytorch_float32", "largest_logit_difference", "binary_primitives",
        "openvino"])
