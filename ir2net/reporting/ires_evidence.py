"""What IRes did (issue "IRes settled"): whether a run's mask removed anything, how much it
would remove on the shipped weights per rule and attention source, and Figure 7's points at
the published schedule, trained or derived from the run they equal.

With a mask that keeps every pixel, Algorithm 1's masked pass repeats the first one; with
mu = 1/2 the step is then the step without IRes whose BatchNorm layers update their running
statistics twice, i.e. once with momentum 1 - (1 - m)^2 = 0.19 (tests/test_ires_equivalence.py
checks it: weights bit-identical, running statistics equal to float rounding).  So a row whose
mask removed nothing measures no restriction at all, and the tables say so.
"""
from __future__ import annotations

from typing import Iterable, Optional

import pandas as pd

from ..longruns import derive
from .evidence import mean_std, run_state, table1_runs
from .run_tables import machine, method_label, rows_label

__all__ = ["REMOVED_NOTHING", "mask_label", "coverage_table", "bn_momentum_table",
           "shared_trajectory_table", "without_ires", "figure7_points", "figure7_sweep_table",
           "IRES_READING", "COVERAGE_LAMBDAS"]

REMOVED_NOTHING = "removed nothing, every step (= no IRes, BN momentum 0.19)"

#: How to read a table whose rows may carry :data:`REMOVED_NOTHING` (printed above it).
IRES_READING = (
    "*IRes mask* says what the restriction did in a run that uses it. \"Removed nothing, every "
    "step\" means the mask kept every input pixel in every training step (each epoch's mean "
    "removed fraction is exactly 0). Algorithm 1's second pass then repeats the first, so the "
    "run is, exactly, the same network without IRes trained with BatchNorm momentum 0.19 "
    "instead of 0.1 (tests/test_ires_equivalence.py: 300 steps, weights bit-identical, "
    "running statistics within 1e-5 of their scale; measured 4.4e-7 at 320 steps; at the "
    "published schedule, the shared-trajectory table). Such a "
    "row's difference from the row without IRes is run-to-run variation plus that momentum, "
    "not an effect of restriction; the seed spread in the gap table says how large the first "
    "is. The momentum never reaches the weights, only the running statistics that the test "
    "images are normalised with: the BatchNorm-momentum table measures what it is worth.")


def _removed(history: Iterable[dict]) -> list[float]:
    return [epoch["ires_removed"] for epoch in history if epoch.get("ires_removed") is not None]


def mask_label(histories: Iterable[Iterable[dict]]) -> str:
    """The *IRes mask* cell of a row from its runs' histories: empty without IRes,
    :data:`REMOVED_NOTHING`, or the largest epoch-mean share of pixels removed."""
    removed = [value for history in histories for value in _removed(history)]
    if not removed:
        return ""
    if all(value == 0.0 for value in removed):  # a mean of non-negative fractions: all zero
        return REMOVED_NOTHING
    return f"removed up to {100 * max(removed):.2f}% of pixels (epoch mean)"


COVERAGE_LAMBDAS = (0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0)  # Figure 7's λ


def coverage_table(progress: list[dict]) -> pd.DataFrame:
    """Per published-schedule run with a committed ``ires_coverage.json`` (``ir2net
    ires-coverage --out``): for each restriction rule and attention source, the onset on the
    test images and the % of pixels the mask would remove at Figure 7's λ."""
    rows = []
    for entry in progress:
        for result in entry.get("ires_coverage") or []:
            where = (f"epoch {result['epoch']}" if "epoch" in result
                     else f"final ({entry.get('epochs_done')} epochs)")
            row = {"method": rows_label(entry),
                   "weights": where, "variant": result["variant"], "source": result["source"],
                   "onset_min": result["onset"]["min"], "onset_median": result["onset"]["median"]}
            removed = {float(lam): value for lam, value in result["removed"].items()}
            for lam in COVERAGE_LAMBDAS:
                row[f"removed_{lam:g}"] = None if lam not in removed else 100 * removed[lam]
            rows.append(row)
    return pd.DataFrame(rows, columns=["method", "weights", "variant", "source", "onset_min",
                                       "onset_median",
                                       *(f"removed_{lam:g}" for lam in COVERAGE_LAMBDAS)])


#: the momentum IRes that removes nothing gives BatchNorm (``1 - (1 - 0.1)**2``)
IRES_MOMENTUM = "0.19"
BN_MOMENTUM_COLUMNS = ["method", "weights", "lr", "points", "updates_per_step", "own_momentum",
                       "own_top1", "ires_top1", "frozen_top1", "ires_difference",
                       "ires_difference_std", "frozen_difference", "frozen_difference_std",
                       "agreement"]


def _differences(record: dict, key: str) -> list[float]:
    """Each point's top-1 with ``key``'s statistics minus with the run's own."""
    own = f"{record['own_momentum']:g}"
    return [point["scores"][key]["top1"] - point["scores"][own]["top1"]
            for point in record["measurements"] if key in point["scores"]]


def bn_momentum_table(progress: list[dict]) -> pd.DataFrame:
    """Per published-schedule run with a committed ``bn_momentum.json`` (``ir2net
    bn-momentum --out``), one row per state measured: test top-1 of the same weights with
    BatchNorm's running statistics at the run's own momentum, at 0.19 (what IRes that removes
    nothing gives) and lag-free (the weights' own statistics, frozen), each the mean over the
    points scored, and the differences with their standard deviation over the points."""
    rows = []
    for entry in progress:
        for record in entry.get("bn_momentum") or []:
            scores = record["scores"]
            ires_mean, ires_std = mean_std(_differences(record, IRES_MOMENTUM))
            frozen_mean, frozen_std = mean_std(_differences(record, "frozen"))
            where = (f"epoch {record['epoch']} of {record['epochs']}, trained on"
                     if record["trained"] else f"final ({record['epoch']} epochs), frozen")
            rows.append({"method": rows_label(entry),
                         "weights": where, "lr": record["lr"], "points": record["points"],
                         "updates_per_step": record["bn_updates_per_step"],
                         "own_momentum": record["own_momentum"],
                         "own_top1": scores[f"{record['own_momentum']:g}"]["top1"],
                         "ires_top1": (scores.get(IRES_MOMENTUM) or {}).get("top1"),
                         "frozen_top1": scores["frozen"]["top1"],
                         "ires_difference": ires_mean, "ires_difference_std": ires_std,
                         "frozen_difference": frozen_mean, "frozen_difference_std": frozen_std,
                         "agreement": record["own_statistics_agreement"]})
    return pd.DataFrame(rows, columns=BN_MOMENTUM_COLUMNS)


#: the part of a Table I label that names IRes: "IRes+CIRec" is CIRec with IRes added
IRES_PREFIX = "IRes+"


def without_ires(label: str) -> Optional[str]:
    """The Table I row that differs from row ``label`` only in having no IRes ("IRes" ->
    "Baseline", "IRes+CIRec" -> "CIRec"); ``None`` for a row without IRes."""
    if label == "IRes":
        return "Baseline"
    return label[len(IRES_PREFIX):] if label.startswith(IRES_PREFIX) else None


def _same_bits(record: dict, reference: dict) -> bool:
    """Two runs' epoch records agree to the last bit in what training computed: the steps,
    the training loss and top-1 (means over every batch of the epoch)."""
    return all(record[key] == reference[key] for key in ("steps", "train_loss", "train_top1"))


def _machines_of_epoch(entry: dict, epoch: int) -> str:
    """The machines whose segments trained some step of ``epoch`` (``epoch - 1`` to
    ``epoch``), in order."""
    names = []
    for segment in entry.get("segments") or []:
        if segment["start_epoch"] < epoch and segment["end_epoch"] > epoch - 1:
            name = machine(segment)
            if segment["start_epoch"] > epoch - 1:
                name += f" from epoch {segment['start_epoch']:.1f}"
            if name not in names:
                names.append(name)
    return ", ".join(names)


def shared_trajectory_table(progress: list[dict]) -> pd.DataFrame:
    """Each published-schedule run with IRes beside the same run without it (same seed):
    the leading epochs in which both trained the same bits (:func:`_same_bits`; while the mask
    removes nothing the two steps compute the same weights, tests/test_ires_equivalence.py),
    where they parted and on which machines each trained that epoch, and the test top-1
    difference over the shared epochs (the BatchNorm momentum alone: same weights, running
    statistics at 0.19 against 0.1) and over the matched epochs after (that, plus how far the
    two runs have drifted apart since)."""
    runs = table1_runs(progress)
    rows = []
    for (label, seed), entry in runs.items():
        reference_label = without_ires(label)
        reference = runs.get((reference_label, seed))
        if reference is None:
            continue
        by_epoch = {record["epoch"]: record for record in reference["history"]}
        pairs = [(record, by_epoch[record["epoch"]]) for record in entry["history"]
                 if record["epoch"] in by_epoch]
        shared = 0
        while shared < len(pairs) and pairs[shared][0]["epoch"] == shared + 1 \
                and _same_bits(*pairs[shared]):
            shared += 1
        during = [a["test"]["top1"] - b["test"]["top1"] for a, b in pairs[:shared]]
        during_mean, during_std = mean_std(during)
        after = pairs[shared:]
        parted = after[0][0]["epoch"] if after else None
        rows.append({
            "method": method_label(entry), "reference": reference_label, "seed": seed,
            "shared_epochs": shared, "compared_epochs": len(pairs), "parted_epoch": parted,
            "machines": (None if parted is None else
                         f"{_machines_of_epoch(entry, parted)} / "
                         f"{_machines_of_epoch(reference, parted)}"),
            "shared_difference": during_mean, "shared_difference_std": during_std,
            "shared_min": min(during, default=None), "shared_max": max(during, default=None),
            "shared_higher": sum(d > 0 for d in during),
            "after_difference": mean_std([a["test"]["top1"] - b["test"]["top1"]
                                          for a, b in after])[0],
            "after_train_difference": mean_std([a["train_top1"] - b["train_top1"]
                                                for a, b in after])[0]})
    return pd.DataFrame(rows, columns=SHARED_TRAJECTORY_COLUMNS)


SHARED_TRAJECTORY_COLUMNS = ["method", "reference", "seed", "shared_epochs", "compared_epochs",
                             "parted_epoch", "machines", "shared_difference",
                             "shared_difference_std", "shared_min", "shared_max",
                             "shared_higher", "after_difference", "after_train_difference"]


def _figure7_point(entry: dict) -> Optional[tuple[str, float]]:
    """(series, λ) of a run that is a Figure 7 point (its plan row ``"series|λ"``)."""
    label = entry.get("rows", {}).get("figure7")
    if label is None:
        return None
    series, lam = label.split("|")
    return series, float(lam)


#: How :func:`figure7_sweep_table` says what decides a λ point, by :func:`derive`'s state.
_SWEEP_DECISION = {
    "derived": "derived: = its λ = {lam:g} run (λ below that run's onset)",
    "acts": "to train: λ not below its λ = {lam:g} run's onset",
    "pending": "waits for its λ = {lam:g} run to record an onset",
    "unprovable": "to train: its λ = {lam:g} run has epochs without an onset record",
}


def figure7_sweep_table(progress: list[dict]) -> pd.DataFrame:
    """Figure 7 at the published schedule, point by point: how each λ of both series is
    obtained (``kind``: trained, λ = 0 being the run without IRes; derived from its series'
    λ = 0.15 run, its ``reference``, by :func:`~ir2net.longruns.derive`; to train; or waits
    for that run's onset; ``point`` says it in words), the state of the run that trains its
    bits, the smallest onset recorded in training that decides it (its own for a trained
    IRes run, its reference's for a planned point) over how many steps, and the best top-1
    so far of the run that trains it."""
    by_run = {entry["run"]: entry for entry in progress}
    rows = []
    for entry in progress:
        point = _figure7_point(entry)
        if point is None:
            continue
        series, lam = point
        trains_it, onset, reference, kind = entry, None, None, "to train"
        if entry.get("state", "not started") != "not started":
            kind, decision = "trained", "trained" if lam else "trained: the run without IRes"
            onset = derive(lam, entry) if lam else None
        elif entry.get("same_as") in by_run:
            reference = by_run[entry["same_as"]]
            onset = derive(lam, reference)
            decision = _SWEEP_DECISION[onset["state"]].format(lam=_figure7_point(reference)[1])
            if onset["state"] == "derived":
                trains_it, kind = reference, "derived"
            elif onset["state"] == "pending":
                kind = "waits"
        else:
            decision = "to train"
        known = onset is not None and onset["onset_min"] is not None
        rows.append({"series": series, "lambda": lam, "run": entry["run"], "kind": kind,
                     "point": decision, "reference": reference and reference["run"],
                     "state": run_state(trains_it),
                     "onset": onset["onset_min"] if known else None,
                     "onset_steps": onset["steps"] if known else None,
                     "best_top1": (trains_it.get("best") or {}).get("top1")})
    frame = pd.DataFrame(rows, columns=["series", "lambda", "run", "kind", "point",
                                        "reference", "state", "onset", "onset_steps",
                                        "best_top1"])
    return frame.sort_values(["series", "lambda"], kind="stable", ignore_index=True)


def figure7_points(progress: list[dict]) -> tuple[pd.DataFrame, dict]:
    """Figure 7 at the published schedule, what is drawn (:func:`figure7_sweep_table`): every
    complete run of a Figure 7 row (λ = 0: the run without IRes), and every planned λ point
    that :func:`~ir2net.longruns.derive` proves to be its reference run while that run is
    complete (drawn with the reference's score, marked ``derived``).  Also ``{series:
    (reference run, its recorded onset)}``, for the onset line."""
    sweep = figure7_sweep_table(progress)
    drawn = sweep[sweep["kind"].isin(["trained", "derived"]) & (sweep["state"] == "complete")]
    points = drawn[["series", "lambda", "kind", "run", "best_top1"]].rename(
        columns={"best_top1": "top1"})
    planned = sweep[sweep["reference"].notna() & sweep["onset"].notna()]
    onsets = {row.series: (row.reference, row.onset) for row in planned.itertuples()}
    return points.reset_index(drop=True), onsets


def published_mask_label(entry: dict) -> Optional[str]:
    """:func:`mask_label` of one published-schedule run (``None`` before it has trained)."""
    return mask_label([entry.get("history") or []]) if entry.get("history") else None
