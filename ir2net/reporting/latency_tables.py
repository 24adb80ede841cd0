"""Measured speed beside the OPs model (issue 25): the latency record of ``ir2net latency``
(:mod:`ir2net.latency`) as tables, Table VI's measured columns and the report's paragraph.

A model's deployed latency is its OpenVINO run with the binary convolutions on the
XNOR-popcount kernel (``openvino-xnor``), or in float32 for a real-valued model; the
speed-up divides torchvision's real-valued ResNet-18 in OpenVINO float32 by it, both at the
same thread count and measured side by side."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pandas as pd

from ..latency import REFERENCE_MODEL

__all__ = ["read_latency", "deployed_latency", "latency_table", "latency_layers_table",
           "table6_measured", "latency_paragraph", "BREAKDOWN_CATEGORIES"]

BREAKDOWN_CATEGORIES = ("binary convolutions", "binarisation", "stem", "stages, real-valued",
                        "recovery", "head", "other")


def read_latency(path: Optional[str | Path]) -> Optional[dict]:
    if not path or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text())


def deployed_latency(record: dict, threads: int = 1) -> dict[str, dict]:
    """{model: the row of the engine that deploys it} at ``threads``."""
    rows = {}
    for row in record["latency"]:
        if row["threads"] != threads:
            continue
        binary = bool(record["models"][row["model"]]["bops"])
        wanted = "openvino-xnor" if binary else "openvino-f32"
        if row["engine"] == wanted:
            rows[row["model"]] = row
    return rows


def _reference_ms(record: dict, threads: int) -> Optional[float]:
    row = deployed_latency(record, threads).get(REFERENCE_MODEL)
    return None if row is None else row["median_ms"]


def latency_table(record: dict) -> pd.DataFrame:
    """Every model on every engine and thread count: median, 10th percentile, how many times
    faster than the real-valued ResNet-18 (OpenVINO float32, same threads), and its OPs."""
    rows = []
    for row in record["latency"]:
        model = record["models"][row["model"]]
        reference = _reference_ms(record, row["threads"])
        rows.append({"table": model["table"], "model": row["model"], "engine": row["engine"],
                     "threads": row["threads"], "median_ms": row["median_ms"],
                     "p10_ms": row["p10_ms"],
                     "speedup_vs_resnet18": (None if reference is None or model["table"] != "VI"
                                             else reference / row["median_ms"]),
                     "ops": model["ops"], "bops": model["bops"], "flops": model["flops"],
                     "binary_primitives": ", ".join(row["binary_primitives"]),
                     "runs": row["runs"]})
    return pd.DataFrame(rows)


def latency_layers_table(record: dict) -> pd.DataFrame:
    """Where the time goes: OpenVINO's per-layer counters (one thread) per category."""
    rows = []
    for model, engines in record["breakdown"].items():
        for engine, breakdown in engines.items():
            row = {"model": model, "engine": engine, "total_ms": breakdown["total_ms"]}
            for category in BREAKDOWN_CATEGORIES:
                row[f"{category}_ms"] = breakdown["ms"].get(category, 0.0)
                row[f"{category}_share"] = breakdown["share"].get(category, 0.0)
            rows.append(row)
    return pd.DataFrame(rows)


def table6_measured(record: Optional[dict]) -> dict[str, dict]:
    """Table VI's measured columns per method: latency at one thread and the speed-up over
    the real-valued ResNet-18."""
    if record is None:
        return {}
    deployed, reference = deployed_latency(record, 1), _reference_ms(record, 1)
    return {model: {"latency_ms": row["median_ms"],
                    "speedup_vs_resnet18": None if reference is None
                    else reference / row["median_ms"]}
            for model, row in deployed.items()}


def latency_paragraph(record: dict) -> str:
    """Which machine measured it, the end-to-end speed-ups, and how well OPs predicts them."""
    machine = record["machine"]
    threads = sorted({row["threads"] for row in record["latency"]})
    lines = [f"Measured with `ir2net latency` on {machine['cpu']} "
             f"({'AVX-512' if machine['avx512'] else 'no AVX-512'}; "
             f"{machine['cpus_usable']} usable CPUs), OpenVINO {machine['openvino'].split('-')[0]}, "
             f"PyTorch {machine['torch']}, commit {str(machine['commit'])[:7]}"
             f"{' with uncommitted changes' if machine.get('dirty') else ''}: batch 1, the "
             f"median of {record['repeats']} inferences after {record['warmup']} warm-up "
             "rounds, every model and engine timed in turn (round-robin), so a change of load "
             "touches all alike; freshly built weights (latency does not depend on their "
             "values). Load average "
             f"{machine['load_average_at_start'][0]:.1f} at the start and "
             f"{machine['load_average_at_end'][0]:.1f} at the end; only the ratios are meant "
             "to carry over to another machine."]
    for count in threads:
        deployed, reference = deployed_latency(record, count), _reference_ms(record, count)
        if reference is None:
            continue
        speedups = [f"{model} {reference / deployed[model]['median_ms']:.2f}×"
                    for model in ("IR²Net-A", "IR²Net-B", "IR²Net-C", "IR²Net-D", "Bi-Real Net")
                    if model in deployed]
        lines.append(f"At {count} thread{'s' if count > 1 else ''}, the real-valued ResNet-18 "
                     f"takes {reference:.2f} ms; end to end, "
                     + ", ".join(speedups) + " faster.")
    ops = {model: values["ops"] for model, values in record["models"].items()}
    deployed = deployed_latency(record, 1)
    if REFERENCE_MODEL in deployed and "IR²Net-A" in deployed:
        predicted = ops[REFERENCE_MODEL] / ops["IR²Net-A"]
        measured = deployed[REFERENCE_MODEL]["median_ms"] / deployed["IR²Net-A"]["median_ms"]
        lines.append(f"The OPs model predicts IR²Net-A {predicted:.1f}× cheaper than the "
                     f"ResNet-18; measured at one thread it is {measured:.1f}× faster.")
    stem = record["breakdown"].get("IR²Net-C", {}).get("openvino-xnor")
    if stem:
        lines.append(f"In IR²Net-C on the binary kernel, the real-valued 7×7 stem takes "
                     f"{100 * stem['share'].get('stem', 0):.0f} % of the time, the binary "
                     f"convolutions {100 * stem['share'].get('binary convolutions', 0):.0f} % "
                     f"and the recovery module {100 * stem['share'].get('recovery', 0):.0f} % "
                     "(per-layer counters).")
    return " ".join(lines)
