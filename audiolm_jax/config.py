"""Named configs (`configs/NAME.py`, each with `get_config()`) and `--config.a.b=v` overrides."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import os
from pathlib import Path

import ml_collections

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def list_configs() -> list[str]:
    """Names accepted by `--config=NAME`."""
    return sorted(
        p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem != "base"
    )


def base_configs():
    """`configs/base.py` as a module, whether or not the repository root is on sys.path (the
    importers build their project configs from it)."""
    try:
        return importlib.import_module("configs.base")
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            "_audiolm_config_base", CONFIG_DIR / "base.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def load_config(name_or_path: str) -> ml_collections.ConfigDict:
    """Loads `configs/NAME.py` or a path to a config file; errors list the known names."""
    if name_or_path.endswith(".py") or os.sep in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"_audiolm_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        if name_or_path not in list_configs():
            raise ValueError(
                f"unknown config {name_or_path!r}; known configs: {', '.join(list_configs())} "
                f"(in {CONFIG_DIR}), or pass a path to a .py file"
            )
        module = importlib.import_module(f"configs.{name_or_path}")
    if not hasattr(module, "get_config"):
        raise ValueError(f"config module {module.__file__} has no get_config()")
    config = module.get_config()
    config.name = config.get("name") or Path(name_or_path).stem
    return config


def _parse_value(text: str, current):
    if isinstance(current, bool):
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if isinstance(current, str) or current is None:
        try:
            value = ast.literal_eval(text)
            return value if current is None else text
        except (ValueError, SyntaxError):
            return text
    if isinstance(current, int):
        return int(float(text)) if float(text).is_integer() else int(text)
    if isinstance(current, float):
        return float(text)
    value = ast.literal_eval(text)
    if isinstance(current, (tuple, list)):
        value = type(current)(value if isinstance(value, (tuple, list)) else (value,))
    return value


def apply_override(config: ml_collections.ConfigDict, dotted: str, text: str) -> None:
    """Sets `config.a.b` from the string `text`, typed like the current value.

    A missing field raises a KeyError that lists the fields existing at that level.
    """
    node = config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        keys = list(node.keys()) if hasattr(node, "keys") else []
        if part not in keys:
            where = "config" + "".join(f".{p}" for p in parts[:i])
            raise KeyError(
                f"--config.{dotted}: {where} has no field {part!r}; "
                f"it has: {', '.join(sorted(keys))}"
            )
        if i == len(parts) - 1:
            current = node[part]
            try:
                value = _parse_value(text, current)
            except (ValueError, SyntaxError) as e:
                raise ValueError(f"--config.{dotted}={text}: {e}") from None
            with node.ignore_type():
                node[part] = value
        else:
            node = node[part]


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separates `--config.a.b=v` (and `--config.a.b v`) from the other arguments."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config.") :]
            if "=" in body:
                key, value = body.split("=", 1)
            else:
                if i + 1 >= len(argv):
                    raise ValueError(f"{arg} needs a value")
                key, value = body, argv[i + 1]
                i += 1
            overrides.append((key, value))
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def dataclass_from_config(cls, cfg, section: str, **fixed):
    """`cls(**cfg)` for a frozen config dataclass, `fixed` overriding or adding fields (derived
    values, converted types); a field `cls` does not have is an error naming `config.<section>`
    and the fields it knows."""
    # Fields only ever derived (in `fixed`, never in the config) are not the config's to set.
    known = {f.name for f in dataclasses.fields(cls)} - (set(fixed) - set(cfg.keys()))
    unknown = set(cfg.keys()) - known
    if unknown:
        raise ValueError(
            f"config.{section} has unknown fields {sorted(unknown)}; known: {sorted(known)}"
        )
    return cls(**{**{k: cfg[k] for k in cfg.keys()}, **fixed})
