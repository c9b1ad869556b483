"""How much a setting differs from a baseline, paired run by run, with a confidence interval.

Settings of one comparison run the same seeds (and folds), so run i of one setting and run i of
the baseline share the data split and the seed: their difference removes what the split and
the seed contribute, and the spread of the differences is what is left to judge. The interval is
Student's t over those differences; three seeds give a wide one, which is the honest answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .metrics import LOWER_IS_BETTER, NO_DIRECTION

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Difference:
    """A setting minus the baseline, over the pairs where both gave a number."""

    mean: float
    low: float  # the 95% interval of the mean difference (NaN with fewer than two pairs)
    high: float
    pairs: int
    better: int | None  # pairs where the setting beat the baseline (per the metric's direction; None: it has none)

    def cell(self) -> str:
        """``+0.0123 [-0.0040, +0.0286] 3/3 better``; the sign is the setting minus the baseline."""
        if not self.pairs:
            return "n/a"
        interval = "" if math.isnan(self.low) else f" [{self.low:+.4f}, {self.high:+.4f}]"
        wins = "" if self.better is None else f" {self.better}/{self.pairs} better"
        return f"{self.mean:+.4f}{interval}{wins}"


def paired_difference(values: list[float], baseline: list[float], metric: str) -> Difference:
    """``values`` minus ``baseline`` pair by pair (same position: same seed and fold); pairs
    where either is NaN are left out. ``better`` counts the pairs that moved the way
    ``metric`` improves (down for HD95, ECE and Brier; None for a threshold or temperature)."""
    if len(values) != len(baseline):
        raise ValueError(f"paired runs differ in number: {len(values)} against {len(baseline)}")
    diffs = [v - b for v, b in zip(values, baseline) if not (math.isnan(v) or math.isnan(b))]
    n = len(diffs)
    if not n:
        return Difference(math.nan, math.nan, math.nan, 0, None if metric in NO_DIRECTION else 0)
    mean = sum(diffs) / n
    sign = -1 if metric in LOWER_IS_BETTER else 1
    better = None if metric in NO_DIRECTION else sum(sign * d > 0 for d in diffs)
    if n < 2:
        return Difference(mean, math.nan, math.nan, n, better)
    from scipy.stats import t

    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    return Difference(mean, mean - half, mean + half, n, better)


def default_baseline(settings: list[str]) -> str:
    """``independent`` (labels only) when it was compared, else the first setting."""
    return next((s for s in settings if s == "independent"), settings[0])


def differences(rows: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """For every other setting, model and metric that the baseline also has: the paired
    difference. ``rows`` are a comparison's (``compare.aggregate``, or compare.csv read back):
    their ``values`` are in run order, seed by seed (and fold by fold), the same for every
    setting of one comparison."""
    base = {(r["model"], r["metric"]): r["values"] for r in rows if r["setting"] == baseline}
    out = []
    for r in rows:
        paired = base.get((r["model"], r["metric"]))
        if r["setting"] == baseline or paired is None or len(paired) != len(r["values"]):
            continue
        out.append({"setting": r["setting"], "baseline": baseline, "model": r["model"], "metric": r["metric"],
                    "difference": paired_difference(r["values"], paired, r["metric"])})
    return out


def difference_rows(diffs: list[dict[str, Any]], settings: list[str], models: list[str],
                    metric: str) -> list[list[str]]:
    """A row per setting (the baseline left out): its difference cell per model for ``metric``."""
    index = {(d["setting"], d["model"]): d["difference"] for d in diffs if d["metric"] == metric}
    compared = [s for s in settings if any(key[0] == s for key in index)]
    return [[s] + [index[s, m].cell() if (s, m) in index else "" for m in models] for s in compared]


def caption(baseline: str, metric: str, runs: int, folds: bool) -> str:
    pairs = "seed and fold" if folds else "seed"
    text = (f"Paired differences from `{baseline}`, test {metric}: each setting's run minus the `{baseline}` run "
            f"of the same {pairs} ({runs} pairs at most), mean [{CONFIDENCE:.0%} confidence interval, "
            "Student's t over the pairs], and in how many pairs the setting was better. An interval "
            "holding 0 does not tell the two apart.")
    if folds:
        text += (" Folds of one seed share most of their training data, so their differences are not "
                 "independent and the interval is narrower than it should be.")
    return text
