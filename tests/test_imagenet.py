"""The ImageNet two-stage path on a small generated image folder (CPU)."""
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from ir2net.config import load_config
from ir2net.data import Lighting
from ir2net.training import run


@pytest.fixture
def tiny_imagenet(tmp_path):
    gen = torch.Generator().manual_seed(0)
    for split, count in (("train", 6), ("val", 3)):
        for c in range(4):
            folder = tmp_path / "imagenet" / split / f"n0{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                w, h = 40 + 4 * i, 36 + 2 * c  # varied sizes, as in ImageNet
                pixels = torch.randint(0, 256, (h, w, 3), generator=gen, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.JPEG", format="JPEG")
    return tmp_path / "imagenet"


def stage_config(recipe, root, *extra):
    return load_config(recipe, [f"data.root={root}", "data.image_size=32", "data.resize_size=36",
                                "data.workers=0", "train.batch_size=8", "train.epochs=2",
                                "eval.batch_size=8", "progress=false",
                                "model.recovery.preset=table5_ir2net_c", *extra])


def test_two_stage_training_with_teacher(tmp_path, tiny_imagenet):
    teacher = run(load_config("imagenet_teacher", [
        f"data.root={tiny_imagenet}", "data.image_size=32", "data.resize_size=36",
        "data.workers=0", "train.batch_size=8", "train.epochs=1", "eval.batch_size=8",
        "progress=false"]), tmp_path / "teacher")
    assert teacher["final"]["images"] == 12
    stage1 = run(stage_config("imagenet_stage1", tiny_imagenet,
                              f"train.teacher_weights={tmp_path / 'teacher'}"), tmp_path / "s1")
    stage2 = run(stage_config("imagenet_stage2", tiny_imagenet,
                              f"train.teacher_weights={tmp_path / 'teacher'}",
                              f"train.init_from={tmp_path / 's1'}"), tmp_path / "s2")
    for metrics in (stage1, stage2):
        assert metrics["final"]["images"] == 12
        assert 0 <= metrics["final"]["top1"] <= metrics["final"]["top5"] <= 100
        assert metrics["steps"] == 6  # 24 images / 8 per batch, 2 epochs


def test_stage2_starts_from_stage1_weights(tmp_path, tiny_imagenet):
    from ir2net.training import build_model
    stage1 = run(stage_config("imagenet_stage1", tiny_imagenet, "train.teacher=null",
                              "train.epochs=1"), tmp_path / "s1")
    config = stage_config("imagenet_stage2", tiny_imagenet, "train.teacher=null",
                          f"train.init_from={tmp_path / 's1'}")
    assert config["model"]["precision"] == "binary" and config["train"]["weight_decay"] == 0
    weights = torch.load(tmp_path / "s1" / "model.pt", weights_only=True)
    model = build_model(config, 4)
    model.load_state_dict(weights)  # same parameter names in both stages
    assert stage1["final"]["images"] == 12


def test_missing_teacher_weights_give_instructions(tmp_path, tiny_imagenet):
    with pytest.raises(Exception, match="weights file .* does not exist"):
        run(stage_config("imagenet_stage1", tiny_imagenet,
                         f"train.teacher_weights={tmp_path / 'nope.pt'}"), tmp_path / "s1")


def test_lighting_on_floats_adds_one_colour_offset_per_image():
    torch.manual_seed(0)
    image = torch.rand(3, 8, 8)
    out = Lighting(0.1, input="float")(image)
    offset = out - image
    assert torch.allclose(offset, offset[:, :1, :1].expand_as(offset))
    assert offset.abs().max() * 255 > 0.5  # grey levels: the strong, non-authors effect
    assert torch.equal(Lighting(0.0, input="float")(image), image)


def test_lighting_on_uint8_truncates_as_the_authors_code():
    """The authors add the (unscaled) PCA noise to the 0-255 image and truncate back to
    integers: a channel whose noise is negative loses exactly one grey level, a channel
    whose noise is positive is unchanged, and 0 stays 0."""
    image = torch.randint(1, 256, (3, 8, 8), dtype=torch.uint8)
    image[:, 0, 0] = 0
    lighting = Lighting(0.1)
    assert lighting.input == "uint8"
    lowered = []
    for seed in range(40):
        torch.manual_seed(seed)
        alpha = torch.randn(3) * 0.1
        noise = Lighting.EIGVEC @ (alpha * Lighting.EIGVAL)
        torch.manual_seed(seed)
        out = lighting(image)
        assert out.dtype == torch.uint8
        change = image.int() - out.int()
        for channel in range(3):
            expected = 1 if noise[channel] < 0 else 0
            assert (change[channel, 1:, :] == expected).all()
            assert change[channel, 0, 0] == 0
            lowered.append(expected)
    assert 0.2 < sum(lowered) / len(lowered) < 0.8  # about half the channels lose one level
    with pytest.raises(TypeError):
        lighting(torch.rand(3, 8, 8))


def test_unavailable_imagenet_teacher_names_keys_that_exist(monkeypatch):
    import torchvision

    from ir2net.config import schema
    from ir2net.models import create_model
    from ir2net.models.resnet_imagenet import TeacherWeightsError

    def offline(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.models, "resnet34", offline)
    with pytest.raises(TeacherWeightsError) as error:
        create_model("resnet34_teacher", num_classes=1000, weights="imagenet")
    message = str(error.value)
    assert "train.teacher_weights" in message and "imagenet.teacher_weights" in message
    assert "teacher_weights" in schema()["properties"]["train"]["properties"]
    workflow_schema = yaml.safe_load((Path(__file__).resolve().parents[1] /
                                      "workflow/schemas/config.schema.yaml").read_text())
    assert "teacher_weights" in workflow_schema["properties"]["imagenet"]["properties"]


@pytest.mark.parametrize("train", [True, False])
def test_uint8_batches_normalised_on_the_device_equal_the_per_image_float_pipeline(
        tiny_imagenet, train):
    """The loader ships uint8 batches and normalises them after the transfer; the values are
    those of torchvision's per-image ConvertImageDtype + Normalize, bit for bit, with the
    same random crops, lighting and flips."""
    from torchvision import transforms as T

    from ir2net.data.common import IMAGENET_MEAN, IMAGENET_STD
    from ir2net.data.imagenet import EpochSeededLoader, build_imagefolder_loader

    config = stage_config("imagenet_stage1", tiny_imagenet)
    split = "train" if train else "test"

    def batches(per_image_float):
        loader = build_imagefolder_loader(config["data"], split, 8, train=train, seed=0)
        if per_image_float:  # the float pipeline: convert and normalise in the worker
            loader.dataset.transform = T.Compose([
                *loader.dataset.transform.transforms, T.ConvertImageDtype(torch.float32),
                T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        epoch_loader = EpochSeededLoader(loader, seed=0, device=torch.device("cpu"),
                                         channels_last=False)
        epoch_loader.set_epoch(1)
        torch.manual_seed(1)  # the workerless loader draws augmentation from the global RNG
        return list(epoch_loader)

    shipped, reference = batches(False), batches(True)
    assert len(shipped) == len(reference) > 1
    for (images, labels), (expected, expected_labels) in zip(shipped, reference):
        assert images.dtype == torch.float32 and images.shape[1:] == (3, 32, 32)
        assert torch.equal(images, expected) and torch.equal(labels, expected_labels)
    assert shipped[0][0].std() > 0.1  # a real image, normalised


def test_scoring_pipeline_runs_over_either_split_without_augmentation(tiny_imagenet):
    from ir2net.data import build_test_data

    config = stage_config("imagenet_stage1", tiny_imagenet)

    def images(split):
        batches, classes = build_test_data(config, torch.device("cpu"), split)
        batches.set_epoch(0)
        return classes, torch.cat([images for images, _ in batches])

    classes, test = images("test")
    train_classes, train = images("train")
    assert classes == train_classes == ["n00", "n01", "n02", "n03"]
    assert test.shape == (12, 3, 32, 32) and train.shape == (24, 3, 32, 32)
    assert torch.equal(images("train")[1], train)  # centre crops: no random draw
    with pytest.raises(ValueError, match="split must be 'test' or 'train'"):
        build_test_data(config, torch.device("cpu"), "val")
