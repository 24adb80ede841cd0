"""The report: ``report.md`` and a self-contained ``report.html`` from the records, tables
and figures of a profile.

It holds only what the records decide (scores, schedules, data, hardware, code version), not
the facts of one particular render (wall times, cache paths, dates): two renders of the same
records are byte-identical, and wall times stay in the records.
"""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Optional

import pandas as pd

from .. import artifacts
from .records import load_records
from .complexity_tables import table2_paragraph
from .evidence import gap_paragraph
from .paired import paired_paragraph
from .ires_evidence import IRES_READING
from .latency_tables import latency_paragraph, read_latency
from .printing import CAPTIONS, to_markdown
from .run_tables import segments_hardware
from .tables import TABLE_NAMES

__all__ = ["write_report", "FIGURES"]

#: (title, file) of the figures the report shows, in order, where they exist.
FIGURES = (("Ours beside the paper (best epoch, as the authors report)", "paper_comparison.png"),
           ("Figure 7: impact of λ", "fig7.png"),
           ("When does IRes act? Pixels its mask removed, per epoch", "ires_coverage.png"),
           ("Training curves of Table I", "training_curves.png"),
           ("Attention maps (paper Fig. 1 / 8)", "attention.png"),
           ("Measured latency against OPs (a real binary engine)", "latency_vs_ops.png"))


#: How to read a table, printed above it (facts of the method, never a run's numbers).
_READING = {
    "engine": [
        "The binary convolutions are exact integer sums on both sides; the real-valued layers "
        "sum float32 in another order. An image whose prediction differs has a binary "
        "convolution's input within float32 rounding of 0, whose sign the two runtimes decide "
        "differently (docs/performance.md, where every such image was checked).", ""],
    "latency": [
        "OPs (Table VI) counts a binary multiply-accumulate as 1/64 of a real one; the "
        "speed-up column is what a real XNOR-popcount kernel delivers end to end, real-valued "
        "stem, BatchNorm, recovery and head included. The per-layer table below says where "
        "the time goes.", ""],
    "published": [IRES_READING, ""],
    "table1": [IRES_READING, ""],
    "coverage": [
        "The onset is the λ below which Eq. 9's threshold removes no pixel of any test image: "
        "an onset above the paper's λ = 0.15 means that with these weights the mask at 0.15 "
        "keeps every pixel. These are the weights in evaluation mode (BatchNorm's running "
        "statistics); the onset each run records in training (batch statistics, the smallest "
        "over every batch of an epoch) is in the IRes coverage figure, and is what decides "
        "which Figure 7 points are derived (results/longruns/README.md).", ""],
    "bn_momentum": [
        "In training BatchNorm normalises with each batch's own statistics, so its momentum "
        "never reaches the weights (tests/test_bn_statistics.py: weights bit-identical at 0.1 "
        "and 0.19). IRes that removes nothing and the same run without IRes therefore train "
        "the same weights and differ only in the running statistics the test images are "
        "normalised with; this table measures that difference from one state of a run, with "
        "no seed in between. A run in progress trains on from its checkpoint (its optimiser "
        "and learning rate) while statistics are kept at each momentum beside BatchNorm's own "
        "(the last column: how closely the copy kept at the run's own momentum matches them); "
        "final weights stay frozen. Lag-free are the statistics of the weights as they are "
        "at each point, an equal-weight average over 100 augmented training batches with the "
        "weights frozen: what a running average that did not lag the moving weights would "
        "give. A momentum is per BatchNorm update; "
        "a run with IRes updates twice per step.", ""],
    "shared_trajectory": [
        "With the same seed a run with IRes and the same run without it start from the same "
        "weights and draw the same batches. While the mask removes nothing, their steps "
        "compute the same weights (tests/test_ires_equivalence.py) and differ only in the "
        "running statistics (BatchNorm momentum 0.19 against 0.1), so their training losses "
        "agree to the last bit and the test difference over those epochs is the momentum "
        "alone. They part at the first step computed differently: on another machine or "
        "thread count, whose sums round in another order. The difference after that also holds "
        "how far the two runs drift apart once one rounding differs, which is run-to-run "
        "variation with the seed held fixed.", ""],
    "figure7_sweep": [
        "Two runs whose masks keep every pixel at every step train the same bits (the second "
        "pass repeats the first), so a λ point below the smallest onset its series' λ = 0.15 "
        "run recorded over all its steps is that run, exactly, and is not trained; a point at "
        "or above it would have removed pixels at some step, and is trained. The onset here is "
        "recorded in training, over every batch (batch statistics); the coverage table's is on "
        "the final weights in evaluation mode, and may lie higher. A derived point is "
        "re-decided each time its reference trains further, and a point trained once stays "
        "trained.", ""],
    "calibration": [
        "The paper's FP row cannot calibrate the data: its 90.8 % is the figure IR-Net's "
        "README lists for ResNet-20 with binary weights and real activations "
        "(docs/divergences.md). So the project trains a network whose canonical accuracy is "
        "public, on the same copy of CIFAR-10 as every published-schedule run here (a JPEG "
        "re-encoding: quality 75, 4:2:0 chroma). Its shortfall from the canonical figure is "
        "what this copy and software stack cost a *real-valued* network; a binary network, "
        "with one bit per activation, is expected to pay at least as much, so the data's "
        "share below is a lower bound. `ir2net calibrate --data DIR` measures any copy.", ""],
    "gap": [
        "Ours is the best epoch's test top-1, as the authors report theirs. The data's share "
        "is estimated (the calibration's shortfall); the remainder is estimated too: it holds "
        "the method's and the harness's differences and the chance of one seed. The last row "
        "is a difference of two of our runs, in which the data's share cancels to first "
        "order.", ""],
}


def _provenance_rows(records: dict) -> pd.DataFrame:
    rows = []
    for run_id, record in records.items():
        metrics, config = record["metrics"], record["config"]
        hardware = metrics["provenance"]["hardware"]
        git = metrics["provenance"]["git"]
        train = config.get("train", {})
        data, source = metrics["data"], config.get("data", {}).get("root")
        segments = metrics.get("segments") or []
        commit = (git.get("commit") or "unknown")[:10] + ("+dirty" if git.get("dirty") else "")
        rows.append({
            "run": run_id, "seed": metrics["seed"],
            "data": f"{config.get('data', {}).get('dataset')}"
                    + (f" from {Path(source).name}" if source else "")
                    + f" ({data['train_images']} train / {data['test_images']} test images)"
                    + (" SYNTHETIC" if data.get("synthetic") else ""),
            "schedule": f"{metrics['epochs_completed']} epochs, {metrics['steps']} steps, batch "
                        f"{train.get('batch_size')}",
            # a run trained in segments names every machine; its metrics.json has each one
            "hardware": (segments_hardware(segments, binary=False) if len(segments) > 1 else
                         hardware.get("gpu") or
                         f"{hardware.get('cpu')} ({hardware.get('torch_threads')} threads)"),
            "commit": commit if len(segments) <= 1 else f"{commit} (last of {len(segments)} segments)",
            "final top-1": f"{metrics['final']['top1']:.2f}",
            "best top-1": f"{(metrics.get('best') or metrics['final'])['top1']:.2f}"})
    return pd.DataFrame(rows)


def _image_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def write_report(records_dir: str | Path, tables_dir: str | Path, figures_dir: str | Path,
                 out_dir: str | Path, divergences: Optional[str | Path] = None,
                 benchmark: Optional[str | Path] = None,
                 cost_plan: Optional[str | Path] = None,
                 latency: Optional[str | Path] = None) -> list[Path]:
    """``report.md`` and a self-contained ``report.html`` (images embedded); ``cost_plan``:
    an ``ir2net plan`` Markdown file to include; ``latency``: the ``ir2net latency`` record
    whose tables were written (its machine and speed-ups go under them)."""
    import markdown

    plan, records = load_records(records_dir)
    latency_record = read_latency(latency)
    tables_dir, figures_dir, out_dir = Path(tables_dir), Path(figures_dir), Path(out_dir)
    runs = [run["id"] for run in plan["runs"]]
    finished = sum(run_id in records for run_id in runs)
    schedule = ("the **published schedules** of the paper and the authors' code"
                if plan.get("published_schedule") else
                "**short schedules** (much shorter than the paper's; accuracies are far below "
                "the paper's and show only that every run of the paper is wired and trains)")
    lines = [f"# IR²Net reproduction report — `{plan['profile']}` profile", "",
             f"**Headline.** This report comes from {schedule}. {plan.get('description', '')}",
             "", f"Runs finished: {finished} of {len(runs)} (seeds {plan['seeds']}). "
             "Rows marked *quoted* are numbers the paper quotes from other methods; they were "
             "not re-run. A table cell is filled only from a finished run. *Final* is the last "
             "epoch's test top-1; *best* the best epoch's, which is what the authors report "
             "(it selects the epoch on the test set, so it is optimistic); the paper is compared "
             "with *best*.", ""]
    if (tables_dir / "published.md").is_file():
        lines += ["The first two tables are not this profile's: they show the runs at the "
                  "paper's own schedule kept in `results/longruns/`, with how far each has "
                  "trained, and each beside the Baseline over the same epochs. They "
                  "train on the CIFAR-10 copy that `results/longruns/plan.yaml` names; "
                  "`results/longruns/README.md` says which copy trained the committed runs and "
                  "what is known of their gap to the paper.", ""]
    # the segments table is provenance, so it sits with the provenance at the end
    for name in (name for name in TABLE_NAMES if name != "segments"):
        if (tables_dir / f"{name}.md").is_file():
            lines += [f"## {CAPTIONS[name]}", "", *_READING.get(name, []),
                      (tables_dir / f"{name}.md").read_text(), ""]
        if name == "table2" and (tables_dir / "table2.csv").is_file():
            lines += [table2_paragraph(pd.read_csv(tables_dir / "table2.csv")), ""]
        if name == "latency" and latency_record is not None:
            lines += [latency_paragraph(latency_record), ""]
        if name == "gap" and (tables_dir / "gap.csv").is_file():
            lines += [gap_paragraph(pd.read_csv(tables_dir / "calibration.csv"),
                                    pd.read_csv(tables_dir / "gap.csv")), ""]
        if name == "paired" and (tables_dir / "paired.csv").is_file():
            lines += [paired_paragraph(pd.read_csv(tables_dir / "paired.csv")), ""]
    images = []
    for title, file_name in FIGURES:
        if (figures_dir / file_name).is_file():
            lines += [f"## {title}", "", f"![{title}]({file_name})", ""]
            images.append(figures_dir / file_name)
    if benchmark and Path(benchmark).is_file():
        bench = json.loads(Path(benchmark).read_text())
        step, machine = bench["train_step"], bench["machine"]
        lines += ["## Performance", "",
                  f"`ir2net bench` on {machine.get('gpu') or machine['cpu']} "
                  f"({machine['device']}): ResNet-20 IR²Net training step, batch "
                  f"{step['batch_size']}: ours {step['ours_img_s']:.0f} img/s vs the authors' "
                  f"formulation {step['reference_img_s']:.0f} img/s (**{step['speedup']:.2f}x**); "
                  f"with the data pipeline {step['ours_with_data_img_s']:.0f} img/s; data "
                  f"pipeline alone {bench['data']['img_s']:.0f} img/s.", ""]
    if cost_plan and Path(cost_plan).is_file():
        lines += ["## What the published schedules cost", "", Path(cost_plan).read_text(), ""]
    provenance = _provenance_rows(records)
    lines += ["## Provenance of every run", "",
              f"Profile `{plan['profile']}`: CIFAR-10 from `{plan['cifar10']['root']}` "
              f"({plan['cifar10']['dataset']}); ImageNet: {plan['imagenet']['description']}. "
              "Each row names the data its run trained on. Wall times, hosts and every "
              "training segment are in each run's `metrics.json`.",
              "", to_markdown(provenance) if not provenance.empty else "(no finished runs)", ""]
    if (tables_dir / "segments.md").is_file():
        lines += [f"## {CAPTIONS['segments']}", "", (tables_dir / "segments.md").read_text(), ""]
    if divergences and Path(divergences).is_file():
        text = Path(divergences).read_text().replace("# Where", "## Where", 1)
        lines += [text, ""]
    text = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copyfile(image, out_dir / image.name)
    written = [artifacts.write_text(out_dir / "report.md", text)]
    html_body = markdown.markdown(text, extensions=["tables"])
    for image in images:
        html_body = html_body.replace(f'src="{image.name}"', f'src="{_image_data_uri(image)}"')
    html = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>IR²Net reproduction</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
            "table{border-collapse:collapse;font-size:12px;margin-bottom:1em}"
            "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head>"
            f"<body>{html_body}</body></html>")
    written.append(artifacts.write_text(out_dir / "report.html", html))
    return written
