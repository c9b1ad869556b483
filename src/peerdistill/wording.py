"""How peerdistill's messages word what they list."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


def first_few(items: Sequence[object], limit: int = 3, quoted: bool = False) -> str:
    """The first ``limit`` items, comma-separated (in quotes with ``quoted``), and ``...`` when
    there are more: a message names a few of many, not a wall of them."""
    shown = [f"'{item}'" if quoted else str(item) for item in items[:limit]]
    return ", ".join(shown + (["..."] if len(items) > limit else []))


def joined(items: Sequence[object]) -> str:
    """``a``, ``a and b``, ``a, b and c``: names in running text."""
    words = [str(item) for item in items]
    return " and ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} and {words[-1]}"


def shell_word(path: object) -> str:
    """A path as one word a shell reads back: quoted where it must be, and a relative one that
    starts with '-' led by './' (else read as an option: review 56m)."""
    import shlex

    text = str(path)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)


def nearest_name(name: str, names: Sequence[str], cutoff: float = 0.6) -> str | None:
    """The one of ``names`` that ``name`` most likely meant, as spelt there: one the same but for
    case, else the closest by spelling (difflib's ratio, case ignored, at least ``cutoff``), else
    None. The rule of every "did you mean" for a name that must match exactly."""
    folded = name.casefold()
    by_fold: dict[str, str] = {}
    for candidate in names:
        by_fold.setdefault(candidate.casefold(), candidate)  # (the first spelling of names alike but for case)
    if folded in by_fold:
        return by_fold[folded]
    close = difflib.get_close_matches(folded, list(by_fold), n=1, cutoff=cutoff)
    return by_fold[close[0]] if close else None
