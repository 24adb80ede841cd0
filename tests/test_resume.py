"""Kill a training run at a random step, rerun it: the result is exactly an uninterrupted run's."""
import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

ARGS = ["--config", "cifar10_resnet20_bireal", "--no-progress", "--threads", "1",
        "--set", "data.dataset=synthetic", "--set", "data.synthetic.train_size=96",
        "--set", "data.synthetic.test_size=32", "--set", "data.synthetic.image_size=16",
        "--set", "train.batch_size=16", "--set", "train.epochs=3",
        "--set", "train.checkpoint_every_steps=2", "--set", "eval.batch_size=32"]


def train(out, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "ir2net.cli", "train", "--out", str(out),
                             *ARGS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def result(folder):
    metrics = json.loads((folder / "metrics.json").read_text())
    weights = torch.load(folder / "model.pt", weights_only=True)
    return ({k: metrics[k] for k in ("final", "best", "history", "steps")}, weights)


def test_sigkill_at_a_random_step_then_rerun_is_bit_identical(tmp_path):
    reference = train(tmp_path / "uninterrupted")
    assert reference.wait(timeout=600) == 0, reference.stdout.read().decode()

    # 9 checkpoints are written in all (6 mid-epoch, 3 at epoch ends); kill after 1 to 7
    kills = random.Random(time.time_ns()).randint(1, 7)
    victim = train(tmp_path / "killed")
    checkpoint = tmp_path / "killed" / "checkpoint" / "last.pt"
    seen, last = 0, None
    deadline = time.time() + 600
    while seen < kills and victim.poll() is None and time.time() < deadline:
        stamp = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
        if stamp is not None and stamp != last:
            seen, last = seen + 1, stamp
        time.sleep(0.005)
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert not (tmp_path / "killed" / "metrics.json").exists()
    state = torch.load(checkpoint, weights_only=True)
    print(f"killed after {seen} checkpoints, at step {state['step']} "
          f"(epoch {state['epoch']}, mid-epoch: {state['partial'] is not None})")

    rerun = train(tmp_path / "killed")
    assert rerun.wait(timeout=600) == 0, rerun.stdout.read().decode()
    (metrics_a, weights_a), (metrics_b, weights_b) = result(tmp_path / "uninterrupted"), \
        result(tmp_path / "killed")
    assert metrics_a == metrics_b
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name


def test_crash_right_after_a_mid_epoch_checkpoint_resumes_exactly(tmp_path, monkeypatch):
    from ir2net import training
    from ir2net.config import load_config

    overrides = [a for a in ARGS[ARGS.index("--set"):] if a != "--set"] + ["progress=false"]
    config = load_config("cifar10_resnet20_bireal", overrides)
    full = training.run(config, tmp_path / "full")

    original = training.artifacts.save_torch

    def save_then_die(path, obj):
        original(path, obj)
        if isinstance(obj, dict) and obj.get("partial") is not None and obj["epoch"] == 1:
            raise KeyboardInterrupt  # the process dies right after a mid-epoch checkpoint

    monkeypatch.setattr(training.artifacts, "save_torch", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        training.run(config, tmp_path / "crashed")
    monkeypatch.undo()
    state = torch.load(tmp_path / "crashed" / "checkpoint" / "last.pt", weights_only=True)
    assert state["partial"]["batch"] == 2 and state["epoch"] == 1
    resumed = training.run(config, tmp_path / "crashed")
    assert resumed["resumed_from_epoch"] == 1
    for key in ("final", "best", "history", "steps"):
        assert resumed[key] == full[key]
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "crashed" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _stop_point(folder):
    state = torch.load(folder / "checkpoint" / "last.pt", weights_only=True)
    return state["step"], state["segments"][-1]["ended_by"]


def test_a_run_stopped_by_its_time_budget_resumes_to_the_uninterrupted_result(tmp_path):
    from ir2net.cli import main

    reference = train(tmp_path / "uninterrupted")
    assert reference.wait(timeout=600) == 0, reference.stdout.read().decode()
    folder = tmp_path / "stopped"
    # the budget is spent before the first step ends: the run stops right after it
    assert main(["train", "--out", str(folder), "--stop-after", "0.000001s", *ARGS]) == 75
    assert not (folder / "metrics.json").exists()
    step, ended_by = _stop_point(folder)
    assert 0 < step < 18 and "time budget" in ended_by
    assert main(["train", "--out", str(folder), *ARGS]) == 0
    (metrics_a, weights_a), (metrics_b, weights_b) = result(tmp_path / "uninterrupted"), \
        result(folder)
    assert metrics_a == metrics_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    segments = json.loads((folder / "metrics.json").read_text())["segments"]
    assert [s["ended_by"] for s in segments][-1] == "complete" and "time budget" in \
        segments[0]["ended_by"]
    assert segments[0]["end_step"] == segments[1]["start_step"] == step
    assert sum(s["steps"] for s in segments) == 18
    for segment in segments:
        assert segment["hardware"]["device"] == "cpu" and segment["wall_seconds"] > 0
        assert segment["precision"] == {"binary_dtype": "float32", "mixed_precision": "none"}


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1"])
def test_a_signal_stops_the_run_cleanly_and_the_rerun_is_bit_identical(tmp_path, signame):
    reference = train(tmp_path / "uninterrupted")
    assert reference.wait(timeout=600) == 0, reference.stdout.read().decode()
    victim = train(tmp_path / "signalled")
    checkpoint = tmp_path / "signalled" / "checkpoint" / "last.pt"
    deadline = time.time() + 600
    while not checkpoint.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert victim.poll() is None, "the run ended before it could be signalled"
    victim.send_signal(getattr(signal, signame))
    output = victim.stdout.read().decode()
    assert victim.wait(timeout=600) == 75, output
    assert f"{signame} received" in output and "rerun the same command" in output
    assert not (tmp_path / "signalled" / "metrics.json").exists()
    step, ended_by = _stop_point(tmp_path / "signalled")
    assert ended_by == f"stopped by signal {signame}" and step < 18

    rerun = train(tmp_path / "signalled")
    assert rerun.wait(timeout=600) == 0, rerun.stdout.read().decode()
    (metrics_a, weights_a), (metrics_b, weights_b) = result(tmp_path / "uninterrupted"), \
        result(tmp_path / "signalled")
    assert metrics_a == metrics_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
