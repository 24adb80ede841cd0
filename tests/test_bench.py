"""The benchmark's equivalence gate and JSON shape (no timing is asserted)."""
import json

import pytest
import torch

from ir2net.bench import (AuthorsStyleApproxSign, BenchmarkError, ReferenceStep,
                          authors_style_model, check_equivalence)
from ir2net.binarize import ApproxSign
from ir2net.cli import main
from ir2net.models import create_model
from ir2net.recovery import RecoverySpec
from ir2net.restriction import InformationRestriction
from ir2net.training import TrainStep


def test_authors_style_approx_sign_matches_ours():
    x = torch.linspace(-1.5, 1.5, 301).requires_grad_()
    y = x.detach().clone().requires_grad_()
    AuthorsStyleApproxSign()(x).sum().backward()
    ApproxSign("zero")(y).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)


def make_pair(lam_ours=0.15, lam_reference=0.15):
    torch.manual_seed(0)
    model = create_model("resnet20_bireal", recovery=RecoverySpec(4), sign_zero="zero")
    reference_model = authors_style_model(model)
    sgd = lambda m: torch.optim.SGD(m.parameters(), lr=0.1)
    ours = TrainStep(model, sgd(model), restriction=InformationRestriction(lam_ours, 0.5, "authors"))
    return ours, ReferenceStep(reference_model, sgd(reference_model), lam_reference)


def test_equivalence_gate_passes_and_fails():
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    result = check_equivalence(*make_pair(), images, labels)
    assert result["max_abs_grad_diff"] < 1e-4
    with pytest.raises(BenchmarkError, match="disagree"):
        check_equivalence(*make_pair(lam_reference=0.9), images, labels)


def test_bench_json(capsys):
    assert main(["bench", "--device", "cpu", "--batch-size", "8", "--warmup", "1", "--repeats",
                 "1", "--steps", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["train_step"]) >= {"ours_img_s", "reference_img_s", "speedup"}
    assert result["data"]["img_s"] > 0 and "cpu" in result["machine"]


def test_the_imagenet_pipeline_benchmark_times_the_recipes_loader():
    from ir2net.bench import run_pipeline_benchmark

    result = run_pipeline_benchmark(images=16, workers=0, batch_size=8, epochs=1)
    assert result["images"] == 16 and result["img_s"] > 0
    assert result["img_s_per_core"] == result["img_s"]
    for transform in ("RandomResizedCrop(size=(224, 224)", "Lighting(std=0.1, input='uint8')",
                      "RandomHorizontalFlip"):
        assert transform in result["transform"]
    assert "Normalize" not in result["transform"] and "normalise" in result["after_transfer"]
    assert result["per_image_float_img_s"] > 0 and result["speedup_vs_per_image_float"] > 0
