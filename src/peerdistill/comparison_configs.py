"""The configs of a comparison, before any run: ``--setting`` variants of each config, and a
config moved to another preset. No torch here, so that the command line checks a comparison's
configs (and says what is wrong) before loading it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .config import (TEACHER_PRESETS, TEACHER_TERM_WEIGHTS, DistillSpec, RunConfig, check_preset_names,
                     named_as_written, unread_distill_keys, validate, yaml_value)
from .config.overrides import applied_keys
from .errors import ConfigError, warn_user


def parse_presets(text: str | None) -> list[str] | None:
    """``--presets kd,ml``: the preset names, checked."""
    if text is None:
        return None
    presets = [p.strip() for p in text.split(",")]
    if "" in presets[:-1] or presets == [""]:  # (a trailing comma is no slip: kd,ml,)
        raise ConfigError(f"--presets '{text}' holds an empty name between commas: list the presets as kd,kd+ml")
    presets = [p for p in presets if p]
    check_preset_names("--presets", presets)
    return presets


def checked_bases(configs: list[dict[str, Any]], presets: list[str] | None, names: list[str]) -> list[RunConfig]:
    """Each config validated as it will run (with the first of ``presets``, if given), named
    in a message by ``names``; all must be of one task."""
    bases = [validate(setting_tree(tree, presets[0], None, None, None) if presets else copy.deepcopy(tree), name)
             for tree, name in zip(configs, names, strict=True)]
    tasks = dict.fromkeys(b.task for b in bases)
    if len(tasks) > 1:  # no row of one task could be set beside a row of another
        first = {t: next(names[i] for i, b in enumerate(bases) if b.task == t) for t in tasks}
        raise ConfigError(f"compare tabulates configs of one task; these are of {len(tasks)}: "
                          f"{', '.join(f'{t} ({name})' for t, name in first.items())}: compare each task's configs "
                          "on their own")
    return bases


def warn_of_presets_alike(bases: list[RunConfig], presets: list[str] | None, names: list[str]) -> None:
    """Presets that train the same runs for a config (once per comparison, where it runs):
    kd from several teachers distils their combined target, the multi-teacher preset's edges."""
    several = [name for base, name in zip(bases, names) if len(base.all_teachers()) > 1]
    if presets and {"kd", "multi-teacher"} <= set(presets) and several:
        warn_user(f"kd and multi-teacher train the same runs for {several[0]}, whose several teachers kd "
                  "distils by their combined target as multi-teacher does: the two rows will be equal; compare "
                  "one-teacher KD from a second config holding one teacher (teacher: ...) instead")


# Keys a comparison sets for each of its runs (and with --presets, the preset): a setting's own
# value would be dropped without a word.
SET_BY_COMPARE = ("name", "out_dir", "seed")


def variant_trees(trees: list[dict[str, Any]], variants: list[str], presets: list[str] | None = None
                  ) -> list[dict[str, Any]]:
    """``--setting NAME:KEY=VALUE`` (repeated for more keys of the same NAME; ``--setting NAME``
    alone: the config as it is): each config once per NAME, with that name's overrides, named
    NAME (with several configs, CONFIGNAME-NAME). One token per flag, so nothing typed after it
    is taken into a setting by mistake. ``presets`` (``--presets``) set every run's preset, so a
    setting may not, and each must read the distill keys a setting sets."""
    presets_given = presets is not None
    overrides: dict[str, list[str]] = {}
    for variant in variants:
        name, sep, override = variant.partition(":")
        if not sep or "=" in name:
            name, override = variant, ""
        if "=" in name or not name.strip():
            raise ConfigError(f"--setting '{variant}': write NAME:KEY=VALUE (e.g. --setting "
                              "turns:data.augment=[hflip,rotate]), or NAME alone for the config as it is")
        if any(c in name for c in "/\\;") or name.strip() in (".", ".."):  # ';' parts run lists in compare.csv
            raise ConfigError(f"--setting '{variant}': its NAME '{name}' names the runs' folders, so it is one "
                              "folder name (no /, \\ or ;)")
        if sep and "=" not in name and not override.strip():  # (an unset shell variable after the colon)
            raise ConfigError(f"--setting '{variant}' has nothing after its ':': write NAME:KEY=VALUE, or NAME alone "
                              "for the config as it is")
        if override and "=" not in override:
            raise ConfigError(f"--setting '{variant}': '{override}' is not a key=value override")
        set_keys = _keys_set_by(override) if override else set()
        key = next((k for k in sorted(set_keys) if k in SET_BY_COMPARE or (presets_given and k == "distill.preset")),
                   None)
        if key is not None:
            why = ("--presets sets every run's preset: drop --presets to give each setting a preset of its own"
                   if key == "distill.preset" else
                   "compare sets each run's seed (--seeds N runs seeds 0 to N-1, from the config's seed), and runs "
                   "are paired by seed across settings; give the config's seed: for all of them" if key == "seed" else
                   "compare names each run and puts it in the comparison's folder (--out): the setting's NAME "
                   "names its rows and runs")
            raise ConfigError(f"--setting '{variant}': {key} cannot differ between settings; {why}")
        overrides.setdefault(name, []).extend([override] if override else [])
    out = []
    for tree in trees:
        for name, given in overrides.items():
            variant = copy.deepcopy(tree)
            try:
                set_here = applied_keys(variant, given)
            except ConfigError as exc:  # (a key given twice: in which setting)
                raise ConfigError(f"--setting '{name}': {exc}") from None
            distill_keys = {key.split(".")[1] for key in set_here
                            if key.startswith("distill.")}  # the setting's own: kept, and checked
            moved_to, moved_from = _preset_of(variant), _preset_of(tree)
            if None not in (moved_to, moved_from) and moved_to != moved_from:  # as --presets moves a config
                variant["distill"] = under_preset(tree, variant, kept=distill_keys)
            if presets:
                _check_read_by(presets, variant, name, distill_keys)
            base = named_as_written(tree)["name"]
            variant["name"] = name if len(trees) == 1 else f"{base}-{name}"
            out.append(variant)
    return out


def _check_read_by(presets: list[str], variant: dict[str, Any], name: str, set_here: set[str]) -> None:
    """Refuse a setting with a distill key (of ``set_here``, those it sets) one of ``presets``
    does not read: moved to that preset the key would go (or be refused by the run), and the row
    would be the plain preset's run."""
    if _preset_of(variant) is None:  # no mapping: validation names it
        return
    unread: dict[str, dict[str, str]] = {}  # key -> {preset not reading it: where it is read}
    for preset in presets:
        moved = setting_tree(variant, preset, None, None, None)
        distill = {**moved["distill"], **{k: v for k, v in (variant.get("distill") or {}).items() if k in set_here}}
        for key, where in _unread_under_preset(moved, distill).items():
            if key in set_here:
                unread.setdefault(key, {})[preset] = where.replace(f" (preset is '{preset}')", "")
    if not unread:
        return
    key, where_by_preset = min(unread.items())
    [(preset, where), *_] = where_by_preset.items()
    if len(where_by_preset) == len(presets):
        raise ConfigError(f"--setting '{name}' sets distill.{key}, which none of --presets {','.join(presets)} reads "
                          f"(it is read only {where}): drop the key from the setting, or list presets that read it")
    raise ConfigError(f"--setting '{name}' sets distill.{key}, which preset {preset} (from --presets) does not read "
                      f"(it is read only {where}): its {preset} row would be the plain {preset} run. Compare {preset} "
                      "in a comparison of its own, or drop the key from the setting")


def _keys_set_by(override: str) -> set[str]:
    """The dotted keys ``KEY=VALUE`` sets: KEY, and those inside a mapping value
    (``distill={preset: ml}`` sets distill.preset). Read before the overrides are checked (a
    value that is not YAML is said later, by ``applied_keys``, naming its setting)."""
    key, _, raw = override.partition("=")
    try:
        value = yaml_value(raw)
    except yaml.YAMLError:  # said by applied_keys, with the override
        value = None
    keys, todo = set(), [(key.strip(), value)]
    while todo:
        name, value = todo.pop()
        keys.add(name)
        if isinstance(value, dict):
            todo += [(f"{name}.{k}", v) for k, v in value.items()]
    return keys


def setting_tree(tree: dict[str, Any], preset: str, seed: int | None, name: str | None,
                  directory: Path | None) -> dict[str, Any]:
    """The config of one run of a setting (``None`` keeps the config's own value), under
    ``preset`` (``under_preset``)."""
    out = copy.deepcopy(tree)
    own = _preset_of(tree)
    if own is None:  # no mapping: validation names it
        return out
    out["distill"] = {**(out.get("distill") or {}), "preset": preset}
    if own != preset:
        out["distill"]["edges"] = None
        out["distill"] = under_preset(tree, out)
    for key, value in (("seed", seed), ("name", name), ("out_dir", str(directory) if directory else None)):
        if value is not None:
            out[key] = value
    return out


def _preset_of(tree: dict[str, Any]) -> str | None:
    """The preset a tree's distill section names (None where the section is no mapping, for
    validation to refuse)."""
    distill = tree.get("distill") or {}
    if not isinstance(distill, dict):
        return None
    return distill.get("preset") or DistillSpec.model_fields["preset"].default  # (null: the default)


def under_preset(before: dict[str, Any], after: dict[str, Any], kept: set[str] = frozenset()) -> dict[str, Any]:
    """``after``'s distill section, ``before`` moved to another preset: without the keys the old
    preset read and the new one does not (alpha under ml, gamma under kd; a preset without a
    teacher, the weights of terms from the teachers; custom's edges), so one config compares
    every preset. Keys neither preset reads stay, to be refused as train refuses them, and so do
    ``kept`` (keys the user set for this setting)."""
    distill = dict(after.get("distill") or {})
    old, new = _preset_of(before), _preset_of(after)
    dropped = set(_unread_under_preset(after, distill)) - set(_unread_under_preset(before, before.get("distill") or {}))
    if old in TEACHER_PRESETS and new not in TEACHER_PRESETS:
        dropped |= set(TEACHER_TERM_WEIGHTS)
    if old == "custom" and new != "custom":
        dropped.add("edges")  # read by custom alone
    return {key: value for key, value in distill.items() if key not in dropped - kept}


def _unread_under_preset(tree: dict[str, Any], distill: dict[str, Any]) -> dict[str, str]:
    """The distill keys of a config that its run under ``distill``'s preset would not read, each
    with where it is read."""
    try:
        spec = DistillSpec.model_validate(distill)
    except ValidationError:  # the run's validation says what is wrong
        return {}
    models = [tree.get("teacher"), *(tree.get("teachers") or []), *(tree.get("students") or [])]
    teachers = (tree.get("teacher") is not None) + len(tree.get("teachers") or [])
    heads = any(isinstance(m, dict) and m.get("heads") for m in models)
    return unread_distill_keys(spec, teachers, heads)
