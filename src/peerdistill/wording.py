"""How peerdistill's messages word what they list."""

from __future__ import annotations

from collections.abc import Sequence


def first_few(items: Sequence[object], limit: int = 3, quoted: bool = False) -> str:
    """The first ``limit`` items, comma-separated (in quotes with ``quoted``), and ``...`` when
    there are more: a message names a few of many, not a wall of them."""
    shown = [f"'{item}'" if quoted else str(item) for item in items[:limit]]
    return ", ".join(shown + (["..."] if len(items) > limit else []))
