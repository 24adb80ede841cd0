"""The workflow's steps and reporting: ``plan``, ``standin``, ``tables``, ``figures``,
``attention``, ``report``, ``export-records``, ``render``, ``publish``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import read_longruns


def plan(args) -> int:
    from ..plan import plan_markdown, plan_profile

    jobs = plan_profile(args.configfile, args.device, args.bench)
    if args.json:
        print(json.dumps([{**vars(job), "gpu_hours": job.gpu_hours, "wall_hours": job.wall_hours}
                          for job in jobs], indent=2))
        return 0
    text = plan_markdown(jobs, args.device, Path(args.configfile).stem)
    if args.out:
        from ..artifacts import write_text
        write_text(args.out, text + "\n")
    print(text)
    return 0


def add_plan(sub) -> None:
    parser = sub.add_parser("plan", help="what a workflow profile costs: images x epochs and "
                                         "GPU-hours per job, per table and in total")
    parser.add_argument("--configfile", default="config/paper.yaml",
                        help="the workflow profile (default: %(default)s)")
    parser.add_argument("--device", default="h200",
                        help="a device with a benchmark record in --bench: h200, h100, cpu, ... "
                             "(default: %(default)s, whose records time every step of the "
                             "paper profile)")
    parser.add_argument("--bench", default=str(Path(__file__).resolve().parents[2] / "results" /
                                               "bench"),
                        help="folder of `ir2net bench --json` records")
    parser.add_argument("--out", help="also write the Markdown plan to this file")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=plan)


def standin(args) -> int:
    from ..data import build_standin

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


def add_standin(sub) -> None:
    parser = sub.add_parser("standin", help="build an ImageNet-layout stand-in from CIFAR-10")
    parser.add_argument("--source", help="CIFAR-10 root (any form data.root accepts)")
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic test set")
    parser.add_argument("--out", required=True)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.set_defaults(func=standin)


def tables(args) -> int:
    from ..reporting import accuracy_tables, complexity_tables, load_records, write_tables
    from ..reporting.latency_tables import read_latency
    from ..reporting.tables import latency_tables

    frames = {}
    if args.which in ("all", "accuracy"):
        if not args.records:
            print("ir2net: error: --records is needed for Tables I, III and IV (or use "
                  "--which complexity)", file=sys.stderr)
            return 2
        run_table, records = load_records(args.records)
        frames.update(accuracy_tables(run_table, records, read_longruns(args.longruns)))
    if args.which in ("all", "complexity"):
        latency = read_latency(args.latency)
        if args.latency and latency is None:
            print(f"ir2net: error: --latency {args.latency}: no such file", file=sys.stderr)
            return 2
        frames.update(complexity_tables(latency))
        frames.update(latency_tables(latency))
    for path in write_tables(frames, args.out):
        print(path)
    return 0


def add_tables(sub) -> None:
    parser = sub.add_parser("tables", help="Tables I-VI (I, III, IV from run records; II, V, "
                                           "VI from the models alone)")
    parser.add_argument("--records", help="a runs folder or results/records/<profile>")
    parser.add_argument("--which", choices=("all", "accuracy", "complexity"), default="all",
                        help="accuracy: Tables I, III, IV (and published); complexity: Tables "
                             "II, V, VI, which need no run (default: %(default)s)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--longruns", help="the published-schedule runs' folder "
                                           "(results/longruns): adds their rows as published.*")
    parser.add_argument("--latency", help="with the complexity tables: an `ir2net latency` "
                                          "record for Table VI's measured columns and the "
                                          "latency tables")
    parser.set_defaults(func=tables)


def figures(args) -> int:
    from ..reporting import (accuracy_tables, coverage_figure, figure7, latency_figure,
                             load_records, paper_comparison, training_curves)
    from ..reporting.latency_tables import read_latency

    run_table, records = load_records(args.records)
    longruns = read_longruns(args.longruns)
    written = (figure7(run_table, records, args.out, longruns)
               + coverage_figure(run_table, records, args.out, longruns)
               + training_curves(run_table, records, args.out)
               + paper_comparison(accuracy_tables(run_table, records, longruns), args.out)
               + latency_figure(read_latency(args.latency), args.out))
    for path in written:
        print(path)
    return 0


def add_figures(sub) -> None:
    parser = sub.add_parser("figures", help="Figure 7, IRes coverage, training curves and "
                                            "ours-vs-paper from run records")
    parser.add_argument("--records", required=True)
    parser.add_argument("--out", required=True, help="folder for the figures (PNG and PDF)")
    parser.add_argument("--longruns", help="the published-schedule runs' folder: their IRes "
                                           "coverage goes into ires_coverage.*")
    parser.add_argument("--latency", help="an `ir2net latency` record: latency_vs_ops.*")
    parser.set_defaults(func=figures)


def attention(args) -> int:
    from ..reporting import attention_figure

    print(attention_figure(args.records, args.out))
    return 0


def add_attention(sub) -> None:
    parser = sub.add_parser("attention", help="attention maps of the FP, Baseline and "
                                              "IR²Net runs (needs their weights)")
    parser.add_argument("--records", required=True, help="a runs folder")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.set_defaults(func=attention)


def report(args) -> int:
    from ..reporting import write_report

    for path in write_report(args.records, args.tables, args.figures, args.out,
                             divergences=args.divergences, benchmark=args.benchmark,
                             cost_plan=args.plan, latency=args.latency):
        print(path)
    return 0


def add_report(sub) -> None:
    parser = sub.add_parser("report", help="report.md and report.html")
    parser.add_argument("--records", required=True)
    parser.add_argument("--tables", required=True)
    parser.add_argument("--figures", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--divergences", help="docs/divergences.md, included in the report")
    parser.add_argument("--benchmark", help="an `ir2net bench --json` result to include")
    parser.add_argument("--plan", help="an `ir2net plan` Markdown file to include")
    parser.add_argument("--latency", help="the `ir2net latency` record behind the latency "
                                          "tables (its machine and speed-ups go under them)")
    parser.set_defaults(func=report)


def export_records(args) -> int:
    from ..reporting import export_records as copy_records

    print(f"{copy_records(args.runs, args.to)} run records copied to {args.to}")
    return 0


def add_export_records(sub) -> None:
    parser = sub.add_parser("export-records", help="copy finished runs' metrics and configs "
                                                   "(no weights) into a records folder")
    parser.add_argument("--runs", required=True)
    parser.add_argument("--to", required=True)
    parser.set_defaults(func=export_records)


def render(args) -> int:
    """``render`` and ``publish``: the committed tables, figures and report."""
    from ..reporting.publish import publish, render as render_committed

    common = dict(longruns=read_longruns(args.longruns), divergences=args.divergences,
                  benchmark=args.benchmark, latency=args.latency,
                  cost_plan=(args.plan_profile, args.plan_device) if args.plan_device else None)
    if args.command == "publish":
        written = publish(args.runs, args.records, args.tables, args.figures, args.report,
                          attention=args.attention, **common)
    else:
        written = render_committed(args.records, args.tables, args.figures, args.report,
                                   **common)
    for path in written:
        print(path)
    return 0


def add_render_and_publish(sub) -> None:
    for name, text in (("render", "re-render the committed tables, figures and report from the "
                                  "committed run records (defaults: the default profile)"),
                       ("publish", "copy a finished profile's run records into the repository "
                                   "and render the committed tables, figures and report")):
        parser = sub.add_parser(name, help=text)
        if name == "publish":
            parser.add_argument("--runs", required=True, help="the profile's runs folder")
            parser.add_argument("--attention", help="the workflow's attention.png to copy")
        parser.add_argument("--records", default="results/records/default")
        parser.add_argument("--tables", default="results/tables")
        parser.add_argument("--figures", default="results/figures")
        parser.add_argument("--report", default="report")
        parser.add_argument("--longruns", default="results/longruns",
                            help="the published-schedule runs ('' to leave them out)")
        parser.add_argument("--divergences", default="docs/divergences.md")
        parser.add_argument("--benchmark", default="results/bench/cpu_bf16.json")
        parser.add_argument("--latency", default="results/bench/latency.json",
                            help="an `ir2net latency` record: Table VI's measured columns, "
                                 "the latency tables and figure ('' for none; default: "
                                 "%(default)s)")
        parser.add_argument("--plan-device", default="h200",
                            help="price --plan-profile on this device for the report's cost "
                                 "plan ('' for none; default: %(default)s)")
        parser.add_argument("--plan-profile", default="config/paper.yaml",
                            help="the profile whose cost the report shows (default: "
                                 "%(default)s)")
        parser.set_defaults(func=render)


COMMANDS = (add_plan, add_standin, add_tables, add_figures, add_attention, add_report,
            add_export_records, add_render_and_publish)
