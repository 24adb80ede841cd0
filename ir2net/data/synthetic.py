"""SYNTHETIC data for tests: learnable, deterministic, tiny."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import ImageTensors

__all__ = ["synthetic_split"]


def synthetic_split(cfg: dict, split: str) -> ImageTensors:
    """A deterministic, learnable SYNTHETIC dataset (tests only): each class is a
    fixed random low-frequency colour pattern; samples add noise and a random shift."""
    size, classes = cfg["image_size"], cfg["num_classes"]
    count = cfg["train_size"] if split == "train" else cfg["test_size"]
    pattern_gen = torch.Generator().manual_seed(1234)
    patterns = F.interpolate(torch.rand(classes, 3, 4, 4, generator=pattern_gen), size=size,
                             mode="bilinear", align_corners=False)
    gen = torch.Generator().manual_seed(99 if split == "train" else 7)
    labels = torch.arange(count) % classes
    labels = labels[torch.randperm(count, generator=gen)]
    noise = torch.randn(count, 3, size, size, generator=gen) * 0.15
    shifts = torch.randint(-2, 3, (count, 2), generator=gen)
    images = patterns[labels] + noise
    for index in range(count):  # a few hundred images: the loop costs nothing here
        images[index] = torch.roll(images[index], tuple(shifts[index].tolist()), dims=(1, 2))
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageTensors(images, labels, [f"class{i}" for i in range(classes)],
                        f"SYNTHETIC test data ({count} images, {classes} classes, seed-fixed)",
                        synthetic=True)
