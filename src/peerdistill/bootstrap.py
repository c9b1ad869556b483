"""How sure a test figure is: a percentile bootstrap over the scored samples (images).

A test split of a few hundred images (PneumoniaMNIST: 624; Kvasir-SEG: 150; DRIVE: 20) leaves
every metric uncertain by itself, before any seed or preset is compared. Each resample draws as
many samples as the split holds, with replacement, and scores them as the whole split is scored
(the task's own meter: a Dice over resampled images, a COCO AP over resampled frames); the
interval is the 2.5th to 97.5th percentile of those figures (Efron & Tibshirani 1993). Every
sample is scored once, into a meter of its own; a resample merges the meters it drew, so no
model runs again. Samples of one patient are drawn together when the run knows its patients
(``data.group_pattern``: a cluster bootstrap)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, DataError, warn_user
from .segmentation_metrics import ResampledPixelAUC, SegmentationMeter
from .option_names import option

CONFIDENCE = 0.95
SEED = 0  # the resamples are fixed: the same run scores to the same interval
# A 95% interval cuts 2.5% off each tail: with fewer than 40 resamples no draw lies beyond a tail,
# and the interval is the extreme draws (one resample: a point, which need not hold the estimate).
MIN_RESAMPLES = 40
# Below this many drawn units (samples, or patients) a percentile interval covers markedly less
# than its 95% (review 45c simulated 79% with 5 units, 88% with 10, 94% with 20): said, not hidden.
FEW_UNITS = 20


def check_resamples(resamples: int) -> None:
    """A user's resample count (any whole number, numpy's too): 0 (no interval) or enough for a
    95% interval to mean one."""
    if isinstance(resamples, bool) or not isinstance(resamples, numbers.Integral) or resamples < 0:
        raise ConfigError(f"{option('--bootstrap', repr(resamples))}: give a count of resamples, 0 for none (e.g. 1000)")
    if 0 < resamples < MIN_RESAMPLES:
        raise ConfigError(f"{option('--bootstrap', repr(resamples))}: a 95% interval needs at least {MIN_RESAMPLES} "
                          "resamples (one beyond each 2.5% tail); give 1000 to 10000, or 0 for none")


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    resamples: int  # how many resamples gave the metric a number (an AUC needs both classes)


def sample_meters(task, probs, targets) -> list:
    """One meter per sample of a batch, each holding that sample alone."""
    meters = []
    for i in range(len(targets)):
        meter = task.new_meter()
        meter.update(probs[i:i + 1], targets[i:i + 1])  # a tensor or a list of per-image detections
        meters.append(meter)
    return meters


def intervals(task, meters: list, resamples: int, seed: int = SEED,
              groups: list[str] | None = None) -> dict[str, Interval]:
    """Every metric's percentile interval over ``resamples`` resamples of the samples behind
    ``meters`` (``sample_meters``), or of their ``groups`` (``resampled``); a metric no resample
    could compute is left out."""
    return percentile_intervals(resampled_scores(task, meters, resamples, seed, groups))


def resampled_scores(task, meters: list, resamples: int, seed: int = SEED,
                     groups: list[str] | None = None) -> dict[str, np.ndarray]:
    """Every metric of the samples behind ``meters`` in each of the ``resamples`` draws
    (``resampled_figures``): the draws are the same for every model of a split, so two models'
    arrays subtract resample by resample (``paired_intervals``)."""
    auc = ResampledPixelAUC(meters) if meters and isinstance(meters[0], SegmentationMeter) \
        and meters[0].k == 2 else None

    def figures(drawn: np.ndarray) -> dict[str, float]:
        merged = task.new_meter()
        for i in drawn:
            merged.merge(meters[i])
        if auc is None:
            return merged.compute()
        return merged.compute(auc=False) | {"auc": auc(drawn)}  # no ranking of a resample's pixels

    return resampled_figures(figures, len(meters), resamples, seed, groups)


def paired_intervals(scores: dict[str, np.ndarray], baseline: dict[str, np.ndarray]) -> dict[str, Interval]:
    """The percentile interval of one model's figure minus another's, resample by resample: both
    scored on the same draws (``resampled_scores`` of one split), so what the drawn images share
    cancels, and the interval is that of the difference, far narrower than the two figures'
    intervals side by side suggest when the models err on the same images (a paired bootstrap)."""
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, a draw where both models' figures were infinite
        differences = {metric: values - baseline[metric] for metric, values in scores.items() if metric in baseline}
    return percentile_intervals(differences)


def warn_if_few_units(units: int, grouped: bool) -> None:
    """A bootstrap of few units (a test split of a few patients) gives intervals narrower than
    the 95% they are named for: the figures stand, their intervals are to be read as a floor."""
    if 2 <= units < FEW_UNITS:
        what = "patients (groups)" if grouped else "samples"
        warn_user(f"the bootstrap draws from {units} {what}: with fewer than {FEW_UNITS}, a percentile interval "
                  "covers less than the 95% it is named for (about 80% with 5), so these intervals are too narrow; "
                  "score more of them for intervals to rely on")


def resampled(figures, n: int, resamples: int, seed: int = SEED,
              groups: list[str] | None = None) -> dict[str, Interval]:
    """Percentile intervals of ``figures(indices)`` (a dict of numbers) over ``resamples``
    draws (``resampled_figures``)."""
    return percentile_intervals(resampled_figures(figures, n, resamples, seed, groups))


def resampled_figures(figures, n: int, resamples: int, seed: int = SEED,
                      groups: list[str] | None = None) -> dict[str, np.ndarray]:
    """``figures(indices)`` (a dict of numbers) in each of ``resamples`` draws of ``n`` indices
    out of ``n`` with replacement, an array per metric in draw order (NaN where a draw gave the
    metric no value); the draws depend on ``seed`` and ``n`` alone, so every model and every
    figure of one split is resampled alike. With ``groups`` (each sample's group: a patient),
    whole groups are drawn instead, as many as there are, each bringing all its samples: a
    patient's images are not independent, and resampling them one by one would make the
    interval too narrow (a cluster bootstrap)."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    members = [np.flatnonzero(np.asarray(groups) == g) for g in dict.fromkeys(groups)] if groups else None
    units = len(members) if members else n
    if units < 2:
        what = "groups" if members else "samples"
        raise DataError(f"a bootstrap resamples the scored {what}, and this split holds {units}: score a "
                        f"split with more of them, or drop {option('--bootstrap')}")
    rng = np.random.default_rng(seed)
    values: dict[str, np.ndarray] = {}
    for draw in range(resamples):
        drawn = rng.integers(0, units, units)
        indices = np.concatenate([members[g] for g in drawn]) if members else drawn
        for metric, value in figures(indices).items():
            if metric not in values:
                values[metric] = np.full(resamples, np.nan)
            values[metric][draw] = math.nan if value is None else value
    return values


def percentile_intervals(values: dict[str, np.ndarray]) -> dict[str, Interval]:
    """The 2.5th to 97.5th percentile of each metric's finite resampled values; a metric with
    none is left out (an infinite value counts: a figure of one's own, scored by ``resampled``, may be one)."""
    tail = (1 - CONFIDENCE) / 2 * 100
    out = {}
    for metric, vals in values.items():
        valued = vals[~np.isnan(vals)]
        if valued.size:
            low, high = (_percentile(valued, q) for q in (tail, 100 - tail))
            out[metric] = Interval(low, high, int(valued.size))
    return out


def _percentile(values: np.ndarray, q: float) -> float:
    """numpy's linear percentile, infinite where it falls next to an infinite value (numpy's
    interpolation gives NaN there: inf - inf)."""
    with np.errstate(invalid="ignore"):
        found = float(np.percentile(values, q))
    if math.isnan(found):
        lower = float(np.percentile(values, q, method="lower"))
        return lower if math.isinf(lower) else float(np.percentile(values, q, method="higher"))
    return found
