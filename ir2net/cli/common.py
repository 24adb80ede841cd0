"""What several command groups share: thread setting, the published-schedule runs' progress,
argument types, and the arguments of every command that runs trained weights over a test set."""
from __future__ import annotations

import argparse


def set_threads(threads) -> None:
    if threads:
        import torch
        torch.set_num_threads(threads)


def cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


def read_longruns(folder):
    """The published-schedule runs' progress (``results/longruns``), or None for ``''``."""
    if not folder:
        return None
    from ..longruns import read_progress
    return read_progress(folder)


def lambda_value(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"λ must lie in [0, 1] (Eq. 9), got {text}")
    return value


def on_test_set() -> argparse.ArgumentParser:
    """The arguments of every command that runs trained weights over the test set (a parent
    parser)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("target", help="a run folder (finished, or training: its "
                                       "checkpoint), a model.pt or a checkpoint/last.pt")
    parser.add_argument("--config", help="the run's config.yaml (default: the run folder's)")
    parser.add_argument("--data-root", "--data", dest="data_root",
                        help="the dataset on this machine (default: the run's data.root)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="default: cpu (deterministic)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads for PyTorch (default: all)")
    parser.add_argument("--json", action="store_true")
    return parser
