"""Temperature scaling (Guo et al., ICML 2017): one number per model that makes its
probabilities say how often it is right, fitted on the validation split.

A model's probabilities p become ``softmax(log p / T)``: for a single model that is
``softmax(logits / T)``, and for the students' ensemble it tempers the mean of their
probabilities as if it were one model. T > 1 softens an overconfident model, T < 1 sharpens an
underconfident one; each sample's most probable class, hence accuracy, stays as it was (and a
two-class AUC; a multi-class one ranks each class's probability across samples, which the
tempering may reorder, so eval reports the AUC of the untempered probabilities). T is the one
that minimises the negative log-likelihood of the validation labels. Distilled students learn
from softened targets and often come out miscalibrated (docs/results.md, PneumoniaMNIST), which
is why a classifier shipped for clinical use is worth tempering."""

from __future__ import annotations

import math

import numpy as np

from .errors import DataError, warn_user
from .metrics import calibration_metrics

# T is searched in log space between these; a fit that ends on a bound is reported as is.
T_RANGE = (0.05, 20.0)
FIGURES = ("temperature", "ece", "brier")  # tabulated as cal_*: T, and the figures it changes


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log probs / T)`` row by row, in float64 (a zero probability stays zero)."""
    with np.errstate(divide="ignore"):
        z = np.log(np.asarray(probs, dtype=np.float64)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under the tempered probabilities, as
    ``log(1 + sum_j exp(z_j - z_label))`` over the other classes: taken from the tempered
    probability it rounds to 0 for every confident right answer, and a validation split the
    model gets all right would leave T anywhere on that flat stretch instead of at the bound."""
    from scipy.special import logsumexp

    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(np.asarray(probs, dtype=np.float64)) / temperature
        rows = np.arange(len(labels))
        own = z[rows, labels]
        others = z - own[:, None]
        others[rows, labels] = -np.inf
        per_sample = np.logaddexp(0.0, logsumexp(others, axis=1))
    worst = -math.log(np.finfo(np.float64).tiny)  # a zero probability for the label: as from the smallest one
    return float(np.mean(np.where(np.isfinite(own), np.minimum(per_sample, worst), worst)))


def fit_temperature(probs: np.ndarray, labels: np.ndarray, who: str = "") -> float:
    """The T in ``T_RANGE`` minimising the validation NLL (bounded scalar search on log T);
    ``who`` (a model's name) is named in the warning."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        raise DataError("temperature scaling needs a validation split with samples to fit on")
    low, high = (math.log(t) for t in T_RANGE)
    result = minimize_scalar(lambda log_t: nll(probs, labels, math.exp(log_t)), bounds=(low, high),
                             method="bounded", options={"xatol": 1e-6})
    t = float(math.exp(result.x))
    if min(abs(result.x - low), abs(result.x - high)) < 1e-3:
        warn_user(f"the fitted temperature{f' of {who}' if who else ''} {t:.3g} is at the end of the range searched {T_RANGE}: the "
                  "validation likelihood keeps improving past it (a model near chance wants its probabilities "
                  "flat, one always right wants them sharp); the tempered figures are at that bound")
    return t


def calibrated_figures(val: tuple[dict[str, np.ndarray], np.ndarray],
                       scored: tuple[dict[str, np.ndarray], np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: its T fitted on ``val`` and the calibration figures of ``scored`` with it,
    ``{name: {"temperature", "ece", "brier"}}`` (both: ``split_probabilities`` results)."""
    (val_probs, val_labels), (probs, labels) = val, scored
    out = {}
    for name, p in probs.items():
        t = fit_temperature(val_probs[name], val_labels, who=name)
        out[name] = {"temperature": t, **calibration_metrics(tempered(p, t), labels)}
    return out
