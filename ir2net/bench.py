"""``ir2net bench``: training-step and data-pipeline throughput, measured side by side.

The reference is a plain transcription of Algorithm 1 in the style of the authors'
code, run on the same model architecture and the same batch:

* activations: ``sign`` forward with the ApproxSign gradient assembled from three float
  masks and the ``out_forward.detach() - out3.detach() + out3`` trick;
* weights: ``sign(w).detach() - clamp(w).detach() + clamp(w)``;
* the IRes mask built by a Python loop over the images of the batch.

Before anything is timed, ours and the reference must give the same loss and the same
gradients on one fixed batch (see ``EQUIVALENCE_TOLERANCE``), or the benchmark fails.
Timings: warm-up steps excluded, several repeats of ours and the reference interleaved
round-robin, the median reported; on a GPU every repeat is bracketed by synchronisation.
"""
from __future__ import annotations

import copy
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import provenance
from .binarize import (ApproxSign, BinaryConv2d, WeightSign, fused_pointwise_enabled,
                       set_binary_compute_dtype)
from .data import TensorBatches, synthetic_split
from .models import create_model
from .recovery import recovery_preset
from .restriction import InformationRestriction
from .training import TrainStep, build_step

__all__ = ["EQUIVALENCE_TOLERANCE", "AuthorsStyleApproxSign", "AuthorsStyleWeightSign",
           "authors_style_model", "ReferenceStep", "check_equivalence", "run_benchmark",
           "BenchmarkError"]

#: Relative and absolute tolerance on the loss and on every gradient (fp32; the two
#: formulations differ only in the order of floating-point operations).
EQUIVALENCE_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


class BenchmarkError(RuntimeError):
    pass


class AuthorsStyleApproxSign(nn.Module):
    """ApproxSign as the authors wrote it: three float masks and the detach trick."""

    def forward(self, x):
        out_forward = torch.sign(x)
        mask1 = x < -1
        mask2 = x < 0
        mask3 = x < 1
        out1 = (-1) * mask1.type(torch.float32) + (x * x + 2 * x) * (1 - mask1.type(torch.float32))
        out2 = out1 * mask2.type(torch.float32) + (-x * x + 2 * x) * (1 - mask2.type(torch.float32))
        out3 = out2 * mask3.type(torch.float32) + 1 * (1 - mask3.type(torch.float32))
        return out_forward.detach() - out3.detach() + out3


class AuthorsStyleWeightSign(nn.Module):
    def forward(self, w):
        clipped = torch.clamp(w, -1.0, 1.0)
        return torch.sign(w).detach() - clipped.detach() + clipped


def authors_style_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose quantizers are the authors' formulation (same weights)."""
    reference = copy.deepcopy(model)
    for module in reference.modules():
        if isinstance(module, BinaryConv2d):
            if isinstance(module.input_quantizer, ApproxSign):
                module.input_quantizer = AuthorsStyleApproxSign()
            if isinstance(module.weight_quantizer, WeightSign):
                module.weight_quantizer = AuthorsStyleWeightSign()
    return reference


def _authors_attention_erase(features, images, lam):
    """The authors' ``at`` + ``attention_erase``: one image at a time."""
    attention = F.normalize(features.pow(2).mean(1))
    height, width = images.shape[-2:]
    attention = F.interpolate(attention.unsqueeze(1).detach(), size=(height, width),
                              mode="bilinear", align_corners=True)
    weights = F.avg_pool2d(attention, (height, width)).reshape(images.shape[0], -1)
    masks = []
    for i in range(images.shape[0]):
        mask = attention[i].detach()
        masks.append((mask > lam * weights[i]).float())
    return images * torch.stack(masks)


class ReferenceStep:
    """Algorithm 1 as the authors' trainer runs it (mu = 0.5)."""

    def __init__(self, model, optimizer, lam: float):
        self.model, self.optimizer, self.lam = model, optimizer, lam

    def loss(self, images, labels):
        output1, feature = self.model(images, return_attention_source=True)
        erased = _authors_attention_erase(feature, images, self.lam)
        output2 = self.model(erased)
        return (F.cross_entropy(output1, labels) + F.cross_entropy(output2, labels)) / 2, output1

    def __call__(self, images, labels):
        loss, logits = self.loss(images, labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach()


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def check_equivalence(ours: TrainStep, reference: ReferenceStep, images, labels) -> dict:
    """Same loss and gradients on one batch, or :class:`BenchmarkError`.

    On CUDA the check runs in strict fp32 (no TF32) with deterministic cuDNN: TF32's
    10-bit mantissa moves pre-activations near 0 across the sign threshold differently
    in two formulations that agree in exact arithmetic."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, cudnn.deterministic,
             cudnn.benchmark)
    cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        return _compare(ours, reference, images, labels)
    finally:
        (cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, cudnn.deterministic,
         cudnn.benchmark) = saved


def _compare(ours, reference, images, labels) -> dict:
    results = []
    for step in (ours, reference):
        step.model.train()
        step.model.zero_grad(set_to_none=True)
        loss = step.loss(images, labels)[0]
        loss.backward()
        results.append((loss.detach().float(), {n: p.grad.detach().float().clone()
                                                for n, p in step.model.named_parameters()
                                                if p.grad is not None}))
        step.model.zero_grad(set_to_none=True)
    (loss_a, grads_a), (loss_b, grads_b) = results
    if grads_a.keys() != grads_b.keys():
        raise BenchmarkError("ours and the reference have different parameters with gradients")
    worst = 0.0
    try:
        torch.testing.assert_close(loss_a, loss_b, **EQUIVALENCE_TOLERANCE)
        for name in grads_a:
            torch.testing.assert_close(grads_a[name], grads_b[name], **EQUIVALENCE_TOLERANCE,
                                       msg=lambda m, n=name: f"gradient of {n}: {m}")
            worst = max(worst, (grads_a[name] - grads_b[name]).abs().max().item())
    except AssertionError as error:
        raise BenchmarkError(f"ours and the reference disagree; nothing was timed: {error}") from error
    return {"loss": loss_a.item(), "max_abs_grad_diff": worst, **EQUIVALENCE_TOLERANCE}


def _reduced_precision_agreement(step: TrainStep, images, labels, *, bf16_binary_convs: bool,
                                 mixed_precision: str) -> dict:
    """How far the reduced-precision switches move the loss and the gradients on one batch
    from our float32 step (not an equality: bfloat16 keeps 8 mantissa bits)."""
    grads = []
    for reduced in (False, True):
        set_binary_compute_dtype(step.model, torch.bfloat16 if reduced and bf16_binary_convs
                                 else None)
        step.mixed_precision = mixed_precision if reduced else "none"
        step.model.zero_grad(set_to_none=True)
        loss = step.loss(images, labels)[0]
        loss.backward()
        flat = torch.cat([p.grad.flatten() for p in step.model.parameters() if p.grad is not None])
        grads.append((loss.item(), flat))
        step.model.zero_grad(set_to_none=True)
    set_binary_compute_dtype(step.model, None)
    step.mixed_precision = "none"
    (loss32, g32), (loss16, g16) = grads
    cosine = torch.nn.functional.cosine_similarity(g32, g16, dim=0).item()
    return {"loss_fp32": loss32, "loss_bf16": loss16,
            "loss_rel_diff": abs(loss16 - loss32) / abs(loss32), "grad_cosine": cosine}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _throughput(candidates: dict[str, Callable[[], int]], device, warmup: int, repeats: int,
                steps: int) -> dict:
    """Images/s of each candidate, repeats interleaved round-robin so that a machine whose
    speed drifts (a shared host) slows every candidate alike; warm-up excluded."""
    for run_once in candidates.values():
        for _ in range(warmup):
            run_once()
    _sync(device)
    rates = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run_once in candidates.items():
            images = 0
            tick = time.perf_counter()
            for _ in range(steps):
                images += run_once()
            _sync(device)
            rates[name].append(images / (time.perf_counter() - tick))
    return {name: {"median_img_s": statistics.median(values), "repeats_img_s": values}
            for name, values in rates.items()}


def _model(device, channels_last=False):
    torch.manual_seed(0)
    model = create_model("resnet20_bireal", recovery=recovery_preset("table2_resnet20").spec,
                         sign_zero="zero").to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def run_benchmark(device: str = "cpu", batch_size: int = 128, warmup: int = 3,
                  repeats: int = 5, steps: int = 5, data_root: str | None = None,
                  channels_last: bool = False, lam: float = 0.15,
                  compile: bool = False, cuda_graphs: bool = True,
                  bf16: bool = False, mixed_precision: str = "none") -> dict:
    """Training step of ResNet-20 IR²Net (IRes + CIRec) at ``batch_size``: ours vs the
    reference; and the data pipeline.  Both models use the authors' variant of the
    method (``sign(0) = 0``, row-normalised attention, strict ``>``) so that they compute
    the same function."""
    device = torch.device(device)
    if data_root:
        from .data import load_small_split
        split = load_small_split({"dataset": "cifar10", "root": data_root, "download": False,
                                  "cache_dir": None, "synthetic": {}}, "train")
        data_source = f"CIFAR-10 from {data_root}"
    else:
        split = synthetic_split({"image_size": 32, "num_classes": 10,
                                 "train_size": max(4 * batch_size, 1024), "test_size": 10},
                                "train")
        data_source = "SYNTHETIC 32x32 images (no dataset given)"
    batches = TensorBatches(split, batch_size, device, train=True, drop_last=True,
                            channels_last=channels_last)
    images, labels = next(iter(batches))

    ours_model = _model(device, channels_last)
    reference_model = authors_style_model(_model(device))
    restriction = InformationRestriction(lam, 0.5, "authors")
    ours_eager = TrainStep(ours_model, _sgd(ours_model), restriction=restriction)
    reference = ReferenceStep(reference_model, _sgd(reference_model), lam)
    equivalence = check_equivalence(ours_eager, reference, images, labels)
    bf16_check = None
    if bf16 or mixed_precision != "none":  # reduced precision: compared with our fp32 step
        bf16_check = _reduced_precision_agreement(ours_eager, images, labels,
                                                  bf16_binary_convs=bf16,
                                                  mixed_precision=mixed_precision)
        if bf16:
            set_binary_compute_dtype(ours_model, torch.bfloat16)
    # what `ir2net train` runs on this device (CUDA graphs on a GPU)
    ours = build_step(ours_model, ours_eager.optimizer, restriction=restriction,
                      compile=compile, cuda_graphs=cuda_graphs, mixed_precision=mixed_precision)
    # Both passes differentiated, as the reference does, whatever the mask keeps: the ratio
    # compares one computation (docs/performance.md measures the repeated-pass shortcut).
    ours.forward.skip_repeated_pass = False

    def ours_once():
        ours(images, labels)
        return batch_size

    def reference_once():
        reference(images.contiguous(), labels)
        return batch_size

    pipeline_iter = [iter(batches)]

    def next_batch():
        try:
            return next(pipeline_iter[0])
        except StopIteration:
            pipeline_iter[0] = iter(batches)
            return next(pipeline_iter[0])

    def ours_with_data_once():
        x, y = next_batch()
        ours(x, y)
        return y.numel()

    def data_once():
        x, y = next_batch()
        return y.numel()

    steps_timed = _throughput({"reference": reference_once, "ours": ours_once,
                               "ours_with_data": ours_with_data_once},
                              device, warmup, repeats, steps)
    reference_stats, ours_stats = steps_timed["reference"], steps_timed["ours"]
    with_data = steps_timed["ours_with_data"]
    data_stats = _throughput({"data": data_once}, device, warmup, repeats,
                             max(steps * 10, 20))["data"]
    machine = provenance.hardware(device)
    machine.update(python=platform.python_version(), torch=torch.__version__)
    return {
        "train_step": {"ours_img_s": ours_stats["median_img_s"],
                       "reference_img_s": reference_stats["median_img_s"],
                       "speedup": ours_stats["median_img_s"] / reference_stats["median_img_s"],
                       "ours_with_data_img_s": with_data["median_img_s"],
                       "speedup_with_data": with_data["median_img_s"]
                       / reference_stats["median_img_s"],
                       "repeats": {"ours": ours_stats["repeats_img_s"],
                                   "reference": reference_stats["repeats_img_s"],
                                   "ours_with_data": with_data["repeats_img_s"]},
                       "batch_size": batch_size, "model": "resnet20_bireal + CIRec (r=4) + IRes",
                       "ours_step": type(ours).__name__,
                       "equivalence": equivalence, "bf16_binary_convs": bf16,
                       "mixed_precision": mixed_precision, "bf16_agreement": bf16_check},
        "data": {"img_s": data_stats["median_img_s"],
                 "vs_train_step": data_stats["median_img_s"] / ours_stats["median_img_s"],
                 "source": data_source, "pipeline": "device-resident uint8 tensor, batched "
                 "crop + flip + normalise"},
        "settings": {"warmup_steps": warmup, "repeats": repeats, "steps_per_repeat": steps,
                     "channels_last": channels_last, "compile": compile,
                     "cuda_graphs": cuda_graphs, "bf16_binary_convs": bf16,
                     "mixed_precision": mixed_precision,
                     "fused_pointwise": fused_pointwise_enabled()},
        "machine": machine,
    }


# ----------------------------------------------------------------------------- input pipeline
def _imagenet_like_folder(root: Path, images: int, classes: int = 8, seed: int = 0) -> Path:
    """ImageNet-sized JPEGs (500x375, quality 90: about 100 KB, like ImageNet's average) in
    the ImageFolder layout: smooth colour fields with fine noise, photo-like to a JPEG coder."""
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    for index in range(images):
        folder = root / "train" / f"n{index % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        field = F.interpolate(torch.rand(1, 3, 12, 16, generator=gen), size=(375, 500),
                              mode="bicubic", align_corners=False)[0]
        pixels = (field + 0.08 * torch.randn(3, 375, 500, generator=gen)).clamp(0, 1)
        Image.fromarray((pixels.permute(1, 2, 0) * 255).byte().numpy()).save(
            folder / f"{index:06d}.JPEG", quality=90)
    for index in range(classes):  # the loader checks that a val split exists
        (root / "val" / f"n{index:08d}").mkdir(parents=True, exist_ok=True)
        shutil.copy(next((root / "train" / f"n{index:08d}").iterdir()),
                    root / "val" / f"n{index:08d}" / "0.JPEG")
    return root


def run_pipeline_benchmark(images: int = 512, workers: int = 0, batch_size: int = 64,
                           epochs: int = 2) -> dict:
    """Decode + augmentation throughput of the ImageNet training loader (the recipe's
    transforms: RandomResizedCrop 224, lighting, flip; uint8 batches normalised after the
    transfer) on generated ImageNet-sized JPEGs, with ``workers`` DataLoader workers (0: in
    the main process); side by side, epochs interleaved, with the per-image float pipeline
    (ConvertImageDtype + Normalize in the worker), which gives the same values."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per loading process (workers use one thread each)
    try:
        return _time_loader(images, workers, batch_size, epochs)
    finally:
        torch.set_num_threads(threads)


def _time_loader(images: int, workers: int, batch_size: int, epochs: int) -> dict:
    import tempfile

    from torchvision import transforms as T

    from .config import load_config
    from .data import IMAGENET_MEAN, IMAGENET_STD, build_imagefolder_loader
    from .data.imagenet import EpochSeededLoader

    with tempfile.TemporaryDirectory(prefix="ir2net-pipeline-") as folder:
        root = _imagenet_like_folder(Path(folder), images)
        config = load_config("imagenet_stage1", [f"data.root={root}", f"data.workers={workers}"])
        variants = {}
        for name in ("uint8_to_device", "per_image_float"):
            loader = build_imagefolder_loader(config["data"], "train", batch_size, train=True,
                                              seed=0, drop_last=False)
            if name == "per_image_float":
                loader.dataset.transform = T.Compose([
                    *loader.dataset.transform.transforms, T.ConvertImageDtype(torch.float32),
                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
            # what training iterates: float32 NCHW batches on the device (here the CPU)
            variants[name] = EpochSeededLoader(loader, seed=0, device=torch.device("cpu"),
                                               channels_last=False)
        for batches in variants.values():  # warm the page cache and the workers' imports
            next(iter(batches))
        seconds = dict.fromkeys(variants, 0.0)
        count = dict.fromkeys(variants, 0)
        for _ in range(epochs):
            for name, batches in variants.items():
                start = time.perf_counter()
                for batch, _labels in batches:
                    count[name] += batch.shape[0]
                seconds[name] += time.perf_counter() - start
        transform = str(variants["uint8_to_device"].loader.dataset.transform)
    cores = max(workers, 1)
    rate = {name: count[name] / seconds[name] for name in variants}
    return {"images": count["uint8_to_device"], "seconds": round(seconds["uint8_to_device"], 2),
            "img_s": round(rate["uint8_to_device"], 1),
            "img_s_per_core": round(rate["uint8_to_device"] / cores, 1), "workers": workers,
            "per_image_float_img_s": round(rate["per_image_float"], 1),
            "speedup_vs_per_image_float": round(rate["uint8_to_device"] / rate["per_image_float"], 3),
            "batch_size": batch_size, "transform": transform,
            "after_transfer": "uint8 batch -> float32, normalised (ir2net.data.normalise_uint8)",
            "jpeg": "500x375, quality 90 (generated)",
            "machine": provenance.hardware("cpu"), "torch": torch.__version__}
