"""Digests of input rows: which scored inputs are images a run trained on.

A test split holding training images, or "other" data that is the run's training data saved
anew (another archive, another file name), gives figures that are not held out. Files are
traced by name elsewhere; these digests compare the inputs themselves, as the models get them
(read, resized and standardised), so re-saved arrays are found whatever their file. A run
trained from in-memory splits keeps one 8-byte digest per training input in
``train_digests.json`` (about 11 bytes a row as base64: 50 KB for PneumoniaMNIST's 4,708).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from pathlib import Path

import torch

DIGEST_SIZE = 8
DIGESTS_FILE = "train_digests.json"
_WHAT = "blake2b, 8 bytes, of each training input as the models get it (float32, standardised)"
FORMAT = 1  # a new digest (size, hash, what is hashed) is a new format: older records then read as unknown


CHUNK_ROWS = 1024  # rows copied to host memory at a time: the peak stays small for a set on the GPU


def row_digests(x: torch.Tensor) -> list[bytes]:
    """One digest per row of ``x``: its values' bytes in row-major order, whatever the tensor's
    device, dtype or memory layout (float32 rows of equal values match)."""
    digests = []
    for start in range(0, len(x), CHUNK_ROWS):
        chunk = x[start:start + CHUNK_ROWS].detach().to("cpu").contiguous()
        rows = chunk.reshape(len(chunk), -1).view(torch.uint8).numpy()
        digests += [hashlib.blake2b(memoryview(row), digest_size=DIGEST_SIZE).digest() for row in rows]
    return digests


def count_seen(x: torch.Tensor, seen: set[bytes]) -> int:
    """How many rows of ``x`` have a digest in ``seen``."""
    return len(seen_rows(x, seen))


def seen_rows(x: torch.Tensor, seen: set[bytes]) -> list[int]:
    """The rows of ``x`` whose digest is in ``seen``."""
    return [i for i, d in enumerate(row_digests(x)) if d in seen] if seen and len(x) else []


def digests_record(x: torch.Tensor, digests: list[bytes] | None = None) -> dict:
    """What ``train_digests.json`` holds for training inputs ``x`` (``format``: what readers
    check); ``digests``: ``row_digests(x)`` when computed already."""
    digests = row_digests(x) if digests is None else digests
    return {"format": FORMAT, "what": _WHAT, "rows": len(x), "shape": list(x.shape[1:]),
            "digests": base64.b64encode(b"".join(digests)).decode("ascii")}


def read_digests(record: object) -> set[bytes] | None:
    """The digests of a ``train_digests.json`` record, or None when it is not one (damaged or
    hand-edited: the caller says so)."""
    if not isinstance(record, dict) or not isinstance(record.get("digests"), str) or record.get("format") != FORMAT:
        return None
    try:
        raw = base64.b64decode(record["digests"], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) % DIGEST_SIZE or len(raw) // DIGEST_SIZE != record.get("rows"):
        return None
    return {raw[i:i + DIGEST_SIZE] for i in range(0, len(raw), DIGEST_SIZE)}


def digests_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / DIGESTS_FILE


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, state: tuple[int, ...]) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def file_sha256(path: str | Path) -> str:
    """A file's SHA-256 (an archive's, a checkpoint's, an exported graph's), read once while it
    stays the same file (a comparison asks of one archive for every run). The same file: its
    size, its times and its inode; the change time among them, which copying a file with its
    times kept (``cp -p``) still sets and no one can set back."""
    stat = Path(path).stat()
    state = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)
    return _sha256_of(str(Path(path).resolve()), state)
