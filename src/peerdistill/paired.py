"""How much a setting differs from a baseline, paired run by run, with a confidence interval.

Settings of one comparison run the same seeds (and folds): a setting's run of seed s (and fold
k) and the baseline's share the data split and the seed, so their difference removes what the
split and the seed contribute, and the spread of the differences is what is left to judge. Runs
are paired by the seed and fold in their names; settings on another data split are left out
(``compare`` knows which). The interval is Student's t over the differences; three seeds give a
wide one, which is the honest answer. Cross-validated comparisons pair folds: every seed runs
the same K folds (``data.split_seed`` cuts them), so a fold's runs share their test split and
are averaged over the seeds first, and the K fold means are the pairs; each fold trains on the
others' test images (and past two folds, on much of the same data), so their differences are
not independent either, and the variance of the
mean is widened from ``s^2 / K`` to ``s^2 (1 / K + 1 / (K - 1))`` (the corrected resampled t of
Nadeau & Bengio 2003; 1 / (K - 1) is a fold's test share over the rest, and the training split
is smaller still by the validation cut from it, so the correction is if anything too small).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RunDirError
from .metrics import NOT_PAIRED_WHY, has_direction, headed, lower_is_better, unpaired_metric
from .values import mean_and_sample_std

CONFIDENCE = 0.95
ALIKE = 1e-9  # differences whose spread is below this share of their size are one difference, rounded


@dataclass(frozen=True)
class Difference:
    """A setting minus the baseline, over the pairs where both gave a number."""

    mean: float
    low: float  # the 95% interval of the mean difference (NaN with fewer than two pairs, or pairs all alike)
    high: float
    pairs: int
    better: int | None  # pairs where the setting beat the baseline (per the metric's direction; None: it has none)
    tied: int = 0  # pairs of equal values (an accuracy on a small split often is): neither better nor worse

    def cell(self) -> str:
        """``+0.0123 [-0.0040, +0.0286] 3/3 better`` (``, 1 tied`` when some pairs are equal); the
        sign is the setting minus the baseline."""
        if not self.pairs:
            return "n/a"
        if self.pairs > 1 and math.isinf(self.mean):  # (an HD95 where a mask was never found)
            interval = " [no interval: an infinite figure]"
        elif self.pairs > 1 and math.isnan(self.low) and self.mean == 0:  # a frozen teacher beside itself, say
            return f"{self.mean:+.4f} [the same figure in all {self.pairs} pairs]"
        elif self.pairs > 1 and math.isnan(self.low):
            interval = f" [no interval: the {self.pairs} pairs differ alike]"
        else:
            interval = "" if math.isnan(self.low) else f" [{self.low:+.4f}, {self.high:+.4f}]"
        wins = "" if self.better is None else f" {self.better}/{self.pairs} better"
        ties = f", {self.tied} tied" if self.better is not None and self.tied else ""
        return f"{self.mean:+.4f}{interval}{wins}{ties}"


def paired_difference(values: list[float], baseline: list[float], metric: str,
                      folds: int | None = None) -> Difference:
    """``values`` minus ``baseline`` pair by pair (same position: same seed and fold); pairs
    where either is NaN are left out. ``better`` counts the pairs that moved the way
    ``metric`` improves (down for HD95, ECE and Brier; None for a threshold or temperature).
    ``folds``: the pairs are the fold means of a ``folds``-fold cross-validation (the interval
    corrected for their shared training data, as the module says)."""
    if len(values) != len(baseline):
        raise ValueError(f"paired runs differ in number: {len(values)} against {len(baseline)}")
    diffs = [v - b for v, b in zip(values, baseline) if not (math.isnan(v) or math.isnan(b))]
    n = len(diffs)
    if not n:
        return Difference(math.nan, math.nan, math.nan, 0, 0 if has_direction(metric) else None)
    mean, sd = mean_and_sample_std(diffs)
    mean = 0.0 if abs(mean) < 1e-12 * max(1.0, *map(abs, diffs)) else mean  # (review 52d: a rounding's -0.0000)
    sign = -1 if lower_is_better(metric) else 1
    better = sum(sign * d > 0 for d in diffs) if has_direction(metric) else None
    tied = sum(d == 0 for d in diffs)
    if n < 2 or sd <= ALIKE * max(1.0, abs(mean)):
        # pairs all alike (one test sample apart each, on a small split; alike but for the
        # rounding of v - b) would give an interval of no width, as if the difference were
        # known exactly: none
        return Difference(mean, math.nan, math.nan, n, better, tied)
    from scipy.stats import t

    shared = 1 / (folds - 1) if folds else 0.0  # a fold's test share over its training share
    half = float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd * math.sqrt(1 / n + shared)
    return Difference(mean, mean - half, mean + half, n, better, tied)


def default_baseline(settings: list[str]) -> str:
    """``independent`` (labels only) when it was compared, else the first setting."""
    return next((s for s in settings if s == "independent"), settings[0])


RUN_KEY = re.compile(r"-seed(\d+)(?:-fold(\d+))?$")  # compare's run names: SETTING-seedS[-foldK]


def run_key(name: str) -> tuple[int, int | None] | None:
    """(seed, fold) of a compare run directory's name; None for another name."""
    match = RUN_KEY.search(name)
    return (int(match[1]), None if match[2] is None else int(match[2])) if match else None


def differences(rows: list[dict[str, Any]], baseline: str, among: set[str] | None = None,
                folds: int | None = None) -> list[dict[str, Any]]:
    """For every other setting (of ``among``, when given), model and metric that the baseline
    also has: the paired difference. ``rows`` are a comparison's (``compare.aggregate``): each
    value is paired with the baseline's value of the run with the same seed and fold, which the
    run names in ``runs`` give; ``folds``: the runs are a cross-validation's, whose pairs are
    fold means (the module says why). HD95 is left out (``unpaired_note``)."""
    base = {(r["model"], r["metric"]): _by_run(r) for r in rows if r["setting"] == baseline}
    out = []
    for r in rows:
        if unpaired_metric(r["metric"]):
            continue
        paired = base.get((r["model"], r["metric"]))
        if r["setting"] == baseline or paired is None or (among is not None and r["setting"] not in among):
            continue
        mine = _by_run(r)
        keys = [k for k in mine if k in paired]
        values, base_values = [mine[k] for k in keys], [paired[k] for k in keys]
        if folds:
            values, base_values = _fold_means(keys, values, base_values)
        if keys:
            out.append({"setting": r["setting"], "baseline": baseline, "model": r["model"], "metric": r["metric"],
                        "difference": paired_difference(values, base_values, r["metric"], folds), "folds": folds})
    return out


def _fold_means(keys: list[tuple[int, int | None]], values: list[float],
                baseline: list[float]) -> tuple[list[float], list[float]]:
    """Per fold, both sides' mean over the seeds where both gave a number (NaN where none did)."""
    by_fold: dict[int | None, list[tuple[float, float]]] = {}
    for (_, fold), v, b in zip(keys, values, baseline):
        both = by_fold.setdefault(fold, [])
        if not (math.isnan(v) or math.isnan(b)):
            both.append((v, b))
    means = [(sum(v for v, _ in both) / len(both), sum(b for _, b in both) / len(both)) if both
             else (math.nan, math.nan) for both in by_fold.values()]
    return [v for v, _ in means], [b for _, b in means]


def _by_run(row: dict[str, Any]) -> dict[tuple[int, int | None], float]:
    """A row's values keyed by their run's (seed, fold)."""
    return {key: value for name, value in zip(row.get("runs") or [], row["values"])
            if (key := run_key(name)) is not None}


CSV_COLUMNS = ("setting", "baseline", "model", "metric", "mean_difference", "ci95_low", "ci95_high", "pairs",
               "better", "tied", "folds")  # folds: K of a cross-validation's corrected fold-mean pairs, else empty


def differences_csv(diffs: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for d in diffs:
        x = d["difference"]
        writer.writerow([d["setting"], d["baseline"], d["model"], d["metric"], f"{x.mean:.6f}", f"{x.low:.6f}",
                         f"{x.high:.6f}", x.pairs, "" if x.better is None else x.better, x.tied, d.get("folds") or ""])
    return buf.getvalue()


def read_differences_csv(path: Path) -> list[dict[str, Any]]:
    """differences.csv as ``differences`` returns them. compare writes it only with differences
    in it, so a file without its columns or with a row that does not read is damaged: RunDirError."""
    damaged = f"'{path}' is damaged"
    advice = "run the same compare command again to write it anew (its runs are reused)"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = tuple(reader.fieldnames or ())
            # (without folds, or ties too: written by earlier versions, whose fold intervals were not corrected)
            if columns not in (CSV_COLUMNS, CSV_COLUMNS[:-1], CSV_COLUMNS[:-2]):
                raise RunDirError(f"{damaged}: it lacks compare's columns; {advice}")
            rows = []
            for r in reader:
                try:
                    rows.append({"setting": r["setting"], "baseline": r["baseline"], "model": r["model"],
                                 "metric": r["metric"],
                                 "difference": Difference(float(r["mean_difference"]), float(r["ci95_low"]),
                                                          float(r["ci95_high"]), int(r["pairs"]),
                                                          int(r["better"]) if r["better"] else None,
                                                          int(r.get("tied") or 0)),
                                 "folds": int(r["folds"]) if r.get("folds") else None,
                                 "corrected": "folds" in columns})
                except (TypeError, ValueError):
                    raise RunDirError(f"{damaged} at line {reader.line_num}; {advice}") from None
            return rows
    except UnicodeDecodeError:
        raise RunDirError(f"{damaged}: it is not UTF-8 text; {advice}") from None


def difference_rows(diffs: list[dict[str, Any]], settings: list[str], models: list[str],
                    metric: str) -> list[list[str]]:
    """A row per setting (the baseline left out): its difference cell per model for ``metric``."""
    index = {(d["setting"], d["model"]): d["difference"] for d in diffs if d["metric"] == metric}
    compared = [s for s in settings if any(key[0] == s for key in index)]
    return [[s] + [index[s, m].cell() if (s, m) in index else "" for m in models] for s in compared]


def unpaired_note(baseline: str, apart: list[str]) -> str:
    """Which settings have no paired differences, and why."""
    return (f"Left out, having no run of the same seed on the same data split as `{baseline}`: "
            f"{', '.join(f'`{s}`' for s in apart)}.")


def _at_most(pairs: int, what: str) -> str:
    return f"one {what}" if pairs == 1 else f"{pairs} {what}s at most"


def caption(baseline: str, metric: str, pairs: int, folds: int | None, apart: list[str] = (),
            corrected: bool = True) -> str:
    """``pairs``: how many there are at most (seeds; with ``folds``, the folds); ``corrected``:
    False for a cross-validation's differences written by an earlier version, whose pairs were
    its runs (``pairs`` then counts those)."""
    fold_means = folds and corrected
    if fold_means:
        what = (f"each setting's runs minus the `{baseline}` runs of the same fold on the same split, averaged "
                f"over the seeds fold by fold ({_at_most(pairs, 'fold pair')})")
    else:
        what = (f"each setting's run minus the `{baseline}` run of the same {'seed and fold' if folds else 'seed'} "
                f"on the same split ({_at_most(pairs, 'pair')})")
    text = (f"Paired differences from `{baseline}`, {headed(metric)}: {what}, mean [{CONFIDENCE:.0%} confidence "
            "interval, Student's t over the pairs], and in how many pairs the setting was better (and tied, "
            "when some were equal). An interval "
            "holding 0 does not tell the two apart. Each interval stands alone, unadjusted for the many shown "
            "(settings, models, metrics): some exclude 0 by chance alone, so judge by the one figure chosen "
            "before looking (such as the ensemble's or the best student's monitored metric).")
    if pairs == 1:
        text += " With one run per setting there is one pair: its difference alone, no interval."
    elif pairs == 2:
        text += " " + two_pairs_caveat(folds if fold_means else None)
    if apart:
        text += " " + unpaired_note(baseline, apart)
    if not has_direction(metric):  # (a threshold, a temperature: no test image scores them)
        text += (f" Each run's {metric} is chosen on its validation split: the differences compare what the "
                 "settings chose, not how well they score.")
    elif folds:
        text += " " + (FOLDS_CAVEAT if corrected else UNCORRECTED_FOLDS_CAVEAT)
    else:
        text += " " + ONE_TEST_SPLIT_CAVEAT
    return text


def metrics_not_paired_note(metrics: list[str]) -> str | None:
    """Why the figures of ``metrics`` have no paired differences (None where all have)."""
    left_out = [m for m in metrics if unpaired_metric(m)]
    if not left_out:
        return None
    return (f"{', '.join(left_out)} {'is' if len(left_out) == 1 else 'are'} left out of the paired differences: "
            f"{NOT_PAIRED_WHY}, and a model that misses the hardest images would look better for it (the `missed` "
            "column says how often each did)")


def two_pairs_caveat(folds: int | None) -> str:
    """Said under two pairs' differences, in compare.md and on the console alike: t with one
    degree of freedom is 12.7, and two folds' correction multiplies it by sqrt(3)."""
    width, why, more = ((22.0, "t with one degree of freedom, times the correction for folds", "more folds")
                        if folds else (12.7, "t with one degree of freedom", "more seeds"))
    return (f"With two pairs the interval is {width:g} standard errors wide on each side ({why}): it tells "
            f"little, and may reach past the metric's range; {more} give one that can.")


# Said under a comparison's differences without folds, in compare.md and on the console alike.
# Review 45c: with one test split, the t interval over seeds holds the seeds' spread on these test
# images alone; where two settings err on different images it excludes 0 far more often than 5% of
# the time under no true difference (simulated: 9% to 71%, by how much a model's mistakes repeat).
ONE_TEST_SPLIT_CAVEAT = ("Every pair is scored on the same test images, so the interval holds the seeds' spread on "
                         "them and not how far other test images could move the difference: one that excludes 0 "
                         "may not hold on new images (--folds scores other test images; eval --bootstrap bounds "
                         "each figure).")
# Said under a cross-validated comparison's differences, in compare.md and on the console alike.
FOLDS_CAVEAT = ("Every seed runs the same folds, so a fold's runs are averaged over the seeds and the folds are the "
                "pairs; their differences are not independent either (each fold trains on the others' test images, "
                "and with more than two folds they share most of their training data): "
                "the interval is widened for it (the corrected resampled t of Nadeau & Bengio, variance times "
                "1/K + 1/(K-1) for K folds, in place of 1/K, 1/(K-1) being a fold's test images over the rest, "
                "its validation images counted with its training ones), which is still an approximation.")
# Said on the console under the differences table, whose cells carry no caption (review 52d).
READING_CAVEAT = ("An interval holding 0 does not tell the two apart, and each stands alone, unadjusted for the many "
                  "shown: judge by the one figure chosen before looking.")
UNCORRECTED_FOLDS_CAVEAT = ("The folds' differences are not independent (each fold trains on the others' test images), "
                            "and "
                            "these intervals, written by an earlier version as if they were, are narrower than they "
                            "should be: the same compare command writes them anew (its runs are reused).")
