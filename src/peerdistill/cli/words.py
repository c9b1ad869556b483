"""Whether a command-line word names something on disk. An override's text can be longer than a
file name may be, and Python 3.11's ``Path.exists``/``is_file`` raise for such a name instead of
answering no (review 55j: a long override refused as 'File name too long')."""

from __future__ import annotations

from pathlib import Path


def names_a_file(word: str) -> bool:
    try:
        return Path(word).is_file()
    except OSError:  # (a name past 255 bytes, or one the system refuses: no file of it)
        return False


def names_anything(word: str) -> bool:
    try:
        return Path(word).exists()
    except OSError:
        return False
