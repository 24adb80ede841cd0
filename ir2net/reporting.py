"""Tables I-VI, Figure 7, attention maps and the report, built from run records.

A *records folder* holds one sub-folder per run (``<run_id>/metrics.json`` and
``config.yaml``) and ``workflow-config.yaml``, the workflow config that defined the runs.
A run folder written by the workflow is such a folder, and so is ``results/records/<profile>``
(the committed copy).  Only finished runs (``metrics.json`` with ``status: complete``) are
read; a table cell whose run has not finished stays empty and is never filled from a
partial run.
"""
from __future__ import annotations

import base64
import json
import math
import shutil
from pathlib import Path
from typing import Optional

import pandas as pd

from . import artifacts
from .complexity import paper_values, table2_rows, table5_rows, table6_rows
from .config import read_yaml_text
from .experiments import FIGURE7_SERIES, build_runs

__all__ = ["load_records", "build_tables", "write_tables", "export_records", "figure7",
           "attention_figure", "write_report", "TABLE_NAMES"]

TABLE_NAMES = ("published", "table1", "table2", "table3", "table4", "table5", "table6")
WORKFLOW_CONFIG = "workflow-config.yaml"


# ----------------------------------------------------------------------------- records
def load_records(records_dir: str | Path, require_config: bool = True) -> tuple[dict, dict]:
    """``(workflow config, {run_id: {"metrics": ..., "config": ...}})`` of finished runs.

    Without ``require_config`` a folder of runs made outside the workflow (no
    ``workflow-config.yaml``) gives an empty workflow config."""
    records_dir = Path(records_dir)
    config_path = records_dir / WORKFLOW_CONFIG
    if config_path.is_file():
        config = read_yaml_text(config_path.read_text())
    elif require_config:
        raise artifacts.ArtifactError(
            f"{records_dir} has no {WORKFLOW_CONFIG}: it is not a runs folder of the workflow "
            "(pass the workflow's runs_dir, e.g. runs/default)")
    else:
        config = {}
    records = {}
    for metrics_path in sorted(records_dir.glob("*/metrics.json")):
        metrics = json.loads(metrics_path.read_text())
        if metrics.get("status") != "complete":
            continue
        run_config_path = metrics_path.parent / "config.yaml"
        run_config = read_yaml_text(run_config_path.read_text()) if run_config_path.is_file() else {}
        records[metrics_path.parent.name] = {"metrics": metrics, "config": run_config}
    return config, records


def export_records(runs_dir: str | Path, records_dir: str | Path) -> int:
    """Copy the finished runs' metrics and resolved configs (never weights) to ``records_dir``."""
    runs_dir, records_dir = Path(runs_dir), Path(records_dir)
    config, records = load_records(runs_dir, require_config=False)
    if not records:
        raise artifacts.ArtifactError(f"{runs_dir} holds no finished run (no metrics.json with "
                                      "status complete); nothing was exported")
    if records_dir.exists():
        shutil.rmtree(records_dir)
    if config:
        artifacts.write_yaml(records_dir / WORKFLOW_CONFIG, config)
    for run_id in records:
        for name in ("metrics.json", "config.yaml"):
            source = runs_dir / run_id / name
            artifacts.write_text(records_dir / run_id / name, source.read_text())
    return len(records)


def _stats(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _role_values(runs, records, table: str, metric: str = "top1") -> dict:
    """{row label: {"final": [value per finished seed], "best": [...]}} for one table.

    ``final`` is the last epoch's score; ``best`` the score at the epoch with the best test
    top-1 (what the authors' scripts report: selected on the test set, so optimistic)."""
    values: dict[str, dict] = {}
    for spec in runs.values():
        for role_table, row in spec.roles:
            if role_table != table:
                continue
            row_values = values.setdefault(row, {"final": [], "best": []})
            record = records.get(spec.run_id)
            if record is not None:
                metrics = record["metrics"]
                row_values["final"].append(metrics["final"][metric])
                row_values["best"].append((metrics.get("best") or metrics["final"])[metric])
    return values


def _accuracy_columns(values: Optional[dict], paper: Optional[float], prefix: str = "top1") -> dict:
    """Final and best (each mean and std over seeds) beside the paper; the paper is compared
    with *best*, the figure its authors report."""
    values = values or {"final": [], "best": []}
    final, final_std = _stats(values["final"])
    best, best_std = _stats(values["best"])
    return {f"paper_{prefix}": paper, f"final_{prefix}": final, f"final_{prefix}_std": final_std,
            f"best_{prefix}": best, f"best_{prefix}_std": best_std,
            f"best_minus_paper_{prefix}": None if best is None or paper is None else best - paper,
            "seeds": len(values["final"])}


# ----------------------------------------------------------------------------- tables
def _paper_top1(paper: dict, table: str, row: str) -> Optional[float]:
    for entry in paper[table]:
        key = entry["method"] if table != "table3" else f"{entry['backbone']}|{entry['method']}"
        if key == row:
            return entry["top1"]
    return None


def _segments_hardware(segments: list[dict]) -> str:
    seen = []
    for segment in segments:
        hardware = segment.get("hardware", {})
        name = hardware.get("gpu") or f"{hardware.get('cpu')} ({hardware.get('torch_threads')} threads)"
        precision = segment.get("precision", {})
        name += f", binary convs {precision.get('binary_dtype')}"
        if precision.get("mixed_precision", "none") != "none":
            name += f", mixed {precision['mixed_precision']}"
        if name not in seen:
            seen.append(name)
    return "; ".join(seen)


ROMAN_TABLES = {"table1": "Table I", "table3": "Table III"}


def published_table(progress: list[dict]) -> pd.DataFrame:
    """Table I / III rows at the published schedule (results/longruns/): each run's state
    (epoch k of 500, or complete), its last and best test top-1 so far, and the paper's."""
    paper = paper_values()
    rows = []
    for entry in progress:
        for table, row in entry.get("rows", {}).items():
            final, best = entry.get("final") or {}, entry.get("best") or {}
            reference = _paper_top1(paper, table, row)
            state = entry["state"]
            if state == "training":
                state = f"epoch {entry['epochs_done']} of {entry['epochs']}"
            rows.append({"table": ROMAN_TABLES[table], "method": row.replace("|", " "),
                         "paper_top1": reference, "state": state,
                         "final_top1": final.get("top1"), "final_epoch": final.get("epoch"),
                         "best_top1": best.get("top1"), "best_epoch": best.get("epoch"),
                         "best_minus_paper_top1": (None if best.get("top1") is None
                                                   else best["top1"] - reference),
                         "wall_hours": entry.get("wall_hours"),
                         "hardware": _segments_hardware(entry.get("segments", []))})
    return pd.DataFrame(rows, columns=["table", "method", "paper_top1", "state", "final_top1",
                                       "final_epoch", "best_top1", "best_epoch",
                                       "best_minus_paper_top1", "wall_hours", "hardware"])


def build_tables(config: dict, records: dict,
                 longruns: Optional[list[dict]] = None) -> dict[str, pd.DataFrame]:
    """Tables I-VI of a profile; with ``longruns`` (``ir2net.longruns.read_progress``) also
    the published-schedule rows (``published``)."""
    runs = build_runs(config)
    paper = paper_values()
    tables = {}
    if longruns is not None:
        tables["published"] = published_table(longruns)

    top1 = _role_values(runs, records, "table1")
    tables["table1"] = pd.DataFrame([
        {"method": row["method"], "bits": row["bits"],
         **_accuracy_columns(top1.get(row["method"]), row["top1"])}
        for row in paper["table1"]])

    tables["table2"] = pd.DataFrame(table2_rows())

    top1 = _role_values(runs, records, "table3")
    rows = []
    for row in paper["table3"]:
        key = f"{row['backbone']}|{row['method']}"
        quoted = bool(row.get("quoted"))
        rows.append({"backbone": row["backbone"], "method": row["method"], "bits": row["bits"],
                     "source": "quoted" if quoted else ("ours" if key in top1 else "not run"),
                     **_accuracy_columns(None if quoted else top1.get(key), row["top1"])})
    tables["table3"] = pd.DataFrame(rows)

    top1 = _role_values(runs, records, "table4")
    top5 = _role_values(runs, records, "table4", "top5")
    rows = []
    for row in paper["table4"]:
        quoted = bool(row.get("quoted"))
        method = row["method"]
        ours1 = None if quoted else top1.get(method)
        ours5 = None if quoted else top5.get(method)
        entry = {"method": method, "bits": row["bits"], "source": "quoted" if quoted else "ours"}
        entry.update(_accuracy_columns(ours1, row["top1"], "top1"))
        entry.update(_accuracy_columns(ours5, row["top5"], "top5"))
        rows.append(entry)
    tables["table4"] = pd.DataFrame(rows)

    table6 = {row["method"]: row for row in table6_rows()}
    tables["table5"] = pd.DataFrame([
        {**row, "flops": table6[row["method"]]["flops"], "ops": table6[row["method"]]["ops"],
         "paper_ops": table6[row["method"]]["paper_ops"]} for row in table5_rows()])

    frame = pd.DataFrame(list(table6.values()))
    for column in ("bops", "flops", "ops"):
        frame[f"delta_{column}"] = frame[column] - frame[f"paper_{column}"]
        frame.loc[frame["source"] == "quoted", f"delta_{column}"] = None
    tables["table6"] = frame[["method", "source", "bops", "flops", "ops", "paper_bops",
                              "paper_flops", "paper_ops", "delta_bops", "delta_flops",
                              "delta_ops", "convention"]]
    return tables


def _markdown_cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e5 else f"{value:.2f}"
    return str(value)


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                          ("#", r"\#"), ("²", r"$^2$"), ("|", r"$|$")):
        text = text.replace(char, escaped)
    return text


def table_markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_markdown_cell(v) for v in row) + " |"
            for row in frame.astype(object).itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def table_latex(frame: pd.DataFrame, caption: str) -> str:
    columns = "l" * len(frame.columns)
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{_latex_escape(caption)}}}",
             f"\\begin{{tabular}}{{{columns}}}", r"\toprule",
             " & ".join(_latex_escape(str(c)) for c in frame.columns) + r" \\", r"\midrule"]
    for row in frame.astype(object).itertuples(index=False):
        lines.append(" & ".join(_latex_escape(_markdown_cell(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


CAPTIONS = {
    "published": "Tables I and III at the published schedule (500 epochs, all 50,000 training "
                 "images; results/longruns), top-1 %. Best is the best epoch's test score, as the "
                 "authors report it (selected on the test set); final is the last epoch's",
    "table1": "Table I: ablation on CIFAR-10, ResNet-20 (Bi-Real structure), top-1 %",
    "table2": "Table II: r and g on CIFAR-10 with the Eq. 17 / Eq. 18 costs",
    "table3": "Table III: CIFAR-10 comparison, top-1 % (* = Bi-Real structure)",
    "table4": "Table IV: ImageNet comparison, top-1 / top-5 %",
    "table5": "Table V: r and g on ImageNet with the computed FLOPs / OPs",
    "table6": "Table VI: computational complexity on ImageNet (absolute counts)",
}


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """``tableN.csv``, ``.md`` and ``.tex`` (booktabs) for each table, written atomically."""
    out_dir = Path(out_dir)
    written = []
    for name, frame in tables.items():
        csv = frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")
        written.append(artifacts.write_text(out_dir / f"{name}.csv", csv))
        written.append(artifacts.write_text(out_dir / f"{name}.md", table_markdown(frame)))
        written.append(artifacts.write_text(out_dir / f"{name}.tex",
                                            table_latex(frame, CAPTIONS[name])))
    return written


# ----------------------------------------------------------------------------- figures
def _figure7_frame(config: dict, records: dict) -> pd.DataFrame:
    runs = build_runs(config)
    rows = []
    for spec in runs.values():
        record = records.get(spec.run_id)
        for table, role in spec.roles:
            if table == "figure7" and record is not None:
                series, lam = role.split("|")
                rows.append({"series": series, "lambda": float(lam), "seed": spec.seed,
                             "top1": record["metrics"]["final"]["top1"]})
    return pd.DataFrame(rows, columns=["series", "lambda", "seed", "top1"])


def figure7(config: dict, records: dict, out_dir: str | Path) -> list[Path]:
    """Figure 7: top-1 against lambda for IRes and IRes+IRec; the paper's choice marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = _figure7_frame(config, records)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=150)
    if not frame.empty:
        sns.lineplot(data=frame, x="lambda", y="top1", hue="series", marker="o", ax=ax,
                     hue_order=[s for s, _ in FIGURE7_SERIES],
                     errorbar="sd" if frame["seed"].nunique() > 1 else None)
    chosen = paper_values()["figure7"]["chosen_lambda"]
    ax.axvline(chosen, color="grey", linestyle="--", linewidth=1)
    ax.text(chosen, ax.get_ylim()[0], f" paper's λ = {chosen}", color="grey", va="bottom",
            fontsize=8)
    ax.set_xlabel("λ (Eq. 9)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"Figure 7 ({config['profile']} profile)")
    fig.tight_layout()
    written = []
    for suffix in ("png", "pdf"):
        path = out_dir / f"fig7.{suffix}"
        artifacts.atomic_write(path, lambda f: fig.savefig(f, format=suffix), mode="wb")
        written.append(path)
    plt.close(fig)
    return written


def attention_figure(runs_dir: str | Path, out_path: str | Path, images: int = 6) -> Path:
    """Attention maps (Eq. 5 of the last stage, upsampled) of FP, Baseline and IR²Net on the
    same test images, in the manner of the paper's Fig. 1 / 8."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    import torch.nn.functional as F

    from .config import resolve_config
    from .data import IMAGENET_MEAN, IMAGENET_STD, balanced_subset, load_small_split
    from .restriction import attention_map
    from .training import build_model

    runs_dir = Path(runs_dir)
    config, records = load_records(runs_dir)
    runs = build_runs(config)
    chosen = {}
    for spec in runs.values():
        for table, row in spec.roles:
            if table == "table1" and row in ("FP", "Baseline", "IRes+CIRec") and \
                    spec.run_id in records and row not in chosen:
                chosen[row] = spec.run_id
    labels = {"FP": "FP", "Baseline": "Baseline (BNN)", "IRes+CIRec": "IR²Net"}
    order = [row for row in ("FP", "Baseline", "IRes+CIRec") if row in chosen]
    run_config = resolve_config(records[chosen[order[0]]]["config"])
    split = balanced_subset(load_small_split(run_config["data"], "test"), images)
    pixels = split.images.float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    inputs = (pixels - mean) / std
    fig, axes = plt.subplots(len(order) + 1, images, figsize=(1.6 * images, 1.7 * (len(order) + 1)),
                             dpi=120, squeeze=False)
    for col in range(images):
        axes[0][col].imshow(pixels[col].permute(1, 2, 0).numpy())
        axes[0][col].set_title(split.classes[int(split.labels[col])], fontsize=7)
    for row_index, row in enumerate(order, start=1):
        run_config = resolve_config(records[chosen[row]]["config"])
        model = build_model(run_config, len(split.classes))
        model.load_state_dict(artifacts.load_state_dict(runs_dir / chosen[row]))
        model.eval()
        with torch.no_grad():
            _, source = model(inputs, return_attention_source=True)
            attention = F.interpolate(attention_map(source).unsqueeze(1), size=pixels.shape[-2:],
                                      mode="bilinear", align_corners=True)[:, 0]
        for col in range(images):
            axes[row_index][col].imshow(pixels[col].permute(1, 2, 0).numpy())
            axes[row_index][col].imshow(attention[col].numpy(), cmap="jet", alpha=0.5)
        axes[row_index][0].set_ylabel(labels[row], fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Attention of the last stage (Eq. 5), test images", fontsize=9)
    fig.tight_layout()
    out_path = Path(out_path)
    artifacts.atomic_write(out_path, lambda f: fig.savefig(f, format="png"), mode="wb")
    plt.close(fig)
    return out_path


# ----------------------------------------------------------------------------- report
def _provenance_rows(records: dict) -> pd.DataFrame:
    rows = []
    for run_id, record in records.items():
        metrics, config = record["metrics"], record["config"]
        hardware = metrics["provenance"]["hardware"]
        git = metrics["provenance"]["git"]
        train = config.get("train", {})
        data = metrics["data"]
        rows.append({
            "run": run_id, "seed": metrics["seed"],
            "data": f"{data.get('train', '')} ({data['train_images']} train / "
                    f"{data['test_images']} test images)" + (" SYNTHETIC" if data.get("synthetic") else ""),
            "schedule": f"{metrics['epochs_completed']} epochs, {metrics['steps']} steps, batch "
                        f"{train.get('batch_size')}",
            "hardware": hardware.get("gpu") or f"{hardware.get('cpu')} ({hardware.get('torch_threads')} threads)",
            "commit": (git.get("commit") or "unknown")[:10] + ("+dirty" if git.get("dirty") else ""),
            "wall_s": round(metrics["wall_seconds"], 1),
            "top1": round(metrics["final"]["top1"], 2)})
    return pd.DataFrame(rows)


def _image_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def write_report(records_dir: str | Path, tables_dir: str | Path, figures_dir: str | Path,
                 out_dir: str | Path, divergences: Optional[str | Path] = None,
                 benchmark: Optional[str | Path] = None) -> list[Path]:
    """``report.md`` and a self-contained ``report.html`` (images embedded)."""
    import markdown

    config, records = load_records(records_dir)
    tables_dir, figures_dir, out_dir = Path(tables_dir), Path(figures_dir), Path(out_dir)
    runs = build_runs(config)
    finished = sum(run_id in records for run_id in runs)
    schedule = ("the **published schedules** of the paper and the authors' code"
                if config.get("published_schedule") else
                "**short schedules** (much shorter than the paper's; accuracies are far below "
                "the paper's and show only that every run of the paper is wired and trains)")
    lines = [f"# IR²Net reproduction report — `{config['profile']}` profile", "",
             f"**Headline.** This report comes from {schedule}. {config.get('description', '')}",
             "", f"Runs finished: {finished} of {len(runs)} (seeds {config['seeds']}). "
             "Rows marked *quoted* are numbers the paper quotes from other methods; they were "
             "not re-run. A table cell is filled only from a finished run.", ""]
    for name in TABLE_NAMES:
        if (tables_dir / f"{name}.md").is_file():
            lines += [f"## {CAPTIONS[name]}", "", (tables_dir / f"{name}.md").read_text(), ""]
    images = []
    for title, file_name in (("Figure 7: impact of λ", "fig7.png"),
                             ("Attention maps (paper Fig. 1 / 8)", "attention.png")):
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
    provenance = _provenance_rows(records)
    lines += ["## Provenance of every run", "",
              f"Profile `{config['profile']}`; CIFAR-10 from `{config['cifar10']['root']}` "
              f"({config['cifar10']['dataset']}); ImageNet: "
              f"{config['imagenet'].get('description') or config['imagenet'].get('root')}.", "",
              table_markdown(provenance) if not provenance.empty else "(no finished runs)", ""]
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
