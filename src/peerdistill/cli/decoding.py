"""``detect.KEY=VALUE`` on the command line of eval, predict and export: how a detector's boxes
are decoded and fused (no retraining needed), checked as a config's ``detect`` section is."""

from __future__ import annotations


from ..config import apply_overrides
from ..config.decoding import checked_decoding
from .words import names_anything

PREFIX = "detect."


def is_decoding(argument: str) -> bool:
    """``detect.KEY=VALUE``, not a file of that name."""
    return argument.startswith(PREFIX) and "=" in argument and not names_anything(argument)


def decoding_from(overrides: list[str], command: str) -> dict | None:
    """The decoding settings given (None: the run's own); a key that is not one of them, or a
    value the detect section refuses, is a ConfigError naming it."""
    tree: dict = {}
    apply_overrides(tree, list(overrides))
    given = tree.get("detect") or {}
    if not given:
        return None
    return checked_decoding(given, command)
