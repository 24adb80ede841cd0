"""Every training run the paper reports, derived from a workflow config, each exactly once.

:func:`run_table` is the experiment plan: every run with its recipe, its typed settings
and its roles in the tables and figures.  The workflow computes it once when it parses,
writes it as ``run-table.yaml`` (an input of the tables, figures and report) and hands each
training job its own typed settings; the report reads the same file back.  Runs that two
experiments share (Figure 7's lambda = 0.15 IRes point is Table I's IRes run; lambda = 0 of
a series is the run without IRes) have one id, several roles, and are trained once.

Pure Python: the workflow imports this module when it parses, without torch.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .recovery_presets import table_presets

__all__ = ["RunSpec", "build_runs", "run_table", "role_label", "derive_imagenet", "PlanError", "SCHEDULE_GROUPS", "FIGURE7_SERIES", "TABLE1_ROWS", "TABLE3_ROWS",
           "TABLE3_BACKBONES",
           "TABLE4_VARIANTS", "ires_tag", "run_id", "CALIBRATION_RECIPE", "CALIBRATION_ROW"]

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
TABLE3_BACKBONES = tuple(dict.fromkeys(row[2] for row in TABLE3_ROWS))
#: Table IV's IR²Net-A..D: the Table V presets, (row, preset name)
TABLE4_VARIANTS = tuple((preset.row, preset.name) for preset in table_presets("V"))
#: The data calibration's recipe (ir2net.calibration) and its row in the report.
CALIBRATION_RECIPE = "cifar10_calibration_resnet20"
CALIBRATION_ROW = "ResNet-20 (He et al.), real-valued"
#: Keys of a workflow config's ``schedules`` section: one per recipe group.
SCHEDULE_GROUPS = ("cifar10_calibration_resnet20", "cifar10_resnet20_bireal", "cifar10_resnet20_irnet", "cifar10_vgg_small",
                   "cifar10_resnet18", "imagenet_teacher", "imagenet_stage1", "imagenet_stage2")
#: Table II's preset per CIFAR-10 backbone (the IR-Net-structure ResNet-20 shares the
#: ResNet-20 row: same channels, same taps)
_CIFAR_PRESET = {**{preset.backbone: preset.name for preset in table_presets("II")},
                 "resnet20_irnet": "table2_resnet20"}


@dataclass
class RunSpec:
    """One training run: a recipe and the settings that make it this run."""

    run_id: str
    recipe: str
    schedule: str                      # key of the config's `schedules` section
    overrides: dict = field(default_factory=dict)
    seed: int = 0
    uses: dict = field(default_factory=dict)   # setting key -> run id whose folder it needs
    roles: list = field(default_factory=list)  # {"table": ..., ...}: where its score goes

    def settings(self, runs_dir: str, *layers: dict) -> dict:
        """The run's typed settings on top of its recipe, later ones winning: the dataset
        section's ``data.*`` keys, then each of ``layers`` in order (the workflow's
        ``train_overrides``, then the run's schedule), then what makes the run this run
        (model, recovery, IRes, seed, the runs it starts from)."""
        identity = dict(self.overrides)
        for key, other in self.uses.items():
            identity[key] = f"{runs_dir}/{other}"
        identity["seed"] = self.seed
        settings = {k: v for k, v in identity.items() if k.startswith("data.")}
        for layer in layers:
            for key, value in layer.items():
                settings.pop(key, None)  # keep the order of precedence visible
                settings[key] = value
        for key, value in identity.items():
            if not key.startswith("data."):
                settings.pop(key, None)
                settings[key] = value
        return settings


class PlanError(ValueError):
    """A workflow config that cannot define its runs; names the key."""


def derive_imagenet(config: dict, *, check_paths: bool = True) -> dict:
    """Where the ImageNet arm reads its data: ``imagenet.root``, or the stand-in the DAG
    builds from CIFAR-10 (``allow_standin``).  Fills ``data_root``, the image sizes and a
    ``description`` into ``config["imagenet"]`` (in place; also returned).  Without
    ``check_paths`` (a cost plan) a profile whose ImageNet is not here is still planned."""
    imagenet, cifar = config["imagenet"], config["cifar10"]
    if imagenet.get("root"):
        if check_paths and not Path(imagenet["root"]).is_dir():
            raise PlanError(f"config key 'imagenet.root': {imagenet['root']} is not a folder")
        imagenet["data_root"] = imagenet["root"]
        imagenet["description"] = f"ImageNet from {imagenet['root']}"
    elif imagenet.get("allow_standin"):
        standin = imagenet["standin"]
        imagenet["data_root"] = f"{config['runs_dir']}/imagenet-standin"
        imagenet["image_size"] = standin["image_size"]
        imagenet["resize_size"] = standin["image_size"] + standin["image_size"] // 7
        imagenet["description"] = (
            f"STAND-IN, not ImageNet: {standin['classes']} CIFAR-10 classes "
            f"({'SYNTHETIC images' if cifar['dataset'] == 'synthetic' else 'real images'}), "
            f"{standin['train_per_class']}/{standin['val_per_class']} train/val images per "
            f"class, upsampled to {standin['image_size']}px")
    elif check_paths:
        raise PlanError("config key 'imagenet.root': this profile needs ImageNet (train/ and "
                        "val/ class folders) and does not allow a stand-in; set imagenet.root")
    else:
        imagenet["data_root"] = "IMAGENET"
        imagenet["description"] = "ImageNet (not on this machine)"
    return config


def data_problems(config: dict) -> dict[str, Optional[str]]:
    """What stops a job from reading its data, per source (``cifar10``, ``imagenet``): the
    message naming the config key and what to do, or None.  The workflow parses and plans
    without any data (Tables II/V/VI, dry runs, the cost plan need none); only the jobs that
    read a source refuse, with these messages (workflow/rules/common.smk)."""
    cifar, problems = config["cifar10"], {"cifar10": None, "imagenet": None}
    if cifar["dataset"] == "cifar10":
        if not cifar["root"]:
            problems["cifar10"] = (
                "config key 'cifar10.root': no CIFAR-10 path given; set it to a torchvision "
                "cifar-10-batches-py folder, an image-folder tree or an archive of one")
        elif not cifar["download"] and not Path(cifar["root"]).exists():
            problems["cifar10"] = (
                f"config key 'cifar10.root': {cifar['root']} does not exist. Provide CIFAR-10 "
                "there (for example extract or point at the shared cifar10-jpeg.tar.gz), or "
                "set cifar10.download: true where the network allows")
    try:
        derive_imagenet(copy.deepcopy(config))
    except PlanError as error:
        problems["imagenet"] = str(error)
    return problems


def role_label(role: dict) -> str:
    """The row a role fills, as the paper's tables name it (Table III: backbone and method)."""
    if role["table"] == "table3":
        return f"{role['backbone']}|{role['method']}"
    if role["table"] == "figure7":
        return f"{role['series']}|{role['lambda']:g}"
    return role["row"]


def run_table(config: dict, runs: Optional[dict[str, "RunSpec"]] = None) -> dict:
    """The experiment plan of a (validated) workflow config: profile facts the report needs
    and every run with its recipe, typed settings, the runs it needs, and its roles."""
    runs = build_runs(config) if runs is None else runs
    schedules = config.get("schedules", {})
    return {
        "profile": config["profile"], "description": config.get("description", ""),
        "published_schedule": bool(config.get("published_schedule")),
        "seeds": list(config["seeds"]),
        "cifar10": {"dataset": config["cifar10"]["dataset"], "root": config["cifar10"]["root"]},
        "imagenet": {"description": config["imagenet"].get("description")
                     or config["imagenet"].get("root")},
        "runs": [{"id": spec.run_id, "recipe": spec.recipe, "seed": spec.seed,
                  "settings": spec.settings(config["runs_dir"], config.get("train_overrides", {}),
                                            schedules.get(spec.schedule, {})),
                  "needs": sorted(set(spec.uses.values())), "roles": spec.roles}
                 for spec in runs.values()]}


def ires_tag(lam: Optional[float]) -> str:
    return "nores" if not lam else f"lam{lam:g}"


def run_id(*parts, seed: int) -> str:
    return "-".join(str(p) for p in parts) + f"-s{seed}"


class _Registry:
    def __init__(self):
        self.runs: dict[str, RunSpec] = {}

    def add(self, spec: RunSpec, role: dict) -> RunSpec:
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


def _calibration_run(config: dict, seed: int) -> RunSpec:
    """The data calibration (:mod:`ir2net.calibration`): not a row of the paper, the
    real-valued ResNet-20 whose canonical accuracy tells what this copy of CIFAR-10 costs."""
    data = config["cifar10"]
    overrides = {"model.name": "resnet20", "model.precision": "fp",
                 "data.dataset": data["dataset"], "data.root": data["root"],
                 "data.download": data["download"], "data.train_subset": data["train_subset"],
                 "data.test_subset": data["test_subset"], "ires.variant": config["ires_variant"]}
    if data["dataset"] == "synthetic":
        overrides.update({f"data.synthetic.{k}": v for k, v in data["synthetic"].items()})
    return RunSpec(run_id("cifar10", "resnet20", "calibration", seed=seed), CALIBRATION_RECIPE,
                   CALIBRATION_RECIPE, overrides, seed)


def build_runs(config: dict) -> dict[str, RunSpec]:
    """The run table of a (validated) workflow config, keyed by run id, in a stable order."""
    registry = _Registry()
    lam_default = 0.15
    for seed in config["seeds"]:
        registry.add(_calibration_run(config, seed),
                     {"table": "calibration", "row": CALIBRATION_ROW})
        for label, precision, recovery, ires in TABLE1_ROWS:
            spec = _cifar_run(config, "resnet20_bireal", "cifar10_resnet20_bireal", precision,
                              recovery, lam_default if ires else None, seed)
            registry.add(spec, {"table": "table1", "row": label})
        for series, recovery in FIGURE7_SERIES:
            for lam in config["lambda_grid"]:
                spec = _cifar_run(config, "resnet20_bireal", "cifar10_resnet20_bireal", "binary",
                                  recovery, lam, seed)
                registry.add(spec, {"table": "figure7", "series": series, "lambda": lam})
        for backbone, method, model, recipe, precision in TABLE3_ROWS:
            if model not in config["table3_backbones"]:
                continue
            recovery = None if precision == "fp" else "cirec"
            lam = None if precision == "fp" else lam_default
            spec = _cifar_run(config, model, recipe, precision, recovery, lam, seed)
            registry.add(spec, {"table": "table3", "backbone": backbone, "method": method})
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
        registry.add(teacher, {"table": "table4", "row": "teacher"})
        uses = {"train.teacher_weights": teacher.run_id}
    fp = RunSpec(run_id("imagenet", "fp", seed=seed), "imagenet_fp", "imagenet_stage1",
                 dict(base), seed, dict(uses))
    registry.add(fp, {"table": "table4", "row": "FP"})
    for label, preset in TABLE4_VARIANTS:
        letter = preset[-1]
        overrides = {**base, "model.recovery.preset": preset}
        stage1 = RunSpec(run_id("imagenet", letter, "stage1", seed=seed), "imagenet_stage1",
                         "imagenet_stage1", dict(overrides), seed, dict(uses))
        registry.add(stage1, {"table": "table4-stage1", "row": label})
        stage2 = RunSpec(run_id("imagenet", letter, "stage2", seed=seed), "imagenet_stage2",
                         "imagenet_stage2", dict(overrides), seed,
                         {**uses, "train.init_from": stage1.run_id})
        registry.add(stage2, {"table": "table4", "row": label})
