"""A name -> constructor registry (the timm pattern)."""
from __future__ import annotations

from typing import Callable

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "model_entry"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its own name; a duplicate name is an error."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_entry(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; keyword arguments left as ``None`` take the entry's default."""
    return model_entry(name)(**{k: v for k, v in kwargs.items() if v is not None})
