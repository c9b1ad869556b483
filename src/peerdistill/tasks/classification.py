"""Classification: integer labels, cross-entropy, ensemble = mean of class probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..arguments import check_class_count
from ..errors import DataError
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
        self.class_weights = class_weights
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


def balanced_class_weights(targets: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """``n / (k * count_c)`` per class (scikit-learn's 'balanced' rule)."""
    flat = targets.flatten()
    if ignore_index is not None:
        flat = flat[flat != ignore_index]
    counts = torch.bincount(flat, minlength=num_classes).float()
    return flat.numel() / (num_classes * counts.clamp(min=1))
