"""Seeds and the deterministic switch."""

from __future__ import annotations

import numbers
import os
import random
import sys

import numpy as np
import torch

from ..arguments import check_flags
from ..config import SEED_LIMIT
from ..errors import ConfigError


_last_call: tuple[int, bool] = (0, False)  # what a Trainer given no seed takes


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices). With ``deterministic`` torch refuses
    non-deterministic kernels, so the same config and seed give the same numbers. A
    ``Trainer`` built without ``seed=`` / ``deterministic=`` takes this call's values."""
    global _last_call
    check_seed(seed)
    check_flags("seed_everything", deterministic=deterministic)
    _last_call = (int(seed), bool(deterministic))
    apply_seed(int(seed), deterministic)


def check_seed(seed) -> None:
    """A seed as a config takes it: a whole number in NumPy's range (a larger one would repeat
    a smaller one's run)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"seed {seed!r}: give a whole number in 0..{SEED_LIMIT - 1}")


def apply_seed(seed: int, deterministic: bool = False) -> None:
    """``seed_everything`` without remembering the call: what a Trainer does with its own seed
    (a later Trainer given no seed takes the user's last call, not an earlier run's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif torch.are_deterministic_algorithms_enabled() or "torch._inductor.config" in sys.modules:
        # only when needed: the call imports torch's compiler, seconds at every start
        torch.use_deterministic_algorithms(False)


def last_seeding() -> tuple[int, bool]:
    """The seed and deterministic switch of the last ``seed_everything`` call ((0, False) before any)."""
    return _last_call
