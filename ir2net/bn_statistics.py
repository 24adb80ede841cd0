"""What BatchNorm's running-statistics momentum does to a trained network's test score.

In training BatchNorm normalises with the batch's own statistics, so its momentum (the weight
of the newest batch in the running statistics, ``model.bn_momentum``) never reaches the
weights: two runs that differ only in it train the same weights and differ only in the
statistics that evaluation normalises with.  IRes whose mask keeps every pixel is exactly
such a difference (Algorithm 1's second pass repeats the first: momentum 0.1 becomes 0.19,
:func:`ir2net.training.set_batchnorm_momentum`; tests/test_ires_equivalence.py).  So what
that IRes does to a run's score is measured here, from one state of the run and with no seed
in between: train on from it, keep beside BatchNorm's own running statistics one set per
momentum asked for, and score the same weights with each.  Beside them, the statistics of
the weights as they are (an equal-weight average over training batches with the weights
frozen): what a running average that lagged nothing would give.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["RunningStatistics", "momentum_effect", "FROZEN"]

#: the key of the lag-free statistics (an equal-weight average with the weights frozen)
FROZEN = "frozen"


class RunningStatistics:
    """Running mean and variance of every BatchNorm layer's input, one set per momentum, kept
    by a forward pre-hook from the statistics the layer normalises with in training, by
    PyTorch's rule (``x <- (1 - m) x + m batch``, the variance unbiased).  A momentum of
    ``None`` keeps the equal-weight average of the batches seen (PyTorch's ``momentum=None``),
    starting from nothing; the others start from the layers' own statistics."""

    def __init__(self, model: nn.Module, momenta: Sequence[Optional[float]]):
        self.layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        if not self.layers:
            raise ValueError("the model has no BatchNorm layer")
        self.momenta = list(momenta)
        self.batches = 0
        self.active = True  # off: training-mode passes leave the kept statistics alone
        self.values = {momentum: [(layer.running_mean.detach().clone().float(),
                                   layer.running_var.detach().clone().float())
                                  for layer in self.layers] for momentum in self.momenta}
        self._handles = [layer.register_forward_pre_hook(self._updater(index))
                         for index, layer in enumerate(self.layers)]

    def _updater(self, index: int):
        def update(layer: nn.Module, inputs) -> None:
            if not (layer.training and self.active):
                return
            if index == 0:
                self.batches += 1
            x = inputs[0].detach().float()
            dims = [0, *range(2, x.dim())]
            mean, var = x.mean(dims), x.var(dims, correction=1)
            for momentum in self.momenta:
                weight = 1.0 / self.batches if momentum is None else momentum
                running_mean, running_var = self.values[momentum][index]
                running_mean.lerp_(mean, weight)
                running_var.lerp_(var, weight)
        return update

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def load_into_model(self, momentum: Optional[float]) -> None:
        """Make the layers' own running statistics this momentum's."""
        for layer, (mean, var) in zip(self.layers, self.values[momentum]):
            layer.running_mean.copy_(mean)
            layer.running_var.copy_(var)

    def relative_difference(self, momentum: Optional[float]) -> float:
        """The largest difference between this momentum's statistics and the layers' own,
        relative to the layers' largest value: float rounding when the momentum is theirs."""
        worst = 0.0
        for layer, (mean, var) in zip(self.layers, self.values[momentum]):
            for own, kept in ((layer.running_mean, mean), (layer.running_var, var)):
                scale = own.abs().max().clamp_min(1e-12)
                worst = max(worst, ((own.float() - kept).abs().max() / scale).item())
        return worst


def _endless(batches, epoch: int):
    """The training batches from ``epoch`` on, one epoch's augmentation draws after another."""
    while True:
        batches.set_epoch(epoch)
        yield from batches
        epoch += 1


class _Continuation:
    """The run going on from its state: its own step, optimiser and learning rate from a
    checkpoint; from final weights alone, training-mode forward passes with the weights frozen
    (where a cosine schedule ends, the learning rate is 0)."""

    def __init__(self, trained, checkpoint: Optional[dict], num_classes: int,
                 device: torch.device):
        from .training import build_optimizer, build_restriction, build_teacher, build_train_step

        self.model, self.step, self.lr = trained.model, None, 0.0
        if checkpoint is not None:
            config = trained.config
            optimizer = build_optimizer(self.model, config["train"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            self.step = build_train_step(config, self.model, optimizer, build_restriction(config),
                                         build_teacher(config, num_classes, device), device)
            self.lr = optimizer.param_groups[0]["lr"]

    def advance(self, batches, steps: int) -> None:
        self.model.train()
        for _, (images, labels) in zip(range(steps), batches):
            if self.step is None:
                with torch.no_grad():
                    self.model(images)
            else:
                self.step(images, labels)


def _lag_free(model: nn.Module, batches, count: int) -> RunningStatistics:
    """The statistics of the weights as they are: an equal-weight average over ``count``
    training batches with the weights frozen.  The model's own buffers are left as they were."""
    own = copy.deepcopy(model.state_dict())
    statistics = RunningStatistics(model, [None])
    model.train()
    with torch.no_grad():
        for _, (images, _labels) in zip(range(count), batches):
            model(images)
    statistics.remove()
    model.load_state_dict(own)
    return statistics


def momentum_effect(target: str | Path, *, momenta: Sequence[float] = (0.1, 0.19),
                    steps: int = 200, points: int = 3, interval: int = 100,
                    frozen_batches: int = 100, config: Optional[str | Path] = None,
                    data_root: Optional[str | Path] = None, device: str = "cpu") -> dict:
    """Test top-1 of one run's weights with BatchNorm's running statistics kept at each of
    ``momenta``, and with the lag-free statistics of the same weights (:data:`FROZEN`).

    From a checkpoint (a run in progress) the run trains on with its own step, optimiser and
    learning rate, each momentum's statistics kept beside the layers' own: first ``steps``
    steps (after which a start value weighs ``(1 - m)**steps``: nothing, for 200 steps at
    0.1), then every ``interval`` steps, ``points`` times, the same weights are scored with
    each.  The weights are the same for every momentum, as in training.  From final weights
    alone (``model.pt``) the weights stay frozen.  ``scores`` holds each key's mean over the
    points and ``measurements`` each point's.  Nothing is written to the run: it trains on a
    copy in memory."""
    from .config import ConfigError
    from .data import build_data
    from .inference import _is_checkpoint, load_trained
    from .training import evaluate, resolve_device

    if min(steps, points, interval, frozen_batches) < 1:
        raise ConfigError("--steps, --points, --interval and --frozen-batches must be at least "
                          f"1 (got {steps}, {points}, {interval}, {frozen_batches})")
    started = time.perf_counter()
    overrides = (f"data.root={data_root}",) if data_root else ()
    trained = load_trained(target, config=config, overrides=overrides, device=device)
    torch_device = resolve_device(device)
    run_config, model = trained.config, trained.model
    checkpoint = None
    if _is_checkpoint(trained.weights):
        checkpoint = torch.load(trained.weights, map_location="cpu", weights_only=True)
    data = build_data(run_config, torch_device)
    own_momentum = run_config["model"]["bn_momentum"]
    momenta = list(dict.fromkeys([own_momentum, *momenta]))  # the run's own first, once each

    torch.manual_seed(run_config["seed"])
    epoch = checkpoint["epoch"] if checkpoint is not None else run_config["train"]["epochs"]
    training = _endless(data.train, epoch)  # the lag-free passes draw from it too
    continuation = _Continuation(trained, checkpoint, data.num_classes, torch_device)
    kept = RunningStatistics(model, momenta)
    precision = run_config["train"]["mixed_precision"]
    measured, trained_steps = [], 0
    for point in range(points):
        kept.active = True
        continuation.advance(training, steps if point == 0 else interval)
        trained_steps += steps if point == 0 else interval
        kept.active = False
        own_state = copy.deepcopy(model.state_dict())
        scores = {}
        for momentum in momenta:
            kept.load_into_model(momentum)
            scores[f"{momentum:g}"] = evaluate(model, data.test, precision)
        _lag_free(model, training, frozen_batches).load_into_model(None)
        scores[FROZEN] = evaluate(model, data.test, precision)
        model.load_state_dict(own_state)
        measured.append({"steps": trained_steps, "scores": scores,
                         "own_statistics_agreement": kept.relative_difference(own_momentum)})
    kept.remove()
    means = {key: {"top1": sum(p["scores"][key]["top1"] for p in measured) / points,
                   "top1_points": [p["scores"][key]["top1"] for p in measured],
                   "images": measured[0]["scores"][key]["images"]}
             for key in measured[0]["scores"]}
    return {"weights": str(trained.weights), "epoch": epoch,
            "step": checkpoint["step"] if checkpoint is not None else None,
            "epochs": run_config["train"]["epochs"], "steps": steps, "points": points,
            "interval": interval, "trained": continuation.step is not None,
            "lr": continuation.lr, "frozen_batches": frozen_batches,
            "own_momentum": own_momentum,
            "own_statistics_agreement": max(p["own_statistics_agreement"] for p in measured),
            "bn_updates_per_step": kept.batches / trained_steps, "scores": means,
            "measurements": measured, "seconds": time.perf_counter() - started}
