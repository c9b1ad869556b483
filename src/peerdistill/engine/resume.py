"""The resume checkpoint: models, optimizers, schedulers, random states, history.

Written atomically with ``torch.save`` and read back with ``weights_only=True``, so a
tampered file cannot run code."""

from __future__ import annotations

import io
import random
import pickle
import shlex
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, PeerdistillError
from ..launcher import launched
from ..run_files import CONFIG_FILE
from .artifacts import atomic_write_bytes
from .state_files import failing_zip_member, load_tensors, rejected_object


def save_resume_state(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def start_again(run_dir: Path) -> str:
    """How to train a run from the start in its own folder: its saved config with --overwrite
    (a bare ``train --overwrite`` trains the embedded default, into another folder, review 51f);
    a run built in Python has no config to name."""
    from ..config import load_config

    run_dir = Path(run_dir).resolve()  # (given as '.' or '..', its name would be empty or '..': review 51m)
    config = run_dir / CONFIG_FILE
    if not config.is_file():
        return "start the run again (train it with overwrite)"
    # its folder named whole: a relative out_dir counts from where training ran, and the folder may
    # not bear the config's name (moved, or chosen in Python: review 51k)
    place = [f"out_dir={run_dir.parent}", f"name={run_dir.name}"]
    command = " ".join(shlex.quote(part) for part in ["peerdistill", "train", str(config), *place, "--overwrite"])
    if launched():  # (as it was started: review 56c)
        command = f"torchrun ... -m {command}"
    try:
        load_config(config, place)
    except (PeerdistillError, OSError):  # (an earlier version's config, with keys now refused)
        return (f"start the run again ({command}, once its config.yaml holds none of the keys that command "
                "names as not read: an earlier version accepted them)")
    return f"start the run again ({command})"


def load_resume_state(path: Path, started_again_by_train: bool = False) -> dict[str, Any]:
    """``started_again_by_train``: the run kept nothing, so the same ``train`` command without
    --resume starts it again (what the message says to do when there is no checkpoint)."""
    if not path.is_file():
        again = ("the same train command, without --resume, starts it again" if started_again_by_train
                 else start_again(path.parent.parent))
        raise CheckpointError(f"no resume checkpoint at '{path}': the run stopped before its first checkpoint, or the "
                              f"file was moved or deleted since; {again}")
    with path.open("rb") as file:  # (review 52c: text read as a pickle named a fragment of it, or a traceback)
        begins = file.read(4)
    if not begins:  # (review 52j: an empty file read as one of another kind)
        raise _unreadable(path, "it is empty")
    if begins != b"PK\x03\x04":  # (a zip cut short still begins as one: torch names what is missing, review 52i)
        raise _unreadable(path, "it is not the zip archive torch saves a checkpoint as")
    damaged = failing_zip_member(path)
    if damaged:
        raise _unreadable(path, f"its part '{damaged}' differs from what was written: its CRC-32 fails")
    try:
        return load_tensors(path)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # a named object that is not a tensor: not written by peerdistill
            raise CheckpointError(f"resume checkpoint '{path}' holds more than tensors ({rejected_object(exc)}), "
                                  "which cannot be loaded safely: peerdistill never writes such a file, so it was "
                                  f"replaced; {start_again(path.parent.parent)}") from None
        raise _unreadable(path, rejected_object(exc)) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError, IndexError) as exc:
        # A truncated zip surfaces as any of these, depending on where it was cut.
        raise _unreadable(path, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None


def _unreadable(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"cannot read resume checkpoint '{path}' ({reason.rstrip('.')}): it is truncated or "
                           f"corrupt, so the run cannot be continued; {start_again(path.parent.parent)}")


def capture_rng_states(data_generator: torch.Generator) -> dict[str, Any]:
    """Every random state a run draws from, in types ``weights_only`` loading accepts."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data": data_generator.get_state(),
        "python": [version, list(internal), gauss],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }


def restore_rng_states(rng: dict[str, Any], data_generator: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        # A run resumed on a machine with fewer GPUs restores the ones it has.
        for index, state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)
    data_generator.set_state(rng["data"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    n = rng["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
