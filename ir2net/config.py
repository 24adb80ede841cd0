"""Run configuration: YAML files validated against ``config_schema.yaml``.

A config may name a ``base`` (a packaged recipe or another file) that it extends;
``--set key=value`` overrides any key.  Resolution fills every default, so the
written ``config.yaml`` of a run is enough to rerun it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

__all__ = ["ConfigError", "load_config", "resolve_config", "format_schema_error",
           "list_recipes", "recipe_path", "config_digest", "apply_overrides", "apply_settings",
           "fill_defaults", "schema", "read_yaml_text", "parse_duration",
           "EXECUTION_ONLY_KEYS", "LATER_KEYS"]


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; researchers write learning rates that way."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_yaml_text(text: str):
    """``yaml.safe_load`` that also reads ``1e-3`` and ``1.68e9`` as numbers."""
    return yaml.load(text, Loader=_Loader)


@lru_cache(maxsize=1)
def schema() -> dict:
    return yaml.safe_load(resources.files("ir2net").joinpath("config_schema.yaml").read_text())


def list_recipes() -> list[str]:
    folder = resources.files("ir2net").joinpath("recipes")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def recipe_path(name: str) -> Path:
    path = Path(str(resources.files("ir2net").joinpath("recipes", f"{name}.yaml")))
    if not path.is_file():
        raise ConfigError(f"unknown recipe {name!r}; available: {', '.join(list_recipes())}")
    return path


def _read_yaml(path: Path) -> dict:
    try:
        data = read_yaml_text(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def _merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_layers(source: str, seen: tuple = ()) -> dict:
    """Read ``source`` (a file path or a recipe name) and everything its ``base`` chain names."""
    path = Path(source)
    if not path.suffix and not path.exists():
        path = recipe_path(source)
    if path.resolve() in seen:
        raise ConfigError(f"config {path} extends itself through 'base'")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"config key 'base' in {path} must be a recipe name or a file path")
    base_path = Path(base)
    if base_path.suffix and not base_path.is_absolute():
        base = str(path.parent / base_path)
    return _merge(_load_layers(base, seen + (path.resolve(),)), data)


def apply_settings(config: dict, settings: dict[str, Any]) -> dict:
    """Set typed values by dotted key (``{"train.lr": 0.2}``), in order."""
    config = copy.deepcopy(config)
    for key, value in settings.items():
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"setting {key}: '{part}' is not a section")
        node[parts[-1]] = copy.deepcopy(value)
    return config


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """Apply ``key.sub=value`` strings; values are parsed as YAML (``1e-3``, ``null``, ``[1, 2]``)."""
    settings = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = read_yaml_text(raw)
        except yaml.YAMLError:
            value = raw
        settings.pop(key, None)
        settings[key] = value
    return apply_settings(config, settings)


def fill_defaults(node: dict, node_schema: dict) -> None:
    """Fill a JSON Schema's ``default`` values into ``node``, recursively (in place)."""
    for key, sub in node_schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict) and sub.get("type") == "object":
            fill_defaults(node[key], sub)


def format_schema_error(error) -> str:
    """A JSON Schema validation error as the message every config error uses: the dotted
    key, then what is wrong with it."""
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        return f"config: unknown key(s) under '{key}': {error.message}"
    return f"config key '{key}': {error.message}"


def resolve_config(config: dict) -> dict:
    """Validate ``config``, fill in the schema's defaults and check cross-key rules."""
    import jsonschema

    config = copy.deepcopy(config)
    config.pop("base", None)
    fill_defaults(config, schema())
    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(config),
                    key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(format_schema_error(errors[0]))
    _check_semantics(config)
    return config


def _check_semantics(config: dict) -> None:
    from .models import list_models, model_info
    from .recovery import RECOVERY_PRESETS
    from .restriction import list_rules

    model = config["model"]
    if model["name"] not in list_models():
        raise ConfigError(f"config key 'model.name': unknown backbone {model['name']!r}; "
                          f"available: {', '.join(list_models())}")
    preset = model["recovery"]["preset"]
    if model["recovery"]["enabled"] and preset is not None and preset not in RECOVERY_PRESETS:
        raise ConfigError(f"config key 'model.recovery.preset': unknown preset {preset!r}; "
                          f"available: {', '.join(RECOVERY_PRESETS)}")
    ires = config["ires"]
    if ires["variant"] not in list_rules():
        raise ConfigError(f"config key 'ires.variant': unknown restriction rule "
                          f"{ires['variant']!r}; available: {', '.join(list_rules())}")
    if ires["lam"] <= 0:
        raise ConfigError(f"config key 'ires.lam': {ires['lam']} is not in (0, 1]; for no "
                          "restriction (the paper's lambda = 0) set ires.enabled=false")
    data = config["data"]
    if data["dataset"] != "synthetic" and not data["root"]:
        raise ConfigError(f"config key 'data.root': the {data['dataset']} dataset needs a folder; "
                          "set data.root (for CIFAR-10 an extracted copy of the image-folder "
                          "archive or torchvision's cifar-10-batches-py)")
    train = config["train"]
    parse_duration(train["stop_after"])
    milestones = train["lr_milestones"]
    if train["schedule"] == "multistep" and (
            not milestones or milestones != sorted(set(milestones))):
        # a milestone past train.epochs is allowed: a shortened schedule never reaches it
        raise ConfigError(f"config key 'train.lr_milestones': {milestones} must be a non-empty, "
                          "strictly increasing list of epochs for schedule multistep, "
                          "e.g. [100, 150]")
    if not model_info(model["name"]).binary and (
            model["precision"] != "fp" or model["recovery"]["enabled"] or ires["enabled"]):
        raise ConfigError(f"config key 'model.name': {model['name']} is a plain real-valued "
                          "network; set model.precision=fp, model.recovery.enabled=false and "
                          "ires.enabled=false")
    if train["teacher"] is not None and train["teacher"] not in list_models():
        raise ConfigError(f"config key 'train.teacher': unknown model {train['teacher']!r}")


def load_config(source: str, overrides: Iterable[str] = (),
                settings: Optional[dict[str, Any]] = None) -> dict:
    """Load a config file or recipe, apply typed ``settings`` then ``overrides`` (strings),
    resolve defaults and validate."""
    layers = apply_settings(_load_layers(source), settings or {})
    return resolve_config(apply_overrides(layers, overrides))


#: Keys that change how a run executes but not its result; left out of the digest so that
#: a checkpoint stays valid when they change.  Where the data lives (``data.root``,
#: ``data.download``) is one of them: a run continued on another machine reads its dataset
#: from that machine's path, and the checkpoint's data fingerprint (a hash of the decoded
#: images) checks that it is the same data.
EXECUTION_ONLY_KEYS = ("progress", "device", "data.workers", "data.cache_dir", "data.root",
                       "data.download", "train.checkpoint_every_steps", "train.cuda_graphs",
                       "train.compile", "train.channels_last", "train.stop_after")

#: Result-changing keys added to the schema after runs had started, with the value that
#: reproduces what runs did before the key existed.  At that value a key is left out of the
#: digest, so adding a key never invalidates a run in progress (the published-schedule runs
#: in results/longruns/ live for days).  A new key goes here with its neutral value.
LATER_KEYS: dict[str, Any] = {"train.sync_batchnorm": False, "train.lr_milestones": [],
                               "train.lr_gamma": 0.1, "model.bn_momentum": 0.1,
                               "ires.source": "output"}


def _drop(config: dict, dotted: str, only_if: Any = ...) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node.get(part, {})
    if leaf in node and (only_if is ... or node[leaf] == only_if):
        del node[leaf]


def config_digest(config: dict) -> str:
    """A short stable hash of everything that changes a run's result."""
    relevant = copy.deepcopy(config)
    for dotted in EXECUTION_ONLY_KEYS:
        _drop(relevant, dotted)
    for dotted, neutral in LATER_KEYS.items():
        _drop(relevant, dotted, neutral)
    blob = json.dumps(relevant, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")
_UNIT_SECONDS = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value, key: str = "train.stop_after") -> Optional[float]:
    """``90``, ``"90s"``, ``"45m"``, ``"2h"``, ``"1.5d"`` as seconds; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.match(str(value))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"config key '{key}': {value!r} is not a duration; write a positive "
                          "number of seconds or a number with a unit: 90s, 45m, 2h, 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
