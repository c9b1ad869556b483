"""One object per task answers the task-specific questions; nothing else branches on the task.
(``tasks.detection.DetectionTask`` is imported where needed: it brings pycocotools and
ensemble-boxes.)"""

from .classification import ClassificationTask, balanced_class_weights
from .segmentation import SegmentationTask

__all__ = ["ClassificationTask", "SegmentationTask", "balanced_class_weights"]
