"""The data calibration: its recipe, its schedule, `ir2net calibrate`, and its checks."""
import json

import pytest
import torch

from ir2net.calibration import REFERENCE, shortfall, summary_line
from ir2net.cli import main
from ir2net.config import ConfigError, load_config
from ir2net.training import build_scheduler

TINY = ["data.dataset=synthetic", "data.synthetic.train_size=64", "data.synthetic.test_size=32",
        "data.synthetic.image_size=32", "train.batch_size=32", "eval.batch_size=32",
        "train.epochs=2"]


def test_the_recipe_is_akamasters():
    """akamaster/pytorch_resnet_cifar10's trainer: 200 epochs, SGD 0.1, momentum 0.9,
    weight decay 1e-4, batch 128, lr x 0.1 after epochs 100 and 150, a real-valued network."""
    config = load_config("cifar10_calibration_resnet20", ["data.root=x"])
    train = config["train"]
    assert (train["epochs"], train["lr"], train["momentum"], train["weight_decay"],
            train["batch_size"]) == (200, 0.1, 0.9, 1e-4, 128)
    assert (train["schedule"], train["lr_milestones"], train["lr_gamma"]) == (
        "multistep", [100, 150], 0.1)
    assert config["model"]["name"] == "resnet20" and config["model"]["precision"] == "fp"
    assert not config["ires"]["enabled"] and not config["model"]["recovery"]["enabled"]


def test_multistep_divides_the_lr_after_each_milestone():
    config = load_config("cifar10_calibration_resnet20",
                         ["data.root=x", "train.epochs=5", "train.lr_milestones=[2,3]"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config["train"]["lr"])
    scheduler = build_scheduler(optimizer, config["train"])
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.001, 0.001])


@pytest.mark.parametrize("override,message", [
    (["train.lr_milestones=[]"], "non-empty, strictly increasing"),
    (["train.lr_milestones=[150,100]"], "non-empty, strictly increasing"),
    (["train.lr_milestones=[100,100]"], "non-empty, strictly increasing"),
    (["model.precision=binary"], "'model.name': resnet20 is a plain real-valued network"),
    (["ires.enabled=true"], "'model.name': resnet20 is a plain real-valued network"),
])
def test_a_bad_calibration_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cifar10_calibration_resnet20", ["data.root=x", *override])


def test_the_shortfall_is_points_under_the_canonical_figure():
    assert REFERENCE["top1"] == 91.73
    assert shortfall(88.5) == 3.23 and shortfall(None) is None
    line = summary_line({"top1": 88.5, "epoch": 190}, {"top1": 88.1}, 45, 200)
    assert "in progress, epoch 45 of 200: not yet comparable" in line and "+3.23" in line
    assert summary_line(None, None, 0, 200) == "calibration: no epoch evaluated yet"


def test_calibrate_trains_then_reports_from_the_run(tmp_path, capsys):
    out = tmp_path / "calibration"
    sets = [x for s in TINY for x in ("--set", s)]
    assert main(["calibrate", "--data", "unused", "--out", str(out), "--no-progress",
                 "--device", "cpu", *sets]) == 0
    first = json.loads((out / "calibration.json").read_text())
    assert first["epochs"] == 2 and first["reference"] == REFERENCE
    assert first["shortfall"] == shortfall(first["best"]["top1"])
    assert not first["comparable"]       # a changed schedule is never held against 91.73
    assert "not comparable with the canonical figure" in capsys.readouterr().out
    # reading the finished run gives the same summary, without training
    assert main(["calibrate", "--from", str(out), "--json", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert {k: again[k] for k in ("best", "final", "shortfall", "comparable", "epochs")} == {
        k: first[k] for k in ("best", "final", "shortfall", "comparable", "epochs")}


def test_calibrate_refuses_unclear_input(tmp_path, capsys):
    assert main(["calibrate"]) == 2
    assert "exactly one of the two" in capsys.readouterr().err
    assert main(["calibrate", "--from", str(tmp_path)]) == 2
    assert "holds no finished run" in capsys.readouterr().err
