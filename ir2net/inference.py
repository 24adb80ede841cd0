"""Using a trained model: load it from its run folder, score it on the test set, export it.

A run folder written by ``ir2net train`` holds ``config.yaml`` and ``model.pt``; that is
all scoring needs.  A bare ``model.pt`` needs its config beside it or named explicitly.
Scoring runs the test pipeline of the run's own config (the same normalisation, the same
test images, the same precision switches) and is deterministic on the CPU.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import artifacts
from .config import ConfigError, load_config

__all__ = ["TrainedModel", "load_trained", "score", "ires_coverage", "ires_coverage_grid",
           "export", "EXPORT_FORMATS", "ENGINES", "input_size"]

EXPORT_FORMATS = ("torch-export", "onnx", "openvino")
#: what ``score`` runs the model on: PyTorch, or OpenVINO with binary convolutions on bits
ENGINES = ("pytorch", "openvino")


class TrainedModel:
    def __init__(self, model: nn.Module, config: dict, weights: Path):
        self.model, self.config, self.weights = model, config, weights


def _is_checkpoint(weights: Path) -> bool:
    return weights.parent.name == artifacts.CHECKPOINT.parent.name


def _resolve(target: str | Path, config: Optional[str | Path]) -> tuple[Path, Path]:
    target = Path(target)
    weights = target / "model.pt" if target.is_dir() else target
    in_progress = target / artifacts.CHECKPOINT
    if target.is_dir() and not weights.is_file() and in_progress.is_file():
        weights = in_progress  # a run still training: its latest weights
    if not weights.is_file():
        raise artifacts.ArtifactError(
            f"{weights} does not exist; give a run folder (with model.pt, or a "
            f"{artifacts.CHECKPOINT} while it trains), a model.pt or a checkpoint")
    config_path = Path(config) if config else weights.parent / "config.yaml"
    if not config and _is_checkpoint(weights):  # <run>/checkpoint/last.pt
        config_path = weights.parent.parent / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"no config for {weights}: {config_path} does not exist; pass --config "
                          "with the config.yaml of the run that trained it")
    return weights, config_path


def load_trained(target: str | Path, *, config: Optional[str | Path] = None,
                 overrides: tuple[str, ...] = (), device: str = "cpu") -> TrainedModel:
    """The model of a run folder (or a ``model.pt`` and its config), in eval mode."""
    from .data import num_classes
    from .training import build_model

    weights, config_path = _resolve(target, config)
    run_config = load_config(str(config_path), overrides)
    run_config["device"] = device
    run_config["train"]["channels_last"] = False  # contiguous: the reference layout
    model = build_model(run_config, num_classes(run_config["data"]))
    try:
        model.load_state_dict(artifacts.load_state_dict(weights))
    except RuntimeError as error:
        raise artifacts.ArtifactError(f"{weights} does not fit the model its config "
                                      f"{config_path} describes: {error}") from error
    return TrainedModel(model.to(device).eval(), run_config, weights)


def input_size(config: dict) -> tuple[int, int, int]:
    """The (C, H, W) a run's model takes."""
    size = config["data"]["image_size"]
    if config["data"]["dataset"] == "synthetic":
        size = config["data"]["synthetic"]["image_size"]
    return (3, size, size)


def score(target: str | Path, *, config: Optional[str | Path] = None,
          data_root: Optional[str | Path] = None, device: str = "cpu",
          split: str = "test", engine: str = "pytorch", per_image: bool = False) -> dict:
    """Top-1, top-5, loss and the number of images scored on the run's test set, or with
    ``split="train"`` on its training images without augmentation (how well it fits them).
    ``engine="openvino"``: through the OpenVINO graph of ``export(fmt="openvino")`` on the
    CPU, beside PyTorch on the same images (:func:`_score_on_openvino`).  ``per_image``
    (PyTorch): also each image's top-1 class and label, in the test set's order."""
    from .data import build_test_data
    from .training import evaluate, resolve_device

    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose {', '.join(ENGINES)}")
    if engine == "openvino" and device != "cpu":
        raise ConfigError("the OpenVINO engine runs on the CPU: leave --device at cpu")
    if engine == "openvino" and per_image:
        raise ConfigError("per-image predictions come from the PyTorch engine: drop --per-image "
                          "or --engine openvino")
    overrides = (f"data.root={data_root}",) if data_root else ()
    trained = load_trained(target, config=config, overrides=overrides, device=device)
    batches, _ = build_test_data(trained.config, resolve_device(device), split)
    if engine == "openvino":
        result = _score_on_openvino(trained, batches)
    else:
        result = evaluate(trained.model, batches, trained.config["train"]["mixed_precision"],
                          per_image=per_image)
    return {**result, "split": split, "weights": str(trained.weights), "device": device,
            "engine": engine, "torch_threads": torch.get_num_threads()}


def _score_on_openvino(trained: TrainedModel, batches) -> dict:
    """The run's model on OpenVINO's CPU plugin (binary convolutions on the XNOR-popcount
    kernel, everything else float32) beside PyTorch on the very same batches: PyTorch as the
    run evaluates (its ``model.binary_dtype``: bfloat16 rounds the binary convolutions'
    integer sums) and with float32 binary convolutions (exact sums, as the engine's)."""
    import numpy as np
    import torch.nn.functional as F

    from .binarize import set_binary_compute_dtype
    from .openvino_engine import binary_primitives, compile_for_cpu
    from .openvino_export import to_openvino
    from .training import topk_hits

    configured = trained.model
    exact = set_binary_compute_dtype(copy.deepcopy(configured), None)
    batch_size = trained.config["eval"]["batch_size"]
    graph = to_openvino(configured, input_size(trained.config), batch=batch_size)
    compiled = compile_for_cpu(graph, threads=torch.get_num_threads())
    primitives = binary_primitives(compiled)
    counts = {name: [0, 0] for name in ("openvino", "pytorch", "pytorch_float32")}
    differs = {"pytorch": 0, "pytorch_float32": 0}
    largest, loss_sum, images = 0.0, 0.0, 0
    with torch.no_grad():
        for batch, labels in batches:
            size = batch.shape[0]
            padded = batch.float().contiguous()
            if size < batch_size:  # the graph's batch is fixed: pad the last one
                padded = F.pad(padded, (0, 0, 0, 0, 0, 0, 0, batch_size - size))
            logits = {"openvino": torch.from_numpy(
                np.asarray(compiled(padded.numpy())[0])[:size].copy()),
                "pytorch": configured(batch).float(), "pytorch_float32": exact(batch).float()}
            for name, values in logits.items():
                top1, top5 = topk_hits(values, labels)
                counts[name][0] += int(top1)
                counts[name][1] += int(top5)
            predicted = logits["openvino"].argmax(1)
            for name in differs:
                differs[name] += int((predicted != logits[name].argmax(1)).sum())
            largest = max(largest, (logits["openvino"] - logits["pytorch_float32"]).abs().max()
                          .item())
            loss_sum += F.cross_entropy(logits["openvino"], labels, reduction="sum").item()
            images += size
    import openvino
    return {"top1": 100.0 * counts["openvino"][0] / images,
            "top5": 100.0 * counts["openvino"][1] / images, "loss": loss_sum / images,
            "images": images, "openvino": openvino.get_version(),
            "binary_convolutions": len(primitives),
            "binary_primitives": sorted(set(primitives.values())),
            "pytorch": {"binary_dtype": trained.config["model"]["binary_dtype"],
                        "top1": 100.0 * counts["pytorch"][0] / images,
                        "prediction_differs": differs["pytorch"] / images},
            "pytorch_float32": {"top1": 100.0 * counts["pytorch_float32"][0] / images,
                                "prediction_differs": differs["pytorch_float32"] / images,
                                "largest_logit_difference": largest}}


def ires_coverage(target: str | Path, lams: list[float], *, variant: Optional[str] = None,
                  source: Optional[str] = None, config: Optional[str | Path] = None,
                  data_root: Optional[str | Path] = None, device: str = "cpu") -> dict:
    """When would IRes act on these weights?  Eq. 5-9 on every test image, in eval mode:
    the fraction of input pixels the mask removes at each λ, and the onset, the λ below
    which it removes nothing from any image (:func:`~ir2net.restriction.restriction_onset`).
    ``variant`` and ``source`` (the attention source, ``ires.source``) default to the run's
    own."""
    return ires_coverage_grid(target, lams, variants=[variant] if variant else None,
                              sources=[source] if source else None, config=config,
                              data_root=data_root, device=device)[0]


def ires_coverage_grid(target: str | Path, lams: list[float], *,
                       variants: Optional[list[str]] = None, sources: Optional[list[str]] = None,
                       config: Optional[str | Path] = None,
                       data_root: Optional[str | Path] = None, device: str = "cpu") -> list[dict]:
    """:func:`ires_coverage` for every pair of restriction rule and attention source, from
    one pass over the test set (both sources come out of the same forward pass)."""
    from .data import build_test_data
    from .restriction import attention_map, restriction_mask, restriction_onset
    from .training import resolve_device

    overrides = (f"data.root={data_root}",) if data_root else ()
    trained = load_trained(target, config=config, overrides=overrides, device=device)
    ires = trained.config["ires"]
    pairs = [(variant, source) for variant in (variants or [ires["variant"]])
             for source in (sources or [ires.get("source", "output")])]
    batches, _ = build_test_data(trained.config, resolve_device(device))
    removed = torch.zeros(len(pairs), len(lams), dtype=torch.float64)
    onsets, images = [[] for _ in pairs], 0
    with torch.no_grad():
        for batch, _labels in batches:
            features = trained.model.attention_sources(batch)
            size = tuple(batch.shape[-2:])
            for pair, (variant, source) in enumerate(pairs):
                attention = attention_map(features[source].float(), variant)
                onsets[pair].append(restriction_onset(attention, size))
                for index, lam in enumerate(lams):
                    mask = restriction_mask(attention, size, lam, variant)
                    removed[pair, index] += (1.0 - mask.double().mean(dim=(1, 2, 3))).sum()
            images += batch.shape[0]
    where = {}
    if _is_checkpoint(trained.weights):  # a run in progress: say how far it was
        state = torch.load(trained.weights, map_location="cpu", weights_only=True)
        where = {"epoch": state["epoch"], "step": state["step"]}
    results = []
    for pair, (variant, source) in enumerate(pairs):
        onset = torch.cat(onsets[pair])
        results.append({
            "weights": str(trained.weights), **where, "variant": variant, "source": source,
            "images": images, "onset": {"min": onset.min().item(), "median": onset.median().item()},
            "removed": {lam: (removed[pair, i] / images).item() for i, lam in enumerate(lams)}})
    return results


def export(target: str | Path, out: str | Path, fmt: str = "torch-export", *,
           config: Optional[str | Path] = None) -> Path:
    """Write the trained model for inference: ``torch-export`` (a ``torch.export`` program,
    ``.pt2``, loaded with ``torch.export.load``), ``onnx`` (needs the onnx and onnxscript
    packages) or ``openvino`` (``NAME.xml`` + ``NAME.bin``, batch 1, binary convolutions on
    OpenVINO's XNOR-popcount kernel; :mod:`ir2net.openvino_export`).  Inference only: the
    IRes second pass exists only in training."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose {', '.join(EXPORT_FORMATS)}")
    trained = load_trained(target, config=config)
    model = copy.deepcopy(trained.model)
    out = Path(out)
    if fmt == "openvino":
        return _export_openvino(model, input_size(trained.config), out)
    example = torch.randn(2, *input_size(trained.config))  # not 1: a size-1 dim is specialised
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        if fmt == "torch-export":
            program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
            artifacts.atomic_write(out, lambda handle: torch.export.save(program, handle),
                                   mode="wb")
            return out
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as error:
            raise ConfigError(f"ONNX export needs the onnx and onnxscript packages ({error}); "
                              "`pip install onnx onnxscript`, or use --format torch-export") \
                from error
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            torch.onnx.export(model, (example,), str(tmp), dynamo=True,
                              dynamic_shapes=({0: batch},), input_names=["images"],
                              output_names=["logits"])
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return out


def _export_openvino(model: nn.Module, size: tuple[int, int, int], out: Path) -> Path:
    """Build, check on this CPU (every binary convolution on a bit-packed primitive, the
    logits of random images close to PyTorch's), then save."""
    from .binarize import set_binary_compute_dtype
    from .openvino_engine import EngineError, binary_primitives, compile_for_cpu
    from .openvino_export import binary_layer_count, save_openvino, to_openvino

    if out.suffix != ".xml":
        out = out.with_suffix(".xml")
    graph = to_openvino(model, size)
    compiled = compile_for_cpu(graph)
    primitives = binary_primitives(compiled)
    if len(primitives) != binary_layer_count(model):
        raise EngineError(f"{len(primitives)} binary convolutions in the compiled graph, "
                          f"{binary_layer_count(model)} in the model")
    reference = set_binary_compute_dtype(copy.deepcopy(model), None)
    images = torch.randn(1, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(images)
    got = torch.from_numpy(compiled(images.numpy())[0].copy())
    if got.argmax(1).item() != expected.argmax(1).item() and \
            (got - expected).abs().max() > 1e-3 * expected.abs().max():
        raise EngineError(f"the OpenVINO graph's logits differ from PyTorch's by "
                          f"{(got - expected).abs().max().item():.3g} on a random image")
    return save_openvino(graph, out)
