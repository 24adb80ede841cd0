"""Training-step throughput of any recipe's step, and of several runs sharing one device.

``ir2net bench`` (without ``--recipe``) times the ResNet-20 IR²Net step against the authors'
formulation.  This module times the step that ``ir2net train`` builds for *any* config
(``ir2net bench --recipe``), or for every distinct step of a workflow profile
(``ir2net bench --profile``), so that ``ir2net plan`` prices each job from a measurement of
its own step instead of a scaled estimate (Issue 11, item 5).  Each record names the step it
timed by :func:`ir2net.plan.step_signature`.

``ir2net bench-sharing`` measures whether k runs on one device train more images per second
in total than one (Issue 11, item 3): k worker processes each build the step, warm up
(CUDA-graph capture, compilation), wait at a common barrier, then train for the same
wall-clock window; the aggregate is the sum of their rates.  On a GPU with CUDA MPS, the
same again under an MPS daemon started for the measurement.

Inputs are random tensors of the recipe's image size on the device: a step's speed does not
depend on the pixel values (IRes always runs its second pass), and leaving the input pipeline
out measures the step alone (``ir2net bench-pipeline`` measures the pipeline).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch

from . import provenance
from .bench import _sync, _throughput
from .config import ConfigError, load_config
from .data import num_classes
from .plan import load_profile, profile_jobs, step_signature
from .steps import check_fast_step, describe_step
from .training import (build_model, build_optimizer, build_restriction, build_teacher,
                       build_train_step, resolve_device)

__all__ = ["measure_step", "measure_profile_steps", "measure_sharing"]

def _step_and_batch(config: dict, device: torch.device, batch_size: int):
    """The training step ``ir2net train`` runs for ``config``, and one batch for it.  The
    teacher has random weights: its speed does not depend on them."""
    torch.manual_seed(0)
    train_cfg = config["train"]
    classes = num_classes(config["data"], count_folder=False)
    model = build_model(config, classes).to(device)
    if train_cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    teacher = build_teacher({**config, "train": {**train_cfg, "teacher_weights": None}},
                            classes, device)
    optimizer = build_optimizer(model, train_cfg)
    step = build_train_step(config, model, optimizer, build_restriction(config), teacher, device)
    # Both IRes passes differentiated, whatever the mask keeps: a price must not depend on
    # what random weights make of random images (the shortcut only ever makes a step cheaper).
    step.forward.skip_repeated_pass = False
    size = config["data"]["image_size"]
    images = torch.randn(batch_size, 3, size, size, device=device)
    if train_cfg["channels_last"]:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, classes, (batch_size,), device=device)
    return step, images, labels


def _machine(device: torch.device) -> dict:
    machine = provenance.hardware(device)
    machine.update(python=platform.python_version(), torch=torch.__version__)
    return machine


def measure_step(config: dict, *, recipe: str, device: str = "cpu",
                 batch_size: Optional[int] = None, warmup: int = 3, repeats: int = 5,
                 steps: int = 5) -> dict:
    """Images/s of the training step ``config`` trains with, on ``device``, as a benchmark
    record ``ir2net plan`` reads (``batch_size``: default the config's, which is the global
    batch: a data-parallel job's per-GPU batch is smaller)."""
    device = resolve_device(device)
    config = copy.deepcopy(config)
    batch = batch_size or config["train"]["batch_size"]
    step, images, labels = _step_and_batch(config, device, batch)

    def once():
        step(images, labels)
        return batch

    # a fast step is timed only with its verdict: a compiled step that skipped the binary
    # weights' gradient once measured fastest (results/longruns/README.md)
    checked = ("eager step" if describe_step(step) == "eager" else
               check_fast_step(step, step.optimizer, (images, labels)) or "agrees with the eager step")
    timed = _throughput({"step": once}, device, warmup, repeats, steps)["step"]
    train_cfg = config["train"]
    return {
        "train_step": {"ours_img_s": timed["median_img_s"],
                       "repeats": {"ours": timed["repeats_img_s"]}, "batch_size": batch,
                       "recipe": recipe, "model": config["model"]["name"],
                       "ours_step": type(step).__name__, "ours_step_form": describe_step(step),
                       "fast_step_check": checked,
                       "bf16_binary_convs": config["model"]["binary_dtype"] == "bfloat16",
                       "mixed_precision": train_cfg["mixed_precision"]},
        "step": step_signature(config),
        "settings": {"warmup_steps": warmup, "repeats": repeats, "steps_per_repeat": steps,
                     "channels_last": train_cfg["channels_last"],
                     "compile": train_cfg["compile"] is True,
                     "cuda_graphs": train_cfg["cuda_graphs"],
                     "mixed_precision": train_cfg["mixed_precision"],
                     "inputs": "random tensors on the device (the step alone)"},
        "machine": _machine(device),
    }


def _profile_steps(profile_path: str | Path) -> list[tuple[str, dict, list[str]]]:
    """Every distinct training step of a workflow profile: (recipe, settings, the run ids
    that train with it), in the profile's order."""
    steps: dict[str, tuple[str, dict, list[str]]] = {}
    for entry, settings, config in profile_jobs(load_profile(profile_path)):
        key = json.dumps(step_signature(config), sort_keys=True)
        steps.setdefault(key, (entry["recipe"], settings, []))[2].append(entry["id"])
    return list(steps.values())


def measure_profile_steps(profile_path: str | Path, out_dir: str | Path, *,
                          device: str = "cpu", per_gpu_batch: bool = True,
                          overrides: Iterable[str] = (), **timing) -> list[Path]:
    """One benchmark record per distinct step of a profile, written to ``out_dir`` (one
    JSON file each, atomically).  ``per_gpu_batch``: an ImageNet job that trains
    data-parallel over the cluster's GPUs is timed at its batch per GPU."""
    from .artifacts import write_json

    profile = load_profile(profile_path)
    gpus = profile["cluster"]["imagenet_gpus"]
    written = []
    for recipe, settings, runs in _profile_steps(profile_path):
        config = load_config(recipe, ["data.root=x", *overrides], settings)
        batch = config["train"]["batch_size"]
        if per_gpu_batch and recipe.startswith("imagenet"):
            batch //= gpus
        record = measure_step(config, recipe=recipe, device=device, batch_size=batch, **timing)
        record["train_step"]["runs"] = runs
        record["train_step"]["settings"] = settings
        signature = json.dumps(record["step"], sort_keys=True).encode()
        path = Path(out_dir) / (f"{recipe}-{config['model']['name']}-"
                                f"{hashlib.sha256(signature).hexdigest()[:8]}.json")
        write_json(path, record)
        written.append(path)
        print(f"{path}: {record['train_step']['ours_img_s']:,.0f} img/s "
              f"(batch {batch}, {len(runs)} job(s))", flush=True)
    return written


# ----------------------------------------------------------------------------- sharing
def _worker(argv: list[str]) -> int:
    """One of k runs sharing the device: build and warm up the step, say READY, wait for GO
    on stdin, train for ``--seconds`` and print the images and the time."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.recipe, ["data.root=x", *args.set])
    device = resolve_device(args.device)
    batch = args.batch_size or config["train"]["batch_size"]
    step, images, labels = _step_and_batch(config, device, batch)
    for _ in range(5):
        step(images, labels)
    _sync(device)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    images_done, tick = 0, time.perf_counter()
    while time.perf_counter() - tick < args.seconds:
        step(images, labels)
        images_done += batch
    _sync(device)
    print(json.dumps({"images": images_done, "seconds": time.perf_counter() - tick}),
          flush=True)
    return 0


def _start_mps(env: dict) -> Optional[str]:
    """Start a CUDA MPS daemon private to this measurement; its pipe folder, or None."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        return None
    folder = tempfile.mkdtemp(prefix="ir2net-mps-")
    env.update(CUDA_MPS_PIPE_DIRECTORY=folder, CUDA_MPS_LOG_DIRECTORY=folder)
    started = subprocess.run([control, "-d"], env=env, capture_output=True, text=True)
    return folder if started.returncode == 0 else None


def _stop_mps(env: dict) -> None:
    subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", env=env, text=True,
                   capture_output=True)


def _concurrent(k: int, argv: list[str], env: dict, timeout: float) -> list[dict]:
    command = [sys.executable, "-m", "ir2net.throughput", *argv]
    # stderr to files: a worker's compiler warnings must not fill a pipe nobody reads yet
    logs = [tempfile.TemporaryFile(mode="w+") for _ in range(k)]
    workers = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log, text=True, env=env) for log in logs]

    def failure(index: int, when: str) -> ConfigError:
        logs[index].seek(0)
        return ConfigError(f"a sharing worker failed {when}:\n{logs[index].read()[-2000:]}")

    try:
        for index, worker in enumerate(workers):  # every run warmed up before any is timed
            if worker.stdout.readline().strip() != "READY":
                worker.wait(timeout=timeout)
                raise failure(index, "before it was timed")
        for worker in workers:
            worker.stdin.write("GO\n")
            worker.stdin.flush()
        results = []
        for index, worker in enumerate(workers):
            out, _ = worker.communicate(timeout=timeout)
            if worker.returncode != 0:
                raise failure(index, "while it was timed")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        for log in logs:
            log.close()


def measure_sharing(recipe: str = "cifar10_resnet20_bireal", runs: Iterable[int] = (1, 2, 4, 8),
                    *, device: str = "cpu", seconds: float = 20.0,
                    batch_size: Optional[int] = None, overrides: Iterable[str] = (),
                    threads: Optional[int] = None, mps: bool = True,
                    on_row: Optional[Callable[[dict], None]] = None) -> dict:
    """Aggregate images/s of k concurrent runs of a recipe's step on one device, for each k
    (and under CUDA MPS where the machine has it).  ``on_row`` receives the record as it
    stands after every measured row (``complete`` false until the last), so that a
    measurement stopped early keeps what it measured."""
    overrides = list(overrides)
    config = load_config(recipe, ["data.root=x", *overrides])
    argv = ["--recipe", recipe, "--device", device, "--seconds", str(seconds)]
    for override in overrides:
        argv += ["--set", override]
    if batch_size:
        argv += ["--batch-size", str(batch_size)]
    if threads:
        argv += ["--threads", str(threads)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                      env.get("PYTHONPATH")]))
    modes = [("processes", env)]
    on_cuda = resolve_device(device).type == "cuda"
    mps_env = dict(env)
    if mps and on_cuda and _start_mps(mps_env):
        modes.append(("processes + MPS", mps_env))
    rows = []

    def record(complete: bool) -> dict:
        single = {row["mode"]: row["aggregate_img_s"] for row in rows if row["runs"] == 1}
        for row in rows:
            row["vs_one_run"] = row["aggregate_img_s"] / single[row["mode"]] \
                if row["mode"] in single else None
        return {"sharing": {"recipe": recipe, "overrides": overrides,
                            "step": step_signature(config),
                            "batch_size": batch_size or config["train"]["batch_size"],
                            "seconds_per_run": seconds, "threads_per_run": threads,
                            "mps_available": len(modes) > 1, "rows": rows,
                            "complete": complete},
                "machine": _machine(resolve_device(device))}

    try:
        for mode, mode_env in modes:
            for k in runs:
                results = _concurrent(k, argv, mode_env, timeout=seconds * 4 + 600)
                rates = [r["images"] / r["seconds"] for r in results]
                rows.append({"mode": mode, "runs": k, "aggregate_img_s": sum(rates),
                             "per_run_img_s": rates})
                # stderr: with --json, stdout carries the record alone
                print(f"{mode}, {k} run(s): {sum(rates):,.0f} img/s in all", file=sys.stderr,
                      flush=True)
                if on_row is not None:
                    on_row(record(complete=False))
    finally:
        if len(modes) > 1:
            _stop_mps(mps_env)
    return record(complete=True)


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
