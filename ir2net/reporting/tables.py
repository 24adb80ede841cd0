"""Every table the project renders, by name, in the order the report shows them: the
published-schedule tables (:mod:`.longrun_tables`, :mod:`.evidence`, :mod:`.paired`,
:mod:`.ires_evidence`, :mod:`.run_tables`), the paper's Tables I-VI (:mod:`.paper_tables`)
and the measured latency (:mod:`.latency_tables`).  Each is built once as a pandas frame with
every column and printed by :mod:`.printing`.  Their names live in
:mod:`ir2net.table_names`, which the workflow reads without importing torch."""
from __future__ import annotations

from typing import Optional

import pandas as pd

from .evidence import calibration_table, gap_table
from .ires_evidence import (bn_momentum_table, coverage_table, figure7_sweep_table,
                            shared_trajectory_table)
from .latency_tables import latency_layers_table, latency_table
from .longrun_tables import engine_table, matched_epochs_table, published_table
from .paired import paired_table
from .paper_tables import complexity_tables, profile_tables
from .run_tables import segments_table
from ..table_names import ACCURACY_TABLES, COMPLEXITY_TABLES, TABLE_NAMES

__all__ = ["TABLE_NAMES", "COMPLEXITY_TABLES", "ACCURACY_TABLES", "build_tables",
           "accuracy_tables", "latency_tables"]


def accuracy_tables(plan: dict, records: dict,
                    longruns: Optional[list[dict]] = None) -> dict[str, pd.DataFrame]:
    """Tables I, III and IV of a profile's finished runs (``plan``: its run table); with
    ``longruns`` (:func:`ir2net.longruns.read_progress`) also the published-schedule rows."""
    tables = {}
    if longruns is not None:
        tables["published"] = published_table(longruns)
        tables["calibration"] = calibration_table(longruns)
        tables["gap"] = gap_table(longruns)
        tables["paired"] = paired_table(longruns)
        tables["matched"] = matched_epochs_table(longruns)
        tables["coverage"] = coverage_table(longruns)
        tables["bn_momentum"] = bn_momentum_table(longruns)
        tables["shared_trajectory"] = shared_trajectory_table(longruns)
        tables["figure7_sweep"] = figure7_sweep_table(longruns)
        tables["segments"] = segments_table(longruns)
        tables["engine"] = engine_table(longruns)
    tables.update(profile_tables(plan, records))
    return tables


def latency_tables(latency: Optional[dict]) -> dict[str, pd.DataFrame]:
    """The ``ir2net latency`` record's tables (none without one)."""
    if latency is None:
        return {}
    return {"latency": latency_table(latency), "latency_layers": latency_layers_table(latency)}


def build_tables(plan: dict, records: dict, longruns: Optional[list[dict]] = None,
                 latency: Optional[dict] = None) -> dict[str, pd.DataFrame]:
    """Every table, in the paper's order; ``latency``: an ``ir2net latency`` record."""
    tables = {**accuracy_tables(plan, records, longruns), **complexity_tables(latency),
              **latency_tables(latency)}
    return {name: tables[name] for name in TABLE_NAMES if name in tables}
