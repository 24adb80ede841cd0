"""The Snakemake workflow: job counts per profile, config errors, the smoke DAG end to end,
and the committed tables regenerated from the committed run records."""
import filecmp
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ir2net.experiments import build_runs

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)


def snakemake(*args, cwd=ROOT, timeout=600):
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict:
    block = output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


def expected_train_jobs(config_path, seeds, lambdas, backbones, teacher=True):
    calibration = 1  # the data calibration's real-valued ResNet-20 (ir2net.calibration)
    table1 = 6
    figure7 = 2 * len(lambdas) - (0 in lambdas) * 2 - (0.15 in lambdas)  # shared runs once
    table3_new = {"vgg_small": 2, "resnet20_bireal": 0, "resnet20_irnet": 1, "resnet18_cifar": 2}
    table3 = sum(table3_new[b] for b in backbones)
    imagenet = 4 * 2 + 1 + (1 if teacher else 0)
    return len(seeds) * (calibration + table1 + figure7 + table3 + imagenet)


@pytest.mark.parametrize("profile", ["config", "smoke"])
def test_dry_run_has_every_run_once(profile, tmp_path):
    path = ROOT / "config" / f"{profile}.yaml"
    config = yaml.safe_load(path.read_text())
    extra = []
    root = config["cifar10"].get("root")
    if config["cifar10"].get("dataset", "cifar10") == "cifar10" and not (ROOT / root).exists():
        extra = [overrides(tmp_path, {"cifar10": {"root": str(tmp_path)}})]
    result = snakemake("-n", "--forceall", "--cores", "2", "--configfile", str(path), *extra)
    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    default = {key: schema["properties"][key]["default"]
               for key in ("seeds", "lambda_grid", "table3_backbones")}
    config = {**default, **config}
    assert counts["train"] + counts["train_imagenet"] == expected_train_jobs(
        path, config["seeds"], config["lambda_grid"], config["table3_backbones"])
    assert counts["train_imagenet"] == len(config["seeds"]) * (4 * 2 + 2)
    for rule in ("accuracy_tables", "complexity_tables", "figures", "attention_maps", "report",
                 "imagenet_standin", "all"):
        assert counts[rule] == 1


def overrides(tmp_path, values: dict) -> str:
    """A config file that later --configfile arguments merge over the profile."""
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_paper_profile_with_imagenet(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    result = snakemake("-n", "--forceall", "--cores", "2", "--configfile", "config/paper.yaml",
                       overrides(tmp_path, {"imagenet": {"root": str(tmp_path)}}))
    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    # three seeds, the full lambda grid, no teacher to train, no stand-in
    assert counts["train"] + counts["train_imagenet"] == expected_train_jobs(None, [0, 1, 2], [0, .15, .3, .45, .6, .75, .9, 1],
                                                  ["vgg_small", "resnet20_bireal",
                                                   "resnet20_irnet", "resnet18_cifar"],
                                                  teacher=False)
    assert "imagenet_standin" not in counts


def copy_without_data(folder: Path) -> Path:
    """The repository's files (the working tree's, no long-run checkpoints) in `folder`, with
    no dataset anywhere: no ../shared beside it."""
    work = folder / "work"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in files:
        if name and not name.startswith("results/longruns/") and (ROOT / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes((ROOT / name).read_bytes())
    assert not (folder / "shared").exists()
    return work


def test_targets_without_data_run_and_training_refuses(tmp_path):
    """Data is checked by the jobs that read it: with no dataset anywhere the complexity tables
    build and every profile dry-runs, and a training job stops with the config key's message."""
    work = copy_without_data(tmp_path)
    result = snakemake("--cores", "1", "output/default/results/tables/table6.csv", cwd=work)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "IR²Net-A" in (work / "output/default/results/tables/table6.md").read_text()
    latency = snakemake("-n", "-p", "--cores", "2", "latency", cwd=work)  # no data, no weights
    assert latency.returncode == 0 and "ir2net.cli latency --out" in latency.stdout + \
        latency.stderr, latency.stderr + latency.stdout
    targets = {}
    for profile in ("paper", "config"):
        dry = snakemake("-n", "--configfile", f"config/{profile}.yaml", "--cores", "2", cwd=work)
        assert dry.returncode == 0, dry.stderr + dry.stdout
        targets[profile] = re.findall(r"(runs/\w+/\S+?/metrics\.json)", dry.stdout)
    # the paper profile's ImageNet, and the default profile's CIFAR-10 copy (the paper profile
    # downloads CIFAR-10, so its jobs fail in the package with the download's message)
    imagenet = next(path for path in targets["paper"] if "/imagenet" in path)
    cifar = next(path for path in targets["config"] if "/cifar10" in path)
    for profile, target, message in (
            ("paper", imagenet, "config key 'imagenet.root': this profile needs ImageNet"),
            ("config", cifar, "config key 'cifar10.root': ../shared/data/cifar10-jpeg.tar.gz "
                              "does not exist")):
        failed = snakemake(target, "--cores", "1", "--configfile", f"config/{profile}.yaml",
                           cwd=work)
        assert failed.returncode != 0
        assert message in failed.stdout + failed.stderr
        assert not (work / target).exists()


@pytest.mark.parametrize("override,message", [
    ({"lambda_grid": [0, 1.5]}, "1.5 is greater than the maximum of 1"),
    ({"table3_backbones": ["resnet21"]}, "config key 'table3_backbones[0]': unknown backbone"),
    ({"schedules": {"cifar10_resnet99": {}}}, "config key 'schedules.cifar10_resnet99'"),
])
def test_bad_configs_fail_before_any_job(override, message, tmp_path):
    result = snakemake("-n", "--cores", "2", "--configfile", "config/smoke.yaml",
                       overrides(tmp_path, override))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "Job stats" not in result.stdout


def test_lambda_015_ires_run_is_table1s():
    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    config.setdefault("ires_variant", "authors")
    config["table3_backbones"] = ["vgg_small"]
    config["imagenet"] = {"data_root": "x", "image_size": 32, "resize_size": 36,
                          "teacher_weights": None}
    config["cifar10"].update(download=False, train_subset=None, test_subset=None)
    runs = build_runs(config)
    roles = {spec.run_id: spec.roles for spec in runs.values()}
    shared = [r for r, spec_roles in roles.items()
              if {"table": "table1", "row": "IRes"} in spec_roles]
    assert len(shared) == 1
    assert {"table": "figure7", "series": "IRes", "lambda": 0.15} in roles[shared[0]]
    baseline = [r for r, spec_roles in roles.items()
                if {"table": "table1", "row": "Baseline"} in spec_roles][0]
    assert {"table": "figure7", "series": "IRes", "lambda": 0} in roles[baseline]


def git_status(folder) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=folder,
                          capture_output=True, text=True, check=True).stdout


def test_smoke_dag_end_to_end(tmp_path):
    """The whole DAG on the smoke profile: every table, Figure 7 and the report."""
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
    for path in ("ir2net", "workflow", "config", "docs", "Snakefile"):  # the working tree
        src = ROOT / path
        if src.is_dir():
            subprocess.run(["rm", "-rf", str(work / path)], check=True)
            subprocess.run(["cp", "-r", str(src), str(work / path)], check=True)
        else:
            subprocess.run(["cp", str(src), str(work / path)], check=True)
    status_before = git_status(work)
    result = snakemake("--cores", "2", "--configfile", "config/smoke.yaml", cwd=work,
                       timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    out = work / "output" / "smoke"
    for i in range(1, 7):
        for ext in ("csv", "md", "tex"):
            assert (out / "results" / "tables" / f"table{i}.{ext}").stat().st_size > 0
    for name in ("fig7", "ires_coverage", "training_curves", "paper_comparison"):
        for ext in ("png", "pdf"):
            assert (out / "results" / "figures" / f"{name}.{ext}").stat().st_size > 0
    assert (out / "results" / "figures" / "attention.png").stat().st_size > 0
    report = (out / "report" / "report.md").read_text()
    assert "short schedules" in report and "SYNTHETIC" in report
    assert "When does IRes act?" in report and "Training curves of Table I" in report
    assert (out / "report" / "report.html").read_text().count("data:image/png;base64") == 5
    again = snakemake("-n", "--cores", "2", "--configfile", "config/smoke.yaml", cwd=work)
    assert "Nothing to be done" in again.stdout + again.stderr  # nothing is trained twice
    html = work / "output" / "smoke" / "snakemake-report.html"
    built = snakemake("--report", str(html), "--configfile", "config/smoke.yaml", cwd=work)
    assert built.returncode == 0, built.stderr[-3000:]
    text = html.read_text()
    assert html.stat().st_size > 10_000 and "table1.md" in text and "paper_comparison.png" in text
    benchmarks = list((work / "logs" / "smoke" / "train").glob("*.benchmark.tsv"))
    assert len(benchmarks) == len(list((out / "runs").glob("*/metrics.json")))
    log = (work / "logs" / "smoke" / "train" / "cifar10-resnet20_bireal-bin-cirec-lam0.15-s0.log")
    assert "epoch 1/1: train loss" in log.read_text()  # one line per epoch in the job's log
    assert git_status(work) == status_before  # the DAG writes nothing that git tracks


RECORDS = ROOT / "results" / "records" / "default"


@pytest.mark.skipif(not RECORDS.is_dir(), reason="no committed run records")
def test_committed_tables_regenerate_from_committed_records(tmp_path):
    from ir2net.longruns import read_progress
    from ir2net.reporting import build_tables, load_records, write_tables
    from ir2net.reporting.latency_tables import read_latency
    from ir2net.table_names import TABLE_NAMES, accuracy_table_names, complexity_table_names

    config, records = load_records(RECORDS)
    write_tables(build_tables(config, records, read_progress(ROOT / "results/longruns"),
                              read_latency(ROOT / "results/bench/latency.json")), tmp_path)
    committed = ROOT / "results" / "tables"
    for path in sorted(tmp_path.iterdir()):
        assert filecmp.cmp(path, committed / path.name, shallow=False), \
            f"{committed / path.name} differs from what the committed records give"
    # the tables the workflow names as the render's outputs are exactly the written ones
    named = accuracy_table_names(with_longruns=True) + complexity_table_names(with_latency=True)
    assert sorted(path.stem for path in tmp_path.glob("*.csv")) == sorted(named)
    assert sorted(TABLE_NAMES) == sorted(named)


@pytest.mark.skipif(not RECORDS.is_dir(), reason="no committed run records")
def test_renders_are_byte_identical_and_the_committed_report_is_one(tmp_path):
    """The committed report is a function of the committed records: rendering it twice gives
    the same bytes, figures included, and the same report.md as the committed one."""
    from ir2net.cli import main

    renders = []
    for name in ("a", "b"):
        out = tmp_path / name
        (out / "figures").mkdir(parents=True)
        (out / "figures" / "attention.png").write_bytes(
            (ROOT / "results" / "figures" / "attention.png").read_bytes())  # needs weights
        assert main(["render", "--records", str(RECORDS), "--tables", str(out / "tables"),
                     "--figures", str(out / "figures"), "--report", str(out / "report"),
                     "--longruns", str(ROOT / "results/longruns"),
                     "--divergences", str(ROOT / "docs/divergences.md"),
                     "--benchmark", str(ROOT / "results/bench/cpu_bf16.json"),
                     "--plan-profile", str(ROOT / "config/paper.yaml")]) == 0
        renders.append(out)
    files = sorted(p.relative_to(renders[0]) for p in renders[0].rglob("*") if p.is_file())
    assert len(files) > 20
    for relative in files:
        assert filecmp.cmp(renders[0] / relative, renders[1] / relative, shallow=False), relative
    committed = (ROOT / "report" / "report.md").read_text()
    assert (renders[0] / "report" / "report.md").read_text() == committed
    # the paper profile's cost plan, priced from the committed benchmark records
    plan = (renders[0] / "tables" / "plan.md").read_text()
    assert plan == (ROOT / "results" / "tables" / "plan.md").read_text()
    assert "## What the published schedules cost" in committed and plan.strip() in committed


def test_schedules_override_the_dataset_section_but_not_the_run_itself(tmp_path):
    """Later settings win: the default profile's ResNet-18 schedule shrinks the data
    subsets set in `cifar10:`, train_overrides reach every job, and a run stays itself;
    each job gets its typed settings from the run table as one JSON argument."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    files = ["config/config.yaml"]
    if not (ROOT / config["cifar10"]["root"]).exists():  # a checkout without ../shared
        files.append(overrides(tmp_path, {"cifar10": {"root": str(tmp_path)}}))
    result = snakemake("-n", "-p", "--forceall", "--cores", "2", "--configfile", *files)
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if "ir2net.cli train" in line]
    assert commands
    resnet18 = next(c for c in commands if "cifar10-resnet18_cifar-bin" in c)
    settings = [json.loads(shlex.split(c.split("--settings ", 1)[1])[0]) for c in commands]
    last = json.loads(shlex.split(resnet18.split("--settings ", 1)[1])[0])
    assert last["data.train_subset"] == 2000 and last["data.test_subset"] == 2000
    assert last["model.name"] == "resnet18_cifar" and last["model.precision"] == "binary"
    assert list(last)[-1] == "seed" and last["model.recovery.enabled"] is True  # typed
    assert all(s["model.binary_dtype"] == "bfloat16" for s in settings)


def test_export_records_needs_finished_runs(tmp_path, capsys):
    from ir2net.cli import main
    (tmp_path / "runs" / "half").mkdir(parents=True)
    (tmp_path / "runs" / "half" / "metrics.json").write_text('{"status": "running"}')
    assert main(["export-records", "--runs", str(tmp_path / "runs"),
                 "--to", str(tmp_path / "out")]) == 2
    assert "holds no finished run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_dag_parses_where_torch_cannot_be_imported(tmp_path):
    """Parsing the workflow imports nothing that imports torch (and no installed package:
    the run table comes from the source beside the workflow)."""
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONPATH": str(blocker.parent)}
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    files = ["config/config.yaml"]
    if not (ROOT / config["cifar10"]["root"]).exists():
        files.append(overrides(tmp_path, {"cifar10": {"root": str(tmp_path)}}))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores",
                             "2", "--configfile", *files], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    assert counts["train"] + counts["train_imagenet"] == 35  # 34 of the paper, the calibration


def test_deployed_as_a_module_the_smoke_dag_runs_in_another_folder(tmp_path):
    """The catalog's standardized usage: a folder with its own config/ and a Snakefile that
    uses every rule of this workflow as a module; nothing is installed from it."""
    deploy = tmp_path / "deploy"
    (deploy / "config").mkdir(parents=True)
    (deploy / "workflow").mkdir()
    smoke = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    (deploy / "config" / "config.yaml").write_text(yaml.safe_dump(smoke))
    (deploy / "workflow" / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n\n'
        f'module ir2net:\n    snakefile:\n        "{ROOT / "Snakefile"}"\n'
        '    config:\n        config\n\n\nuse rule * from ir2net\n')
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=deploy,
                            env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    out = deploy / "output" / "smoke"
    report = (out / "report" / "report.md").read_text()
    assert "Where the paper and the authors' code differ" in report  # found from the workflow
    assert (out / "results" / "tables" / "table1.md").is_file()
    assert (out / "runs" / "run-table.yaml").is_file()


def test_on_a_cluster_the_imagenet_jobs_ask_for_a_node_of_gpus(tmp_path):
    """The SLURM profile's dry run of the paper profile: every ImageNet training job asks
    for `cluster.imagenet_gpus` GPUs with one task each, started by srun (data-parallel);
    the CIFAR-10 jobs stay single-process with one GPU."""
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    result = snakemake("-n", "--profile", "workflow/profiles/slurm", "--configfiles",
                       "config/paper.yaml", overrides(tmp_path, {"imagenet": {"root": str(tmp_path)}}))
    assert result.returncode == 0, result.stderr + result.stdout
    jobs = result.stdout.split("rule ")[1:]
    imagenet = [job for job in jobs if job.startswith("train_imagenet:")]
    cifar = [job for job in jobs if job.startswith("train:")]
    assert len(imagenet) == 3 * 9 and cifar  # no teacher to train: torchvision's weights
    for job in imagenet:
        assert "gpu=8, tasks=8, tasks_per_gpu=1, nodes=1, mpi=srun" in job
        assert "cpus_per_task=8" in job
        assert "srun -n 8 python -m ir2net.cli train --set data.workers=7" in job
    for job in cifar:
        assert "gpu=1" in job and "srun" not in job.split("Shell command:")[1]


def test_small_runs_can_share_a_gpu(tmp_path):
    """On a cluster, `cluster.cifar_gres` makes each CIFAR-10 job ask SLURM for a GPU shard
    instead of a whole GPU (ImageNet jobs keep their node of GPUs); on one machine,
    `runs_per_gpu` with `--resources gpu_slots=N` lets N small runs share the GPU and gives
    an ImageNet job all of it."""
    result = snakemake("-n", "--forceall", "--profile", "workflow/profiles/slurm", "--configfiles",
                       "config/smoke.yaml", overrides(tmp_path, {"cluster": {"cifar_gres": "shard:1"}}))
    assert result.returncode == 0, result.stderr + result.stdout
    jobs = result.stdout.split("rule ")[1:]
    cifar = [job.split("Shell command:")[0] for job in jobs if job.startswith("train:")]
    imagenet = [job for job in jobs if job.startswith("train_imagenet:")]
    assert cifar and all("gres=shard:1" in job and "gpu=" not in job for job in cifar)
    assert imagenet and all("gpu=8, tasks=8" in job for job in imagenet)

    result = snakemake("-n", "--forceall", "--cores", "2", "--configfile", "config/smoke.yaml",
                       "--config", "runs_per_gpu=4", "--resources", "gpu_slots=4")
    assert result.returncode == 0, result.stderr + result.stdout
    jobs = result.stdout.split("rule ")[1:]
    assert all("gpu_slots=1," in job for job in jobs if job.startswith("train:"))
    assert all("gpu_slots=4," in job for job in jobs if job.startswith("train_imagenet:"))


def test_the_cost_plan_of_the_paper_profile(capsys):
    """`ir2net plan`: every job of the paper profile with its images x epochs, GPU-hours per
    table and in total.  On the H100 the ResNet-20 IR²Net jobs at the measured step (the CUDA
    graph that `ir2net train` runs there; the unchecked compiled step's record is left out),
    the rest labelled estimates; on the H200, the default, every job at its own measured
    step."""
    from ir2net.cli import main
    from ir2net.plan import plan_profile

    jobs = plan_profile(ROOT / "config" / "paper.yaml", "h100")
    assert len(jobs) == 3 * 34   # per seed: 33 runs of the paper and the data calibration
    measured = [job for job in jobs if job.measured]
    assert measured and all(job.model == "resnet20_bireal" for job in measured)
    ir2net = next(job for job in jobs if job.run == "cifar10-resnet20_bireal-bin-cirec-lam0.15-s0")
    assert ir2net.measured and ir2net.image_epochs == 50_000 * 500
    # results/bench/cuda_h100.json: the CUDA-graph step `ir2net train` runs; not the faster
    # cuda_h100_compile.json, whose compiled step was never checked (and fails on torch 2.11)
    assert 14_000 < ir2net.images_per_s < 15_000
    imagenet = [job for job in jobs if job.model == "resnet18_bireal_imagenet"]
    assert imagenet and all(job.gpus == 8 and job.train_images == 1_281_167 for job in imagenet)
    # the default device: an H200 whose records (results/bench/steps/h200) time every step
    jobs = plan_profile(ROOT / "config" / "paper.yaml")
    # every job of the paper at its own step; the calibration's step has no H200 record yet
    assert all(job.measured != (job.model == "resnet20") for job in jobs)
    ir2net = next(job for job in jobs if job.run == "cifar10-resnet20_bireal-bin-cirec-lam0.15-s0")
    assert "steps/h200/" in ir2net.source and 10_000 < ir2net.images_per_s < 13_000
    assert main(["plan", "--configfile", str(ROOT / "config/paper.yaml")]) == 0
    text = capsys.readouterr().out
    assert "3 of 102 jobs at estimated throughput" in text
    total = sum(job.gpu_hours for job in jobs)
    assert f"**{total:,.1f} GPU-hours** in all" in text
    for table in ("Table I", "Table III", "Table IV", "Figure 7", "Data calibration"):
        assert f"| {table}" in text
    assert main(["plan", "--device", "tpu-v9"]) == 2
    assert "no benchmark record for device 'tpu-v9'" in capsys.readouterr().err


def test_snakemake_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr


def test_the_complexity_tables_need_no_training_run():
    """Tables II, V and VI come from the models alone: asking for one trains nothing."""
    result = snakemake("output/smoke/results/tables/table6.csv", "-n", "--forceall", "--cores",
                       "2", "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts == {"complexity_tables": 1, "total": 1}


def test_the_tables_depend_on_every_committed_run_record():
    """The tables job lists a long run's records as inputs (so a new one re-renders); the
    workflow names them itself because ir2net.longruns imports torch, which parsing must not."""
    from ir2net.longruns import RUN_RECORDS

    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    for name in RUN_RECORDS.values():
        assert f'"{name}"' in common, name
