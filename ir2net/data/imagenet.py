"""ImageNet-style image folders: ``torchvision.datasets.ImageFolder`` with
RandomResizedCrop, the authors' lighting noise and flip, evaluated with Resize + CenterCrop,
through a ``DataLoader`` seeded by (seed, epoch); data-parallel, each rank takes its slice of
every global batch."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import torch

from .common import (IMAGENET_MEAN, IMAGENET_STD, check_image_folder, normalise_uint8, open_rgb,
                     split_dir)

__all__ = ["Lighting", "GlobalBatchSampler", "build_imagefolder_loader", "EpochSeededLoader"]


class Lighting:
    """AlexNet-style PCA lighting noise (the authors' ImageNet recipe), on a CHW image.

    ``input="uint8"`` (default, ``data.lighting_input``) is what the authors' code does: the
    noise ``V diag(lambda) alpha`` (unscaled eigenvalues, so about 0.01 grey levels) is added
    to the 0-255 image, which is then clipped and truncated back to integers; the net effect
    is that a channel whose noise is negative loses one grey level.  ``input="float"`` adds
    the same noise to the [0, 1] tensor, i.e. 255 times larger in grey levels (about 3).
    """

    EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
    EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009],
                           [-0.5808, -0.0045, -0.8140],
                           [-0.5836, -0.6948, 0.4203]])
    INPUTS = ("uint8", "float")

    def __init__(self, std: float, input: str = "uint8"):
        if input not in self.INPUTS:
            raise ValueError(f"Lighting input must be one of {', '.join(self.INPUTS)}, got {input!r}")
        self.std = std
        self.input = input

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return image
        alpha = torch.randn(3) * self.std
        rgb = (self.EIGVEC @ (alpha * self.EIGVAL)).view(3, 1, 1)
        if self.input == "uint8":
            if image.dtype != torch.uint8:
                raise TypeError("Lighting(input='uint8') expects a uint8 image tensor")
            return (image.float() + rgb).clamp(0, 255).to(torch.uint8)  # truncates, as numpy's astype
        return image + rgb

    def __repr__(self) -> str:
        return f"Lighting(std={self.std}, input={self.input!r})"


class _CheckedImageFolder:
    """``torchvision.datasets.ImageFolder`` whose loader names a corrupt file."""

    def __new__(cls, root: Path, transform):
        import torchvision
        return torchvision.datasets.ImageFolder(str(root), transform=transform, loader=open_rgb)


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Data-parallel batches of an image folder: the global batches of one process's
    shuffle (seeded by ``generator``: the loader's, reseeded by ``(seed, epoch)``), each rank
    taking its ``part`` of every batch."""

    def __init__(self, size: int, batch_size: int, part: Callable[[int], slice], *,
                 shuffle: bool, drop_last: bool, generator: torch.Generator):
        self.size, self.batch_size, self.part = size, batch_size, part
        self.shuffle, self.drop_last, self.generator = shuffle, drop_last, generator

    def __len__(self) -> int:
        return self.size // self.batch_size if self.drop_last else \
            math.ceil(self.size / self.batch_size)

    def __iter__(self):
        order = (torch.randperm(self.size, generator=self.generator) if self.shuffle
                 else torch.arange(self.size))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = order[start:start + self.batch_size]
            yield batch[self.part(len(batch))].tolist()


def build_imagefolder_loader(data_cfg: dict, split: str, batch_size: int, *, train: bool,
                             seed: int, drop_last: bool = False,
                             part: Optional[Callable[[int], slice]] = None):
    """``part``: data-parallel, this rank's slice of every global training batch, or its
    contiguous share of the test set.

    Batches stay uint8 through the workers, the pinned copy and the transfer (a quarter of
    the bytes of float32); :class:`EpochSeededLoader` converts and normalises them on the
    device with the same arithmetic as ``ConvertImageDtype`` + ``Normalize``, so the values
    are those of the per-image float pipeline.  (``lighting_input: float`` adds its noise to
    the float image and so normalises in the worker.)"""
    from torchvision import transforms as T

    root = Path(data_cfg["root"]).expanduser()
    check_image_folder(root)
    size = data_cfg["image_size"]
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train:
        lighting = Lighting(data_cfg["lighting"], data_cfg["lighting_input"])
        if lighting.input == "uint8":  # on the integer image, as the authors' code
            to_tensor = [T.PILToTensor(), lighting, T.RandomHorizontalFlip()]  # uint8 to the device
        else:
            to_tensor = [T.ToTensor(), lighting, T.RandomHorizontalFlip(), normalize]
        transform = T.Compose([T.RandomResizedCrop(size, scale=(data_cfg["crop_scale_min"], 1.0)),
                               *to_tensor])
    else:
        transform = T.Compose([T.Resize(data_cfg["resize_size"]), T.CenterCrop(size),
                               T.PILToTensor()])
    dataset = _CheckedImageFolder(split_dir(root, split), transform)
    generator = torch.Generator().manual_seed(seed)
    options = dict(num_workers=data_cfg["workers"], generator=generator,
                   pin_memory=torch.cuda.is_available(), persistent_workers=False,
                   worker_init_fn=_worker_init)
    if part is not None and train:
        sampler = GlobalBatchSampler(len(dataset), batch_size, part, shuffle=True,
                                     drop_last=drop_last, generator=generator)
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, **options)
    if part is not None:  # the test set: every image once, over all ranks
        dataset = _SharedClasses(dataset, part(len(dataset)))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=train,
                                       drop_last=drop_last, **options)


class _SharedClasses(torch.utils.data.Subset):
    """A contiguous share of an image folder that still knows the folder's classes."""

    def __init__(self, dataset, share: slice):
        super().__init__(dataset, range(share.start, share.stop))
        self.classes, self.samples, self.root = dataset.classes, dataset.samples, dataset.root


def _worker_init(worker_id: int) -> None:
    """Workers leave SIGTERM / SIGUSR1 to the training process, which finishes its step and
    checkpoints (SLURM signals every process of a job step); it ends the workers itself."""
    import signal
    for name in ("SIGTERM", "SIGUSR1"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


class EpochSeededLoader:
    """A DataLoader whose shuffle and worker seeds depend only on ``(seed, epoch)``."""

    def __init__(self, loader, seed: int, device: torch.device, channels_last: bool):
        self.loader = loader
        self.seed = seed
        self.device = device
        self.channels_last = channels_last
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.loader.generator.manual_seed(self.seed * 1_000_003 + epoch)
        self.start_batch = start_batch

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_images(self) -> int:
        return len(self.loader.dataset)

    def __iter__(self):
        for number, (images, labels) in enumerate(self.loader):
            if number < self.start_batch:
                continue  # the same worker seeds and order: skip what was already trained
            images = images.to(self.device, non_blocking=True)
            if images.dtype == torch.uint8:
                images = normalise_uint8(images)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, labels.to(self.device, non_blocking=True)
