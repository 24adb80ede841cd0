"""Figures: Figure 7 (top-1 against λ), when IRes acts (mask coverage per epoch),
training curves of Table I, ours beside the paper, attention maps (Fig. 1 / 8), and measured
latency against OPs.

Every figure is written as PNG and PDF without timestamps or other volatile metadata, so
two renders of the same records are byte-identical.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from .. import artifacts
from ..paper import paper_values
from ..experiments import FIGURE7_SERIES
from .records import load_records, roles
from .run_tables import rows_label

__all__ = ["figure7", "coverage_figure", "training_curves", "paper_comparison",
           "attention_figure", "latency_figure", "save_figure"]

#: No creation dates or producer versions in the files: renders are reproducible.
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "ModDate": None,
                                               "Producer": None, "Creator": None}}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    matplotlib.rcParams["svg.hashsalt"] = "ir2net"
    return plt, sns


def save_figure(fig, stem: Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write ``stem.png`` / ``stem.pdf`` atomically, without volatile metadata; close ``fig``."""
    import matplotlib.pyplot as plt

    written = []
    for suffix in formats:
        path = stem.with_name(f"{stem.name}.{suffix}")
        artifacts.atomic_write(path, lambda f: fig.savefig(f, format=suffix,
                                                           metadata=_METADATA[suffix]), mode="wb")
        written.append(path)
    plt.close(fig)
    return written


def _figure7_frame(plan: dict, records: dict) -> pd.DataFrame:
    rows = []
    for run, role in roles(plan, "figure7"):
        record = records.get(run["id"])
        if record is not None:
            rows.append({"series": role["series"], "lambda": float(role["lambda"]),
                         "seed": run["seed"], "top1": record["metrics"]["final"]["top1"]})
    return pd.DataFrame(rows, columns=["series", "lambda", "seed", "top1"])


def figure7(plan: dict, records: dict, out_dir: str | Path,
            longruns: Optional[list[dict]] = None) -> list[Path]:
    """Figure 7: top-1 against lambda for IRes and IRes+IRec; the paper's choice marked.
    With ``longruns`` a second panel shows the published schedule: complete runs (filled),
    points derived from the run they equal exactly (hollow, :func:`~ir2net.longruns.derive`)
    and each series' recorded onset, below which every λ is its λ = 0.15 run."""
    plt, sns = _pyplot()
    frame = _figure7_frame(plan, records)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = 1 if longruns is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.6), dpi=150, squeeze=False)
    ax = axes[0][0]
    hue_order = [s for s, _ in FIGURE7_SERIES]
    if not frame.empty:
        sns.lineplot(data=frame, x="lambda", y="top1", hue="series", marker="o", ax=ax,
                     hue_order=hue_order,
                     errorbar="sd" if frame["seed"].nunique() > 1 else None)
    ax.set_title(f"Figure 7 ({plan['profile']} profile, final epoch)")
    if longruns is not None:
        _figure7_published(axes[0][1], longruns, hue_order, sns)
    chosen = paper_values()["figure7"]["chosen_lambda"]
    for ax in axes[0]:
        ax.axvline(chosen, color="grey", linestyle="--", linewidth=1)
        ax.text(chosen, ax.get_ylim()[0], f" paper's λ = {chosen}", color="grey", va="bottom",
                fontsize=8)
        ax.set_xlabel("λ (Eq. 9)")
        ax.set_ylabel("top-1 accuracy (%)")
    fig.tight_layout()
    return save_figure(fig, out_dir / "fig7")


def _figure7_published(ax, longruns: list[dict], hue_order: list[str], sns) -> None:
    from .ires_evidence import figure7_points

    points, onsets = figure7_points(longruns)
    colours = dict(zip(hue_order, sns.color_palette(n_colors=len(hue_order))))
    for index, series in enumerate(hue_order):
        part = points[points["series"] == series].sort_values("lambda")
        if not part.empty:
            ax.plot(part["lambda"], part["top1"], color=colours[series], label=series)
        for kind, face in (("trained", colours[series]), ("derived", "white")):
            chosen = part[part["kind"] == kind]
            ax.scatter(chosen["lambda"], chosen["top1"], facecolors=face,
                       edgecolors=colours[series], zorder=3,
                       label=f"{series}, derived (= its λ = 0.15 run)" if kind == "derived"
                       and not chosen.empty else None)
        if series in onsets:
            ax.axvline(onsets[series][1], color=colours[series], linestyle=":", linewidth=1)
            top = index % 2 == 0  # the series' onsets may coincide: labels at either end
            ax.text(onsets[series][1], 0.98 if top else 0.02,
                    f" {series} onset {onsets[series][1]:.3f} ", color=colours[series],
                    fontsize=7, va="top" if top else "bottom", rotation=90,
                    transform=ax.get_xaxis_transform())
    if points.empty:
        ax.text(0.5, 0.5, "no published-schedule point is complete yet", ha="center",
                transform=ax.transAxes, fontsize=8)
    else:
        ax.legend(fontsize=7)
    ax.set_xlim(-0.05, 1.05)
    ax.set_title("published schedule, best epoch (results/longruns)", fontsize=9)


def _coverage_frame(plan: dict, records: dict, longruns: Optional[list[dict]]) -> pd.DataFrame:
    """Per epoch, the % of input pixels IRes removed (history ``ires_removed``) and the onset
    λ (``ires_onset``: no λ below it would have removed a pixel of any batch of the epoch;
    NaN for epochs trained before it was recorded) for every Figure 7 run and every
    published-schedule run that restricts."""
    rows = []

    def add(panel, series, run, epoch):
        rows.append({"panel": panel, "series": series, "run": run, "epoch": epoch["epoch"],
                     "removed": 100 * epoch["ires_removed"],
                     "onset": epoch.get("ires_onset", float("nan"))})

    for run, role in roles(plan, "figure7"):
        record = records.get(run["id"])
        for entry in record["metrics"]["history"] if record else []:
            if entry.get("ires_removed") is not None:
                add(f"{plan['profile']} profile", role["series"],
                    f"λ = {float(role['lambda']):g}", entry)
    for entry in longruns or []:
        label = rows_label(entry)
        for epoch in entry.get("history", []):
            if epoch.get("ires_removed") is not None:
                add("published schedule (results/longruns)", label, label, epoch)
    return pd.DataFrame(rows, columns=["panel", "series", "run", "epoch", "removed", "onset"])


def coverage_figure(plan: dict, records: dict, out_dir: str | Path,
                    longruns: Optional[list[dict]] = None) -> list[Path]:
    """When does IRes act?  Top: the fraction of input pixels its mask removed, per epoch, for
    each λ of Figure 7 (and the published-schedule runs): 0 % means the masked pass repeats
    the original one.  Bottom: each epoch's onset, the λ below which no batch of the epoch
    lost a pixel, beside the paper's λ = 0.15."""
    plt, sns = _pyplot()
    frame = _coverage_frame(plan, records, longruns)
    panels = list(dict.fromkeys(frame["panel"])) or [f"{plan['profile']} profile"]
    fig, axes = plt.subplots(2, len(panels), figsize=(5.2 * len(panels), 6.6), dpi=150,
                             squeeze=False, sharex="col")
    for column, panel in enumerate(panels):
        part = frame[frame["panel"] == panel]
        removed_ax, onset_ax = axes[0][column], axes[1][column]
        runs = list(dict.fromkeys(part["run"]))
        colours = dict(zip(runs, sns.color_palette(n_colors=len(runs))))  # same in both axes
        for ax, value in ((removed_ax, "removed"), (onset_ax, "onset")):
            known = part.dropna(subset=[value])
            if not known.empty:
                # the published-schedule runs are their own series: one legend, not two
                series = "series" if (known["series"] != known["run"]).any() else None
                sns.lineplot(data=known, x="epoch", y=value, hue="run", style=series,
                             palette={run: colours[run] for run in known["run"].unique()},
                             marker="o" if known["epoch"].nunique() < 20 else None, ax=ax)
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "no IRes run has finished" if value == "removed" else
                        "onset not recorded yet", ha="center", transform=ax.transAxes)
        onset_ax.axhline(0.15, color="grey", linestyle="--", linewidth=1)
        onset_ax.text(0.01, 0.15, " λ = 0.15 (paper)", color="grey", fontsize=7, va="bottom",
                      transform=onset_ax.get_yaxis_transform())
        removed_ax.set_title(panel, fontsize=9)
        removed_ax.set_ylabel("input pixels removed\nby the IRes mask (%)")
        onset_ax.set_xlabel("epoch")
        onset_ax.set_ylabel("onset λ: below it no pixel\nof the epoch is removed")
    fig.tight_layout()
    return save_figure(fig, Path(out_dir) / "ires_coverage")


def attention_figure(runs_dir: str | Path, out_path: str | Path, images: int = 6) -> Path:
    """Attention maps (Eq. 5 of the last stage, upsampled) of FP, Baseline and IR²Net on the
    same test images, in the manner of the paper's Fig. 1 / 8."""
    plt, _ = _pyplot()
    import torch
    import torch.nn.functional as F

    from ..config import resolve_config
    from ..data import IMAGENET_MEAN, IMAGENET_STD, balanced_subset, load_small_split
    from ..restriction import attention_map
    from ..training import build_model

    runs_dir = Path(runs_dir)
    plan, records = load_records(runs_dir)
    chosen = {row: record_id for row, record_id in _table1_runs(plan, records).items()
              if row in ("FP", "Baseline", "IRes+CIRec")}
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
    return save_figure(fig, Path(out_path).with_suffix(""), ("png",))[0]


def _table1_runs(plan: dict, records: dict) -> dict[str, str]:
    """{Table I row: run id} of the first seed that finished each row."""
    chosen = {}
    for run, role in roles(plan, "table1"):
        if run["id"] in records and role["row"] not in chosen:
            chosen[role["row"]] = run["id"]
    return chosen


def training_curves(plan: dict, records: dict, out_dir: str | Path) -> list[Path]:
    """Test top-1 and training loss per epoch of every Table I run."""
    plt, sns = _pyplot()
    rows = []
    for row, run_id in _table1_runs(plan, records).items():
        for entry in records[run_id]["metrics"]["history"]:
            rows.append({"run": row, "epoch": entry["epoch"], "train loss": entry["train_loss"],
                         "test top-1 (%)": entry.get("test", {}).get("top1")})
    frame = pd.DataFrame(rows, columns=["run", "epoch", "train loss", "test top-1 (%)"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=150)
    for ax, column in zip(axes, ("test top-1 (%)", "train loss")):
        part = frame.dropna(subset=[column])
        if not part.empty:
            sns.lineplot(data=part, x="epoch", y=column, hue="run", marker="o", ax=ax)
            ax.legend(fontsize=7)
        ax.set_title(f"Table I runs ({plan['profile']} profile): {column}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, Path(out_dir) / "training_curves")


def paper_comparison(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """Ours (best epoch, as the authors report) beside the paper for Tables I and III, and
    the published-schedule runs where there are any."""
    plt, sns = _pyplot()
    rows = []
    for name, label in (("table1", "Table I"), ("table3", "Table III")):
        frame = tables[name]
        if "source" in frame:
            frame = frame[frame["source"] == "ours"]
        for record in frame.to_dict("records"):
            method = record["method"] if name == "table1" else \
                f"{record['backbone']} {record['method']}"
            rows.append({"table": label, "method": method, "who": "paper",
                         "top-1 (%)": record["paper_top1"]})
            if record["best_top1"] is not None and not pd.isna(record["best_top1"]):
                rows.append({"table": label, "method": method, "who": "ours (this profile)",
                             "top-1 (%)": record["best_top1"]})
    published = tables.get("published")
    if published is not None:
        for record in published.dropna(subset=["best_top1"]).to_dict("records"):
            rows.append({"table": record["table"], "method": record["method"],
                         "who": "ours, published schedule", "top-1 (%)": record["best_top1"]})
    frame = pd.DataFrame(rows, columns=["table", "method", "who", "top-1 (%)"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=150)
    for ax, label in zip(axes, ("Table I", "Table III")):
        part = frame[frame["table"] == label]
        if not part.empty:
            sns.barplot(data=part, x="top-1 (%)", y="method", hue="who", ax=ax, orient="h")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_title(f"{label}: best-epoch top-1, ours and the paper's", fontsize=9)
        ax.set_ylabel("")
    fig.tight_layout()
    return save_figure(fig, Path(out_dir) / "paper_comparison")


def latency_figure(latency: Optional[dict], out_dir: str | Path) -> list[Path]:
    """Measured batch-1 latency against Table VI's OPs for every model of the ``ir2net
    latency`` record, on the engine that deploys it, one panel per thread count: how well
    OPs = BOPs / 64 + FLOPs predicts speed.  Nothing without a record."""
    if latency is None:
        return []
    from .latency_tables import deployed_latency

    plt, sns = _pyplot()
    counts = sorted({row["threads"] for row in latency["latency"]})
    fig, axes = plt.subplots(1, len(counts), figsize=(5.5 * len(counts), 4.5), squeeze=False)
    for ax, count in zip(axes[0], counts):
        rows = [{"model": model, "ops": latency["models"][model]["ops"] / 1e8,
                 "ms": row["median_ms"], "table": f"Table {latency['models'][model]['table']}",
                 "engine": row["engine"]}
                for model, row in deployed_latency(latency, count).items()]
        frame = pd.DataFrame(rows)
        sns.scatterplot(data=frame, x="ops", y="ms", hue="table", style="engine", ax=ax, s=60)
        placed: list[dict] = []
        for row in sorted(rows, key=lambda row: (row["ops"], row["ms"])):
            # neighbours within 25 % on both axes: stack the labels instead of overprinting
            near = [other for other in placed
                    if abs(other["ops"] / row["ops"] - 1) < 0.25
                    and abs(other["ms"] / row["ms"] - 1) < 0.25]
            stacked = dict(xytext=(28, 3 - 10 * len(near)),
                           arrowprops=dict(arrowstyle="-", lw=0.4, color="grey")) if near \
                else dict(xytext=(5, 3))
            ax.annotate(row["model"], (row["ops"], row["ms"]), fontsize=7,
                        textcoords="offset points", **stacked)
            placed.append(row)
        ax.set(xscale="log", yscale="log", xlabel="OPs (×10⁸, Table VI's count)",
               ylabel="latency, ms (batch 1)",
               title=f"{count} thread{'s' if count > 1 else ''}, {latency['machine']['cpu']}")
    fig.tight_layout()
    return save_figure(fig, Path(out_dir) / "latency_vs_ops")
