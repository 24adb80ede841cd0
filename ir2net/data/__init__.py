"""Datasets and input pipelines, one module per source.

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

Modules: ``common`` (types, layout, errors), ``cifar10`` (CIFAR-10 in memory), ``synthetic``
(tests), ``tensor_batches`` (the in-memory pipeline), ``imagenet`` (image folders),
``standin`` (an ImageNet-layout stand-in), ``bundle`` (what a config asks for).

Layout of an image-folder dataset: ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``
(or ``ROOT/val/<class>/*``).  Any missing or unreadable piece raises
:class:`DatasetError` naming the path and what to do.
"""
from .bundle import DataBundle, build_data, build_test_data, num_classes
from .cifar10 import load_small_split
from .common import IMAGENET_MEAN, IMAGENET_STD, DatasetError, ImageTensors, check_image_folder
from .imagenet import GlobalBatchSampler, Lighting, build_imagefolder_loader
from .standin import build_standin
from .synthetic import synthetic_split
from .tensor_batches import TensorBatches, balanced_subset

__all__ = ["DatasetError", "ImageTensors", "IMAGENET_MEAN", "IMAGENET_STD", "load_small_split",
           "synthetic_split", "TensorBatches", "Lighting", "build_imagefolder_loader",
           "GlobalBatchSampler", "check_image_folder", "balanced_subset", "DataBundle",
           "build_data", "build_test_data", "build_standin", "num_classes"]
