import json
import os
import re
from pathlib import Path

import yaml
from snakemake.utils import validate

from ir2net.experiments import SCHEDULE_GROUPS, build_runs
from ir2net.models import list_models


if not config:
    raise ValueError("no workflow config: run `snakemake --cores all` (the default profile "
                     "reads config/config.yaml) or pass --configfile config/<profile>.yaml")

validate(config, "../schemas/config.schema.yaml")


def _config_error(key, message):
    raise ValueError(f"config key '{key}': {message}")


for _index, _name in enumerate(config["table3_backbones"]):
    if _name not in list_models():
        _config_error(f"table3_backbones[{_index}]", f"unknown backbone {_name!r}; available: "
                      f"{', '.join(list_models())}")

for _group in config["schedules"]:
    if _group not in SCHEDULE_GROUPS:
        _config_error(f"schedules.{_group}", f"unknown recipe group; expected one of "
                      f"{', '.join(SCHEDULE_GROUPS)}")

_cifar = config["cifar10"]
if _cifar["dataset"] == "cifar10":
    if not _cifar["root"]:
        _config_error("cifar10.root", "no CIFAR-10 path given; set it to a torchvision "
                      "cifar-10-batches-py folder, an image-folder tree or an archive of one")
    if not _cifar["download"] and not Path(_cifar["root"]).exists():
        _config_error("cifar10.root", f"{_cifar['root']} does not exist. Provide CIFAR-10 there "
                      "(for example extract or point at the shared cifar10-jpeg.tar.gz), or set "
                      "cifar10.download: true where the network allows")

_imagenet = config["imagenet"]
if _imagenet["root"]:
    if not Path(_imagenet["root"]).is_dir():
        _config_error("imagenet.root", f"{_imagenet['root']} is not a folder")
    _imagenet["data_root"] = _imagenet["root"]
    _imagenet["description"] = f"ImageNet from {_imagenet['root']}"
elif _imagenet["allow_standin"]:
    _imagenet["data_root"] = f"{config['runs_dir']}/imagenet-standin"
    _standin = _imagenet["standin"]
    _imagenet["image_size"] = _standin["image_size"]
    _imagenet["resize_size"] = _standin["image_size"] + _standin["image_size"] // 7
    _imagenet["description"] = (
        f"STAND-IN, not ImageNet: {_standin['classes']} CIFAR-10 classes "
        f"({'SYNTHETIC images' if _cifar['dataset'] == 'synthetic' else 'real images'}), "
        f"{_standin['train_per_class']}/{_standin['val_per_class']} train/val images per class, "
        f"upsampled to {_standin['image_size']}px")
else:
    _config_error("imagenet.root", "this profile needs ImageNet (train/ and val/ class folders) "
                  "and does not allow a stand-in; set imagenet.root")

RUNS_DIR = config["runs_dir"]
RESULTS = config["results_dir"]
REPORT = config["report_dir"]
LOGS = f"logs/{config['profile']}"
RUNS = build_runs(config)


wildcard_constraints:
    run="|".join(re.escape(run) for run in RUNS),


def run_folder(run):
    return f"{RUNS_DIR}/{run}"


def train_inputs(wildcards):
    spec = RUNS[wildcards.run]
    inputs = {f"needs_{i}": f"{run_folder(other)}/model.pt"
              for i, other in enumerate(spec.uses.values())}
    if spec.recipe.startswith("imagenet") and not _imagenet["root"]:
        inputs["standin"] = _imagenet["data_root"]
    return inputs


def train_settings(wildcards):
    spec = RUNS[wildcards.run]
    settings = spec.settings(RUNS_DIR, config["train_overrides"],
                             config["schedules"].get(spec.schedule, {}))
    return " ".join(f"--set '{item}'" for item in settings)


def all_metrics():
    return [f"{run_folder(run)}/metrics.json" for run in RUNS]


def table1_weights():
    rows = {"FP", "Baseline", "IRes+CIRec"}
    return sorted({f"{run_folder(spec.run_id)}/model.pt" for spec in RUNS.values()
                   for table, row in spec.roles if table == "table1" and row in rows})


LONGRUNS = config["longruns_dir"]
TABLE_FILES = ([f"table{i}" for i in range(1, 7)]
               + (["published"] if LONGRUNS and Path(LONGRUNS, "plan.yaml").is_file() else []))
TABLES = [f"{RESULTS}/tables/{name}.{ext}" for name in TABLE_FILES for ext in ("csv", "md", "tex")]


def longrun_progress():
    """The committed progress of the published-schedule runs (an input of the tables)."""
    if "published" not in TABLE_FILES:
        return []
    return sorted(str(path) for path in Path(LONGRUNS).glob("*/progress.json")) + \
        [f"{LONGRUNS}/plan.yaml"]
