"""A name -> constructor registry (the timm pattern), each entry carrying its defaults.

Like timm's ``default_cfg``, a registered backbone says what callers would otherwise guess
from its name: its input size, the recipe that trains it as the paper does, which recovery
presets apply, whether it is a binary IR²Net backbone at all (the teacher is not), and
which of its construction choices differ between paper and code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn

from ..recovery_presets import presets_for

__all__ = ["ModelInfo", "register_model", "create_model", "list_models", "model_entry",
           "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    input_size: tuple[int, int, int]      # (C, H, W) of one image, as the paper trains it
    recipe: Optional[str] = None          # the packaged recipe (`ir2net recipes`)
    binary: bool = True                   # False: a plain real-valued network (the teacher)
    tap_styles: tuple[str, ...] = ()      # `model.taps` choices, where paper and code differ
    sized_classifier: bool = False        # its classifier depends on `data.image_size`

    @property
    def presets(self) -> list[str]:
        """The recovery presets (Tables II, V) written for this backbone."""
        return [preset.name for preset in presets_for(self.name)]


_MODELS: dict[str, Callable[..., nn.Module]] = {}
_INFO: dict[str, ModelInfo] = {}


def register_model(fn: Optional[Callable[..., nn.Module]] = None, **defaults):
    """Register a constructor under its own name with its :class:`ModelInfo` fields
    (``@register_model(input_size=(3, 32, 32), recipe=...)``); a duplicate name is an error."""
    def register(function: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = function.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = function
        _INFO[name] = ModelInfo(name, **defaults)
        return function
    return register if fn is None else register(fn)


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_entry(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None


def model_info(name: str) -> ModelInfo:
    model_entry(name)  # the same error for an unknown name
    return _INFO[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; keyword arguments left as ``None`` take the entry's default."""
    return model_entry(name)(**{k: v for k, v in kwargs.items() if v is not None})
