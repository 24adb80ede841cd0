"""Train and evaluate: ``train``, ``calibrate``, ``evaluate``, ``ires-coverage``,
``bn-momentum``, ``export``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..inference import ENGINES, EXPORT_FORMATS
from .common import lambda_value, on_test_set, set_threads


def train(args) -> int:
    from ..config import ConfigError, load_config
    from ..training import RESUMABLE_EXIT, TrainingStopped, run

    set_threads(args.threads)

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
    from ..distributed import from_environment
    if not from_environment().is_main:
        return 0
    print(f"{args.out}: final top-1 {final['top1']:.2f}% top-5 {final['top5']:.2f}% on "
          f"{final['images']} test images; best top-1 {best['top1']:.2f}% (epoch {best['epoch']}); "
          f"{metrics['steps']} steps")
    return 0


def _requeue_slurm_job() -> None:
    """Put this SLURM job back in the queue (same job id, so Snakemake keeps following it):
    it starts again later and continues from the checkpoint just written, instead of
    failing and spending one of the workflow's retries."""
    import os
    import subprocess

    from ..distributed import from_environment

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


def add_train(sub) -> None:
    parser = sub.add_parser("train", help="train and evaluate one run")
    parser.add_argument("--config", required=True,
                        help="a config file or a packaged recipe name (see `ir2net recipes`)")
    parser.add_argument("--out", required=True,
                        help="run folder (resumed if it holds a checkpoint)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key, e.g. --set ires.lam=0.3 (repeatable)")
    parser.add_argument("--settings", metavar="JSON",
                        help="typed settings as a JSON object of dotted keys, applied before "
                             "--set (what the workflow passes: its run table's settings)")
    parser.add_argument("--stop-after", metavar="DURATION",
                        help="stop cleanly after this wall time (90s, 45m, 2h; train.stop_after) "
                             "with exit status 75; rerunning continues the run")
    parser.add_argument("--requeue-on-stop", action="store_true",
                        help="inside a SLURM job: when the run stops on its budget or a signal "
                             "(e.g. sbatch --signal=USR1@600 before the time limit), requeue the "
                             "job with scontrol so it continues later")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress output (bars on a terminal, per-epoch lines otherwise)")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: all)")
    parser.add_argument("--on-config-change", choices=("error", "restart"), default="error",
                        help="a checkpoint in --out written by another config: stop with an "
                             "error (default) or keep it aside and start again")
    parser.set_defaults(func=train)


def calibrate(args) -> int:
    """Train the data calibration's ResNet-20 on a CIFAR-10 copy (``--data``), or read a
    finished calibration run (``--from``), and report the shortfall from the canonical figure."""
    from .. import artifacts
    from ..calibration import RECIPE, REFERENCE, shortfall, summary_line
    from ..config import ConfigError, load_config
    from ..training import RESUMABLE_EXIT, TrainingStopped, run

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
        set_threads(args.threads)
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


def add_calibrate(sub) -> None:
    parser = sub.add_parser(
        "calibrate", help="train the real-valued ResNet-20 of He et al. with akamaster's recipe "
        "on a CIFAR-10 copy and report how far it lands from the canonical 91.73 %%")
    parser.add_argument("--data", help="the CIFAR-10 copy to train on (torchvision "
                        "folder, image folders or an archive of them)")
    parser.add_argument("--from", dest="from_run", metavar="RUN_DIR",
                        help="instead of training: report a finished calibration run")
    parser.add_argument("--json", help="write the summary here (default: "
                        "RUN_DIR/calibration.json)")
    parser.add_argument("--out", default="runs/calibration", help="run folder (resumable)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a recipe key (e.g. train.epochs=20 for a quick look)")
    parser.add_argument("--stop-after", help="stop cleanly after this wall time (resumable)")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=calibrate)


def evaluate(args) -> int:
    from ..config import ConfigError
    from ..inference import score

    if args.per_image and not (args.out or args.json):
        raise ConfigError("--per-image writes each image's prediction into the --out record "
                          "(or --json): give one")
    set_threads(args.threads)
    result = score(args.target, config=args.config, data_root=args.data_root, device=args.device,
                   split=args.split, engine=args.engine, per_image=args.per_image)
    if args.out:
        from ..artifacts import write_json
        from ..provenance import collect

        write_json(args.out, {**result, "data_root": args.data_root,
                              "provenance": collect(args.device)})
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    images = ("test images" if args.split == "test"
              else "training images, without augmentation")
    where = result["device"] if args.engine == "pytorch" else \
        f"OpenVINO {result['openvino']}, binary convs on {', '.join(result['binary_primitives'])}"
    print(f"{result['weights']}: top-1 {result['top1']:.2f}%, top-5 {result['top5']:.2f}% on "
          f"{result['images']} {images} ({where})")
    if args.engine == "openvino":
        for name in ("pytorch", "pytorch_float32"):
            other = result[name]
            label = ("PyTorch as the run evaluates (binary convs "
                     f"{other['binary_dtype']})" if name == "pytorch"
                     else "PyTorch with float32 binary convs")
            print(f"  {label}: top-1 {other['top1']:.2f}%; predictions differ on "
                  f"{100 * other['prediction_differs']:.2f}% of the images")
    return 0


def add_evaluate(sub) -> None:
    parser = sub.add_parser("evaluate", parents=[on_test_set()],
                            help="score a trained model on its test set (or, with "
                                 "--split train, on its training images)")
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="train: score the training images with the test-time pipeline "
                             "(no augmentation), i.e. how well the model fits them")
    parser.add_argument("--engine", choices=ENGINES, default="pytorch",
                        help="openvino: run the model on OpenVINO's CPU plugin with its binary "
                             "convolutions on the XNOR-popcount kernel, beside PyTorch on the "
                             "same images (needs the .[deploy] extra; default: %(default)s)")
    parser.add_argument("--out", help="also write the result, with the machine, the versions "
                                      "and the commit, to this JSON file (e.g. a long run's "
                                      "openvino_evaluation.json, which the report reads)")
    parser.add_argument("--per-image", action="store_true",
                        help="also record each image's top-1 class and label, in the test "
                             "set's order (a long run's test_predictions.json: the report "
                             "compares two runs image by image)")
    parser.set_defaults(func=evaluate)


def ires_coverage(args) -> int:
    from ..inference import ires_coverage_grid

    set_threads(args.threads)
    results = ires_coverage_grid(args.target, args.lam, variants=args.variant,
                                 sources=args.source, config=args.config,
                                 data_root=args.data_root, device=args.device)
    if args.out:
        from ..artifacts import write_json
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


def add_ires_coverage(sub) -> None:
    from ..models.layers import ATTENTION_SOURCES
    from ..restriction import list_rules

    parser = sub.add_parser(
        "ires-coverage", parents=[on_test_set()],
        help="how much of each test image IRes's mask removes, per λ, with trained weights "
             "(Eq. 5-9)")
    parser.add_argument("--lam", type=lambda_value, nargs="+",
                        default=[0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0],
                        help="the λ values (default: Figure 7's)")
    parser.add_argument("--variant", choices=list_rules(), nargs="+",
                        help="IRes variant(s) (default: the run's ires.variant)")
    parser.add_argument("--source", choices=list(ATTENTION_SOURCES), nargs="+",
                        help="attention source(s) of Eq. 5 (default: the run's ires.source): "
                             "output = after the last stage's final activation (authors' "
                             "code); pre_activation = before it (this project's extension)")
    parser.add_argument("--out", type=Path,
                        help="also write the results (a list, one per variant and source) "
                             "to this JSON file")
    parser.set_defaults(func=ires_coverage)


def bn_momentum(args) -> int:
    from ..artifacts import ArtifactError, write_json
    from ..bn_statistics import FROZEN, momentum_effect
    from ..provenance import collect

    set_threads(args.threads)
    if args.out and args.out.is_file():  # read before the measurement: a bad file fails first
        try:
            records = json.loads(args.out.read_text())
        except json.JSONDecodeError as error:
            records = error
        if not isinstance(records, list):
            raise ArtifactError(f"{args.out} is not the JSON list `ir2net bn-momentum --out` "
                                f"writes ({records}); move it away and rerun")
    else:
        records = []
    result = momentum_effect(args.target, momenta=args.momentum, steps=args.steps,
                             points=args.points, interval=args.interval,
                             frozen_batches=args.frozen_batches, config=args.config,
                             data_root=args.data_root, device=args.device)
    result["provenance"] = collect(args.device)
    if args.out:  # one record per state of the run: a newer measurement of it replaces the old
        records = [r for r in records if (r["epoch"], r["step"], r["weights"])
                   != (result["epoch"], result["step"], result["weights"])]
        write_json(args.out, sorted([*records, result], key=lambda r: r["epoch"]))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    spacing = (f"scored after {result['steps']} and then every {result['interval']}, "
               f"{result['points']} times")
    how = (f"training steps at lr {result['lr']:.4g} from epoch {result['epoch']} (step "
           f"{result['step']}), {spacing}" if result["trained"] else
           f"training-mode batches through the final weights, frozen, {spacing}")
    print(f"{result['weights']}: {how}; BatchNorm updates per step "
          f"{result['bn_updates_per_step']:g}")
    own_key = f"{result['own_momentum']:g}"
    own = result["scores"][own_key]["top1"]
    for key, scores in result["scores"].items():
        if key == FROZEN:
            label = f"lag-free (the weights' own statistics, {result['frozen_batches']} batches)"
        else:
            label = f"momentum {key}" + (" (the run's own)" if key == own_key else "")
        each = ", ".join(f"{value:.2f}" for value in scores["top1_points"])
        print(f"  {label}: test top-1 {scores['top1']:.2f}% ({scores['top1'] - own:+.2f}; "
              f"each point: {each})")
    print(f"  kept statistics at the run's own momentum agree with BatchNorm's within "
          f"{result['own_statistics_agreement']:.1e} of their scale")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def add_bn_momentum(sub) -> None:
    parser = sub.add_parser(
        "bn-momentum", parents=[on_test_set()],
        help="test top-1 of the same weights with BatchNorm's running statistics kept at "
             "other momenta (what IRes that removes nothing changes: 0.1 -> 0.19)")
    parser.add_argument("--momentum", type=float, nargs="+", default=[0.1, 0.19],
                        help="momenta to keep statistics at, beside the run's own (default: "
                             "0.1 0.19, the run without IRes and with IRes that removes "
                             "nothing)")
    parser.add_argument("--steps", type=int, default=200,
                        help="training steps from a run's checkpoint (final weights: batches "
                             "with the weights frozen) before the first score, while the "
                             "statistics are kept (default: %(default)s)")
    parser.add_argument("--points", type=int, default=3,
                        help="how many times to score, --interval steps apart; the record "
                             "holds each and their mean (default: %(default)s)")
    parser.add_argument("--interval", type=int, default=100,
                        help="training steps between two scores (default: %(default)s)")
    parser.add_argument("--frozen-batches", type=int, default=100,
                        help="batches for the lag-free statistics of the weights at each "
                             "point (default: %(default)s)")
    parser.add_argument("--out", type=Path,
                        help="add the result to this JSON list (a long run's "
                             "bn_momentum.json, which the report reads)")
    parser.set_defaults(func=bn_momentum)


def export_model(args) -> int:
    from ..inference import export

    print(export(args.target, args.out, args.format, config=args.config))
    return 0


def add_export(sub) -> None:
    parser = sub.add_parser("export", help="export a trained model for inference")
    parser.add_argument("target", help="a finished run folder, or a model.pt")
    parser.add_argument("--format", default="torch-export", choices=EXPORT_FORMATS,
                        help="torch-export (.pt2, torch.export.load), onnx (needs the "
                             "onnx and onnxscript packages) or openvino (NAME.xml + NAME.bin, "
                             "batch 1, binary convolutions on the XNOR-popcount kernel; needs "
                             "the .[deploy] extra); default: %(default)s")
    parser.add_argument("--out", required=True, help="file to write")
    parser.add_argument("--config", help="the run's config.yaml (default: beside model.pt)")
    parser.set_defaults(func=export_model)


COMMANDS = (add_train, add_calibrate, add_evaluate, add_ires_coverage, add_bn_momentum,
            add_export)
