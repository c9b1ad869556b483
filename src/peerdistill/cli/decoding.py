"""``detect.KEY=VALUE`` on the command line of eval, predict and export: how a detector's boxes
are decoded and fused (no retraining needed), checked as a config's ``detect`` section is."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ..config import DECODING_KEYS, DetectSpec, apply_overrides, format_validation_error
from ..errors import ConfigError

PREFIX = "detect."


def is_decoding(argument: str) -> bool:
    """``detect.KEY=VALUE``, not a file of that name."""
    return argument.startswith(PREFIX) and "=" in argument and not Path(argument).exists()


def decoding_from(overrides: list[str], command: str) -> dict | None:
    """The decoding settings given (None: the run's own); a key that is not one of them, or a
    value the detect section refuses, is a ConfigError naming it."""
    tree: dict = {}
    apply_overrides(tree, list(overrides))
    given = tree.get("detect") or {}
    if not given:
        return None
    if "wbf_iou" in given:  # the former name, as configs still say it
        if "ensemble_iou" in given:
            raise ConfigError("detect.wbf_iou is the former name of detect.ensemble_iou: give one of them")
        given["ensemble_iou"] = given.pop("wbf_iou")
    other = [k for k in given if k not in DECODING_KEYS]
    if other:
        known = DetectSpec.model_fields
        why = ("training settings need a new run" if other[0] in known else
               f"no such key (the detect section has {', '.join(known)})")
        raise ConfigError(f"{command} takes the detect.* keys that decode and fuse boxes ({', '.join(DECODING_KEYS)}), "
                          f"not detect.{other[0]}: {why}")
    try:
        spec = DetectSpec.model_validate(given)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "detect section", DetectSpec)) from None
    return {key: getattr(spec, key) for key in given}
