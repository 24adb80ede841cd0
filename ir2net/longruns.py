"""Published-schedule runs that live in the repository while they train.

A 500-epoch ResNet-20 run takes about half an hour on an H100 and a day or more on a
2-core CPU, so it is trained in segments, on whatever machine has compute next.  Its
folder under ``results/longruns/`` is committed between segments::

    results/longruns/plan.yaml           which runs, with which recipe and settings
    results/longruns/<run>/config.yaml   the resolved config: fixed when the run starts
    results/longruns/<run>/checkpoint/   resumable state (a few MB), while it trains
    results/longruns/<run>/progress.json where it is: epochs, top-1 so far, every segment
    results/longruns/<run>/model.pt      final weights, once complete (the checkpoint goes)
    results/longruns/<run>/metrics.json  the finished run's record
    results/longruns/<run>/cpu_evaluation.json  its weights re-scored on the CPU (CI checks it)
    results/longruns/<run>/ires_coverage.json   ``ir2net ires-coverage --out`` on its weights
    results/longruns/<run>/bn_momentum.json     ``ir2net bn-momentum --out``, one per state

``ir2net longrun continue`` trains every unfinished run of the most urgent priority
until it completes or the time budget runs out; a completed run's record is copied into
the paper profile's records.  A run's method never changes once started: the plan is
read only to start a run, and a plan whose settings no longer give a started run's
config is refused (a changed method is a new run, under a new id).
"""
from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import artifacts
from .config import ConfigError, config_digest, load_config, parse_duration, read_yaml_text

__all__ = ["LongRun", "load_plan", "run_status", "continue_runs", "DEFAULT_FOLDER", "derive",
           "derivation",
           "progress_summary", "read_progress", "write_progress", "write_run_table"]

DEFAULT_FOLDER = Path("results/longruns")
PLAN = "plan.yaml"
COVERAGE = "ires_coverage.json"  # what IRes's mask would remove on the run's weights
#: the final weights scored on the test set through OpenVINO's binary kernel, beside PyTorch
OPENVINO_EVALUATION = "openvino_evaluation.json"
#: the final weights' top-1 class for every test image (``ir2net evaluate --per-image``)
TEST_PREDICTIONS = "test_predictions.json"
#: records committed beside a run's progress, by the key ``read_progress`` gives them
#: test top-1 of the run's weights with BatchNorm's statistics at other momenta
BN_MOMENTUM = "bn_momentum.json"
RUN_RECORDS = {"ires_coverage": COVERAGE, "openvino_evaluation": OPENVINO_EVALUATION,
               "test_predictions": TEST_PREDICTIONS, "bn_momentum": BN_MOMENTUM}


@dataclass
class LongRun:
    """One planned run: a paper-profile run id, its recipe, and the settings that make it."""

    run_id: str
    recipe: str
    settings: dict
    priority: int
    rows: dict            # {table: row label} it fills, e.g. {"table1": "Baseline"}
    folder: Path
    gpu_only: bool = False  # far beyond a CPU: trained only on a GPU, before anything else
    same_as: Optional[str] = None  # a Figure 7 λ point: that run, exactly, below its onset

    def overrides(self, shared: dict) -> list[str]:
        return [f"{key}={_yaml_value(value)}" for key, value in {**shared, **self.settings}.items()]

    @property
    def state(self) -> str:
        if (self.folder / "metrics.json").is_file():
            return "complete"
        if (self.folder / artifacts.CHECKPOINT).is_file():
            return "training"
        return "not started"


def _yaml_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Plan:
    folder: Path
    records: Path
    data_root: Path
    settings: dict
    runs: list[LongRun]
    profile: Optional[Path] = None  # the workflow profile whose records the runs join

    def get(self, run_id: str) -> LongRun:
        """The planned run named ``run_id``, or living in the folder ``run_id`` names (what
        a shell's tab-completion gives: ``results/longruns/<id>/``)."""
        named = Path(run_id)
        if named.name != run_id and named.resolve().parent == self.folder.resolve():
            run_id = named.name
        for run in self.runs:
            if run.run_id == run_id:
                return run
        raise ConfigError(f"{self.folder / PLAN} has no run {run_id!r}; planned: "
                          f"{', '.join(r.run_id for r in self.runs)}")


def load_plan(folder: str | Path = DEFAULT_FOLDER) -> Plan:
    """Read ``folder/plan.yaml``; its paths are relative to ``folder``."""
    folder = Path(folder)
    path = folder / PLAN
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; run from the repository root or pass "
                          "--folder results/longruns")
    plan = read_yaml_text(path.read_text()) or {}
    runs = []
    for index, entry in enumerate(plan.get("runs", [])):
        missing = {"id", "recipe"} - set(entry)
        if missing:
            raise ConfigError(f"{path}: runs[{index}] lacks {', '.join(sorted(missing))}")
        runs.append(LongRun(entry["id"], entry["recipe"], dict(entry.get("settings") or {}),
                            int(entry.get("priority", 1)), dict(entry.get("rows") or {}),
                            folder / entry["id"], bool(entry.get("gpu_only", False)),
                            entry.get("same_as")))
    if len({run.run_id for run in runs}) != len(runs):
        raise ConfigError(f"{path}: a run id appears twice")
    ids = {run.run_id for run in runs}
    for run in runs:
        if run.same_as is not None and (run.same_as not in ids or "ires.lam" not in run.settings):
            raise ConfigError(f"{path}: run {run.run_id} is planned same_as {run.same_as!r}, "
                              "which needs a planned reference run and the point's ires.lam")
    return Plan(folder, folder / plan.get("records", "../records/paper"),
                folder / plan.get("data_root", "data"), dict(plan.get("settings") or {}), runs,
                folder / plan["profile"] if plan.get("profile") else None)


def planned_config(plan: Plan, run: LongRun, data_root: Optional[str | Path] = None) -> dict:
    """The config the plan gives ``run`` (what a new start uses)."""
    root = Path(data_root) if data_root else plan.data_root
    return load_config(run.recipe, [*run.overrides(plan.settings), f"data.root={root}"])


def _execution_settings(config: dict, *, data_root: Path, stop_after, device: str) -> dict:
    """This segment's execution-only keys: where the data is, the device, the budget."""
    config = copy.deepcopy(config)
    config["data"]["root"] = str(data_root)
    config["device"] = device
    config["progress"] = True
    config["train"]["stop_after"] = stop_after
    config["train"]["channels_last"] = not on_gpu(device)  # measured faster on the CPU (docs/performance.md)
    config["train"]["compile"] = "auto"  # the fastest exact step: a CUDA graph, not compiled
    return config


def progress_summary(run: LongRun) -> dict:
    """Where a run stands, from its record (complete) or its checkpoint (training)."""
    summary = {"run": run.run_id, "state": run.state, "rows": run.rows, "priority": run.priority}
    if (run.folder / "config.yaml").is_file():
        started = read_yaml_text((run.folder / "config.yaml").read_text())
        summary["model_precision"] = started["model"]["precision"]  # binary or fp
    if run.state == "complete":
        metrics = json.loads((run.folder / "metrics.json").read_text())
        summary.update(epochs_done=metrics["epochs_completed"], epochs=metrics["epochs_completed"],
                       final=metrics["final"], best=metrics["best"],
                       history=metrics["history"], segments=metrics.get("segments", []))
    elif run.state == "training":
        import torch

        state = torch.load(run.folder / artifacts.CHECKPOINT, map_location="cpu", weights_only=True)
        history = state["history"]
        tested = [record for record in history if "test" in record]
        summary.update(epochs_done=state["epoch"], epochs=state["config"]["train"]["epochs"],
                       final=({**tested[-1]["test"], "epoch": tested[-1]["epoch"]}
                              if tested else None),
                       best=state["best"], history=history, segments=state["segments"])
    if "segments" in summary:
        summary["wall_hours"] = round(sum(s.get("wall_seconds") or 0
                                          for s in summary["segments"]) / 3600, 3)
    return summary


def write_progress(run: LongRun) -> Optional[Path]:
    """``progress.json`` of a run that has started (what the tables and report read)."""
    if run.state == "not started":
        return None
    return artifacts.write_json(run.folder / "progress.json", progress_summary(run))


def read_progress(folder: str | Path = DEFAULT_FOLDER) -> list[dict]:
    """Every planned run with its committed ``progress.json`` (``state: not started`` when it
    has none): what the tables and the report show, read without loading a checkpoint.  A
    Figure 7 point carries its ``same_as``; a run carries each of its committed
    :data:`RUN_RECORDS` under its key: ``ires_coverage.json`` (``ir2net ires-coverage
    --out``), ``openvino_evaluation.json`` (``ir2net evaluate --engine openvino --out``) and
    ``test_predictions.json`` (``ir2net evaluate --per-image --out``) and
    ``bn_momentum.json`` (``ir2net bn-momentum --out``)."""
    plan = load_plan(folder)
    rows = []
    for run in plan.runs:
        path = run.folder / "progress.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
        else:
            rows.append({"run": run.run_id, "state": "not started", "rows": run.rows,
                         "priority": run.priority})
        rows[-1]["rows"] = run.rows  # the plan says which rows a run fills, now
        if run.same_as is not None:
            rows[-1]["same_as"] = run.same_as
        for key, name in RUN_RECORDS.items():
            if (run.folder / name).is_file():
                rows[-1][key] = json.loads((run.folder / name).read_text())
    return rows


#: the pace of a run is read off at least this many of its latest epochs (when the machine
#: that trained them trained that many): a segment just restarted is mostly start-up
PACE_EPOCHS = 5.0


def _machine_of(segment: dict) -> str:
    hardware = segment.get("hardware", {})
    return hardware.get("gpu") or f"{hardware.get('cpu', 'cpu')}, " \
                                  f"{hardware.get('torch_threads', '?')} thread(s)"


def _hours_left(summary: dict) -> list[dict]:
    """Time to the end at the recent pace (wall time per epoch, evaluations included) on each
    machine the run has trained on, the latest one first: that machine's latest segments,
    back to at least :data:`PACE_EPOCHS` epochs.  Empty when the run is not training."""
    segments = summary.get("segments") or []
    if summary.get("state") != "training" or not segments:
        return []
    left = max(summary["epochs"] - segments[-1]["end_epoch"], 0)
    machines = list(dict.fromkeys(_machine_of(segment) for segment in reversed(segments)))
    paces = []
    for machine in machines:
        epochs_trained = seconds = 0.0
        for segment in reversed(segments):
            if epochs_trained >= PACE_EPOCHS:
                break
            if _machine_of(segment) == machine:
                epochs_trained += (segment.get("end_epoch") or 0) - (segment.get("start_epoch")
                                                                      or 0)
                seconds += segment.get("wall_seconds") or 0.0
        if epochs_trained > 0 and seconds:
            paces.append({"hours": round(left * seconds / epochs_trained / 3600, 1),
                          "on": machine})
    return paces


#: A λ point is derived only when it lies this far (relative) below the recorded onset, so
#: that the float rounding of Eq. 9's threshold cannot decide it.
ONSET_MARGIN = 1e-6


def derive(lam: float, reference: dict) -> dict:
    """Whether a λ point of Figure 7 is its reference run exactly, from the reference's
    summary (:func:`progress_summary` or its ``progress.json``).

    Two IRes runs whose masks both keep every pixel at every step train identically (the
    second pass repeats the first; issue "IRes settled").  The reference records, per epoch,
    the smallest onset over its batches (``ires_onset``): no λ below it would have removed a
    pixel.  By induction over the steps, a run at a λ below the reference's smallest onset
    over all its steps so far has the same weights at every step so far.  States:
    ``derived`` (that run, exactly: not trained), ``pending`` (the reference has recorded no
    onset yet: wait for it), ``unprovable`` (some epoch of the reference predates the onset
    record) and ``acts`` (the mask would have removed pixels at some epoch): those two are
    trained."""
    history = [record for record in reference.get("history") or [] if "steps" in record]
    name = reference["run"]
    facts = {"lam": lam, "reference": name, "onset_min": None,
             "steps": history[-1]["steps"] if history else 0,
             "epochs_done": reference.get("epochs_done"), "epochs": reference.get("epochs")}
    if not history:
        return {**facts, "state": "pending",
                "note": f"waits for {name} to record its onset (not started)"}
    missing = [record["epoch"] for record in history if "ires_onset" not in record]
    if missing:
        return {**facts, "state": "unprovable",
                "note": f"{name} recorded no onset for epochs {missing[0]}-{missing[-1]} "
                        "(trained before the onset was recorded): trained"}
    onset = min(record["ires_onset"] for record in history)
    facts["onset_min"] = onset
    steps = f"over all {facts['steps']:,} steps"
    if reference.get("state") != "complete":
        steps += f" so far (epoch {history[-1]['epoch']} of {reference.get('epochs')})"
    if lam < onset * (1 - ONSET_MARGIN):
        return {**facts, "state": "derived",
                "note": f"identical to {name}, onset ≥ {onset:.3f} {steps}"}
    return {**facts, "state": "acts",
            "note": f"λ = {lam:g} is not below {name}'s onset {onset:.3f} {steps}: trained"}


def derivation(plan: Plan, run: LongRun, summaries: Optional[dict] = None) -> Optional[dict]:
    """:func:`derive` for a planned λ point (``same_as``); ``None`` for any other run.  A
    point and its reference must differ in ``ires.lam`` alone.  ``summaries`` ({run id:
    :func:`progress_summary`}) is filled and reused, so that the points sharing a reference
    read its checkpoint once."""
    if run.same_as is None:
        return None
    reference = plan.get(run.same_as)
    summaries = {} if summaries is None else summaries
    if reference.run_id not in summaries:
        summaries[reference.run_id] = progress_summary(reference)
    point, base = planned_config(plan, run, "x"), planned_config(plan, reference, "x")
    point["ires"]["lam"] = base["ires"]["lam"]
    if config_digest(point) != config_digest(base):
        raise ConfigError(f"{plan.folder / PLAN}: {run.run_id} is planned same_as "
                          f"{reference.run_id} but differs from it in more than ires.lam")
    return derive(float(run.settings["ires.lam"]), summaries[reference.run_id])


def _waits(plan: Plan, run: LongRun, summaries: dict) -> bool:
    """A λ point not to train now: derived from its reference, or waiting for its onset."""
    if run.state != "not started":
        return False
    derived = derivation(plan, run, summaries)
    return derived is not None and derived["state"] in ("derived", "pending")


def run_status(plan: Plan, h200_hours: Optional[dict] = None) -> list[dict]:
    """Each planned run's state; a GPU-only run also its H200-hours (``h200_hours``, from
    :func:`gpu_hours`: pass it to skip the cost plan)."""
    if h200_hours is None and any(run.gpu_only and run.state != "complete" for run in plan.runs):
        h200_hours = gpu_hours(plan)
    rows, summaries = [], {}
    for run in plan.runs:
        if run.run_id not in summaries:  # a point's derivation may have read it already
            summaries[run.run_id] = progress_summary(run)
        summary = summaries[run.run_id]
        rows.append({key: summary.get(key) for key in
                     ("run", "state", "priority", "epochs_done", "epochs", "wall_hours")} |
                    {"final_top1": (summary.get("final") or {}).get("top1"),
                     "best_top1": (summary.get("best") or {}).get("top1"),
                     "segments": len(summary.get("segments", [])),
                     "left_at_recent_pace": _hours_left(summary), "gpu_only": run.gpu_only,
                     "h200_hours": (h200_hours or {}).get(run.run_id) if run.gpu_only else None,
                     "derivation": derivation(plan, run, summaries)})
    return rows


def _check_unchanged(plan: Plan, run: LongRun, started: dict) -> None:
    planned = planned_config(plan, run)
    if config_digest(planned) != config_digest(started):
        raise ConfigError(
            f"{plan.folder / PLAN} no longer gives the config that run {run.run_id} started with "
            f"({run.folder / 'config.yaml'}). A running run's method never changes: undo the "
            "edit, or plan the changed method as a new run with a new id")


CPU_CHECK = "cpu_evaluation.json"


def _finish(plan: Plan, run: LongRun, data_root: Path) -> None:
    """A completed run keeps its final weights and record; its checkpoint goes, and the
    record joins the paper profile's records.  Its weights are scored once more on the CPU
    (``cpu_evaluation.json``): the figure CI re-scores the committed weights against,
    exactly, wherever the run itself was evaluated (a GPU's kernels round differently)."""
    from .inference import score

    if not (run.folder / CPU_CHECK).is_file():
        result = score(run.folder, data_root=data_root, device="cpu")
        artifacts.write_json(run.folder / CPU_CHECK, {
            key: result[key] for key in ("top1", "top5", "loss", "images", "device")})
    shutil.rmtree(run.folder / artifacts.CHECKPOINT.parent, ignore_errors=True)
    target = plan.records / run.run_id
    for name in ("metrics.json", "config.yaml"):
        artifacts.write_text(target / name, (run.folder / name).read_text())
    if plan.profile is not None:  # the run table makes the records folder renderable
        write_run_table(plan)
    write_progress(run)


def write_run_table(plan: Plan) -> Path:
    """The profile's run table beside its records, so that ``ir2net render --records``
    renders the published-schedule runs finished so far as that profile's tables."""
    import yaml

    from .experiments import run_table
    from .plan import load_profile
    from .reporting.records import RUN_TABLE

    table = run_table(load_profile(plan.profile))
    return artifacts.write_text(plan.records / RUN_TABLE,
                                yaml.safe_dump(table, sort_keys=False, allow_unicode=True))


def select(plan: Plan, run_ids: list[str], on_gpu: bool = False) -> list[LongRun]:
    """The named runs, or every unfinished run of the most urgent unfinished priority.  On a
    GPU the GPU-only runs come first (nothing else can train them); a CPU never picks one.
    A λ point that is its reference run exactly (:func:`derive`), or waits for the
    reference's onset, is not picked."""
    if run_ids:
        return [plan.get(run_id) for run_id in run_ids]
    summaries: dict = {}
    unfinished = [run for run in plan.runs
                  if run.state != "complete" and not _waits(plan, run, summaries)]
    gpu_only = [run for run in unfinished if run.gpu_only]
    if on_gpu and gpu_only:
        first = min(run.priority for run in gpu_only)
        return [run for run in gpu_only if run.priority == first]
    unfinished = [run for run in unfinished if not run.gpu_only]
    if not unfinished:
        return []
    first = min(run.priority for run in unfinished)
    return [run for run in unfinished if run.priority == first]


def on_gpu(device: str) -> bool:
    """Whether ``device`` (auto, cpu, cuda) trains on a GPU here."""
    import torch

    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def gpu_hours(plan: Plan, device: str = "h200") -> dict[str, float]:
    """Per GPU-only run, the GPU-hours its whole schedule needs at the measured throughput of
    its step on ``device`` (the cost plan, :mod:`ir2net.plan`, of the plan's profile)."""
    from .plan import plan_profile

    wanted = {run.run_id for run in plan.runs if run.gpu_only}
    if not wanted or plan.profile is None:
        return {}
    return {job.run: job.gpu_hours for job in plan_profile(plan.profile, device)
            if job.run in wanted}


def continue_runs(plan: Plan, run_ids: list[str] = (), *, stop_after=None,
                  data_root: Optional[str | Path] = None, device: str = "auto") -> list[dict]:
    """Train the selected runs one after another until each completes or the budget (for
    the whole command) runs out.  Returns each run's summary after its segment."""
    from .training import TrainingStopped, run as train_run

    budget = parse_duration(stop_after, "--stop-after")
    deadline = None if budget is None else time.monotonic() + budget
    root = Path(data_root) if data_root else plan.data_root
    summaries = []
    for run in select(plan, list(run_ids), on_gpu(device)):
        if run.gpu_only and not on_gpu(device):
            print(f"{run.run_id} is GPU-only in {plan.folder / PLAN}: on this CPU it would take "
                  "weeks; training it because it was named")
        if run.state == "complete":
            _finish(plan, run, root)  # idempotent: the record is where it belongs
            summaries.append(progress_summary(run))
            continue
        if (run.folder / "config.yaml").is_file():
            started = load_config(str(run.folder / "config.yaml"))
            _check_unchanged(plan, run, started)
        else:
            started = planned_config(plan, run, root)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            if summaries:
                break
            left = 1e-9  # the first run always trains at least one step
        config = _execution_settings(started, data_root=root, stop_after=left, device=device)
        try:
            train_run(config, run.folder)
        except TrainingStopped as stopped:
            write_progress(run)
            summaries.append(progress_summary(run))
            if stopped.reason.startswith("signal"):
                raise
            continue
        _finish(plan, run, root)
        summaries.append(progress_summary(run))
    return summaries
