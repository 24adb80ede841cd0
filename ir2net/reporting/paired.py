"""Two runs' final weights on the very same test images, image by image: the images each
gets right that the other misses, their difference with its 95 % interval from the test
set's sampling alone, and McNemar's exact test (read from each run's committed
``test_predictions.json``, ``ir2net evaluate --per-image --out``).

This says how surely two *trained networks* differ on the distribution the test images are
drawn from.  It says nothing of training the same method again with another seed, which is
what a one-seed comparison of two methods mostly lacks (the seed runs measure that): the
interval here is a lower bound on the uncertainty of a method's gain, not the uncertainty.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional

import pandas as pd

from ..paper import paper_values
from .evidence import PAPER_TABLES, paper_top1, seed_of
from .run_tables import method_label

__all__ = ["paired_comparison", "mcnemar_exact_p", "paired_table", "paired_paragraph"]

#: the two-sided 95 % quantile of the standard normal distribution
Z95 = 1.959963984540054


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: under "neither network is better on this
    distribution", each image exactly one of them gets right is equally likely to be either's,
    so the smaller count is a Binomial(discordant, 1/2) tail, doubled (at most 1)."""
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_first, only_second) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2 ** discordant)))


def paired_comparison(first: list[int], second: list[int], labels: list[int]) -> dict:
    """Top-1 of two models' predictions on the same images (``labels`` in the same order),
    their difference in points, its 95 % interval (normal approximation to the mean of the
    per-image differences, each -1, 0 or +1) and McNemar's exact p."""
    if not len(first) == len(second) == len(labels) > 0:
        raise ValueError(f"paired predictions need the same images: {len(first)}, "
                         f"{len(second)} predictions for {len(labels)} labels")
    right_first = [p == y for p, y in zip(first, labels)]
    right_second = [p == y for p, y in zip(second, labels)]
    only_first = sum(a and not b for a, b in zip(right_first, right_second))
    only_second = sum(b and not a for a, b in zip(right_first, right_second))
    both = sum(a and b for a, b in zip(right_first, right_second))
    images = len(labels)
    mean = (only_first - only_second) / images
    spread = math.sqrt(max((only_first + only_second) / images - mean ** 2, 0.0) / images)
    return {"images": images, "both_right": both, "only_first": only_first,
            "only_second": only_second, "neither": images - both - only_first - only_second,
            "first_top1": 100.0 * sum(right_first) / images,
            "second_top1": 100.0 * sum(right_second) / images,
            "difference": 100.0 * mean, "ci_low": 100.0 * (mean - Z95 * spread),
            "ci_high": 100.0 * (mean + Z95 * spread),
            "p_value": mcnemar_exact_p(only_first, only_second)}


def _predictions(entry: dict) -> Optional[dict]:
    """A complete run's per-image record of its final weights (``model.pt``)."""
    record = entry.get("test_predictions")
    if entry.get("state") != "complete" or not record:
        return None
    if not str(record.get("weights", "")).endswith("model.pt"):
        return None
    return record


COLUMNS = ["method", "run", "seed", "images", "both_right", "only_first", "only_second",
           "neither", "first_top1", "second_top1", "difference", "ci_low", "ci_high", "p_value",
           "paper_difference"]


def paired_table(progress: list[dict]) -> pd.DataFrame:
    """Every complete Table I / III run with per-image predictions against the complete
    Baseline of its seed, on the final weights of both."""
    baselines = {seed_of(e["run"]): _predictions(e) for e in progress
                 if e.get("rows", {}).get("table1") == "Baseline"}
    paper = paper_values()
    base_paper = paper_top1(paper, "table1", "Baseline")
    rows = []
    for entry in progress:
        table, row = next(iter(entry.get("rows", {}).items()), (None, None))
        record, baseline = _predictions(entry), baselines.get(seed_of(entry["run"]))
        if table not in PAPER_TABLES or row == "Baseline" or not record or not baseline:
            continue
        if record["labels"] != baseline["labels"]:
            raise ValueError(f"{entry['run']} and the Baseline were scored on different test "
                             "images: run `ir2net evaluate RUN --per-image --out "
                             "RUN/test_predictions.json` on both with the same data")
        reference = paper_top1(paper, table, row)
        rows.append({"method": method_label(entry), "run": entry["run"],
                     "seed": seed_of(entry["run"]),
                     **paired_comparison(record["predictions"], baseline["predictions"],
                                         record["labels"]),
                     "paper_difference": (None if reference is None or base_paper is None
                                          else reference - base_paper)})
    return pd.DataFrame(rows, columns=COLUMNS)


def paired_paragraph(paired: pd.DataFrame) -> str:
    """What the paired table says, in words computed from it."""
    if paired.empty:
        return ("No two complete runs of one seed have per-image predictions yet "
                "(`ir2net evaluate RUN --per-image --out RUN/test_predictions.json`).")
    sentences = []
    for _, row in paired.iterrows():
        verdict = ("so these two trained networks do differ on the test distribution"
                   if row["p_value"] < 0.05 else
                   "so the test set cannot tell these two trained networks apart")
        sentences.append(
            f"{row['method']} (seed {row['seed']}) gets {row['only_first']:,} of the "
            f"{row['images']:,} test images right that the Baseline misses, and misses "
            f"{row['only_second']:,} that the Baseline gets right: {row['difference']:+.2f} "
            f"points, 95 % interval {row['ci_low']:+.2f} to {row['ci_high']:+.2f} from the "
            f"test set's sampling alone, McNemar's exact p = {row['p_value']:.2g}, {verdict}.")
    return " ".join(sentences) + (
        " Whether the method reproduces the difference is another question, which only the "
        "seed runs answer: the interval leaves out the variation between training runs of one "
        "method (a few tenths of a point for a binary ResNet-20, as its authors report it).")
