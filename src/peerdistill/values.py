"""What counts as a number in what peerdistill is given or reads back: Python's bool is an int,
and JSON reads NaN and Infinity, so neither check is ``isinstance(value, (int, float))``."""

from __future__ import annotations

import math
from typing import Any


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value: Any) -> bool:
    """A whole number, 0 or more."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
