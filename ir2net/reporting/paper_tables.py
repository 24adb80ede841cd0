"""The paper's Tables I-VI as this project fills them: Tables I, III and IV from a workflow
profile's finished runs (:func:`profile_tables`), Tables II, V and VI counted on the models
alone (:func:`complexity_tables`; the rows come from :mod:`.complexity_tables`).

Accuracy columns: *final* is the last epoch's test top-1; *best* the best epoch's, which is
what the authors' scripts report (selected on the test set, so optimistic).  The paper is
compared with *best*, the like-for-like figure.
"""
from __future__ import annotations

from typing import Optional

import pandas as pd

from ..experiments import role_label
from ..paper import paper_values
from .complexity_tables import table2_rows, table5_rows, table6_rows
from .evidence import mean_std
from .ires_evidence import mask_label
from .latency_tables import table6_measured
from .records import roles

__all__ = ["profile_tables", "complexity_tables"]


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


def profile_tables(plan: dict, records: dict) -> dict[str, pd.DataFrame]:
    """Tables I, III and IV of a profile's finished runs (``plan``: its run table), beside the
    paper's figures; a quoted row (another paper's number) stays the paper's."""
    paper = paper_values()
    tables = {}
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


def complexity_tables(latency: Optional[dict] = None) -> dict[str, pd.DataFrame]:
    """Tables II, V and VI: counted on the models themselves, no run or dataset needed; with
    an ``ir2net latency`` record, Table VI gains its measured latency (one thread, the binary
    kernel) and the speed-up over the real-valued ResNet-18 (:mod:`.latency_tables`)."""
    table6 = {row["method"]: row for row in table6_rows()}
    tables = {"table2": pd.DataFrame(table2_rows())}
    tables["table5"] = pd.DataFrame([
        {**row, "flops": table6[row["method"]]["flops"], "ops": table6[row["method"]]["ops"],
         "paper_ops": table6[row["method"]]["paper_ops"]} for row in table5_rows()])
    frame = pd.DataFrame(list(table6.values()))
    for column in ("bops", "flops", "ops"):
        frame[f"delta_{column}"] = frame[column] - frame[f"paper_{column}"]
        frame.loc[frame["source"] == "quoted", f"delta_{column}"] = None
    measured = table6_measured(latency)
    frame["latency_ms"] = [measured.get(method, {}).get("latency_ms") for method in frame["method"]]
    frame["speedup_vs_resnet18"] = [measured.get(method, {}).get("speedup_vs_resnet18")
                                    for method in frame["method"]]
    tables["table6"] = frame[["method", "source", "bops", "flops", "ops", "paper_bops",
                              "paper_flops", "paper_ops", "delta_bops", "delta_flops",
                              "delta_ops", "latency_ms", "speedup_vs_resnet18", "convention"]]
    return tables
