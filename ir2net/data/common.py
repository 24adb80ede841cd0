"""What every dataset source shares: the decoded-split type, the normalisation, the
image-folder layout (``ROOT/train/<class>/*``, ``ROOT/test/<class>/*`` or ``val/``) and
the error that names a missing or unreadable piece and what to do."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["DatasetError", "ImageTensors", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS",
           "PROVIDE_CIFAR", "check_image_folder", "split_dir", "list_images", "open_rgb",
           "normalise_uint8"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the authors normalise CIFAR-10 with these too
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise_uint8(images: torch.Tensor) -> torch.Tensor:
    """A uint8 NCHW batch as the network's input, on the batch's device: torchvision's
    ``ConvertImageDtype(float32)`` then ``Normalize(IMAGENET_MEAN, IMAGENET_STD)``, the same
    operations in the same order, so the same values as the per-image pipeline (on CUDA to
    within one float32 rounding: its division by a scalar multiplies by the reciprocal)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=images.device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=images.device)
    return images.to(torch.float32).div_(255).sub_(mean.view(1, 3, 1, 1)).div_(std.view(1, 3, 1, 1))


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

PROVIDE_CIFAR = ("Provide CIFAR-10 as torchvision's cifar-10-batches-py folder, set "
                 "data.download=true where the network allows, or extract an image-folder copy "
                 "(train/<class>/*.jpg, test/<class>/*.jpg), e.g. "
                 "`tar xzf shared/data/cifar10-jpeg.tar.gz -C DIR`, and set data.root=DIR")


class DatasetError(RuntimeError):
    """The dataset is missing, laid out wrongly or holds an unreadable file."""


@dataclass
class ImageTensors:
    """A decoded split: uint8 images (N, 3, H, W), int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str
    synthetic: bool = False

    def __len__(self) -> int:
        return self.labels.numel()


def split_dir(root: Path, split: str) -> Path:
    names = ("train",) if split == "train" else ("test", "val")
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(f"dataset folder {root} has no {' or '.join(names)}/ subfolder; expected "
                       f"{root}/train/<class>/... and {root}/test/<class>/... (or val/)")


def class_folders(split_dir: Path) -> list[str]:
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not classes:
        raise DatasetError(f"{split_dir} has no class subfolders; expected {split_dir}/<class>/<image>")
    return classes


def list_images(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    items = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (split_dir / name).iterdir()
                       if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DatasetError(f"class folder {split_dir / name} holds no images")
        items += [(p, label) for p in files]
    return items


def check_image_folder(root: Path) -> list[str]:
    """Check the train/test layout and that both splits have the same classes."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    train_classes = class_folders(split_dir(root, "train"))
    test_dir = split_dir(root, "test")
    test_classes = class_folders(test_dir)
    if train_classes != test_classes:
        missing = sorted(set(train_classes) ^ set(test_classes))
        raise DatasetError(f"the train and {test_dir.name} splits of {root} have different classes "
                           f"(only in one of them: {', '.join(missing[:5])}); every class needs a "
                           "folder in both")
    return train_classes


def open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DatasetError(f"cannot decode image {path} ({error}); the file is corrupt or "
                           "truncated: replace it with a good copy or delete it") from error
