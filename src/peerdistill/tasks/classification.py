"""Classification: integer labels, cross-entropy, ensemble = mean of class probabilities."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from ..metrics import CLASSIFICATION_METRICS, classification_metrics


class ClassificationTask:
    name = "classification"
    metric_names = CLASSIFICATION_METRICS

    def __init__(self, num_classes: int, class_weights: torch.Tensor | None = None):
        self.num_classes = num_classes
        self.class_weights = class_weights

    def supervised_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        return F.cross_entropy(logits.float(), targets, weight=weight)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)

    def ensemble(self, probabilities: list[torch.Tensor]) -> torch.Tensor:
        """The students' ensemble: the mean of their class probabilities."""
        return torch.stack(probabilities).mean(dim=0)

    def metrics(self, probabilities: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        return classification_metrics(probabilities, targets)

    def check_output(self, name: str, logits: torch.Tensor, batch: int) -> None:
        """Every model must produce [batch, num_classes] logits for this data."""
        expected = (batch, self.num_classes)
        if tuple(logits.shape) != expected:
            got = logits.shape[1] if logits.ndim == 2 else tuple(logits.shape[1:])
            raise DataError(
                f"model '{name}' outputs {got} classes (logits {tuple(logits.shape)}) but the data has "
                f"{self.num_classes} classes: build every teacher and student with num_classes={self.num_classes}"
            )


def balanced_class_weights(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``n / (k * count_c)`` per class (scikit-learn's 'balanced' rule)."""
    counts = torch.bincount(targets, minlength=num_classes).float()
    return targets.numel() / (num_classes * counts.clamp(min=1))
