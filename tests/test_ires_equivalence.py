"""What a restriction that removes nothing trains (issue: IRes settled).

With a mask that keeps every pixel, Algorithm 1's masked pass repeats the first one; with
mu = 1/2, Eq. 10's gradient is the first pass's (halved twice and summed: exact), so the
only effect is that every BatchNorm layer updates its running statistics twice per step
with the same batch statistic b:

    (1 - m) * ((1 - m) * r + m * b) + m * b  =  (1 - m)**2 * r + (1 - (1 - m)**2) * b,

one update with momentum m' = 1 - (1 - m)**2 (0.19 for PyTorch's 0.1).  These tests train
whole runs both ways, with the same seed and data order, and compare what they end with:
the weights bit for bit (the training forward uses batch statistics, never the running
ones), the running statistics to rounding (the two formulas round differently), and the
update counters (twice as many with IRes).
"""
import pytest
import torch

from ir2net.config import load_config
from ir2net.training import run

MOMENTUM = 0.1
TWICE = 1 - (1 - MOMENTUM) ** 2          # 0.19
# 300 steps: 3 epochs of 100 batches of 8 small images
STEPS = ["data.dataset=synthetic", "data.synthetic.train_size=800", "data.synthetic.test_size=16",
         "data.synthetic.image_size=8", "train.batch_size=8", "eval.batch_size=16",
         "train.epochs=3", "progress=false"]
RECOVERY = {"none": ["model.recovery.enabled=false"], "cirec": []}   # the recipe's CIRec r = 4
#: The running statistics agree to this relative to each tensor's largest magnitude
#: (measured: below 1e-6 after 300 steps; float32 rounding of two formulas, compounding).
STATISTICS_RTOL = 1e-5


@pytest.fixture(scope="module")
def without_ires(tmp_path_factory):
    """The runs without IRes, BatchNorm momentum 0.19: one per recovery setting."""
    ends = {}
    for name, recovery in RECOVERY.items():
        folder = tmp_path_factory.mktemp(f"without-ires-{name}")
        config = load_config("cifar10_resnet20_bireal", [*STEPS, *recovery, "ires.enabled=false",
                                                         f"model.bn_momentum={TWICE}"])
        metrics = run(config, folder)
        ends[name] = metrics, torch.load(folder / "model.pt", weights_only=True)
    return ends


@pytest.mark.parametrize("second_pass", ["skipped", "differentiated"])
@pytest.mark.parametrize("recovery", sorted(RECOVERY))
def test_ires_that_removes_nothing_is_batchnorm_momentum_0_19(recovery, second_pass, tmp_path,
                                                               monkeypatch, without_ires):
    # "differentiated": both passes with gradients, as Algorithm 1 is written
    monkeypatch.setenv("IR2NET_SKIP_REPEATED_PASS", "1" if second_pass == "skipped" else "0")
    config = load_config("cifar10_resnet20_bireal", [*STEPS, *RECOVERY[recovery],
                                                     "ires.enabled=true", "ires.lam=0.15"])
    assert config["model"]["bn_momentum"] == MOMENTUM
    metrics = run(config, tmp_path / "ires")
    assert metrics["steps"] == 300
    # the premise: at the paper's lambda the mask removed no pixel in any epoch
    assert [record["ires_removed"] for record in metrics["history"]] == [0.0, 0.0, 0.0]
    with_ires = torch.load(tmp_path / "ires" / "model.pt", weights_only=True)
    reference_metrics, reference = without_ires[recovery]
    assert with_ires.keys() == reference.keys()
    statistics = 0
    for key, value in with_ires.items():
        if key.endswith("num_batches_tracked"):     # two updates per step against one
            assert value == 2 * reference[key] == 600, key
        elif key.endswith(("running_mean", "running_var")):
            scale = reference[key].abs().max()
            assert (value - reference[key]).abs().max() <= STATISTICS_RTOL * scale, key
            statistics += 1
        else:                                       # every weight, bit for bit
            assert torch.equal(value, reference[key]), key
    assert statistics >= 38                         # 19 BatchNorm layers at least
    assert [r["train_loss"] for r in metrics["history"]] == [
        r["train_loss"] for r in reference_metrics["history"]]


def test_bn_momentum_reaches_every_batchnorm():
    from torch import nn

    from ir2net.training import build_model

    config = load_config("cifar10_resnet20_bireal", ["data.root=x", f"model.bn_momentum={TWICE}"])
    model = build_model(config, 10)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) >= 20 and all(m.momentum == TWICE for m in norms)    # 19 + CIRec's head


def test_attention_source_reaches_the_model():
    from ir2net.training import build_model

    base = load_config("cifar10_resnet20_bireal", ["data.root=x"])
    assert build_model(base, 10).attention_source == "output"
    config = load_config("cifar10_resnet20_bireal", ["data.root=x", "ires.source=pre_activation"])
    assert build_model(config, 10).attention_source == "pre_activation"


#: per key added after runs had started (config.LATER_KEYS): a value other than its default,
#: and a value the schema refuses
LATER_KEY_VALUES = {"train.sync_batchnorm": ("true", "2"), "train.lr_milestones": ("[10]", "[0]"),
                    "train.lr_gamma": ("0.5", "0"), "model.bn_momentum": (str(TWICE), "0"),
                    "ires.source": ("pre_activation", "input")}


def test_every_later_key_is_checked():
    from ir2net.config import LATER_KEYS

    assert set(LATER_KEY_VALUES) == set(LATER_KEYS)


@pytest.mark.parametrize("key", sorted(LATER_KEY_VALUES))
def test_a_later_key_changes_the_digest_only_when_set_away_from_its_default(key):
    """A run started before the key existed keeps its digest (its default is what the code
    did before); a run that sets it is another run; a bad value names the key."""
    from ir2net.config import ConfigError, config_digest

    other, bad = LATER_KEY_VALUES[key]
    base = load_config("cifar10_resnet20_bireal", ["data.root=x"])
    assert config_digest(load_config("cifar10_resnet20_bireal",
                                     ["data.root=x", f"{key}={other}"])) != config_digest(base)
    section, leaf = key.split(".")
    without_key = load_config("cifar10_resnet20_bireal", ["data.root=x"])
    del without_key[section][leaf]
    assert config_digest(without_key) == config_digest(base)
    with pytest.raises(ConfigError, match=f"'{key}"):
        load_config("cifar10_resnet20_bireal", ["data.root=x", f"{key}={bad}"])


def test_a_lambda_below_the_recorded_onset_trains_the_reference_run_bit_for_bit(tmp_path):
    """Figure 7's derived points (ir2net.longruns.derive): a λ below the smallest onset the
    reference recorded over all its steps trains the same weights; λ = 1 does not."""
    from ir2net.longruns import derive

    prefix = [*STEPS[:-2], "train.epochs=2", "progress=false", "ires.enabled=true"]
    prefix = [item for item in prefix if not item.startswith("data.synthetic.train_size")]
    prefix.append("data.synthetic.train_size=320")               # 2 epochs of 40 steps

    def train(lam, name):
        metrics = run(load_config("cifar10_resnet20_bireal", [*prefix, f"ires.lam={lam}"]),
                      tmp_path / name)
        return metrics, torch.load(tmp_path / name / "model.pt", weights_only=True)

    reference_metrics, reference = train(0.05, "reference")
    history = reference_metrics["history"]
    assert [record["ires_removed"] for record in history] == [0.0, 0.0]
    onset = min(record["ires_onset"] for record in history)
    assert history[-1]["ires_onset_min"] == onset and onset > 0.05
    summary = {"run": "reference", "state": "complete", "history": history, "epochs": 2}
    lam = round((0.05 + onset) / 2, 4)
    assert derive(lam, summary)["state"] == "derived"
    assert derive(1.0, summary)["state"] == "acts"
    _, point = train(lam, "point")
    assert point.keys() == reference.keys()
    assert all(torch.equal(point[key], reference[key]) for key in reference)  # every tensor
    acting_metrics, acting = train(1.0, "acting")
    assert acting_metrics["history"][0]["ires_removed"] > 0.0
    assert not all(torch.equal(acting[key], reference[key]) for key in reference)
