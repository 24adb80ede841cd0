"""Inspecting what the package holds, no run needed: ``complexity``, ``models``, ``recipes``,
``rules``, ``presets``."""
from __future__ import annotations

import json


def complexity(args) -> int:
    from ..complexity import build_variant, count_complexity
    from ..models import model_info

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


def add_complexity(sub) -> None:
    from ..complexity import CONVENTIONS, VARIANTS

    parser = sub.add_parser("complexity", help="BOPs / FLOPs / OPs / memory of a model")
    parser.add_argument("--model", required=True, help="a registered backbone")
    parser.add_argument("--variant", default="baseline", choices=VARIANTS,
                        help="baseline (binary, no recovery), fp, or a recovery preset "
                             "(default: baseline)")
    parser.add_argument("--convention", default="ir2net_table6", choices=sorted(CONVENTIONS),
                        help="how real-valued element-wise work is counted "
                             "(default: ir2net_table6)")
    parser.add_argument("--taps", default="authors", choices=("paper", "authors"),
                        help="information-recovery taps (default: authors)")
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                        help="input size (default: 3 224 224 on ImageNet, 3 32 32 on CIFAR)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=complexity)


def models(args) -> int:
    from ..models import list_models
    print("\n".join(list_models()))
    return 0


def recipes(args) -> int:
    from ..config import list_recipes
    print("\n".join(list_recipes()))
    return 0


def rules(args) -> int:
    from ..restriction import get_rule, list_rules
    for name in list_rules():
        print(f"{name}: {get_rule(name).description}")
    return 0


def presets(args) -> int:
    from dataclasses import asdict

    from ..recovery import RECOVERY_PRESETS
    rows = [{"name": p.name, "table": p.table, "row": p.row, "backbone": p.backbone,
             **asdict(p.spec), "source": p.source} for p in RECOVERY_PRESETS.values()]
    print(json.dumps(rows, indent=2, ensure_ascii=False))
    return 0


def add_listings(sub) -> None:
    sub.add_parser("models", help="list registered backbones").set_defaults(func=models)
    sub.add_parser("recipes", help="list packaged recipes").set_defaults(func=recipes)
    sub.add_parser("rules", help="list the IRes restriction rules (ires.variant)").set_defaults(
        func=rules)
    sub.add_parser("presets", help="Table II / V recovery presets as JSON").set_defaults(
        func=presets)


COMMANDS = (add_complexity, add_listings)
