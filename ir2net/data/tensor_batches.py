"""The small-image pipeline: the decoded dataset lives as one uint8 tensor on the training
device; batches are slices of a seeded permutation, and crop + flip + normalisation are
batched tensor operations (the airbench pattern)."""
from __future__ import annotations

import math
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F

from .common import IMAGENET_MEAN, IMAGENET_STD, ImageTensors

__all__ = ["balanced_subset", "TensorBatches"]


def balanced_subset(split: ImageTensors, count: Optional[int]) -> ImageTensors:
    """The first ``ceil(count / classes)`` images of each class (in file order), cut to ``count``."""
    if count is None or count >= len(split):
        return split
    per_class = math.ceil(count / len(split.classes))
    seen: dict[int, int] = {}
    ranks = []
    for label in split.labels.tolist():
        ranks.append(seen.get(label, 0))
        seen[label] = ranks[-1] + 1
    rank = torch.tensor(ranks)
    chosen = torch.nonzero(rank < per_class).flatten()
    chosen = chosen[torch.argsort(rank[chosen] * len(split) + chosen)][:count].sort().values
    return ImageTensors(split.images[chosen], split.labels[chosen], split.classes,
                        f"{split.source} (balanced subset of {count})", split.synthetic)


class TensorBatches:
    """Batches from a device-resident uint8 dataset with batched crop/flip/normalise.

    Each epoch's order and augmentation come from a generator seeded by
    ``(seed, epoch)``, so a run resumed at an epoch boundary sees exactly the
    batches an uninterrupted run would.
    """

    def __init__(self, split: ImageTensors, batch_size: int, device: torch.device, *,
                 train: bool, drop_last: bool = False, padding: int = 4, seed: int = 0,
                 channels_last: bool = False, part: Optional[Callable[[int], slice]] = None):
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.train = train
        self.drop_last = drop_last
        self.padding = padding
        self.seed = seed
        self.channels_last = channels_last
        self.part = part  # data-parallel: this rank's slice of every (global) batch
        self.epoch = 0
        self.start_batch = 0
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std)  # (x / 255 - mean) / std == x * scale + shift
        self.shift = -mean / std

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order and augmentation; ``start_batch`` skips batches already
        trained on (a resumed epoch) while drawing the same random numbers for them."""
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self.labels)

    def _generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(
            self.seed * 1_000_003 + self.epoch)

    def _draw(self, batch: int, gen: torch.Generator):
        pad = self.padding
        top = torch.randint(0, 2 * pad + 1, (batch, 1), generator=gen, device=self.device)
        left = torch.randint(0, 2 * pad + 1, (batch, 1), generator=gen, device=self.device)
        flip = torch.rand(batch, 1, generator=gen, device=self.device) < 0.5
        return top, left, flip

    def _augment(self, images: torch.Tensor, draws) -> torch.Tensor:
        """RandomCrop(size, padding) with zero fill and a horizontal flip, for the whole batch."""
        batch, _, height, width = images.shape
        pad = self.padding
        padded = F.pad(images, (pad, pad, pad, pad))
        top, left, flip = draws
        cols = torch.arange(width, device=self.device)
        cols = torch.where(flip, left + (width - 1 - cols), left + cols)
        rows = top + torch.arange(height, device=self.device)
        index = torch.arange(batch, device=self.device)[:, None, None]
        # (B, H, W, C) gather, then back to (B, C, H, W)
        out = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.train:
            gen = self._generator()
            order = torch.randperm(n, generator=gen, device=self.device)
        else:
            gen, order = None, torch.arange(n, device=self.device)
        for number, start in enumerate(range(0, len(self) * self.batch_size, self.batch_size)):
            index = order[start:start + self.batch_size]
            if number < self.start_batch:
                if self.train:
                    self._draw(index.numel(), gen)
                continue
            # the whole global batch's random numbers are drawn on every rank, so the ranks
            # together see exactly the batch one process would
            draws = self._draw(index.numel(), gen) if self.train else None
            if self.part is not None:
                mine = self.part(index.numel())
                index = index[mine]
                draws = draws and tuple(draw[mine] for draw in draws)
            images = self.images[index]
            if self.train:
                images = self._augment(images, draws)
            images = images.float() * self.scale + self.shift
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, self.labels[index]
