"""An ImageNet-layout stand-in built from CIFAR-10 (or the synthetic set), for the ImageNet
code path where ImageNet itself is not available."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from PIL import Image

from .cifar10 import load_small_split
from .common import DatasetError

__all__ = ["build_standin"]


def build_standin(data_cfg: dict, out_dir: str | Path, *, classes: int, train_per_class: int,
                  val_per_class: int, image_size: int) -> dict:
    """An ImageNet-layout stand-in (``train/<class>/*.jpg``, ``val/<class>/*.jpg``) made of
    real CIFAR-10 images (or the synthetic set) upsampled to ``image_size``: it exercises
    the ImageNet code path (varied JPEG decode, RandomResizedCrop, Lighting, two stages,
    distillation) where ImageNet itself is not available.  Written to a temporary folder
    and renamed into place, so a half-built stand-in is never used."""
    import json
    import shutil

    out_dir = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".standin-", dir=out_dir.parent if out_dir.parent.exists()
                                    else None))
    description = {}
    try:
        for split, folder, per_class in (("train", "train", train_per_class),
                                         ("test", "val", val_per_class)):
            source = load_small_split(data_cfg, split)
            if classes > len(source.classes):
                raise DatasetError(f"the stand-in asks for {classes} classes but the source has "
                                   f"{len(source.classes)}")
            for label in range(classes):
                name = source.classes[label]
                target = staging / folder / name
                target.mkdir(parents=True)
                indices = torch.nonzero(source.labels == label).flatten()[:per_class]
                for i, index in enumerate(indices.tolist()):
                    image = Image.fromarray(source.images[index].permute(1, 2, 0).numpy())
                    image = image.resize((image_size, image_size), Image.BICUBIC)
                    image.save(target / f"{i:05d}.jpg", quality=90)
            description[folder] = f"{per_class} per class from {source.source}"
        description.update(classes=classes, image_size=image_size,
                           synthetic=data_cfg["dataset"] == "synthetic")
        (staging / "STANDIN.json").write_text(json.dumps(description, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return description
