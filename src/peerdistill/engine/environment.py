"""What a run's figures depend on beyond its config: the versions, the device and the number of
threads it trained with (run.json's ``environment``). A run repeats bit for bit only where these
are the same (review 51d: one thread against two changed a student's test accuracy in the third
decimal), so they are recorded rather than left to memory."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

# Keys whose change between sessions of one run is worth a note (resumed_at) or a comparison's
# caveat: all but the platform string, which names a kernel build as well.
DEPENDS_ON = ("peerdistill", "source", "python", "torch", "numpy", "device", "threads")


def environment(device: torch.device) -> dict[str, object]:
    from .. import __version__

    return {"peerdistill": __version__, "source": source_commit(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "device": device_name(device),
            "threads": torch.get_num_threads(), "platform": platform.platform()}


def session_environments(meta: dict) -> list[dict]:
    """A run's environments session by session (run.json's ``environment``, then each resume's
    changes; a run an earlier version began has none until its first resume records all)."""
    sessions = [meta.get("environment")] + [s.get("environment") for s in meta.get("resumed_at") or []
                                            if isinstance(s, dict)]
    return [env for env in sessions if isinstance(env, dict)]


def device_name(device: torch.device) -> str:
    """``cpu``, or the accelerator with its model (``cuda: NVIDIA H100 80GB HBM3``)."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return device.type


@functools.cache
def source_commit() -> str | None:
    """The git commit peerdistill runs from (``-dirty`` with uncommitted changes) where it runs
    from a clone, as developers and an editable install do; None for an installed release, whose
    version names its code."""
    package = Path(__file__).resolve().parents[1]
    if not any((folder / ".git").exists() for folder in package.parents):
        return None
    top = _git(package, "rev-parse", "--show-toplevel")
    # (installed inside a project of the user's own, a virtual environment in its clone: that
    # clone's commit is not peerdistill's)
    if top is None or Path(top).resolve() / "src" / "peerdistill" != package:
        return None
    return _git(package, "describe", "--always", "--dirty", "--abbrev=12")


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # (no git here: the version alone)
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None
