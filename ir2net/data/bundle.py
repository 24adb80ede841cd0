"""The train and test pipelines a config asks for, and a fingerprint of their data."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .cifar10 import load_small_split
from .common import DatasetError, ImageTensors
from .imagenet import EpochSeededLoader, build_imagefolder_loader
from .tensor_batches import TensorBatches, balanced_subset

__all__ = ["DataBundle", "build_data", "build_test_data", "num_classes"]

#: Classes of the paper's datasets (ImageNet: ILSVRC-2012's 1000).
DATASET_CLASSES = {"cifar10": 10, "imagenet": 1000}


def num_classes(data_cfg: dict, *, count_folder: bool = True) -> int:
    """The classes of the dataset a config's ``data`` section names: the synthetic set's
    own count, CIFAR-10's 10, and for an ImageNet-layout folder the class folders under
    ``data.root`` (a stand-in has fewer than 1000).  ``count_folder=False`` gives
    ImageNet's 1000 without reading any data (benchmarks and cost plans need none)."""
    if data_cfg["dataset"] == "synthetic":
        return data_cfg["synthetic"]["num_classes"]
    if data_cfg["dataset"] == "imagenet" and count_folder:
        from .common import check_image_folder
        return len(check_image_folder(Path(data_cfg["root"]).expanduser()))
    return DATASET_CLASSES[data_cfg["dataset"]]


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
        train = EpochSeededLoader(build_imagefolder_loader(
            data_cfg, "train", train_cfg["batch_size"], train=True, seed=seed,
            drop_last=train_cfg["drop_last"], part=part), seed, device, channels_last)
        test = EpochSeededLoader(build_imagefolder_loader(
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


def build_test_data(config: dict, device: torch.device, split: str = "test"):
    """The test-time pipeline of a config (scoring a trained model): ``(batches, classes)``.
    ``split="train"`` runs it over the training images (with ``data.train_subset``): no
    augmentation, so a model's score there is how well it fits its training data."""
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', not {split!r}")
    data_cfg = config["data"]
    batch_size, channels_last = config["eval"]["batch_size"], config["train"]["channels_last"]
    if data_cfg["dataset"] == "imagenet":
        test = EpochSeededLoader(build_imagefolder_loader(
            data_cfg, split, batch_size, train=False, seed=config["seed"]),
            config["seed"], device, channels_last)
        return test, test.loader.dataset.classes
    split_data = balanced_subset(load_small_split(data_cfg, split), data_cfg[f"{split}_subset"])
    return (TensorBatches(split_data, batch_size, device, train=False, channels_last=channels_last),
            split_data.classes)
