"""Python-API arguments checked where their type hints cannot check them.

A flag given as ``"no"`` or ``"false"`` is truthy, and would do the opposite of what was meant
in silence (a teacher frozen, a finished run trained over); a callback that is not callable, or a
path that is a number, fails only deep inside, after an epoch's training. The configs' values are
checked by their pydantic sections; these are the Python callers'.
"""

from __future__ import annotations

import inspect
import operator
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .values import is_finite_number


def check_flags(where: str, **flags: Any) -> None:
    """Each flag must be True or False: a bool of Python, numpy or a 0-d tensor, or a whole number 0
    or 1 (a caller keeping one keeps ``bool(flag)``)."""
    for name, value in flags.items():
        if not (_is_bool(value) or whole_number(value) in (0, 1)):
            raise ConfigError(f"{where}: {name} must be True or False, got {value!r}")


def check_optional_flags(where: str, **flags: Any) -> None:
    """Each flag must be True, False or None (its default decided elsewhere)."""
    check_flags(where, **{name: value for name, value in flags.items() if value is not None})


def check_callbacks(callbacks: Any) -> list[Callable]:
    """A list of callables, called as ``callback(epoch, row)`` after each epoch."""
    if callbacks is None:
        return []
    if callable(callbacks) or isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise ConfigError(f"callbacks= takes a list of functions called as f(epoch, metrics) after each epoch, got "
                          f"{callbacks!r}{': put it in a list, [f]' if callable(callbacks) else ''}")
    callbacks = list(callbacks)
    for callback in callbacks:
        if not callable(callback):
            raise ConfigError(f"callbacks= holds {callback!r}, which cannot be called: give functions called as "
                              "f(epoch, metrics) after each epoch")
        try:  # (else it failed only after the first epoch had trained)
            inspect.signature(callback).bind(0, {})
        except TypeError:
            raise ConfigError(f"callbacks= holds {getattr(callback, '__name__', callback)!r}, which cannot be called "
                              "as f(epoch, metrics), with the epoch (from 0) and that epoch's row of figures: give it "
                              "those two parameters") from None
        except ValueError:  # a callable without a signature to read (some built-ins): called as given
            pass
    return callbacks


def check_path(name: str, value: Any) -> Path:
    """A folder or file given as a string or a path."""
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name}= takes a path (a string or a pathlib.Path), got {value!r}")
    return Path(value)


def check_positive(where: str, **numbers: Any) -> None:
    """Each number must be finite and above 0."""
    for name, value in numbers.items():
        if not _finite_number(value) or value <= 0:
            raise ConfigError(f"{where}: {name} must be a number above 0, got {value!r}")


def check_not_negative(where: str, **numbers: Any) -> None:
    """Each number must be finite and 0 or more."""
    for name, value in numbers.items():
        if not _finite_number(value) or value < 0:
            raise ConfigError(f"{where}: {name} must be a number, 0 or more, got {value!r}")


def _finite_number(value: Any) -> bool:
    """``values.is_finite_number``, numpy scalars taken as the Python numbers they hold."""
    return is_finite_number(value.item() if isinstance(value, np.number) else value)


def whole_number(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (a numpy integer, a 0-d integer tensor:
    ``labels.max() + 1``), else None; a bool is no count."""
    if _is_bool(value):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _is_bool(value: Any) -> bool:
    """A bool of Python or numpy, or a one-element boolean array or tensor."""
    return isinstance(value, (bool, np.bool_)) or (str(getattr(value, "dtype", "")) in ("bool", "torch.bool")
                                                   and getattr(value, "ndim", 1) == 0)


def check_class_count(where: str, count: Any, least: int) -> int:
    """A task's number of classes: a whole number, ``least`` or more; returned as an int."""
    whole = whole_number(count)
    if whole is None or whole < least:
        raise ConfigError(f"{where}: num_classes must be a whole number, {least} or more, got {count!r}")
    return whole


def check_modules(modules: Any) -> None:
    """``modules=`` of the functions reading a run back: its Python-built models by name."""
    if modules is None:
        return
    from torch import nn  # (this module itself leaves torch out: the command line reads it early)

    fix = "{'student1': Net(), ...}: new instances, as built for training"
    if not isinstance(modules, (Mapping, nn.ModuleDict)):
        raise ConfigError(f"modules= takes the run's Python-built models by name, {fix}; got a "
                          f"{type(modules).__name__}")
    for name, module in modules.items():
        if not isinstance(module, nn.Module):
            raise ConfigError(f"modules['{name}'] is a {type(module).__name__}, not a torch.nn.Module: give the "
                              f"run's Python-built models by name, {fix}")
