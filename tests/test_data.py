"""Data: image folders, caching, batched augmentation, subsets, clear errors."""
import pickle

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ir2net.data import (DatasetError, ImageTensors, TensorBatches, balanced_subset,
                         load_small_split, num_classes, synthetic_split)


def make_image_folder(root, classes=("cat", "dog", "frog"), per_class=4, size=32, splits=("train", "test")):
    gen = torch.Generator().manual_seed(0)
    for split in splits:
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = torch.randint(0, 256, (size, size, 3), generator=gen, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i:04d}.png")
    return root


def data_cfg(root, **extra):
    cfg = {"dataset": "cifar10", "root": str(root), "download": False, "cache_dir": None,
           "synthetic": {}}
    cfg.update(extra)
    return cfg


def test_image_folder_decodes_exactly_and_is_cached(tmp_path, cache_dir):
    root = make_image_folder(tmp_path / "ds")
    split = load_small_split(data_cfg(root), "train")
    assert split.images.shape == (12, 3, 32, 32) and split.images.dtype == torch.uint8
    assert split.classes == ["cat", "dog", "frog"]
    assert split.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    first = torch.from_numpy(__import__("numpy").array(Image.open(root / "train/cat/0000.png")))
    assert torch.equal(split.images[0], first.permute(2, 0, 1))
    assert len(list(cache_dir.glob("*.pt"))) == 1
    again = load_small_split(data_cfg(root), "train")
    assert torch.equal(again.images, split.images)


def test_corrupt_image_names_the_file(tmp_path, cache_dir):
    root = make_image_folder(tmp_path / "ds")
    bad = root / "train" / "dog" / "0002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DatasetError, match=r"cannot decode image .*dog/0002.png.*corrupt"):
        load_small_split(data_cfg(root), "train")


def test_missing_dataset_says_how_to_provide_it(tmp_path):
    with pytest.raises(DatasetError, match=r"no CIFAR-10 found at .*cifar10-jpeg.tar.gz"):
        load_small_split(data_cfg(tmp_path / "nowhere"), "train")


def test_layout_errors(tmp_path, cache_dir):
    root = make_image_folder(tmp_path / "ds", splits=("train",))
    with pytest.raises(DatasetError, match="no test or val/ subfolder"):
        load_small_split(data_cfg(root), "train")
    (root / "test" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="different classes.*dog"):
        load_small_split(data_cfg(root), "train")


def test_truncated_cifar_batch_file(tmp_path):
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({"data": []})[:5])
    with pytest.raises(DatasetError, match="missing or corrupt.*truncated"):
        load_small_split(data_cfg(tmp_path / "cifar"), "train")


def reference_crop_flip(image, top, left, flip, pad):
    padded = F.pad(image, (pad, pad, pad, pad))
    out = padded[:, top:top + image.shape[1], left:left + image.shape[2]]
    return out.flip(2) if flip else out


def test_batched_augmentation_matches_per_image_crop_and_flip():
    split = synthetic_split({"image_size": 16, "num_classes": 4, "train_size": 8,
                             "test_size": 4}, "train")
    batches = TensorBatches(split, 8, torch.device("cpu"), train=True, padding=4, seed=3)
    gen = batches._generator()
    torch.randperm(8, generator=gen)  # same draws as __iter__
    state = gen.get_state()
    augmented = batches._augment(split.images, batches._draw(8, gen))
    gen.set_state(state)
    top = torch.randint(0, 9, (8, 1), generator=gen)
    left = torch.randint(0, 9, (8, 1), generator=gen)
    flip = torch.rand(8, 1, generator=gen) < 0.5
    assert flip.any() and not flip.all()
    for i in range(8):
        expected = reference_crop_flip(split.images[i], top[i].item(), left[i].item(),
                                       flip[i].item(), 4)
        assert torch.equal(augmented[i], expected)


def test_normalisation_and_full_eval_coverage():
    split = synthetic_split({"image_size": 8, "num_classes": 3, "train_size": 10,
                             "test_size": 10}, "test")
    batches = list(TensorBatches(split, 4, torch.device("cpu"), train=False))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]  # every image scored
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(batches[0][0][0], (split.images[0].float() / 255 - mean) / std)


def test_epoch_order_depends_only_on_seed_and_epoch():
    split = synthetic_split({"image_size": 8, "num_classes": 2, "train_size": 16,
                             "test_size": 2}, "train")
    def labels_of(epoch, seed=0):
        batches = TensorBatches(split, 16, torch.device("cpu"), train=True, seed=seed)
        batches.set_epoch(epoch)
        return [b for b in batches][0][0]
    assert torch.equal(labels_of(2), labels_of(2))
    assert not torch.equal(labels_of(1), labels_of(2))


def test_balanced_subset():
    labels = torch.tensor([0] * 6 + [1] * 6 + [2] * 6)
    split = ImageTensors(torch.zeros(18, 3, 2, 2, dtype=torch.uint8), labels, ["a", "b", "c"], "x")
    subset = balanced_subset(split, 7)
    assert len(subset) == 7
    assert torch.bincount(subset.labels).tolist() == [3, 2, 2]


def test_synthetic_data_is_labelled_and_deterministic():
    cfg = {"image_size": 8, "num_classes": 3, "train_size": 9, "test_size": 3}
    a, b = synthetic_split(cfg, "train"), synthetic_split(cfg, "train")
    assert torch.equal(a.images, b.images) and a.synthetic
    assert "SYNTHETIC" in a.source


def test_archive_of_image_folders_is_unpacked_once(tmp_path, cache_dir):
    import tarfile
    root = make_image_folder(tmp_path / "cifar-mini")
    archive = tmp_path / "cifar-mini.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(root, arcname="cifar-mini")
    split = load_small_split(data_cfg(archive), "test")
    assert len(split) == 12 and split.classes == ["cat", "dog", "frog"]
    assert len(list(cache_dir.glob("extracted-*"))) == 1
    assert len(load_small_split(data_cfg(archive), "train")) == 12
    assert len(list(cache_dir.glob("extracted-*"))) == 1


def test_truncated_archive(tmp_path, cache_dir):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DatasetError, match="cannot unpack dataset archive .*broken.tar.gz"):
        load_small_split(data_cfg(archive), "train")
    assert not list(cache_dir.glob("extracted-*"))


def test_the_number_of_classes_comes_from_the_dataset_a_config_names(tmp_path):
    assert num_classes({"dataset": "cifar10"}) == 10
    assert num_classes({"dataset": "synthetic", "synthetic": {"num_classes": 7}}) == 7
    folder = make_image_folder(tmp_path / "standin", classes=("a", "b", "c", "d"), per_class=1)
    imagenet = {"dataset": "imagenet", "root": str(folder)}
    assert num_classes(imagenet) == 4  # a stand-in's own classes, read from its folders
    assert num_classes(imagenet, count_folder=False) == 1000  # ILSVRC-2012, nothing read
    with pytest.raises(DatasetError, match="does not exist"):
        num_classes({"dataset": "imagenet", "root": str(tmp_path / "absent")})
