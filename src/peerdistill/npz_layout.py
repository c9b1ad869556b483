"""How an .npz archive lays out its data, told from its list of arrays alone (numpy only: read
before torch is imported, by eval's handling of its arguments)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

# A MedMNIST-style archive of its own three splits.
NPZ_KEYS = tuple(f"{split}_{part}" for split in ("train", "val", "test") for part in ("images", "labels"))

# What np.load and reading an array of a damaged or odd archive raise: a broken zip, a damaged
# compressed member (zlib), a cut-off file, an object array (pickles are not loaded).
NPZ_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError)


def one_set(keys: list[str]) -> bool:
    """An archive of one labelled set (``images``, ``labels``) and no split of its own."""
    return "images" in keys and "labels" in keys and not any(k in keys for k in NPZ_KEYS)


def npz_holds_one_set(path: str | Path | None) -> bool | None:
    """Whether the archive at ``path`` is one set of images and labels (to cut) rather than its
    own splits; None where it cannot be read (its loader says why)."""
    try:
        with np.load(Path(path or ""), allow_pickle=False) as archive:
            return one_set(list(archive.files))
    except (*NPZ_READ_ERRORS, TypeError):
        return None
