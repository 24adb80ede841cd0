"""What a profile costs before it runs (``ir2net plan``): for every training job, the images
it trains on times its epochs, the time it needs at a training-step throughput, and the
GPU-hours per table and in total.

Throughput is measured where a benchmark record of the job's step exists for the device
(``results/bench/**/*.json``: ``ir2net bench --json`` times the ResNet-20 IR²Net step,
``ir2net bench --recipe`` any recipe's step and ``ir2net bench --profile`` every distinct
step of a profile; a record names its step by :func:`step_signature`).  Every other job is
an *estimate*, and the plan says so: the measured
images/s scaled by the ratio of multiply-accumulates per training image (binary and real
alike: a GPU runs both as floating-point convolutions), counting the IRes second pass, the
teacher's forward pass and the test-set evaluations (a forward pass costs a third of a
training pass).  Data-parallel ImageNet jobs are assumed to scale linearly over their GPUs.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import yaml

from .config import ConfigError, fill_defaults, format_schema_error
from .experiments import derive_imagenet, run_table

__all__ = ["JobCost", "plan_profile", "plan_markdown", "profile_jobs", "step_signature",
           "measured_steps", "DATASET_SIZES"]

#: Images per split of the real datasets (train, test).
DATASET_SIZES = {"cifar10": (50_000, 10_000), "imagenet": (1_281_167, 50_000)}
FORWARD_SHARE = 1 / 3  # a forward pass is about a third of forward + backward
REPOSITORY = Path(__file__).resolve().parents[1]


@dataclass
class JobCost:
    run: str
    tables: list[str]
    model: str
    train_images: int
    test_images: int
    epochs: int
    gpus: int
    images_per_s: float      # training images per second of the training step, one device
    eval_seconds: float      # the test-set evaluations, one device
    measured: bool           # the step's throughput is a benchmark record's, not scaled
    source: str

    @property
    def image_epochs(self) -> int:
        return self.train_images * self.epochs

    @property
    def gpu_hours(self) -> float:
        return (self.image_epochs / self.images_per_s + self.eval_seconds) / 3600

    @property
    def wall_hours(self) -> float:
        return self.gpu_hours / self.gpus


def load_profile(path: str | Path) -> dict:
    """A workflow config with the workflow schema's defaults filled in."""
    import jsonschema

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"workflow profile {path} does not exist; profiles are in config/ "
                          "(config.yaml, paper.yaml, smoke.yaml)")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"workflow profile {path} is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"workflow profile {path} is not a mapping of config keys")
    schema = yaml.safe_load((REPOSITORY / "workflow/schemas/config.schema.yaml").read_text())
    fill_defaults(config, schema)
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as error:
        raise ConfigError(f"workflow profile {path}: {format_schema_error(error)}") from None
    return derive_imagenet(config, check_paths=False)


def _bench_records(folder: Path) -> list[dict]:
    records = []
    for path in sorted(folder.rglob("*.json")):
        record = json.loads(path.read_text())
        if "train_step" in record and "machine" in record:
            record["file"] = str(path.relative_to(folder))
            records.append(record)
    return records


def step_signature(config: dict) -> dict:
    """What decides a training step's speed: the network, its precision and recovery, IRes,
    the teacher, the image size, the binary convolutions' dtype (not lambda, not the
    schedule).  A benchmark record carries the signature of the step it timed."""
    model, recovery = config["model"], config["model"]["recovery"]
    return {"model": model["name"], "precision": model["precision"],
            "recovery": [recovery["preset"], recovery["r"], recovery["g"]]
            if recovery["enabled"] else None,
            "ires": config["ires"]["enabled"], "teacher": config["train"]["teacher"],
            "image_size": config["data"]["image_size"], "binary_dtype": model["binary_dtype"]}


def _signature_key(signature: dict) -> str:
    return json.dumps(signature, sort_keys=True)


@lru_cache(maxsize=None)
def _reference_signature(binary_dtype: str) -> str:
    """The step `ir2net bench` (without --recipe) times: the ResNet-20 IR²Net recipe."""
    from .config import load_config

    config = load_config("cifar10_resnet20_bireal", ["data.root=x"],
                         {"model.binary_dtype": binary_dtype})
    return _signature_key(step_signature(config))


def _matches_device(record: dict, device: str) -> bool:
    machine = record["machine"]
    if device == "cpu":
        return machine["device"] == "cpu"
    return device.lower() in (machine.get("gpu") or "").lower()


def measured_steps(device: str, folder: Path) -> dict[str, tuple[float, str]]:
    """Per step signature, the fastest measured full-precision-arithmetic step that
    ``ir2net train`` can run by default on ``device`` (h100, cpu, ...): img/s and its record.
    Left out: records of reduced-precision arithmetic (autocast), of the eager CUDA step (the
    training default is a CUDA graph), and of a compiled CUDA step that was not checked
    against the eager step or failed that check (on torch 2.11 it skipped the binary weights'
    gradient, which is why it measured fastest)."""
    measured: dict[str, tuple[float, str]] = {}
    for record in _bench_records(folder):
        step, settings = record["train_step"], record["settings"]
        if not _matches_device(record, device) or not settings.get("cuda_graphs", True) \
                or step.get("mixed_precision", "none") != "none":
            continue
        verdict = step.get("fast_step_check")
        if (verdict not in (None, "agrees with the eager step", "eager step")
                or (settings.get("compile") and device != "cpu" and verdict is None)):
            continue
        key = _signature_key(record["step"]) if "step" in record else _reference_signature(
            "bfloat16" if step.get("bf16_binary_convs") else "float32")
        if key not in measured or step["ours_img_s"] > measured[key][0]:
            measured[key] = (step["ours_img_s"], record["file"])
    if not measured:
        known = sorted({(r["machine"].get("gpu") or "cpu") for r in _bench_records(folder)})
        raise ConfigError(f"no benchmark record for device {device!r} in {folder} (records: "
                          f"{', '.join(known)}); run `ir2net bench --json` on it and save the "
                          f"result there")
    return measured


@lru_cache(maxsize=None)
def _forward_macs(model_settings: str, image_size: int, classes: int) -> float:
    """Multiply-accumulates (binary and real) of one forward pass of one image of the model a
    config builds (``model_settings``: its ``model`` section as JSON)."""
    from .complexity import count_complexity
    from .training import build_model

    model_cfg = json.loads(model_settings)
    config = {"model": model_cfg, "data": {"image_size": image_size}}
    model = build_model(config, classes)
    report = count_complexity(model, (3, image_size, image_size), "reactnet")
    return report.bops + report.flops


def _cost_per_image(config: dict, classes: int) -> float:
    """Training cost of one image in MACs-equivalents: forward and backward of every pass
    (IRes: two) and the teacher's forward."""
    size = config["data"]["image_size"]
    model = {**config["model"], "binary_dtype": "float32"}
    cost = _forward_macs(json.dumps(model, sort_keys=True), size, classes)
    if config["ires"]["enabled"]:
        cost *= 2
    if config["train"]["teacher"]:
        teacher = {**model, "name": config["train"]["teacher"]}
        cost += _forward_macs(json.dumps(teacher, sort_keys=True), size, classes) * FORWARD_SHARE
    return cost


def _dataset(config: dict, profile: dict) -> tuple[int, int, int]:
    """Training images, test images and classes of a job's dataset, without reading it."""
    from .data import num_classes

    data = config["data"]
    if data["dataset"] == "synthetic":
        synthetic = data["synthetic"]
        return synthetic["train_size"], synthetic["test_size"], synthetic["num_classes"]
    imagenet = profile["imagenet"]
    if data["dataset"] == "imagenet" and not imagenet.get("root") and imagenet.get("allow_standin"):
        standin = imagenet["standin"]
        classes = standin["classes"]
        return classes * standin["train_per_class"], classes * standin["val_per_class"], classes
    train, test = DATASET_SIZES[data["dataset"]]
    return (data["train_subset"] or train, data["test_subset"] or test,
            num_classes(data, count_folder=False))


#: Run-table settings that name files of the machine a job runs on, not its step.
MACHINE_PATHS = ("data.root", "train.init_from", "train.teacher_weights")


def profile_jobs(profile: dict) -> Iterator[tuple[dict, dict, dict]]:
    """Every training job of a loaded profile: its run-table entry, its settings without
    :data:`MACHINE_PATHS`, and the config they give (without reading any data)."""
    from .config import load_config

    for entry in run_table(profile)["runs"]:
        settings = {k: v for k, v in entry["settings"].items() if k not in MACHINE_PATHS}
        yield entry, settings, load_config(entry["recipe"], ["data.root=x"], settings)


def plan_profile(profile_path: str | Path, device: str = "h200",
                 bench_folder: str | Path = REPOSITORY / "results/bench") -> list[JobCost]:
    """The cost of every training job of a workflow profile on ``device``."""
    from .config import load_config
    from .data import num_classes

    profile = load_profile(profile_path)
    measured = measured_steps(device, Path(bench_folder))
    reference = load_config("cifar10_resnet20_bireal", ["data.root=x"])
    reference_key = _reference_signature("float32")
    reference_speed, reference_record = measured.get(reference_key, (None, None))
    reference_cost = _cost_per_image(reference, num_classes(reference["data"], count_folder=False))
    jobs = []
    for entry, _, config in profile_jobs(profile):
        train_images, test_images, classes = _dataset(config, profile)
        cost = _cost_per_image(config, classes)
        key = _signature_key(step_signature(config))
        if key in measured:
            speed, record = measured[key]
            source = f"measured ({record})"
        elif reference_speed is None:
            raise ConfigError(
                f"no benchmark record for device {device!r} in {bench_folder} of the step of "
                f"{entry['id']}, nor of the ResNet-20 IR²Net step that an estimate scales: "
                f"run `ir2net bench --json` (or `ir2net bench --profile`) on that device")
        else:
            speed = reference_speed * reference_cost / cost
            source = f"estimate: {reference_record} scaled by MACs per training image"
        evaluations = math.ceil(config["train"]["epochs"] / config["eval"]["every"])
        eval_seconds = test_images * evaluations * FORWARD_SHARE / speed
        gpus = profile["cluster"]["imagenet_gpus"] if entry["recipe"].startswith("imagenet") \
            else 1
        jobs.append(JobCost(
            entry["id"], sorted({_table_name(role) for role in entry["roles"]}),
            config["model"]["name"], train_images, test_images, config["train"]["epochs"], gpus,
            speed, eval_seconds, key in measured, source))
    return jobs


def _table_name(role: dict) -> str:
    return {"table1": "Table I", "table3": "Table III", "table4": "Table IV",
            "table4-stage1": "Table IV", "figure7": "Figure 7",
            "calibration": "Data calibration"}[role["table"]]


def plan_markdown(jobs: list[JobCost], device: str, profile: str) -> str:
    """The plan as Markdown: one row per job, then GPU-hours per table and in total (for
    ``cpu``: hours of the whole CPU, which the benchmark used)."""
    import pandas as pd

    from .reporting.printing import to_markdown

    unit = "CPU" if device == "cpu" else "GPU"

    rows = [{"run": job.run, "tables": ", ".join(job.tables), "model": job.model,
             "images x epochs": f"{job.train_images:,} x {job.epochs}",
             f"{unit}s": str(job.gpus), f"img/s per {unit}": f"{job.images_per_s:,.0f}",
             f"{unit}-hours": f"{job.gpu_hours:,.2f}", "wall hours": f"{job.wall_hours:,.2f}",
             "throughput": "measured" if job.measured else "estimate"} for job in jobs]
    per_table: dict[str, float] = {}
    for job in jobs:
        for table in job.tables:
            per_table[table] = per_table.get(table, 0.0) + job.gpu_hours
    total = sum(job.gpu_hours for job in jobs)
    estimates = sum(not job.measured for job in jobs)
    sources = sorted({job.source for job in jobs if not job.measured})
    records = sorted({job.source for job in jobs if job.measured})
    if records:
        names = [record.removeprefix("measured (").removesuffix(")") for record in records]
        sources.insert(0, f"measured: the job's own step in {len(names)} benchmark record(s) "
                          f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    lines = [f"Cost plan of the `{profile}` profile on `{device}`: {len(jobs)} training jobs, "
             f"**{total:,.1f} {unit}-hours** in all ({estimates} of {len(jobs)} jobs at "
             "estimated throughput). Throughput: " + "; ".join(sources) + ". A run that fills "
             "several tables counts once in the total and in each of its tables. The estimates "
             "scale a small model's step, which is bound by kernel launches, by MACs: they "
             "overstate the time of large models (ImageNet) until `ir2net bench --recipe` "
             "(or `--profile`) records exist for them.", "",
             to_markdown(pd.DataFrame([{"table": table, f"{unit}-hours": f"{hours:,.1f}"}
                                       for table, hours in sorted(per_table.items())]),
                         [False, True]), "",
             to_markdown(pd.DataFrame(rows), [False, False, False, True, True, True, True, True,
                                              False])]
    return "\n".join(lines)
