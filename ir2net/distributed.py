"""Data-parallel training with ``torch.distributed``: who this process is, and the few
collective operations training needs.

A run is data-parallel when it is launched as several processes: by ``torchrun``
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) or by ``srun`` with one task per GPU
(``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``; the first node of the step is the
rendezvous).  NCCL on GPUs, gloo on the CPU.  The recipe's global batch is split across the
ranks, so the learning rate stays the recipe's; every rank computes the same augmentation
for the whole global batch and keeps its slice, so the ranks together see exactly the
batch one process would.  Only rank 0 writes files.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

__all__ = ["Distributed", "from_environment", "setup", "teardown"]


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "single process"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, count: int) -> slice:
        """This rank's contiguous part of ``count`` items (a global batch, the test set):
        the parts of all ranks are disjoint and cover every item once."""
        base, extra = divmod(count, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    # ------------------------------------------------------------------ collectives
    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks (in place; the tensor itself on one process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any (stop requests, non-finite loss)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1 if flag else 0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer, 0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def _first_host(nodelist: str) -> str:
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                             text=True, timeout=30)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    match = re.match(r"([^,\[]+)(\[(\d+))?", nodelist)  # node[01-04] -> node01
    return match.group(1) + (match.group(3) or "") if match else "127.0.0.1"


def from_environment(environ: Optional[dict] = None) -> Distributed:
    """Who this process is, from the launcher's environment."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return Distributed(int(env["RANK"]), int(env["WORLD_SIZE"]),
                           int(env.get("LOCAL_RANK", env["RANK"])), "torchrun")
    tasks = int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")) or 1)
    if "SLURM_PROCID" in env and "SLURM_STEP_ID" in env and tasks > 1:
        return Distributed(int(env["SLURM_PROCID"]), tasks, int(env.get("SLURM_LOCALID", 0)),
                           "srun")
    return Distributed()


def setup(context: Distributed, device_type: str) -> None:
    """Join the process group (NCCL on GPUs, gloo on the CPU)."""
    if not context.enabled or dist.is_initialized():
        return
    if context.launcher == "srun":
        os.environ.setdefault("MASTER_ADDR", _first_host(
            os.environ.get("SLURM_STEP_NODELIST", os.environ.get("SLURM_JOB_NODELIST", ""))))
        os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", 0))
                                                 % 20000))
        os.environ.setdefault("RANK", str(context.rank))
        os.environ.setdefault("WORLD_SIZE", str(context.world_size))
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", init_method="env://",
                            rank=context.rank, world_size=context.world_size)


def teardown(context: Distributed) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
