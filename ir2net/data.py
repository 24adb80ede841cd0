"""Datasets and input pipelines.

Two pipelines, chosen by image size:

* **Small images (CIFAR-10, the synthetic test set)** -- the decoded dataset lives
  as one uint8 tensor on the training device; batches are slices of a seeded
  permutation, and crop + flip + normalisation are batched tensor operations
  (the airbench pattern).  CIFAR-10 is read from torchvision's format
  (``cifar-10-batches-py``) or from image folders; decoded image folders are
  cached as a tensor file so later runs skip JPEG decoding.
* **ImageNet-style image folders** -- ``torchvision.datasets.ImageFolder`` with
  RandomResizedCrop, Lighting (AlexNet PCA noise) and flip, evaluated with
  Resize + CenterCrop, through a seeded ``DataLoader``.

A small-image dataset may also be given as an archive (``.tar.gz``, ``.tar``,
``.zip``) of an image-folder tree; it is unpacked once into the cache.

Layout of an image-folder dataset: ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``
(or ``ROOT/val/<class>/*``).  Any missing or unreadable piece raises
:class:`DatasetError` naming the path and what to do.
"""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

__all__ = ["DatasetError", "ImageTensors", "IMAGENET_MEAN", "IMAGENET_STD", "load_small_split",
           "synthetic_split", "TensorBatches", "Lighting", "build_imagefolder_loader",
           "check_image_folder", "balanced_subset", "DataBundle", "build_data", "build_test_data"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the authors normalise CIFAR-10 with these too
IMAGENET_STD = (0.229, 0.224, 0.225)
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


# ----------------------------------------------------------------------------- folders
def _split_dir(root: Path, split: str) -> Path:
    names = ("train",) if split == "train" else ("test", "val")
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(f"dataset folder {root} has no {' or '.join(names)}/ subfolder; expected "
                       f"{root}/train/<class>/... and {root}/test/<class>/... (or val/)")


def _class_folders(split_dir: Path) -> list[str]:
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not classes:
        raise DatasetError(f"{split_dir} has no class subfolders; expected {split_dir}/<class>/<image>")
    return classes


def _list_images(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
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
    train_classes = _class_folders(_split_dir(root, "train"))
    test_dir = _split_dir(root, "test")
    test_classes = _class_folders(test_dir)
    if train_classes != test_classes:
        missing = sorted(set(train_classes) ^ set(test_classes))
        raise DatasetError(f"the train and {test_dir.name} splits of {root} have different classes "
                           f"(only in one of them: {', '.join(missing[:5])}); every class needs a "
                           "folder in both")
    return train_classes


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DatasetError(f"cannot decode image {path} ({error}); the file is corrupt or "
                           "truncated: replace it with a good copy or delete it") from error


# ----------------------------------------------------------------------------- small images
def _cache_dir(configured: Optional[str]) -> Path:
    if configured:
        return Path(configured)
    return Path(os.environ.get("IR2NET_CACHE", Path.home() / ".cache" / "ir2net"))


def _decode_folder(split_dir: Path, classes: list[str], cache_dir: Path) -> ImageTensors:
    items = _list_images(split_dir, classes)
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
    first = _open_rgb(items[0][0])
    width, height = first.size
    images = torch.empty(len(items), 3, height, width, dtype=torch.uint8)
    for index, (path, _) in enumerate(items):
        image = _open_rgb(path)
        if image.size != (width, height):
            raise DatasetError(f"image {path} is {image.size[0]}x{image.size[1]} but {items[0][0]} "
                               f"is {width}x{height}; a cifar10 image folder needs one image size "
                               "(use data.dataset=imagenet for folders of varied sizes)")
        images[index] = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(
            height, width, 3).permute(2, 0, 1)
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    from .artifacts import save_torch
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
    import shutil
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
        root = _extract_archive(root, _cache_dir(data_cfg["cache_dir"]))
    tv_root = _torchvision_cifar_root(root)
    if tv_root is not None:
        return _load_torchvision_cifar(tv_root, split, False)
    if (root / "train").is_dir():
        classes = check_image_folder(root)
        return _decode_folder(_split_dir(root, split), classes, _cache_dir(data_cfg["cache_dir"]))
    if data_cfg["download"]:
        return _load_torchvision_cifar(root, split, True)
    raise DatasetError(f"no CIFAR-10 found at {root}. {PROVIDE_CIFAR}")


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


# ----------------------------------------------------------------------------- ImageNet
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
        return torchvision.datasets.ImageFolder(str(root), transform=transform, loader=_open_rgb)


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
    contiguous share of the test set."""
    from torchvision import transforms as T

    root = Path(data_cfg["root"]).expanduser()
    check_image_folder(root)
    size = data_cfg["image_size"]
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train:
        lighting = Lighting(data_cfg["lighting"], data_cfg["lighting_input"])
        if lighting.input == "uint8":  # on the integer image, as the authors' code
            to_float = [T.PILToTensor(), lighting, T.RandomHorizontalFlip(),
                        T.ConvertImageDtype(torch.float32)]
        else:
            to_float = [T.ToTensor(), lighting, T.RandomHorizontalFlip()]
        transform = T.Compose([T.RandomResizedCrop(size, scale=(data_cfg["crop_scale_min"], 1.0)),
                               *to_float, normalize])
    else:
        transform = T.Compose([T.Resize(data_cfg["resize_size"]), T.CenterCrop(size),
                               T.ToTensor(), normalize])
    dataset = _CheckedImageFolder(_split_dir(root, split), transform)
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


class _EpochSeededLoader:
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
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, labels.to(self.device, non_blocking=True)


@dataclass
class DataBundle:
    train: object
    test: object
    num_classes: int
    description: dict = field(default_factory=dict)


def _tensor_fingerprint(*splits: ImageTensors) -> str:
    """A hash of the decoded pixels and labels: the same data wherever it was read from."""
    digest = hashlib.sha256()
    for split in splits:
        for tensor in (split.images, split.labels):
            digest.update(memoryview(tensor.contiguous().numpy()).cast("B"))
    return digest.hexdigest()[:20]


def _folder_fingerprint(*datasets) -> str:
    """A hash of an image folder's file list (relative paths and labels); reading every
    ImageNet file to hash its pixels would take longer than an epoch."""
    digest = hashlib.sha256()
    for dataset in datasets:
        root = Path(dataset.root)
        for path, label in dataset.samples:
            digest.update(f"{Path(path).relative_to(root)}|{label}\n".encode())
    return digest.hexdigest()[:20]


def build_data(config: dict, device: torch.device, context=None) -> DataBundle:
    """The train and test pipelines a config asks for.  ``context``
    (:class:`ir2net.distributed.Distributed`): data-parallel, this rank's slice of every
    global training batch and its share of the test set."""
    data_cfg, train_cfg = config["data"], config["train"]
    channels_last = train_cfg["channels_last"]
    seed = config["seed"]
    part = context.shard if context is not None and context.enabled else None
    if data_cfg["dataset"] == "imagenet":
        if data_cfg["train_subset"] or data_cfg["test_subset"]:
            raise DatasetError("data.train_subset/test_subset apply to in-memory datasets only; "
                               "make a smaller image folder for ImageNet stand-ins")
        train = _EpochSeededLoader(build_imagefolder_loader(
            data_cfg, "train", train_cfg["batch_size"], train=True, seed=seed,
            drop_last=train_cfg["drop_last"], part=part), seed, device, channels_last)
        test = _EpochSeededLoader(build_imagefolder_loader(
            data_cfg, "test", config["eval"]["batch_size"], train=False, seed=seed, part=part),
            seed, device, channels_last)
        classes = train.loader.dataset.classes
        test_folder = test.loader.dataset
        description = {"train": str(Path(data_cfg["root"]) / "train"), "synthetic": False,
                       "pipeline": "ImageFolder + DataLoader",
                       "fingerprint": _folder_fingerprint(train.loader.dataset, test_folder),
                       "train_images": len(train.loader.dataset),
                       "test_images": len(test_folder.samples)}
    else:
        train_split = balanced_subset(load_small_split(data_cfg, "train"), data_cfg["train_subset"])
        test_split = balanced_subset(load_small_split(data_cfg, "test"), data_cfg["test_subset"])
        train = TensorBatches(train_split, train_cfg["batch_size"], device, train=True,
                              drop_last=train_cfg["drop_last"], padding=data_cfg["crop_padding"],
                              seed=seed, channels_last=channels_last, part=part)
        test_share = test_split
        if part is not None:  # every test image scored once, over all ranks
            share = part(len(test_split))
            test_share = ImageTensors(test_split.images[share], test_split.labels[share],
                                      test_split.classes, test_split.source, test_split.synthetic)
        test = TensorBatches(test_share, config["eval"]["batch_size"], device, train=False,
                             channels_last=channels_last)
        classes = train_split.classes
        description = {"train": train_split.source, "test": test_split.source,
                       "synthetic": train_split.synthetic, "pipeline": "device-resident uint8 tensor",
                       "fingerprint": _tensor_fingerprint(train_split, test_split),
                       "train_images": len(train_split), "test_images": len(test_split)}
    description["num_classes"] = len(classes)
    return DataBundle(train, test, len(classes), description)


def build_test_data(config: dict, device: torch.device):
    """Only the test pipeline of a config (scoring a trained model): ``(batches, classes)``."""
    data_cfg = config["data"]
    batch_size, channels_last = config["eval"]["batch_size"], config["train"]["channels_last"]
    if data_cfg["dataset"] == "imagenet":
        test = _EpochSeededLoader(build_imagefolder_loader(
            data_cfg, "test", batch_size, train=False, seed=config["seed"]),
            config["seed"], device, channels_last)
        return test, test.loader.dataset.classes
    split = balanced_subset(load_small_split(data_cfg, "test"), data_cfg["test_subset"])
    return (TensorBatches(split, batch_size, device, train=False, channels_last=channels_last),
            split.classes)


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
