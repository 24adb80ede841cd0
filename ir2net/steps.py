"""One training step: the loss of Algorithm 1 / Eq. 10 (with the teacher's soft targets
on ImageNet), backward and update -- eagerly, as one captured CUDA graph, or data-parallel.

Nothing in a step reads a value back to the host; the epoch loop looks only every few
steps (:mod:`ir2net.training`).
"""
from __future__ import annotations

import contextlib
import os
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .compilation import CompiledOrEager
from .restriction import InformationRestriction

__all__ = ["distillation_loss", "autocast", "StepOutput", "TrainForward", "TrainStep",
           "CudaGraphStep", "build_step", "repeated_pass_skippable", "describe_step",
           "data_parallel_form",
           "eager_model", "check_fast_step"]


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the teacher's softmax (the authors' DistributionLoss; equal to
    KL(teacher || student) up to the teacher's entropy, which has no gradient)."""
    return -(F.softmax(teacher_logits, dim=1) * F.log_softmax(student_logits, dim=1)).sum(1).mean()


# ----------------------------------------------------------------------------- one step
def autocast(device: torch.device, mixed_precision: str, cache_enabled: bool = True):
    """The ``train.mixed_precision`` context: ``torch.autocast`` in bfloat16, or nothing."""
    if mixed_precision == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)


class StepOutput(NamedTuple):
    """What one training step leaves on the device; nothing here is read by the host."""

    loss: torch.Tensor
    logits: torch.Tensor
    removed_fraction: Optional[torch.Tensor]  # IRes: input pixels its mask removed (Eq. 8)
    onset: Optional[torch.Tensor] = None       # IRes: no λ below it removes a pixel of the batch


class TrainForward(nn.Module):
    """The forward passes of one training step as one module, so that data-parallel
    training (DistributedDataParallel) sees one forward per step: the original images and,
    with IRes (Algorithm 1), the images masked by the network's own attention.  Returns the
    logits of both passes and the fraction of input pixels the mask removed.

    ``skip_repeated_pass`` (see :func:`repeated_pass_skippable`): when the mask keeps every
    pixel, the masked pass would repeat the first one bit for bit, so its logits are the
    first pass's and only its side effect is run (without a graph): BatchNorm's running
    statistics see the batch a second time.  With ``mu = 1/2`` Eq. 10's gradient is then
    exactly the first pass's, halved twice and summed (exact in floating point), so the
    step ends in the same bits with one backward pass instead of two (tests check it)."""

    def __init__(self, model: nn.Module, restriction: Optional[InformationRestriction] = None,
                 skip_repeated_pass: bool = False):
        super().__init__()
        self.model = model
        self.restriction = restriction
        self.skip_repeated_pass = skip_repeated_pass
        self.repeated_passes_skipped = 0

    def forward(self, images: torch.Tensor):
        if self.restriction is None:
            return self.model(images), None, None, None
        logits, attention_source = self.model(images, return_attention_source=True)
        masked, removed, onset = self.restriction.restrict(images, attention_source)
        if self.skip_repeated_pass and torch.equal(masked, images):
            with torch.no_grad():
                self.model(masked)
            self.repeated_passes_skipped += 1
            return logits, logits, removed, onset
        return logits, self.model(masked), removed, onset


def repeated_pass_skippable(model: nn.Module, restriction: Optional[InformationRestriction],
                            distributed: bool) -> bool:
    """Whether :class:`TrainForward` may skip the backward pass of a masked pass that repeats
    the original one: Eq. 10 with ``mu = 1/2`` (every experiment of the paper), a model whose
    forward is deterministic (no dropout), one process, and a CPU, where checking the mask
    costs no host synchronisation.  ``IR2NET_SKIP_REPEATED_PASS=0`` always runs both passes
    with gradients, as Algorithm 1 is written."""
    return (restriction is not None and restriction.mu == 0.5 and not distributed
            and next(model.parameters()).device.type == "cpu"
            and not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
            and os.environ.get("IR2NET_SKIP_REPEATED_PASS", "1") != "0")


class TrainStep:
    """One optimisation step: forward, the IRes masked pass (Algorithm 1) when
    ``restriction`` is set, Eq. 10, backward, update.  Everything stays on the device:
    no value is read back to the host here.  ``mixed_precision="bfloat16"`` runs the
    forward passes under ``torch.autocast`` (see :func:`autocast`).  ``distributed``
    wraps the forward passes in DistributedDataParallel: gradients are averaged over the
    ranks, each of which holds its slice of the global batch.  ``explicit_collectives``
    (with ``distributed``): the same data-parallel step without the DDP wrapper, its
    collectives done by :meth:`averaged_update` (what a CUDA graph captures: DDP keeps the
    parameters' gradient accumulators alive on the stream it was built on, which a capture
    on another stream cannot depend on)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 restriction: Optional[InformationRestriction] = None,
                 teacher: Optional[nn.Module] = None, label_smoothing: float = 0.0,
                 mixed_precision: str = "none", distributed: bool = False,
                 explicit_collectives: bool = False):
        self.model = model
        self.optimizer = optimizer
        self.restriction = restriction
        self.teacher = teacher
        self.label_smoothing = label_smoothing
        self.mixed_precision = mixed_precision
        self.autocast_cache = True  # CUDA-graph capture turns the weight-cast cache off
        self.distributed = distributed
        self.explicit_collectives = distributed and explicit_collectives
        self.local_forward = TrainForward(model, restriction,
                                          repeated_pass_skippable(model, restriction, distributed))
        self.forward = self.local_forward
        if self.explicit_collectives:  # every rank starts from rank 0's state, as under DDP
            from .distributed import broadcast_from_first_rank

            broadcast_from_first_rank([*self.local_forward.parameters(),
                                       *self.local_forward.buffers()])
        elif distributed:
            from torch.nn.parallel import DistributedDataParallel
            device = next(model.parameters()).device
            self.forward = DistributedDataParallel(
                self.local_forward, device_ids=[device.index] if device.type == "cuda" else None)

    def _criterion(self, logits, labels, soft_target):
        logits = logits.float()  # the loss in float32, also under mixed precision
        if soft_target is not None:
            return distillation_loss(logits, soft_target.float())
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def loss(self, images: torch.Tensor, labels: torch.Tensor, *,
             local: bool = False) -> StepOutput:
        """``Loss_total``, the logits of the original images (both with the graph attached)
        and the fraction of input pixels IRes removed (``None`` without IRes).  ``local``:
        this rank's forward passes outside DistributedDataParallel, whose collectives
        :meth:`averaged_backward` then does itself."""
        forward = self.local_forward if local else self.forward
        with autocast(images.device, self.mixed_precision, self.autocast_cache):
            return self._loss(images, labels, forward)

    def _loss(self, images: torch.Tensor, labels: torch.Tensor, forward: nn.Module) -> StepOutput:
        soft_target = None
        if self.teacher is not None:
            with torch.no_grad():
                soft_target = self.teacher(images)
        logits, masked_logits, removed, onset = forward(images)
        loss = self._criterion(logits, labels, soft_target)
        if masked_logits is not None:  # Eq. 10
            loss = self.restriction.combine(loss, self._criterion(masked_logits, labels,
                                                                  soft_target))
        return StepOutput(loss, logits, removed, onset)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        if self.explicit_collectives:
            return self.averaged_update(images, labels)
        output = self.loss(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        self.optimizer.step()
        return StepOutput(output.loss.detach(), output.logits.detach(), output.removed_fraction,
                          output.onset)

    # The data-parallel step with its collectives written out.  DistributedDataParallel
    # synchronises through autograd hooks and host-side bookkeeping in its reducer, which a
    # CUDA-graph replay would skip; these collectives are plain NCCL calls that a graph
    # captures.  Same math as __call__ under DDP (tests/test_distributed.py checks it).
    def averaged_backward(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        """Rank 0's buffers on every rank (DDP's ``broadcast_buffers``, before the forward),
        this rank's loss and backward pass, the gradients averaged over the ranks."""
        from .distributed import average_gradients, broadcast_from_first_rank

        broadcast_from_first_rank(list(self.local_forward.buffers()))
        output = self.loss(images, labels, local=True)
        self.optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        average_gradients([p for group in self.optimizer.param_groups for p in group["params"]])
        return output

    def averaged_update(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        """One data-parallel step as :meth:`__call__` takes it under DDP, collectives explicit."""
        output = self.averaged_backward(images, labels)
        self.optimizer.step()
        return StepOutput(output.loss.detach(), output.logits.detach(), output.removed_fraction,
                          output.onset)


class CudaGraphStep:
    """A :class:`TrainStep` captured into a CUDA graph and replayed (SGD on CUDA only).

    At batch 128 the small CIFAR models are bound by kernel launches, not arithmetic;
    replaying one graph per step removes that overhead.  The math is the eager step's:
    the first step runs eagerly (it creates the optimizer's momentum buffers), the
    warm-up passes before a capture only run forward/backward and BatchNorm's running
    statistics are restored after them.  The graph bakes in the learning rate, so it is
    recaptured whenever the rate changes (once per epoch under the cosine schedule);
    batches of another shape (a last partial batch) run eagerly.

    Data-parallel, the step has explicit collectives (``explicit_collectives``): the graph
    holds :meth:`TrainStep.averaged_update`, DDP's collectives captured (NCCL).
    """

    def __init__(self, step: TrainStep, warmup: int = 2):
        if not isinstance(step.optimizer, torch.optim.SGD):
            raise ValueError("CUDA-graph capture is implemented for SGD only")
        self.step = step
        self.model = step.model
        self.forward = step.forward
        self.optimizer = step.optimizer
        self.warmup = warmup
        self.graph = None
        self.key = None
        self.eager_steps = 0

    def _capture(self, images, labels):
        self.static_images = images.clone()
        self.static_labels = labels.clone()
        self.step.autocast_cache = False  # cached weight casts must not outlive a replay
        norms = [m for m in self.model.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                 for m in norms]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                if self.step.explicit_collectives:  # warms up the collectives the graph holds
                    self.step.averaged_backward(self.static_images, self.static_labels)
                    continue
                self.optimizer.zero_grad(set_to_none=True)
                self.step.loss(self.static_images, self.static_labels).loss.backward()
        torch.cuda.current_stream().wait_stream(side)
        for module, (mean, var, count) in zip(norms, saved):
            module.running_mean.copy_(mean)
            module.running_var.copy_(var)
            module.num_batches_tracked.copy_(count)
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        if self.step.explicit_collectives:
            # thread-local: the process group's own threads may query their events meanwhile
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.static = self.step.averaged_update(self.static_images, self.static_labels)
            return
        with torch.cuda.graph(self.graph):
            output = self.step.loss(self.static_images, self.static_labels)
            output.loss.backward()
            self.optimizer.step()
        self.static = StepOutput(output.loss.detach(), output.logits.detach(),
                                 output.removed_fraction, output.onset)

    def __call__(self, images, labels):
        key = (tuple(images.shape), tuple(group["lr"] for group in self.optimizer.param_groups))
        if self.eager_steps == 0 or (self.key is not None and key[0] != self.key[0]):
            self.eager_steps += 1
            return self.step(images, labels)
        if self.graph is None or key != self.key:
            self._capture(images, labels)
            self.key = key
        self.static_images.copy_(images)
        self.static_labels.copy_(labels)
        self.graph.replay()
        return StepOutput(*(None if value is None else value.clone() for value in self.static))


class _CompileFallback(nn.Module):
    """``torch.compile``d model that falls back to the eager one if compilation fails."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.eager = model
        self.forward_fn = CompiledOrEager(model, "the model")

    def forward(self, *args, **kwargs):
        return self.forward_fn(*args, **kwargs)


def build_step(model: nn.Module, optimizer: torch.optim.Optimizer, *,
               restriction: Optional[InformationRestriction] = None,
               teacher: Optional[nn.Module] = None, label_smoothing: float = 0.0,
               cuda_graphs: bool = True, compile: bool = False, mixed_precision: str = "none",
               distributed: bool = False):
    """The fastest available form of :class:`TrainStep` for this device and optimizer (a CUDA
    graph also under data parallelism, except with synchronised BatchNorm, whose collectives
    inside the forward pass are left to eager mode)."""
    device = next(model.parameters()).device
    forward_model = _CompileFallback(model) if compile else model
    synced_norm = any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    graphed = (cuda_graphs and device.type == "cuda" and isinstance(optimizer, torch.optim.SGD)
               and not (distributed and synced_norm))
    step = TrainStep(forward_model, optimizer, restriction=restriction, teacher=teacher,
                     label_smoothing=label_smoothing, mixed_precision=mixed_precision,
                     distributed=distributed, explicit_collectives=graphed)
    return CudaGraphStep(step) if graphed else step


# ----------------------------------------------------------------------------- checking a fast step
def _inner(step) -> TrainStep:
    return step.step if isinstance(step, CudaGraphStep) else step


def eager_model(step) -> nn.Module:
    """The plain model a step trains (inside any ``torch.compile`` wrapper)."""
    model = _inner(step).model
    return model.eager if isinstance(model, _CompileFallback) else model


def data_parallel_form(step) -> str:
    """How a data-parallel step synchronises, for the run's record."""
    return "explicit collectives" if _inner(step).explicit_collectives else "DDP"


def describe_step(step) -> str:
    """How a step runs, for the run's record: ``eager``, ``CUDA graph``, ``compiled``..."""
    parts = ["CUDA graph"] if isinstance(step, CudaGraphStep) else []
    if isinstance(_inner(step).model, _CompileFallback):
        parts.append("compiled")
    return ", ".join(parts) or "eager"


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer):
    tensors = list(model.state_dict().values())  # views of the live parameters and buffers
    return (tensors, [t.detach().clone() for t in tensors],
            {param: {key: value.detach().clone() if torch.is_tensor(value) else value
                     for key, value in state.items()}
             for param, state in optimizer.state.items()})


@torch.no_grad()
def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, snapshot) -> None:
    """Back to ``snapshot`` in place: a captured CUDA graph keeps the addresses it holds.
    Optimiser state created since is zeroed, which is what a first step starts from (SGD's
    momentum, Adam's moments and step count)."""
    tensors, values, optimizer_state = snapshot
    for tensor, value in zip(tensors, values):
        tensor.copy_(value)
    for param, state in optimizer.state.items():
        saved = optimizer_state.get(param, {})
        for key, value in state.items():
            if torch.is_tensor(value):
                value.copy_(saved[key]) if key in saved else value.zero_()
            elif key in saved:
                state[key] = saved[key]


def check_fast_step(step, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor],
                    *, calls: int = 3, tolerance: float = 0.1) -> Optional[str]:
    """Whether a fast step (a CUDA graph, ``torch.compile``) updates the weights as the plain
    eager step does.  The fast step is called ``calls`` times on ``batch``, each time from the
    same state (put back in place after every call), so that a CUDA graph is exercised in
    every phase: its first, eager call, its capture and replay, and a recapture (the last call
    runs at half the learning rate).  Each update is compared with the eager step's from that
    state at that rate.  Returns ``None`` when every parameter's update agrees within
    ``tolerance`` (relative norm of the difference) in every call, else which parameters
    disagree and by how much.

    Why one step at a time: from a trained state a binary network's training is chaotic.
    Measured on the CPU from the IR²Net run's epoch-146 checkpoint, the eager step on images
    changed by one part in 10^7 (less than float32 rounding) gives updates that differ by
    0.1 % (median parameter) after one step but by 31 % after three; a fast step's rounding
    does the same.  One step from the same state keeps rounding at rounding size, while a
    broken step shows: on an H100 and an H200 the compiled step gave the latent weights of
    every binary convolution a zero gradient (update off by 100 %) while the rest of the
    network trained (results/longruns/README.md).  Kernels and compilers differ from the
    CPU's, so the check runs where the fast step does."""
    model = eager_model(step)
    inner = _inner(step)
    reference = TrainStep(model, optimizer, restriction=inner.restriction, teacher=inner.teacher,
                          label_smoothing=inner.label_smoothing,
                          mixed_precision=inner.mixed_precision)
    reference.forward.skip_repeated_pass = False
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    snapshot = _snapshot(model, optimizer)
    start = [p.detach().clone() for _, p in params]
    rates = [group["lr"] for group in optimizer.param_groups]

    def update(candidate, scale: float) -> list[torch.Tensor]:
        """One call of ``candidate`` from the snapshot at ``scale`` times the rate: its update."""
        try:
            for group, rate in zip(optimizer.param_groups, rates):
                group["lr"] = rate * scale
            candidate(*batch)
            return [p.detach() - p0 for (_, p), p0 in zip(params, start)]
        finally:
            for group, rate in zip(optimizer.param_groups, rates):
                group["lr"] = rate
            _restore(model, optimizer, snapshot)

    scales = [1.0] * (calls - 1) + [0.5] if calls > 1 else [1.0]
    eager = {scale: update(reference, scale) for scale in set(scales)}
    for number, scale in enumerate(scales, start=1):
        fast = update(step, scale)
        disagree = []
        for (name, _), got, expected in zip(params, fast, eager[scale]):
            norm = expected.float().norm()
            if norm == 0:
                continue
            difference = ((got.float() - expected.float()).norm() / norm).item()
            if not difference <= tolerance:  # NaN disagrees too
                disagree.append(f"{name} (update off by {difference:.0%})")
        if disagree:
            shown = ", ".join(disagree[:4])
            if len(disagree) > 4:
                shown += f" and {len(disagree) - 4} more"
            return f"{len(disagree)} of {len(params)} parameters in call {number} of {calls}: {shown}"
    return None
