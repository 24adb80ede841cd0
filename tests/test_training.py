"""Training recipes end to end on small generated data (CPU)."""
import json

import pytest
import torch
import yaml
from PIL import Image

from ir2net.binarize import BinaryConv2d
from ir2net.cli import main
from ir2net.config import ConfigError, load_config
from ir2net.models import create_model
from ir2net.recovery import RecoverySpec
from ir2net.restriction import InformationRestriction
from ir2net.steps import StepOutput, TrainStep, check_fast_step
from ir2net.training import run

SYNTH = ["data.dataset=synthetic", "data.synthetic.train_size=96", "data.synthetic.test_size=40",
         "data.synthetic.image_size=16", "train.batch_size=32", "eval.batch_size=64",
         "progress=false"]


def synthetic_config(*extra, recipe="cifar10_resnet20_bireal"):
    return load_config(recipe, SYNTH + list(extra))


def test_training_lowers_the_loss(tmp_path):
    config = synthetic_config("train.epochs=3", "data.synthetic.train_size=256",
                              "data.synthetic.image_size=32")
    metrics = run(config, tmp_path / "run")
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < 0.7 * losses[0]
    assert metrics["final"]["images"] == 40 and metrics["data"]["synthetic"]
    assert (tmp_path / "run" / "model.pt").is_file()
    assert set(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())) >= {
        "model", "ires", "data", "train", "seed"}


def test_same_seed_gives_identical_metrics_and_weights(tmp_path, capsys):
    args = ["train", "--config", "cifar10_resnet20_bireal", "--no-progress"]
    sets = [x for s in SYNTH + ["train.epochs=2"] for x in ("--set", s)]
    assert main(args + ["--out", str(tmp_path / "a")] + sets) == 0
    assert main(args + ["--out", str(tmp_path / "b")] + sets) == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["history"] == b["history"] and a["final"] == b["final"]
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert "final top-1" in capsys.readouterr().out


def test_metrics_carry_provenance(tmp_path):
    metrics = run(synthetic_config("train.epochs=1"), tmp_path / "run")
    for key in ("seed", "wall_seconds", "train_images_per_s", "history", "best", "final"):
        assert metrics[key] is not None
    assert set(metrics["provenance"]) == {"git", "versions", "hardware"}
    assert metrics["provenance"]["versions"]["torch"] == torch.__version__.split("+")[0] or \
        metrics["provenance"]["versions"]["torch"].startswith(torch.__version__.split("+")[0])


@pytest.mark.parametrize("recipe", ["cifar10_resnet20_irnet", "cifar10_vgg_small",
                                    "cifar10_resnet18"])
def test_each_cifar_recipe_trains(tmp_path, recipe):
    config = synthetic_config("train.max_steps=2", "train.epochs=1",
                              "data.synthetic.image_size=32", recipe=recipe)
    metrics = run(config, tmp_path / recipe)
    assert metrics["steps"] == 2


@pytest.mark.parametrize("variant", [
    ["model.precision=fp", "model.recovery.enabled=false", "ires.enabled=false"],   # FP
    ["model.recovery.enabled=false", "ires.enabled=false"],                         # Baseline
    ["model.recovery.enabled=false"],                                               # IRes
    ["model.recovery.preset=null", "model.recovery.r=1", "ires.enabled=false"],     # IRec
    ["ires.enabled=false"],                                                         # CIRec
    ["ires.variant=authors", "model.sign_zero=zero"],                               # authors' code
])
def test_table1_variants_run(tmp_path, variant):
    metrics = run(synthetic_config("train.max_steps=2", *variant), tmp_path / "run")
    assert metrics["steps"] == 2


def test_ires_doubles_the_forward_passes(tmp_path, monkeypatch):
    from ir2net.models.layers import IR2NetClassifier
    calls = []
    original = IR2NetClassifier.forward
    monkeypatch.setattr(IR2NetClassifier, "forward",
                        lambda self, *a, **k: calls.append(self.training) or original(self, *a, **k))
    run(synthetic_config("train.max_steps=1", "data.synthetic.test_size=8"), tmp_path / "on")
    assert calls.count(True) == 2
    calls.clear()
    run(synthetic_config("train.max_steps=1", "data.synthetic.test_size=8", "ires.enabled=false"),
        tmp_path / "off")
    assert calls.count(True) == 1  # no restriction, no second pass
    # one off switch: lambda = 0 (the paper's "no restriction") is ires.enabled=false
    with pytest.raises(ConfigError, match="ires.enabled=false"):
        synthetic_config("ires.lam=0")


def test_ires_runs_record_the_onset_of_every_epoch(tmp_path):
    """The largest λ at which every batch's mask would have kept every pixel, per epoch, from
    the attention maps the step computes anyway, and its minimum over the epochs so far."""
    metrics = run(synthetic_config("train.epochs=3", "ires.lam=0.15"), tmp_path / "ires")
    onsets = [record["ires_onset"] for record in metrics["history"]]
    assert all(0.0 <= onset <= 1.0 for onset in onsets)
    assert [record["ires_onset_min"] for record in metrics["history"]] == [
        min(onsets[:index + 1]) for index in range(3)]
    for record in metrics["history"]:  # below the onset nothing is removed
        assert record["ires_removed"] == 0.0 or record["ires_onset"] <= 0.15
    # a λ above every onset removes pixels in every epoch
    high = run(synthetic_config("train.epochs=1", "ires.lam=1.0"), tmp_path / "high")
    assert high["history"][0]["ires_removed"] > 0 and high["history"][0]["ires_onset"] < 1.0
    off = run(synthetic_config("train.epochs=1", "ires.enabled=false"), tmp_path / "off")
    assert "ires_onset" not in off["history"][0]


def test_nan_loss_stops_without_result(tmp_path):
    with pytest.raises(Exception, match="NaN or Inf at step"):
        run(synthetic_config("train.lr=1e30", "train.epochs=3"), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run" / "model.pt").exists()


def test_rerun_of_a_finished_run_returns_it(tmp_path):
    config = synthetic_config("train.epochs=1")
    first = run(config, tmp_path / "run")
    assert run(config, tmp_path / "run") == first
    other = synthetic_config("train.epochs=1", "seed=1")
    with pytest.raises(Exception, match="different config"):
        run(other, tmp_path / "run")


@pytest.mark.parametrize("override,message", [
    ("ires.lam=1.5", "'ires.lam': 1.5 is greater than the maximum of 1"),
    ("model.name=resnet21", "'model.name': unknown backbone 'resnet21'"),
    ("train.lr=fast", "'train.lr': 'fast' is not of type 'number'"),
    ("train.epochs=0", "'train.epochs': 0 is less than the minimum of 1"),
    ("model.recovery.preset=table9", "'model.recovery.preset': unknown preset"),
    ("train.colour=red", "unknown key"),
    ("train.mixed_precision=float16", "'train.mixed_precision': 'float16' is not one of"),
])
def test_bad_config_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config("cifar10_resnet20_bireal", ["data.dataset=synthetic", override])


def test_missing_dataset_root_is_a_config_error():
    with pytest.raises(ConfigError, match="'data.root'"):
        load_config("cifar10_resnet20_bireal")


def test_cli_reports_a_corrupt_image_clearly(tmp_path, capsys, cache_dir):
    for split in ("train", "test"):
        for name in ("a", "b"):
            folder = tmp_path / "ds" / split / name
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(folder / f"{i}.png")
    (tmp_path / "ds" / "train" / "b" / "1.png").write_bytes(b"not an image")
    code = main(["train", "--config", "cifar10_resnet20_bireal", "--out", str(tmp_path / "run"),
                 "--set", f"data.root={tmp_path / 'ds'}", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot decode image" in err and "b/1.png" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_batch_larger_than_the_data_is_an_error(tmp_path):
    with pytest.raises(Exception, match="'train.batch_size': 128 is larger than the 96"):
        run(synthetic_config("train.batch_size=128"), tmp_path / "run")


def test_checkpoint_of_another_config(tmp_path):
    config = synthetic_config("train.epochs=2", "train.max_steps=1")
    folder = tmp_path / "run"
    (folder / "checkpoint").mkdir(parents=True)
    torch.save({"config_digest": "0123456789abcdef"}, folder / "checkpoint" / "last.pt")
    with pytest.raises(Exception, match=r"checkpoint .*last.pt was written by a different config"):
        run(config, folder)
    metrics = run(config, folder, on_config_change="restart")
    assert metrics["steps"] == 1
    assert (folder / "checkpoint" / "stale-0123456789abcdef.pt").is_file()


def test_execution_only_keys_do_not_change_the_digest():
    from ir2net.config import config_digest
    a = synthetic_config()
    b = synthetic_config("train.checkpoint_every_steps=7", "progress=true", "train.compile=true")
    assert config_digest(a) == config_digest(b)
    assert config_digest(a) != config_digest(synthetic_config("train.lr=0.2"))


def test_bfloat16_mixed_precision_step_computes_in_bfloat16_and_learns():
    """train.mixed_precision: convolutions run in bfloat16 under autocast; the loss, the
    gradients and the weights stay float32; repeated steps on one batch lower the loss."""
    from ir2net.binarize import BinaryConv2d
    from ir2net.models import create_model
    from ir2net.recovery import recovery_preset
    from ir2net.restriction import InformationRestriction
    from ir2net.training import TrainStep
    torch.manual_seed(0)
    model = create_model("resnet20_bireal", recovery=recovery_preset("table2_resnet20").spec)
    conv_dtypes = set()
    for module in model.modules():
        if isinstance(module, BinaryConv2d):
            module.register_forward_hook(lambda m, i, out: conv_dtypes.add(out.dtype))
    images, labels = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                     restriction=InformationRestriction(0.15, variant="paper"),
                     mixed_precision="bfloat16")
    losses = [step(images, labels)[0] for _ in range(12)]
    assert conv_dtypes == {torch.bfloat16}
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in losses)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert losses[-1] < 0.8 * losses[0]


def test_a_mixed_precision_run_records_its_precision(tmp_path):
    config = synthetic_config("train.mixed_precision=bfloat16", "train.channels_last=true")
    metrics = run(config, tmp_path / "run")
    assert metrics["status"] == "complete" and 0 <= metrics["final"]["top1"] <= 100
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["mixed_precision"] == "bfloat16"


def _ires_step(config, *, skip: bool, monkeypatch):
    """The step ``ir2net train`` builds for ``config``, with the shortcut for a repeated
    masked pass allowed or (``IR2NET_SKIP_REPEATED_PASS=0``) not."""
    from ir2net.training import (build_model, build_optimizer, build_restriction,
                                 build_teacher, build_train_step)
    monkeypatch.setenv("IR2NET_SKIP_REPEATED_PASS", "1" if skip else "0")
    torch.manual_seed(0)
    model = build_model(config, 10)
    if config["train"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    teacher = build_teacher({**config, "train": {**config["train"], "teacher_weights": None}},
                            10, torch.device("cpu"))
    step = build_train_step(config, model, build_optimizer(model, config["train"]),
                            build_restriction(config), teacher, torch.device("cpu"))
    return step, model


def _train_steps(step, model, config, steps=3):
    gen = torch.Generator().manual_seed(1)
    size, batch = config["data"]["image_size"], 16
    outputs = []
    for _ in range(steps):
        images = torch.randn(batch, 3, size, size, generator=gen)
        if config["train"]["channels_last"]:
            images = images.contiguous(memory_format=torch.channels_last)
        outputs.append(step(images, torch.randint(0, 10, (batch,), generator=gen)))
    return outputs


@pytest.mark.parametrize("recipe,extra", [
    ("cifar10_resnet20_bireal", []),
    ("cifar10_resnet20_bireal", ["model.binary_dtype=bfloat16", "train.channels_last=true"]),
    ("cifar10_resnet20_bireal", ["train.mixed_precision=bfloat16"]),
    ("imagenet_stage1", ["data.image_size=32", "train.teacher_weights=null"]),
], ids=["float32", "bf16-binary-convs", "mixed-bf16", "imagenet-teacher-adam"])
def test_a_masked_pass_that_repeats_the_first_is_skipped_to_the_same_bits(
        recipe, extra, monkeypatch):
    """When the IRes mask keeps every pixel (a lambda far below any attention), the step
    without the repeated pass's backward ends in exactly the bits of Algorithm 1 as written:
    losses, logits, weights, BatchNorm statistics and optimiser state."""
    config = load_config(recipe, ["data.root=x", "ires.lam=1e-6", *extra])
    ends = []
    for skip in (True, False):
        step, model = _ires_step(config, skip=skip, monkeypatch=monkeypatch)
        outputs = _train_steps(step, model, config)
        assert step.forward.repeated_passes_skipped == (3 if skip else 0)
        assert all(float(output.removed_fraction) == 0.0 for output in outputs)
        ends.append((outputs, model.state_dict(), step.optimizer.state_dict()["state"]))
    (skipped, weights, optimiser), (literal, literal_weights, literal_optimiser) = ends
    for a, b in zip(skipped, literal):
        assert torch.equal(a.loss, b.loss) and torch.equal(a.logits, b.logits)
    assert weights.keys() == literal_weights.keys()
    assert all(torch.equal(weights[k], literal_weights[k]) for k in weights)
    for index, state in optimiser.items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(literal_optimiser[index][key]))


def test_a_mask_that_removes_pixels_or_another_mu_keeps_both_passes(monkeypatch):
    config = load_config("cifar10_resnet20_bireal", ["data.root=x", "ires.lam=0.9"])
    step, model = _ires_step(config, skip=True, monkeypatch=monkeypatch)
    outputs = _train_steps(step, model, config, steps=1)
    assert float(outputs[0].removed_fraction) > 0 and step.forward.repeated_passes_skipped == 0
    # mu != 1/2: the two halves of Eq. 10's gradient are not one number doubled
    config = load_config("cifar10_resnet20_bireal", ["data.root=x", "ires.lam=1e-6", "ires.mu=0.3"])
    step, model = _ires_step(config, skip=True, monkeypatch=monkeypatch)
    _train_steps(step, model, config, steps=1)
    assert not step.forward.skip_repeated_pass and step.forward.repeated_passes_skipped == 0


# ----------------------------------------------------------------------------- fast-step check
class FrozenBinaryWeightsStep(TrainStep):
    """What an H100's compiled CUDA-graph step did: the binary convolutions' latent weights
    got no gradient, everything else trained."""

    def __call__(self, images, labels):
        output = self.loss(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        for module in self.model.modules():
            if isinstance(module, BinaryConv2d) and module.is_binary:
                module.weight.grad.zero_()
        self.optimizer.step()
        return StepOutput(output.loss.detach(), output.logits.detach(), output.removed_fraction)


def _ir2net_step(step_class=TrainStep, seed=0):
    torch.manual_seed(seed)
    model = create_model("resnet20_bireal", recovery=RecoverySpec(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return step_class(model, optimizer, restriction=InformationRestriction(0.15))


def _random_batch(size=16, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(size, 3, 32, 32, generator=gen), torch.randint(0, 10, (size,), generator=gen)


def test_the_fast_step_check_finds_binary_weights_left_untrained():
    step = _ir2net_step(FrozenBinaryWeightsStep)
    problem = check_fast_step(step, step.optimizer, _random_batch())
    # the first step's updates differ in exactly ResNet-20's 18 binary convolutions
    assert problem is not None and problem.startswith("18 of 67 parameters in call 1 of 3: "), problem
    assert "layer1.0.conv1.weight (update off by 100%)" in problem
    assert check_fast_step(_ir2net_step(), _ir2net_step().optimizer, _random_batch()) is None


def test_the_fast_step_check_leaves_the_training_state_as_it_found_it():
    """The check trains, then puts weights, BatchNorm statistics and optimiser state back in
    place: the next step is the one an unchecked run takes, bit for bit."""
    batch = _random_batch()
    checked, unchecked = _ir2net_step(), _ir2net_step()
    for _ in range(2):  # momentum buffers exist: they are restored, not recreated
        checked(*batch), unchecked(*batch)
    buffers = [id(s["momentum_buffer"]) for s in checked.optimizer.state.values()]
    assert check_fast_step(checked, checked.optimizer, _random_batch(seed=2)) is None
    assert buffers == [id(s["momentum_buffer"]) for s in checked.optimizer.state.values()]
    for step in (checked, unchecked):
        step(*batch)
    for (name, a), b in zip(checked.model.state_dict().items(),
                            unchecked.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_fresh_optimizer_checked_then_stepped_equals_one_never_checked():
    batch = _random_batch()
    checked, unchecked = _ir2net_step(), _ir2net_step()
    assert check_fast_step(checked, checked.optimizer, _random_batch(seed=2)) is None
    checked(*batch), unchecked(*batch)
    for (name, a), b in zip(checked.model.state_dict().items(),
                            unchecked.model.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("graph_alone", ["fails", "passes"])
def test_a_fast_step_that_fails_its_check_gives_way_to_the_next_faster_one(monkeypatch, capsys,
                                                                           graph_alone):
    """A failing compiled CUDA-graph step is replaced by the CUDA graph without compile when
    that passes, else by the eager step.  On the CPU both are eager steps under another name:
    what is checked is the order and the record."""
    from ir2net import training
    from ir2net.distributed import from_environment

    real = training.describe_step
    step = _ir2net_step(FrozenBinaryWeightsStep)

    def describe(candidate):
        if candidate is step:
            return "CUDA graph, compiled"
        if graph_alone == "passes" and not built:  # the first fallback: compile=false
            built.append(candidate)
            return "CUDA graph"
        return "CUDA graph" if built and candidate is built[0] else real(candidate)

    built = []
    monkeypatch.setattr(training, "describe_step", describe)
    config = load_config("cifar10_resnet20_bireal", ["data.root=x", "train.batch_size=16",
                                                     "train.channels_last=false"])
    chosen, note = training._checked_step(step, config, step.model, step.optimizer,
                                          step.restriction, None, torch.device("cpu"), 10,
                                          from_environment())
    assert type(chosen) is TrainStep and chosen.model is step.model
    failure = "the CUDA graph, compiled step failed its check: 18 of 67 parameters in call 1 of 3"
    if graph_alone == "passes":
        assert chosen is built[0]
        assert note.startswith(f"CUDA graph ({failure}") and note.endswith(
            ", checked against the eager step)")
    else:
        assert note.startswith(f"eager ({failure}") and "checked" not in note
    assert "WARNING: the fast training step (CUDA graph, compiled)" in capsys.readouterr().err


def test_weights_cut_off_from_the_loss_are_never_checkpointed():
    from ir2net.training import GradientWatch, TrainingError

    batch = _random_batch()
    healthy, broken = _ir2net_step(), _ir2net_step(FrozenBinaryWeightsStep)
    for step in (healthy, broken):
        watch = GradientWatch(step.model, step.optimizer)
        watch.check("eager")  # before any step: no gradient yet, nothing to judge
        step(*batch)
        if step is healthy:
            watch.check("eager")
        else:
            with pytest.raises(TrainingError, match=r"18 of 67 trained weight tensors got a "
                               r"gradient of exact zeros .*layer1\.0\.conv1\.weight"):
                watch.check("CUDA graph, compiled")


def test_evaluation_builds_no_autograd_graph():
    """Scoring runs under no_grad: a graph kept across the test set's batches (through the
    summed loss) would hold every batch's activations until the end and exhaust memory."""
    from ir2net.training import evaluate

    model = create_model("resnet20_bireal")
    seen = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(output.requires_grad))
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))) for _ in range(2)]
    scores = evaluate(model, batches)
    assert seen == [False, False]
    assert scores["images"] == 8
