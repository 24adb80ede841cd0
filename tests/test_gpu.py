"""CUDA-only checks (skipped on machines without a GPU): the CUDA-graph training step
computes what the eager step computes."""
import pytest
import torch

from ir2net.models import create_model
from ir2net.recovery import RecoverySpec
from ir2net.restriction import InformationRestriction
from ir2net.training import CudaGraphStep, TrainStep

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_step(seed=0):
    torch.manual_seed(seed)
    model = create_model("resnet20_bireal", recovery=RecoverySpec(4)).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return TrainStep(model, optimizer, restriction=InformationRestriction(0.15))


def test_cuda_graph_step_matches_eager():
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    gen = torch.Generator(device="cuda").manual_seed(1)
    batches = [(torch.randn(32, 3, 32, 32, device="cuda", generator=gen),
                torch.randint(0, 10, (32,), device="cuda", generator=gen)) for _ in range(6)]
    batches.append((batches[0][0][:8], batches[0][1][:8]))  # a last partial batch
    eager, graphed = make_step(), make_step()
    graph_step = CudaGraphStep(graphed)
    for index, (images, labels) in enumerate(batches):
        if index == 4:  # an lr change forces a recapture
            for opt in (eager.optimizer, graphed.optimizer):
                opt.param_groups[0]["lr"] = 0.05
        loss_a = eager(images, labels).loss
        loss_b = graph_step(images, labels).loss
        torch.testing.assert_close(loss_a, loss_b, rtol=1e-4, atol=1e-5)
    assert graph_step.graph is not None
    for (name, a), b in zip(eager.model.state_dict().items(), graphed.model.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-3, atol=1e-4, msg=name)


def test_cuda_graph_step_runs_under_mixed_precision():
    """train.mixed_precision=bfloat16 with the captured step: finite losses that fall on a
    repeated batch (autocast's weight-cast cache is off inside the graph)."""
    step = make_step()
    step.mixed_precision = "bfloat16"
    graph_step = CudaGraphStep(step)
    gen = torch.Generator(device="cuda").manual_seed(2)
    images = torch.randn(32, 3, 32, 32, device="cuda", generator=gen)
    labels = torch.randint(0, 10, (32,), device="cuda", generator=gen)
    losses = [graph_step(images, labels)[0].item() for _ in range(8)]
    assert graph_step.graph is not None and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_uint8_batches_normalised_on_the_gpu_equal_the_per_image_cpu_pipeline():
    """ImageNet batches travel as uint8 and are normalised on the device: on a GPU the values
    are those of torchvision's per-image ConvertImageDtype + Normalize on the CPU to within
    one float32 rounding (CUDA divides by a scalar as a multiplication by its reciprocal;
    bit-equality failed on an H200)."""
    from torchvision import transforms as T

    from ir2net.data.common import IMAGENET_MEAN, IMAGENET_STD, normalise_uint8

    images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    per_image = T.Compose([T.ConvertImageDtype(torch.float32),
                           T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    expected = torch.stack([per_image(image) for image in images])
    torch.testing.assert_close(normalise_uint8(images.cuda()).cpu(), expected, rtol=0, atol=1e-6)


def test_a_recipe_step_is_timed_as_train_runs_it_on_the_gpu():
    """`ir2net bench --recipe` on CUDA: the CUDA-graph step that train.compile: auto runs
    there (not compiled), checked against the eager step, with a record `ir2net plan` reads."""
    from ir2net.config import load_config
    from ir2net.throughput import measure_step

    config = load_config("cifar10_resnet20_bireal", ["data.root=x"])
    record = measure_step(config, recipe="cifar10_resnet20_bireal", device="cuda",
                          batch_size=128, warmup=3, repeats=2, steps=5)
    assert record["train_step"]["ours_step"] == "CudaGraphStep"
    assert not record["settings"]["compile"] and record["train_step"]["ours_img_s"] > 0
    assert record["train_step"]["fast_step_check"] == "agrees with the eager step"
    assert record["machine"]["gpu"]


BASELINE, IR2NET = ("cifar10-resnet20_bireal-bin-norec-nores-s0",
                    "cifar10-resnet20_bireal-bin-cirec-lam0.15-s0")
FORMS = {"graph": ("true", "false"), "graph-compiled": ("true", "true"),
         "compiled": ("false", "true")}  # train.cuda_graphs, train.compile
# Measured on an H200 with torch 2.11.0+cu130 (scripts/diagnose-fast-step.py): torch.compile
# gave the latent weights of a binary convolution a zero gradient while the weight quantizer
# was a custom autograd.Function applied to the parameter; training falls back to the CUDA
# graph without compile.  With the quantizer as plain tensor operations, on an H200 on
# 2026-11-27 the Baseline's compiled CUDA graph passed while IR²Net's three compiled forms
# still failed (results/bench/gpu-session-h200-20261127T1534Z.log), so train.compile: auto
# stays off on CUDA.
COMPILE_BUG = pytest.mark.xfail(reason="torch.compile on CUDA does not train IR²Net's step as "
                                "the eager step does (torch 2.11.0+cu130)", strict=False)


@pytest.mark.parametrize("run, form, binary_dtype", [
    (IR2NET, "graph", "bfloat16"), (BASELINE, "graph", "bfloat16"),
    pytest.param(IR2NET, "graph-compiled", "bfloat16", marks=COMPILE_BUG),
    (BASELINE, "graph-compiled", "bfloat16"),
    # which part breaks: compile alone, and with the float32 binary convolutions
    pytest.param(IR2NET, "compiled", "bfloat16", marks=COMPILE_BUG),
    pytest.param(IR2NET, "graph-compiled", "float32", marks=COMPILE_BUG)],
    ids=lambda value: value.split("-s0")[0].split("bireal-")[-1])
def test_the_fast_steps_update_the_weights_as_the_eager_step(run, form, binary_dtype):
    """The published-schedule runs' own configs (bfloat16 binary convolutions, IRes, CIRec)
    with the CUDA-graph step, compiled or not: every parameter's update in each of three
    calls from the same state (eager first call, capture, recapture) equals the eager step's,
    and no weight tensor gets a zero gradient.  On 2026-11-26 the compiled step trained no
    binary convolution on an H100 and an H200 (results/longruns/README.md)."""
    from pathlib import Path

    from ir2net.config import load_config
    from ir2net.steps import check_fast_step, describe_step
    from ir2net.training import (GradientWatch, build_model, build_optimizer, build_restriction,
                                 build_train_step)

    folder = Path(__file__).resolve().parents[1] / "results" / "longruns" / run
    cuda_graphs, compile = FORMS[form]
    config = load_config(str(folder / "config.yaml"), [
        "train.channels_last=false", f"train.cuda_graphs={cuda_graphs}",
        f"train.compile={compile}", f"model.binary_dtype={binary_dtype}"])
    torch.manual_seed(0)
    model = build_model(config, 10).cuda()
    optimizer = build_optimizer(model, config["train"])
    step = build_train_step(config, model, optimizer, build_restriction(config), None,
                            torch.device("cuda"))
    assert describe_step(step) == {"graph": "CUDA graph", "graph-compiled": "CUDA graph, compiled",
                                   "compiled": "compiled"}[form]
    gen = torch.Generator(device="cuda").manual_seed(3)
    images = torch.randn(128, 3, 32, 32, device="cuda", generator=gen)
    labels = torch.randint(0, 10, (128,), device="cuda", generator=gen)
    problem = check_fast_step(step, optimizer, (images, labels))
    assert problem is None, problem
    for _ in range(3):
        step(images, labels)
    assert GradientWatch(model, optimizer).cut_off() == []


def test_the_cuda_graph_step_trains_data_parallel_as_the_eager_step(tmp_path):
    """Under data parallelism (a process group of one rank, NCCL) the IR²Net run's step is a
    CUDA graph holding the explicit collectives (buffer broadcast, gradient all-reduce): each
    update from the same state agrees with the eager step's, it keeps replaying across a
    learning-rate change, and a last partial batch still runs eagerly through DDP."""
    from pathlib import Path

    import torch.distributed as dist

    from ir2net.config import load_config
    from ir2net.steps import check_fast_step, describe_step
    from ir2net.training import build_model, build_optimizer, build_restriction, build_train_step

    folder = Path(__file__).resolve().parents[1] / "results" / "longruns" / IR2NET
    config = load_config(str(folder / "config.yaml"), ["train.channels_last=false"])
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1, device_id=torch.device("cuda", 0))
    try:
        torch.manual_seed(0)
        model = build_model(config, 10).cuda()
        optimizer = build_optimizer(model, config["train"])
        step = build_train_step(config, model, optimizer, build_restriction(config), None,
                                torch.device("cuda"), distributed=True)
        assert describe_step(step) == "CUDA graph" and step.step.explicit_collectives
        gen = torch.Generator(device="cuda").manual_seed(3)
        images = torch.randn(128, 3, 32, 32, device="cuda", generator=gen)
        labels = torch.randint(0, 10, (128,), device="cuda", generator=gen)
        problem = check_fast_step(step, optimizer, (images, labels))
        assert problem is None, problem
        losses = []
        for rate in (0.1, 0.1, 0.05, 0.05):
            optimizer.param_groups[0]["lr"] = rate
            losses.append(step(images, labels).loss)
        losses.append(step(images[:40], labels[:40]).loss)
        assert step.graph is not None and torch.isfinite(torch.stack(losses)).all()
    finally:
        dist.destroy_process_group()
