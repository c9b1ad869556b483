"""Classification metrics from predicted probabilities, as scikit-learn defines them."""

from __future__ import annotations


import numpy as np

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc")
# How far the predicted probabilities are from the frequencies they claim (lower is better).
CALIBRATION_METRICS = ("ece", "brier")
ECE_BINS = 15  # equal-width confidence bins, as Guo et al. (ICML 2017) and torchmetrics use
# The families of per-class figures, ``family_class`` among a model's metrics (no whole-split
# metric starts with one of them followed by '_'). Classification: ``precision_c`` (positive
# predictive value) and ``recall_c`` (sensitivity; in a binary task the other class's recall is
# the specificity); segmentation and detection in their metric modules.
CLASSIFICATION_PER_CLASS = ("precision", "recall")
SEGMENTATION_PER_CLASS = ("dice", "iou")
DETECTION_PER_CLASS = ("ap", "ap50")
# hd95_<class>, missed_<class>: the foreground classes' distances and misses (segmentation_metrics.py)
PER_CLASS_FAMILIES = frozenset(CLASSIFICATION_PER_CLASS + SEGMENTATION_PER_CLASS + DETECTION_PER_CLASS
                               + ("hd95", "missed"))
# Above this many classes, per-class figures are left out of each epoch's row (metrics.csv,
# TensorBoard): a 1,000-class run would log 2,000 more numbers per model and epoch. The best and
# last epochs' results and eval keep them.
PER_EPOCH_CLASS_LIMIT = 20


def per_class_part(metric: str) -> tuple[str, str] | None:
    """(family, class) of a per-class metric name, the family keeping a test-time-flip prefix
    (``tta_recall_3``: ``("tta_recall", "3")``); None for a whole-split metric."""
    prefix = "tta_" if metric.startswith("tta_") else ""
    family, underscore, name = metric.removeprefix(prefix).partition("_")
    return (prefix + family, name) if underscore and family in PER_CLASS_FAMILIES else None


def classification_metric_names(class_names: list[str]) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS + CALIBRATION_METRICS + per_class_names(CLASSIFICATION_PER_CLASS, class_names)


def per_class_names(families: tuple[str, ...], class_names: list[str]) -> tuple[str, ...]:
    """``family_class`` for every family, then every class: how per-class figures are named."""
    return tuple(f"{family}_{c}" for family in families for c in class_names)


def classification_metrics(probs: np.ndarray, targets: np.ndarray,
                           class_names: list[str] | None = None) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro-F1 and ROC-AUC (binary; one-vs-rest macro for more
    classes). Balanced accuracy averages recall over the classes the split holds; macro-F1 averages
    F1 over the classes it holds or the model predicts (one only predicted scores 0; a class absent
    from both is not counted as a zero). AUC is NaN when a split
    lacks a class, since it is undefined there. Calibration: ``ece`` and ``brier`` (see
    ``calibration_metrics``). With ``class_names``, also each class's
    precision and recall, NaN where undefined (a class never predicted has no precision, one
    absent from the split no recall).

    Counted from the confusion counts and the scores' ranks, as scikit-learn defines each figure
    (the tests compare every one with its function): its functions spent most of their time
    checking their inputs, more than a small model's validation pass each epoch, and most of a
    bootstrap's."""
    num_classes = probs.shape[1]
    targets = np.asarray(targets).astype(np.int64, copy=False)
    if len(targets) and not 0 <= targets.min() <= targets.max() < num_classes:  # (an ignored -100, a class too many)
        raise ValueError(f"labels are class indices 0..{num_classes - 1} of the {num_classes} scored, got "
                         f"{targets.min()}..{targets.max()}")
    preds = probs.argmax(axis=1)
    true = np.bincount(targets, minlength=num_classes).astype(np.float64)
    predicted = np.bincount(preds, minlength=num_classes).astype(np.float64)
    right = np.bincount(targets[targets == preds], minlength=num_classes).astype(np.float64)
    held, seen = true > 0, (true + predicted) > 0
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0: NaN, a figure undefined there
        recall, precision = right / true, right / predicted
        out = {
            "accuracy": float(right.sum() / len(targets)) if len(targets) else float("nan"),
            "balanced_accuracy": float(recall[held].mean()) if held.any() else float("nan"),
            "macro_f1": float((2 * right[seen] / (true[seen] + predicted[seen])).mean()) if seen.any() else float("nan"),
        }
    out["auc"] = _auc(probs, targets, num_classes)
    out.update(calibration_metrics(probs, targets))
    if class_names is not None:
        for family, values in (("precision", precision), ("recall", recall)):
            out.update({f"{family}_{c}": float(v) for c, v in zip(class_names, values, strict=True)})
    if not np.isfinite(probs).all():  # argmax calls a NaN row class 0: no figure of such scores is a number
        out = {key: float("nan") for key in out}
    return out


def _auc(probs: np.ndarray, targets: np.ndarray, num_classes: int) -> float:
    if len(np.unique(targets)) < num_classes:
        return float("nan")
    if num_classes == 2:
        return binary_auc(targets == 1, probs[:, 1])
    # One-vs-rest, macro: each class's binary AUC on its own scores, as they are (scikit-learn's
    # multi-label path with one-hot targets; its multi-class path would renormalise the rows to
    # sum to 1, which breaks exact ties between saturated float32 probabilities and moves the AUC).
    return float(np.mean([binary_auc(targets == c, probs[:, c]) for c in range(num_classes)]))


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve: the share of (positive, negative) pairs the scores rank
    right, a tie counting half (Mann-Whitney's U over the pairs, from midranks), which is the
    trapezoid area under the curve; NaN without both kinds."""
    positive = np.asarray(positive, dtype=bool)  # (0/1 integers would index rows, not select them)
    scores = np.asarray(scores)
    positives = int(positive.sum())
    negatives = len(positive) - positives
    if not positives or not negatives or np.isnan(scores).any():
        return float("nan")
    u = midranks(scores)[positive].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (scipy.stats.rankdata's default, whose import
    took most of a second of every classification run)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))  # each run of equal values
    ends = np.append(starts[1:], len(values))
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2, ends - starts)  # the mean of ranks start+1 .. end
    return ranks


def calibration_metrics(probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """``ece``: the expected calibration error of the top label (Guo et al. 2017): the mean
    |accuracy - confidence| of the ``reliability_bins``, weighted by their share of the samples.
    ``brier``: the Brier score, the mean squared distance between the predicted probabilities
    and the one-hot truth (scikit-learn's mean squared error per class), summed over classes
    for more than two classes (range [0, 2]), of the positive class alone for two (range
    [0, 1], as customary)."""
    if not len(targets) or not np.isfinite(probs).all():  # (evaluation stops on non-finite outputs before;
        return {"ece": float("nan"), "brier": float("nan")}  # direct callers, and an empty split, get NaN)
    ece = expected_calibration_error(*reliability_bins(probs, targets))
    one_hot = (targets[:, None] == np.arange(probs.shape[1])[None, :]).astype(np.float64)
    columns = slice(None) if probs.shape[1] > 2 else slice(1, 2)
    brier = ((one_hot[:, columns] - probs[:, columns]) ** 2).mean(axis=0).sum()
    return {"ece": ece, "brier": float(brier)}


def expected_calibration_error(confidence: np.ndarray, accuracy: np.ndarray, counts: np.ndarray) -> float:
    """The mean |accuracy - confidence| of the filled bins, weighted by their samples."""
    filled = counts > 0
    return float((counts[filled] * np.abs(confidence[filled] - accuracy[filled])).sum() / counts.sum())


def reliability_bins(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions binned by their confidence (the largest probability) into ``ECE_BINS``
    equal-width bins closed on the right, ((k-1)/M, k/M] as Guo et al. define them (the first
    also holds 0): each bin's mean confidence, accuracy (NaN where empty) and number of samples.
    What the ECE and a reliability diagram are made of. Bins are chosen as MONAI's
    calibration_binning chooses them (importing MONAI for it cost a classification run about
    four seconds), in float32: a confidence computed in float32 that means an edge (a tie of
    three classes, 1/3, is 0.33333334) stays in the bin the edge closes."""
    import torch

    confidence = probs.max(axis=1).astype(np.float64)
    right = (probs.argmax(axis=1) == targets).astype(np.float64)
    # A canonical order sums each bin the same way however the samples arrive (the shares of
    # several processes, gathered), so the figures agree to the last bit.
    order = np.lexsort((right, confidence))
    confidence, right = confidence[order], right[order]
    # MONAI's edges: float32 steps up to 1 + eps, each edge belonging to the bin below it
    edges = torch.linspace(0.0, 1.0 + torch.finfo(torch.float32).eps, ECE_BINS + 1)[1:].numpy()
    bin_of = np.minimum(np.searchsorted(edges, confidence.astype(np.float32), side="left"), ECE_BINS - 1)
    counts = np.bincount(bin_of, minlength=ECE_BINS).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins: 0/0 -> NaN, as documented
        mean_confidence = np.bincount(bin_of, weights=confidence, minlength=ECE_BINS) / counts
        accuracy = np.bincount(bin_of, weights=right, minlength=ECE_BINS) / counts
    return mean_confidence, accuracy, counts


LOWER_IS_BETTER = frozenset({"hd95", "missed", "ece", "brier", "cal_ece", "cal_brier"})
# Figures with no better direction: a chosen threshold or temperature.
NO_DIRECTION = frozenset({"op_threshold", "cal_temperature"})


def headed(metric: str) -> str:
    """How a table or figure names a compared metric: ``test METRIC``, but for a threshold or a
    temperature, chosen on each run's validation split (review 51j: headed "test" in compare.md)."""
    return f"test {metric}" if has_direction(metric) else f"{metric} (chosen on val)"


def metric_family(metric: str) -> str:
    """A metric's name without a test-time-flip prefix or a per-class suffix: ``tta_hd95_liver``
    is ``hd95``."""
    base = metric.removeprefix("tta_")
    part = per_class_part(base)
    return part[0] if part is not None else base


# Figures each model averages over images of its own (HD95: those it found the class in), so two
# models' figures are over different images and their difference is no paired one (review 47g;
# compare's differences between runs too, review 52a: a model missing the hard images "won").
NOT_PAIRED = ("hd95",)
NOT_PAIRED_WHY = ("each model's is averaged over the images it found the class in, so two models' figures are over "
                  "different images")


def unpaired_metric(metric: str) -> bool:
    return metric_family(metric) in NOT_PAIRED


def lower_is_better(metric: str) -> bool:
    """Whether smaller is better: HD95, ECE and Brier, also per class (``hd95_<class>``) and
    under test-time flips (``tta_hd95``)."""
    return metric_family(metric) in LOWER_IS_BETTER


def has_direction(metric: str) -> bool:
    """False for a chosen threshold or temperature (also under test-time flips)."""
    return metric.removeprefix("tta_") not in NO_DIRECTION


def ranking_score(metric: str, value: float | None) -> float:
    """A number where higher is always better, NaN / missing ranking last: how the best epoch,
    the best student and ``export --model best`` compare values of ``metric``."""
    if value is None or value != value:
        return float("-inf")
    return -value if lower_is_better(metric) else value
