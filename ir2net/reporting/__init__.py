"""From run records to what a reader sees: records (which runs finished), tables (Tables
I-VI and the published-schedule rows), figures, and the report.  One module each."""
from .figures import (attention_figure, coverage_figure, figure7, paper_comparison,
                      save_figure, training_curves)
from .records import RUN_TABLE, export_records, load_plan, load_records, roles
from .report import write_report
from .tables import (ACCURACY_TABLES, CAPTIONS, COMPLEXITY_TABLES, TABLE_NAMES, accuracy_tables,
                     build_tables, complexity_tables, matched_epochs_table, published_table,
                     segments_table, write_tables)

__all__ = ["load_records", "load_plan", "export_records", "roles", "RUN_TABLE", "build_tables",
           "accuracy_tables", "complexity_tables", "published_table", "matched_epochs_table",
           "segments_table", "write_tables", "TABLE_NAMES", "ACCURACY_TABLES",
           "COMPLEXITY_TABLES", "CAPTIONS", "figure7",
           "coverage_figure", "training_curves", "paper_comparison", "attention_figure",
           "save_figure", "write_report"]
