"""Scoring and exporting trained models: `ir2net evaluate` gives the run's own test score,
`ir2net export` writes a program whose logits are the model's; the committed weights of
finished published-schedule runs score exactly what was recorded."""
import json
from pathlib import Path

import pytest
import torch

from ir2net.cli import main
from ir2net.config import load_config
from ir2net.inference import ires_coverage, load_trained, score
from ir2net.training import TrainingStopped, run

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="module")
def trained(tiny_trained_run):
    return tiny_trained_run


def test_evaluate_gives_the_recorded_final_score(trained, capsys):
    folder, metrics = trained
    assert main(["evaluate", str(folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("top1", "top5", "images"):
        assert result[key] == metrics["final"][key]
    # a bare model.pt with its config named
    again = score(folder / "model.pt", config=folder / "config.yaml")
    assert again["top1"] == metrics["final"]["top1"]


def test_evaluate_records_each_images_prediction(trained, tmp_path, capsys):
    """--per-image: the top-1 class and label of every test image, in the test set's order,
    which add up to the run's own score (what the paired comparison of two runs reads)."""
    folder, metrics = trained
    out = tmp_path / "test_predictions.json"
    assert main(["evaluate", str(folder), "--per-image", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert len(record["predictions"]) == len(record["labels"]) == metrics["final"]["images"]
    right = sum(p == y for p, y in zip(record["predictions"], record["labels"]))
    assert 100.0 * right / len(record["labels"]) == pytest.approx(metrics["final"]["top1"])
    assert record["weights"].endswith("model.pt") and "provenance" in record
    assert main(["evaluate", str(folder), "--per-image"]) == 2  # where would they go?
    assert "--per-image writes each image's prediction into the --out record" in \
        capsys.readouterr().err


def test_evaluate_scores_the_training_images_without_augmentation(trained, capsys):
    folder, metrics = trained
    assert main(["evaluate", str(folder), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "on 64 training images, without augmentation" in out
    fit = score(folder, split="train")
    assert fit["split"] == "train" and fit["images"] == 64
    # the same weights over other images: a score of its own, not the test set's again
    assert (fit["top1"], fit["loss"]) != (metrics["final"]["top1"], metrics["final"]["loss"])
    assert score(folder, split="train") == fit  # deterministic: no augmentation draws


def test_evaluate_without_a_config_says_what_to_pass(trained, tmp_path, capsys):
    folder, _ = trained
    lonely = tmp_path / "model.pt"
    lonely.write_bytes((folder / "model.pt").read_bytes())
    assert main(["evaluate", str(lonely)]) == 2
    assert "pass --config" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_torch_export_round_trip_gives_the_models_logits(trained, tmp_path):
    folder, _ = trained
    out = tmp_path / "model.pt2"
    assert main(["export", str(folder), "--out", str(out)]) == 0
    program = torch.export.load(str(out))
    model = load_trained(folder).model
    images = torch.randn(5, 3, 16, 16)  # another batch size than the export's example
    with torch.no_grad():
        torch.testing.assert_close(program.module()(images), model(images), rtol=0, atol=1e-5)


def test_onnx_export_works_or_names_the_missing_packages(trained, tmp_path, capsys):
    folder, _ = trained
    out = tmp_path / "model.onnx"
    status = main(["export", str(folder), "--format", "onnx", "--out", str(out)])
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        assert status == 2 and "pip install onnx onnxscript" in capsys.readouterr().err
        assert not out.exists()
        return
    assert status == 0 and out.stat().st_size > 0


def test_ires_coverage_onset_separates_no_restriction_from_some(trained):
    folder, _ = trained
    onset = ires_coverage(folder, [0.5])["onset"]["min"]
    assert 0.0 < onset < 1.0
    result = ires_coverage(folder, [0.0, 0.999 * onset, 1.001 * onset, 1.0])
    removed = list(result["removed"].values())
    assert result["images"] == 40 and result["variant"] == "authors"
    assert removed[0] == removed[1] == 0.0  # below the onset: the original images
    assert 0.0 < removed[2] < removed[3] < 1.0
    paper = ires_coverage(folder, [1.0], variant="paper")
    assert paper["variant"] == "paper" and paper["removed"][1.0] > 0.0


def test_ires_coverage_of_both_attention_sources_from_one_pass(trained, tmp_path, capsys):
    folder, _ = trained
    out = tmp_path / "coverage.json"
    assert main(["ires-coverage", str(folder), "--lam", "0.15", "1", "--variant", "authors",
                 "paper", "--source", "output", "pre_activation", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "IRes variant paper, attention source pre_activation" in printed
    grid = json.loads(out.read_text())
    assert [(r["variant"], r["source"]) for r in grid] == [
        ("authors", "output"), ("authors", "pre_activation"),
        ("paper", "output"), ("paper", "pre_activation")]
    single = ires_coverage(folder, [0.15, 1.0], variant="paper", source="pre_activation")
    assert single["onset"] == grid[3]["onset"]
    assert {float(k): v for k, v in grid[3]["removed"].items()} == single["removed"]
    assert grid[0]["onset"] == ires_coverage(folder, [0.5])["onset"]  # the run's own default
    assert grid[1]["onset"] != grid[0]["onset"]  # a different map


def test_ires_coverage_reads_a_run_that_is_still_training(tmp_path, capsys, tiny_run_settings):
    folder = tmp_path / "training"
    with pytest.raises(TrainingStopped):  # one step, then the budget is spent
        run(load_config("cifar10_resnet20_bireal",
                        tiny_run_settings + ["train.stop_after=0.000001s"]),
            folder)
    assert not (folder / "model.pt").exists()
    assert main(["ires-coverage", str(folder), "--lam", "0.15", "1"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint/last.pt (epoch 0, step 1)" in out and "40 test images" in out
    assert "λ = 1     removes" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["ires-coverage", str(folder), "--lam", "1.5"])
    assert exit_info.value.code == 2 and "λ must lie in [0, 1]" in capsys.readouterr().err


def finished_longruns():
    return sorted(path.parent for path in (ROOT / "results" / "longruns").glob("*/metrics.json"))


@pytest.mark.skipif(not SHARED_CIFAR.is_file(), reason="needs ../shared/data/cifar10-jpeg.tar.gz")
@pytest.mark.parametrize("folder", finished_longruns() or [None],
                         ids=lambda folder: folder.name if folder else "none-finished-yet")
def test_committed_weights_score_what_was_recorded(folder):
    if folder is None:
        pytest.skip("no published-schedule run has finished yet (results/longruns)")
    recorded = json.loads((folder / "cpu_evaluation.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    result = score(folder, data_root=SHARED_CIFAR, device="cpu", per_image=True)
    assert result["images"] == recorded["images"] == 10_000
    assert result["top1"] == recorded["top1"] and result["top5"] == recorded["top5"]
    assert abs(result["top1"] - metrics["final"]["top1"]) <= 0.1  # the training device's score
    if (folder / "test_predictions.json").is_file():      # the report's paired comparison
        per_image = json.loads((folder / "test_predictions.json").read_text())
        assert result["labels"] == per_image["labels"]
        assert result["predictions"] == per_image["predictions"]
