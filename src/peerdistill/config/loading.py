"""A config from a file, the embedded default or a run's saved copy, with key=value overrides,
validated into a RunConfig."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError
from .cohort_spec import DistillSpec, unread_distill_keys
from .data_spec import saved_data_section
from .messages import format_validation_error, section_model
from .overrides import apply_overrides
from .run_spec import RunConfig
from .training_spec import OptimSpec, unread_optim_keys
from .yaml_files import load_config_file, load_yaml


def default_config() -> dict[str, Any]:
    """The embedded default: digits, a small CNN teacher trained online, two smaller CNN students
    (named digits-kd+ml after its data and preset, and after other data given on the command line)."""
    return {
        "teacher": {"arch": "cnn", "args": {"width": 32, "depth": 3}},
        "students": [
            {"arch": "cnn", "args": {"width": 16, "depth": 2}},
            {"arch": "cnn", "args": {"width": 16, "depth": 2}},
        ],
        "distill": {"preset": "kd+ml"},
        "train": {"epochs": 30, "batch_size": 64},
    }


def validate(tree: dict[str, Any], source: str = "config", saved: bool = False) -> RunConfig:
    """``saved``: a config a run wrote, held to the rules of the version that wrote it where
    they were looser (see ``_saved``)."""
    try:
        return RunConfig.model_validate(tree, context={"saved": saved})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, RunConfig)) from None


def read_saved_config(tree: Any, source: str) -> RunConfig:
    """A config a run saved (its config.yaml, its checkpoint's copy), validated after
    ``saved_data_section``."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{source} must hold a mapping of keys, not {type(tree).__name__}")
    if isinstance(tree.get("data"), dict):
        tree = {**tree, "data": saved_data_section(tree["data"])}
    return validate(tree, source, saved=True)


def as_read(cfg: RunConfig) -> dict[str, Any]:
    """``cfg`` as a tree with the distill and optim keys nothing of it reads at their defaults: a run saved
    before such keys were refused (``kd_temperature: 2`` under ml) is the run the same config
    makes today, for reuse and resume alike."""
    tree = cfg.model_dump(mode="json")
    for key in unread_distill_keys(cfg.distill, len(cfg.all_teachers()), cfg.has_heads()):
        tree["distill"][key] = DistillSpec.model_fields[key].default
    for key in unread_optim_keys(cfg.optim):  # (likewise: momentum under adamw, refused since 2026-12)
        tree["optim"][key] = OptimSpec.model_fields[key].default
    if cfg.distill.teacher_weighting == "confidence":  # per-sample weights: the teachers' own are not read
        for teacher in tree["teachers"] or [tree["teacher"]]:
            if isinstance(teacher, dict):
                teacher["weight"] = 1.0
    return tree


def load_saved_config(path: str | Path) -> RunConfig:
    """A run directory's config.yaml, read as ``read_saved_config`` reads it."""
    return read_saved_config(load_yaml(path), f"config '{path}'")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML file (or the embedded default when ``path`` is None) and apply overrides."""
    if isinstance(overrides, str):  # one override alone, not a list of its characters
        overrides = [overrides]
    if path is not None and not isinstance(path, (str, Path)):
        raise ConfigError(f"load_config takes the path of a YAML file, got a {type(path).__name__}: for a config "
                          "as a dict, call peerdistill.config.validate(tree)")
    tree = load_config_file(path) if path is not None else default_config()
    apply_overrides(tree, overrides or [])
    source = f"config '{path}'" if path else "embedded default config"
    if overrides:
        source += " with the key=value overrides"
    return validate(tree, source)


def to_yaml(config: RunConfig) -> str:
    # (names as written: é, 中文 were escapes in config.yaml and the report, review 56m; the file is UTF-8)
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def key_paths(name: str) -> list[str]:
    """Every config key whose last part is ``name`` ('epochs' -> ['train.epochs'])."""
    found = [name] if name in RunConfig.model_fields else []
    for section, field in RunConfig.model_fields.items():
        inner = None if typing.get_origin(field.annotation) is list else section_model(field.annotation)
        if inner is not None and name in inner.model_fields:  # a list's items are students.N.KEY
            found.append(f"{section}.{name}")
    return found
