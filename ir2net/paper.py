"""What the paper reports: every number quoted from it, typed once in ``paper_values.yaml``
with the table or figure it comes from.  Tables and figures read them from here."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

__all__ = ["paper_values"]


@lru_cache(maxsize=1)
def paper_values() -> dict:
    from .config import read_yaml_text
    return read_yaml_text(resources.files("ir2net").joinpath("paper_values.yaml").read_text())
