"""The smoke DAG through snakemake-executor-plugin-slurm on a real single-node SLURM, with
training jobs asking for a GPU; one training job is cancelled mid-run (Snakemake's retry
resumes it from its checkpoint) and another is requeued by SLURM as a preemption would (the
requeued job resumes); the DAG completes.  Runs where SLURM is up (``ci/slurm-start.sh``; CI does
this) and IR2NET_SLURM_TEST=1."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)

pytestmark = pytest.mark.skipif(
    os.environ.get("IR2NET_SLURM_TEST") != "1" or shutil.which("sbatch") is None,
    reason="needs a running SLURM (ci/slurm-start.sh) and IR2NET_SLURM_TEST=1")

LONG_RUN = "cifar10-resnet20_irnet-bin-cirec-lam0.15-s0"     # cancelled, then retried
REQUEUED_RUN = "cifar10-resnet18_cifar-bin-cirec-lam0.15-s0"  # requeued by SLURM


def slurm_jobs() -> list[tuple[str, str, str]]:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%k"], capture_output=True, text=True)
    return [tuple(line.split("|", 2)) for line in out.stdout.splitlines() if line.strip()]


def slurm_test_copy(tmp_path) -> Path:
    """A copy of the repository with the SLURM profile sized for this one-node test cluster
    (as workflow/profiles/slurm-test)."""
    work = tmp_path / "work"
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(
        ".venv", "output", "runs", "logs", ".snakemake", "data", "__pycache__", ".git"))
    profile = work / "workflow" / "profiles" / "slurm-test"
    profile.mkdir(parents=True)
    slurm_profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    slurm_profile.update({
        "configfiles": ["config/smoke.yaml"], "jobs": 4, "retries": 1, "latency-wait": 5,
        "slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 2,
        "slurm-keep-successful-logs": True})
    slurm_profile["default-resources"].update(
        {"slurm_partition": "debug", "slurm_account": "ci", "mem_mb": 1500, "cpus_per_task": 1,
         "runtime": 30})
    slurm_profile["set-resources"]["train"].update({"cpus_per_task": 1, "mem_mb": 3000})
    slurm_profile["set-resources"]["train_imagenet"].update({"mem_mb": 3000, "runtime": 30})
    slurm_profile["set-threads"]["train"] = 1
    (profile / "config.yaml").write_text(yaml.safe_dump(slurm_profile))
    return work


def test_smoke_dag_on_slurm_survives_a_cancelled_training_job(tmp_path):
    work = slurm_test_copy(tmp_path)
    # one run long enough to be cancelled in the middle (a checkpoint every step)
    smoke = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    for group in ("cifar10_resnet20_irnet", "cifar10_resnet18"):  # long enough to interrupt
        smoke["schedules"][group] = {
            "train.epochs": 6, "train.batch_size": 8, "train.checkpoint_every_steps": 1}
    steps = 6 * (smoke["cifar10"]["synthetic"]["train_size"] // 8)
    smoke["cluster"] = {"imagenet_gpus": 2, "cpus_per_gpu": 1}  # 2-task data-parallel jobs
    (work / "config" / "smoke.yaml").write_text(yaml.safe_dump(smoke))

    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    started = time.time()
    log_path = tmp_path / "snakemake.log"  # a file, not a pipe: a full pipe would block it
    log_file = log_path.open("w")
    dag = subprocess.Popen([sys.executable, "-m", "snakemake", "--profile",
                            "workflow/profiles/slurm-test"], cwd=work, env=env,
                           stdout=log_file, stderr=subprocess.STDOUT, text=True)
    runs = work / "output/smoke/runs"
    checkpoint = runs / LONG_RUN / "checkpoint" / "last.pt"
    requeue_checkpoint = runs / REQUEUED_RUN / "checkpoint" / "last.pt"
    gpu_requests, cancelled, requeued = set(), None, None
    while dag.poll() is None and time.time() - started < 1500:
        for job_id, state, comment in slurm_jobs():
            if "rule_train" in comment:
                detail = subprocess.run(["scontrol", "show", "job", job_id],
                                        capture_output=True, text=True).stdout
                if "gpu" in detail:
                    gpu_requests.add(job_id)
            if cancelled is None and LONG_RUN in comment and state == "RUNNING" \
                    and checkpoint.exists():
                subprocess.run(["scancel", job_id], check=True)
                cancelled = job_id
            if requeued is None and REQUEUED_RUN in comment and state == "RUNNING" \
                    and requeue_checkpoint.exists():
                subprocess.run(["scontrol", "requeue", job_id], check=True)
                requeued = job_id
        time.sleep(0.5)
    if dag.poll() is None:
        dag.kill()
    dag.wait(timeout=60)
    log_file.close()
    output = log_path.read_text()
    print(f"SLURM smoke DAG: {time.time() - started:.0f} s, cancelled job {cancelled}, "
          f"requeued job {requeued}")
    assert dag.returncode == 0, output[-5000:]
    assert cancelled is not None, "the long training job was never seen running"
    assert gpu_requests, "no training job asked SLURM for a GPU"
    assert requeued is not None, "the job to requeue was never seen running"
    for run in (LONG_RUN, REQUEUED_RUN):
        metrics = json.loads((runs / run / "metrics.json").read_text())
        assert metrics["resumed_from_epoch"] is not None, run  # continued its checkpoint
        assert metrics["steps"] == steps, run
    assert (work / "output/smoke/report/report.html").is_file()
    # the ImageNet jobs ran as 2 srun tasks, data-parallel over gloo (stand-in GPUs)
    for run in ("imagenet-a-stage1-s0", "imagenet-a-stage2-s0", "imagenet-teacher-s0"):
        metrics = json.loads((runs / run / "metrics.json").read_text())
        assert metrics["world_size"] == 2, run
        assert {s["world_size"] for s in metrics["segments"]} == {2}, run
    cifar = json.loads((runs / LONG_RUN / "metrics.json").read_text())
    assert cifar["world_size"] == 1


def test_a_training_job_at_its_time_budget_requeues_itself_and_finishes(tmp_path):
    """What the SLURM profile's train jobs do before their time limit: `--stop-after` ends
    the segment cleanly and `--requeue-on-stop` puts the same job back in the queue; every
    start continues the checkpoint until the run is complete.  A budget shorter than any
    step makes each start train exactly one step (the budget is checked after each step), so
    the test does not depend on how fast the machine is.  Two steps, one requeue: SLURM holds
    a requeued job back for about two minutes."""
    folder = tmp_path / "run"
    command = (f"{BIN}/ir2net train --config cifar10_resnet20_bireal --out {folder} --threads 1 "
               "--stop-after 0.01s --requeue-on-stop --set data.dataset=synthetic "
               "--set data.synthetic.train_size=32 --set data.synthetic.test_size=32 "
               "--set train.batch_size=16 --set train.epochs=1 --set eval.batch_size=32")
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--requeue", "-c", "1", "--mem=2000", "-o",
         str(tmp_path / "slurm-%j.out"), "--open-mode=append", "--wrap", command],
        capture_output=True, text=True, check=True)
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.time() + 900
    while time.time() < deadline and any(j == job for j, _, _ in slurm_jobs()):
        time.sleep(1)
    log = "\n".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    assert (folder / "metrics.json").is_file(), log[-4000:]
    metrics = json.loads((folder / "metrics.json").read_text())
    ended_by = [s["ended_by"] or "" for s in metrics["segments"]]
    # 2 steps: the first start is stopped by the budget after one, the second completes
    assert len(ended_by) == 2 and "time budget" in ended_by[0] and ended_by[1] == "complete", \
        ended_by
    assert [s["steps"] for s in metrics["segments"]] == [1, 1]
    assert log.count(f"SLURM job {job} requeued") == 1, log[-4000:]
    assert metrics["steps"] == 32 // 16


def test_small_runs_share_one_gpu_through_slurm_shards(tmp_path):
    """`cluster.cifar_gres: shard:1`: two CIFAR-10 training jobs of the smoke DAG each ask
    SLURM for one GPU shard, run at the same time on the same (stand-in) GPU, and finish."""
    work = slurm_test_copy(tmp_path)
    smoke = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    smoke["cluster"] = {"cifar_gres": "shard:1"}
    smoke["schedules"]["cifar10_resnet20_bireal"] = {"train.epochs": 4, "train.batch_size": 8}
    (work / "config" / "smoke.yaml").write_text(yaml.safe_dump(smoke))
    runs = ["cifar10-resnet20_bireal-bin-norec-nores-s0", "cifar10-resnet20_bireal-fp-norec-nores-s0"]
    targets = [f"output/smoke/runs/{run}/metrics.json" for run in runs]
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    log_path = tmp_path / "snakemake.log"
    with log_path.open("w") as log_file:
        dag = subprocess.Popen([sys.executable, "-m", "snakemake", "--profile",
                                "workflow/profiles/slurm-test", *targets], cwd=work, env=env,
                               stdout=log_file, stderr=subprocess.STDOUT, text=True)
        together, started = set(), time.time()
        while dag.poll() is None and time.time() - started < 900:
            running = {}
            for job_id, state, comment in slurm_jobs():
                if "rule_train" in comment and state == "RUNNING":
                    detail = subprocess.run(["scontrol", "show", "job", "-d", job_id],
                                            capture_output=True, text=True).stdout
                    running[job_id] = detail
            if len(running) == 2:
                details = list(running.values())
                assert all("gres/shard=1" in d or "shard:1" in d for d in details), details
                assert not any("gres/gpu" in d.split("TRES=")[1].split()[0] for d in details)
                together.add(tuple(sorted(running)))
            time.sleep(0.5)
        if dag.poll() is None:
            dag.kill()
        dag.wait(timeout=60)
    output = log_path.read_text()
    assert dag.returncode == 0, output[-5000:]
    assert together, "the two shard jobs never ran at the same time"
    for run in runs:
        metrics = json.loads((work / "output/smoke/runs" / run / "metrics.json").read_text())
        assert metrics["status"] == "complete", run
