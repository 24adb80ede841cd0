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
from torch import nn

__all__ = ["Distributed", "from_environment", "setup", "teardown", "sync_batchnorm",
           "GlobalBatchNorm", "broadcast_from_first_rank", "average_gradients"]


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "single process"

    @property
    def enabled(self) -> bool:
        """Data parallel: several ranks, or any torchrun launch (``--nproc_per_node 1`` is a
        data-parallel run of one rank: the process group and DDP are set up, NCCL on a GPU)."""
        return self.world_size > 1 or self.launcher == "torchrun"

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

    def min(self, tensor: torch.Tensor) -> torch.Tensor:
        """The smallest value over the ranks (in place, like :meth:`sum`)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
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


def _flat_groups(tensors: list[torch.Tensor]):
    """The tensors grouped by dtype (one collective per group instead of one per tensor)."""
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault(tensor.dtype, []).append(tensor)
    return groups.values()


def _unflatten_into(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    offset = 0
    for tensor in tensors:
        tensor.copy_(flat[offset:offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()


@torch.no_grad()
def broadcast_from_first_rank(tensors: list[torch.Tensor]) -> None:
    """Rank 0's values of ``tensors`` on every rank, in place: what DistributedDataParallel
    does with the module's buffers before each forward (``broadcast_buffers``)."""
    for group in _flat_groups(tensors):
        flat = torch.cat([tensor.reshape(-1) for tensor in group])
        dist.broadcast(flat, 0)
        _unflatten_into(flat, group)


@torch.no_grad()
def average_gradients(params: list[torch.Tensor]) -> None:
    """Each gradient divided by the world size and summed over the ranks, in place: the
    average DistributedDataParallel's reducer leaves in ``.grad`` (it divides before it
    sums, as here; with two ranks, or any power of two, the order makes no difference)."""
    grads = [param.grad for param in params if param.grad is not None]
    world = dist.get_world_size()
    for group in _flat_groups(grads):
        flat = torch.cat([grad.reshape(-1) for grad in group]).div_(world)
        dist.all_reduce(flat)
        _unflatten_into(flat, group)


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """BatchNorm statistics over the global batch of all ranks (``train.sync_batchnorm``):
    torch's SyncBatchNorm on GPUs; on the CPU (gloo) :class:`GlobalBatchNorm`."""
    if next(model.parameters()).device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def replace(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, GlobalBatchNorm.from_batchnorm(child))
            else:
                replace(child)
    replace(model)
    return model


class _AllReduceSum(torch.autograd.Function):
    """The sum over ranks, differentiable: the gradient is summed over ranks as well."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch across the ranks,
    for any backend (torch's SyncBatchNorm needs a GPU).  The per-channel sums are
    all-reduced by a differentiable all-reduce, so the backward pass is synchronised as
    well; running statistics use the unbiased global variance."""

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm) -> "GlobalBatchNorm":
        synced = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        like = bn.weight if bn.affine else bn.running_mean
        synced = synced.to(device=like.device, dtype=like.dtype)
        synced.load_state_dict(bn.state_dict())
        return synced

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(input)
        dims = [0] + list(range(2, input.dim()))
        count = torch.tensor(float(input.numel() // input.shape[1]), device=input.device)
        totals = _AllReduceSum.apply(torch.cat([input.sum(dims), input.pow(2).sum(dims),
                                                count.view(1)]))
        channels = input.shape[1]
        total = totals[-1]
        mean = totals[:channels] / total
        var = totals[channels:2 * channels] / total - mean.pow(2)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else \
                    1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(
                    momentum * var.detach() * total / max(float(total) - 1, 1.0))
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (input - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out
