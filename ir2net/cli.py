"""``ir2net`` command line: ``train``, ``complexity``, ``models``, ``recipes``, ``presets``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _set_threads(threads) -> None:
    if threads:
        import torch
        torch.set_num_threads(threads)


def _train(args) -> int:
    from .config import ConfigError, load_config
    from .training import RESUMABLE_EXIT, TrainingStopped, run

    _set_threads(args.threads)

    overrides = list(args.set or ())
    if args.stop_after:
        overrides.append(f"train.stop_after={args.stop_after}")
    try:
        settings = json.loads(args.settings) if args.settings else None
    except json.JSONDecodeError as error:
        raise ConfigError(f"--settings is not a JSON object of dotted keys: {error}") from None
    config = load_config(args.config, overrides, settings)
    if args.no_progress:
        config["progress"] = False
    try:
        metrics = run(config, args.out, on_config_change=args.on_config_change)
    except TrainingStopped as stopped:
        print(f"ir2net: {stopped}", file=sys.stderr)
        if args.requeue_on_stop:
            _requeue_slurm_job()
        return RESUMABLE_EXIT
    final, best = metrics["final"], metrics["best"]
    from .distributed import from_environment
    if not from_environment().is_main:
        return 0
    print(f"{args.out}: final top-1 {final['top1']:.2f}% top-5 {final['top5']:.2f}% on "
          f"{final['images']} test images; best top-1 {best['top1']:.2f}% (epoch {best['epoch']}); "
          f"{metrics['steps']} steps")
    return 0


def _calibrate(args) -> int:
    """Train the data calibration's ResNet-20 on a CIFAR-10 copy (``--data``), or read a
    finished calibration run (``--from``), and report the shortfall from the canonical figure."""
    from . import artifacts
    from .calibration import RECIPE, REFERENCE, shortfall, summary_line
    from .config import ConfigError, load_config
    from .training import RESUMABLE_EXIT, TrainingStopped, run

    if bool(args.data) == bool(args.from_run):
        raise ConfigError("ir2net calibrate: give --data DIR (train on that CIFAR-10 copy) or "
                          "--from RUN_DIR (report a finished calibration run): exactly one of the two")
    if args.from_run:
        folder = Path(args.from_run)
        if not (folder / "metrics.json").is_file():
            raise ConfigError(f"ir2net calibrate --from: {folder} holds no finished run "
                              "(metrics.json); train it first")
        metrics = json.loads((folder / "metrics.json").read_text())
        config = load_config(str(folder / "config.yaml"))
        if config["model"]["name"] != "resnet20":
            raise ConfigError(f"ir2net calibrate --from: {folder} trained "
                              f"{config['model']['name']}, not the calibration's resnet20")
        recipe = load_config(RECIPE, ["data.root=x"])["train"]
        changed = any(config["train"][key] != recipe[key] for key in
                      ("epochs", "batch_size", "lr", "lr_milestones", "weight_decay"))
        changed = changed or config["data"]["train_subset"] is not None
    else:
        _set_threads(args.threads)
        overrides = [f"data.root={args.data}", f"device={args.device}", *(args.set or ())]
        if args.stop_after:
            overrides.append(f"train.stop_after={args.stop_after}")
        config = load_config(RECIPE, overrides)
        config["progress"] = not args.no_progress
        folder = Path(args.out)
        try:
            metrics = run(config, folder)
        except TrainingStopped as stopped:
            print(f"ir2net: {stopped}", file=sys.stderr)
            return RESUMABLE_EXIT
        changed = bool(args.set)
    line = summary_line(metrics["best"], metrics["final"], metrics["epochs_completed"],
                        config["train"]["epochs"])
    if changed:
        line += " (not akamaster's schedule on all 50,000 images: not comparable with the " \
                "canonical figure)"
    record = {"run": str(folder), "best": metrics["best"], "final": metrics["final"],
              "reference": REFERENCE, "shortfall": shortfall(metrics["best"]["top1"]),
              "comparable": not changed, "data": metrics["data"],
              "epochs": metrics["epochs_completed"]}
    artifacts.write_json(Path(args.json) if args.json else folder / "calibration.json", record)
    print(line)
    return 0


def _requeue_slurm_job() -> None:
    """Put this SLURM job back in the queue (same job id, so Snakemake keeps following it):
    it starts again later and continues from the checkpoint just written, instead of
    failing and spending one of the workflow's retries."""
    import os
    import subprocess

    from .distributed import from_environment

    job = os.environ.get("SLURM_JOB_ID")
    if not from_environment().is_main:
        return  # one rank requeues the job for all
    if not job:
        print("ir2net: --requeue-on-stop outside a SLURM job: nothing to requeue",
              file=sys.stderr)
        return
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode == 0:
        print(f"ir2net: SLURM job {job} requeued; it continues from the checkpoint",
              file=sys.stderr, flush=True)
    else:
        print(f"ir2net: could not requeue SLURM job {job} ({result.stderr.strip()}); a retry "
              "of the workflow continues from the checkpoint", file=sys.stderr)


def _models(args) -> int:
    from .models import list_models
    print("\n".join(list_models()))
    return 0


def _rules(args) -> int:
    from .restriction import get_rule, list_rules
    for name in list_rules():
        print(f"{name}: {get_rule(name).description}")
    return 0


def _recipes(args) -> int:
    from .config import list_recipes
    print("\n".join(list_recipes()))
    return 0


def _presets(args) -> int:
    from dataclasses import asdict

    from .recovery import RECOVERY_PRESETS
    rows = [{"name": p.name, "table": p.table, "row": p.row, "backbone": p.backbone,
             **asdict(p.spec), "source": p.source} for p in RECOVERY_PRESETS.values()]
    print(json.dumps(rows, indent=2, ensure_ascii=False))
    return 0


def _complexity(args) -> int:
    from .complexity import build_variant, count_complexity
    from .models import model_info

    size = tuple(args.input_size) if args.input_size else model_info(args.model).input_size
    model = build_variant(args.model, args.variant, taps=args.taps)
    report = count_complexity(model, size, args.convention, name=f"{args.model}/{args.variant}")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return 0
    import pandas as pd
    table = report.table()
    table = table[(table[["bops", "flops", "params"]] != 0).any(axis=1)]
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(table.to_string(index=False, formatters={
            column: "{:,.0f}".format for column in ("bops", "flops", "params", "bits")}))
    print(f"\n{report.model} at {'x'.join(map(str, size))}, convention {report.convention}")
    print(f"BOPs {report.bops / 1e9:.3f}e9  FLOPs {report.flops / 1e8:.3f}e8  "
          f"OPs {report.ops / 1e8:.3f}e8  params {report.params:,}  "
          f"memory {report.memory_bits / 8 / 2**20:.2f} MiB")
    return 0


def _bench(args) -> int:
    if args.profile:
        from .throughput import measure_profile_steps

        measure_profile_steps(args.profile, args.out, device=args.device,
                              overrides=args.set or [], warmup=args.warmup,
                              repeats=args.repeats, steps=args.steps)
        return 0
    if args.model:
        from .config import ConfigError
        from .models import model_info

        try:
            args.recipe = model_info(args.model).recipe
        except ValueError as error:
            raise ConfigError(f"--model: {error}") from None
        if args.recipe is None:
            raise ConfigError(f"model {args.model!r} has no packaged recipe to benchmark; "
                              "use --recipe with a config file")
    if args.recipe:
        from .config import load_config
        from .throughput import measure_step

        config = load_config(args.recipe, ["data.root=x", *(args.set or [])])
        result = measure_step(config, recipe=args.recipe, device=args.device,
                              batch_size=args.batch_size, warmup=args.warmup,
                              repeats=args.repeats, steps=args.steps)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            step = result["train_step"]
            print(f"{args.recipe} ({step['model']}) training step, batch {step['batch_size']}, "
                  f"{step['ours_step']}: {step['ours_img_s']:,.0f} img/s")
        return 0
    from .bench import run_benchmark

    result = run_benchmark(device=args.device, batch_size=args.batch_size or 128,
                           warmup=args.warmup,
                           repeats=args.repeats, steps=args.steps, data_root=args.data_root,
                           channels_last=args.channels_last, compile=args.compile,
                           cuda_graphs=not args.no_cuda_graphs, bf16=args.bf16,
                           mixed_precision=args.mixed_precision)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    step, data, machine = result["train_step"], result["data"], result["machine"]
    print(f"machine: {machine.get('gpu') or machine['cpu']} ({machine['device']}, "
          f"{machine['torch_threads']} threads, torch {machine['torch']})")
    print(f"equivalence: loss {step['equivalence']['loss']:.6f}, largest gradient difference "
          f"{step['equivalence']['max_abs_grad_diff']:.2e}")
    print(f"training step, batch {step['batch_size']}: ours {step['ours_img_s']:.0f} img/s, "
          f"reference {step['reference_img_s']:.0f} img/s, speedup {step['speedup']:.2f}x; "
          f"ours with the data pipeline {step['ours_with_data_img_s']:.0f} img/s "
          f"({step['speedup_with_data']:.2f}x)")
    print(f"data pipeline: {data['img_s']:.0f} img/s ({data['vs_train_step']:.1f}x the "
          f"training step)")
    if step["bf16_agreement"]:
        agreement = step["bf16_agreement"]
        print(f"reduced precision (mixed_precision={step['mixed_precision']}, bf16 binary convs="
              f"{step['bf16_binary_convs']}) vs our fp32 step: loss {agreement['loss_fp32']:.5f} "
              f"-> {agreement['loss_bf16']:.5f}, gradient cosine {agreement['grad_cosine']:.4f}")
    return 0


def _bench_sharing(args) -> int:
    from .config import ConfigError
    from .throughput import measure_sharing

    try:
        runs = [int(k) for k in args.runs.split(",")]
    except ValueError:
        raise ConfigError(f"--runs {args.runs!r}: give numbers of runs separated by commas, "
                          "e.g. 1,2,4,8") from None
    if not runs or min(runs) < 1:
        raise ConfigError(f"--runs {args.runs!r}: every number of runs must be at least 1")
    save = None
    if args.out:
        from .artifacts import write_json

        def save(record):
            write_json(args.out, record)
    result = measure_sharing(args.recipe, runs, device=args.device, seconds=args.seconds,
                             batch_size=args.batch_size, overrides=args.set or [],
                             threads=args.threads, mps=not args.no_mps, on_row=save)
    if save is not None:
        save(result)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def _bench_pipeline(args) -> int:
    from .bench import run_pipeline_benchmark

    result = run_pipeline_benchmark(images=args.images, workers=args.workers,
                                    batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"ImageNet input pipeline, {result['workers']} worker(s): {result['img_s']:.0f} "
              f"img/s, {result['img_s_per_core']:.0f} img/s per core ({result['images']} "
              f"images of {result['jpeg']}); the per-image float pipeline side by side: "
              f"{result['per_image_float_img_s']:.0f} img/s "
              f"({result['speedup_vs_per_image_float']:.2f}x)")
    return 0


def _standin(args) -> int:
    from .data import build_standin

    data_cfg = {"dataset": "synthetic" if args.synthetic else "cifar10", "root": args.source,
                "download": False, "cache_dir": None,
                "synthetic": {"train_size": args.classes * args.train_per_class,
                              "test_size": args.classes * args.val_per_class,
                              "num_classes": args.classes, "image_size": 32}}
    description = build_standin(data_cfg, args.out, classes=args.classes,
                                train_per_class=args.train_per_class,
                                val_per_class=args.val_per_class, image_size=args.size)
    print(json.dumps(description))
    return 0


def _read_longruns(folder):
    if not folder:
        return None
    from .longruns import read_progress
    return read_progress(folder)


def _tables(args) -> int:
    from .reporting import accuracy_tables, complexity_tables, load_records, write_tables

    tables = {}
    if args.which in ("all", "accuracy"):
        if not args.records:
            print("ir2net: error: --records is needed for Tables I, III and IV (or use "
                  "--which complexity)", file=sys.stderr)
            return 2
        plan, records = load_records(args.records)
        tables.update(accuracy_tables(plan, records, _read_longruns(args.longruns)))
    if args.which in ("all", "complexity"):
        tables.update(complexity_tables())
    for path in write_tables(tables, args.out):
        print(path)
    return 0


def _figures(args) -> int:
    from .reporting import (accuracy_tables, coverage_figure, figure7, load_records,
                            paper_comparison, training_curves)

    plan, records = load_records(args.records)
    longruns = _read_longruns(args.longruns)
    written = (figure7(plan, records, args.out, longruns)
               + coverage_figure(plan, records, args.out, longruns)
               + training_curves(plan, records, args.out)
               + paper_comparison(accuracy_tables(plan, records, longruns), args.out))
    for path in written:
        print(path)
    return 0


def _render(args) -> int:
    from .reporting.publish import publish, render

    common = dict(longruns=_read_longruns(args.longruns), divergences=args.divergences,
                  benchmark=args.benchmark,
                  cost_plan=(args.plan_profile, args.plan_device) if args.plan_device else None)
    if args.command == "publish":
        written = publish(args.runs, args.records, args.tables, args.figures, args.report,
                          attention=args.attention, **common)
    else:
        written = render(args.records, args.tables, args.figures, args.report, **common)
    for path in written:
        print(path)
    return 0


def _attention(args) -> int:
    from .reporting import attention_figure

    print(attention_figure(args.records, args.out))
    return 0


def _report(args) -> int:
    from .reporting import write_report

    for path in write_report(args.records, args.tables, args.figures, args.out,
                             divergences=args.divergences, benchmark=args.benchmark,
                             cost_plan=args.plan):
        print(path)
    return 0


def _export(args) -> int:
    from .reporting import export_records

    print(f"{export_records(args.runs, args.to)} run records copied to {args.to}")
    return 0


def _evaluate(args) -> int:
    from .inference import score

    _set_threads(args.threads)
    result = score(args.target, config=args.config, data_root=args.data_root, device=args.device,
                   split=args.split)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        images = ("test images" if args.split == "test"
                  else "training images, without augmentation")
        print(f"{result['weights']}: top-1 {result['top1']:.2f}%, top-5 {result['top5']:.2f}% on "
              f"{result['images']} {images} ({result['device']})")
    return 0


def _ires_coverage(args) -> int:
    from .inference import ires_coverage_grid

    _set_threads(args.threads)
    results = ires_coverage_grid(args.target, args.lam, variants=args.variant,
                                 sources=args.source, config=args.config,
                                 data_root=args.data_root, device=args.device)
    if args.out:
        from .artifacts import write_json
        write_json(args.out, results)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
        return 0
    first = results[0]
    at = f" (epoch {first['epoch']}, step {first['step']})" if "epoch" in first else ""
    print(f"{first['weights']}{at}, {first['images']} test images, eval mode")
    for result in results:
        print(f"IRes variant {result['variant']}, attention source {result['source']}: "
              f"the mask removes nothing below λ = {result['onset']['min']:.3f} "
              f"(per-image onset: median {result['onset']['median']:.3f})")
        for lam, fraction in result["removed"].items():
            print(f"  λ = {lam:<5g} removes {100 * fraction:6.2f}% of pixels")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _export_model(args) -> int:
    from .inference import export

    print(export(args.target, args.out, args.format, config=args.config))
    return 0


def _plan(args) -> int:
    from .plan import plan_markdown, plan_profile

    jobs = plan_profile(args.configfile, args.device, args.bench)
    if args.json:
        print(json.dumps([{**vars(job), "gpu_hours": job.gpu_hours, "wall_hours": job.wall_hours}
                          for job in jobs], indent=2))
        return 0
    text = plan_markdown(jobs, args.device, Path(args.configfile).stem)
    if args.out:
        from .artifacts import write_text
        write_text(args.out, text + "\n")
    print(text)
    return 0


def _longrun_segments(args) -> int:
    """Every segment of the named runs (default: all): when, where, which epochs, how long."""
    from .longruns import read_progress
    from .reporting.tables import printed, segments_table, to_markdown

    progress = read_progress(args.folder)
    unknown = set(args.runs) - {entry["run"] for entry in progress}
    if unknown:
        print(f"ir2net longrun: not in {args.folder}/plan.yaml: {', '.join(sorted(unknown))}",
              file=sys.stderr)
        return 2
    frame = segments_table([entry for entry in progress
                            if not args.runs or entry["run"] in args.runs])
    if args.json:
        print(frame.to_json(orient="records", indent=2))
    elif frame.empty:
        print("no segment has trained yet")
    else:
        print(to_markdown(*printed("segments", frame)), end="")
    return 0


def _longrun(args) -> int:
    from .longruns import continue_runs, load_plan, run_status
    from .training import RESUMABLE_EXIT, TrainingStopped

    plan = load_plan(args.folder)
    if args.action == "segments":
        return _longrun_segments(args)
    if args.action == "status":
        rows = run_status(plan)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            where = ("not started" if row["state"] == "not started" else
                     f"{row['state']}, epoch {row['epochs_done']} of {row['epochs']}, "
                     f"{row['segments']} segment(s), {row['wall_hours']:.2f} h")
            scores = ("" if row["final_top1"] is None else
                      f"; top-1 last {row['final_top1']:.2f}%, best {row['best_top1']:.2f}%")
            pace = row["left_at_last_pace"]
            left = "" if pace is None else \
                f"; about {pace['hours']:.1f} h left at the last segment's pace ({pace['on']})"
            if row["gpu_only"]:
                left += ("; GPU-only" if row["h200_hours"] is None else
                         f"; GPU-only, {row['h200_hours']:.2f} H200-hours for the whole "
                         "schedule (cost plan)")
            if row["derivation"] is not None and row["state"] == "not started":
                where = f"not started: {row['derivation']['note']}"
            print(f"[{row['priority']}] {row['run']}: {where}{scores}{left}")
        return 0
    _set_threads(args.threads)
    try:
        summaries = continue_runs(plan, args.runs, stop_after=args.stop_after,
                                  data_root=args.data_root, device=args.device)
    except TrainingStopped as stopped:
        print(f"ir2net: {stopped}", file=sys.stderr)
        return RESUMABLE_EXIT
    for summary in summaries:
        best = summary.get("best") or {}
        print(f"{summary['run']}: {summary['state']}, epoch {summary.get('epochs_done')} of "
              f"{summary.get('epochs')}" + (f", best top-1 {best['top1']:.2f}%" if best else ""))
    unfinished = [s for s in summaries if s["state"] != "complete"]
    return RESUMABLE_EXIT if unfinished else 0


def _lambda(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"λ must lie in [0, 1] (Eq. 9), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .models.layers import ATTENTION_SOURCES
    from .restriction import list_rules

    parser = argparse.ArgumentParser(prog="ir2net", description="IR²Net reproduction harness")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train and evaluate one run")
    train.add_argument("--config", required=True,
                       help="a config file or a packaged recipe name (see `ir2net recipes`)")
    train.add_argument("--out", required=True, help="run folder (resumed if it holds a checkpoint)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config key, e.g. --set ires.lam=0.3 (repeatable)")
    train.add_argument("--settings", metavar="JSON",
                       help="typed settings as a JSON object of dotted keys, applied before "
                            "--set (what the workflow passes: its run table's settings)")
    train.add_argument("--stop-after", metavar="DURATION",
                       help="stop cleanly after this wall time (90s, 45m, 2h; train.stop_after) "
                            "with exit status 75; rerunning continues the run")
    train.add_argument("--requeue-on-stop", action="store_true",
                       help="inside a SLURM job: when the run stops on its budget or a signal "
                            "(e.g. sbatch --signal=USR1@600 before the time limit), requeue the "
                            "job with scontrol so it continues later")
    train.add_argument("--no-progress", action="store_true",
                       help="no progress output (bars on a terminal, per-epoch lines otherwise)")
    train.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: all)")
    train.add_argument("--on-config-change", choices=("error", "restart"), default="error",
                       help="a checkpoint in --out written by another config: stop with an "
                            "error (default) or keep it aside and start again")
    train.set_defaults(func=_train)

    # what every command that runs trained weights over the test set takes
    on_test_set = argparse.ArgumentParser(add_help=False)
    on_test_set.add_argument("target", help="a run folder (finished, or training: its "
                                            "checkpoint), a model.pt or a checkpoint/last.pt")
    on_test_set.add_argument("--config", help="the run's config.yaml (default: the run folder's)")
    on_test_set.add_argument("--data-root", "--data", dest="data_root",
                             help="the dataset on this machine (default: the run's data.root)")
    on_test_set.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                             help="default: cpu (deterministic)")
    on_test_set.add_argument("--threads", type=int,
                             help="CPU threads for PyTorch (default: all)")
    on_test_set.add_argument("--json", action="store_true")

    calibrate = sub.add_parser(
        "calibrate", help="train the real-valued ResNet-20 of He et al. with akamaster's recipe "
        "on a CIFAR-10 copy and report how far it lands from the canonical 91.73 %%")
    calibrate.add_argument("--data", help="the CIFAR-10 copy to train on (torchvision "
                           "folder, image folders or an archive of them)")
    calibrate.add_argument("--from", dest="from_run", metavar="RUN_DIR",
                           help="instead of training: report a finished calibration run")
    calibrate.add_argument("--json", help="write the summary here (default: "
                           "RUN_DIR/calibration.json)")
    calibrate.add_argument("--out", default="runs/calibration", help="run folder (resumable)")
    calibrate.add_argument("--set", action="append", metavar="KEY=VALUE",
                           help="override a recipe key (e.g. train.epochs=20 for a quick look)")
    calibrate.add_argument("--stop-after", help="stop cleanly after this wall time (resumable)")
    calibrate.add_argument("--threads", type=int, help="CPU threads")
    calibrate.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    calibrate.add_argument("--no-progress", action="store_true", help="no progress bar")
    calibrate.set_defaults(func=_calibrate)

    evaluate = sub.add_parser("evaluate", parents=[on_test_set],
                              help="score a trained model on its test set (or, with "
                                   "--split train, on its training images)")
    evaluate.add_argument("--split", choices=("test", "train"), default="test",
                          help="train: score the training images with the test-time pipeline "
                               "(no augmentation), i.e. how well the model fits them")
    evaluate.set_defaults(func=_evaluate)

    coverage = sub.add_parser(
        "ires-coverage", parents=[on_test_set],
        help="how much of each test image IRes's mask removes, per λ, with trained weights "
             "(Eq. 5-9)")
    coverage.add_argument("--lam", type=_lambda, nargs="+",
                          default=[0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0],
                          help="the λ values (default: Figure 7's)")
    coverage.add_argument("--variant", choices=list_rules(), nargs="+",
                          help="IRes variant(s) (default: the run's ires.variant)")
    coverage.add_argument("--source", choices=list(ATTENTION_SOURCES), nargs="+",
                          help="attention source(s) of Eq. 5 (default: the run's ires.source): "
                               "output = after the last stage's final activation (authors' "
                               "code); pre_activation = before it (this project's extension)")
    coverage.add_argument("--out", type=Path,
                          help="also write the results (a list, one per variant and source) "
                               "to this JSON file")
    coverage.set_defaults(func=_ires_coverage)

    export_model = sub.add_parser("export", help="export a trained model for inference")
    export_model.add_argument("target", help="a finished run folder, or a model.pt")
    export_model.add_argument("--format", default="torch-export", choices=("torch-export", "onnx"),
                              help="torch-export (.pt2, torch.export.load) or onnx (needs the "
                                   "onnx and onnxscript packages); default: %(default)s")
    export_model.add_argument("--out", required=True, help="file to write")
    export_model.add_argument("--config", help="the run's config.yaml (default: beside model.pt)")
    export_model.set_defaults(func=_export_model)

    plan = sub.add_parser("plan", help="what a workflow profile costs: images x epochs and "
                                       "GPU-hours per job, per table and in total")
    plan.add_argument("--configfile", default="config/paper.yaml",
                      help="the workflow profile (default: %(default)s)")
    plan.add_argument("--device", default="h200",
                      help="a device with a benchmark record in --bench: h200, h100, cpu, ... "
                           "(default: %(default)s, whose records time every step of the "
                           "paper profile)")
    plan.add_argument("--bench", default=str(Path(__file__).resolve().parents[1] / "results" /
                                             "bench"),
                      help="folder of `ir2net bench --json` records")
    plan.add_argument("--out", help="also write the Markdown plan to this file")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=_plan)

    longrun = sub.add_parser("longrun", help="the published-schedule runs kept in the "
                                             "repository (results/longruns/): status, "
                                             "continue, segments")
    longrun.add_argument("action", choices=("status", "continue", "segments"))
    longrun.add_argument("runs", nargs="*", metavar="RUN",
                         help="run ids to continue (default: every unfinished run of the most "
                              "urgent priority in plan.yaml) or whose segments to list "
                              "(default: all)")
    longrun.add_argument("--folder", default="results/longruns",
                         help="the long runs' folder, holding plan.yaml (default: %(default)s)")
    longrun.add_argument("--stop-after", metavar="DURATION",
                         help="stop cleanly after this wall time for the whole command (90s, "
                              "45m, 8h); exit status 75 while a run is unfinished")
    longrun.add_argument("--data-root", help="CIFAR-10 on this machine (default: plan.yaml's "
                                             "data_root)")
    longrun.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    longrun.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: all)")
    longrun.add_argument("--json", action="store_true", help="status or segments as JSON")
    longrun.set_defaults(func=_longrun)

    from .complexity import CONVENTIONS, VARIANTS
    complexity = sub.add_parser("complexity", help="BOPs / FLOPs / OPs / memory of a model")
    complexity.add_argument("--model", required=True, help="a registered backbone")
    complexity.add_argument("--variant", default="baseline", choices=VARIANTS,
                            help="baseline (binary, no recovery), fp, or a recovery preset "
                                 "(default: baseline)")
    complexity.add_argument("--convention", default="ir2net_table6", choices=sorted(CONVENTIONS),
                            help="how real-valued element-wise work is counted "
                                 "(default: ir2net_table6)")
    complexity.add_argument("--taps", default="authors", choices=("paper", "authors"),
                            help="information-recovery taps (default: authors)")
    complexity.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                            help="input size (default: 3 224 224 on ImageNet, 3 32 32 on CIFAR)")
    complexity.add_argument("--json", action="store_true", help="machine-readable output")
    complexity.set_defaults(func=_complexity)

    bench = sub.add_parser("bench", help="training-step and data-pipeline throughput, ours vs "
                                         "the authors' formulation")
    bench.add_argument("--device", default="cuda" if _cuda() else "cpu", choices=("cpu", "cuda"))
    bench.add_argument("--recipe", help="time the training step `ir2net train` runs for this "
                                        "recipe or config (no reference comparison), e.g. "
                                        "imagenet_stage2; what `ir2net plan` reads")
    bench.add_argument("--model", help="time the training step of this backbone's recipe "
                                       "(`ir2net models`; e.g. vgg_small: --recipe "
                                       "cifar10_vgg_small)")
    bench.add_argument("--profile", metavar="CONFIGFILE",
                       help="time every distinct training step of this workflow profile (e.g. "
                            "config/paper.yaml), one record per step into --out")
    bench.add_argument("--out", default="results/bench/steps",
                       help="folder of the --profile records (default: %(default)s)")
    bench.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="with --recipe or --profile: override a config key (repeatable)")
    bench.add_argument("--batch-size", type=int,
                       help="default: 128; with --recipe the recipe's batch")
    bench.add_argument("--warmup", type=int, default=3, help="untimed steps (default: 3)")
    bench.add_argument("--repeats", type=int, default=5, help="timed repeats (default: 5)")
    bench.add_argument("--steps", type=int, default=5, help="steps per repeat (default: 5)")
    bench.add_argument("--data-root", help="CIFAR-10 to read (default: generated images)")
    bench.add_argument("--channels-last", action="store_true")
    bench.add_argument("--compile", action="store_true", help="torch.compile our model")
    bench.add_argument("--bf16", action="store_true",
                       help="run our binary convolutions in bfloat16 (the model.binary_dtype "
                            "switch); checked against our fp32 step, not for equality")
    bench.add_argument("--mixed-precision", choices=("none", "bfloat16"), default="none",
                       help="our step under torch.autocast (the train.mixed_precision switch); "
                            "checked against our fp32 step, not for equality")
    bench.add_argument("--no-cuda-graphs", action="store_true",
                       help="run our step eagerly on CUDA (default: captured CUDA graph)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=_bench)

    sharing = sub.add_parser("bench-sharing", help="aggregate img/s of k concurrent runs of "
                                                   "a recipe's step on one device (GPU sharing)")
    sharing.add_argument("--recipe", default="cifar10_resnet20_bireal")
    sharing.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="override a config key of every run (repeatable)")
    sharing.add_argument("--runs", default="1,2,4,8",
                         help="numbers of concurrent runs (default: %(default)s)")
    sharing.add_argument("--device", default="cuda" if _cuda() else "cpu", choices=("cpu", "cuda"))
    sharing.add_argument("--seconds", type=float, default=20.0,
                         help="timed window of every run (default: %(default)s)")
    sharing.add_argument("--batch-size", type=int, help="default: the recipe's")
    sharing.add_argument("--threads", type=int, help="CPU threads per run")
    sharing.add_argument("--no-mps", action="store_true", help="skip the CUDA MPS measurement")
    sharing.add_argument("--out", help="write the JSON record here (atomically) after every "
                                       "measured row: a measurement stopped early keeps them "
                                       "(\"complete\": false)")
    sharing.add_argument("--json", action="store_true")
    sharing.set_defaults(func=_bench_sharing)

    pipeline = sub.add_parser("bench-pipeline", help="decode + augmentation throughput of the "
                                                     "ImageNet loader on ImageNet-sized JPEGs")
    pipeline.add_argument("--images", type=int, default=512)
    pipeline.add_argument("--workers", type=int, default=0,
                          help="DataLoader workers (0: the main process; default: 0)")
    pipeline.add_argument("--batch-size", type=int, default=64)
    pipeline.add_argument("--json", action="store_true")
    pipeline.set_defaults(func=_bench_pipeline)

    standin = sub.add_parser("standin", help="build an ImageNet-layout stand-in from CIFAR-10")
    standin.add_argument("--source", help="CIFAR-10 root (any form data.root accepts)")
    standin.add_argument("--synthetic", action="store_true", help="use the synthetic test set")
    standin.add_argument("--out", required=True)
    standin.add_argument("--classes", type=int, default=10)
    standin.add_argument("--train-per-class", type=int, default=100)
    standin.add_argument("--val-per-class", type=int, default=50)
    standin.add_argument("--size", type=int, default=64)
    standin.set_defaults(func=_standin)

    tables = sub.add_parser("tables", help="Tables I-VI (I, III, IV from run records; II, V, "
                                           "VI from the models alone)")
    tables.add_argument("--records", help="a runs folder or results/records/<profile>")
    tables.add_argument("--which", choices=("all", "accuracy", "complexity"), default="all",
                        help="accuracy: Tables I, III, IV (and published); complexity: Tables "
                             "II, V, VI, which need no run (default: %(default)s)")
    tables.add_argument("--out", required=True)
    tables.add_argument("--longruns", help="the published-schedule runs' folder (results/longruns):"
                                           " adds their rows as published.*")
    tables.set_defaults(func=_tables)

    figures = sub.add_parser("figures", help="Figure 7, IRes coverage, training curves and "
                                             "ours-vs-paper from run records")
    figures.add_argument("--records", required=True)
    figures.add_argument("--out", required=True, help="folder for the figures (PNG and PDF)")
    figures.add_argument("--longruns", help="the published-schedule runs' folder: their IRes "
                                            "coverage goes into ires_coverage.*")
    figures.set_defaults(func=_figures)

    attention = sub.add_parser("attention", help="attention maps of the FP, Baseline and "
                                                 "IR²Net runs (needs their weights)")
    attention.add_argument("--records", required=True, help="a runs folder")
    attention.add_argument("--out", required=True, help="PNG file to write")
    attention.set_defaults(func=_attention)

    report = sub.add_parser("report", help="report.md and report.html")
    report.add_argument("--records", required=True)
    report.add_argument("--tables", required=True)
    report.add_argument("--figures", required=True)
    report.add_argument("--out", required=True)
    report.add_argument("--divergences", help="docs/divergences.md, included in the report")
    report.add_argument("--benchmark", help="an `ir2net bench --json` result to include")
    report.add_argument("--plan", help="an `ir2net plan` Markdown file to include")
    report.set_defaults(func=_report)

    export = sub.add_parser("export-records", help="copy finished runs' metrics and configs "
                                                   "(no weights) into a records folder")
    export.add_argument("--runs", required=True)
    export.add_argument("--to", required=True)
    export.set_defaults(func=_export)

    for name, text in (("render", "re-render the committed tables, figures and report from the "
                                  "committed run records (defaults: the default profile)"),
                       ("publish", "copy a finished profile's run records into the repository "
                                   "and render the committed tables, figures and report")):
        command = sub.add_parser(name, help=text)
        if name == "publish":
            command.add_argument("--runs", required=True, help="the profile's runs folder")
            command.add_argument("--attention", help="the workflow's attention.png to copy")
        command.add_argument("--records", default="results/records/default")
        command.add_argument("--tables", default="results/tables")
        command.add_argument("--figures", default="results/figures")
        command.add_argument("--report", default="report")
        command.add_argument("--longruns", default="results/longruns",
                             help="the published-schedule runs ('' to leave them out)")
        command.add_argument("--divergences", default="docs/divergences.md")
        command.add_argument("--benchmark", default="results/bench/cpu_bf16.json")
        command.add_argument("--plan-device", default="h200",
                             help="price --plan-profile on this device for the report's cost "
                                  "plan ('' for none; default: %(default)s)")
        command.add_argument("--plan-profile", default="config/paper.yaml",
                             help="the profile whose cost the report shows (default: "
                                  "%(default)s)")
        command.set_defaults(func=_render)

    sub.add_parser("models", help="list registered backbones").set_defaults(func=_models)
    sub.add_parser("recipes", help="list packaged recipes").set_defaults(func=_recipes)
    sub.add_parser("rules", help="list the IRes restriction rules (ires.variant)").set_defaults(
        func=_rules)
    sub.add_parser("presets", help="Table II / V recovery presets as JSON").set_defaults(
        func=_presets)
    return parser


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def main(argv=None) -> int:
    from .artifacts import ArtifactError
    from .bench import BenchmarkError
    from .config import ConfigError
    from .data import DatasetError
    from .models.resnet_imagenet import TeacherWeightsError
    from .training import TrainingError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetError, TrainingError, ArtifactError, TeacherWeightsError,
            BenchmarkError) as error:
        print(f"ir2net: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ir2net: interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
