"""Batch-1 latency of the paper's models on a real binary engine (issue 25): is IR²Net fast?

Table VI argues efficiency with OPs = BOPs / 64 + FLOPs, a model in which a binary
multiply-accumulate costs 1/64 of a real one.  This measures instead: every model of Table VI
(IR²Net-A..D, the Bi-Real baseline, the FP Bi-Real ResNet-18, and torchvision's real-valued
ResNet-18) and the CIFAR-10 models of Table III, each on

* ``openvino-xnor``: OpenVINO's CPU plugin with the binary convolutions on its XNOR-popcount
  kernel (:mod:`ir2net.openvino_export`), everything real-valued in float32;
* ``openvino-f32``: the same graph with float32 convolutions of the +-1 values (for a
  real-valued model, just the model; torchvision's through ``ov.convert_model``);
* ``pytorch``: PyTorch eager, float32, for reference;

at one thread and at every thread this process may use.  The engines are timed side by side,
round-robin (one inference of each in turn, ``repeats`` rounds after ``warmup``), so a change
of load on a shared machine touches all alike and their ratios hold; the record gives the
median and the 10th percentile.  Latency does not depend on the weights' values, so the
models are freshly built (BatchNorm statistics as initialised): no data, no trained run.
OpenVINO's per-layer counters split each OpenVINO run into binary convolutions,
binarisation, the real-valued stem, the rest of the stages, the recovery module and the head.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from .recovery_presets import table_presets

__all__ = ["LatencyModel", "LATENCY_MODELS", "ENGINES", "measure_latency", "REFERENCE_MODEL"]

ENGINES = ("openvino-xnor", "openvino-f32", "pytorch")


@dataclass(frozen=True)
class LatencyModel:
    """A model to time: a paper table's row, a registered backbone and its variant
    (:func:`ir2net.complexity.build_variant`; ``torchvision`` for torchvision's ResNet-18)."""

    label: str
    table: str
    model: str
    variant: str

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (3, 224, 224) if self.table == "VI" else (3, 32, 32)


#: the real-valued network every latency is divided by
REFERENCE_MODEL = "ResNet-18 (torchvision)"

LATENCY_MODELS = (
    *(LatencyModel(preset.row, "VI", preset.backbone, preset.name)
      for preset in table_presets("V")),  # IR²Net-A..D
    LatencyModel("Bi-Real Net", "VI", "resnet18_bireal_imagenet", "baseline"),
    LatencyModel("FP", "VI", "resnet18_bireal_imagenet", "fp"),
    LatencyModel(REFERENCE_MODEL, "VI", "torchvision", "resnet18"),
    LatencyModel("ResNet-20* Baseline", "III", "resnet20_bireal", "baseline"),
    LatencyModel("ResNet-20* IR²Net", "III", "resnet20_bireal", "table2_resnet20"),
    LatencyModel("ResNet-20* FP", "III", "resnet20_bireal", "fp"),
    LatencyModel("ResNet-20 IR²Net", "III", "resnet20_irnet", "table2_resnet20"),
    LatencyModel("VGG-Small IR²Net", "III", "vgg_small", "table2_vgg_small"),
    LatencyModel("ResNet-18 IR²Net", "III", "resnet18_cifar", "table2_resnet18"),
)


def _build(entry: LatencyModel) -> nn.Module:
    if entry.model == "torchvision":
        import torchvision
        return getattr(torchvision.models, entry.variant)().eval()
    from .complexity import build_variant
    return build_variant(entry.model, entry.variant).eval()


def _ops_count(entry: LatencyModel, model: nn.Module) -> dict:
    """BOPs, FLOPs and OPs as Table VI counts them (``ir2net.complexity``)."""
    from .complexity import count_complexity
    report = count_complexity(model, entry.input_size, "ir2net_table6", name=entry.label)
    return {"bops": report.bops, "flops": report.flops, "ops": report.ops}


def _openvino_graph(entry: LatencyModel, model: nn.Module, engine: str):
    import openvino as ov

    size = entry.input_size
    if entry.model == "torchvision":
        graph = ov.convert_model(model, example_input=torch.zeros(1, *size))
        graph.reshape([1, *size])
        return graph
    from .openvino_export import to_openvino
    return to_openvino(model, size, binary_kernel=engine == "openvino-xnor")


def _compile(graph, threads: int, counters: bool):
    from .openvino_engine import compile_for_cpu
    return compile_for_cpu(graph, threads=threads, counters=counters)


class _Timed:
    """One model on one engine, ready to run one batch-1 inference."""

    def __init__(self, entry: LatencyModel, engine: str, run: Callable[[], object],
                 primitives: Optional[dict] = None):
        self.entry, self.engine, self.run = entry, engine, run
        self.primitives = primitives or {}
        self.seconds: list[float] = []

    def time_once(self) -> None:
        start = time.perf_counter()
        self.run()
        self.seconds.append(time.perf_counter() - start)


def _engines_for(entry: LatencyModel, model: nn.Module, threads: int,
                 image: torch.Tensor) -> list[_Timed]:
    from .openvino_engine import binary_primitives
    from .openvino_export import binary_layer_count

    binary = binary_layer_count(model) > 0
    timed = []
    for engine in ENGINES:
        if engine == "openvino-xnor" and not binary:
            continue
        if engine == "pytorch":
            def eager(model=model):
                with torch.no_grad():
                    return model(image)
            timed.append(_Timed(entry, engine, eager))
            continue
        compiled = _compile(_openvino_graph(entry, model, engine), threads, counters=False)
        request, array = compiled.create_infer_request(), image.numpy()
        primitives = binary_primitives(compiled, require_binary=engine == "openvino-xnor")
        timed.append(_Timed(entry, engine, lambda request=request, array=array:
                            request.infer([array]), primitives))
    return timed


def _category(name: str, layer_type: str) -> str:
    """Where a node of our graph belongs (its name is its module's path: ``backbone.stem``
    ... in an IR²Net classifier, ``stem``, ``stages`` ... in the calibration's ResNet-20)."""
    if layer_type == "BinaryConvolution":
        return "binary convolutions"
    if layer_type == "FakeQuantize":
        return "binarisation"
    if name.startswith(("backbone.stem", "backbone.stages.pool", "stem")):
        return "stem"
    if name.startswith("recovery"):
        return "recovery"
    if name.startswith(("backbone.stages", "stages")):
        return "stages, real-valued"
    if name.startswith(("pool", "flatten", "head_norm", "classifier", "logits")):
        return "head"
    return "other"


def _breakdown(entry: LatencyModel, model: nn.Module, engine: str, runs: int) -> dict:
    """Mean time per category over ``runs`` inferences at one thread, from OpenVINO's
    per-layer counters (PERF_COUNT on: a separate compilation from the timed one)."""
    compiled = _compile(_openvino_graph(entry, model, engine), 1, counters=True)
    request = compiled.create_infer_request()
    image = np.zeros((1, *entry.input_size), dtype=np.float32)
    totals: dict[str, float] = {}
    layers: dict[str, dict] = {}
    for _ in range(runs):
        request.infer([image])
        for info in request.get_profiling_info():
            if info.status.name != "EXECUTED":
                continue
            seconds = info.real_time.total_seconds()
            category = _category(info.node_name, info.node_type)
            totals[category] = totals.get(category, 0.0) + seconds / runs
            layer = layers.setdefault(info.node_name, {"type": info.node_type,
                                                       "exec_type": info.exec_type,
                                                       "category": category, "ms": 0.0})
            layer["ms"] += 1000.0 * seconds / runs
    total = sum(totals.values())
    return {"ms": {category: 1000.0 * seconds for category, seconds in sorted(totals.items())},
            "share": {category: seconds / total for category, seconds in sorted(totals.items())},
            "total_ms": 1000.0 * total, "layers": layers}


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(flag for flag in line.split(":", 1)[1].split()
                              if flag.startswith(("avx512", "avx2", "amx", "vnni")))
    except OSError:
        pass
    return []


def _machine(threads: list[int]) -> dict:
    import openvino as ov

    from .provenance import _cpu_model, git_commit
    flags, code = _cpu_flags(), git_commit()
    return {"cpu": _cpu_model(), "instruction_sets": flags,
            "avx512": any(flag.startswith("avx512f") for flag in flags),
            "cpus_usable": len(os.sched_getaffinity(0)), "threads": threads,
            "platform": platform.platform(), "openvino": ov.get_version(),
            "torch": torch.__version__, "commit": code["commit"], "dirty": code["dirty"],
            "load_average_at_start": list(os.getloadavg())}


def _summary(seconds: list[float]) -> dict:
    ms = sorted(1000.0 * value for value in seconds)
    return {"median_ms": statistics.median(ms), "p10_ms": float(np.percentile(ms, 10)),
            "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms)}


def measure_latency(models: Optional[list[str]] = None, *, threads: Optional[list[int]] = None,
                    warmup: int = 10, repeats: int = 100, breakdown_runs: int = 20,
                    progress: Optional[Callable[[str], None]] = None) -> dict:
    """The latency record: every model (``models``: labels, default all) on every engine at
    every thread count (default: 1 and all usable), timed round-robin."""
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be at least 1 and warmup at least 0")
    entries = [entry for entry in LATENCY_MODELS if not models or entry.label in models]
    unknown = set(models or ()) - {entry.label for entry in LATENCY_MODELS}
    if unknown:
        raise ValueError(f"unknown latency model(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(entry.label for entry in LATENCY_MODELS)}")
    threads = threads or sorted({1, len(os.sched_getaffinity(0))})
    say = progress or (lambda text: None)
    torch.manual_seed(0)
    built = {entry.label: _build(entry) for entry in entries}
    record = {"machine": _machine(threads), "warmup": warmup, "repeats": repeats,
              "models": {entry.label: {**asdict(entry), **_ops_count(entry, built[entry.label])}
                         for entry in entries},
              "latency": [], "breakdown": {}}
    torch_threads = torch.get_num_threads()
    try:
        for count in threads:
            torch.set_num_threads(count)
            timed = []
            for entry in entries:
                image = torch.zeros(1, *entry.input_size)
                timed += _engines_for(entry, built[entry.label], count, image)
            say(f"{count} thread(s): {len(timed)} model-engine pairs, {warmup} warm-up and "
                f"{repeats} timed rounds")
            for _ in range(warmup):
                for item in timed:
                    item.run()
            for round_number in range(repeats):
                for item in timed:
                    item.time_once()
                if (round_number + 1) % max(1, repeats // 10) == 0:
                    say(f"  round {round_number + 1}/{repeats}")
            for item in timed:
                record["latency"].append({"model": item.entry.label, "engine": item.engine,
                                          "threads": count, **_summary(item.seconds),
                                          "binary_primitives": sorted(set(
                                              item.primitives.values()))})
    finally:
        torch.set_num_threads(torch_threads)
    for entry in entries:
        engines = ("openvino-xnor", "openvino-f32") if entry.model != "torchvision" else ()
        for engine in engines:
            if engine == "openvino-xnor" and not record["models"][entry.label]["bops"]:
                continue
            say(f"per-layer counters: {entry.label}, {engine}")
            record["breakdown"].setdefault(entry.label, {})[engine] = _breakdown(
                entry, built[entry.label], engine, breakdown_runs)
    record["machine"]["load_average_at_end"] = list(os.getloadavg())
    return record
