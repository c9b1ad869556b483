"""Classification: integer labels, cross-entropy, ensemble = mean of class probabilities."""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from ..arguments import check_class_count
from ..errors import ConfigError, DataError, warn_user
from ..metrics import CALIBRATION_METRICS, CLASSIFICATION_METRICS, classification_metric_names, classification_metrics
from .augment import Augmentation


class ProbabilityMeter:
    """Keeps every probability row of a split: ROC-AUC needs them all at once."""

    def __init__(self, class_names: list[str] | None = None):
        self.class_names = class_names
        self.probs, self.targets = [], []

    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        self.probs.append(probs.float().cpu())
        self.targets.append(targets.cpu())

    def merge(self, other: "ProbabilityMeter") -> None:
        self.probs += other.probs
        self.targets += other.targets

    def compute(self) -> dict[str, float]:
        return classification_metrics(torch.cat(self.probs).numpy(), torch.cat(self.targets).numpy(), self.class_names)


class ClassificationTask:
    """What a classification run trains and scores: cross-entropy (``class_weights`` per class),
    every model's output checked to be [batch, num_classes] logits, and accuracy, balanced
    accuracy, macro F1, AUC, ECE and Brier, with per-class precision and recall named after
    ``class_names``. ``augment``: the augmentations applied to training batches on the device."""

    name = "classification"
    summary_metrics = CLASSIFICATION_METRICS + CALIBRATION_METRICS  # the console table's columns (ece, brier: lower is better)
    default_monitor = "ensemble/accuracy"

    def __init__(self, num_classes: int, class_weights: torch.Tensor | None = None, augment: tuple[str, ...] | Augmentation = (),
                 class_names: list[str] | None = None):
        num_classes = check_class_count("ClassificationTask", num_classes, least=1)
        if num_classes < 2:  # (a loss of 0 and accuracy 1 everywhere, without a word: review 52b)
            raise DataError("classification needs at least two classes: a softmax over one class is 1 whatever the "
                            "model sees, so nothing would be learnt (labels of one class only? the classes are counted "
                            "from them: give data of every class)")
        self.num_classes = num_classes
        self.name_classes(class_names or [str(c) for c in range(num_classes)])
        self.class_weights = checked_class_weights("ClassificationTask", class_weights, num_classes)
        self.augmentation = augment if isinstance(augment, Augmentation) else Augmentation(tuple(augment))
        self.augmentations = self.augmentation.names

    def name_classes(self, class_names: list[str]) -> None:
        """Per-class metrics are named after these."""
        self.class_names = list(class_names)
        self.metric_names = classification_metric_names(self.class_names)

    def supervised_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        return F.cross_entropy(logits.float(), targets, weight=weight)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)

    def ensemble(self, probabilities: list[torch.Tensor]) -> torch.Tensor:
        """The students' ensemble: the mean of their class probabilities."""
        return torch.stack(probabilities).mean(dim=0)

    def new_meter(self) -> ProbabilityMeter:
        return ProbabilityMeter(self.class_names)

    def augment(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        return (self.augmentation.images(x, None, generator)[0], y) if self.augmentation else (x, y)

    def check_targets(self, y: torch.Tensor, split: str) -> None:
        """Class indices [B] in 0..K-1 (one-hot or soft labels are not read)."""
        if y.is_floating_point() or y.ndim != 1:
            masks = y.ndim == 3 and not y.is_floating_point()  # (review 50b: the one-hot hint, for label maps)
            # (review 55a: class indices stored as floats were told of one-hot labels)
            whole = y.ndim == 1 and y.is_floating_point() and bool((y == y.round()).all())
            raise DataError(f"the {split} labels are {str(y.dtype).removeprefix('torch.')} of shape {tuple(y.shape)}; "
                            "classification reads class indices, one integer per sample "
                            + ("(these look like segmentation masks, one class per pixel: use SegmentationTask, "
                               "task: segmentation in a config)" if masks else
                               "(these are whole numbers stored as floats: return int(label), or label.long() for a "
                               "tensor)" if whole else "(for one-hot labels, return their argmax)"))
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise DataError(f"the {split} labels run from {int(y.min())} to {int(y.max())}, outside the "
                            f"{self.num_classes} classes 0..{self.num_classes - 1}: number the classes from 0, or "
                            "give DataSplits the right num_classes")

    def check_output(self, name: str, logits: torch.Tensor, batch: int) -> None:
        """Every model must produce [batch, num_classes] logits for this data."""
        expected = (batch, self.num_classes)
        if logits.ndim != 2 or logits.shape[0] != batch:
            raise DataError(
                f"model '{name}' outputs a tensor of shape {tuple(logits.shape)}; classification needs [batch, "
                f"{self.num_classes}] class scores (a segmentation model gives [batch, classes, H, W]): check the "
                "model (and, for a tuple output, that its first item is the logits)"
            )
        if tuple(logits.shape) != expected:
            given = logits.shape[1]
            # (review 55a: a binary head of one sigmoid logit, a BCE habit, read "outputs 1 classes")
            one = (": a two-class model here gives two scores, one per class (softmax), not one sigmoid logit"
                   if given == 1 and self.num_classes == 2 else "")
            raise DataError(
                f"model '{name}' outputs {given} class{'es' if given != 1 else ''} (logits {tuple(logits.shape)}) but "
                f"the data has {self.num_classes} classes{one}: build every teacher and student with "
                f"num_classes={self.num_classes} (and, for a tuple output, check that its first item is the logits)"
            )


def checked_class_weights(where: str, weights, num_classes: int) -> torch.Tensor | None:
    """A task's ``class_weights``: None, or one weight per class (a list, NumPy array or tensor),
    each finite and 0 or more, not all 0; returned as a float32 tensor (a list or array failed only
    at the first training step, a wrong count there in torch's words, and a negative weight
    trained without a word)."""
    if weights is None:
        return None
    fix = f"give one weight per class, {num_classes} numbers of 0 or more in class order 0..{num_classes - 1} " \
          f"(balanced_class_weights(train_labels, {num_classes}) makes them)"
    if isinstance(weights, (str, bytes, dict)) or isinstance(weights, numbers.Number):
        raise ConfigError(f"{where}: class_weights takes a list, NumPy array or tensor, got {weights!r}: {fix}")
    try:
        if isinstance(weights, torch.Tensor):
            values = weights.detach()
        else:
            values = torch.as_tensor(np.asarray(weights))
    except (TypeError, ValueError, RuntimeError):
        values = None
    if values is None or values.dtype == torch.bool or values.is_complex():
        raise ConfigError(f"{where}: class_weights must be numbers, got {weights!r}: {fix}")
    if values.ndim != 1 or len(values) != num_classes:
        given = (f"{len(values)} weight{'s' if len(values) != 1 else ''}" if values.ndim == 1
                 else f"shape {tuple(values.shape)}")
        raise ConfigError(f"{where}: class_weights has {given} but the task has {num_classes} classes: {fix}")
    values = values.to(torch.float32)
    shown = values.cpu()
    bad = [c for c in range(num_classes) if not bool(torch.isfinite(shown[c]))]
    if bad:
        raise ConfigError(f"{where}: class_weights is not finite for class(es) {bad[:10]} "
                          f"({', '.join(str(float(shown[c])) for c in bad[:10])}): {fix}")
    bad = [c for c in range(num_classes) if float(shown[c]) < 0]
    if bad:
        raise ConfigError(f"{where}: class_weights is negative for class(es) {bad[:10]} "
                          f"({', '.join(f'{float(shown[c]):g}' for c in bad[:10])}): a class's weight scales its "
                          f"samples' share of the loss, so it must be 0 or more; {fix}")
    if not bool((shown > 0).any()):
        raise ConfigError(f"{where}: class_weights are all 0, so no sample would count in the loss: {fix}")
    return values


_COUNTED_AT_ONCE = 1 << 22  # labels (mask pixels) counted at a time


def balanced_class_weights(targets, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """``n / (k * count_c)`` per class (scikit-learn's 'balanced' rule), from the training labels
    (or masks): a tensor, NumPy array or list of class indices 0..K-1."""
    num_classes = check_class_count("balanced_class_weights", num_classes, least=1)
    try:
        flat = (targets.detach().cpu() if isinstance(targets, torch.Tensor)
                else torch.as_tensor(np.asarray(targets))).flatten()
    except (TypeError, ValueError, RuntimeError):
        flat = None
    if flat is None or flat.dtype == torch.bool or flat.is_complex():
        raise DataError(f"balanced_class_weights takes the training labels, class indices 0..K-1 as a tensor, NumPy "
                        f"array or list, got {type(targets).__name__}"
                        f"{' of ' + str(flat.dtype).removeprefix('torch.') if flat is not None else ''}")
    if flat.is_floating_point():
        if not bool(torch.isfinite(flat).all()) or not bool((flat == flat.round()).all()):
            raise DataError("balanced_class_weights takes class indices 0..K-1, got labels with fractions (or NaN): "
                            "give the integer labels given to from_arrays")
    given = flat.numel()
    if given == 0:
        raise DataError("balanced_class_weights: got no labels (an empty training split?), and it weighs each class "
                        "by its share of them: give the training labels (or masks), class indices 0..K-1")
    # Counted a part at a time in the labels' own dtype: segmentation masks are uint8, and an int64
    # copy of every pixel (or the int64 indices a boolean mask selects them by) took 8 times their size.
    drop = ignore_index is not None and (flat.is_floating_point()
                                         or torch.iinfo(flat.dtype).min <= ignore_index <= torch.iinfo(flat.dtype).max)
    counts = torch.zeros(num_classes, dtype=torch.long)
    kept, low, high = 0, None, None
    for start in range(0, given, _COUNTED_AT_ONCE):
        part = flat[start:start + _COUNTED_AT_ONCE]
        if drop:
            part = part[part != ignore_index]
        if part.numel() == 0:
            continue
        kept += part.numel()
        lo, hi = (int(v) for v in part.aminmax())
        low, high = (lo, hi) if low is None else (min(low, lo), max(high, hi))
        if low >= 0 and high < num_classes:  # (else refused below, with the whole range)
            if part.dtype not in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
                part = part.long()  # (floats of whole numbers, and unsigned types torch.bincount does not take)
            counts += torch.bincount(part, minlength=num_classes)
    if kept == 0:
        raise DataError(f"balanced_class_weights: all {given} labels are ignore_index {ignore_index} (pixels marked "
                        "unlabelled), so no class has a sample to weigh it by: give labels that mark classes")
    if low < 0 or high >= num_classes:
        raise DataError(f"balanced_class_weights: the labels run from {low} to {high}, "
                        f"outside the {num_classes} classes 0..{num_classes - 1}: give num_classes as the data's "
                        "(data.num_classes)")
    if high + 1 < num_classes:  # (an absent class weighs n / K: a weight past all others)
        warn_user(f"balanced_class_weights: no label is {high + 1} or above, yet num_classes is "
                  f"{num_classes}: class(es) from {high + 1} have no sample and get the weight of a class of "
                  "one sample; is num_classes right (data.num_classes)?")
    return kept / (num_classes * counts.float().clamp(min=1))
