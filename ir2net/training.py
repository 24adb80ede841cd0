"""Training recipes: CIFAR-10 from scratch and the ImageNet two-stage recipe.

Reads top to bottom: building blocks (model, teacher, optimiser, schedule,
losses), one training epoch with IRes (Algorithm 1), evaluation, then
:func:`run`, which owns a run folder::

    DIR/config.yaml      the resolved config (enough to rerun)
    DIR/checkpoint/      resumable state, rewritten atomically after every epoch
    DIR/model.pt         final state_dict             (written at the end)
    DIR/metrics.json     metrics with provenance      (written last: the run is complete)

Rerunning the same command on the same DIR resumes from the checkpoint, or
returns at once when the run is already complete.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import artifacts, provenance
from .binarize import set_binary_compute_dtype
from .compilation import CompiledOrEager
from .config import config_digest, parse_duration
from .data import build_data
from .models import create_model, model_info
from .recovery import RecoverySpec, recovery_preset
from .restriction import InformationRestriction

__all__ = ["TrainingError", "TrainingStopped", "StopConditions", "RunState", "StepOutput",
           "RESUMABLE_EXIT", "resolve_device", "build_model", "build_teacher", "build_optimizer",
           "build_scheduler", "distillation_loss", "autocast", "TrainStep", "CudaGraphStep",
           "build_step", "train_one_epoch", "evaluate", "run", "build_restriction"]


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a checkpoint of another config, ...)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
    if not info.binary:  # a plain real-valued network (the teacher)
        return create_model(info.name, num_classes=num_classes)
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
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


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


class TrainStep:
    """One optimisation step: forward, the IRes masked pass (Algorithm 1) when
    ``restriction`` is set, Eq. 10, backward, update.  Everything stays on the device:
    no value is read back to the host here.  ``mixed_precision="bfloat16"`` runs the
    forward passes under ``torch.autocast`` (see :func:`autocast`)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 restriction: Optional[InformationRestriction] = None,
                 teacher: Optional[nn.Module] = None, label_smoothing: float = 0.0,
                 mixed_precision: str = "none"):
        self.model = model
        self.optimizer = optimizer
        self.restriction = restriction
        self.teacher = teacher
        self.label_smoothing = label_smoothing
        self.mixed_precision = mixed_precision
        self.autocast_cache = True  # CUDA-graph capture turns the weight-cast cache off

    def _criterion(self, logits, labels, soft_target):
        logits = logits.float()  # the loss in float32, also under mixed precision
        if soft_target is not None:
            return distillation_loss(logits, soft_target.float())
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        """``Loss_total``, the logits of the original images (both with the graph attached)
        and the fraction of input pixels IRes removed (``None`` without IRes)."""
        with autocast(images.device, self.mixed_precision, self.autocast_cache):
            return self._loss(images, labels)

    def _loss(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        soft_target = None
        if self.teacher is not None:
            with torch.no_grad():
                soft_target = self.teacher(images)
        if self.restriction is None:
            logits = self.model(images)
            return StepOutput(self._criterion(logits, labels, soft_target), logits, None)
        logits, attention_source = self.model(images, return_attention_source=True)
        loss = self._criterion(logits, labels, soft_target)
        masked, removed = self.restriction.restrict(images, attention_source)
        masked_loss = self._criterion(self.model(masked), labels, soft_target)
        return StepOutput(self.restriction.combine(loss, masked_loss), logits, removed)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        output = self.loss(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        self.optimizer.step()
        return StepOutput(output.loss.detach(), output.logits.detach(), output.removed_fraction)


class CudaGraphStep:
    """A :class:`TrainStep` captured into a CUDA graph and replayed (SGD on CUDA only).

    At batch 128 the small CIFAR models are bound by kernel launches, not arithmetic;
    replaying one graph per step removes that overhead.  The math is the eager step's:
    the first step runs eagerly (it creates the optimizer's momentum buffers), the
    warm-up passes before a capture only run forward/backward and BatchNorm's running
    statistics are restored after them.  The graph bakes in the learning rate, so it is
    recaptured whenever the rate changes (once per epoch under the cosine schedule);
    batches of another shape (a last partial batch) run eagerly.
    """

    def __init__(self, step: TrainStep, warmup: int = 2):
        if not isinstance(step.optimizer, torch.optim.SGD):
            raise ValueError("CUDA-graph capture is implemented for SGD only")
        self.step = step
        self.model = step.model
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
                self.optimizer.zero_grad(set_to_none=True)
                self.step.loss(self.static_images, self.static_labels).loss.backward()
        torch.cuda.current_stream().wait_stream(side)
        for module, (mean, var, count) in zip(norms, saved):
            module.running_mean.copy_(mean)
            module.running_var.copy_(var)
            module.num_batches_tracked.copy_(count)
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            output = self.step.loss(self.static_images, self.static_labels)
            output.loss.backward()
            self.optimizer.step()
        self.static = StepOutput(output.loss.detach(), output.logits.detach(),
                                 output.removed_fraction)

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
               cuda_graphs: bool = True, compile: bool = False, mixed_precision: str = "none"):
    """The fastest available form of :class:`TrainStep` for this device and optimizer."""
    device = next(model.parameters()).device
    forward_model = _CompileFallback(model) if compile else model
    step = TrainStep(forward_model, optimizer, restriction=restriction, teacher=teacher,
                     label_smoothing=label_smoothing, mixed_precision=mixed_precision)
    if cuda_graphs and device.type == "cuda" and isinstance(optimizer, torch.optim.SGD):
        return CudaGraphStep(step)
    return step


# ----------------------------------------------------------------------------- one epoch
LOG_INTERVAL_S = 60.0  # without a progress bar, a line at most this often within an epoch


def train_one_epoch(step_fn: TrainStep, batches, *, epoch: int, step: int,
                    max_steps: Optional[int], progress: bool, description: str = "",
                    partial: Optional[dict] = None, checkpoint_every: Optional[int] = None,
                    on_checkpoint: Optional[Callable[[dict], None]] = None,
                    should_stop: Optional[Callable[[], bool]] = None) -> dict:
    """One pass over the training batches.

    ``partial`` resumes an epoch that a checkpoint interrupted (``batches`` must then start
    at ``partial["batch"]``); every ``checkpoint_every`` steps ``on_checkpoint`` receives
    the epoch's progress so far.  When ``should_stop()`` turns true before the last batch,
    the epoch ends early and ``stats["stopped"]`` holds that progress (what a mid-epoch
    checkpoint holds).  A bar is drawn only on a terminal; otherwise (a log file, a
    cluster job) a line is printed about once a minute."""
    step_fn.model.train()
    device = next(step_fn.model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    removed_sum = torch.zeros((), device=device)
    seen, batch_index, restricting = 0, 0, False
    if partial is not None:
        loss_sum = partial["loss_sum"].to(device)
        correct = partial["correct"].to(device)
        removed_sum = partial.get("removed_sum", removed_sum).to(device)
        seen, batch_index = partial["seen"], partial["batch"]
        restricting = partial.get("restricting", False)
    first_bad_step = torch.full((), -1, device=device, dtype=torch.int64)
    step_counter = torch.full((), step, device=device, dtype=torch.int64)
    images_now = 0
    remaining = len(batches) - batch_index
    total = remaining if max_steps is None else min(remaining, max(max_steps - step, 0))
    bar = tqdm(total=total, desc=description or f"epoch {epoch + 1}", leave=False,
               disable=not (progress and sys.stderr.isatty()), dynamic_ncols=True)
    log_lines = progress and bar.disable
    tick = last_log = time.perf_counter()

    def check_finite():
        bad = int(first_bad_step.item())
        if bad >= 0:
            raise TrainingError(f"the training loss became NaN or Inf at step {bad} (epoch "
                                f"{epoch + 1}); lower train.lr or check the data. No result was "
                                "written.")

    def progress_state() -> dict:
        return {"batch": batch_index, "loss_sum": loss_sum.detach().cpu(), "correct": correct.cpu(),
                "removed_sum": removed_sum.cpu(), "restricting": restricting, "seen": seen,
                "step": step, "images": images_now}

    stopped = None
    for images, labels in batches:
        if max_steps is not None and step >= max_steps:
            break
        loss, logits, removed = step_fn(images, labels)
        # bookkeeping stays on the device; the host looks only every 25 steps
        first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), step_counter,
                                     first_bad_step)
        step_counter += 1
        loss_sum += loss * labels.numel()
        correct += (logits.argmax(1) == labels).sum()
        if removed is not None:
            removed_sum += removed
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
                      f"{len(batches)}, train loss {loss_sum.item() / seen:.4f}, "
                      f"{images_now / (last_log - tick):.0f} img/s", flush=True)
        mid_epoch = batch_index < len(batches)
        if (checkpoint_every and on_checkpoint is not None and step % checkpoint_every == 0
                and mid_epoch):
            check_finite()  # never checkpoint a diverged state
            on_checkpoint(progress_state())
        if should_stop is not None and mid_epoch and should_stop():
            check_finite()
            stopped = progress_state()
            break
    bar.close()
    check_finite()
    return {"train_loss": loss_sum.item() / max(seen, 1),
            "train_top1": 100.0 * correct.item() / max(seen, 1), "images": images_now,
            "step": step, "stopped": stopped,
            "ires_removed": removed_sum.item() / batch_index if restricting else None}


@torch.no_grad()
def evaluate(model: nn.Module, batches, mixed_precision: str = "none") -> dict:
    """Top-1/top-5 accuracy and loss over every test image (no batch is dropped), in the
    precision the model was trained in."""
    model.eval()
    device = next(model.parameters()).device
    top1 = torch.zeros((), device=device, dtype=torch.int64)
    top5 = torch.zeros((), device=device, dtype=torch.int64)
    loss_sum = torch.zeros((), device=device)
    count = 0
    for images, labels in batches:
        with autocast(device, mixed_precision):
            logits = model(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        k = min(5, logits.shape[1])
        ranked = logits.topk(k, dim=1).indices
        hits = ranked == labels[:, None]
        top1 += hits[:, 0].sum()
        top5 += hits.any(dim=1).sum()
        count += labels.numel()
    return {"top1": 100.0 * top1.item() / count, "top5": 100.0 * top5.item() / count,
            "loss": loss_sum.item() / count, "images": count}


# ----------------------------------------------------------------------------- a whole run
#: Exit status of ``ir2net train`` when a run stopped on its time budget or a signal: its
#: checkpoint is written and rerunning continues it (EX_TEMPFAIL: "try again later").
RESUMABLE_EXIT = 75


class TrainingStopped(Exception):
    """The run stopped cleanly before its end (time budget, SIGTERM, SIGUSR1); its
    checkpoint is written and rerunning the same command continues it."""

    def __init__(self, reason: str, epoch: float, step: int, out_dir: Path):
        super().__init__(f"{out_dir}: stopped by {reason} at epoch {epoch:.2f} (step {step}); the "
                         "checkpoint is written: rerun the same command to continue")
        self.reason, self.epoch, self.step = reason, epoch, step


class StopConditions:
    """When to stop a run early and cleanly: a wall-time budget (``train.stop_after``) and,
    while in use as a context manager on the main thread, SIGTERM and SIGUSR1 (what SLURM
    sends before a time limit with ``--signal``).  A second signal interrupts at once."""

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self, budget_seconds: Optional[float] = None):
        self.deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
        self.reason: Optional[str] = None
        self._previous = {}

    def __call__(self) -> bool:
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "its time budget (train.stop_after)"
        return self.reason is not None

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.reason is not None and self.reason.startswith("signal"):
            raise KeyboardInterrupt(f"second signal ({name})")
        self.reason = f"signal {name}"
        print(f"ir2net: {name} received; stopping after this step and writing the checkpoint",
              file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name, None)
                if number is not None:
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
        return False


@dataclass
class RunState:
    """Everything about a run in progress besides the weights and optimiser: where it is,
    what it has measured so far, and the segments (machine, precision, wall time) that
    trained it.  A checkpoint holds exactly this plus the weights."""

    epoch: int = 0                     # epochs completed
    step: int = 0
    partial: Optional[dict] = None     # progress inside the next epoch
    history: list = field(default_factory=list)
    best: Optional[dict] = None
    train_seconds: float = 0.0
    images_seen: int = 0
    wall_seconds: float = 0.0          # over every segment up to this checkpoint
    segments: list = field(default_factory=list)

    FIELDS = ("epoch", "step", "partial", "history", "best", "train_seconds", "images_seen",
              "wall_seconds", "segments")

    @classmethod
    def from_checkpoint(cls, state: dict) -> "RunState":
        return cls(**{name: state[name] for name in cls.FIELDS if name in state})

    def to_checkpoint(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Segment:
    """One stretch of training by one process on one machine, as the record keeps it."""

    def __init__(self, config: dict, device: torch.device, state: RunState, epoch_batches: int,
                 started: float):
        hardware = provenance.hardware(device)
        git = provenance.git_commit()
        self.epoch_batches = epoch_batches
        self.started = started  # perf_counter() when the process began this run: setup counts
        self.record = {
            "started_at": _utc_now(), "ended_at": None, "ended_by": None,
            "host": platform.node(),
            "hardware": {key: hardware[key] for key in
                         ("device", "cpu", "cpu_count", "torch_threads", "gpu") if key in hardware},
            "precision": {"binary_dtype": config["model"]["binary_dtype"],
                          "mixed_precision": config["train"]["mixed_precision"]},
            "channels_last": config["train"]["channels_last"],
            "commit": (git["commit"] or "unknown")[:12] + ("+dirty" if git["dirty"] else ""),
            "start_epoch": self.position(state.epoch, state.partial),
            "start_step": state.step}
        self.train_seconds0, self.images0 = state.train_seconds, state.images_seen

    def position(self, epoch: int, partial: Optional[dict]) -> float:
        """Epochs done as a fraction: 12.5 is half-way through the 13th epoch."""
        done = partial["batch"] / self.epoch_batches if partial and self.epoch_batches else 0.0
        return round(epoch + done, 4)

    def update(self, ended_by: str, epoch: int, step: int,
               partial: Optional[dict], train_seconds: float, images: int) -> dict:
        """The record of this segment as of now (``train_seconds``/``images``: the run's
        totals, including a partial epoch)."""
        wall = time.perf_counter() - self.started
        trained = train_seconds - self.train_seconds0
        self.record.update(ended_at=_utc_now(), ended_by=ended_by,
                           end_epoch=self.position(epoch, partial), end_step=step,
                           steps=step - self.record["start_step"],
                           images=images - self.images0, train_seconds=round(trained, 1),
                           wall_seconds=round(wall, 1),
                           images_per_s=round((images - self.images0) / trained, 1)
                           if trained > 0 else None)
        return dict(self.record)


INTERRUPTED = "the process ended after this checkpoint (killed, crashed or interrupted)"


def _load_checkpoint(path: Path, digest: str, on_config_change: str = "error") -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise TrainingError(f"checkpoint {path} is unreadable ({error}); delete it to start the "
                            "run again from scratch") from error
    if state.get("config_digest") != digest and on_config_change == "restart":
        stale = path.with_name(f"stale-{state.get('config_digest')}.pt")
        os.replace(path, stale)  # kept, never deleted: the new config starts from scratch
        print(f"ir2net: the config changed; the old checkpoint is kept as {stale} and the run "
              "starts from scratch", file=sys.stderr)
        return None
    if state.get("config_digest") != digest:
        raise TrainingError(f"checkpoint {path} was written by a different config (digest "
                            f"{state.get('config_digest')} != {digest}); use another --out folder "
                            "or delete the old run folder")
    return state


def _check_same_data(state: dict, data_description: dict, checkpoint_path: Path) -> None:
    saved, now = state.get("data_fingerprint"), data_description.get("fingerprint")
    if saved is not None and now is not None and saved != now:
        raise TrainingError(
            f"checkpoint {checkpoint_path} was trained on other data (fingerprint {saved}) than "
            f"data.root now gives ({now}: {data_description.get('train')}); point data.root at "
            "the dataset the run started with")


def _epoch_line(record: dict, epochs: int, best: Optional[dict], images_per_s: float,
                seconds_per_epoch: float) -> str:
    line = (f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}, "
            f"train top-1 {record['train_top1']:.2f}%")
    if "test" in record:
        line += f", test top-1 {record['test']['top1']:.2f}% (best {best['top1']:.2f}% at epoch " \
                f"{best['epoch']})"
    if record.get("ires_removed") is not None:
        line += f", IRes removed {100 * record['ires_removed']:.1f}% of pixels"
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
    checkpoint_path = out_dir / "checkpoint" / "last.pt"
    checkpoint = _load_checkpoint(checkpoint_path, digest, on_config_change)
    stop = StopConditions(parse_duration(config["train"]["stop_after"]))
    with stop:
        return _train(config, out_dir, digest, checkpoint, checkpoint_path, stop)


def _train(config: dict, out_dir: Path, digest: str, checkpoint: Optional[dict],
           checkpoint_path: Path, stop: StopConditions) -> dict:
    started = time.perf_counter()
    device = resolve_device(config["device"])
    torch.manual_seed(config["seed"])
    train_cfg = config["train"]
    data = build_data(config, device)
    if checkpoint is not None:
        _check_same_data(checkpoint, data.description, checkpoint_path)
    artifacts.write_yaml(out_dir / "config.yaml", config)
    model = build_model(config, data.num_classes)
    if train_cfg["init_from"]:
        model.load_state_dict(artifacts.load_state_dict(train_cfg["init_from"]))
    model = model.to(device)
    if train_cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    teacher = build_teacher(config, data.num_classes, device)
    restriction = build_restriction(config)
    optimizer = build_optimizer(model, train_cfg)
    scheduler = build_scheduler(optimizer, train_cfg)

    step_fn = build_step(model, optimizer, restriction=restriction, teacher=teacher,
                         label_smoothing=train_cfg["label_smoothing"],
                         cuda_graphs=train_cfg["cuda_graphs"], compile=train_cfg["compile"],
                         mixed_precision=train_cfg["mixed_precision"])

    state = RunState()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = RunState.from_checkpoint(checkpoint)
    resumed_from = state.epoch if checkpoint is not None else None

    if len(data.train) == 0:
        raise TrainingError(f"config key 'train.batch_size': {train_cfg['batch_size']} is larger "
                            f"than the {data.train.num_images} training images and drop_last is "
                            "on, so no step would run; lower the batch size or use more data")
    epochs, max_steps = train_cfg["epochs"], train_cfg["max_steps"]
    segment = Segment(config, device, state, len(data.train), started)

    def segment_records(ended_by, epoch, step, partial=None, seconds=0.0, images=0):
        current = segment.update(ended_by, epoch, step, partial,
                                 state.train_seconds + seconds, state.images_seen + images)
        return state.segments + [current], current["wall_seconds"]

    def save_checkpoint(epochs_done: int, step_now: int, partial=None, seconds=0.0, images=0,
                        ended_by=INTERRUPTED):
        """Everything a rerun needs to continue exactly here (written atomically)."""
        segments, wall = segment_records(ended_by, epochs_done, step_now, partial, seconds, images)
        saved = RunState(epochs_done, step_now, partial, state.history, state.best,
                         state.train_seconds + seconds, state.images_seen + images,
                         state.wall_seconds + wall, segments)
        artifacts.save_torch(checkpoint_path, {
            "config_digest": digest, "config": config,
            "data_fingerprint": data.description.get("fingerprint"),
            **saved.to_checkpoint(), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})

    last_eval = state.history[-1].get("test") if state.history else None
    for epoch in range(state.epoch, epochs):
        if max_steps is not None and state.step >= max_steps:
            break
        resume = state.partial if epoch == state.epoch else None
        data.train.set_epoch(epoch, start_batch=resume["batch"] if resume else 0)
        lr = optimizer.param_groups[0]["lr"]
        tick = time.perf_counter()
        stats = train_one_epoch(
            step_fn, data.train, epoch=epoch, step=state.step, max_steps=max_steps,
            progress=config["progress"], description=f"epoch {epoch + 1}/{epochs}",
            partial=resume, checkpoint_every=train_cfg["checkpoint_every_steps"],
            on_checkpoint=lambda progress_state, epoch=epoch, tick=tick: save_checkpoint(
                epoch, progress_state["step"], progress_state,
                time.perf_counter() - tick, progress_state["images"]),
            should_stop=stop)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - tick
        if stats["stopped"] is not None:
            progress_state = stats["stopped"]
            save_checkpoint(epoch, progress_state["step"], progress_state, seconds,
                            progress_state["images"], ended_by=f"stopped by {stop.reason}")
            raise TrainingStopped(stop.reason, segment.position(epoch, progress_state),
                                  progress_state["step"], out_dir)
        state.partial = None
        state.train_seconds += seconds
        state.images_seen += stats["images"]
        state.step = stats["step"]
        scheduler.step()
        finished = epoch + 1 == epochs or (max_steps is not None and state.step >= max_steps)
        # the history holds only what the math decides, so that a resumed run's equals an
        # uninterrupted one's; timings live in the segments
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": stats["train_loss"],
                  "train_top1": stats["train_top1"], "steps": state.step}
        if stats["ires_removed"] is not None:
            record["ires_removed"] = stats["ires_removed"]
        if finished or (epoch + 1) % config["eval"]["every"] == 0:
            last_eval = evaluate(model, data.test, train_cfg["mixed_precision"])
            record["test"] = last_eval
            if state.best is None or last_eval["top1"] > state.best["top1"]:
                state.best = {**last_eval, "epoch": epoch + 1}
        state.history.append(record)
        state.epoch = epoch + 1
        if config["progress"]:
            tqdm.write(_epoch_line(record, epochs, state.best, stats["images"] / seconds,
                                   state.train_seconds / max(len(state.history), 1)),
                       file=sys.stdout)
            sys.stdout.flush()
        if not finished and stop():
            save_checkpoint(state.epoch, state.step, ended_by=f"stopped by {stop.reason}")
            raise TrainingStopped(stop.reason, float(state.epoch), state.step, out_dir)
        save_checkpoint(state.epoch, state.step)

    if last_eval is None:  # resumed after the last epoch had already been checkpointed
        last_eval = evaluate(model, data.test, train_cfg["mixed_precision"])
    segments, wall = segment_records("complete", state.epoch, state.step)
    metrics = {
        "status": "complete",
        "config_digest": digest,
        "seed": config["seed"],
        "final": {**last_eval, "epoch": state.epoch},
        "best": state.best,
        "history": state.history,
        "steps": state.step,
        "epochs_completed": len(state.history),
        "data": data.description,
        "train_seconds": state.train_seconds,
        "train_images_per_s": (state.images_seen / state.train_seconds
                               if state.train_seconds > 0 else None),
        "wall_seconds": state.wall_seconds + wall,
        "resumed_from_epoch": resumed_from,
        "segments": segments,
        "provenance": provenance.collect(device),
    }
    artifacts.save_torch(out_dir / "model.pt", model.state_dict())
    artifacts.write_json(out_dir / "metrics.json", metrics)
    return metrics
