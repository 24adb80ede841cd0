"""Training recipes: CIFAR-10 from scratch and the ImageNet two-stage recipe.

Reads top to bottom: building blocks (model, teacher, optimiser, schedule), one training
epoch with IRes (Algorithm 1; the step itself is :mod:`ir2net.steps`), evaluation, then
:func:`run`, which owns a run folder::

    DIR/config.yaml      the resolved config (enough to rerun)
    DIR/checkpoint/      resumable state, rewritten atomically (ir2net.runstate)
    DIR/model.pt         final state_dict             (written at the end)
    DIR/metrics.json     metrics with provenance      (written last: the run is complete)

Rerunning the same command on the same DIR resumes from the checkpoint, or returns at once
when the run is already complete.  Launched as several processes (torchrun, or srun with
one task per GPU) the run is data-parallel (:mod:`ir2net.distributed`): the global batch is
split across the ranks, every test image is scored once, and only rank 0 writes.
"""
from __future__ import annotations

import collections
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import artifacts, provenance
from .binarize import set_binary_compute_dtype
from .config import config_digest, parse_duration
from .data import build_data
from .distributed import Distributed, from_environment, setup, sync_batchnorm, teardown
from .models import create_model, model_info
from .recovery import RecoverySpec, recovery_preset
from .restriction import InformationRestriction
from .runstate import (INTERRUPTED, RESUMABLE_EXIT, RunState, Segment, StopConditions,
                       TrainingError, TrainingStopped, check_same_data, load_checkpoint)
from .steps import (CudaGraphStep, StepOutput, TrainStep, autocast, build_step,
                    check_fast_step, data_parallel_form, describe_step, distillation_loss,
                    eager_model)

__all__ = ["TrainingError", "TrainingStopped", "StopConditions", "RunState", "StepOutput",
           "RESUMABLE_EXIT", "resolve_device", "build_model", "build_teacher", "build_optimizer",
           "build_scheduler", "distillation_loss", "autocast", "TrainStep", "CudaGraphStep",
           "build_step", "train_one_epoch", "evaluate", "run", "build_restriction"]


def resolve_device(name: str, context: Distributed = Distributed()) -> torch.device:
    """The device of this process (``cuda:<local rank>`` for a data-parallel rank)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and torch.cuda.is_available() and context.enabled:
        device = torch.device("cuda", context.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("config key 'device' is cuda but no CUDA device is available; "
                            "use device=auto or device=cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------- building blocks
def recovery_spec(model_cfg: dict) -> Optional[RecoverySpec]:
    recovery = model_cfg["recovery"]
    if not recovery["enabled"]:
        return None
    if recovery["preset"]:
        return recovery_preset(recovery["preset"]).spec
    return RecoverySpec(recovery["r"], recovery["g"])


def build_model(config: dict, num_classes: int) -> nn.Module:
    model_cfg = config["model"]
    info = model_info(model_cfg["name"])
    if not info.binary:  # a plain real-valued network (the teacher, the calibration)
        return set_batchnorm_momentum(create_model(info.name, num_classes=num_classes),
                                      model_cfg["bn_momentum"])
    kwargs = dict(num_classes=num_classes, precision=model_cfg["precision"],
                  sign_zero=model_cfg["sign_zero"], scaling=model_cfg["scaling"],
                  recovery=recovery_spec(model_cfg))
    if info.tap_styles:
        kwargs["taps"] = model_cfg["taps"]
    if info.sized_classifier:
        kwargs["image_size"] = config["data"]["image_size"]
    model = create_model(info.name, **kwargs)
    if model_cfg["binary_dtype"] == "bfloat16":
        set_binary_compute_dtype(model, torch.bfloat16)
    ires = config.get("ires") or {}  # the cost plan builds models from their section alone
    if ires.get("enabled"):
        model.set_attention_source(ires.get("source", "output"))
    return set_batchnorm_momentum(model, model_cfg["bn_momentum"])


def set_batchnorm_momentum(model: nn.Module, momentum: float) -> nn.Module:
    """Every BatchNorm layer's running-statistics momentum (``model.bn_momentum``).  With a
    mask that keeps every pixel, IRes's second pass updates the running statistics a second
    time with the same batch statistic, which is one update with ``1 - (1 - m)**2``
    (tests/test_restriction.py checks the equivalence step for step)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum
    return model


def build_teacher(config: dict, num_classes: int, device: torch.device) -> Optional[nn.Module]:
    train_cfg = config["train"]
    if train_cfg["teacher"] is None:
        return None
    teacher = create_model(train_cfg["teacher"], num_classes=num_classes,
                           weights=train_cfg["teacher_weights"])
    teacher.eval().requires_grad_(False)
    return teacher.to(device)


def build_restriction(config: dict) -> Optional[InformationRestriction]:
    ires = config["ires"]
    if not ires["enabled"]:
        return None
    return InformationRestriction(ires["lam"], ires["mu"], ires["variant"])


def build_optimizer(model: nn.Module, train_cfg: dict) -> torch.optim.Optimizer:
    decay = train_cfg["weight_decay"]
    if train_cfg["weight_decay_scope"] == "conv":  # conv weights only (authors' ImageNet code)
        conv = [p for p in model.parameters() if p.ndim == 4]
        conv_ids = {id(p) for p in conv}
        groups = [{"params": [p for p in model.parameters() if id(p) not in conv_ids],
                   "weight_decay": 0.0},
                  {"params": conv, "weight_decay": decay}]
    else:
        groups = [{"params": list(model.parameters()), "weight_decay": decay}]
    if train_cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=train_cfg["lr"], momentum=train_cfg["momentum"])
    return torch.optim.Adam(groups, lr=train_cfg["lr"])


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg: dict):
    if train_cfg["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train_cfg["epochs"],
                                                          eta_min=0.0)
    if train_cfg["schedule"] == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, train_cfg["lr_milestones"],
                                                    gamma=train_cfg["lr_gamma"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def build_train_step(config: dict, model: nn.Module, optimizer: torch.optim.Optimizer,
                     restriction: Optional[InformationRestriction],
                     teacher: Optional[nn.Module], device: torch.device,
                     distributed: bool = False) -> TrainStep:
    """The step a config trains with.  ``train.compile: auto`` compiles nowhere: on CUDA
    (torch 2.11) ``torch.compile`` gives the binary convolutions' latent weights a zero
    gradient (results/longruns/README.md), so the fastest exact step there is the CUDA graph
    without it; on the CPU compiling does not pay."""
    train_cfg = config["train"]
    return build_step(model, optimizer, restriction=restriction, teacher=teacher,
                      label_smoothing=train_cfg["label_smoothing"],
                      cuda_graphs=train_cfg["cuda_graphs"],
                      compile=train_cfg["compile"] is True,
                      mixed_precision=train_cfg["mixed_precision"], distributed=distributed)


class GradientWatch:
    """Refuses to checkpoint weights that the loss stopped reaching.

    At every checkpoint each trained tensor (of more than one element) that had a gradient in
    the last step must have had a non-zero one: a whole weight tensor with a gradient of exact
    zeros is cut off from the loss, never a legitimate state.  A broken fast step on an H100
    once trained every binary convolution with a zero gradient for 157 epochs (only weight
    decay moved their latent weights) while the rest of the network trained and the loss
    fell; nothing else showed it."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.params = [(name, p) for name, p in model.named_parameters()
                       if p.requires_grad and id(p) in trained and p.numel() > 1]

    def cut_off(self) -> list[str]:
        graded = [(name, p.grad) for name, p in self.params if p.grad is not None]
        if not graded:
            return []
        reached = torch.stack([grad.any() for _, grad in graded]).tolist()  # one host sync
        return [name for (name, _), any_nonzero in zip(graded, reached) if not any_nonzero]

    def check(self, step_note: str) -> None:
        """Raises :class:`TrainingError` if the last step gave some weights a zero gradient."""
        names = self.cut_off()
        if names:
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            raise TrainingError(
                f"{len(names)} of {len(self.params)} trained weight tensors got a gradient of "
                f"exact zeros in the last step: {shown}. The training step ({step_note}) does "
                "not reach them; nothing was checkpointed from it. Rerun with --set "
                "train.compile=false --set train.cuda_graphs=false, and please report it with "
                "your PyTorch version and device.")


def _checked_step(step_fn, config: dict, model: nn.Module, optimizer: torch.optim.Optimizer,
                  restriction, teacher, device: torch.device, num_classes: int,
                  context: Distributed):
    """The step to train with and how it runs (for the segment's record).  A fast step (a
    CUDA graph, ``torch.compile``) must first update the weights as the eager step does, on a
    batch of random images (:func:`ir2net.steps.check_fast_step`).  One that does not is
    dropped, loudly, for the next faster one: the CUDA graph without ``torch.compile``, then
    the eager step (the method's math, slowest).  Data-parallel, every rank checks on the
    same batch (so the averaged update is each rank's own) and all ranks drop a form that
    failed on any of them."""
    description = describe_step(step_fn)
    if description == "eager":
        return step_fn, description
    size = config["data"]["image_size"]
    batch = config["train"]["batch_size"] // context.world_size  # the batch each rank steps on
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randn(batch, 3, size, size, device=device, generator=generator)
    if config["train"]["channels_last"]:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, num_classes, (batch,), device=device, generator=generator)
    failed = []
    for fallback in ({}, {"compile": False}, {"compile": False, "cuda_graphs": False}):
        if fallback:
            step_fn = build_train_step({**config, "train": {**config["train"], **fallback}},
                                       eager_model(step_fn), optimizer, restriction, teacher,
                                       device, distributed=context.enabled)
            description = describe_step(step_fn)
            if any(description == tried for tried, _ in failed):
                continue
        try:
            problem = None if description == "eager" else check_fast_step(step_fn, optimizer,
                                                                          (images, labels))
        except Exception as error:  # e.g. a capture the CUDA driver refuses: the next form
            problem = f"it raised {type(error).__name__}: {str(error).splitlines()[0]}"
        if context.any(problem is not None, device) and problem is None:
            problem = "it failed its check on another rank"
        if problem is None:
            break
        print(f"ir2net: WARNING: the fast training step ({description}) does not update the "
              f"weights as the eager step does: {problem}. Trying a slower form of the same "
              "step; please report it, with your PyTorch version and GPU.", file=sys.stderr)
        failed.append((description, problem))
    if not failed:
        return step_fn, f"{description} (checked against the eager step)"
    why = "; ".join(f"the {tried} step failed its check: {problem}" for tried, problem in failed)
    checked = "" if description == "eager" else ", checked against the eager step"
    return step_fn, f"{description} ({why}{checked})"


# ----------------------------------------------------------------------------- one epoch
LOG_INTERVAL_S = 60.0  # without a progress bar, a line at most this often within an epoch


def train_one_epoch(step_fn: TrainStep, batches, *, epoch: int, step: int,
                    max_steps: Optional[int], progress: bool, description: str = "",
                    partial: Optional[dict] = None, checkpoint_every: Optional[int] = None,
                    on_checkpoint: Optional[Callable[[dict], None]] = None,
                    should_stop: Optional[Callable[[], bool]] = None,
                    context: Distributed = Distributed()) -> dict:
    """One pass over the training batches.

    ``partial`` resumes an epoch that a checkpoint interrupted (``batches`` must then start
    at ``partial["batch"]``); every ``checkpoint_every`` steps ``on_checkpoint`` receives
    the epoch's progress so far.  When ``should_stop()`` turns true before the last batch,
    the epoch ends early and ``stats["stopped"]`` holds that progress (what a mid-epoch
    checkpoint holds).  A bar is drawn only on a terminal; otherwise (a log file, a
    cluster job) a line is printed about once a minute.  Data-parallel, the progress and
    the statistics are those of the global batch, and the ranks decide together when to
    stop (every 25 steps)."""
    step_fn.forward.train()
    device = next(step_fn.model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    removed_sum = torch.zeros((), device=device)
    onset_min = torch.full((), math.inf, device=device)
    seen, batch_index, restricting = 0, 0, False
    if partial is not None:
        batch_index, restricting = partial["batch"], partial.get("restricting", False)
        if context.is_main:  # the saved sums are global: one rank carries them on
            loss_sum = partial["loss_sum"].to(device)
            correct = partial["correct"].to(device)
            removed_sum = partial.get("removed_sum", removed_sum).to(device)
            seen = partial["seen"]
        # a minimum: every rank carries it.  A checkpoint from before the onset was recorded
        # leaves this epoch's unknown (NaN propagates through torch.minimum)
        onset_min = partial.get("onset_min", torch.full((), math.nan if restricting else math.inf)
                                ).to(device)
    first_bad_step = torch.full((), -1, device=device, dtype=torch.int64)
    step_counter = torch.full((), step, device=device, dtype=torch.int64)
    images_now = 0
    remaining = len(batches) - batch_index
    total = remaining if max_steps is None else min(remaining, max(max_steps - step, 0))
    bar = tqdm(total=total, desc=description or f"epoch {epoch + 1}", leave=False,
               disable=not (progress and context.is_main and sys.stderr.isatty()),
               dynamic_ncols=True)
    log_lines = progress and context.is_main and bar.disable
    tick = last_log = time.perf_counter()

    def check_finite():
        bad = int(first_bad_step.item())
        if context.any(bad >= 0, device):
            where = f"at step {bad}" if bad >= 0 else "on another rank"
            raise TrainingError(f"the training loss became NaN or Inf {where} (epoch "
                                f"{epoch + 1}); lower train.lr or check the data. No result was "
                                "written.")

    def totals():
        """The epoch's sums so far, over all ranks."""
        if not context.enabled:
            return loss_sum, correct, removed_sum, onset_min, seen, images_now
        counts = context.sum(torch.tensor([seen, images_now], device=device, dtype=torch.int64))
        return (context.sum(loss_sum.clone()), context.sum(correct.clone()),
                context.sum(removed_sum.clone()), context.min(onset_min.clone()),
                int(counts[0]), int(counts[1]))

    def progress_state() -> dict:
        global_loss, global_correct, global_removed, global_onset, global_seen, global_images = \
            totals()
        return {"batch": batch_index, "loss_sum": global_loss.detach().cpu(),
                "correct": global_correct.cpu(), "removed_sum": global_removed.cpu(),
                "onset_min": global_onset.cpu(),
                "restricting": restricting, "seen": global_seen, "step": step,
                "images": global_images}

    def stop_requested() -> bool:
        if should_stop is None:
            return False
        if not context.enabled:
            return should_stop()
        return step % 25 == 0 and context.any(should_stop(), device)

    stopped = None
    for images, labels in batches:
        if max_steps is not None and step >= max_steps:
            break
        loss, logits, removed, onset = step_fn(images, labels)
        # bookkeeping stays on the device; the host looks only every 25 steps
        first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), step_counter,
                                     first_bad_step)
        step_counter += 1
        loss_sum += loss * labels.numel()
        correct += (logits.argmax(1) == labels).sum()
        if removed is not None:
            removed_sum += removed
            onset_min = torch.minimum(onset_min, onset)
            restricting = True
        seen += labels.numel()
        images_now += labels.numel()
        step += 1
        batch_index += 1
        bar.update(1)
        if step % 25 == 0:
            check_finite()
            if not bar.disable:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}")
            elif log_lines and time.perf_counter() - last_log >= LOG_INTERVAL_S:
                last_log = time.perf_counter()
                print(f"  {description or f'epoch {epoch + 1}'}: batch {batch_index}/"
                      f"{len(batches)}, train loss {loss_sum.item() / max(seen, 1):.4f}, "
                      f"{images_now * context.world_size / (last_log - tick):.0f} img/s",
                      flush=True)
        mid_epoch = batch_index < len(batches)
        if (checkpoint_every and on_checkpoint is not None and step % checkpoint_every == 0
                and mid_epoch):
            check_finite()  # never checkpoint a diverged state
            on_checkpoint(progress_state())
        if mid_epoch and stop_requested():
            check_finite()
            stopped = progress_state()
            break
    bar.close()
    check_finite()
    loss_total, correct_total, removed_total, onset_total, seen_total, images_total = totals()
    return {"train_loss": loss_total.item() / max(seen_total, 1),
            "train_top1": 100.0 * correct_total.item() / max(seen_total, 1),
            "images": images_total, "step": step, "stopped": stopped,
            "ires_removed": removed_total.item() / (batch_index * context.world_size)
            if restricting else None,
            "ires_onset": onset_total.item() if restricting else None}


def topk_hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How many of a batch's images have their label first, and among the first five (all
    of them when there are fewer classes)."""
    hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
    return hits[:, 0].sum(), hits.any(dim=1).sum()


@torch.no_grad()
def evaluate(model: nn.Module, batches, mixed_precision: str = "none",
             context: Distributed = Distributed(), per_image: bool = False) -> dict:
    """Top-1/top-5 accuracy and loss over every test image (no batch is dropped), in the
    precision the model was trained in.  Data-parallel, each rank scores its part of the
    test set and the counts are summed: every image is scored exactly once.  ``per_image``
    (one process only) adds each image's top-1 class and label, in the test set's order:
    what a paired comparison of two models on the same images needs."""
    if per_image and context.enabled:
        raise ValueError("per-image predictions are collected in one process only")
    model.eval()
    predicted, truth = [], []
    device = next(model.parameters()).device
    top1 = torch.zeros((), device=device, dtype=torch.int64)
    top5 = torch.zeros((), device=device, dtype=torch.int64)
    loss_sum = torch.zeros((), device=device)
    count = torch.zeros((), device=device, dtype=torch.int64)
    for images, labels in batches:
        with autocast(device, mixed_precision):
            logits = model(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        batch_top1, batch_top5 = topk_hits(logits, labels)
        top1 += batch_top1
        top5 += batch_top5
        count += labels.numel()
        if per_image:
            predicted.append(logits.argmax(1).cpu())
            truth.append(labels.cpu())
    if context.enabled:
        top1, top5, count, loss_sum = (context.sum(top1), context.sum(top5), context.sum(count),
                                       context.sum(loss_sum))
    count = int(count.item())
    scores = {"top1": 100.0 * top1.item() / count, "top5": 100.0 * top5.item() / count,
              "loss": loss_sum.item() / count, "images": count}
    if per_image:
        scores.update(predictions=torch.cat(predicted).tolist(), labels=torch.cat(truth).tolist())
    return scores


# ----------------------------------------------------------------------------- a whole run
def _epoch_line(record: dict, epochs: int, best: Optional[dict], images_per_s: float,
                seconds_per_epoch: float) -> str:
    line = (f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}, "
            f"train top-1 {record['train_top1']:.2f}%")
    if "test" in record:
        line += f", test top-1 {record['test']['top1']:.2f}% (best {best['top1']:.2f}% at epoch " \
                f"{best['epoch']})"
    if record.get("ires_removed") is not None:
        line += f", IRes removed {100 * record['ires_removed']:.1f}% of pixels"
        if "ires_onset" in record:
            line += f" (onset λ {record['ires_onset']:.3f})"
    left = (epochs - record["epoch"]) * seconds_per_epoch
    return line + (f", {images_per_s:.0f} img/s, about "
                   f"{_duration_text(left)} left")


def _duration_text(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run(config: dict, out_dir: str | Path, on_config_change: str = "error") -> dict:
    """Train and evaluate one configuration in ``out_dir``; returns the metrics.

    ``on_config_change``: what to do with a checkpoint written by a different config:
    ``error`` (default) or ``restart`` (keep it aside as ``stale-<digest>.pt``, start anew).
    Raises :class:`TrainingStopped` when the run stopped cleanly before its end
    (``train.stop_after``, SIGTERM, SIGUSR1); rerunning continues it."""
    out_dir = Path(out_dir)
    digest = config_digest(config)
    metrics_path = out_dir / "metrics.json"
    if metrics_path.is_file():
        done = json.loads(metrics_path.read_text())
        if done.get("config_digest") == digest:
            return done
        raise TrainingError(f"{out_dir} already holds a finished run of a different config; "
                            "use another --out folder or delete it")
    checkpoint_path = out_dir / artifacts.CHECKPOINT
    checkpoint = load_checkpoint(checkpoint_path, digest, on_config_change)
    context = from_environment()
    batch = config["train"]["batch_size"]
    if batch % context.world_size:
        raise TrainingError(f"config key 'train.batch_size': the global batch {batch} does not "
                            f"split over {context.world_size} ranks; launch a number of "
                            "processes that divides it")
    stop = StopConditions(parse_duration(config["train"]["stop_after"]))
    device = resolve_device(config["device"], context)
    setup(context, device.type)
    try:
        with stop:
            return _train(config, out_dir, digest, checkpoint, checkpoint_path, stop, context,
                          device)
    finally:
        teardown(context)


@dataclass
class _TrainingSegment:
    """What one segment of a run (set up by :func:`_set_up`) shares between the epoch loop
    and the end of the run; the run's own progress lives in ``state`` (a :class:`RunState`)."""

    config: dict
    out_dir: Path
    digest: str
    checkpoint_path: Path
    stop: StopConditions
    context: Distributed
    device: torch.device
    data: object
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    step_fn: TrainStep
    step_note: str
    state: RunState
    resumed_from: Optional[int]
    segment: Segment
    gradient_watch: GradientWatch

    def segment_records(self, ended_by, epoch, step, partial=None, seconds=0.0, images=0):
        """Every segment's record so far, this one's updated, and this one's wall time."""
        state = self.state
        current = self.segment.update(ended_by, epoch, step, partial,
                                     state.train_seconds + seconds, state.images_seen + images)
        return state.segments + [current], current["wall_seconds"]

    def save_checkpoint(self, epochs_done: int, step_now: int, partial=None, seconds=0.0,
                        images=0, ended_by=INTERRUPTED):
        """Everything a rerun needs to continue exactly here (written atomically, by rank 0:
        the weights and optimiser state are the same on every rank)."""
        self.gradient_watch.check(self.step_note)
        if not self.context.is_main:
            return
        state = self.state
        segments, wall = self.segment_records(ended_by, epochs_done, step_now, partial, seconds,
                                              images)
        saved = RunState(epochs_done, step_now, partial, state.history, state.best,
                         state.train_seconds + seconds, state.images_seen + images,
                         state.wall_seconds + wall, segments)
        artifacts.save_torch(self.checkpoint_path, {
            "config_digest": self.digest, "config": self.config,
            "data_fingerprint": self.data.description.get("fingerprint"),
            **saved.to_checkpoint(), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()})


def _train(config: dict, out_dir: Path, digest: str, checkpoint: Optional[dict],
           checkpoint_path: Path, stop: StopConditions, context: Distributed,
           device: torch.device) -> dict:
    current = _set_up(config, out_dir, digest, checkpoint, checkpoint_path, stop, context, device)
    last_eval = _train_epochs(current)
    return _finish(current, last_eval)


def _set_up(config: dict, out_dir: Path, digest: str, checkpoint: Optional[dict],
            checkpoint_path: Path, stop: StopConditions, context: Distributed,
            device: torch.device) -> _TrainingSegment:
    """The segment's set-up: data, model, optimiser and step, restored from the checkpoint
    when there is one."""
    started = time.perf_counter()
    torch.manual_seed(config["seed"])
    train_cfg = config["train"]
    data = build_data(config, device, context)
    if checkpoint is not None:
        check_same_data(checkpoint, data.description, checkpoint_path)
    if context.is_main and (checkpoint is None or not (out_dir / "config.yaml").is_file()):
        # fixed when the run starts: a later segment's execution keys (device, data path) go
        # into its segment record, not over the config the run started with; a time budget
        # belongs to one segment, so rerunning the config trains the whole run
        artifacts.write_yaml(out_dir / "config.yaml",
                             {**config, "train": {**config["train"], "stop_after": None}})
    model = build_model(config, data.num_classes)
    if train_cfg["init_from"]:
        model.load_state_dict(artifacts.load_state_dict(train_cfg["init_from"]))
    model = model.to(device)
    if context.enabled and train_cfg["sync_batchnorm"]:
        model = sync_batchnorm(model)
    if train_cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    teacher = build_teacher(config, data.num_classes, device)
    restriction = build_restriction(config)
    optimizer = build_optimizer(model, train_cfg)
    scheduler = build_scheduler(optimizer, train_cfg)

    step_fn = build_train_step(config, model, optimizer, restriction, teacher, device,
                               distributed=context.enabled)

    state = RunState()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = RunState.from_checkpoint(checkpoint)
    resumed_from = state.epoch if checkpoint is not None else None
    step_fn, step_note = _checked_step(step_fn, config, model, optimizer, restriction, teacher,
                                       device, data.num_classes, context)

    if len(data.train) == 0:
        raise TrainingError(f"config key 'train.batch_size': {train_cfg['batch_size']} is larger "
                            f"than the {data.train.num_images} training images and drop_last is "
                            "on, so no step would run; lower the batch size or use more data")
    segment = Segment(config, device, state, len(data.train), started, context.world_size)
    segment.record["train_step"] = step_note
    if segment.record["data_parallel"]:
        segment.record["data_parallel"] = (f"{torch.distributed.get_backend()}, "
                                           f"{data_parallel_form(step_fn)}")
    return _TrainingSegment(config, out_dir, digest, checkpoint_path, stop, context, device,
                            data, model, optimizer, scheduler, step_fn, step_note, state,
                            resumed_from, segment, GradientWatch(model, optimizer))


def _train_epochs(current: _TrainingSegment) -> Optional[dict]:
    """The epoch loop: train, record, evaluate, checkpoint, until the last epoch or a stop
    (which checkpoints and raises :class:`TrainingStopped`).  Returns the last evaluation."""
    config, state, data, context = current.config, current.state, current.data, current.context
    train_cfg = config["train"]
    epochs, max_steps = train_cfg["epochs"], train_cfg["max_steps"]
    last_eval = state.history[-1].get("test") if state.history else None
    # this segment's seconds per whole epoch, the last few only: a shared machine's pace
    # changes as other work comes and goes, and the estimate should follow it
    whole_epoch_seconds = collections.deque(maxlen=5)
    for epoch in range(state.epoch, epochs):
        if max_steps is not None and state.step >= max_steps:
            break
        resume = state.partial if epoch == state.epoch else None
        data.train.set_epoch(epoch, start_batch=resume["batch"] if resume else 0)
        lr = current.optimizer.param_groups[0]["lr"]
        tick = time.perf_counter()
        stats = train_one_epoch(
            current.step_fn, data.train, epoch=epoch, step=state.step, max_steps=max_steps,
            progress=config["progress"], description=f"epoch {epoch + 1}/{epochs}",
            partial=resume, checkpoint_every=train_cfg["checkpoint_every_steps"],
            on_checkpoint=lambda progress_state, epoch=epoch, tick=tick: current.save_checkpoint(
                epoch, progress_state["step"], progress_state,
                time.perf_counter() - tick, progress_state["images"]),
            should_stop=current.stop, context=context)
        if current.device.type == "cuda":
            torch.cuda.synchronize(current.device)
        seconds = time.perf_counter() - tick
        if stats["stopped"] is not None:
            progress_state = stats["stopped"]
            current.save_checkpoint(epoch, progress_state["step"], progress_state, seconds,
                                progress_state["images"], ended_by=f"stopped by {current.stop.reason}")
            raise TrainingStopped(current.stop.reason, current.segment.position(epoch, progress_state),
                                  progress_state["step"], current.out_dir)
        # an epoch trained in part (resumed, or cut by max_steps) is scaled up from its steps,
        # so that the first estimate after a resume reflects this machine, not the average
        # of earlier segments
        trained_steps = stats["step"] - state.step
        if trained_steps > 0:
            whole_epoch_seconds.append(seconds * len(data.train) / trained_steps)
        state.partial = None
        state.train_seconds += seconds
        state.images_seen += stats["images"]
        state.step = stats["step"]
        current.scheduler.step()
        finished = epoch + 1 == epochs or (max_steps is not None and state.step >= max_steps)
        record = _epoch_record(epoch, lr, stats, state)
        if finished or (epoch + 1) % config["eval"]["every"] == 0:
            context.broadcast_buffers(current.model)  # rank 0's BatchNorm statistics everywhere
            last_eval = evaluate(current.model, data.test, train_cfg["mixed_precision"], context)
            record["test"] = last_eval
            if state.best is None or last_eval["top1"] > state.best["top1"]:
                state.best = {**last_eval, "epoch": epoch + 1}
        state.history.append(record)
        state.epoch = epoch + 1
        if config["progress"] and context.is_main:
            pace = (sum(whole_epoch_seconds) / len(whole_epoch_seconds) if whole_epoch_seconds
                    else state.train_seconds / max(len(state.history), 1))
            tqdm.write(_epoch_line(record, epochs, state.best, stats["images"] / seconds, pace),
                       file=sys.stdout)
            sys.stdout.flush()
        if not finished and context.any(current.stop(), current.device):
            current.save_checkpoint(state.epoch, state.step, ended_by=f"stopped by {current.stop.reason}")
            raise TrainingStopped(current.stop.reason, float(state.epoch), state.step, current.out_dir)
        current.save_checkpoint(state.epoch, state.step)
    return last_eval


def _epoch_record(epoch: int, lr: float, stats: dict, state: RunState) -> dict:
    """One epoch's history entry.  The history holds only what the math decides, so that a
    resumed run's equals an uninterrupted one's; timings live in the segments."""
    record = {"epoch": epoch + 1, "lr": lr, "train_loss": stats["train_loss"],
              "train_top1": stats["train_top1"], "steps": state.step}
    if stats["ires_removed"] is not None:
        record["ires_removed"] = stats["ires_removed"]
        if math.isfinite(stats["ires_onset"]):  # unknown in an epoch resumed from before
            record["ires_onset"] = stats["ires_onset"]
            record["ires_onset_min"] = min([stats["ires_onset"]] + [
                earlier["ires_onset"] for earlier in state.history if "ires_onset" in earlier])
    return record


def _finish(current: _TrainingSegment, last_eval: Optional[dict]) -> dict:
    """The end of the run: the final evaluation where the loop had none, then ``model.pt``
    and ``metrics.json`` (written last: its presence means the run finished)."""
    state, context = current.state, current.context
    if last_eval is None:  # resumed after the last epoch had already been checkpointed
        context.broadcast_buffers(current.model)
        last_eval = evaluate(current.model, current.data.test, current.config["train"]["mixed_precision"],
                             context)
    segments, wall = current.segment_records("complete", state.epoch, state.step)
    metrics = {
        "status": "complete",
        "config_digest": current.digest,
        "seed": current.config["seed"],
        "final": {**last_eval, "epoch": state.epoch},
        "best": state.best,
        "history": state.history,
        "steps": state.step,
        "epochs_completed": len(state.history),
        "data": current.data.description,
        "train_seconds": state.train_seconds,
        "train_images_per_s": (state.images_seen / state.train_seconds
                               if state.train_seconds > 0 else None),
        "wall_seconds": state.wall_seconds + wall,
        "resumed_from_epoch": current.resumed_from,
        "world_size": context.world_size,
        "segments": segments,
        "provenance": provenance.collect(current.device),
    }
    if context.is_main:
        artifacts.save_torch(current.out_dir / "model.pt", current.model.state_dict())
        artifacts.write_json(current.out_dir / "metrics.json", metrics)
    context.barrier()
    return metrics
