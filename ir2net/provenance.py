"""What produced a number: code version, package versions, hardware."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

__all__ = ["git_commit", "package_versions", "hardware", "collect"]

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


# Paths that running the package changes by design: run records and long-run checkpoints
# (results/) and the rendered report.  A change there says nothing about the code that ran.
RECORD_PATHS = ("results", "report")


def git_commit(root: Path = _PACKAGE_ROOT) -> dict:
    """The commit of the checkout the package runs from, and whether its code had local
    changes: ``dirty`` leaves out :data:`RECORD_PATHS`, which a long run's own segments change
    (two runs training side by side would otherwise mark each other's records dirty).
    ``IR2NET_COMMIT``, when set, names the commit instead: a copy of a working tree (one sent to
    a lent GPU machine) may have no ``.git`` or, seen once, a stale one whose HEAD is an older
    commit."""
    named = os.environ.get("IR2NET_COMMIT")
    if named:
        return {"commit": named, "dirty": None}
    unknown = {"commit": None, "dirty": None}

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return unknown
        code_only = [":(top)"] + [f":(top,exclude){path}" for path in RECORD_PATHS]
        status = git("status", "--porcelain", "--untracked-files=no", "--", *code_only)
        if status.returncode != 0:
            return {"commit": head.stdout.strip(), "dirty": None}
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return unknown


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in ("ir2net", "torch", "torchvision", "numpy", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device | str | None = None) -> dict:
    info = {"platform": platform.platform(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": str(device) if device else "cpu"}
    if device is not None and torch.device(device).type == "cuda":
        index = torch.device(device).index or 0
        info["gpu"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
    return info


def collect(device=None) -> dict:
    return {"git": git_commit(), "versions": package_versions(), "hardware": hardware(device)}
