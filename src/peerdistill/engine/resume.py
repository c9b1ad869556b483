"""The resume checkpoint: models, optimizers, schedulers, random states, history.

Written atomically with ``torch.save`` and read back with ``weights_only=True``, so a
tampered file cannot run code."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .artifacts import atomic_write_bytes


def save_resume_state(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_resume_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no resume checkpoint at '{path}': the run stopped before its first epoch ended")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read resume checkpoint '{path}': {first_line}. It is truncated or corrupt") from None
