"""The published-schedule runs kept in the repository: ``longrun status|continue|segments``."""
from __future__ import annotations

import json
import sys

from .common import set_threads


def _print_status(plan, as_json: bool) -> int:
    from ..longruns import run_status

    rows = run_status(plan)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        where = ("not started" if row["state"] == "not started" else
                 f"{row['state']}, epoch {row['epochs_done']} of {row['epochs']}, "
                 f"{row['segments']} segment(s), {row['wall_hours']:.2f} h")
        scores = ("" if row["final_top1"] is None else
                  f"; top-1 last {row['final_top1']:.2f}%, best {row['best_top1']:.2f}%")
        paces = [f"{pace['hours']:.1f} h on {pace['on']}" for pace in row["left_at_recent_pace"]]
        left = f"; left at the recent pace: about {', '.join(paces)}" if paces else ""
        if row["gpu_only"]:
            left += ("; GPU-only" if row["h200_hours"] is None else
                     f"; GPU-only, {row['h200_hours']:.2f} H200-hours for the whole "
                     "schedule (cost plan)")
        if row["derivation"] is not None and row["state"] == "not started":
            where = f"not started: {row['derivation']['note']}"
        print(f"[{row['priority']}] {row['run']}: {where}{scores}{left}")
    return 0


def _print_segments(args) -> int:
    """Every segment of the named runs (default: all): when, where, which epochs, how long."""
    from ..longruns import load_plan, read_progress
    from ..reporting.printing import printed, to_markdown
    from ..reporting.run_tables import segments_table

    plan = load_plan(args.folder)
    wanted = {plan.get(name).run_id for name in args.runs}  # an unplanned name stops here
    frame = segments_table([entry for entry in read_progress(args.folder)
                            if not wanted or entry["run"] in wanted])
    if args.json:
        print(frame.to_json(orient="records", indent=2))
    elif frame.empty:
        print("no segment has trained yet")
    else:
        print(to_markdown(*printed("segments", frame)), end="")
    return 0


def _continue(plan, args) -> int:
    from ..longruns import continue_runs
    from ..training import RESUMABLE_EXIT, TrainingStopped

    set_threads(args.threads)
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


def longrun(args) -> int:
    from ..longruns import load_plan

    plan = load_plan(args.folder)
    if args.action == "segments":
        return _print_segments(args)
    if args.action == "status":
        return _print_status(plan, args.json)
    return _continue(plan, args)


def add_longrun(sub) -> None:
    parser = sub.add_parser("longrun", help="the published-schedule runs kept in the "
                                            "repository (results/longruns/): status, "
                                            "continue, segments")
    parser.add_argument("action", choices=("status", "continue", "segments"))
    parser.add_argument("runs", nargs="*", metavar="RUN",
                        help="run ids, or their folders, to continue (default: every "
                             "unfinished run of the most urgent priority in plan.yaml) or "
                             "whose segments to list (default: all)")
    parser.add_argument("--folder", default="results/longruns",
                        help="the long runs' folder, holding plan.yaml (default: %(default)s)")
    parser.add_argument("--stop-after", metavar="DURATION",
                        help="stop cleanly after this wall time for the whole command (90s, "
                             "45m, 8h); exit status 75 while a run is unfinished")
    parser.add_argument("--data-root", help="CIFAR-10 on this machine (default: plan.yaml's "
                                            "data_root)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: all)")
    parser.add_argument("--json", action="store_true", help="status or segments as JSON")
    parser.set_defaults(func=longrun)


COMMANDS = (add_longrun,)
