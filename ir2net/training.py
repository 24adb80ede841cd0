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
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import artifacts, provenance
from .binarize import set_binary_compute_dtype
from .compilation import CompiledOrEager
from .config import config_digest
from .data import build_data
from .models import create_model
from .recovery import RecoverySpec, recovery_preset
from .restriction import InformationRestriction

__all__ = ["TrainingError", "resolve_device", "build_model", "build_teacher", "build_optimizer",
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
    if model_cfg["name"] == "resnet34_teacher":
        return create_model("resnet34_teacher", num_classes=num_classes)
    kwargs = dict(num_classes=num_classes, precision=model_cfg["precision"],
                  sign_zero=model_cfg["sign_zero"], scaling=model_cfg["scaling"],
                  recovery=recovery_spec(model_cfg), taps=model_cfg["taps"])
    if model_cfg["name"] == "vgg_small":
        kwargs["image_size"] = config["data"]["image_size"]
    model = create_model(model_cfg["name"], **kwargs)
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
    restriction = InformationRestriction(ires["lam"], ires["mu"], ires["variant"])
    return restriction if restriction.active else None  # lambda = 0: no restriction


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

    def loss(self, images: torch.Tensor, labels: torch.Tensor):
        """``(Loss_total, logits of the original images)`` with the graph attached."""
        with autocast(images.device, self.mixed_precision, self.autocast_cache):
            return self._loss(images, labels)

    def _loss(self, images: torch.Tensor, labels: torch.Tensor):
        soft_target = None
        if self.teacher is not None:
            with torch.no_grad():
                soft_target = self.teacher(images)
        if self.restriction is None:
            logits = self.model(images)
            return self._criterion(logits, labels, soft_target), logits
        logits, attention_source = self.model(images, return_attention_source=True)
        loss = self._criterion(logits, labels, soft_target)
        masked = self.restriction.mask_images(images, attention_source)
        masked_loss = self._criterion(self.model(masked), labels, soft_target)
        return self.restriction.combine(loss, masked_loss), logits

    def __call__(self, images: torch.Tensor, labels: torch.Tensor):
        loss, logits = self.loss(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach()


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
                self.step.loss(self.static_images, self.static_labels)[0].backward()
        torch.cuda.current_stream().wait_stream(side)
        for module, (mean, var, count) in zip(norms, saved):
            module.running_mean.copy_(mean)
            module.running_var.copy_(var)
            module.num_batches_tracked.copy_(count)
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            loss, logits = self.step.loss(self.static_images, self.static_labels)
            loss.backward()
            self.optimizer.step()
        self.static_loss, self.static_logits = loss.detach(), logits.detach()

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
        return self.static_loss.clone(), self.static_logits.clone()


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
def train_one_epoch(step_fn: TrainStep, batches, *, epoch: int, step: int,
                    max_steps: Optional[int], progress: bool, description: str = "",
                    partial: Optional[dict] = None, checkpoint_every: Optional[int] = None,
                    on_checkpoint: Optional[Callable[[dict], None]] = None) -> dict:
    """One pass over the training batches.

    ``partial`` resumes an epoch that a checkpoint interrupted (``batches`` must then start
    at ``partial["batch"]``); every ``checkpoint_every`` steps ``on_checkpoint`` receives
    the epoch's progress so far."""
    step_fn.model.train()
    device = next(step_fn.model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen, batch_index = 0, 0
    if partial is not None:
        loss_sum = partial["loss_sum"].to(device)
        correct = partial["correct"].to(device)
        seen, batch_index = partial["seen"], partial["batch"]
    first_bad_step = torch.full((), -1, device=device, dtype=torch.int64)
    step_counter = torch.full((), step, device=device, dtype=torch.int64)
    images_now = 0
    remaining = len(batches) - batch_index
    total = remaining if max_steps is None else min(remaining, max(max_steps - step, 0))
    bar = tqdm(total=total, desc=description or f"epoch {epoch + 1}", disable=not progress,
               leave=False, dynamic_ncols=True)

    def check_finite():
        bad = int(first_bad_step.item())
        if bad >= 0:
            raise TrainingError(f"the training loss became NaN or Inf at step {bad} (epoch "
                                f"{epoch + 1}); lower train.lr or check the data. No result was "
                                "written.")

    for images, labels in batches:
        if max_steps is not None and step >= max_steps:
            break
        loss, logits = step_fn(images, labels)
        # bookkeeping stays on the device; the host looks only every 25 steps
        first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), step_counter,
                                     first_bad_step)
        step_counter += 1
        loss_sum += loss * labels.numel()
        correct += (logits.argmax(1) == labels).sum()
        seen += labels.numel()
        images_now += labels.numel()
        step += 1
        batch_index += 1
        bar.update(1)
        if step % 25 == 0:
            check_finite()
            if progress:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}")
        if (checkpoint_every and on_checkpoint is not None and step % checkpoint_every == 0
                and batch_index < len(batches)):
            check_finite()  # never checkpoint a diverged state
            on_checkpoint({"batch": batch_index, "loss_sum": loss_sum.detach().cpu(),
                           "correct": correct.cpu(), "seen": seen, "step": step,
                           "images": images_now})
    bar.close()
    check_finite()
    return {"train_loss": loss_sum.item() / max(seen, 1),
            "train_top1": 100.0 * correct.item() / max(seen, 1), "images": images_now,
            "step": step}


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


def run(config: dict, out_dir: str | Path, on_config_change: str = "error") -> dict:
    """Train and evaluate one configuration in ``out_dir``; returns the metrics.

    ``on_config_change``: what to do with a checkpoint written by a different config:
    ``error`` (default) or ``restart`` (keep it aside as ``stale-<digest>.pt``, start anew)."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    digest = config_digest(config)
    metrics_path = out_dir / "metrics.json"
    if metrics_path.is_file():
        import json
        done = json.loads(metrics_path.read_text())
        if done.get("config_digest") == digest:
            return done
        raise TrainingError(f"{out_dir} already holds a finished run of a different config; "
                            "use another --out folder or delete it")
    artifacts.write_yaml(out_dir / "config.yaml", config)

    device = resolve_device(config["device"])
    torch.manual_seed(config["seed"])
    train_cfg = config["train"]
    data = build_data(config, device)
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

    checkpoint_path = out_dir / "checkpoint" / "last.pt"
    state = _load_checkpoint(checkpoint_path, digest, on_config_change)
    history, best, start_epoch, step, train_seconds, images_seen = [], None, 0, 0, 0.0, 0
    earlier_wall_seconds, partial = 0.0, None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best = state["history"], state["best"]
        start_epoch, step = state["epoch"], state["step"]
        train_seconds, images_seen = state["train_seconds"], state["images_seen"]
        earlier_wall_seconds = state["wall_seconds"]
        partial = state.get("partial")

    if len(data.train) == 0:
        raise TrainingError(f"config key 'train.batch_size': {train_cfg['batch_size']} is larger "
                            f"than the {data.train.num_images} training images and drop_last is "
                            "on, so no step would run; lower the batch size or use more data")
    epochs, max_steps = train_cfg["epochs"], train_cfg["max_steps"]

    def save_checkpoint(epochs_done: int, step_now: int, partial_state=None, seconds=0.0,
                        images=0):
        """Everything a rerun needs to continue exactly here (written atomically)."""
        artifacts.save_torch(checkpoint_path, {
            "config_digest": digest, "epoch": epochs_done, "step": step_now,
            "partial": partial_state, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "history": history, "best": best, "train_seconds": train_seconds + seconds,
            "images_seen": images_seen + images,
            "wall_seconds": earlier_wall_seconds + time.perf_counter() - started})

    last_eval = history[-1].get("test") if history else None
    for epoch in range(start_epoch, epochs):
        if max_steps is not None and step >= max_steps:
            break
        resume = partial if epoch == start_epoch else None
        data.train.set_epoch(epoch, start_batch=resume["batch"] if resume else 0)
        lr = optimizer.param_groups[0]["lr"]
        tick = time.perf_counter()
        stats = train_one_epoch(
            step_fn, data.train, epoch=epoch, step=step, max_steps=max_steps,
            progress=config["progress"], description=f"epoch {epoch + 1}/{epochs}",
            partial=resume, checkpoint_every=train_cfg["checkpoint_every_steps"],
            on_checkpoint=lambda progress_state, epoch=epoch, tick=tick: save_checkpoint(
                epoch, progress_state["step"], progress_state,
                time.perf_counter() - tick, progress_state["images"]))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - tick
        images_seen += stats["images"]
        step = stats["step"]
        scheduler.step()
        finished = epoch + 1 == epochs or (max_steps is not None and step >= max_steps)
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": stats["train_loss"],
                  "train_top1": stats["train_top1"], "steps": step}
        if finished or (epoch + 1) % config["eval"]["every"] == 0:
            last_eval = evaluate(model, data.test, train_cfg["mixed_precision"])
            record["test"] = last_eval
            if best is None or last_eval["top1"] > best["top1"]:
                best = {**last_eval, "epoch": epoch + 1}
        history.append(record)
        if config["progress"]:
            shown = f", test top-1 {last_eval['top1']:.2f}%" if "test" in record else ""
            tqdm.write(f"epoch {epoch + 1}/{epochs}: train loss {stats['train_loss']:.4f}{shown}")
        save_checkpoint(epoch + 1, step)

    if last_eval is None:  # resumed after the last epoch had already been checkpointed
        last_eval = evaluate(model, data.test, train_cfg["mixed_precision"])
    metrics = {
        "status": "complete",
        "config_digest": digest,
        "seed": config["seed"],
        "final": last_eval,
        "best": best,
        "history": history,
        "steps": step,
        "epochs_completed": len(history),
        "data": data.description,
        "train_seconds": train_seconds,
        "train_images_per_s": images_seen / train_seconds if train_seconds > 0 else None,
        "wall_seconds": earlier_wall_seconds + time.perf_counter() - started,
        "resumed_from_epoch": start_epoch if state is not None else None,
        "provenance": provenance.collect(device),
    }
    artifacts.save_torch(out_dir / "model.pt", model.state_dict())
    artifacts.write_json(metrics_path, metrics)
    return metrics
