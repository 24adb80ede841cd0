"""Publishing a profile's results into the repository.

The workflow writes into uncommitted folders (``runs/``, ``output/``), so the main job on
any copy of the repository always trains and renders, whatever the files' times, and
leaves ``git status`` clean.  What is committed is rendered here from the committed run
records alone: the tables, the figures and the report are a function of
``results/records/<profile>`` (and the published-schedule progress), so CI can regenerate
and check them, and two renders are byte-identical.  Only the attention maps need the
weights, which are not committed: that figure is copied from the workflow's output.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from .figures import coverage_figure, figure7, latency_figure, paper_comparison, training_curves
from .latency_tables import read_latency
from .records import export_records, load_records
from .report import write_report
from .printing import write_tables
from .tables import build_tables

__all__ = ["render", "publish"]


def render(records: str | Path, tables_dir: str | Path, figures_dir: str | Path,
           report_dir: str | Path, *, longruns: Optional[list[dict]] = None,
           divergences: Optional[str | Path] = None,
           benchmark: Optional[str | Path] = None,
           cost_plan: Optional[tuple[str | Path, str]] = None,
           latency: Optional[str | Path] = None) -> list[Path]:
    """Tables, figures and report from a records folder (deterministic).  ``cost_plan``:
    (a workflow profile, a device), the profile's ``ir2net plan`` from the committed
    benchmark records, written as ``plan.md`` beside the tables and included in the report;
    ``latency``: an ``ir2net latency`` record (Table VI's measured columns, the latency
    tables and figure)."""
    plan, finished = load_records(records)
    latency_record = read_latency(latency)
    tables = build_tables(plan, finished, longruns, latency_record)
    written = write_tables(tables, tables_dir)
    plan_file = None
    if cost_plan:
        from ..artifacts import write_text
        from ..plan import plan_markdown, plan_profile

        profile, device = cost_plan
        plan_file = Path(tables_dir) / "plan.md"
        write_text(plan_file, plan_markdown(plan_profile(profile, device), device,
                                            Path(profile).stem) + "\n")
        written.append(plan_file)
    written += figure7(plan, finished, figures_dir, longruns)
    written += coverage_figure(plan, finished, figures_dir, longruns)
    written += training_curves(plan, finished, figures_dir)
    written += paper_comparison(tables, figures_dir)
    written += latency_figure(latency_record, figures_dir)
    written += write_report(records, tables_dir, figures_dir, report_dir,
                            divergences=divergences, benchmark=benchmark, cost_plan=plan_file,
                            latency=latency)
    return written


def publish(runs: str | Path, records: str | Path, tables_dir: str | Path,
            figures_dir: str | Path, report_dir: str | Path, *,
            attention: Optional[str | Path] = None, longruns: Optional[list[dict]] = None,
            divergences: Optional[str | Path] = None,
            benchmark: Optional[str | Path] = None,
            cost_plan: Optional[tuple[str | Path, str]] = None,
            latency: Optional[str | Path] = None) -> list[Path]:
    """Copy the finished runs' records from ``runs`` into ``records`` and render everything
    committed from them; ``attention`` (the workflow's attention.png) is copied."""
    export_records(runs, records)
    if attention and Path(attention).is_file():
        Path(figures_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(attention, Path(figures_dir) / "attention.png")
    return render(records, tables_dir, figures_dir, report_dir, longruns=longruns,
                  divergences=divergences, benchmark=benchmark, cost_plan=cost_plan,
                  latency=latency)
