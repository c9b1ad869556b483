"""What counts as a number in what peerdistill is given or reads back: Python's bool is an int,
and JSON reads NaN and Infinity, so neither check is ``isinstance(value, (int, float))``."""

from __future__ import annotations

import math
import statistics
from typing import Any


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value: Any) -> bool:
    """A whole number, 0 or more."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def mean_and_sample_std(values: list[float]) -> tuple[float, float]:
    """The mean and sample standard deviation (NaN for one value) of numbers, none NaN. Exact
    (Python's statistics, in fractions) when all are finite, so that equal values give a std
    of 0, not a rounding residue like 1e-17; else as floats (an infinite mean, a NaN std)."""
    values = [float(v) for v in values]  # (numpy scalars too: statistics takes Python numbers)
    if not values:
        return math.nan, math.nan
    if all(math.isfinite(v) for v in values):
        mean = float(statistics.mean(values))  # (finite: it lies between the values)
        if len(values) < 2:
            return mean, math.nan
        try:
            return mean, float(statistics.stdev(values))
        except OverflowError:  # a spread past the largest float
            return mean, math.inf
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) * (v - mean) for v in values) / (len(values) - 1))  # (** raises past the largest float)
