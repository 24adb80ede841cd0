"""Files a run leaves behind, written so that a reader never sees half of one:
every write goes to a temporary file in the same folder and is renamed into place."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

__all__ = ["atomic_write", "write_text", "write_json", "write_yaml", "save_torch",
           "load_state_dict", "ArtifactError", "CHECKPOINT"]

#: a run's resumable state while it trains, relative to its folder (rewritten atomically)
CHECKPOINT = Path("checkpoint", "last.pt")


_UMASK = os.umask(0)
os.umask(_UMASK)


class ArtifactError(RuntimeError):
    pass


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Call ``write(file)`` on a temporary sibling of ``path``, fsync it, rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


def write_json(path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_yaml(path, data: Any) -> Path:
    return write_text(path, yaml.safe_dump(data, sort_keys=False))


def save_torch(path, obj: Any) -> Path:
    return atomic_write(path, lambda f: torch.save(obj, f), mode="wb")


def load_state_dict(path: str | os.PathLike) -> dict:
    """Load a state_dict saved by ``ir2net train`` (``model.pt``, or the run folder
    holding it) or any plain ``torch.save(state_dict)`` file, with ``weights_only=True``."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ArtifactError(f"weights file {path} does not exist; give the path of a model.pt "
                            "written by `ir2net train` (or its run folder)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ArtifactError(f"cannot read weights file {path}: {error}. The file is corrupt or "
                            "not a PyTorch state_dict; re-create it by rerunning its training") from error
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state
