import json
import os
import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate

# The run table comes from the package's source next to this workflow (no install needed,
# e.g. deployed as a module), and parsing imports nothing that imports torch.
sys.path.insert(0, str(Path(workflow.current_basedir).parents[1]))
from ir2net.experiments import (CALIBRATION_RECIPE, SCHEDULE_GROUPS,  # noqa: E402
                                TABLE3_BACKBONES, build_runs, data_problems,
                                derive_imagenet, run_table)
from ir2net.table_names import accuracy_table_names, complexity_table_names  # noqa: E402


if not config:
    raise ValueError("no workflow config: run `snakemake --cores all` (the default profile "
                     "reads config/config.yaml) or pass --configfile config/<profile>.yaml")

validate(config, "../schemas/config.schema.yaml")


def _config_error(key, message):
    raise ValueError(f"config key '{key}': {message}")


for _index, _name in enumerate(config["table3_backbones"]):
    if _name not in TABLE3_BACKBONES:
        _config_error(f"table3_backbones[{_index}]", f"unknown backbone {_name!r}; Table III "
                      f"has: {', '.join(TABLE3_BACKBONES)}")

for _group in config["schedules"]:
    if _group not in SCHEDULE_GROUPS:
        _config_error(f"schedules.{_group}", f"unknown recipe group; expected one of "
                      f"{', '.join(SCHEDULE_GROUPS)}")

# Data is checked by the jobs that read it (data_check), not here: targets that read no
# data (Tables II/V/VI, the cost plan, dry runs of any profile) need none.
DATA_PROBLEMS = data_problems(config)
derive_imagenet(config, check_paths=False)
_imagenet = config["imagenet"]

# Files of the workflow itself are found from its own location (the repository holding this
# file), so that the workflow also runs deployed as a module from another folder.
SOURCE = str(Path(workflow.current_basedir).parents[1])
DIVERGENCES = f"{SOURCE}/docs/divergences.md"
PAPER_PROFILE = f"{SOURCE}/config/paper.yaml"
RUNS_DIR = config["runs_dir"]
RESULTS = config["results_dir"]
REPORT = config["report_dir"]
LOGS = f"logs/{config['profile']}"
RUNS = build_runs(config)
RUN_TABLE = run_table(config, RUNS)  # the experiment plan, computed once
RUN_TABLE_FILE = f"{RUNS_DIR}/run-table.yaml"
# the package from the source beside this workflow, whether or not it is installed
PACKAGE_PATH = f"PYTHONPATH={SOURCE}${{PYTHONPATH:+:$PYTHONPATH}}"
IR2NET = f"{PACKAGE_PATH} python -m ir2net.cli"


IMAGENET_RUNS = [run for run, spec in RUNS.items() if spec.recipe.startswith("imagenet")]
CALIBRATION_RUNS = [run for run, spec in RUNS.items() if spec.recipe == CALIBRATION_RECIPE]
CALIBRATIONS = [f"{RESULTS}/calibration/{run}.json" for run in CALIBRATION_RUNS]
CIFAR_RUNS = [run for run in RUNS if run not in IMAGENET_RUNS]
CLUSTER = config["cluster"]


def one_of(names):
    return "|".join(re.escape(name) for name in names) or "^$"


def gpu_resources(imagenet):
    """What a training job asks of the GPUs.  On a cluster: an ImageNet job
    `cluster.imagenet_gpus` GPUs of one node, one srun task each (data-parallel); a CIFAR-10
    job one GPU, or the GRES `cluster.cifar_gres` (a GPU shard, an MPS share) so that SLURM
    packs several on one GPU.  On one machine every job sees the same GPU: `gpu_slots`, which
    `--resources gpu_slots=N` caps, one per CIFAR-10 job and `runs_per_gpu` per ImageNet job."""
    if not config["on_cluster"]:
        return {"gpu_slots": config["runs_per_gpu"] if imagenet else 1}
    if imagenet:
        return {"gpu": CLUSTER["imagenet_gpus"], "tasks": CLUSTER["imagenet_gpus"],
                "tasks_per_gpu": 1, "nodes": 1, "cpus_per_task": CLUSTER["cpus_per_gpu"],
                "mpi": CLUSTER["launcher"]}
    return {"gres": CLUSTER["cifar_gres"]} if CLUSTER["cifar_gres"] else {"gpu": 1}


def launcher(wildcards, resources):
    """How a training job starts: an ImageNet job on a cluster as one task per GPU (each
    reads its rank from SLURM's environment: data-parallel training), with the input
    pipeline's workers sized to its cores; every other job as one process."""
    mpi = getattr(resources, "mpi", None)
    if not mpi:
        return f"{IR2NET} train"
    workers = max(int(resources.cpus_per_task) - 1, 0)
    return (f"{PACKAGE_PATH} {mpi} -n {resources.tasks} python -m ir2net.cli train"
            f" --set data.workers={workers}")


wildcard_constraints:
    run="|".join(re.escape(run) for run in RUNS),


def run_folder(run):
    return f"{RUNS_DIR}/{run}"


def train_inputs(wildcards):
    spec = RUNS[wildcards.run]
    inputs = {f"needs_{i}": f"{run_folder(other)}/model.pt"
              for i, other in enumerate(spec.uses.values())}
    if wildcards.run in IMAGENET_RUNS and not _imagenet["root"] and _imagenet["allow_standin"]:
        inputs["standin"] = _imagenet["data_root"]
    return inputs


def refuse_without(source):
    """Shell that stops a job reading `source` (cifar10, imagenet) with the message naming the
    config key, where that data is missing; empty where it is there."""
    problem = DATA_PROBLEMS[source]
    return f"echo {shlex.quote(problem)} >&2; exit 1; " if problem else ""


def data_check(wildcards):
    return refuse_without("imagenet" if wildcards.run in IMAGENET_RUNS else "cifar10")


def write_yaml_atomically(path, data):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        yaml.safe_dump(data, handle, sort_keys=False, allow_unicode=True)
    os.replace(tmp, path)


def train_settings(wildcards):
    """The run's typed settings from the run table, as one JSON argument."""
    entry = next(run for run in RUN_TABLE["runs"] if run["id"] == wildcards.run)
    return json.dumps(entry["settings"], sort_keys=False)


def requeue_settings(wildcards, resources):
    """Under the SLURM profile: stop `requeue_margin_minutes` before the job's time limit,
    write the checkpoint and requeue the job, which then continues (ir2net train
    --stop-after ... --requeue-on-stop)."""
    runtime = getattr(resources, "runtime", None)
    if not config["requeue_on_stop"] or not runtime:
        return ""
    budget = max(int(runtime) - config["requeue_margin_minutes"], 1)
    return f"--stop-after {budget}m --requeue-on-stop"


def all_metrics():
    return [f"{run_folder(run)}/metrics.json" for run in RUNS]


def table1_weights():
    rows = {"FP", "Baseline", "IRes+CIRec"}
    return sorted({f"{run_folder(spec.run_id)}/model.pt" for spec in RUNS.values()
                   for role in spec.roles if role["table"] == "table1" and role["row"] in rows})


LONGRUNS = config["longruns_dir"]
WITH_LONGRUNS = bool(LONGRUNS) and Path(LONGRUNS, "plan.yaml").is_file()
ACCURACY_TABLES = list(accuracy_table_names(WITH_LONGRUNS))
# Table VI's measured latency: an `ir2net latency` record (config latency_json; the committed
# one by default, or the `latency` rule's own measurement when pointed at it)
LATENCY_JSON = config["latency_json"]
LATENCY_MEASURED = f"{RESULTS}/bench/latency.json"  # the `latency` rule's output
if LATENCY_JSON and LATENCY_JSON != LATENCY_MEASURED and not Path(LATENCY_JSON).is_file():
    print(f"config latency_json: {LATENCY_JSON} does not exist; Table VI is built without "
          "measured latency (`snakemake latency` measures this machine)", file=sys.stderr)
    LATENCY_JSON = None
LATENCY_INPUT = [LATENCY_JSON] if LATENCY_JSON else []
LATENCY_OPTION = f"--latency {LATENCY_JSON}" if LATENCY_JSON else ""
COMPLEXITY_TABLES = list(complexity_table_names(bool(LATENCY_JSON)))


def table_files(names):
    return [f"{RESULTS}/tables/{name}.{ext}" for name in names for ext in ("csv", "md", "tex")]


TABLES = table_files(ACCURACY_TABLES) + table_files(COMPLEXITY_TABLES)
FIGURES = [f"{RESULTS}/figures/{name}.{ext}" for name in
           ("fig7", "ires_coverage", "training_curves", "paper_comparison")
           + (("latency_vs_ops",) if LATENCY_JSON else ()) for ext in ("png", "pdf")]
LONGRUNS_OPTION = f"--longruns {LONGRUNS}" if WITH_LONGRUNS else ""


def longrun_progress():
    """The committed progress of the published-schedule runs (an input of the tables)."""
    if not WITH_LONGRUNS:
        return []
    # progress.json and ir2net.longruns.RUN_RECORDS (which imports torch; parsing must not)
    return sorted(str(path) for name in ("progress.json", "ires_coverage.json",
                                         "openvino_evaluation.json", "test_predictions.json",
                                         "bn_momentum.json")
                  for path in Path(LONGRUNS).glob(f"*/{name}")) + [f"{LONGRUNS}/plan.yaml"]
