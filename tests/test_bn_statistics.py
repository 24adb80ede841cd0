"""BatchNorm's running-statistics momentum (what IRes that removes nothing changes): it never
reaches the weights, the statistics kept beside BatchNorm's own follow its rule, and
`ir2net bn-momentum` scores a run's state with each momentum without touching the run."""
import copy
import json

import pytest
import torch

from ir2net.bn_statistics import FROZEN, RunningStatistics
from ir2net.cli import main
from ir2net.config import load_config
from ir2net.training import TrainingStopped, build_model, run, set_batchnorm_momentum


def tiny_resnet(tiny_run_settings):
    return build_model(load_config("cifar10_resnet20_bireal", tiny_run_settings), 10)


def train_steps(model, batches):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for images, labels in batches:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def batches(count=6, size=16):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 3, 16, 16, generator=generator),
             torch.randint(0, 10, (size,), generator=generator)) for _ in range(count)]


def test_batchnorm_momentum_never_reaches_the_weights(tiny_run_settings):
    """In training BatchNorm normalises with the batch's statistics, so runs that differ only
    in its momentum train bit-identical weights and differ only in the running statistics."""
    slow = tiny_resnet(tiny_run_settings)
    fast = set_batchnorm_momentum(copy.deepcopy(slow), 0.19)
    data = batches()
    train_steps(slow, data)
    train_steps(fast, data)
    slow_state, fast_state = slow.state_dict(), fast.state_dict()
    statistics = [name for name in slow_state if name.endswith(("running_mean", "running_var"))]
    assert statistics
    for name, value in slow_state.items():
        if name in statistics:
            continue
        assert torch.equal(value, fast_state[name]), name
    assert not all(torch.equal(slow_state[n], fast_state[n]) for n in statistics)


def test_kept_statistics_follow_batchnorms_own_rule(tiny_run_settings):
    """Kept at the model's own momentum while it trains, the statistics are BatchNorm's, to
    float rounding; kept with momentum None over frozen weights, they are those of a
    BatchNorm with momentum None (the equal-weight average) over the same batches."""
    model = tiny_resnet(tiny_run_settings)
    kept = RunningStatistics(model, [0.1, 0.5])
    train_steps(model, batches())
    kept.remove()
    assert kept.batches == len(batches())
    assert kept.relative_difference(0.1) < 1e-5
    assert kept.relative_difference(0.5) > 1e-3  # another momentum: other statistics

    averaging = copy.deepcopy(model)
    for module in averaging.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None
            module.reset_running_stats()
    frozen = RunningStatistics(model, [None])
    with torch.no_grad():
        for images, _ in batches(count=4):
            model(images)
            averaging(images)
    frozen.remove()
    model.load_state_dict(averaging.state_dict())  # BatchNorm's own equal-weight average
    assert frozen.relative_difference(None) < 1e-5


def test_bn_momentum_scores_a_checkpoint_without_touching_it(tmp_path, capsys,
                                                             tiny_run_settings):
    folder = tmp_path / "training"
    with pytest.raises(TrainingStopped):  # one step, then the budget is spent
        run(load_config("cifar10_resnet20_bireal",
                        tiny_run_settings + ["train.stop_after=0.000001s"]), folder)
    checkpoint = folder / "checkpoint" / "last.pt"
    before = checkpoint.read_bytes()
    out = folder / "bn_momentum.json"
    command = ["bn-momentum", str(folder), "--steps", "3", "--points", "2", "--interval", "2",
               "--frozen-batches", "2", "--momentum", "0.19", "0.5", "--out", str(out)]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "training steps at lr" in printed and "momentum 0.1 (the run's own)" in printed
    assert "scored after 3 and then every 2, 2 times" in printed
    assert checkpoint.read_bytes() == before and not (folder / "model.pt").exists()
    [record] = json.loads(out.read_text())
    assert list(record["scores"]) == ["0.1", "0.19", "0.5", FROZEN]
    assert all(s["images"] == 40 for s in record["scores"].values())
    assert [m["steps"] for m in record["measurements"]] == [3, 5]
    for key, scores in record["scores"].items():  # the mean of the points
        assert scores["top1_points"] == [m["scores"][key]["top1"] for m in record["measurements"]]
        assert scores["top1"] == pytest.approx(sum(scores["top1_points"]) / 2)
    assert record["trained"] and record["epoch"] == 0 and record["step"] == 1
    assert record["bn_updates_per_step"] == 2  # IR²Net: IRes's second pass updates them again
    assert record["own_statistics_agreement"] < 1e-4
    assert "provenance" in record
    assert main(command) == 0  # the same state measured again replaces its record
    assert len(json.loads(out.read_text())) == 1

    assert main(command[:2] + ["--points", "0"]) == 2
    assert "must be at least 1" in capsys.readouterr().err
    for bad in ("{not json", '{"a": 1}'):
        out.write_text(bad)
        assert main(command) == 2
        assert "is not the JSON list" in capsys.readouterr().err
        assert out.read_text() == bad  # left as it was
