"""Every file of a set tried before stopping: a folder with several damaged files is named
whole in one message, rather than one file per attempt (a PACS export or a half-finished copy
seldom holds just one)."""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from ..errors import DataError

Item = TypeVar("Item")
Result = TypeVar("Result")

SHOWN = 8  # failures spelt out in one message; the rest are counted


def read_each(items: Sequence[Item], read: Callable[[Item], Result], what: str = "images") -> list[Result]:
    """``read`` applied to each item in turn; where it raises a DataError for some, every item is
    still tried, and one DataError names them all (one failure alone: its own message)."""
    results, failed = [], []
    for item in items:
        try:
            results.append(read(item))
        except DataError as exc:
            failed.append(exc)
    if failed:
        raise failures_error(failed, len(items), what)
    return results


def failures_error(failed: Sequence[DataError], total: int, what: str, advice: str = "") -> DataError:
    """One error for files that could not be read: each failure's own message (they name their
    file and how to mend it) on a line of its own, ``SHOWN`` of them, then ``advice``."""
    if len(failed) == 1:
        return DataError(f"{failed[0]}{advice}")
    lines = [f"  - {exc}" for exc in failed[:SHOWN]]
    if len(failed) > SHOWN:
        lines.append(f"  - and {len(failed) - SHOWN} more")
    return DataError(f"{len(failed)} of {total} {what} cannot be read:\n" + "\n".join(lines) + advice)
