"""A detector's box decoding and fusion settings given after training (eval, predict, export:
``detect.KEY=VALUE``, or ``decoding=`` in Python), checked as a config's ``detect`` section is."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from .messages import format_validation_error
from .training_spec import DECODING_KEYS, DetectSpec


def checked_decoding(given: dict[str, Any], command: str) -> dict[str, Any]:
    """``given`` checked: keys among ``DECODING_KEYS`` (a training setting, or a key the detect
    section lacks, is named as such), values as the detect section takes them."""
    if "wbf_iou" in given:  # the former name, as configs still say it
        if "ensemble_iou" in given:
            raise ConfigError("detect.wbf_iou is the former name of detect.ensemble_iou: give one of them")
        given = {("ensemble_iou" if key == "wbf_iou" else key): value for key, value in given.items()}
    other = [key for key in given if key not in DECODING_KEYS]
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
