"""A decision threshold for a binary classifier, chosen on the validation split and applied to
another: what a deployment does instead of taking the class of the larger probability (0.5).

The positive class is the second one (index 1), as for the AUC. Rules, on the validation
split's ROC curve (scikit-learn): ``youden`` (the threshold maximising sensitivity +
specificity - 1), ``sensitivity=S`` (the highest threshold whose sensitivity reaches S: the
most specific one that finds that share of the positives), ``specificity=S`` (the lowest
threshold whose specificity reaches S: the most sensitive one that keeps that share of the
negatives). A sample is called positive when its probability is at least the threshold.

Each rule picks a validation probability, whose sample is then called positive by a hair: the
same image scored again (another batch size, onnxruntime, int8) comes out some 1e-8 off and
could fall below it. So the threshold goes midway between that probability and the next lower
one on the validation split (half of it when none is lower): the same calls on the validation
split, with room on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, DataError

FIGURES = ("threshold", "sensitivity", "specificity", "ppv", "npv", "accuracy")
# The threshold where a rule calls nothing positive: just above 1 (scikit-learn's is inf).
NOTHING_POSITIVE = float(np.nextafter(1.0, 2.0))


@dataclass(frozen=True)
class Rule:
    kind: str  # youden | sensitivity | specificity
    target: float | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}={self.target:g}"


def parse_rule(text: str) -> Rule:
    kind, _, value = text.partition("=")
    if kind == "youden" and not value:
        return Rule("youden")
    if kind in ("sensitivity", "specificity") and value:
        try:
            target = float(value)
        except ValueError:
            target = -1.0
        if 0 < target <= 1:
            return Rule(kind, target)
    raise ConfigError(f"operating point '{text}': use youden, sensitivity=S or specificity=S with S in (0, 1], "
                      "for example specificity=0.95")


def choose_threshold(positive_probability: np.ndarray, labels: np.ndarray, rule: Rule) -> float:
    """The threshold ``rule`` picks on these (validation) probabilities of the positive class."""
    from sklearn.metrics import roc_curve

    if len(np.unique(labels)) < 2:
        raise DataError("the validation split holds a single class: no threshold can be chosen on it")
    fpr, tpr, thresholds = roc_curve(labels == 1, positive_probability, drop_intermediate=False)
    # scikit-learn's first threshold is inf (nothing called positive): just above 1 says the same
    thresholds = np.minimum(thresholds, NOTHING_POSITIVE)
    if rule.kind == "youden":
        # J = tp/P - fp/N, compared as tp*N - fp*P in whole numbers: in floats two equal J could
        # differ in their last bit, and argmax take the lower threshold of a tie
        positives, negatives = int((labels == 1).sum()), int((labels != 1).sum())
        tp, fp = np.rint(tpr * positives).astype(np.int64), np.rint(fpr * negatives).astype(np.int64)
        chosen = thresholds[np.argmax(tp * negatives - fp * positives)]  # the first (highest) threshold on a tie
    elif rule.kind == "sensitivity":  # thresholds fall along the curve: the first that reaches it is the highest
        chosen = thresholds[np.argmax(tpr >= rule.target - 1e-12)]
    else:
        keeps = 1 - fpr >= rule.target - 1e-12
        chosen = thresholds[np.flatnonzero(keeps)[-1]]  # the lowest threshold that still keeps it
    return _midway_below(float(chosen), np.asarray(positive_probability, dtype=np.float64))


def _midway_below(chosen: float, scores: np.ndarray) -> float:
    """A threshold making the same calls on ``scores`` as ``chosen`` (one of them, or above 1),
    half-way to the next lower score, so that a score recomputed a little lower keeps its call."""
    if chosen > 1:
        return chosen
    lower = scores[scores < chosen]
    if not lower.size:
        return chosen / 2
    below = lower.max()
    midway = (chosen + below) / 2
    if np.float32(below) < np.float32(chosen) and np.float32(midway) <= np.float32(below):
        # adjacent in float32, where probabilities are often compared: the first float32 above the lower one
        return float(np.nextafter(np.float32(below), np.float32(2)))
    return float(midway)


def at_threshold(positive_probability: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, positive and negative predictive values and accuracy of
    calling a sample positive when its probability is at least ``threshold`` (NaN where a
    ratio has nothing to count)."""
    from sklearn.metrics import confusion_matrix

    # in float64: float32 probabilities would round the threshold just above 1 down to 1
    called = np.asarray(positive_probability, dtype=np.float64) >= threshold
    tn, fp, fn, tp = confusion_matrix(labels == 1, called, labels=[False, True]).ravel()

    def ratio(a, b):
        return float(a / (a + b)) if a + b else float("nan")

    return {"threshold": float(threshold), "sensitivity": ratio(tp, fn), "specificity": ratio(tn, fp),
            "ppv": ratio(tp, fp), "npv": ratio(tn, fn), "accuracy": float((tp + tn) / len(labels))}


def operating_points(val: tuple[dict[str, np.ndarray], np.ndarray], scored: tuple[dict[str, np.ndarray], np.ndarray],
                     rule: Rule) -> dict[str, dict[str, float]]:
    """For every model (and the ensemble): the threshold ``rule`` picks on the validation
    probabilities ``val`` and the figures it gives on ``scored``; each ``(probabilities by
    model [N, 2], labels [N])``."""
    (val_probs, val_labels), (probs, labels) = val, scored
    out = {}
    for name, p in probs.items():
        if not (np.isfinite(val_probs[name]).all() and np.isfinite(p).all()):
            raise DataError(f"'{name}' gives non-finite probabilities: no threshold can be chosen or applied")
        threshold = choose_threshold(val_probs[name][:, 1], val_labels, rule)
        out[name] = at_threshold(p[:, 1], labels, threshold)
    return out
