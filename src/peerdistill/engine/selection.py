"""What the choice of the best epoch is worth: warnings where the monitored figure chose
nothing (the same value in every epoch, so the first epoch's weights are kept) or kept weights
that give every validation image one class (accuracy on an imbalanced split stays flat while
the models predict the majority class)."""

from __future__ import annotations

import math
from typing import Any

from ..metrics import lower_is_better
from ..wording import joined

# Figures to monitor instead, by task (the default one is what failed).
_INSTEAD = {"classification": ("ensemble/balanced_accuracy", "ensemble/auc"), "segmentation": ("ensemble/auc",),
            "detection": ("ensemble/ap50",)}


def flat_monitor(history: list[dict[str, Any]], monitor: str, task: str) -> str | None:
    """The warning for a monitor with one finite value over two or more validated epochs."""
    rows = [row for row in history if f"val/{monitor}" in row]
    values = [row[f"val/{monitor}"] for row in rows]
    if len(values) < 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return None
    if max(values) != min(values) or _at_its_best(monitor.split("/")[-1], values[0]):
        return None  # (perfect in every epoch, easy data: a tie, not a failure to learn)
    instead = [m for m in _INSTEAD.get(task, ()) if m != monitor]
    every, first = (("every epoch", "the first") if len(rows) == len(history) else  # (train.val_every: some)
                    ("every validated epoch", f"the first validated one (epoch {rows[0].get('epoch', '?')})"))
    return (f"val {monitor} was {values[0]:.4g} in {every} ({len(values)}): no epoch was better than "
            f"{first}, whose weights are kept as the best (and train.patience, if set, stopped the run for it); "
            "the models may not have learnt (check the learning rate and the data) or may predict one class "
            "for every image; monitor a figure that moves"
            + (f" (train.monitor, e.g. {' or '.join(instead)})" if instead else ""))


def one_class_kept(val: dict[str, dict[str, float]], class_names: list[str], epoch: int,
                   steps_per_epoch: int, batch_norm: bool = True, frozen: tuple[str, ...] = (),
                   from_python: bool = False, monitor: str | None = None) -> str | None:
    """The warning for kept weights with which a model predicts a single class on the whole
    validation split (every other class's precision undefined: never predicted), of two or
    more classes present there (their recalls are numbers). ``steps_per_epoch``: few make a
    cause likely where the models hold BatchNorm layers (``batch_norm``). ``frozen`` models
    were not trained by the run: said apart, with what to check (review 50b: training advice).
    ``from_python``: a run built in Python, whose class weights are the task's (no data section).
    A model that ranks the images well all the same (val AUC of RANKS_WELL or more) learnt the
    ranking, and its decision at the larger probability is what fails (review 56b: "nothing was
    learnt" at AUC 0.98); ``monitor``: the run's, not advised again."""
    names = [str(c) for c in class_names]
    alone = {}
    for model, figures in val.items():
        predicted = [c for c in names if _is_number(figures.get(f"precision_{c}"))]
        present = [c for c in names if _is_number(figures.get(f"recall_{c}"))]
        known = all(f"precision_{c}" in figures for c in names)  # (per-class figures kept)
        if known and len(predicted) == 1 and len(present) >= 2:
            alone[model] = predicted[0]
    untrained = {model: c for model, c in alone.items() if model in frozen}
    alone = {model: c for model, c in alone.items() if model not in frozen}
    loaded = ("; ".join(f"frozen {model} predicts '{c}' for every validation image: this run did not train it, so "
                        "check the weights given to it (and any BatchNorm running statistics, which evaluation uses)"
                        for model, c in untrained.items()))
    if not alone:
        return loaded or None
    by_class: dict[str, list[str]] = {}
    for model, c in alone.items():
        by_class.setdefault(c, []).append(model)
    said = "; ".join(f"{joined(models)} predict{'s' if len(models) == 1 else ''} '{c}'"
                     for c, models in by_class.items())
    ranking = {model: val[model]["auc"] for model in alone  # (a threshold is chosen for two classes)
               if len(names) == 2 and _is_number(val[model].get("auc")) and val[model]["auc"] >= RANKS_WELL}
    steps = f"{steps_per_epoch} optimizer step{'s' if steps_per_epoch != 1 else ''}"
    weigh = f"weigh the classes ({WEIGHED_IN_PYTHON if from_python else 'data.class_weights=true'})"
    figures = [m for m in ("ensemble/balanced_accuracy", "ensemble/auc") if m != monitor]
    if steps_per_epoch < FEW_STEPS and batch_norm:
        cause = (f"with {steps} an epoch, BatchNorm's running statistics (which evaluation uses) may lag the "
                 "weights: a smaller train.batch_size or more epochs")
    elif len(ranking) == len(alone):  # the ranking learnt: the decision is what fails
        cause = (f"an imbalanced split? {weigh}, or call the classes at a threshold chosen on the validation split "
                 "(eval, export and predict take --operating-point, e.g. youden)")
    else:
        cause = (f"an imbalanced split? monitor {' or '.join(figures)} (train.monitor), {weigh} or train longer")
    return (f"with the weights kept as the best (epoch {epoch + 1}), {said} for every validation image, though the "
            f"split holds other classes: {_what_was_learnt(alone, ranking)}; {cause}"
            + (f". And {loaded}" if loaded else ""))


# A val AUC from which a model calling every image one class has learnt to rank them all the same.
RANKS_WELL = 0.75


def _what_was_learnt(alone: dict[str, str], ranking: dict[str, float]) -> str:
    """"nothing of them was learnt", or for the models that rank well (``ranking``: their val
    AUC), that the ranking was and the decision was not."""
    if not ranking:
        return "nothing of them was learnt"
    ranked = (f"{joined(ranking)} rank{'s' if len(ranking) == 1 else ''} the images all the same (val AUC "
              f"{', '.join(f'{auc:.3f}' for auc in ranking.values())}): the ranking was learnt, the decision at the "
              "larger probability was not")
    unlearnt = [model for model in alone if model not in ranking]
    return ranked if not unlearnt else f"{ranked}; nothing of {joined(unlearnt)} was learnt"


# (review 55a: a run built in Python was told of data.class_weights, a config's key)
WEIGHED_IN_PYTHON = ("ClassificationTask(K, class_weights=balanced_class_weights(train_labels, K)), "
                     "from peerdistill.tasks")
FEW_STEPS = 20  # optimizer steps an epoch below which BatchNorm's running statistics may not keep up


def _at_its_best(metric: str, value: float) -> bool:
    """A figure at the best its scale allows: 1 (accuracy, dice, AUC, ...) or, for one where
    lower is better, 0."""
    return value <= 0 if lower_is_better(metric) else value >= 1


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
