"""Published-schedule tables (results/longruns): each Table I / III row at the paper's own
schedule beside the paper's figure, each run against its reference runs at matched epochs, and the
final weights scored through a real binary engine (OpenVINO) beside PyTorch.  The
data calibration and the gap split are in :mod:`.evidence`, IRes's coverage in
:mod:`.ires_evidence`."""
from __future__ import annotations

import pandas as pd

from ..paper import paper_values
from .evidence import PAPER_TABLES, paper_top1, run_state, seed_of, table1_runs
from .ires_evidence import published_mask_label, without_ires
from .run_tables import method_label, segments_hardware

__all__ = ["published_table", "matched_epochs_table", "matched_references", "engine_table",
           "MATCHED_WINDOW"]


#: epochs per window of the matched-epochs table: ten windows over the 500-epoch schedule
MATCHED_WINDOW = 50


def matched_references(label: str) -> list[str]:
    """The Table I rows a run of Table I row ``label`` is held against at matched epochs: the
    Baseline, and for a run with IRes and a recovery (``IRes+CIRec``) the same run without IRes
    (``CIRec``), the one comparison in which IRes is the only difference."""
    references = [] if label == "Baseline" else ["Baseline"]
    if without_ires(label) not in (None, *references):
        references.append(without_ires(label))
    return references


def matched_epochs_table(progress: list[dict], window: int = MATCHED_WINDOW) -> pd.DataFrame:
    """Each published-schedule run beside a reference run of the same seed over the same
    epochs, ``window`` at a time: how far ahead or behind a method is while it trains, long
    before its final epoch.  The references are :func:`matched_references`: the Baseline, and
    for IRes + a recovery the recovery alone.  A window the run has only partly trained
    compares just the epochs both runs have (column ``epochs``); the paper's difference is the
    two rows' difference in its Table I.  Only Table I's runs (ResNet-20, Bi-Real structure)
    have references: the other backbones have no Baseline of their own."""
    columns = ["method", "reference", "run", "seed", "epochs", "epoch_count", "test_top1",
               "reference_test_top1", "test_top1_difference", "paper_difference", "train_top1",
               "reference_train_top1"]
    runs = table1_runs(progress)
    paper = paper_values()
    rows = []
    for (label, seed), entry in runs.items():
        for reference_label in matched_references(label):
            reference = runs.get((reference_label, seed))
            if reference is not None:
                rows += _matched_windows(entry, reference, reference_label, window,
                                         paper_top1(paper, "table1", label),
                                         paper_top1(paper, "table1", reference_label))
    return pd.DataFrame(rows, columns=columns)


def _matched_windows(entry: dict, reference: dict, reference_label: str, window: int,
                     paper_top: float | None, paper_reference: float | None) -> list[dict]:
    by_epoch = {record["epoch"]: record for record in reference["history"]}
    history = [record for record in entry["history"] if record["epoch"] in by_epoch]
    rows = []
    for start in range(1, max((record["epoch"] for record in history), default=0) + 1, window):
        records = [r for r in history if start <= r["epoch"] < start + window]
        if not records:
            continue
        epochs = [r["epoch"] for r in records]
        test = sum(r["test"]["top1"] for r in records) / len(epochs)
        reference_test = sum(by_epoch[e]["test"]["top1"] for e in epochs) / len(epochs)
        rows.append({"method": method_label(entry), "reference": reference_label,
                     "run": entry["run"], "seed": seed_of(entry["run"]),
                     "epochs": f"{epochs[0]}-{epochs[-1]}", "epoch_count": len(epochs),
                     "test_top1": test, "reference_test_top1": reference_test,
                     "test_top1_difference": test - reference_test,
                     "paper_difference": (None if paper_top is None or paper_reference is None
                                          else paper_top - paper_reference),
                     "train_top1": sum(r["train_top1"] for r in records) / len(epochs),
                     "reference_train_top1": sum(by_epoch[e]["train_top1"] for e in epochs)
                     / len(epochs)})
    return rows


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
