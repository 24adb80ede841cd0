"""What the published-schedule runs say about the distance to the paper: the data
calibration (:mod:`ir2net.calibration`) and the gap of every Table I / III row split into
the data's estimated share and what is left, with the seed spread where several seeds have
finished.  Rendered from ``results/longruns/*/progress.json`` alone, like every table.

Labels: *measured* is a score a run produced; *estimated* is read off another measurement
(the data's share is the real-valued calibration's shortfall, a lower bound for what a
binary network pays on the same copy).
"""
from __future__ import annotations

import re
from typing import Optional

import pandas as pd

from ..calibration import ALSO_REPORTED, REFERENCE, shortfall
from ..paper import paper_values

__all__ = ["calibration_table", "gap_table", "seed_of", "table1_runs", "PAPER_TABLES",
           "gap_paragraph", "mean_std", "paper_top1", "run_state"]

#: The paper's ResNet-20 FP figure is this one of IR-Net's README, for W/A 1/32.
IRNET_W1A32 = 90.8
FP_PROVENANCE = ("the paper's 90.8 is IR-Net's ResNet-20 W/A 1/32 figure, not full precision "
                 "(docs/divergences.md)")

#: The paper tables whose rows the published-schedule runs fill.
PAPER_TABLES = {"table1": "Table I", "table3": "Table III"}


def seed_of(run_id: str) -> int:
    """A run id ends in ``-s<seed>`` (ir2net.experiments.run_id)."""
    match = re.search(r"-s(\d+)$", run_id)
    return int(match.group(1)) if match else 0


def table1_runs(progress: list[dict]) -> dict[tuple[str, int], dict]:
    """The published-schedule runs of Table I that have trained, by (row, seed)."""
    return {(entry["rows"]["table1"], seed_of(entry["run"])): entry for entry in progress
            if entry.get("history") and entry.get("rows", {}).get("table1")}


def run_state(entry: dict) -> str:
    """A run's state as the tables print it (``epoch k of n`` while it trains)."""
    if entry["state"] == "training":
        return f"epoch {entry['epochs_done']} of {entry['epochs']}"
    return entry["state"]


def _calibration(progress: list[dict]) -> Optional[dict]:
    return next((entry for entry in progress if "calibration" in entry.get("rows", {})), None)


def calibration_table(progress: list[dict]) -> pd.DataFrame:
    """The calibration run(s) at akamaster's schedule beside the canonical figure."""
    rows = []
    for entry in progress:
        if "calibration" not in entry.get("rows", {}):
            continue
        best, final = entry.get("best") or {}, entry.get("final") or {}
        rows.append({"model": entry["rows"]["calibration"], "seed": seed_of(entry["run"]),
                     "state": run_state(entry), "best_top1": best.get("top1"),
                     "best_epoch": best.get("epoch"), "final_top1": final.get("top1"),
                     "canonical_top1": REFERENCE["top1"],
                     "shortfall": (shortfall(best.get("top1")) if entry["state"] == "complete"
                                   else None),
                     "resnet_paper_top1": ALSO_REPORTED["top1"],
                     "wall_hours": entry.get("wall_hours")})
    return pd.DataFrame(rows, columns=["model", "seed", "state", "best_top1", "best_epoch",
                                       "final_top1", "canonical_top1", "shortfall",
                                       "resnet_paper_top1", "wall_hours"])


def mean_std(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation (``None`` for fewer than two values)."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def paper_top1(paper: dict, table: str, row: str) -> Optional[float]:
    """The paper's top-1 for a row label (Table III's: ``backbone|method``)."""
    for entry in paper[table]:
        key = entry["method"] if table != "table3" else f"{entry['backbone']}|{entry['method']}"
        if key == row:
            return entry["top1"]
    return None


def gap_table(progress: list[dict]) -> pd.DataFrame:
    """One row per Table I / III row at the published schedule: the paper's figure, ours
    (best epoch; mean ± std over the completed seeds, each seed's figure beside it), the
    data's estimated share (the calibration's shortfall, once it is complete) and the rest.
    A row none of whose seeds has completed shows its best so far, unsplit.  The last row is
    IR²Net − Baseline over the seeds both completed."""
    paper = paper_values()
    calibration = _calibration(progress)
    data_share = (shortfall((calibration.get("best") or {}).get("top1"))
                  if calibration and calibration["state"] == "complete" else None)
    groups: dict[tuple[str, str], list[dict]] = {}
    for entry in progress:
        for table, row in entry.get("rows", {}).items():
            if table in PAPER_TABLES:
                groups.setdefault((table, row), []).append(entry)
    rows = []
    for (table, row), entries in groups.items():
        complete = [e for e in entries if e["state"] == "complete"]
        values = [e["best"]["top1"] for e in complete]
        mean, std = mean_std(values)
        reference = paper_top1(paper, table, row)
        training = [e for e in entries if e["state"] == "training"]
        if not complete and training:
            mean = max(e["best"]["top1"] for e in training if e.get("best"))
        gap = None if not complete or reference is None else reference - mean
        other_network = _quotes_another_network(row, reference)
        splittable = complete and data_share is not None and not other_network
        rows.append({
            "table": PAPER_TABLES[table], "method": row.replace("|", " "),
            "paper_top1": reference, "ours_top1": mean, "ours_top1_std": std,
            "basis": ("measured, best epoch" if complete else
                      "best so far, in progress" if training else "not started"),
            "seeds": len(complete), "seeds_planned": len(entries),
            "per_seed": ", ".join(f"s{seed_of(e['run'])} {e['best']['top1']:.2f}"
                                  for e in sorted(complete, key=lambda e: e["run"])),
            "gap": gap,
            "data_share": data_share if splittable else None,
            "remainder": gap - data_share if splittable and gap is not None else None,
            "split": "; ".join(filter(None, [
                "data estimated from the calibration, remainder estimated" if splittable else
                "not split" if complete and other_network else
                "calibration not complete: unsplit" if complete else "",
                FP_PROVENANCE if other_network else ""]))})
    rows.append(_difference_row(groups, paper))
    return pd.DataFrame(rows, columns=["table", "method", "paper_top1", "ours_top1",
                                       "ours_top1_std", "basis", "seeds", "seeds_planned",
                                       "per_seed", "gap", "data_share", "remainder", "split"])


def _quotes_another_network(row: str, reference: Optional[float]) -> bool:
    """An FP row whose paper figure is IR-Net's W/A 1/32 one: a remainder against another
    network's score would read as the reproduction's shortfall (docs/divergences.md)."""
    return row.endswith("FP") and reference == IRNET_W1A32


def _difference_row(groups: dict, paper: dict) -> dict:
    """IR²Net (IRes + CIRec) − Baseline, per seed that both completed."""
    def best_by_seed(row):
        return {seed_of(e["run"]): e["best"]["top1"] for e in groups.get(("table1", row), [])
                if e["state"] == "complete"}
    ours, base = best_by_seed("IRes+CIRec"), best_by_seed("Baseline")
    seeds = sorted(set(ours) & set(base))
    differences = [ours[s] - base[s] for s in seeds]
    mean, std = mean_std(differences)
    reference = paper_top1(paper, "table1", "IRes+CIRec") - paper_top1(paper, "table1", "Baseline")
    return {"table": "Table I", "method": "IR²Net − Baseline", "paper_top1": reference,
            "ours_top1": mean, "ours_top1_std": std, "basis": "measured, best epoch",
            "seeds": len(seeds), "seeds_planned": len(groups.get(("table1", "Baseline"), [])),
            "per_seed": ", ".join(f"s{s} {d:+.2f}" for s, d in zip(seeds, differences)),
            "gap": None if mean is None else reference - mean, "data_share": None,
            "remainder": None, "split": "a difference: the data's share cancels to first order"}


def gap_paragraph(calibration: pd.DataFrame, gap: pd.DataFrame) -> str:
    """What the two tables above explain and what they do not, in words computed from them."""
    complete = calibration[calibration["state"] == "complete"]
    if complete.empty:
        running = calibration["state"].iloc[0] if not calibration.empty else "not started"
        data = (f"The calibration run is not complete ({running}), so the data's share is not "
                "measured yet and no row is split: until it is, each row's gap mixes the data, "
                "the seed and the method.")
    else:
        row = complete.iloc[0]
        data = (f"The calibration scored {row['best_top1']:.2f} % against the canonical "
                f"{row['canonical_top1']:.2f} %: this copy of CIFAR-10 costs a real-valued "
                f"ResNet-20 {row['shortfall']:.2f} points, and that is the data's estimated "
                "share in each row (a lower bound for a binary network).")
    seeded = gap[(gap["seeds"] >= 2) & (gap["method"] != "IR²Net − Baseline")]
    seeds = ("No row has two completed seeds yet, so no spread is measured: a difference under "
             "about a point between single runs means little." if seeded.empty else
             "Rows with two or more completed seeds show their standard deviation.")
    return " ".join(filter(None, [data, seeds, _fp_sentence(complete, gap)]))


def _fp_sentence(calibration: pd.DataFrame, gap: pd.DataFrame) -> str:
    """The FP row, once complete, set beside the calibration: the one other real-valued
    network trained on the same copy, since its paper figure is another network's."""
    fp = gap[(gap["table"] == "Table I") & (gap["method"] == "FP") & (gap["seeds"] >= 1)]
    if fp.empty or not _quotes_another_network("FP", fp["paper_top1"].iloc[0]):
        return ""
    ours = fp["ours_top1"].iloc[0]
    sentence = (f"The FP row is not split: the paper's {IRNET_W1A32} is IR-Net's ResNet-20 with "
                f"binary weights and real activations, while ours ({ours:.2f} %) is the "
                "real-valued Bi-Real ResNet-20 at the binary recipe")
    if calibration.empty:
        return sentence + "."
    reference = calibration.iloc[0]["best_top1"]
    return (sentence + f", {ours - reference:+.2f} points from the calibration network "
            f"({reference:.2f} %) on the same copy.")
