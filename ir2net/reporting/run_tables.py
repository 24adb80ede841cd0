"""Run-level tables: every training segment of each published-schedule run (which machine,
step and precision trained which epochs, for how long), the provenance a run's numbers cite."""
from __future__ import annotations

from typing import Optional

import pandas as pd

__all__ = ["segments_table", "segments_hardware", "machine", "method_label", "rows_label"]


def machine(segment: dict) -> str:
    """The machine that trained a segment: its GPU, or its CPU and thread count."""
    hardware = segment.get("hardware", {})
    threads = hardware.get("torch_threads")
    return hardware.get("gpu") or \
        f"{hardware.get('cpu')} ({threads} thread{'' if threads == 1 else 's'})"


def segments_hardware(segments: list[dict], binary: bool = True) -> str:
    """Each distinct machine and precision that trained a run, in order (a full-precision
    model has no binary convolutions, so their dtype is not named)."""
    seen = []
    for segment in segments:
        name = machine(segment)
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


def method_label(entry: dict) -> str:
    """The method a run trains, as its first paper table names it."""
    rows = entry.get("rows", {})
    return (rows.get("table1") or next(iter(rows.values()), entry["run"])).replace("|", " ")


def rows_label(entry: dict) -> str:
    """Every paper row a run fills, joined: "IRes+CIRec / ResNet-20 IR²Net*"."""
    return " / ".join(row.replace("|", " ") for row in entry.get("rows", {}).values())


def segments_table(progress: list[dict]) -> pd.DataFrame:
    """One row per training segment of each published-schedule run (``progress.json``'s
    ``segments``), in the order they trained: the record of which hardware trained which
    epochs and for how long, that the closing of a run cites."""
    rows = []
    for entry in progress:
        for number, segment in enumerate(entry.get("segments") or [], start=1):
            ranks = segment.get("world_size") or 1
            trained_on = machine(segment) + (
                f", {ranks} ranks ({segment.get('data_parallel')})" if ranks > 1 else "")
            rows.append({"method": method_label(entry), "run": entry["run"], "segment": number,
                         "when": _utc_span(segment.get("started_at"), segment.get("ended_at")),
                         "started_at": segment.get("started_at"),
                         "ended_at": segment.get("ended_at"), "machine": trained_on,
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
