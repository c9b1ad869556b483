"""Training, evaluation and run artifacts."""

from __future__ import annotations

import importlib as _importlib
import sys as _sys
import types as _types
from typing import TYPE_CHECKING

# Imported on first use, as in the package above (torch comes with each): importing a module of
# the engine that needs no torch (run_lock) does not import the trainer. The module of each name:
_ON_FIRST_USE = {
    "RunDir": ".artifacts", "load_weights": ".artifacts", "save_weights": ".artifacts",
    "ENSEMBLE": ".evaluate", "evaluate": ".evaluate", "predict": ".evaluate",
    "seed_everything": ".seeding",
    "FitResult": ".trainer", "Trainer": ".trainer",
}

__all__ = ["ENSEMBLE", "FitResult", "RunDir", "Trainer", "evaluate", "load_weights", "predict", "save_weights",
           "seed_everything"]

if TYPE_CHECKING:  # what type checkers and editors see (keep in step with _ON_FIRST_USE)
    from .artifacts import RunDir, load_weights, save_weights
    from .evaluate import ENSEMBLE, evaluate, predict
    from .seeding import seed_everything
    from .trainer import FitResult, Trainer


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        value = getattr(_importlib.import_module(_ON_FIRST_USE[name], __name__), name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_ON_FIRST_USE})


class _Engine(_types.ModuleType):
    """``engine.evaluate`` is the function, as it was when this package imported it eagerly:
    importing the module ``engine/evaluate.py`` (the trainer does) would otherwise bind the name
    to the module, and ``from peerdistill.engine import evaluate`` would get the module."""

    def __setattr__(self, name: str, value) -> None:
        if name == "evaluate" and isinstance(value, _types.ModuleType):
            return  # (the module stays in sys.modules, where imports of it find it)
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Engine
