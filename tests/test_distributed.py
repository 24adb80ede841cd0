"""Data-parallel training on the CPU (gloo, 2 processes): 2 ranks compute what one process
computes on the same global batch where the math says they must (BatchNorm over the global
batch), a 2-rank run killed and resumed ends bit-identical to an uninterrupted one, every
test image is scored once, and only rank 0 writes."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ir2net.distributed import Distributed, from_environment

SYNTH = ["--config", "cifar10_resnet20_bireal", "--no-progress", "--threads", "1",
         "--set", "data.dataset=synthetic", "--set", "data.synthetic.train_size=96",
         "--set", "data.synthetic.test_size=37", "--set", "data.synthetic.image_size=16",
         "--set", "train.batch_size=16", "--set", "train.epochs=3",
         "--set", "train.checkpoint_every_steps=2", "--set", "eval.batch_size=8"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_launchers_environment_names_the_rank():
    assert from_environment({}) == Distributed()
    torchrun = from_environment({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (torchrun.rank, torchrun.world_size, torchrun.local_rank) == (1, 4, 1)
    # torchrun with one rank still trains data-parallel (a one-GPU check of the NCCL path)
    assert from_environment({"RANK": "0", "WORLD_SIZE": "1"}).enabled
    srun = from_environment({"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "3",
                             "SLURM_STEP_ID": "0"})
    assert (srun.rank, srun.world_size, srun.launcher) == (3, 8, "srun")
    # the batch script of an 8-task job is not a rank (no job step)
    assert not from_environment({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}).enabled
    shares = [Distributed(rank, 3).shard(37) for rank in range(3)]
    assert [s.stop - s.start for s in shares] == [13, 12, 12]
    assert shares[0].start == 0 and shares[-1].stop == 37
    assert all(a.stop == b.start for a, b in zip(shares, shares[1:]))


def run_two_ranks(worker_fn, tmp_path) -> str:
    """``worker_fn(rank, 2, port, out)`` in two spawned processes (gloo); each saves to
    ``out.<rank>``.  Returns ``out``."""
    out, port = str(tmp_path / "rank"), free_port()
    context = mp.get_context("spawn")
    workers = [context.Process(target=worker_fn, args=(rank, 2, port, out)) for rank in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
        assert worker.exitcode == 0
    return out


def _step_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        losses, model = _three_steps(Distributed(rank, world))
        torch.save((losses, model.state_dict()), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _three_steps(context):
    """Three IR²Net steps (IRes + CIRec) in float64 on one fixed global batch of 16."""
    from ir2net.models import create_model
    from ir2net.recovery import recovery_preset
    from ir2net.restriction import InformationRestriction
    from ir2net.steps import TrainStep
    from ir2net.distributed import sync_batchnorm

    torch.manual_seed(0)
    model = create_model("resnet20_bireal", recovery=recovery_preset("table2_resnet20").spec)
    model = model.double()
    if context.enabled:
        model = sync_batchnorm(model)
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                            weight_decay=1e-4),
                     restriction=InformationRestriction(0.9), distributed=context.enabled)
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(16, 3, 16, 16, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 10, (16,), generator=gen)
    part = context.shard(16)
    losses = []
    for _ in range(3):
        output = step(images[part], labels[part])
        losses.append(output.loss.item())
    return losses, model


def test_two_ranks_equal_one_process_on_the_same_global_batch(tmp_path):
    """With BatchNorm over the global batch the math of 2 ranks is one process's: the same
    losses (mean over the ranks' halves) and the same weights after 3 steps.  The network
    runs in float64 so that no binarised activation lies close enough to 0 to flip between
    the two summation orders: a BNN amplifies one flipped sign into different logits (in
    float32 one thread or two already train different trajectories from the same batch)."""
    torch.set_num_threads(1)
    single_losses, single = _three_steps(Distributed())
    out = run_two_ranks(_step_worker, tmp_path)
    (losses0, state0), (losses1, state1) = (torch.load(f"{out}.{r}") for r in range(2))
    for a, b, whole in zip(losses0, losses1, single_losses):
        assert abs((a + b) / 2 - whole) < 1e-6  # the loss itself is taken in float32
    reference = single.state_dict()
    for name, value in reference.items():
        torch.testing.assert_close(state0[name].double(), value.double(), rtol=0, atol=1e-6,
                                   msg=name)
        assert torch.equal(state0[name], state1[name]), name  # the ranks agree exactly


def _explicit_collectives_worker(rank, world, port, out):
    """Three IR²Net steps through DistributedDataParallel and three with the collectives
    written out (what a CUDA graph captures), each from weights that differ per rank."""
    from ir2net.models import create_model
    from ir2net.recovery import recovery_preset
    from ir2net.restriction import InformationRestriction
    from ir2net.steps import TrainStep

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        gen = torch.Generator().manual_seed(3)
        images = torch.randn(16, 3, 16, 16, generator=gen)
        labels = torch.randint(0, 10, (16,), generator=gen)
        part = Distributed(rank, world).shard(16)
        runs = {}
        for form in ("ddp", "explicit"):
            torch.manual_seed(rank)  # different weights per rank: both start from rank 0's
            model = create_model("resnet20_bireal",
                                 recovery=recovery_preset("table2_resnet20").spec)
            step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                                    weight_decay=1e-4),
                             restriction=InformationRestriction(0.9), distributed=True,
                             explicit_collectives=form == "explicit")
            assert (step.forward is step.local_forward) == (form == "explicit")
            losses = [step(images[part], labels[part]).loss.item() for _ in range(3)]
            runs[form] = (losses, model.state_dict())
        torch.save(runs, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_explicit_collectives_step_as_distributed_data_parallel_does(tmp_path):
    """The data-parallel step a CUDA graph captures (rank 0's weights and buffers broadcast,
    gradients averaged by hand) trains bit for bit what the DDP-wrapped step trains, on each
    rank: same losses, weights, momentum-driven updates and BatchNorm statistics after 3
    steps."""
    out = run_two_ranks(_explicit_collectives_worker, tmp_path)
    for rank in range(2):
        runs = torch.load(f"{out}.{rank}")
        (ddp_losses, ddp_state), (losses, state) = runs["ddp"], runs["explicit"]
        assert losses == ddp_losses, rank
        for name, value in ddp_state.items():
            assert torch.equal(state[name], value), (rank, name)
    first, second = (torch.load(f"{out}.{rank}")["explicit"][1] for rank in range(2))
    weights = [name for name in first if "running" not in name and "num_batches" not in name]
    assert all(torch.equal(first[name], second[name]) for name in weights)  # ranks agree
    # each rank's BatchNorm statistics saw its own half after rank 0's were broadcast
    assert not torch.equal(first["backbone.stem.1.running_mean"],
                           second["backbone.stem.1.running_mean"])


def torchrun(out, *extra, **popen):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(free_port()), "-m", "ir2net.cli", "train", "--out", str(out),
               *SYNTH, *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, **popen)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process below it (torchrun's ranks run in sessions of
    their own, so killing its process group would leave them training)."""
    import psutil

    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def result(folder):
    metrics = json.loads((folder / "metrics.json").read_text())
    return metrics, torch.load(folder / "model.pt", weights_only=True)


def test_a_two_rank_run_killed_and_resumed_ends_identical(tmp_path):
    reference = torchrun(tmp_path / "whole")
    output = reference.communicate(timeout=900)[0].decode()
    assert reference.returncode == 0, output[-3000:]
    metrics, weights = result(tmp_path / "whole")
    assert metrics["world_size"] == 2 and metrics["final"]["images"] == 37  # each image once
    assert output.count("final top-1") == 1  # rank 0 reports, rank 1 does not

    victim = torchrun(tmp_path / "killed")
    checkpoint = tmp_path / "killed" / "checkpoint" / "last.pt"
    deadline, seen, last = time.time() + 900, 0, None
    while seen < 3 and victim.poll() is None and time.time() < deadline:
        stamp = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
        if stamp is not None and stamp != last:
            seen, last = seen + 1, stamp
        time.sleep(0.01)
    assert victim.poll() is None, "the run ended before it could be killed"
    kill_tree(victim.pid)  # the launcher and both ranks, as a failed node would
    victim.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()

    rerun = torchrun(tmp_path / "killed")
    assert rerun.wait(timeout=900) == 0, rerun.stdout.read().decode()[-3000:]
    resumed, resumed_weights = result(tmp_path / "killed")
    assert resumed["resumed_from_epoch"] is not None
    for key in ("final", "best", "history", "steps"):
        assert resumed[key] == metrics[key], key
    assert all(torch.equal(weights[k], resumed_weights[k]) for k in weights)
    assert {s["world_size"] for s in resumed["segments"]} == {2}
    # on the CPU the step is eager, through DistributedDataParallel
    assert {s["data_parallel"] for s in resumed["segments"]} == {"gloo, DDP"}


def test_a_checkpoint_resumes_under_another_world_size(tmp_path, capsys):
    """Stopped as 2 ranks (time budget), continued as one process: the global batch and
    the position in the epoch carry over."""
    from ir2net.cli import main

    stopped = torchrun(tmp_path / "run", "--stop-after", "0.000001s")
    output = stopped.communicate(timeout=900)[0].decode()
    # each rank exits with 75 (resumable); torchrun itself reports any non-zero exit as 1
    assert output.count("stopped by its time budget") == 2 and "exitcode: 75" in output
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert main(["train", "--out", str(tmp_path / "run"), *SYNTH]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [s["world_size"] for s in metrics["segments"]] == [2, 1]
    assert metrics["steps"] == 3 * (96 // 16) and metrics["final"]["images"] == 37


def test_a_global_batch_that_does_not_split_is_refused(tmp_path):
    process = torchrun(tmp_path / "odd", "--set", "train.batch_size=15")
    output = process.communicate(timeout=900)[0].decode()
    assert process.returncode != 0 and "does not split over 2 ranks" in output
    assert not (tmp_path / "odd" / "checkpoint").exists()
