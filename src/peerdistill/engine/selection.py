"""What the choice of the best epoch is worth: warnings where the monitored figure chose
nothing (the same value in every epoch, so the first epoch's weights are kept) or kept weights
that give every validation image one class (accuracy on an imbalanced split stays flat while
the models predict the majority class)."""

from __future__ import annotations

import math
from typing import Any

# Figures to monitor instead, by task (the default one is what failed).
_INSTEAD = {"classification": ("ensemble/balanced_accuracy", "ensemble/auc"), "segmentation": ("ensemble/auc",),
            "detection": ("ensemble/ap50",)}


def flat_monitor(history: list[dict[str, Any]], monitor: str, task: str) -> str | None:
    """The warning for a monitor with one finite value over two or more validated epochs."""
    values = [row[f"val/{monitor}"] for row in history if f"val/{monitor}" in row]
    if len(values) < 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return None
    if max(values) != min(values):
        return None
    instead = [m for m in _INSTEAD.get(task, ()) if m != monitor]
    return (f"val {monitor} was {values[0]:.4g} in every epoch ({len(values)}): no epoch was better than the "
            "first, whose weights are kept as the best (and train.patience, if set, stopped the run for it); "
            "the models may not have learnt (check the learning rate and the data) or may predict one class "
            "for every image; monitor a figure that moves"
            + (f" (train.monitor, e.g. {' or '.join(instead)})" if instead else ""))


def one_class_kept(val: dict[str, float], class_names: list[str], model: str, epoch: int) -> str | None:
    """The warning for kept weights whose ``model`` predicts a single class on the whole
    validation split (every other class's precision undefined: never predicted), of two or
    more classes present there (their recalls are numbers)."""
    names = [str(c) for c in class_names]
    predicted = [c for i, c in enumerate(names) if _is_number(val.get(f"precision_{i}"))]
    present = [c for i, c in enumerate(names) if _is_number(val.get(f"recall_{i}"))]
    known = all(f"precision_{i}" in val for i in range(len(names)))  # (per-class figures kept for this many)
    if not known or len(predicted) != 1 or len(present) < 2:
        return None
    return (f"the weights kept as the best (epoch {epoch + 1}) make {model} predict '{predicted[0]}' for every "
            f"validation image, of {len(present)} classes there: they have learnt nothing of the others; an "
            "imbalanced split? monitor ensemble/balanced_accuracy or ensemble/auc (train.monitor), weigh the "
            "classes (data.class_weights=true) or train longer")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
