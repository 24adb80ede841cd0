"""Run records: the finished runs of a profile, read from a runs folder or a committed copy.

A *records folder* holds one sub-folder per run (``<run_id>/metrics.json`` and
``config.yaml``) and ``run-table.yaml``, the experiment plan that defined the runs
(:func:`ir2net.experiments.run_table`: each run's recipe, settings and roles).
A runs folder written by the workflow is such a folder, and so is ``results/records/<profile>``
(the committed copy).  Only finished runs (``metrics.json`` with ``status: complete``) are
read; a table cell whose run has not finished stays empty and is never filled from a
partial run.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from typing import Iterator

import yaml

from .. import artifacts
from ..config import read_yaml_text
from ..experiments import run_table

__all__ = ["RUN_TABLE", "load_plan", "load_records", "export_records", "roles"]

RUN_TABLE = "run-table.yaml"
LEGACY_CONFIG = "workflow-config.yaml"  # records written before the run table: its config


def roles(plan: dict, table: str) -> Iterator[tuple[dict, dict]]:
    """``(run, role)`` for every role in ``table`` (e.g. "table1", "figure7") of the plan."""
    for run in plan.get("runs", []):
        for role in run["roles"]:
            if role["table"] == table:
                yield run, role


def load_plan(records_dir: str | Path, required: bool = True) -> dict:
    """The run table of a records folder (``{}`` where there is none and none is required)."""
    records_dir = Path(records_dir)
    if (records_dir / RUN_TABLE).is_file():
        return read_yaml_text((records_dir / RUN_TABLE).read_text())
    if (records_dir / LEGACY_CONFIG).is_file():  # the plan is derived from the config
        return run_table(read_yaml_text((records_dir / LEGACY_CONFIG).read_text()))
    if required:
        raise artifacts.ArtifactError(
            f"{records_dir} has no {RUN_TABLE}: it is not a runs folder of the workflow "
            "(pass the workflow's runs_dir, e.g. runs/default)")
    return {}


def load_records(records_dir: str | Path, require_config: bool = True) -> tuple[dict, dict]:
    """``(run table, {run_id: {"metrics": ..., "config": ...}})`` of the finished runs.

    Without ``require_config`` a folder of runs made outside the workflow (no run table)
    gives an empty plan."""
    records_dir = Path(records_dir)
    plan = load_plan(records_dir, require_config)
    records = {}
    for metrics_path in sorted(records_dir.glob("*/metrics.json")):
        metrics = json.loads(metrics_path.read_text())
        if metrics.get("status") != "complete":
            continue
        run_config_path = metrics_path.parent / "config.yaml"
        run_config = read_yaml_text(run_config_path.read_text()) if run_config_path.is_file() else {}
        records[metrics_path.parent.name] = {"metrics": metrics, "config": run_config}
    return plan, records


def export_records(runs_dir: str | Path, records_dir: str | Path) -> int:
    """Copy the finished runs' metrics and resolved configs (never weights), and the run
    table, to ``records_dir``."""
    runs_dir, records_dir = Path(runs_dir), Path(records_dir)
    plan, records = load_records(runs_dir, require_config=False)
    if not records:
        raise artifacts.ArtifactError(f"{runs_dir} holds no finished run (no metrics.json with "
                                      "status complete); nothing was exported")
    if records_dir.exists():
        shutil.rmtree(records_dir)
    if plan:
        artifacts.write_text(records_dir / RUN_TABLE, yaml.safe_dump(
            plan, sort_keys=False, allow_unicode=True))
    for run_id in records:
        for name in ("metrics.json", "config.yaml"):
            source = runs_dir / run_id / name
            artifacts.write_text(records_dir / run_id / name, source.read_text())
    return len(records)
