"""Benchmarks: ``bench`` (training step), ``bench-sharing`` (k runs on one device),
``bench-pipeline`` (the ImageNet loader), ``latency`` (inference on a binary engine)."""
from __future__ import annotations

import json

from .common import cuda_available


def _print_reference_comparison(result: dict) -> None:
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


def _recipe_step(args) -> int:
    from ..config import load_config
    from ..throughput import measure_step

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


def bench(args) -> int:
    if args.profile:
        from ..throughput import measure_profile_steps

        measure_profile_steps(args.profile, args.out, device=args.device,
                              overrides=args.set or [], warmup=args.warmup,
                              repeats=args.repeats, steps=args.steps)
        return 0
    if args.model:
        from ..config import ConfigError
        from ..models import model_info

        try:
            args.recipe = model_info(args.model).recipe
        except ValueError as error:
            raise ConfigError(f"--model: {error}") from None
        if args.recipe is None:
            raise ConfigError(f"model {args.model!r} has no packaged recipe to benchmark; "
                              "use --recipe with a config file")
    if args.recipe:
        return _recipe_step(args)
    from ..bench import run_benchmark

    result = run_benchmark(device=args.device, batch_size=args.batch_size or 128,
                           warmup=args.warmup,
                           repeats=args.repeats, steps=args.steps, data_root=args.data_root,
                           channels_last=args.channels_last, compile=args.compile,
                           cuda_graphs=not args.no_cuda_graphs, bf16=args.bf16,
                           mixed_precision=args.mixed_precision)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_reference_comparison(result)
    return 0


def add_bench(sub) -> None:
    parser = sub.add_parser("bench", help="training-step and data-pipeline throughput, ours vs "
                                          "the authors' formulation")
    parser.add_argument("--device", default="cuda" if cuda_available() else "cpu",
                        choices=("cpu", "cuda"))
    parser.add_argument("--recipe", help="time the training step `ir2net train` runs for this "
                                         "recipe or config (no reference comparison), e.g. "
                                         "imagenet_stage2; what `ir2net plan` reads")
    parser.add_argument("--model", help="time the training step of this backbone's recipe "
                                        "(`ir2net models`; e.g. vgg_small: --recipe "
                                        "cifar10_vgg_small)")
    parser.add_argument("--profile", metavar="CONFIGFILE",
                        help="time every distinct training step of this workflow profile (e.g. "
                             "config/paper.yaml), one record per step into --out")
    parser.add_argument("--out", default="results/bench/steps",
                        help="folder of the --profile records (default: %(default)s)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="with --recipe or --profile: override a config key (repeatable)")
    parser.add_argument("--batch-size", type=int,
                        help="default: 128; with --recipe the recipe's batch")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (default: 3)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default: 5)")
    parser.add_argument("--steps", type=int, default=5, help="steps per repeat (default: 5)")
    parser.add_argument("--data-root", help="CIFAR-10 to read (default: generated images)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument("--bf16", action="store_true",
                        help="run our binary convolutions in bfloat16 (the model.binary_dtype "
                             "switch); checked against our fp32 step, not for equality")
    parser.add_argument("--mixed-precision", choices=("none", "bfloat16"), default="none",
                        help="our step under torch.autocast (the train.mixed_precision switch); "
                             "checked against our fp32 step, not for equality")
    parser.add_argument("--no-cuda-graphs", action="store_true",
                        help="run our step eagerly on CUDA (default: captured CUDA graph)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=bench)


def bench_sharing(args) -> int:
    from ..config import ConfigError
    from ..throughput import measure_sharing

    try:
        runs = [int(k) for k in args.runs.split(",")]
    except ValueError:
        raise ConfigError(f"--runs {args.runs!r}: give numbers of runs separated by commas, "
                          "e.g. 1,2,4,8") from None
    if not runs or min(runs) < 1:
        raise ConfigError(f"--runs {args.runs!r}: every number of runs must be at least 1")
    save = None
    if args.out:
        from ..artifacts import write_json

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


def add_bench_sharing(sub) -> None:
    parser = sub.add_parser("bench-sharing", help="aggregate img/s of k concurrent runs of "
                                                  "a recipe's step on one device (GPU sharing)")
    parser.add_argument("--recipe", default="cifar10_resnet20_bireal")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key of every run (repeatable)")
    parser.add_argument("--runs", default="1,2,4,8",
                        help="numbers of concurrent runs (default: %(default)s)")
    parser.add_argument("--device", default="cuda" if cuda_available() else "cpu",
                        choices=("cpu", "cuda"))
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="timed window of every run (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    parser.add_argument("--threads", type=int, help="CPU threads per run")
    parser.add_argument("--no-mps", action="store_true", help="skip the CUDA MPS measurement")
    parser.add_argument("--out", help="write the JSON record here (atomically) after every "
                                      "measured row: a measurement stopped early keeps them "
                                      "(\"complete\": false)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=bench_sharing)


def bench_pipeline(args) -> int:
    from ..bench import run_pipeline_benchmark

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


def add_bench_pipeline(sub) -> None:
    parser = sub.add_parser("bench-pipeline", help="decode + augmentation throughput of the "
                                                   "ImageNet loader on ImageNet-sized JPEGs")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader workers (0: the main process; default: 0)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=bench_pipeline)


def latency(args) -> int:
    import sys

    from ..artifacts import write_json
    from ..config import ConfigError
    from ..latency import measure_latency

    try:
        record = measure_latency(args.model, threads=args.threads, warmup=args.warmup,
                                 repeats=args.repeats, breakdown_runs=args.breakdown_runs,
                                 progress=lambda text: print(text, file=sys.stderr, flush=True))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if args.out:
        write_json(args.out, record)
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
        return 0
    machine = record["machine"]
    print(f"{machine['cpu']} ({'AVX-512' if machine['avx512'] else 'no AVX-512'}), OpenVINO "
          f"{machine['openvino']}, torch {machine['torch']}; batch 1, median of "
          f"{record['repeats']} runs (10th percentile)")
    for row in record["latency"]:
        kernel = f", binary convs on {', '.join(row['binary_primitives'])}" \
            if row["binary_primitives"] else ""
        print(f"{row['model']:<24} {row['engine']:<14} {row['threads']} thread(s): "
              f"{row['median_ms']:8.2f} ms ({row['p10_ms']:.2f}){kernel}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def add_latency(sub) -> None:
    from ..latency import LATENCY_MODELS

    parser = sub.add_parser(
        "latency", help="batch-1 latency of Table VI's models and Table III's CIFAR-10 models "
        "on OpenVINO (binary convolutions on its XNOR-popcount kernel, and in float32) and in "
        "PyTorch, timed side by side; needs no data and no trained weights")
    parser.add_argument("--model", nargs="+", metavar="LABEL",
                        help="models to time (default: all): "
                             + "; ".join(entry.label for entry in LATENCY_MODELS))
    parser.add_argument("--threads", type=int, nargs="+",
                        help="thread counts (default: 1 and every CPU this process may use)")
    parser.add_argument("--warmup", type=int, default=10,
                        help="untimed rounds (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=100,
                        help="timed rounds, one inference of every model and engine each "
                             "(default: %(default)s)")
    parser.add_argument("--breakdown-runs", type=int, default=20,
                        help="inferences averaged by OpenVINO's per-layer counters (default: "
                             "%(default)s)")
    parser.add_argument("--out", help="write the JSON record here (e.g. "
                                      "results/bench/latency.json, which the report reads)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=latency)


COMMANDS = (add_bench, add_bench_sharing, add_bench_pipeline, add_latency)
