"""Where a run is, and how it stops and resumes: the state a checkpoint holds
(:class:`RunState`), the record of each training segment (:class:`Segment`: machine,
precision, world size, wall time), the clean stop on a time budget or a signal
(:class:`StopConditions`, exit status 75), and loading a checkpoint safely."""
from __future__ import annotations

import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch

from . import provenance

__all__ = ["TrainingError", "TrainingStopped", "StopConditions", "RunState", "Segment",
           "RESUMABLE_EXIT", "INTERRUPTED", "load_checkpoint", "check_same_data"]


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a checkpoint of another config, ...)."""


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
                 started: float, world_size: int = 1):
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
            "world_size": world_size,
            # the backend; training adds how the step synchronises (DDP or the collectives
            # a CUDA graph holds)
            "data_parallel": (torch.distributed.get_backend()
                              if torch.distributed.is_initialized() else None),
            "torch": str(torch.__version__),
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
                           images=images - self.images0, train_seconds=round(trained, 3),
                           wall_seconds=round(wall, 3),  # ms: a one-step segment is not 0
                           images_per_s=round((images - self.images0) / trained, 1)
                           if trained > 0 else None)
        return dict(self.record)


INTERRUPTED = "the process ended after this checkpoint (killed, crashed or interrupted)"


def load_checkpoint(path: Path, digest: str, on_config_change: str = "error") -> Optional[dict]:
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


def check_same_data(state: dict, data_description: dict, checkpoint_path: Path) -> None:
    saved, now = state.get("data_fingerprint"), data_description.get("fingerprint")
    if saved is not None and now is not None and saved != now:
        raise TrainingError(
            f"checkpoint {checkpoint_path} was trained on other data (fingerprint {saved}) than "
            f"data.root now gives ({now}: {data_description.get('train')}); point data.root at "
            "the dataset the run started with")
