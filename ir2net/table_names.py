"""The names of every table the project renders, in the report's order, and which of them a
render produces.  Kept apart from :mod:`ir2net.reporting` (which imports torch and pandas) so
that the workflow can name its table files while it parses, without either."""
from __future__ import annotations

__all__ = ["LONGRUN_TABLES", "PROFILE_TABLES", "ENGINE_TABLES", "COMPLEXITY_TABLES",
           "LATENCY_TABLES", "ACCURACY_TABLES", "TABLE_NAMES", "accuracy_table_names",
           "complexity_table_names"]

# built from results/longruns (ir2net.longruns.read_progress)
LONGRUN_TABLES = ("published", "calibration", "gap", "paired", "matched", "coverage",
                  "bn_momentum", "shared_trajectory", "figure7_sweep", "segments")
# the paper's accuracy tables, from a workflow profile's finished runs
PROFILE_TABLES = ("table1", "table3", "table4")
# the published-schedule runs re-scored on the binary engine (needs results/longruns too)
ENGINE_TABLES = ("engine",)
COMPLEXITY_TABLES = ("table2", "table5", "table6")
# from an `ir2net latency` record
LATENCY_TABLES = ("latency", "latency_layers")

ACCURACY_TABLES = LONGRUN_TABLES + PROFILE_TABLES + ENGINE_TABLES
TABLE_NAMES = (LONGRUN_TABLES + ("table1", "table2", "table3", "table4", "table5", "table6")
               + ENGINE_TABLES + LATENCY_TABLES)


def accuracy_table_names(with_longruns: bool) -> tuple[str, ...]:
    """The accuracy tables a render writes: the profile's, and with the published-schedule
    runs also theirs."""
    if with_longruns:
        return ACCURACY_TABLES
    return PROFILE_TABLES


def complexity_table_names(with_latency: bool) -> tuple[str, ...]:
    """The complexity tables a render writes; with a latency record also the measured ones."""
    return COMPLEXITY_TABLES + (LATENCY_TABLES if with_latency else ())
