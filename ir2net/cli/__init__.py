"""The ``ir2net`` command line: one module per group of subcommands, each defining its
commands' arguments next to the function they call; :func:`main` assembles them.

| module | commands |
|---|---|
| :mod:`.runs` | train, calibrate, evaluate, ires-coverage, bn-momentum, export |
| :mod:`.longrun` | longrun status / continue / segments |
| :mod:`.workflow` | plan, standin, tables, figures, attention, report, export-records, |
|  | render, publish |
| :mod:`.bench` | bench, bench-sharing, bench-pipeline |
| :mod:`.inspection` | complexity, models, recipes, rules, presets |
"""
from __future__ import annotations

import argparse
import sys

from . import bench, inspection, longrun, runs, workflow

__all__ = ["main", "build_parser"]

#: the groups in the order ``ir2net --help`` lists them
GROUPS = (runs, longrun, workflow, bench, inspection)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ir2net", description="IR²Net reproduction harness")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        for add_command in group.COMMANDS:
            add_command(sub)
    return parser


def main(argv=None) -> int:
    from ..artifacts import ArtifactError
    from ..bench import BenchmarkError
    from ..config import ConfigError
    from ..data import DatasetError
    from ..models.resnet_imagenet import TeacherWeightsError
    from ..openvino_engine import EngineError
    from ..training import TrainingError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetError, TrainingError, ArtifactError, TeacherWeightsError,
            BenchmarkError, EngineError) as error:
        print(f"ir2net: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ir2net: interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130
