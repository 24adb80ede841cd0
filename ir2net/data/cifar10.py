"""CIFAR-10 decoded into memory: torchvision's format (``cifar-10-batches-py``), an image
folder, or an archive of one (unpacked once into the cache; decoded folders are cached as a
tensor file so later runs skip JPEG decoding)."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import torch

from .common import (PROVIDE_CIFAR, DatasetError, ImageTensors, check_image_folder, list_images,
                     open_rgb, split_dir)
from .synthetic import synthetic_split

__all__ = ["load_small_split", "ARCHIVE_SUFFIXES", "cache_dir"]


def cache_dir(configured: Optional[str]) -> Path:
    if configured:
        return Path(configured)
    return Path(os.environ.get("IR2NET_CACHE", Path.home() / ".cache" / "ir2net"))


def _decode_threads() -> int:
    """Decoding threads: every core this process may use, at most 16."""
    try:
        return max(1, min(16, len(os.sched_getaffinity(0))))
    except AttributeError:  # no sched_getaffinity (macOS)
        return max(1, min(16, os.cpu_count() or 1))


def _decode_folder(split_dir: Path, classes: list[str], cache_dir: Path) -> ImageTensors:
    items = list_images(split_dir, classes)
    fingerprint = hashlib.sha256()
    for path, label in items:
        stat = path.stat()
        fingerprint.update(f"{path}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    cache_file = cache_dir / f"images-{fingerprint.hexdigest()[:20]}.pt"
    if cache_file.is_file():
        try:
            cached = torch.load(cache_file, weights_only=True)
            return ImageTensors(cached["images"], cached["labels"], classes, str(split_dir))
        except Exception:  # a damaged cache is rebuilt, never trusted
            cache_file.unlink(missing_ok=True)
    first = open_rgb(items[0][0])
    width, height = first.size
    images = torch.empty(len(items), 3, height, width, dtype=torch.uint8)

    def decode_into(index: int) -> None:
        path = items[index][0]
        image = open_rgb(path)
        if image.size != (width, height):
            raise DatasetError(f"image {path} is {image.size[0]}x{image.size[1]} but {items[0][0]} "
                               f"is {width}x{height}; a cifar10 image folder needs one image size "
                               "(use data.dataset=imagenet for folders of varied sizes)")
        images[index] = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(
            height, width, 3).permute(2, 0, 1)

    # PIL decodes without the GIL: threads decode a first run's 60,000 JPEGs in seconds on a
    # many-core GPU machine instead of a minute; each image lands in its own row, so the
    # tensor is the same whatever the order
    with ThreadPoolExecutor(max_workers=_decode_threads()) as pool:
        for _ in pool.map(decode_into, range(len(items)), chunksize=256):
            pass
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    from ..artifacts import save_torch
    try:
        save_torch(cache_file, {"images": images, "labels": labels})
    except OSError:
        pass  # caching is an optimisation; a read-only cache folder is not an error
    return ImageTensors(images, labels, classes, str(split_dir))


def _torchvision_cifar_root(root: Path) -> Optional[Path]:
    if (root / "cifar-10-batches-py").is_dir():
        return root
    if root.name == "cifar-10-batches-py" and root.is_dir():
        return root.parent
    return None


def _load_torchvision_cifar(parent: Path, split: str, download: bool) -> ImageTensors:
    import pickle

    import torchvision

    try:
        dataset = torchvision.datasets.CIFAR10(str(parent), train=(split == "train"),
                                               download=download)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as error:
        raise DatasetError(f"CIFAR-10 in {parent / 'cifar-10-batches-py'} is missing or corrupt "
                           f"({error}); a batch file is truncated or damaged. Delete the folder "
                           f"and provide it again. {PROVIDE_CIFAR}") from error
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    return ImageTensors(images, labels, list(dataset.classes), str(parent / "cifar-10-batches-py"))


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def _extract_archive(archive: Path, cache_dir: Path) -> Path:
    """Unpack an archive of an image-folder tree once into the cache; return the tree's root."""
    import tarfile
    import zipfile

    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    target = cache_dir / f"extracted-{key.hexdigest()[:20]}"
    if not target.is_dir():
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache_dir))
        try:
            if archive.name.endswith(".zip"):
                with zipfile.ZipFile(archive) as bundle:
                    bundle.extractall(staging)
            else:
                with tarfile.open(archive) as bundle:
                    bundle.extractall(staging, filter="data")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise DatasetError(f"cannot unpack dataset archive {archive} ({error}); the file is "
                               "corrupt or truncated: fetch it again") from error
        try:
            os.replace(staging, target)  # atomic: a half-extracted tree is never used
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():  # not another process unpacking the same archive
                raise
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not (target / "train").is_dir():
        return entries[0]
    return target


def load_small_split(data_cfg: dict, split: str) -> ImageTensors:
    """CIFAR-10 (torchvision format, image folders, or an archive of image folders)
    decoded into memory."""
    if data_cfg["dataset"] == "synthetic":
        return synthetic_split(data_cfg["synthetic"], split)
    root = Path(data_cfg["root"]).expanduser()
    if root.is_file() and root.name.lower().endswith(ARCHIVE_SUFFIXES):
        root = _extract_archive(root, cache_dir(data_cfg["cache_dir"]))
    tv_root = _torchvision_cifar_root(root)
    if tv_root is not None:
        return _load_torchvision_cifar(tv_root, split, False)
    if (root / "train").is_dir():
        classes = check_image_folder(root)
        return _decode_folder(split_dir(root, split), classes, cache_dir(data_cfg["cache_dir"]))
    if data_cfg["download"]:
        return _load_torchvision_cifar(root, split, True)
    raise DatasetError(f"no CIFAR-10 found at {root}. {PROVIDE_CIFAR}")
