"""``ir2net`` command line: ``train``, ``models``, ``recipes``, ``presets``."""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def _train(args) -> int:
    from .config import load_config
    from .training import run

    config = load_config(args.config, args.set or ())
    if args.no_progress:
        config["progress"] = False
    metrics = run(config, args.out)
    final, best = metrics["final"], metrics["best"]
    print(f"{args.out}: final top-1 {final['top1']:.2f}% top-5 {final['top5']:.2f}% on "
          f"{final['images']} test images; best top-1 {best['top1']:.2f}% (epoch {best['epoch']}); "
          f"{metrics['steps']} steps")
    return 0


def _models(args) -> int:
    from .models import list_models
    print("\n".join(list_models()))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ir2net", description="IR²Net reproduction harness")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train and evaluate one run")
    train.add_argument("--config", required=True,
                       help="a config file or a packaged recipe name (see `ir2net recipes`)")
    train.add_argument("--out", required=True, help="run folder (resumed if it holds a checkpoint)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config key, e.g. --set ires.lam=0.3 (repeatable)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    train.set_defaults(func=_train)

    sub.add_parser("models", help="list registered backbones").set_defaults(func=_models)
    sub.add_parser("recipes", help="list packaged recipes").set_defaults(func=_recipes)
    sub.add_parser("presets", help="Table II / V recovery presets as JSON").set_defaults(
        func=_presets)
    return parser


def main(argv=None) -> int:
    from .artifacts import ArtifactError
    from .config import ConfigError
    from .data import DatasetError
    from .models.resnet_imagenet import TeacherWeightsError
    from .training import TrainingError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetError, TrainingError, ArtifactError, TeacherWeightsError) as error:
        print(f"ir2net: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ir2net: interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
