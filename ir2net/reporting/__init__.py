"""From run records to what a reader sees: records (which runs finished), tables (the
paper's Tables I-VI, the published-schedule tables, the run-level segments; printed by
``printing``), figures, and the report.  One module each."""
from .figures import (attention_figure, coverage_figure, figure7, latency_figure,
                      paper_comparison, save_figure, training_curves)
from .records import RUN_TABLE, export_records, load_plan, load_records, roles
from .report import write_report
from .longrun_tables import matched_epochs_table, published_table
from .paper_tables import complexity_tables
from .printing import CAPTIONS, write_tables
from .run_tables import segments_table
from .tables import (ACCURACY_TABLES, COMPLEXITY_TABLES, TABLE_NAMES, accuracy_tables,
                     build_tables)

__all__ = ["load_records", "load_plan", "export_records", "roles", "RUN_TABLE", "build_tables",
           "accuracy_tables", "complexity_tables", "published_table", "matched_epochs_table",
           "segments_table", "write_tables", "TABLE_NAMES", "ACCURACY_TABLES",
           "COMPLEXITY_TABLES", "CAPTIONS", "figure7",
           "coverage_figure", "training_curves", "paper_comparison", "attention_figure",
           "latency_figure",
           "save_figure", "write_report"]
