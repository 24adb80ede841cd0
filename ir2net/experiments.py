"""Every training run the paper reports, derived from a workflow config, each exactly once.

The Snakemake workflow (``workflow/``) asks this module for the run table and for each
run's command-line overrides; the report asks it which run fills which table row.
Runs that two experiments share (Figure 7's lambda = 0.15 IRes point is Table I's IRes
run; lambda = 0 of a series is the run without IRes) have one canonical id and are
trained once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

__all__ = ["RunSpec", "build_runs", "SCHEDULE_GROUPS", "FIGURE7_SERIES", "TABLE1_ROWS", "TABLE3_ROWS",
           "TABLE4_VARIANTS", "ires_tag", "run_id"]

# Table I rows: (row label, precision, recovery, IRes on)
TABLE1_ROWS = (
    ("FP", "fp", None, False),
    ("Baseline", "binary", None, False),
    ("IRes", "binary", None, True),
    ("IRec", "binary", "irec", False),
    ("CIRec", "binary", "cirec", False),
    ("IRes+CIRec", "binary", "cirec", True),
)
# Figure 7 series: (series label, recovery)
FIGURE7_SERIES = (("IRes", None), ("IRes+IRec", "irec"))
# Table III rows: (backbone label, method label, model, recipe, precision)
TABLE3_ROWS = (
    ("VGG-Small", "FP", "vgg_small", "cifar10_vgg_small", "fp"),
    ("VGG-Small", "IR²Net", "vgg_small", "cifar10_vgg_small", "binary"),
    ("ResNet-20", "FP", "resnet20_bireal", "cifar10_resnet20_bireal", "fp"),
    ("ResNet-20", "IR²Net", "resnet20_irnet", "cifar10_resnet20_irnet", "binary"),
    ("ResNet-20", "IR²Net*", "resnet20_bireal", "cifar10_resnet20_bireal", "binary"),
    ("ResNet-18", "FP", "resnet18_cifar", "cifar10_resnet18", "fp"),
    ("ResNet-18", "IR²Net", "resnet18_cifar", "cifar10_resnet18", "binary"),
)
TABLE4_VARIANTS = (("IR²Net-A", "table5_ir2net_a"), ("IR²Net-B", "table5_ir2net_b"),
                   ("IR²Net-C", "table5_ir2net_c"), ("IR²Net-D", "table5_ir2net_d"))
#: Keys of a workflow config's ``schedules`` section: one per recipe group.
SCHEDULE_GROUPS = ("cifar10_resnet20_bireal", "cifar10_resnet20_irnet", "cifar10_vgg_small",
                   "cifar10_resnet18", "imagenet_teacher", "imagenet_stage1", "imagenet_stage2")
_CIFAR_PRESET = {"resnet20_bireal": "table2_resnet20", "resnet20_irnet": "table2_resnet20",
                 "vgg_small": "table2_vgg_small", "resnet18_cifar": "table2_resnet18"}


@dataclass
class RunSpec:
    """One training run: ``ir2net train --config recipe --set k=v ...``."""

    run_id: str
    recipe: str
    schedule: str                      # key of the config's `schedules` section
    overrides: dict = field(default_factory=dict)
    seed: int = 0
    uses: dict = field(default_factory=dict)   # override key -> run id whose folder it needs
    roles: list = field(default_factory=list)  # (table, row) pairs this run fills

    def settings(self, runs_dir: str, *layers: dict) -> list[str]:
        """``ir2net train --set`` items, later ones winning: the dataset section's ``data.*``
        keys, then each of ``layers`` in order (the workflow's ``train_overrides``, then the
        run's schedule), then what makes the run this run (model, recovery, IRes, seed, the
        runs it starts from)."""
        identity = dict(self.overrides)
        for key, other in self.uses.items():
            identity[key] = f"{runs_dir}/{other}"
        identity["seed"] = self.seed
        items = [(k, v) for k, v in identity.items() if k.startswith("data.")]
        for layer in layers:
            items += layer.items()
        items += [(k, v) for k, v in identity.items() if not k.startswith("data.")]
        return [f"{k}={_format(v)}" for k, v in items]


def _format(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def ires_tag(lam: Optional[float]) -> str:
    return "nores" if not lam else f"lam{lam:g}"


def run_id(*parts, seed: int) -> str:
    return "-".join(str(p) for p in parts) + f"-s{seed}"


class _Registry:
    def __init__(self):
        self.runs: dict[str, RunSpec] = {}

    def add(self, spec: RunSpec, role: tuple) -> RunSpec:
        existing = self.runs.setdefault(spec.run_id, spec)
        if existing.overrides != spec.overrides or existing.recipe != spec.recipe:
            raise ValueError(f"run {spec.run_id} is defined twice with different settings")
        existing.roles.append(role)
        return existing


def _cifar_run(config: dict, model: str, recipe: str, precision: str, recovery: Optional[str],
               lam: Optional[float], seed: int) -> RunSpec:
    data = config["cifar10"]
    overrides = {"model.name": model, "model.precision": precision,
                 "data.dataset": data["dataset"], "data.root": data["root"],
                 "data.download": data["download"], "data.train_subset": data["train_subset"],
                 "data.test_subset": data["test_subset"], "ires.variant": config["ires_variant"]}
    if data["dataset"] == "synthetic":
        overrides.update({f"data.synthetic.{k}": v for k, v in data["synthetic"].items()})
    if recovery is None:
        overrides["model.recovery.enabled"] = False
        rec_tag = "norec"
    elif recovery == "irec":
        overrides.update({"model.recovery.enabled": True, "model.recovery.preset": None,
                          "model.recovery.r": 1})
        rec_tag = "irec"
    else:
        overrides.update({"model.recovery.enabled": True,
                          "model.recovery.preset": _CIFAR_PRESET[model]})
        rec_tag = "cirec"
    overrides["ires.enabled"] = bool(lam)
    if lam:
        overrides["ires.lam"] = lam
    schedule = recipe
    tag = "fp" if precision == "fp" else "bin"
    return RunSpec(run_id("cifar10", model, tag, rec_tag, ires_tag(lam), seed=seed), recipe,
                   schedule, overrides, seed)


def build_runs(config: dict) -> dict[str, RunSpec]:
    """The run table of a (validated) workflow config, keyed by run id, in a stable order."""
    registry = _Registry()
    lam_default = 0.15
    for seed in config["seeds"]:
        for label, precision, recovery, ires in TABLE1_ROWS:
            spec = _cifar_run(config, "resnet20_bireal", "cifar10_resnet20_bireal", precision,
                              recovery, lam_default if ires else None, seed)
            registry.add(spec, ("table1", label))
        for series, recovery in FIGURE7_SERIES:
            for lam in config["lambda_grid"]:
                spec = _cifar_run(config, "resnet20_bireal", "cifar10_resnet20_bireal", "binary",
                                  recovery, lam, seed)
                registry.add(spec, ("figure7", f"{series}|{lam:g}"))
        for backbone, method, model, recipe, precision in TABLE3_ROWS:
            if model not in config["table3_backbones"]:
                continue
            recovery = None if precision == "fp" else "cirec"
            lam = None if precision == "fp" else lam_default
            spec = _cifar_run(config, model, recipe, precision, recovery, lam, seed)
            registry.add(spec, ("table3", f"{backbone}|{method}"))
        _imagenet_runs(config, registry, seed)
    return registry.runs


def _imagenet_runs(config: dict, registry: _Registry, seed: int) -> None:
    imagenet = config["imagenet"]
    base = {"data.dataset": "imagenet", "data.root": imagenet["data_root"],
            "data.image_size": imagenet["image_size"], "data.resize_size": imagenet["resize_size"],
            "ires.variant": config["ires_variant"]}
    uses = {}
    if imagenet["teacher_weights"]:
        base["train.teacher_weights"] = imagenet["teacher_weights"]
    else:  # no pretrained teacher: the DAG trains one
        teacher = RunSpec(run_id("imagenet", "teacher", seed=seed), "imagenet_teacher",
                          "imagenet_teacher", dict(base), seed)
        registry.add(teacher, ("table4", "teacher"))
        uses = {"train.teacher_weights": teacher.run_id}
    fp = RunSpec(run_id("imagenet", "fp", seed=seed), "imagenet_fp", "imagenet_stage1",
                 dict(base), seed, dict(uses))
    registry.add(fp, ("table4", "FP"))
    for label, preset in TABLE4_VARIANTS:
        letter = preset[-1]
        overrides = {**base, "model.recovery.preset": preset}
        stage1 = RunSpec(run_id("imagenet", letter, "stage1", seed=seed), "imagenet_stage1",
                         "imagenet_stage1", dict(overrides), seed, dict(uses))
        registry.add(stage1, ("table4-stage1", label))
        stage2 = RunSpec(run_id("imagenet", letter, "stage2", seed=seed), "imagenet_stage2",
                         "imagenet_stage2", dict(overrides), seed,
                         {**uses, "train.init_from": stage1.run_id})
        registry.add(stage2, ("table4", label))
